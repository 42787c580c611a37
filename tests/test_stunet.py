"""STU-Net (zoo/archs/stunet.py, zoo/entries/stunet.py): the authors' layout built here from their published facts
(github.com/uni-medical/STU-Net, nnUNet-1.7.1/nnunet/network_architecture/STUNet.py and STUNetTrainer.py), saved
as their nnU-Net v1 trainer pickle, loaded through medzoo and compared with a functional re-implementation; the
plan rewrite nnU-Net v2 builds from; transfer into another dataset's STU-Net plan."""

from __future__ import annotations

import copy
import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.errors import AdaptationError, CheckpointFormatError, PlanError

DEMO = Path(__file__).resolve().parent.parent / "zoo" / "assets" / "demo"
CONF = "3d_fullres"

# the published facts (STUNetTrainer_{small,base,large,huge}; plan_files/*_ep4k.model.pkl)
WIDTHS = {"small": 16, "base": 32, "large": 64, "huge": 96}
DEPTH = {"small": 1, "base": 1, "large": 2, "huge": 3}
FACTORS = [1, 2, 4, 8, 16, 16]
POOLS = [[2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 1, 2]]  # upstream pool_op_kernel_sizes (z, y, x)
README_MILLIONS = {"small": 14.6, "base": 58.26, "large": 440.30, "huge": 1457.33}

pytestmark = [pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions: one thread is faster than two contending ones (as tests/test_adapt.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------- the authors' layout, from the facts
def authors_state_dict(in_ch: int, classes: int, dims: list[int], depth: list[int], kernel: int = 3,
                       seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """Every key of upstream STUNet.state_dict() with its shape, random values (norm weights around 1)."""
    g = torch.Generator().manual_seed(seed)
    sd: OrderedDict = OrderedDict()

    def block(prefix: str, cin: int, cout: int, shortcut: bool) -> None:
        k = (kernel,) * 3
        fan = cin * kernel ** 3
        sd[f"{prefix}.conv1.weight"] = torch.randn(cout, cin, *k, generator=g) / math.sqrt(fan)
        sd[f"{prefix}.conv1.bias"] = torch.randn(cout, generator=g) * 0.1
        sd[f"{prefix}.norm1.weight"] = 1 + 0.2 * torch.randn(cout, generator=g)
        sd[f"{prefix}.norm1.bias"] = 0.1 * torch.randn(cout, generator=g)
        sd[f"{prefix}.conv2.weight"] = torch.randn(cout, cout, *k, generator=g) / math.sqrt(cout * kernel ** 3)
        sd[f"{prefix}.conv2.bias"] = torch.randn(cout, generator=g) * 0.1
        sd[f"{prefix}.norm2.weight"] = 1 + 0.2 * torch.randn(cout, generator=g)
        sd[f"{prefix}.norm2.bias"] = 0.1 * torch.randn(cout, generator=g)
        if shortcut:
            sd[f"{prefix}.conv3.weight"] = torch.randn(cout, cin, 1, 1, 1, generator=g) / math.sqrt(cin)
            sd[f"{prefix}.conv3.bias"] = torch.randn(cout, generator=g) * 0.1

    n = len(dims)
    for d in range(n):
        for b in range(depth[d]):
            block(f"conv_blocks_context.{d}.{b}", (in_ch if d == 0 else dims[d - 1]) if b == 0 else dims[d], dims[d],
                  b == 0)
    for u in range(n - 1):
        sd[f"upsample_layers.{u}.conv.weight"] = torch.randn(dims[-2 - u], dims[-1 - u], 1, 1, 1, generator=g) \
            / math.sqrt(dims[-1 - u])
        sd[f"upsample_layers.{u}.conv.bias"] = torch.randn(dims[-2 - u], generator=g) * 0.1
    for u in range(n - 1):
        for b in range(depth[-2 - u]):
            block(f"conv_blocks_localization.{u}.{b}", 2 * dims[-2 - u] if b == 0 else dims[-2 - u], dims[-2 - u],
                  b == 0)
    for u in range(n - 1):
        sd[f"seg_outputs.{u}.weight"] = torch.randn(classes, dims[-2 - u], 1, 1, 1, generator=g) / math.sqrt(dims[-2 - u])
        sd[f"seg_outputs.{u}.bias"] = torch.randn(classes, generator=g) * 0.1
    return sd


def reference_forward(sd, x: torch.Tensor, pools: list[list[int]], deep_supervision: bool = False):
    """STU-Net's forward written from the published description, functionally (no medzoo module)."""

    def res_block(p: str, x: torch.Tensor, stride) -> torch.Tensor:
        k = sd[f"{p}.conv1.weight"].shape[-1]
        y = F.conv3d(x, sd[f"{p}.conv1.weight"], sd[f"{p}.conv1.bias"], stride=stride, padding=k // 2)
        y = F.leaky_relu(F.instance_norm(y, weight=sd[f"{p}.norm1.weight"], bias=sd[f"{p}.norm1.bias"], eps=1e-5), 0.01)
        y = F.conv3d(y, sd[f"{p}.conv2.weight"], sd[f"{p}.conv2.bias"], padding=k // 2)
        y = F.instance_norm(y, weight=sd[f"{p}.norm2.weight"], bias=sd[f"{p}.norm2.bias"], eps=1e-5)
        if f"{p}.conv3.weight" in sd:
            x = F.conv3d(x, sd[f"{p}.conv3.weight"], sd[f"{p}.conv3.bias"], stride=stride)
        return F.leaky_relu(y + x, 0.01)

    def stage(prefix: str, x: torch.Tensor, stride) -> torch.Tensor:
        b = 0
        while f"{prefix}.{b}.conv1.weight" in sd:
            x = res_block(f"{prefix}.{b}", x, stride if b == 0 else 1)
            b += 1
        return x

    n = len(pools) + 1
    skips = []
    for d in range(n):
        x = stage(f"conv_blocks_context.{d}", x, 1 if d == 0 else pools[d - 1])
        skips.append(x)
    outs = []
    for u in range(n - 1):
        x = F.interpolate(x, scale_factor=pools[-1 - u], mode="nearest")
        x = F.conv3d(x, sd[f"upsample_layers.{u}.conv.weight"], sd[f"upsample_layers.{u}.conv.bias"])
        x = stage(f"conv_blocks_localization.{u}", torch.cat([x, skips[-2 - u]], 1), 1)
        outs.append(F.conv3d(x, sd[f"seg_outputs.{u}.weight"], sd[f"seg_outputs.{u}.bias"]))
    return [outs[-1]] + outs[:-1][::-1] if deep_supervision else outs[-1]


def save_v1_trainer_pickle(sd, path: Path) -> None:
    """nnU-Net v1 NetworkTrainer.save_checkpoint's dict (SGD state as torch.optim.SGD.state_dict() writes it),
    numpy scalars in plot_stuff as upstream writes them."""
    first = next(iter(sd.values()))
    opt = {"state": {0: {"momentum_buffer": torch.zeros_like(first)}},
           "param_groups": [{"lr": 0.01, "momentum": 0.99, "dampening": 0, "weight_decay": 3e-05, "nesterov": True,
                             "maximize": False, "foreach": None, "differentiable": False, "fused": None,
                             "params": list(range(len(sd)))}]}
    torch.save({"epoch": 4000, "state_dict": sd, "optimizer_state_dict": opt,
                "lr_scheduler_state_dict": None,
                "plot_stuff": ([np.float64(0.9), np.float64(0.5)], [np.float64(0.8)], [], [np.float64(0.7)]),
                "best_stuff": (3999, np.float64(0.5), np.float64(0.7))}, path)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    sd = authors_state_dict(1, 105, [WIDTHS["small"] * f for f in FACTORS], [DEPTH["small"]] * 6)
    path = tmp_path_factory.mktemp("stunet") / "small_ep4k.model"
    save_v1_trainer_pickle(sd, path)
    return path, sd


# -------------------------------------------------------------------------------------------------- tests
def test_class_keys_and_outputs_equal_the_reference_on_a_tiny_anisotropic_layout():
    from zoo.archs.stunet import build_stunet

    dims, depth, pools = [4, 6, 8, 8], [2, 1, 3, 2], [[1, 2, 2], [2, 2, 1], [2, 1, 2]]
    sd = authors_state_dict(3, 5, dims, depth, seed=1)
    net = build_stunet(in_channels=3, num_classes=5, n_stages=4, features_per_stage=dims, kernel_sizes=3,
                       strides=[[1, 1, 1]] + pools, n_blocks_per_stage=depth).eval()
    assert list(net.state_dict()) == list(sd)           # same keys, same order
    net.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, 8, 16, 12)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference_forward(sd, x, pools), rtol=0, atol=1e-5)
        net.decoder.deep_supervision = True
        out, ref = net(x), reference_forward(sd, x, pools, deep_supervision=True)
    assert [o.shape for o in out] == [r.shape for r in ref] and out[0].shape == (2, 5, 8, 16, 12)
    for o, r in zip(out, ref):
        torch.testing.assert_close(o, r, rtol=0, atol=1e-5)


def test_zoo_load_of_the_authors_v1_pickle_equals_the_reference(small_file, tmp_path):
    path, sd = small_file
    net = zoo.load("stunet-small", checkpoint=path, cache_dir=tmp_path, progress=False).eval()
    assert type(net).__name__ == "STUNet" and set(net.state_dict()) == set(sd)
    x = torch.randn(1, 1, 32, 16, 32)  # bottleneck 2x1x1: instance norm needs more than one voxel
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference_forward(sd, x, POOLS), rtol=0, atol=1e-4)
    meta = json.loads(next((tmp_path / "converted" / "stunet-small").glob("*/meta.json")).read_text())
    assert {"optimizer_state_dict", "plot_stuff", "best_stuff", "epoch"} <= set(meta["dropped_entries"])
    # in_channels / num_classes exact: both input convolutions adapted, new heads
    other = zoo.load("stunet-small", checkpoint=path, cache_dir=tmp_path, progress=False, in_channels=3,
                     num_classes=7)
    osd = other.state_dict()
    for key in ("conv_blocks_context.0.0.conv1.weight", "conv_blocks_context.0.0.conv3.weight"):
        assert osd[key].shape[1] == 3
        torch.testing.assert_close(osd[key].sum(1, keepdim=True), sd[key])      # repeat_scale
    assert all(osd[f"seg_outputs.{u}.weight"].shape[0] == 7 for u in range(5))
    assert other(torch.randn(1, 3, 32, 16, 32)).shape == (1, 7, 32, 16, 32)


def test_missing_encoder_key_is_refused(tmp_path):
    sd = authors_state_dict(1, 105, [2] * 6, [1] * 6)  # the converter refuses before any shape is compared
    for missing in ("conv_blocks_context.3.0.conv3.weight", "conv_blocks_context.0.0.norm1.bias"):
        broken = OrderedDict((k, v) for k, v in sd.items() if k != missing)
        path = tmp_path / f"{missing}.model"
        save_v1_trainer_pickle(broken, path)
        with pytest.raises(CheckpointFormatError) as err:
            zoo.load("stunet-small", checkpoint=path, cache_dir=tmp_path / "c", progress=False)
        assert err.value.key == missing and missing in str(err.value)


def test_parameter_counts_match_the_readme_and_the_estimate():
    from zoo.archs.size_estimate import estimate_architecture
    from zoo.archs.stunet import STUNet
    from zoo.entries.stunet import SIZES, stunet_arch_kwargs

    for size in ("small", "base", "large", "huge"):
        kw = stunet_arch_kwargs(size)
        device = "cpu" if size in ("small", "base") else "meta"
        with torch.device(device):
            net = STUNet(input_channels=1, num_classes=105, **kw)
        n = sum(p.numel() for p in net.parameters())
        assert round(n / 1e6, 2 if size != "small" else 1) == README_MILLIONS[size], (size, n)
        assert n == SIZES[size][2] == estimate_architecture("stunet", {**kw, "in_channels": 1, "num_classes": 105}
                                                            ).parameters
        assert [net.conv_blocks_context[s][0].conv1.out_channels for s in range(6)] == \
            [WIDTHS[size] * f for f in FACTORS]
        assert all(len(stage) == DEPTH[size] for stage in net.conv_blocks_context)


def _plan_with_patch(tmp_path: Path, patch: list[int]) -> Path:
    plans = json.loads((DEMO / "nnUNetPlans.json").read_text())
    plans["configurations"][CONF]["patch_size"] = patch
    out = tmp_path / "nnUNetPlans.json"
    out.write_text(json.dumps(plans))
    return out


def test_zoo_plan_arch_stunet_and_nnunet_builds_and_runs_the_network(tmp_path):
    from zoo.nnunet.plan_rewrite import rewrite_plan

    src = _plan_with_patch(tmp_path, [96, 160, 128])
    out = tmp_path / "nnUNetPlans_stunet.json"
    new = rewrite_plan("stunet-small", src, CONF, arch="stunet", output=out)
    c = new["configurations"][CONF]
    arch = c["architecture"]
    assert arch["network_class_name"] == "zoo.archs.stunet.STUNet" and arch["_kw_requires_import"] == ["conv_op"]
    assert arch["arch_kwargs"]["strides"] == [[1, 1, 1]] + POOLS
    assert c["patch_size"] == [128, 128, 128] and c["spacing"] == [1.5, 1.5, 1.5] and c["batch_size"] == 2
    assert c["normalization_schemes"] == ["ZScoreNormalization"] * 4 and c["use_mask_for_norm"] == [False] * 4
    assert c["data_identifier"] != "nnUNetPlans_3d_fullres"       # new preprocessing
    with pytest.raises(PlanError, match="stunet-small"):
        rewrite_plan(None, src, CONF, arch="stunet")
    with pytest.raises(PlanError, match="STU-Net"):
        rewrite_plan("genesis-chest-ct-nnunet-lung", src, CONF, arch="stunet")

    pytest.importorskip("nnunetv2")
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    cm = PlansManager(str(out)).get_configuration(CONF)
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, 4, 4, allow_init=True,
                                 deep_supervision=True)
    assert type(net).__name__ == "STUNet"
    patch = [32, 16, 32]
    scales = list(1 / np.cumprod(np.vstack(cm.pool_op_kernel_sizes), axis=0))[:-1]   # nnUNetTrainer's
    with torch.no_grad():
        outs = net(torch.randn(1, 4, *patch))
        assert [tuple(o.shape[2:]) for o in outs] == [tuple(int(p * s) for p, s in zip(patch, sc)) for sc in scales]
        net.decoder.deep_supervision = False                       # what nnUNetTrainer toggles
        assert net(torch.randn(1, 4, *patch)).shape == (1, 4, *patch)


def test_transfer_into_another_datasets_stunet_plan_copies_all_but_heads(small_file, tmp_path):
    from zoo.nnunet.export import adapt_to_plan
    from zoo.nnunet.plan_rewrite import rewrite_plan

    path, sd = small_file
    plans = rewrite_plan("stunet-small", _plan_with_patch(tmp_path, [64, 64, 64]), CONF, arch="stunet")
    net, report = adapt_to_plan("stunet-small", plans, CONF, DEMO / "dataset.json", state_dict=sd, seed=0)
    assert net.conv_blocks_context[0][0].conv1.in_channels == 4 and net.seg_outputs[0].out_channels == 4
    rows = {r.target_key: r for r in report.rows}
    assert {k for k, r in rows.items() if r.action in ("new", "skip")} == \
        {f"seg_outputs.{u}.{leaf}" for u in range(5) for leaf in ("weight", "bias")}
    for key in ("conv_blocks_context.0.0.conv1.weight", "conv_blocks_context.0.0.conv3.weight"):
        assert rows[key].action == "channels"
    assert all(rows[k].action == "copy" for k in sd if not k.startswith("seg_outputs")
               and k not in ("conv_blocks_context.0.0.conv1.weight", "conv_blocks_context.0.0.conv3.weight"))
    assert torch.equal(net.state_dict()["upsample_layers.4.conv.weight"], sd["upsample_layers.4.conv.weight"])
    # a PlainConvUNet plan has no counterpart for STU-Net's blocks: refused, not half-filled
    with pytest.raises(AdaptationError, match="STU-Net networks only"):
        adapt_to_plan("stunet-small", DEMO / "nnUNetPlans.json", CONF, DEMO / "dataset.json", state_dict=sd)
