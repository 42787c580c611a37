"""``features_only`` models carry a timm-style ``feature_info`` (zoo/archs/features.py), and it is true: run each
features_only architecture on a small input and check the maps' channels, per-axis down-sampling and modules."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import zoo
from zoo.archs import build_architecture
from zoo.archs.features import FeatureInfo, cumulative_reductions
from zoo.archs.size_estimate import ARGUMENTS

PLAIN_ANISO = {
    "unet": "plain_conv_unet", "n_stages": 4, "features_per_stage": [4, 8, 12, 16],
    "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]],
    "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 1]], "n_conv_per_stage": [1, 2, 1, 1],
    "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "nonlin": "torch.nn.LeakyReLU",
    "nonlin_kwargs": {"inplace": True},
    "n_conv_per_stage_decoder": [1, 1, 1], "deep_supervision": False,   # decoder keys a plan carries: ignored
}
RESIDUAL = {
    "unet": "residual_encoder_unet", "n_stages": 3, "features_per_stage": [8, 16, 32],
    "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [[3, 3, 3]] * 3,
    "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 1]], "n_blocks_per_stage": [1, 2, 1], "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
    "block": "BottleneckD", "bottleneck_channels": [4, 8, 16], "stem_channels": 6,
}
PLAIN_2D = {
    "unet": "plain_conv_unet", "n_stages": 3, "features_per_stage": [4, 8, 16],
    "conv_op": "torch.nn.modules.conv.Conv2d", "kernel_sizes": 3, "strides": [1, 2, 2], "n_conv_per_stage": 1,
    "norm_op": "torch.nn.BatchNorm2d", "nonlin": "torch.nn.ReLU",
}

#: (architecture, builder kwargs, input shape); spatial sizes differ per axis so that axis mix-ups show
CASES = [
    ("med3d_resnet", {"depth": 10}, (1, 1, 16, 24, 32)),
    ("med3d_resnet", {"depth": 10, "dilated": False}, (1, 1, 32, 64, 96)),
    ("med3d_resnet", {"depth": 18, "out_indices": (1, 3)}, (1, 2, 16, 24, 32)),
    ("med3d_resnet", {"depth": 50, "out_indices": (0, 2, 4)}, (1, 1, 16, 16, 24)),
    ("ssl3d_unet_encoder", {"features_per_stage": [4, 8, 12]}, (1, 1, 8, 12, 16)),
    ("ssl3d_unet_encoder", {}, (1, 1, 16, 32, 48)),
    ("nnunet_encoder", PLAIN_ANISO, (1, 1, 8, 24, 16)),
    ("nnunet_encoder", RESIDUAL, (1, 2, 8, 12, 16)),
    ("nnunet_encoder", PLAIN_2D, (1, 1, 12, 20)),
]
IDS = [f"{arch}-{i}" for i, (arch, _, _) in enumerate(CASES)]


def _build(arch: str, kwargs: dict, in_channels: int) -> torch.nn.Module:
    return build_architecture(arch, in_channels=in_channels, num_classes=None, features_only=True, **kwargs).eval()


def test_every_features_only_architecture_is_covered():
    assert {a for a, args in ARGUMENTS.items() if "features_only" in args} == {arch for arch, _, _ in CASES}


@pytest.mark.parametrize("arch,kwargs,shape", CASES, ids=IDS)
def test_feature_info_matches_the_returned_maps(arch, kwargs, shape):
    torch.manual_seed(0)
    model = _build(arch, kwargs, shape[1])
    info = model.feature_info
    assert isinstance(info, FeatureInfo)
    with torch.no_grad():
        feats = model(torch.randn(shape))
    assert isinstance(feats, list) and len(feats) == len(info) >= 1
    spatial = shape[2:]
    assert [f.shape[1] for f in feats] == info.channels()
    measured = [tuple(s // o for s, o in zip(spatial, f.shape[2:])) for f in feats]
    for f, per_axis in zip(feats, info.reduction_per_axis()):       # exact: sizes are divisible by the reduction
        assert tuple(f.shape[2:]) == tuple(s // r for s, r in zip(spatial, per_axis))
    assert measured == info.reduction_per_axis()
    assert [max(m) for m in measured] == info.reduction()
    assert all(isinstance(r, int) for r in info.reduction())
    assert info.reduction() == sorted(info.reduction())

    modules = dict(model.named_modules())
    assert all(name in modules for name in info.module_name())
    # and the named module's output IS the feature map (forward hooks, as timm's FeatureHooks use them)
    seen: dict[str, torch.Tensor] = {}
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o.detach().clone()))
               for n in info.module_name()]
    try:
        with torch.no_grad():
            torch.manual_seed(0)
            again = model(torch.randn(shape))
    finally:
        for h in handles:
            h.remove()
    for name, f in zip(info.module_name(), again):
        torch.testing.assert_close(seen[name], f)


def test_med3d_feature_info_follows_out_indices_and_strides():
    info = _build("med3d_resnet", {"depth": 34, "out_indices": (1, 3)}, 1).feature_info
    assert info.channels() == [64, 256] and info.reduction() == [4, 8] and info.module_name() == ["layer1", "layer3"]
    assert [d["index"] for d in info.get_dicts()] == [1, 3]                # timm: index = level, not position
    classic = _build("med3d_resnet", {"depth": 50, "dilated": False}, 1).feature_info
    assert classic.channels() == [64, 256, 512, 1024, 2048] and classic.reduction() == [2, 4, 8, 16, 32]
    assert classic.module_name() == ["relu", "layer1", "layer2", "layer3", "layer4"]


def test_anisotropic_reduction_is_the_max_and_the_per_axis_tuple():
    info = _build("nnunet_encoder", PLAIN_ANISO, 1).feature_info
    assert info.reduction_per_axis() == [(1, 1, 1), (1, 2, 2), (2, 4, 4), (4, 8, 4)]
    assert info.reduction() == [1, 2, 4, 8]
    assert info.module_name() == [f"encoder.stages.{s}" for s in range(4)]
    assert _build("nnunet_encoder", PLAIN_2D, 1).feature_info.reduction_per_axis() == [(1, 1), (2, 2), (4, 4)]


def test_models_without_features_only_have_no_feature_info():
    assert not hasattr(build_architecture("med3d_resnet", in_channels=1, num_classes=None, depth=10), "feature_info")
    assert not hasattr(build_architecture("ssl3d_unet_encoder", in_channels=1, num_classes=None), "feature_info")


def test_zoo_load_features_only_carries_feature_info():
    med3d = zoo.load("med3d-resnet10", pretrained=False, features_only=True)
    assert med3d.feature_info.channels() == [64, 64, 128, 256, 512] and med3d.feature_info.reduction() == [2, 4, 8, 8, 8]
    ssl = zoo.load("ssl3d-jigsaw", pretrained=False, features_only=True)
    assert ssl.feature_info.channels() == list(ssl.feature_channels) == [16, 32, 64, 128, 256]
    assert ssl.feature_info.reduction() == [1, 2, 4, 8, 16]


def test_feature_info_api():
    info = FeatureInfo([{"num_chs": 8, "reduction": 1, "module": "a"},
                        {"num_chs": 16, "reduction": (1, 2, 2), "module": "b"},
                        {"num_chs": 32, "reduction_per_axis": (2, 4, 4), "reduction": 4, "module": "c", "x": 1}])
    assert len(info) == 3 and info[1]["num_chs"] == 16 and [d["module"] for d in info] == ["a", "b", "c"]
    assert info.channels() == [8, 16, 32] and info.channels(1) == 16 and info.channels([0, 2]) == [8, 32]
    assert info.reduction() == [1, 2, 4] and info.reduction_per_axis(1) == (1, 2, 2)
    assert info.module_name([2]) == ["c"]
    assert info.get_dicts(keys=["num_chs", "module"], idx=2) == {"num_chs": 32, "module": "c"}
    assert info.get_dicts()[2]["x"] == 1 and [d["index"] for d in info.get_dicts()] == [0, 1, 2]
    info.get_dicts()[0]["num_chs"] = 99                                    # copies: the info stays as built
    assert info.channels(0) == 8
    assert cumulative_reductions([1, [1, 2, 2], 2]) == [(1, 1, 1), (1, 2, 2), (2, 4, 4)]
    with pytest.raises(ValueError, match="below the previous"):
        FeatureInfo([{"num_chs": 8, "reduction": 4, "module": "a"}, {"num_chs": 8, "reduction": 2, "module": "b"}])
    with pytest.raises(ValueError, match="num_chs"):
        FeatureInfo([{"num_chs": 0, "reduction": 1, "module": "a"}])
    with pytest.raises(ValueError, match="per axis"):
        FeatureInfo([{"num_chs": 1, "reduction": (1, 2), "module": "a"}])
    with pytest.raises(ValueError, match="at least one"):
        FeatureInfo([])


@pytest.mark.parametrize("arch,kwargs,shape", [CASES[2], CASES[6]], ids=[IDS[2], IDS[6]])
def test_same_api_shape_as_timm(arch, kwargs, shape):
    timm_features = pytest.importorskip("timm.models._features")
    ours = _build(arch, kwargs, shape[1]).feature_info
    theirs = timm_features.FeatureInfo(ours.get_dicts(keys=["num_chs", "reduction", "module"]),
                                       out_indices=tuple(range(len(ours))))
    for method in ("channels", "reduction", "module_name"):
        assert getattr(ours, method)() == getattr(theirs, method)()
        assert getattr(ours, method)(1) == getattr(theirs, method)(1)
        assert getattr(ours, method)([0, 1]) == getattr(theirs, method)([0, 1])
    keys = ["num_chs", "reduction", "module"]
    assert ours.get_dicts(keys=keys) == theirs.get_dicts(keys=keys)
    assert ours.get_dicts(keys=keys, idx=0) == theirs.get_dicts(keys=keys, idx=0)
    assert len(ours) == len(theirs) and ours[0]["num_chs"] == theirs[0]["num_chs"]
    assert ours.get("num_chs") == theirs.get("num_chs")


def test_import_zoo_and_building_do_not_import_timm():
    code = ("import sys, zoo; from zoo.archs import build_architecture; "
            "m = build_architecture('med3d_resnet', in_channels=1, num_classes=None, depth=10, features_only=True); "
            "m.feature_info.get_dicts(); assert 'timm' not in sys.modules, 'timm imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
