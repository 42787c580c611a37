"""UNet++ (``zoo.archs.nested_unet.NestedUNet``) inside nnU-Net v2 (PyPI 2.8.1), the transfer into it, ``zoo plan
--arch unetpp`` and the ``unetpp-liver`` entry.

* Architecture: encoder keys, shapes and outputs identical to PlainConvUNet's (medzoo's and DNA's); deep
  supervision outputs against nnU-Net's own expectations (the trainers' scales, ``DownsampleSegForDSTransform``
  targets, ``DeepSupervisionWrapper`` losses), for random plans; branch pruning returns node ``X(0, b)`` and
  runs only the sub-network; nnunetv2's ``get_network_from_plans`` builds the class from its dotted path.
* Transfer: a PlainConvUNet fills the encoder and the U-Net path of a NestedUNet, which then computes exactly
  the U-Net's output; the report says what was copied; back to a U-Net; UNet++ to UNet++ by node.
* End to end on CPU with real nnunetv2: two real chest CT volumes with tumour labels (pyradiomics lung1/lung2,
  cropped and downsampled) in nnU-Net's raw layout, fingerprint + plan + preprocess by nnunetv2, ``zoo plan
  --arch unetpp``, ``zoo export-nnunet`` of the (fake, offline) Genesis nnU-Net weights, training through
  nnunetv2's ``-tr`` / ``-pretrained_weights`` code path with ``nnUNetTrainerUNetPlusPlus_smoke`` (found via
  ``nnUNet_extTrainer``), a step with the stock ``nnUNetTrainer``, prediction with ``nnUNetPredictor`` (also a
  pruned branch set in the results' plans.json) to segmentation files with the input's geometry.
"""

from __future__ import annotations

import copy
import json
import os
import pkgutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoo
import zoo.registry as registry
from zoo.adapt.engine import adapt_model, adapt_state_dict
from zoo.archs import build_architecture
from zoo.archs.nested_unet import NNUNET_CLASS_PATH, NestedUNet, node_name
from zoo.entries.genesis import LUNG_PLAN_ARCH_KWARGS
from zoo.entries.unetpp import LIVER_PLAN_ARCH_KWARGS
from zoo.errors import AdaptationError, WeightsNotAvailableError
from zoo.nnunet.export import export_nnunet
from zoo.nnunet.plan_rewrite import rewrite_plan
from zoo.nnunet.plans import PlanError, arch_for_configuration, build_from_plan

from data_fixtures import pyradiomics_dir  # noqa: F401  (session fixture)
from upstream import genesis_lung_cache

pytest.importorskip("nnunetv2")
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform  # noqa: E402
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights  # noqa: E402
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: E402
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans  # noqa: E402
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager  # noqa: E402

from zoo.nnunet.trainers import EXT_DIR, nnUNetTrainerUNetPlusPlus  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::zoo.LicenseWarning"),
              pytest.mark.filterwarnings("ignore:Detected old nnU-Net plans format")]

NAME = "genesis-chest-ct-nnunet-lung"
IMPORTS = ["conv_op", "norm_op", "dropout_op", "nonlin"]
OPS = {k: LUNG_PLAN_ARCH_KWARGS[k] for k in ("conv_op", "conv_bias", "norm_op", "norm_op_kwargs", "dropout_op",
                                             "dropout_op_kwargs", "nonlin", "nonlin_kwargs")}
DNA_PLAIN = "dynamic_network_architectures.architectures.unet.PlainConvUNet"


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def kwargs_for(features, kernels, strides, n_conv=2, n_dec=2, dims=3) -> dict:
    n = len(features)
    kw = {"n_stages": n, "features_per_stage": list(features), "kernel_sizes": [list(k) for k in kernels],
          "strides": [list(s) for s in strides], "n_conv_per_stage": [n_conv] * n,
          "n_conv_per_stage_decoder": [n_dec] * (n - 1), **copy.deepcopy(OPS)}
    if dims == 2:
        kw["conv_op"] = "torch.nn.modules.conv.Conv2d"
        kw["norm_op"] = "torch.nn.modules.instancenorm.InstanceNorm2d"
    return kw


SMALL = kwargs_for([4, 6, 8, 10, 12], [[1, 3, 3]] + [[3, 3, 3]] * 4,
                   [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 1]], n_dec=1)
SMALL_PATCH = (8, 16, 16)


def build(arch, kwargs, num_classes=3, randomise=True, seed=0, **extra):
    torch.manual_seed(seed)
    net = build_architecture(arch, in_channels=1, num_classes=num_classes, **copy.deepcopy(kwargs), **extra)
    if randomise:  # every tensor random (norms and biases too), so that a wrong copy shows
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn_like(p) * 0.3 + (0.5 if p.dim() == 1 else 0.0))
    return net.eval()


def patch_for(kwargs, factor=2):
    total = [1] * len(kwargs["strides"][0])
    for s in kwargs["strides"]:
        total = [t * v for t, v in zip(total, s)]
    return [t * factor for t in total]


# ------------------------------------------------------------------------------------------ architecture


@pytest.mark.parametrize("kwargs", [SMALL, LUNG_PLAN_ARCH_KWARGS, LIVER_PLAN_ARCH_KWARGS],
                         ids=["small", "lung", "liver"])
def test_encoder_keys_and_shapes_are_plain_conv_unets_and_dnas(kwargs):
    with torch.device("meta"):
        nested = build_architecture("nested_unet", in_channels=1, num_classes=3, **copy.deepcopy(kwargs))
        plain = build_architecture("plain_conv_unet", in_channels=1, num_classes=3, **copy.deepcopy(kwargs))
        dna = get_network_from_plans(DNA_PLAIN, copy.deepcopy(kwargs), IMPORTS, 1, 3, allow_init=False)

    def encoder(net):
        return [(k, tuple(v.shape)) for k, v in net.state_dict().items()
                if k.startswith(("encoder.", "decoder.encoder."))]

    assert encoder(nested) == encoder(plain) == encoder(dna)
    assert all(".seg_layers." in k for k in nested.state_dict() if ".seg_layers" in k)
    depth = kwargs["n_stages"] - 1
    assert sorted(nested.decoder.nodes) == sorted(node_name(i, j) for j in range(1, depth + 1)
                                                  for i in range(depth - j + 1))
    # heads: the top row X(0, 1..L) and the diagonal X(i, L-i)
    assert set(nested.decoder.seg_layers) == ({node_name(0, j) for j in range(1, depth + 1)}
                                               | {node_name(i, depth - i) for i in range(depth)})


def test_encoder_outputs_equal_plain_conv_unets_given_the_same_weights():
    plain = build("plain_conv_unet", SMALL)
    nested = build("nested_unet", SMALL, seed=1)
    missing, unexpected = nested.load_state_dict(
        {k: v for k, v in plain.state_dict().items() if k.startswith("encoder.")}, strict=False)
    assert not unexpected and all(not k.startswith("encoder.") for k in missing)
    x = torch.randn(2, 1, *SMALL_PATCH)
    with torch.no_grad():
        ours, ref = nested.encoder(x), plain.encoder(x)
    assert len(ours) == len(ref) == SMALL["n_stages"]
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)
    assert torch.equal(nested.forward_features(x), plain.forward_features(x))


def _trainer(cls, strides, patch):
    """A trainer object carrying only what nnU-Net's deep-supervision scale and loss code reads."""
    t = object.__new__(cls)
    t.enable_deep_supervision, t.is_ddp, t.device = True, False, torch.device("cpu")
    t.configuration_manager = SimpleNamespace(pool_op_kernel_sizes=strides, patch_size=list(patch), batch_dice=True)
    t.label_manager = SimpleNamespace(has_regions=False, ignore_label=None)
    return t


def _targets(scales, seg):
    """nnU-Net's data pipeline: DownsampleSegForDSTransform per sample, stacked per scale."""
    tr = DownsampleSegForDSTransform(ds_scales=scales)
    per_sample = [tr._apply_to_segmentation(s) for s in seg]
    return [torch.stack([p[k] for p in per_sample]) for k in range(len(scales))]


@st.composite
def random_plan(draw):
    n = draw(st.integers(3, 5))  # nnU-Net itself needs 3 stages for deep supervision (lowest weight is 0)
    dims = draw(st.sampled_from([2, 3]))
    kernels = [[draw(st.sampled_from([1, 3])) for _ in range(dims)] for _ in range(n)]
    strides = [[1] * dims] + [[draw(st.sampled_from([1, 2])) for _ in range(dims)] for _ in range(n - 1)]
    features = [draw(st.integers(2, 5)) for _ in range(n)]
    kw = kwargs_for(features, kernels, strides, n_conv=draw(st.integers(1, 2)), n_dec=draw(st.integers(1, 2)),
                    dims=dims)
    return kw, patch_for(kw, factor=draw(st.integers(2, 3)))  # InstanceNorm needs > 1 voxel at the bottom


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=random_plan(), classes=st.integers(2, 3))
def test_deep_supervision_outputs_are_what_nnunets_trainers_expect(case, classes):
    kw, patch = case
    depth = kw["n_stages"] - 1
    torch.manual_seed(0)
    net = build_architecture("nested_unet", in_channels=1, num_classes=classes, deep_supervision=True,
                             **copy.deepcopy(kw))
    with torch.device("meta"):
        dna = get_network_from_plans(DNA_PLAIN, copy.deepcopy(kw), IMPORTS, 1, classes, allow_init=False,
                                     deep_supervision=True)
    x = torch.randn(2, 1, *patch)
    seg = torch.randint(0, classes, (2, 1, *patch))

    # multiscale (default): the stock nnUNetTrainer, same count and shapes as DNA's PlainConvUNet
    outs = net(x)
    ref = dna(x.to("meta"))
    assert [o.shape for o in outs] == [r.shape for r in ref] and len(outs) == depth
    stock = _trainer(nnUNetTrainer, kw["strides"], patch)
    targets = _targets(stock._get_deep_supervision_scales(), seg)
    assert [t.shape[2:] for t in targets] == [o.shape[2:] for o in outs]
    loss = stock._build_loss()
    loss(outs, targets).backward()
    trained = {name for name, m in net.decoder.seg_layers.items() if m.weight.grad is not None
               and m.weight.grad.abs().sum() > 0}
    # nnU-Net gives the lowest resolution weight 0: every diagonal head but the last is trained
    assert trained == {node_name(i, depth - i) for i in range(depth - 1)}

    # top_row: nnUNetTrainerUNetPlusPlus, every output full resolution, equal weights
    net.zero_grad(set_to_none=True)
    net.decoder.deep_supervision_mode = "top_row"
    outs = net(x)
    assert len(outs) == depth and all(o.shape == (2, classes, *patch) for o in outs)
    unetpp = _trainer(nnUNetTrainerUNetPlusPlus, kw["strides"], patch)
    targets = _targets(unetpp._get_deep_supervision_scales(), seg)
    assert all(t.shape == seg.shape for t in targets)
    loss = unetpp._build_loss()
    assert loss.weight_factors == tuple([1.0 / depth] * depth)
    loss(outs, targets).backward()
    trained = {name for name, m in net.decoder.seg_layers.items() if m.weight.grad.abs().sum() > 0}
    assert trained == {node_name(0, j) for j in range(1, depth + 1)}
    # every parameter takes part (zero gradient for the idle heads): DDP needs no find_unused_parameters
    assert all(p.grad is not None for p in net.parameters())
    # the trainer's toggle: network.decoder.deep_supervision
    net.decoder.deep_supervision = False
    assert net(x).shape == (2, classes, *patch)


def test_branch_pruning_returns_node_x0b_and_runs_only_its_subnetwork():
    net = build("nested_unet", SMALL, deep_supervision=True)
    net.decoder.deep_supervision_mode = "top_row"
    x = torch.randn(1, 1, *SMALL_PATCH)
    depth = net.depth
    with torch.no_grad():
        top_row = net(x)  # X(0,L), X(0,L-1), ..., X(0,1)
    net.decoder.deep_supervision = False
    ran: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, i, o, name=name: ran.append(name))
             for name, m in [*((f"node {n}", m) for n, m in net.decoder.nodes.items()),
                             *((f"stage {s}", m) for s, m in enumerate(net.encoder.stages))]]
    for b in range(1, depth + 1):
        ran.clear()
        net.branch = b
        with torch.no_grad():
            out = net(x)
        torch.testing.assert_close(out, top_row[depth - b], rtol=1e-5, atol=1e-5)
        assert sorted(ran) == sorted([f"node {node_name(i, j)}" for j in range(1, b + 1) for i in range(b - j + 1)]
                                     + [f"stage {s}" for s in range(b + 1)])
    for h in hooks:
        h.remove()
    net.branch = None
    with torch.no_grad():
        torch.testing.assert_close(net(x), top_row[0])
    for bad in (0, depth + 1, 1.5, True):
        with pytest.raises(ValueError, match="branch must be"):
            net.branch = bad
    with pytest.raises(ValueError, match="branch must be"):
        build_architecture("nested_unet", in_channels=1, num_classes=2, branch=9, **copy.deepcopy(SMALL))
    # deep supervision on: the whole network runs whatever the branch (every head is trained)
    net.branch = 1
    net.decoder.deep_supervision = True
    assert len(net(x)) == depth


def test_nnunet_builds_the_class_from_its_dotted_path_with_its_init():
    net = get_network_from_plans(NNUNET_CLASS_PATH, copy.deepcopy(SMALL), IMPORTS, 2, 3, allow_init=True,
                                 deep_supervision=True)
    assert isinstance(net, NestedUNet) and net.decoder.deep_supervision is True
    ours = build_architecture("nested_unet", in_channels=2, num_classes=3, **copy.deepcopy(SMALL))
    assert [(k, v.shape) for k, v in net.state_dict().items()] == [(k, v.shape) for k, v in ours.state_dict().items()]
    # He init (nnU-Net's InitWeights_He(1e-2)): zero biases, std ~ sqrt(2 / fan_in / (1 + 0.01^2))
    conv = net.decoder.nodes[node_name(0, 2)].convs[0].conv
    assert torch.count_nonzero(conv.bias) == 0
    fan_in = conv.weight[0].numel()
    assert abs(conv.weight.std().item() / (2 / fan_in / (1 + 1e-4)) ** 0.5 - 1) < 0.15
    spec = arch_for_configuration(
        {"configurations": {"3d_fullres": {"patch_size": list(SMALL_PATCH), "architecture": {
            "network_class_name": NNUNET_CLASS_PATH, "arch_kwargs": {**copy.deepcopy(SMALL), "branch": 2},
            "_kw_requires_import": IMPORTS}}}}, in_channels=1, num_classes=2)
    assert spec.arch == "nested_unet" and build_from_plan(spec, device="meta").branch == 2
    with pytest.raises(PlanError, match="branch"):
        arch_for_configuration({"configurations": {"3d_fullres": {"architecture": {
            "network_class_name": NNUNET_CLASS_PATH, "arch_kwargs": {**copy.deepcopy(SMALL), "branch": 5},
            "_kw_requires_import": IMPORTS}}}}, in_channels=1, num_classes=2)


def test_trainer_folder_holds_only_the_trainer_module():
    assert [m.name for m in pkgutil.iter_modules([EXT_DIR])] == ["medzoo_trainers"]
    source = (Path(EXT_DIR) / "medzoo_trainers.py").read_text()
    assert "from ." not in source and "zoo.nnunet.trainers" not in source.split('"""')[-1]


# ------------------------------------------------------------------------------------------ transfer


def test_plain_conv_unet_fills_encoder_and_unet_path_and_the_nested_net_computes_the_unet():
    plain = build("plain_conv_unet", SMALL)
    with torch.device("meta"):
        nested = build_architecture("nested_unet", in_channels=1, num_classes=3, **copy.deepcopy(SMALL))
    report = adapt_model(plain, nested, heads=True, seed=0, strict=True)
    nested.eval()
    x = torch.randn(2, 1, *SMALL_PATCH)
    with torch.no_grad():
        torch.testing.assert_close(nested(x), plain(x), rtol=0, atol=0)
    depth = nested.depth
    rows = {r.target_key: r for r in report.rows}
    assert not report.unused and report.share_used == 1.0
    for key, row in rows.items():
        if key.startswith("encoder."):
            assert row.action == "copy"
        elif key.startswith("decoder."):
            name = key.split(".")[2]
            i, j = map(int, name[1:].split("_"))
            if i + j == depth:   # the U-Net path: decoder stage / transpconv / head of resolution i
                assert row.initialised and row.action.startswith("realign") and "U-Net path" in row.detail
                if ".convs.0.conv.weight" in key and j > 1:
                    assert "dense" in row.action.split("+") and "start at zero" in row.detail
            else:
                assert row.action == "new" and "off the U-Net path" in row.detail
    assert rows["decoder.nodes.x0_4.convs.0.conv.weight"].source_key == "decoder.stages.3.convs.0.conv.weight"
    w = nested.decoder.nodes[node_name(0, depth)].convs[0].conv.weight
    assert torch.count_nonzero(w[:, 2 * w.shape[0]:]) == 0
    assert "realign+dense" in report.counts()

    # back: the U-Net path of the UNet++ fills a U-Net completely; the dense-skip nodes go unused, with a reason
    with torch.device("meta"):
        back = build_architecture("plain_conv_unet", in_channels=1, num_classes=3, **copy.deepcopy(SMALL))
    report = adapt_model(nested, back, heads=True)
    back.eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x), plain(x), rtol=0, atol=0)
    assert report.share_initialised == 1.0
    assert report.unused and all("off the U-Net path" in u.reason for u in report.unused)
    with pytest.raises(AdaptationError, match="would go unused"):
        adapt_state_dict(nested, back, strict=True)


def test_unetpp_into_deeper_and_shallower_unetpp_by_node():
    src = build("nested_unet", SMALL)
    deeper = kwargs_for([4, 6, 8, 10, 12, 14], [[1, 3, 3]] + [[3, 3, 3]] * 5,
                        [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 1], [2, 2, 2]], n_dec=1)
    with torch.device("meta"):
        tgt = build_architecture("nested_unet", in_channels=1, num_classes=3, **deeper)
    tensors, report = adapt_state_dict(src, tgt)
    rows = {r.target_key: r for r in report.rows}
    sd = src.state_dict()
    # X(i, j) is the same sub-network at any depth: copied by name where it exists
    for name in src.decoder.nodes:
        key = f"decoder.nodes.{name}.convs.0.conv.weight"
        assert rows[key].action == "copy" and torch.equal(tensors[key], sd[key])
    # the deeper diagonal X(i, 5-i) falls back on the source's diagonal X(i, 4-i) (one more dense input at zero)
    row = rows["decoder.nodes.x0_5.convs.0.conv.weight"]
    assert row.source_key == "decoder.nodes.x0_4.convs.0.conv.weight" and "dense" in row.action
    with torch.device("meta"):
        shallow = build_architecture("nested_unet", in_channels=1, num_classes=3,
                                     **kwargs_for([4, 6, 8], [[1, 3, 3]] + [[3, 3, 3]] * 2,
                                                  [[1, 1, 1], [1, 2, 2], [2, 2, 2]], n_dec=1))
    _, report = adapt_state_dict(src, shallow)
    assert report.share_initialised_body == 1.0
    assert {u.source_key.split(".")[2] for u in report.unused if u.source_key.startswith("decoder.nodes.")} == {
        "x0_3", "x1_2", "x2_1", "x0_4", "x1_3", "x2_2", "x3_1"}


# ------------------------------------------------------------------------------------------ plans and CLI


def plans_for(arch_kwargs, patch, cls=DNA_PLAIN, name="Dataset901_T"):
    conf = {"data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": list(patch), "median_image_size_in_voxels": list(patch), "spacing": [1.0, 1.0, 1.0],
            "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
            "architecture": {"network_class_name": cls, "arch_kwargs": copy.deepcopy(arch_kwargs),
                             "_kw_requires_import": IMPORTS},
            "batch_dice": True}
    return {"dataset_name": name, "plans_name": "nnUNetPlans", "original_median_spacing_after_transp": [1.0] * 3,
            "original_median_shape_after_transp": list(patch), "image_reader_writer": "SimpleITKIO",
            "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "configurations": {"3d_fullres": conf},
            "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": {}}


DATASET = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumour": 2}, "numTraining": 9,
           "file_ending": ".nii.gz"}
HIPPO = kwargs_for([32, 64, 128, 256], [[3, 3, 3]] * 4, [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]])


@pytest.fixture(scope="module")
def lung_cache(tmp_path_factory):
    """A cache folder whose hub/ holds the fake upstream Genesis nnU-Net file (real client, offline)."""
    return genesis_lung_cache(tmp_path_factory)


def _cli(argv) -> int:
    from zoo import cli

    return cli.main(argv)


def test_zoo_plan_arch_unetpp_keeps_the_topology_and_nnunet_trains_the_export(lung_cache, tmp_path, capsys):
    plans = plans_for(HIPPO, [32, 48, 32])
    src, out = tmp_path / "nnUNetPlans.json", tmp_path / "nnUNetPlans_unetpp.json"
    src.write_text(json.dumps(plans))
    (tmp_path / "dataset.json").write_text(json.dumps(DATASET))
    assert _cli(["plan", "--plans", str(src), "--arch", "unetpp", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "NestedUNet" in printed and f"nnUNet_extTrainer={EXT_DIR}" in printed
    assert "-tr nnUNetTrainerUNetPlusPlus" in printed
    new = json.loads(out.read_text())
    conf = new["configurations"]["3d_fullres"]
    assert conf["architecture"]["network_class_name"] == NNUNET_CLASS_PATH
    assert conf["architecture"]["arch_kwargs"] == plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    sized = ("architecture", "patch_size", "batch_size")   # re-sized for UNet++ (tests/test_unetpp_planner.py)
    assert {k: v for k, v in conf.items() if k not in sized} == {
        k: v for k, v in plans["configurations"]["3d_fullres"].items() if k not in sized}  # data untouched
    assert new["medzoo_unetpp_plan"]["patch_size_before"] == plans["configurations"]["3d_fullres"]["patch_size"]
    assert new["medzoo_unetpp_plan"]["estimate_unetpp_step"] <= new["medzoo_unetpp_plan"]["estimate_plain_step"]
    assert new["plans_name"] == "nnUNetPlans_unetpp"
    assert new["medzoo_architecture"]["network_class_name_before"] == DNA_PLAIN
    pm = PlansManager(str(out))
    assert pm.get_configuration("3d_fullres").network_arch_class_name == NNUNET_CLASS_PATH

    # the export for -pretrained_weights loads with nnunetv2's loader into the network nnunetv2 builds
    weights = tmp_path / "pretrained.pth"
    assert _cli(["export-nnunet", NAME, "--plans", str(out), "--dataset-json", str(tmp_path / "dataset.json"),
                 "--cache-dir", str(lung_cache), "-o", str(weights)]) == 0
    cm = pm.get_configuration("3d_fullres")
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, 1, 3, deep_supervision=True)
    assert isinstance(net, NestedUNet)
    load_pretrained_weights(net, str(weights))
    saved = torch.load(weights, weights_only=True)["network_weights"]
    assert set(saved) == set(net.state_dict())
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items() if ".seg_layers." not in k)

    # back to a U-Net, and a checkpoint's topology as UNet++: then the whole checkpoint is used (strict passes)
    back = rewrite_plan(None, out, arch="unet")
    assert back["configurations"]["3d_fullres"]["architecture"]["network_class_name"] == DNA_PLAIN
    topo = tmp_path / "nnUNetPlans_genesis_unetpp.json"
    assert _cli(["plan", NAME, "--plans", str(src), "--arch", "unetpp", "-o", str(topo)]) == 0
    capsys.readouterr()
    result = export_nnunet(NAME, str(topo), DATASET, "3d_fullres", tmp_path / "w2.pth", cache_dir=lung_cache,
                           strict=True)
    assert result.report.share_used > 0.999 and not [u for u in result.report.unused if not u.head]

    # refusals: nothing to do, a ResEnc plan
    assert _cli(["plan", "--plans", str(src), "-o", str(tmp_path / "x.json")]) == 2
    assert "--arch unetpp" in capsys.readouterr().err
    resenc = plans_for({**{k: v for k, v in HIPPO.items() if k != "n_conv_per_stage"},
                        "n_blocks_per_stage": [1, 2, 2, 2], "n_conv_per_stage_decoder": [1, 1, 1]}, [32, 48, 32],
                       cls="dynamic_network_architectures.architectures.unet.ResidualEncoderUNet")
    (tmp_path / "resenc.json").write_text(json.dumps(resenc))
    assert _cli(["plan", "--plans", str(tmp_path / "resenc.json"), "--arch", "unetpp", "-o",
                 str(tmp_path / "x.json")]) == 2
    assert "ResidualEncoderUNet plan" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


# ------------------------------------------------------------------------------------------ registry entry


def test_unetpp_liver_entry_refuses_pretrained_and_initialises_from_genesis(lung_cache):
    with pytest.raises(WeightsNotAvailableError, match=r"init='genesis'"):
        zoo.load("unetpp-liver")
    net = zoo.load("unetpp-liver", pretrained=False)
    assert isinstance(net, NestedUNet) and net.depth == 5 and net.decoder.seg_layers["x0_5"].out_channels == 3
    assert sum(p.numel() for p in net.parameters()) == 45_970_747

    model = zoo.load("unetpp-liver", init="genesis", cache_dir=lung_cache, progress=False)
    report = model.transfer_report
    assert isinstance(model, NestedUNet) and not any(p.is_meta for p in model.parameters())
    assert "initialised from genesis-chest-ct-nnunet-lung" in str(model.load_report)
    rows = {r.target_key: r for r in report.rows}
    # the whole encoder and the U-Net path of the decoder come from the checkpoint, permuted from x,y,z to z,y,x
    assert all(r.initialised for k, r in rows.items() if k.startswith("encoder."))
    for i in range(5):
        assert rows[f"decoder.nodes.x{i}_{5 - i}.convs.1.conv.weight"].initialised
    assert rows["decoder.transpconvs.x4_1.weight"].action == "realign+permute+transpconv"  # [1,2,2] xyz -> [2,2,2]
    assert not rows["decoder.nodes.x0_1.convs.0.conv.weight"].initialised
    assert 0.74 < report.share_initialised_body < 0.75 and report.share_used > 0.999
    from zoo.convert.cache import load_converted
    from zoo.weights import resolve_weights

    src = load_converted(resolve_weights(registry.get_entry(NAME), cache_dir=lung_cache, progress=False)[0])
    assert torch.equal(model.state_dict()["encoder.stages.2.0.convs.1.conv.weight"],
                       src["encoder.stages.2.0.convs.1.conv.weight"].permute(0, 1, 4, 3, 2))
    # also by full name, with another channel count
    four = zoo.load("unetpp-liver", init=NAME, in_channels=4, cache_dir=lung_cache, progress=False)
    assert four.encoder.stages[0][0].convs[0].conv.weight.shape[1] == 4
    with pytest.raises(AdaptationError, match="base model"):
        zoo.load("unetpp-liver", init="nope", cache_dir=lung_cache)
    # the recipe's reference architecture is the entry's, and a plan carrying it passes the recipe's check
    from export.unetpp.model_dir import REFERENCE, compare_with_reference

    ref = json.loads(REFERENCE.read_text())
    assert ref["architecture"]["arch_kwargs"] == json.loads(json.dumps(LIVER_PLAN_ARCH_KWARGS))
    assert ref["architecture"]["network_class_name"] == NNUNET_CLASS_PATH
    liver = plans_for(LIVER_PLAN_ARCH_KWARGS, ref["patch_size"])
    # zoo plan --arch unetpp now re-sizes the patch for UNet++ (zoo/nnunet/planner.py); the recipe's reference
    # patch is the plain plan's
    assert set(compare_with_reference(rewrite_plan(None, liver, arch="unetpp"))) <= {"patch_size"}
    assert set(compare_with_reference(liver)) == {"network_class_name"}
    with pytest.raises(AdaptationError, match="nnU-Net state_dict keys"):
        zoo.load("unetpp-liver", init="med3d-resnet10", cache_dir=lung_cache)


# ------------------------------------------------------------------------------------------ end to end

DATASET_ID, DATASET_NAME = 987, "Dataset987_UNetPPLung"


def _crop_case(src: Path, name: str, nz: int = 16, nxy: int = 128, f: int = 4):
    """A 16 x 32 x 32 (z, y, x) crop around the tumour, in-plane block-averaged by ``f`` (labels: any), with its
    true geometry (origin at the first block's centre, direction kept)."""
    import SimpleITK as sitk

    im, lb = sitk.ReadImage(str(src / f"{name}_image.nrrd")), sitk.ReadImage(str(src / f"{name}_label.nrrd"))
    a, lab = sitk.GetArrayFromImage(im).astype(np.float32), sitk.GetArrayFromImage(lb)
    idx = np.argwhere(lab > 0)
    c = (idx.min(0) + idx.max(0)) // 2
    z0, y0, x0 = (int(np.clip(c[k] - n // 2, 0, a.shape[k] - n)) for k, n in enumerate((nz, nxy, nxy)))
    a, lab = a[z0:z0 + nz, y0:y0 + nxy, x0:x0 + nxy], lab[z0:z0 + nz, y0:y0 + nxy, x0:x0 + nxy]
    a = a.reshape(nz, nxy // f, f, nxy // f, f).mean((2, 4))
    lab = lab.reshape(nz, nxy // f, f, nxy // f, f).max((2, 4))
    sx, sy, sz = im.GetSpacing()
    origin = im.TransformContinuousIndexToPhysicalPoint((x0 + (f - 1) / 2, y0 + (f - 1) / 2, float(z0)))
    out = []
    for arr, dtype in ((a, np.int16), (lab, np.uint8)):
        img = sitk.GetImageFromArray(np.round(arr).astype(dtype))
        img.SetSpacing((sx * f, sy * f, sz))
        img.SetOrigin(origin)
        img.SetDirection(im.GetDirection())
        out.append(img)
    return out


@pytest.fixture
def nnunet_env(tmp_path, monkeypatch):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / var).mkdir()
        monkeypatch.setenv(var, str(tmp_path / var))
    monkeypatch.setenv("nnUNet_extTrainer", EXT_DIR)
    monkeypatch.setenv("nnUNet_compile", "false")
    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    return tmp_path


def test_end_to_end_unetpp_in_nnunet_from_a_zoo_export(pyradiomics_dir, nnunet_env,  # noqa: F811
                                                       lung_cache, monkeypatch, capsys):
    import SimpleITK as sitk
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    root = nnunet_env
    raw = root / "nnUNet_raw" / DATASET_NAME
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (raw / sub).mkdir(parents=True)
    for case in ("lung1", "lung2"):
        image, label = _crop_case(pyradiomics_dir, case)
        assert sitk.GetArrayFromImage(label).sum() > 0
        sitk.WriteImage(image, str(raw / "imagesTr" / f"{case}_0000.nii.gz"))
        sitk.WriteImage(label, str(raw / "labelsTr" / f"{case}.nii.gz"))
    test_image = _crop_case(pyradiomics_dir, "lung2", nz=12, nxy=96)[0]  # smaller than the patch: padded
    sitk.WriteImage(test_image, str(raw / "imagesTs" / "lung2s_0000.nii.gz"))
    (raw / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "numTraining": 2,
                                                  "labels": {"background": 0, "tumour": 1}, "file_ending": ".nii.gz"}))

    # nnUNetv2_plan_and_preprocess -d 987 -c 3d_fullres (its Python API; one worker)
    extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=False, verbose=False,
                         show_progress_bar=False)
    plan_experiments([DATASET_ID])
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")  # no augmentation worker processes (after planning: it reads it too)
    preprocess([DATASET_ID], configurations=("3d_fullres",), num_processes=(1,), show_progress_bar=False)
    pre = root / "nnUNet_preprocessed" / DATASET_NAME

    # zoo plan --plans nnUNetPlans.json --arch unetpp -o nnUNetPlans_unetpp.json; zoo export-nnunet ...
    assert _cli(["plan", "--plans", str(pre / "nnUNetPlans.json"), "--arch", "unetpp", "-o",
                 str(pre / "nnUNetPlans_unetpp.json")]) == 0
    weights = root / "pretrained_unetpp.pth"
    assert _cli(["export-nnunet", NAME, "--plans", str(pre / "nnUNetPlans_unetpp.json"), "--dataset-json",
                 str(pre / "dataset.json"), "--cache-dir", str(lung_cache), "-o", str(weights)]) == 0
    capsys.readouterr()
    saved = torch.load(weights, weights_only=True)
    assert saved["medzoo"]["share_initialised"] > 0.8

    # nnUNetv2_train 987 3d_fullres all -p nnUNetPlans_unetpp -tr nnUNetTrainerUNetPlusPlus_smoke
    #     -pretrained_weights pretrained_unetpp.pth -device cpu   (run_training's own steps, without the final
    #     full validation)
    trainer = get_trainer_from_args(str(DATASET_ID), "3d_fullres", "all", "nnUNetTrainerUNetPlusPlus_smoke",
                                    "nnUNetPlans_unetpp", device=torch.device("cpu"))
    maybe_load_checkpoint(trainer, False, False, str(weights))
    assert isinstance(trainer.network, NestedUNet)
    assert trainer.network.decoder.deep_supervision_mode == "top_row"
    start = {k: v.clone() for k, v in trainer.network.state_dict().items()}
    for key, value in start.items():
        if ".seg_layers." not in key:
            assert torch.equal(value, saved["network_weights"][key]), key
    trainer.run_training()
    out_dir = Path(trainer.output_folder_base)
    assert (Path(trainer.output_folder) / "checkpoint_final.pth").is_file()
    ckpt = torch.load(Path(trainer.output_folder) / "checkpoint_final.pth", weights_only=False)
    assert ckpt["trainer_name"] == "nnUNetTrainerUNetPlusPlus_smoke" and ckpt["current_epoch"] == 1
    moved = [k for k, v in ckpt["network_weights"].items() if not torch.equal(v, start[k])]
    assert any(k.startswith("decoder.seg_layers.x0_1") for k in moved)  # the branch heads are trained too
    assert any(k.startswith("encoder.") for k in moved)

    # the trained checkpoint -> a medzoo model folder (export/unetpp), loaded by zoo.load, same function
    from export.unetpp.__main__ import main as export_unetpp

    assert export_unetpp(["--check-plans", str(pre / "nnUNetPlans_unetpp.json")]) == 1  # not the liver plan
    assert export_unetpp(["--checkpoint", str(Path(trainer.output_folder) / "checkpoint_final.pth"),
                          "--out", str(root / "model")]) == 0
    capsys.readouterr()
    local = zoo.load(str(root / "model")).eval()
    assert local.load_report.verified_by == "local model folder" and local.decoder.seg_layers["x0_1"].out_channels == 2
    config = json.loads((root / "model" / "config.json").read_text())
    assert config["provenance"]["trainer"] == "nnUNetTrainerUNetPlusPlus_smoke"
    reference = trainer.network.eval()
    reference.decoder.deep_supervision = False
    x = torch.randn(1, 1, *trainer.configuration_manager.patch_size)
    with torch.no_grad():
        torch.testing.assert_close(local(x), reference(x))

    # the stock nnUNetTrainer trains the same plan (multi-scale deep supervision); one step
    class OneStep(nnUNetTrainer):
        def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 1, 1, 1

    plans = json.loads((pre / "nnUNetPlans_unetpp.json").read_text())
    plans["continue_training"] = False  # nnunetv2 2.8.1's trainer pops it (get_trainer_from_args sets it)
    ds_json = json.loads((pre / "dataset.json").read_text())
    stock = OneStep(plans, "3d_fullres", "all", ds_json, torch.device("cpu"))
    stock.initialize()
    load_pretrained_weights(stock.network, str(weights))
    stock.on_train_start()
    loss = stock.train_step(next(stock.dataloader_train))["loss"]
    assert np.isfinite(loss) and stock.network.decoder.deep_supervision_mode == "multiscale"
    stock.on_train_end()
    # ... while the UNet++ trainer refuses a plan that is not a NestedUNet
    unet_plans = {**json.loads((pre / "nnUNetPlans.json").read_text()), "continue_training": False}
    with pytest.raises(RuntimeError, match="--arch unetpp"):
        nnUNetTrainerUNetPlusPlus(unet_plans, "3d_fullres", "all", ds_json, torch.device("cpu")).initialize()

    # nnUNetv2_predict -i imagesTs -o pred -d 987 -c 3d_fullres -f all -p nnUNetPlans_unetpp
    #     -tr nnUNetTrainerUNetPlusPlus_smoke   (the trainer is found by name through nnUNet_extTrainer)
    def predict(folder: Path) -> Path:
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                    device=torch.device("cpu"), verbose=False, verbose_preprocessing=False,
                                    allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(out_dir), use_folds=("all",),
                                                       checkpoint_name="checkpoint_final.pth")
        assert isinstance(predictor.network, NestedUNet)
        folder.mkdir()
        predictor.predict_from_files_sequential(str(raw / "imagesTs"), str(folder), save_probabilities=False,
                                                overwrite=True)
        return folder / "lung2s.nii.gz"

    image = sitk.ReadImage(str(raw / "imagesTs" / "lung2s_0000.nii.gz"))
    full = predict(root / "pred")
    # pruned inference through nnU-Net: the branch in the results folder's plans.json
    results_plans = json.loads((out_dir / "plans.json").read_text())
    results_plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["branch"] = 1
    (out_dir / "plans.json").write_text(json.dumps(results_plans))
    pruned = predict(root / "pred_branch1")
    for path in (full, pruned):
        seg = sitk.ReadImage(str(path))
        assert seg.GetSize() == image.GetSize()
        np.testing.assert_allclose(seg.GetSpacing(), image.GetSpacing(), rtol=1e-6)
        np.testing.assert_allclose(seg.GetOrigin(), image.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(seg.GetDirection(), image.GetDirection(), atol=1e-6)
        assert set(np.unique(sitk.GetArrayFromImage(seg))) <= {0, 1}
