"""Data is never code, and never an unbounded allocation: hostile specs in a model folder's config.json and in an
nnU-Net plans.json.

* Class names (conv_op, norm_op, dropout_op, nonlin, block, network_class_name, architecture) come from fixed
  tables only: ``subprocess.Popen``, ``os.system``, ``io.FileIO``, ``builtins.eval`` and a module with top-level
  side effects are refused with a message naming the key, through ``zoo.load(folder)``, the plans reader,
  ``adapt_to_plan`` and ``export_nnunet``, and nothing is imported or run (marker files, ``sys.modules``).
* Sizes are bounded by arithmetic before anything is allocated (zoo.archs.limits): huge widths, counts, kernels,
  class counts, patches, and ints that are bools / floats / negative are refused in milliseconds, naming the key,
  without growing the peak memory.
* The arithmetic is exact: the estimated parameter count equals the built network's for every registry entry
  and several nnU-Net plans, and the activation count equals what one forward at batch 1 produces.
* Hypothesis mutates a real plans.json and a real config.json: each either builds a network that matches the
  estimate, or fails with the documented error (PlanError / CheckpointFormatError), never anything else.
"""

from __future__ import annotations

import ast
import copy
import inspect
import io
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

import zoo
from zoo.archs import ARCHITECTURES, build_architecture, get_builder
from zoo.archs import ops
from zoo.archs.limits import (
    MAX_ACTIVATIONS,
    MAX_CHANNELS,
    MAX_KERNEL,
    MAX_LAYERS,
    MAX_PARAMETERS,
    MAX_PER_STAGE,
    MAX_STAGES,
    ArchitectureSpecError,
)
from zoo.archs.nnunet_blocks import resolve_arch_kwargs, resolve_block
from zoo.archs.size_estimate import ARGUMENTS, check_architecture, estimate_architecture
from zoo.errors import CheckpointFormatError, ZooError
from zoo.model_config import MAX_CONFIG_BYTES
from zoo.model_dir import read_model_dir, write_model_dir
from zoo.nnunet.export import adapt_to_plan, export_nnunet
from zoo.nnunet.plans import PlanError, arch_for_configuration, build_from_plan

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")

REPO = Path(__file__).resolve().parents[1]
DEMO_PLANS = REPO / "zoo" / "assets" / "demo" / "nnUNetPlans.json"
DEMO_DATASET = REPO / "zoo" / "assets" / "demo" / "dataset.json"
DEMO_FOLDER_CONFIG = REPO / "zoo" / "assets" / "genesis-ct-demo" / "config.json"

OPS = {
    "conv_op": "torch.nn.modules.conv.Conv3d", "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None, "dropout_op_kwargs": None,
    "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
}
TINY = {"n_stages": 3, "features_per_stage": [4, 8, 16], "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]], "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2],
        **OPS}
TINY_DS = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1}, "numTraining": 4,
           "file_ending": ".nii.gz"}


def tiny_plans(arch_kwargs: dict | None = None, cls: str = "PlainConvUNet", patch: list[int] | None = None) -> dict:
    conf = {"data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": patch or [16, 32, 32], "spacing": [3.0, 1.0, 1.0],
            "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
            "architecture": {"network_class_name": f"dynamic_network_architectures.architectures.unet.{cls}",
                             "arch_kwargs": copy.deepcopy(arch_kwargs or TINY),
                             "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}
    return {"dataset_name": "Dataset900_T", "plans_name": "nnUNetPlans", "transpose_forward": [0, 1, 2],
            "transpose_backward": [0, 1, 2], "configurations": {"3d_fullres": conf}}


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    """A valid model folder (small PlainConvUNet) whose config.json the tests then overwrite."""
    net = build_architecture("plain_conv_unet", in_channels=1, num_classes=2, **copy.deepcopy(TINY))
    config = {"name": "tiny", "architecture": "plain_conv_unet", "arch_kwargs": copy.deepcopy(TINY),
              "in_channels": 1, "num_classes": 2, "first_conv": ["encoder.stages.0.0.convs.0.conv.weight"],
              "classifier": ["decoder.seg_layers"],
              "input": {"in_channels": 1, "modality": "CT", "axis_order": "zyx", "intensity": "HU",
                        "patch_size": [16, 32, 32]}}
    return write_model_dir(tmp_path / "folder", net.state_dict(), config)


def rewrite_config(folder: Path, change: Callable[[dict], Any]) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


# ============================================================================================ item 1: no code
HOSTILE_MODULE = '''
import pathlib
pathlib.Path(__file__).with_suffix(".imported").write_text("top-level code of a module named in a spec ran")
import torch.nn as nn
class Evil(nn.Module):
    pass
class Conv3d(nn.Conv3d):
    pass
class LeakyReLU(nn.LeakyReLU):
    pass
class PlainConvUNet(nn.Module):
    pass
class BasicBlockD(nn.Module):
    pass
'''


class Trap:
    """A module with top-level side effects on ``sys.path``, and files a hostile op would create or truncate."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.module = f"medzoo_trap_{abs(hash(str(root))) % 10**8}"
        (root / f"{self.module}.py").write_text(HOSTILE_MODULE)
        monkeypatch.syspath_prepend(str(root))
        self.imported = root / f"{self.module}.imported"
        self.ran = root / "command-ran"
        self.victim = root / "victim.txt"
        self.victim.write_text("precious")

    def names(self, role: str) -> list[str]:
        """Hostile class names for ``role`` (a spoof of the legitimate short name among them)."""
        short = {"conv_op": "Conv3d", "norm_op": "Evil", "dropout_op": "Evil", "nonlin": "LeakyReLU"}[role]
        return ["subprocess.Popen", "os.system", "io.FileIO", "builtins.eval", f"{self.module}.Evil",
                f"{self.module}.{short}"]

    def kwargs(self, name: str) -> dict:
        """Arguments that would act if the class were reached (run a command, truncate a file)."""
        if name == "subprocess.Popen":
            return {"args": f"touch {self.ran}", "shell": True}
        if name == "io.FileIO":
            return {"file": str(self.victim), "mode": "w"}
        return {"command": f"touch {self.ran}"}

    def assert_nothing_ran(self) -> None:
        assert not self.imported.exists(), "the module named in the spec was imported (its top-level code ran)"
        assert self.module not in sys.modules
        assert not self.ran.exists(), "a command named in the spec ran"
        assert self.victim.read_text() == "precious", "a file named in the spec was truncated"


ROLES = ("conv_op", "norm_op", "dropout_op", "nonlin")
KWARGS_OF = {"norm_op": "norm_op_kwargs", "dropout_op": "dropout_op_kwargs", "nonlin": "nonlin_kwargs"}


def hostile_kwargs(trap: Trap, role: str, name: str) -> dict:
    kw = copy.deepcopy(TINY)
    kw[role] = name
    if role in KWARGS_OF:
        kw[KWARGS_OF[role]] = trap.kwargs(name)
    return kw


HOSTILE_CASES = [(role, i) for role in ROLES for i in range(6)]


@pytest.mark.parametrize("role, index", HOSTILE_CASES)
def test_hostile_class_names_in_a_model_folder_run_nothing(tiny_folder, tmp_path, monkeypatch, role, index):
    trap = Trap(tmp_path, monkeypatch)
    name = trap.names(role)[index]
    rewrite_config(tiny_folder, lambda c: c.update(arch_kwargs=hostile_kwargs(trap, role, name)))
    with pytest.raises(CheckpointFormatError, match=rf"arch_kwargs\.{role} = '{name}' is not one of the allowed"):
        zoo.load(str(tiny_folder))
    with pytest.raises(CheckpointFormatError, match=rf"config.json: arch_kwargs\.{role}"):
        zoo.load(str(tiny_folder), pretrained=False)
    trap.assert_nothing_ran()


@pytest.mark.parametrize("role, index", HOSTILE_CASES)
def test_hostile_class_names_in_a_plan_run_nothing(tiny_folder, tmp_path, monkeypatch, role, index):
    trap = Trap(tmp_path, monkeypatch)
    name = trap.names(role)[index]
    plans = tmp_path / "nnUNetPlans.json"
    plans.write_text(json.dumps(tiny_plans(hostile_kwargs(trap, role, name))))
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps(TINY_DS))
    message = rf"configuration '3d_fullres': architecture\.arch_kwargs\.{role} = '{name}' is not one of the allowed"
    with pytest.raises(PlanError, match=message):
        arch_for_configuration(plans, "3d_fullres", dataset)
    with pytest.raises(PlanError, match=message):
        adapt_to_plan(str(tiny_folder), plans, "3d_fullres", dataset)
    out = tmp_path / "pretrained.pth"
    with pytest.raises(PlanError, match=message):
        export_nnunet(str(tiny_folder), plans, dataset, "3d_fullres", out)
    assert not out.exists()
    trap.assert_nothing_ran()


def test_hostile_classes_from_python_are_refused_too():
    for role, value in (("nonlin", subprocess.Popen), ("norm_op", io.FileIO), ("conv_op", nn.ReLU),
                        ("dropout_op", type("Dropout", (nn.Dropout,), {}))):
        with pytest.raises(ArchitectureSpecError, match=rf"arch_kwargs\.{role} = .* is not one of the allowed"):
            build_architecture("plain_conv_unet", in_channels=1, num_classes=2, **{**TINY, role: value})
        with pytest.raises(ValueError, match=role):
            resolve_arch_kwargs({role: value})
    assert issubclass(ArchitectureSpecError, ValueError) and issubclass(ArchitectureSpecError, ZooError)


def test_other_names_from_files_select_table_rows_only(tiny_folder, tmp_path, monkeypatch):
    trap = Trap(tmp_path, monkeypatch)
    for name in ("os.system", f"{trap.module}.Evil", f"{trap.module}:Evil"):   # architecture of a config.json
        rewrite_config(tiny_folder, lambda c: c.update(architecture=name))
        with pytest.raises(CheckpointFormatError, match=r"config.json: architecture must be one of"):
            zoo.load(str(tiny_folder))
        with pytest.raises(ArchitectureSpecError, match="unknown architecture"):
            get_builder(name)
    with pytest.raises(ArchitectureSpecError, match="unknown architecture"):
        get_builder(["plain_conv_unet"])
    for block in (f"{trap.module}.BasicBlockD", "subprocess.Popen", None, 1):   # ResidualEncoderUNet block
        kw = {**{k: v for k, v in TINY.items() if k != "n_conv_per_stage"}, "n_blocks_per_stage": 1, "block": block}
        with pytest.raises(ArchitectureSpecError, match=r"arch_kwargs\.block = .* is not an allowed residual block"):
            build_architecture("residual_encoder_unet", in_channels=1, num_classes=2, **kw)
        with pytest.raises(ValueError):
            resolve_block(block)
    plans = tiny_plans()   # network_class_name: the short name selects a row, the module part is never imported
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = f"{trap.module}.Evil"
    with pytest.raises(PlanError, match="network_class_name"):
        arch_for_configuration(plans, "3d_fullres", TINY_DS)
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = f"{trap.module}.PlainConvUNet"
    assert arch_for_configuration(plans, "3d_fullres", TINY_DS).arch == "plain_conv_unet"
    trap.assert_nothing_ran()


def test_every_spelling_nnunet_writes_resolves_and_roles_are_checked():
    written_by_planners = {  # cls.__module__ + "." + cls.__name__, as nnU-Net's planners write them, and the tests'
        "conv_op": ["torch.nn.modules.conv.Conv3d", "torch.nn.modules.conv.Conv2d", "torch.nn.Conv3d"],
        "norm_op": ["torch.nn.modules.instancenorm.InstanceNorm3d", "torch.nn.modules.batchnorm.BatchNorm3d",
                    "torch.nn.BatchNorm2d", "torch.nn.modules.normalization.GroupNorm", "torch.nn.LayerNorm"],
        "dropout_op": ["torch.nn.modules.dropout.Dropout3d", "torch.nn.Dropout2d", "torch.nn.Dropout"],
        "nonlin": ["torch.nn.LeakyReLU", "torch.nn.modules.activation.LeakyReLU", "torch.nn.ReLU",
                   "torch.nn.modules.activation.PReLU", "torch.nn.modules.GELU"],
    }
    for role, names in written_by_planners.items():
        for name in names:
            cls = ops.resolve_op(name, role)
            assert cls.__name__ == name.rsplit(".", 1)[1] and cls.__module__.startswith("torch.nn.modules.")
            assert ops.resolve_op(cls, role) is cls
            assert ops.resolve_op(f"{cls.__module__}.{cls.__name__}", role) is cls
        if role != "conv_op":
            assert ops.resolve_op(None, role) is None
    with pytest.raises(ArchitectureSpecError, match="is null"):
        ops.resolve_op(None, "conv_op")
    with pytest.raises(ArchitectureSpecError, match="one of the nonlinearities, allowed as nonlin"):
        ops.resolve_op("torch.nn.LeakyReLU", "conv_op")
    with pytest.raises(ArchitectureSpecError, match="one of the convolutions, allowed as conv_op"):
        ops.resolve_op("torch.nn.modules.conv.Conv3d", "norm_op")
    for junk in (3, ["torch.nn.ReLU"], {"a": 1}, "torch.nn.Module", "torch.nn.Sequential", "nn.ReLU", "ReLU",
                 "torch.nn.modules.activation.Threshold", "torch.nn.functional.relu"):
        with pytest.raises(ArchitectureSpecError, match="nonlin"):
            ops.resolve_op(junk, "nonlin")


def test_op_kwargs_are_json_scalars_with_names_the_class_accepts():
    good = [(nn.InstanceNorm3d, {"eps": 1e-5, "affine": True}, "norm_op"),
            (nn.BatchNorm3d, {"momentum": None}, "norm_op"),
            (nn.LeakyReLU, {"negative_slope": 0.01, "inplace": True}, "nonlin"),
            (nn.PReLU, {"num_parameters": 4}, "nonlin"),
            (nn.GELU, {"approximate": "tanh"}, "nonlin"), (nn.Dropout3d, {"p": 0.2}, "dropout_op"),
            (nn.GroupNorm, {"num_channels": 8, "eps": 1e-5}, "norm_op"), (nn.ReLU, None, "nonlin")]
    for cls, kw, role in good:
        assert ops.check_op_kwargs(cls, kw, role) == (kw or {})
    bad = [(nn.InstanceNorm3d, {"num_features": 3}, "norm_op", "num_features is not an argument"),
           (nn.InstanceNorm3d, {"device": "cuda"}, "norm_op", "device is not an argument"),
           (nn.InstanceNorm3d, {"dtype": "float64"}, "norm_op", "dtype is not an argument"),
           (nn.InstanceNorm3d, {"eps": "x"}, "norm_op", "eps must be a finite number"),
           (nn.InstanceNorm3d, {"eps": float("nan")}, "norm_op", "eps must be a finite number"),
           (nn.InstanceNorm3d, {"eps": 10**400}, "norm_op", "eps must be a finite number"),
           (nn.InstanceNorm3d, {"affine": 1}, "norm_op", "affine must be true or false"),
           (nn.InstanceNorm3d, {"eps": [1]}, "norm_op", "eps must be a number, boolean, string or null"),
           (nn.InstanceNorm3d, {"eps": {"__class__": "x"}}, "norm_op", "must be a number, boolean, string"),
           (nn.InstanceNorm3d, {1: 2}, "norm_op", "not a string"),
           (nn.InstanceNorm3d, ["eps"], "norm_op", "must be an object"),
           (nn.Dropout3d, {"p": 2}, "dropout_op", r"p must be a finite number in \[0, 1\]"),
           (nn.GELU, {"approximate": "exec"}, "nonlin", "approximate must be one of"),
           (nn.PReLU, {"num_parameters": 10**12}, "nonlin", "num_parameters must be an integer 1..16384"),
           (nn.PReLU, {"num_parameters": True}, "nonlin", "num_parameters must be an integer"),
           (nn.GroupNorm, {}, "norm_op", "num_channels is missing"),
           (nn.Tanh, {"args": 1}, "nonlin", "args is not an argument"),
           (nn.LeakyReLU, {"inplace": None}, "nonlin", "must not be null")]
    for cls, kw, role, message in bad:
        with pytest.raises(ArchitectureSpecError, match=message):
            ops.check_op_kwargs(cls, kw, role)


def test_no_module_is_imported_or_located_by_name_in_the_spec_readers():
    """The spec readers contain no import by name at all (only the fixed table of zoo.archs imports modules)."""
    files = ["zoo/archs/ops.py", "zoo/archs/limits.py", "zoo/archs/size_estimate.py", "zoo/archs/nnunet_blocks.py",
             "zoo/nnunet/plans.py", "zoo/model_config.py", "zoo/model_dir.py"]
    for file in files:
        tree = ast.parse((REPO / file).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                    [a.name for a in node.names]
                assert not {"pydoc", "importlib", "builtins"} & set(names), (file, names)
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                assert called not in ("__import__", "import_module", "locate", "eval", "exec"), (file, called)


# ========================================================================================= item 8: sizes
PLAIN = {**copy.deepcopy(TINY), "in_channels": 1, "num_classes": 2}
RESIDUAL = {**{k: v for k, v in PLAIN.items() if k != "n_conv_per_stage"}, "n_blocks_per_stage": [1, 2, 2]}

#: (architecture, change to the spec, key the message must name)
HUGE_SPECS = [
    ("plain_conv_unet", {"features_per_stage": 8000}, "features_per_stage"),
    ("plain_conv_unet", {"features_per_stage": [8000, 8000, 8000]}, "features_per_stage"),
    ("plain_conv_unet", {"features_per_stage": [4, 8, MAX_CHANNELS + 1]}, r"features_per_stage\[2\]"),
    ("plain_conv_unet", {"n_conv_per_stage": 10**6}, "n_conv_per_stage"),
    ("plain_conv_unet", {"n_conv_per_stage_decoder": [2, 10**6]}, r"n_conv_per_stage_decoder\[1\]"),
    ("plain_conv_unet", {"kernel_sizes": 10001}, "kernel_sizes"),
    ("plain_conv_unet", {"kernel_sizes": [[1, 3, 3], [3, 10001, 3], [3, 3, 3]]}, r"kernel_sizes\[1\]\[1\]"),
    ("plain_conv_unet", {"strides": [[1, 1, 1], [10**6, 2, 2], [2, 2, 2]]}, r"strides\[1\]\[0\]"),
    ("plain_conv_unet", {"num_classes": 10**9}, "num_classes"),
    ("plain_conv_unet", {"in_channels": 10**9}, "in_channels"),
    ("plain_conv_unet", {"n_stages": 10**6}, "n_stages"),
    ("plain_conv_unet", {"n_stages": 10**18, "features_per_stage": 4, "kernel_sizes": 3, "strides": 1,
                         "n_conv_per_stage": 1, "n_conv_per_stage_decoder": 1}, "n_stages"),
    ("plain_conv_unet", {"norm_op": "torch.nn.GroupNorm", "norm_op_kwargs": {"num_channels": 10**12}},
     r"norm_op_kwargs\.num_channels"),
    ("plain_conv_unet", {"nonlin": "torch.nn.PReLU", "nonlin_kwargs": {"num_parameters": 10**12}},
     r"nonlin_kwargs\.num_parameters"),
    ("residual_encoder_unet", {"n_blocks_per_stage": 1000}, "n_blocks_per_stage"),
    ("residual_encoder_unet", {"features_per_stage": [4, 8, 4000], "n_blocks_per_stage": 100},
     r"features_per_stage\[2\]"),
    ("residual_encoder_unet", {"block": "BottleneckD", "bottleneck_channels": 10**9}, "bottleneck_channels"),
    ("residual_encoder_unet", {"stem_channels": 10**9}, "stem_channels"),
    ("nested_unet", {"n_stages": 16, "features_per_stage": 2000, "kernel_sizes": 3, "strides": 1,
                     "n_conv_per_stage": 1, "n_conv_per_stage_decoder": 1}, "features_per_stage"),
    ("nested_unet", {"n_stages": 16, "features_per_stage": 4, "kernel_sizes": 3, "strides": 1,
                     "n_conv_per_stage": 128, "n_conv_per_stage_decoder": 128}, "n_stages"),
    ("genesis_unet3d", {"in_channels": 10**9}, "in_channels"),
    ("genesis_unet3d", {"num_classes": 10**9}, "num_classes"),
    ("med3d_resnet", {"depth": 10**9}, "depth"),
    ("med3d_resnet", {"depth": 10, "num_classes": 10**9}, "num_classes"),
    ("ssl3d_unet_encoder", {"features_per_stage": [16384] * 16}, r"features_per_stage\[\d+\]"),
    ("ssl3d_unet_encoder", {"features_per_stage": [16] * 10**5}, "features_per_stage"),
    ("nnunet_encoder", {"features_per_stage": 10**9}, "features_per_stage"),
]
#: ints that are not ints, negative or zero
BAD_TYPES = [
    ("plain_conv_unet", {"n_stages": 3.0}, "n_stages must be an integer"),
    ("plain_conv_unet", {"n_stages": True}, "n_stages must be an integer"),
    ("plain_conv_unet", {"n_stages": "3"}, "n_stages must be an integer"),
    ("plain_conv_unet", {"features_per_stage": [4.0, 8, 16]}, r"features_per_stage\[0\] must be an integer"),
    ("plain_conv_unet", {"features_per_stage": [4, True, 16]}, r"features_per_stage\[1\] must be an integer"),
    ("plain_conv_unet", {"features_per_stage": -32}, "features_per_stage must be an integer >= 1"),
    ("plain_conv_unet", {"kernel_sizes": -3}, "kernel_sizes must be an integer >= 1"),
    ("plain_conv_unet", {"kernel_sizes": [[3, 3], [3, 3, 3], [3, 3, 3]]}, r"kernel_sizes\[0\] must be 3 integers"),
    ("plain_conv_unet", {"strides": 0}, "strides must be an integer >= 1"),
    ("plain_conv_unet", {"n_conv_per_stage": -1}, "n_conv_per_stage must be an integer >= 1"),
    ("plain_conv_unet", {"n_conv_per_stage": 0}, "n_conv_per_stage must be an integer >= 1"),
    ("plain_conv_unet", {"num_classes": 2.5}, "num_classes must be an integer"),
    ("plain_conv_unet", {"num_classes": False}, "num_classes must be an integer"),
    ("plain_conv_unet", {"in_channels": -1}, "in_channels must be an integer >= 1"),
    ("plain_conv_unet", {"conv_bias": 1}, "conv_bias must be true or false"),
    ("plain_conv_unet", {"deep_supervision": "yes"}, "deep_supervision must be true or false"),
    ("plain_conv_unet", {"features_per_stage": [4, 8]}, "features_per_stage must have 3 entries"),
    ("plain_conv_unet", {"foo": 1}, "arch_kwargs.foo is not an argument of plain_conv_unet"),
    ("residual_encoder_unet", {"n_blocks_per_stage": 1.5}, "n_blocks_per_stage must be an integer"),
    ("nested_unet", {"branch": 7}, "branch must be null"),
    ("med3d_resnet", {"depth": 10.0}, "depth must be one of"),
    ("med3d_resnet", {"depth": 10, "head": "classification"}, "head = 'classification' needs num_classes"),
    ("genesis_unet3d", {"act": "os.system"}, "act must be one of"),
    ("ssl3d_unet_encoder", {"dropout": 1.5}, r"dropout must be a number in \[0, 1\)"),
]
BASES = {"plain_conv_unet": PLAIN, "residual_encoder_unet": RESIDUAL, "nested_unet": PLAIN,
         "genesis_unet3d": {}, "med3d_resnet": {"depth": 10}, "ssl3d_unet_encoder": {},
         "nnunet_encoder": {k: v for k, v in PLAIN.items() if k != "num_classes"}}


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def refused_quickly(call: Callable[[], Any], error: type[Exception], match: str) -> None:
    """``call`` raises ``error`` naming ``match`` in well under a second, without growing the peak memory."""
    before_rss, start = _peak_kib(), time.perf_counter()
    with pytest.raises(error, match=match):
        call()
    assert time.perf_counter() - start < 0.5
    assert _peak_kib() - before_rss < 64 * 1024, "the refusal allocated more than 64 MiB"


@pytest.mark.parametrize("arch, change, key", HUGE_SPECS + BAD_TYPES)
def test_oversized_or_ill_typed_specs_are_refused_before_building(arch, change, key):
    spec = {**copy.deepcopy(BASES[arch]), **change}
    refused_quickly(lambda: build_architecture(arch, **spec), ArchitectureSpecError, key)
    with torch.device("meta"):   # the check runs on the meta device too (it never looks at the device)
        refused_quickly(lambda: build_architecture(arch, **spec), ValueError, key)


@pytest.mark.parametrize("arch, change, key", HUGE_SPECS + BAD_TYPES)
def test_oversized_or_ill_typed_model_folders_are_refused_by_zoo_load(tiny_folder, arch, change, key):
    spec = {**copy.deepcopy(BASES[arch]), **change}
    in_channels, num_classes = spec.pop("in_channels", 1), spec.pop("num_classes", None)
    rewrite_config(tiny_folder, lambda c: c.update(architecture=arch, arch_kwargs=spec, in_channels=in_channels,
                                                   num_classes=num_classes,
                                                   input={**c["input"], "in_channels": in_channels}))
    name = re.match(r"[\w.\\\[\]]+", key).group(0)   # the key part of the expected message
    refused_quickly(lambda: zoo.load(str(tiny_folder)), CheckpointFormatError,
                    rf"config\.json: (arch_kwargs\.)?{name}")


PLAN_SIZES = [
    ({"features_per_stage": 8000}, "features_per_stage"),
    ({"n_conv_per_stage": 10**6}, "n_conv_per_stage"),
    ({"kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 10001]]}, r"kernel_sizes\[2\]\[2\]"),
    ({"n_stages": 10**6}, "n_stages"),
    ({"n_stages": 10**9, "features_per_stage": 4, "kernel_sizes": 3, "strides": 1, "n_conv_per_stage": 1,
      "n_conv_per_stage_decoder": 1}, "n_stages"),
    ({"features_per_stage": [4, 8.0, 16]}, r"features_per_stage\[1\]"),
    ({"n_conv_per_stage": [2, True, 2]}, r"n_conv_per_stage\[1\]"),
    ({"strides": [[1, 1, 1], [1, 2, -2], [2, 2, 2]]}, r"strides\[1\]"),
    ({"norm_op_kwargs": {"eps": 1e-5, "affine": True, "device": "cuda"}}, r"norm_op_kwargs\.device"),
    ({"nonlin_kwargs": {"inplace": True, "args": ["rm", "-rf", "/"]}}, r"nonlin_kwargs\.args"),
]


@pytest.mark.parametrize("change, key", PLAN_SIZES)
def test_oversized_plans_are_refused_naming_the_configuration_and_key(change, key):
    plans = tiny_plans({**copy.deepcopy(TINY), **change})
    refused_quickly(lambda: arch_for_configuration(plans, "3d_fullres", TINY_DS), PlanError,
                    rf"configuration '3d_fullres': architecture\.arch_kwargs\.{key}")


def test_plan_activations_and_build_time_channels_are_bounded():
    plans = tiny_plans(patch=[16 * 10**4, 32 * 10**4, 32 * 10**4])   # divisible by the strides, absurd volume
    refused_quickly(lambda: arch_for_configuration(plans, "3d_fullres", TINY_DS), PlanError,
                    r"configuration '3d_fullres': patch_size = .* activation elements")
    spec = arch_for_configuration(tiny_plans(), "3d_fullres", TINY_DS, num_classes=10**9)
    refused_quickly(lambda: build_from_plan(spec), PlanError, "num_classes")
    kwargs = {**copy.deepcopy(TINY), "n_stages": 3}
    with pytest.raises(PlanError, match="n_stages = 17 is above the limit"):
        arch_for_configuration(tiny_plans({**kwargs, "n_stages": 17}), "3d_fullres", TINY_DS)


def test_model_config_files_are_read_bounded_and_field_checked(tiny_folder):
    config_path = tiny_folder / "config.json"
    original = config_path.read_text()
    config_path.write_text(original[:-1] + ", \"padding\": \"" + "x" * MAX_CONFIG_BYTES + "\"}")
    refused_quickly(lambda: zoo.load(str(tiny_folder)), CheckpointFormatError, "larger than 1,048,576 bytes")
    for text, message in (("[" * 100_000 + "]" * 100_000, "not valid JSON"), ("[1, 2]", "must hold a JSON object"),
                          ("\xff\xfe{", "not valid JSON"), ('{"a": 1e999999}', "architecture must be one of")):
        config_path.write_bytes(text.encode("latin-1"))
        refused_quickly(lambda: zoo.load(str(tiny_folder)), CheckpointFormatError, message)
    fields = [
        ("architecture", None, "architecture must be one of"), ("architecture", 7, "architecture must be one of"),
        ("in_channels", 1.0, "in_channels must be an integer"), ("in_channels", True, "in_channels must be an integer"),
        ("in_channels", 0, "in_channels must be an integer"), ("num_classes", "2", "num_classes must be null or"),
        ("num_classes", -2, "num_classes must be null or"), ("arch_kwargs", [1], "arch_kwargs must be an object"),
        ("first_conv", "encoder", "first_conv must be a list of strings"),
        ("classifier", [1], "classifier must be a list of strings"), ("tags", [{}], "tags must be a list of strings"),
        ("name", 5, "name must be a string"), ("input", [], "input must be an object"),
        ("input", {"patch_size": [10**9] * 3}, r"input\.patch_size must be a list"),
        ("input", {"spacing_mm": [0, 1, 1]}, r"input\.spacing_mm must be null or"),
        ("input", {"in_channels": 3}, "input.in_channels = 3 disagrees with in_channels = 1"),
        ("input", {"evil": 1}, r"input\.evil is not a field of input"),
        ("license", {"spdx": 1}, r"license\.spdx must be a string"),
        ("license", {"spdx": "mit", "redistributable": "yes"}, r"license\.redistributable must be true or false"),
        ("pretraining", {"data": "x", "method": "y", "datasets": "abc"}, r"pretraining\.datasets must be a list"),
        ("paper", "x", "paper must be an object"),
    ]
    for key, value, message in fields:
        config_path.write_text(original)

        def change(c: dict, key: str = key, value: Any = value) -> None:
            c[key] = {**c.get(key, {}), **value} if key == "input" and isinstance(value, dict) else value

        rewrite_config(tiny_folder, change)
        with pytest.raises(CheckpointFormatError, match=rf"config\.json: {message}"):
            read_model_dir(tiny_folder)
    config_path.write_text(original)
    assert read_model_dir(tiny_folder)[0].name == "tiny"


def test_limits_are_generous_for_every_real_network():
    """STU-Net-huge-sized and ResEnc-XL-sized nnU-Net networks and MedicalNet ResNet-200 pass, with room."""
    stu_huge = {"n_stages": 6, "features_per_stage": [96, 192, 384, 768, 1536, 1536], "kernel_sizes": 3,
                "strides": [1, 2, 2, 2, 2, 2], "n_blocks_per_stage": [3, 3, 3, 3, 3, 3], "n_conv_per_stage_decoder": 3,
                **OPS}
    huge = check_architecture("residual_encoder_unet", {**stu_huge, "in_channels": 1, "num_classes": 105},
                              patch_size=[128, 128, 128])
    assert 1.0e9 < huge.parameters < MAX_PARAMETERS and huge.layers < MAX_LAYERS and huge.activations < MAX_ACTIVATIONS
    resenc_xl = {"n_stages": 6, "features_per_stage": [32, 64, 128, 256, 320, 320], "kernel_sizes": 3,
                 "strides": [1, 2, 2, 2, 2, 2], "n_blocks_per_stage": [1, 3, 4, 6, 6, 6], "n_conv_per_stage_decoder": 1,
                 **OPS}
    check_architecture("residual_encoder_unet", {**resenc_xl, "in_channels": 4, "num_classes": 4},
                       patch_size=[192, 192, 192])
    two_d = {"n_stages": 8, "features_per_stage": [32, 64, 128, 256, 512, 512, 512, 512], "kernel_sizes": 3,
             "strides": [1, 2, 2, 2, 2, 2, 2, 2], "n_conv_per_stage": 2, "n_conv_per_stage_decoder": 2,
             **OPS, "conv_op": "torch.nn.modules.conv.Conv2d",
             "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d"}
    check_architecture("plain_conv_unet", {**two_d, "in_channels": 3, "num_classes": 20}, patch_size=[2048, 2048])
    assert check_architecture("med3d_resnet", {"depth": 200, "num_classes": 1000}).parameters < MAX_PARAMETERS / 10
    assert MAX_KERNEL >= 7 and MAX_STAGES >= 8 and MAX_PER_STAGE >= 36


# ================================================================================ the arithmetic is exact
def meta_build(arch: str, spec: dict) -> nn.Module:
    with torch.device("meta"):
        return build_architecture(arch, **copy.deepcopy(spec))


def test_estimate_matches_every_registry_entry():
    from zoo.archs.build import build_model

    for entry in zoo.registry.all_entries():
        spec = {**entry.build_kwargs(), "in_channels": entry.input.in_channels, "num_classes": entry.num_classes}
        with torch.device("meta"):
            model = build_model(entry)
        estimate = check_architecture(entry.architecture, spec)
        assert estimate.parameters == params(model), entry.name
        layers = sum(isinstance(m, (nn.Conv3d, nn.ConvTranspose3d, nn.Linear)) for m in model.modules())
        assert estimate.layers == layers, entry.name


VARIANTS = [
    ("genesis_unet3d", {"in_channels": 3, "num_classes": 5, "act": "prelu"}),
    ("genesis_unet3d", {"in_channels": 2, "num_classes": None, "act": "elu", "upstream_bn": True}),
    ("med3d_resnet", {"depth": 18, "num_classes": 7, "head": "segmentation", "in_channels": 2}),
    ("med3d_resnet", {"depth": 50, "num_classes": 3, "dilated": False, "shortcut_type": "A"}),
    ("med3d_resnet", {"depth": 34, "features_only": True, "out_indices": [1, 3]}),
    ("ssl3d_unet_encoder", {"features_per_stage": [8, 16, 24], "num_classes": 4, "norm_op_kwargs": {"affine": False}}),
    ("nnunet_encoder", {**BASES["nnunet_encoder"], "num_classes": 6}),
    ("nnunet_encoder", {**{k: v for k, v in RESIDUAL.items() if k != "num_classes"}, "unet": "residual_encoder_unet",
                        "block": "BottleneckD", "bottleneck_channels": [2, 4, 8], "stem_channels": 6}),
    ("plain_conv_unet", {**PLAIN, "norm_op": "torch.nn.GroupNorm", "norm_op_kwargs": {"num_channels": 16},
                         "features_per_stage": [4, 8, 16], "nonlin": "torch.nn.PReLU",
                         "nonlin_kwargs": {"num_parameters": 4}, "deep_supervision": True}),
    ("plain_conv_unet", {**PLAIN, "norm_op": "torch.nn.LayerNorm", "norm_op_kwargs": {"bias": False},
                         "conv_bias": False, "dropout_op": "torch.nn.Dropout3d", "dropout_op_kwargs": {"p": 0.1}}),
    ("plain_conv_unet", {**PLAIN, "norm_op": "torch.nn.modules.batchnorm.BatchNorm3d",
                         "norm_op_kwargs": {"affine": False}, "nonlin": None, "features_per_stage": 5,
                         "kernel_sizes": 3, "n_conv_per_stage": 3}),
    ("residual_encoder_unet", RESIDUAL),
    ("residual_encoder_unet", {**RESIDUAL, "block": "dynamic_network_architectures.building_blocks.residual."
                                                    "BottleneckD", "bottleneck_channels": 3, "stem_channels": 5,
                               "nonlin": "torch.nn.PReLU", "nonlin_kwargs": {"num_parameters": 1}}),
    ("nested_unet", {**PLAIN, "deep_supervision": True, "deep_supervision_mode": "top_row"}),
    ("nested_unet", {**PLAIN, "branch": 1}),
]


@pytest.mark.parametrize("arch, spec", VARIANTS)
def test_estimate_matches_built_networks(arch, spec):
    model = meta_build(arch, spec)
    estimate = check_architecture(arch, spec)
    assert estimate.parameters == params(model)
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
    assert estimate.layers == sum(isinstance(m, convs) for m in model.modules())


def forward_outputs(model: nn.Module, shape: list[int]) -> int:
    """Elements output by every conv / transposed conv / linear layer in one forward at batch 1 (meta device)."""
    total = [0]
    hooks = [m.register_forward_hook(lambda m, i, o: total.__setitem__(0, total[0] + o.numel()))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d))]
    with torch.no_grad():
        model(torch.empty(1, *shape, device="meta"))
    for h in hooks:
        h.remove()
    return total[0]


NNUNET_PLANS = [
    ("demo plans (4-channel MRI)", DEMO_PLANS, DEMO_DATASET, {}),
    ("demo plans, deep supervision", DEMO_PLANS, DEMO_DATASET, {"deep_supervision": True}),
    ("anisotropic", tiny_plans(), TINY_DS, {}),
    ("residual, bottleneck", tiny_plans({**{k: v for k, v in TINY.items() if k != "n_conv_per_stage"},
                                         "n_blocks_per_stage": [1, 3, 2], "block": "BottleneckD",
                                         "bottleneck_channels": [2, 4, 4]}, cls="ResidualEncoderUNet"), TINY_DS, {}),
    ("residual, 2D", tiny_plans({**{k: v for k, v in TINY.items() if k != "n_conv_per_stage"},
                                 "kernel_sizes": [[3, 3]] * 3, "strides": [[1, 1], [2, 2], [2, 2]],
                                 "n_blocks_per_stage": [2, 2, 2], "conv_op": "torch.nn.modules.conv.Conv2d",
                                 "norm_op": "torch.nn.modules.batchnorm.BatchNorm2d", "norm_op_kwargs": None,
                                 "dropout_op": "torch.nn.Dropout2d", "dropout_op_kwargs": {"p": 0.2},
                                 "nonlin": "torch.nn.ReLU"}, cls="ResidualEncoderUNet", patch=[64, 48]), TINY_DS,
     {"deep_supervision": True}),
]


@pytest.mark.parametrize("name, plans, dataset, extra", NNUNET_PLANS, ids=[p[0] for p in NNUNET_PLANS])
def test_estimate_matches_nnunet_plans_parameters_and_activations(name, plans, dataset, extra):
    plans = json.loads(Path(plans).read_text()) if isinstance(plans, Path) else plans
    dataset = json.loads(Path(dataset).read_text()) if isinstance(dataset, Path) else dataset
    spec = arch_for_configuration(plans, "3d_fullres", dataset)
    patch = plans["configurations"]["3d_fullres"]["patch_size"]
    model = build_from_plan(spec, device="meta", **extra)
    estimate = check_architecture(spec.arch, {**spec.arch_kwargs, "in_channels": spec.in_channels,
                                              "num_classes": spec.num_classes, **extra}, patch_size=patch)
    assert estimate.parameters == params(model)
    assert estimate.activations == forward_outputs(model, [spec.in_channels, *patch])


@pytest.mark.parametrize("extra", [{}, {"deep_supervision": True}, {"deep_supervision": True,
                                                                     "deep_supervision_mode": "top_row"},
                                   {"branch": 1}])
def test_nested_unet_activations_follow_the_branches_that_run(extra):
    spec = {**PLAIN, **extra}
    model = meta_build("nested_unet", spec)
    estimate = check_architecture("nested_unet", spec, patch_size=[16, 32, 32])
    assert estimate.parameters == params(model)
    assert estimate.activations == forward_outputs(model, [1, 16, 32, 32])


def test_argument_tables_match_the_builders():
    from zoo.archs import genesis_unet3d, med3d_resnet, nested_unet, nnunet_blocks, nnunet_unet, ssl3d_encoder

    def names(fn: Callable, drop: tuple[str, ...] = ()) -> set[str]:
        return {n for n, p in inspect.signature(fn).parameters.items()
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in ("self", *drop)}

    heads = ("input_channels",)
    assert ARGUMENTS["genesis_unet3d"] == names(genesis_unet3d.build_unet3d)
    assert ARGUMENTS["med3d_resnet"] == names(med3d_resnet.build_med3d_resnet)
    assert ARGUMENTS["plain_conv_unet"] == names(nnunet_unet.build_plain_conv_unet) | names(
        nnunet_unet.PlainConvUNet.__init__, heads)
    assert ARGUMENTS["residual_encoder_unet"] == names(nnunet_unet.build_residual_encoder_unet) | names(
        nnunet_unet.ResidualEncoderUNet.__init__, heads)
    assert ARGUMENTS["nested_unet"] == names(nested_unet.build_nested_unet) | names(nested_unet.NestedUNet.__init__,
                                                                                      heads)
    assert ARGUMENTS["ssl3d_unet_encoder"] == names(ssl3d_encoder.build_ssl3d_unet_encoder)
    encoder = ("input_channels", "return_skips")
    assert ARGUMENTS["nnunet_encoder"] == (names(ssl3d_encoder.build_nnunet_encoder) | set(ssl3d_encoder._DECODER_ONLY)
                                           | names(nnunet_blocks.PlainConvEncoder.__init__, encoder)
                                           | names(nnunet_blocks.ResidualEncoder.__init__, encoder))
    assert set(ARGUMENTS) == set(ARCHITECTURES)


# ================================================================================================= fuzzing
SMALL_INTS = st.sampled_from([0, 1, 2, 3, 4, 5, 7, 16, 31, 32, 127, 128, 129, 16384, 16385, 100_001, 10**6, 10**9,
                              2**63, -1, -3, -10**9])
SCALARS = (st.none() | st.booleans() | SMALL_INTS | st.integers(-10**12, 10**12)
           | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1.0, 3.0, 0.5, 1e300])
           | st.sampled_from(["torch.nn.LeakyReLU", "torch.nn.modules.conv.Conv3d", "torch.nn.Conv2d",
                              "subprocess.Popen", "os.system", "io.FileIO", "builtins.eval", "BottleneckD",
                              "", "x" * 300]) | st.text(max_size=8))
JUNK = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
    st.sampled_from(["eps", "affine", "inplace", "p", "num_channels", "args", "device", "bias", "x"]), inner,
    max_size=3), max_leaves=8)


OP_NAMES = st.sampled_from(["torch.nn.LeakyReLU", "torch.nn.ReLU", "torch.nn.PReLU", "torch.nn.modules.conv.Conv3d",
                            "torch.nn.Conv2d", "torch.nn.modules.instancenorm.InstanceNorm3d", "torch.nn.BatchNorm3d",
                            "torch.nn.GroupNorm", "torch.nn.LayerNorm", "torch.nn.Dropout3d", "torch.nn.GELU",
                            "subprocess.Popen", "os.system", "io.FileIO", "builtins.eval"])


def plausible(value: Any) -> st.SearchStrategy:
    """A value of the same kind as ``value`` (so that some mutated specs still build)."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(1, 6) | SMALL_INTS
    if isinstance(value, float):
        return st.floats(0, 1) | st.sampled_from([1e-5, 0.01])
    if isinstance(value, str):
        return OP_NAMES
    return JUNK


def mutate(data: st.DataObject, value: Any, depth: int = 0) -> Any:
    """``value`` with one entry replaced: the value itself, a list element, or a dict value, by a value of the
    same kind or by junk."""
    if depth < 2 and isinstance(value, list) and value and data.draw(st.booleans()):
        value = list(value)
        i = data.draw(st.integers(0, len(value) - 1))
        value[i] = mutate(data, value[i], depth + 1)
        return value
    if depth < 2 and isinstance(value, dict) and value and data.draw(st.booleans()):
        value = dict(value)
        key = data.draw(st.sampled_from(sorted(value)))
        value[key] = mutate(data, value[key], depth + 1)
        return value
    return data.draw(plausible(value) if data.draw(st.booleans()) else JUNK)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data())
def test_fuzzed_real_plans_build_as_estimated_or_fail_with_plan_error(data):
    plans = json.loads(DEMO_PLANS.read_text())
    dataset = json.loads(DEMO_DATASET.read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    arch["arch_kwargs"]["features_per_stage"] = [4, 8, 8, 16, 16, 16]   # keep the fuzzed builds quick
    for _ in range(data.draw(st.integers(1, 2))):
        key = data.draw(st.sampled_from(sorted(arch["arch_kwargs"]) + ["patch_size", "network_class_name", "new"]))
        if key == "patch_size":
            conf = plans["configurations"]["3d_fullres"]
            conf["patch_size"] = mutate(data, conf["patch_size"])
        elif key == "network_class_name":
            arch[key] = mutate(data, arch[key])
        else:
            arch["arch_kwargs"][key] = mutate(data, arch["arch_kwargs"].get(key))
    start = time.perf_counter()
    try:
        spec = arch_for_configuration(plans, "3d_fullres", dataset)
    except PlanError as err:
        event(f"refused: {str(err).split(' ', 3)[2]}")
        assert time.perf_counter() - start < 2.0
        return
    event("built")
    model = build_from_plan(spec, device="meta")   # a plan the reader accepts builds: no error at all
    estimate = estimate_architecture(spec.arch, {**spec.arch_kwargs, "in_channels": spec.in_channels,
                                                 "num_classes": spec.num_classes})
    assert estimate.parameters == params(model) <= MAX_PARAMETERS
    assert time.perf_counter() - start < 10.0


@FUZZ
@given(data=st.data())
def test_fuzzed_real_model_folder_configs_build_as_estimated_or_fail_with_checkpoint_format_error(data, tmp_path):
    config = json.loads(DEMO_FOLDER_CONFIG.read_text())
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    (folder / "model.safetensors").write_bytes(b"")   # pretrained=False never reads it
    for _ in range(data.draw(st.integers(1, 2))):
        if isinstance(config.get("arch_kwargs"), dict) and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(sorted(config["arch_kwargs"]) + ["new"]))
            config["arch_kwargs"][key] = mutate(data, config["arch_kwargs"].get(key))
        else:
            key = data.draw(st.sampled_from(["architecture", "in_channels", "num_classes", "arch_kwargs", "first_conv",
                                             "classifier", "input", "license", "pretraining", "paper", "tags", "name",
                                             "description", "base_model"]))
            config[key] = mutate(data, config.get(key))
    (folder / "config.json").write_text(json.dumps(config))
    start = time.perf_counter()
    try:
        with torch.device("meta"):
            model = zoo.load(str(folder), pretrained=False)
    except CheckpointFormatError as err:
        event(f"refused: {str(err).split('config.json: ', 1)[-1].split(' ', 1)[0]}")
        assert time.perf_counter() - start < 2.0
        return
    event("built")
    entry = model.pretrained_cfg
    spec = {**entry.build_kwargs(), "in_channels": entry.input.in_channels, "num_classes": entry.num_classes}
    estimate = estimate_architecture(entry.architecture, spec)
    assert estimate.parameters == params(model) <= MAX_PARAMETERS
    assert time.perf_counter() - start < 10.0


@pytest.mark.parametrize("content", [
    b"[" * 100_000 + b"]" * 100_000,       # nesting deeper than the JSON parser's recursion limit
    b'{"configurations": ' + b" " * (65 << 20) + b"{}}",  # larger than any plans file
    b"\xff\xfe not utf-8",
    b"[]",
])
def test_hostile_plans_and_dataset_json_files_are_one_plan_error(tmp_path, content):
    from zoo.nnunet.plans import load_dataset_json, load_plans

    for reader, name in ((load_plans, "nnUNetPlans.json"), (load_dataset_json, "dataset.json")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(PlanError) as err:
            reader(path)
        assert str(path) in str(err.value)
