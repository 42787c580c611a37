"""zoo's PlainConvUNet / ResidualEncoderUNet against dynamic-network-architectures itself.

For each plan: the same state_dict keys in the same order, the same shapes, DNA's weights load strictly
into zoo's network and both give the same outputs (plain and deep supervision).
"""

from __future__ import annotations

import copy

import pytest
import torch

from zoo.archs import build_architecture
from zoo.archs.nnunet_blocks import resolve_arch_kwargs
from zoo.entries.genesis import LUNG_PLAN_ARCH_KWARGS

dna_unet = pytest.importorskip("dynamic_network_architectures.architectures.unet")

RESENC_M = {
    "n_stages": 6,
    "features_per_stage": [32, 64, 128, 256, 320, 320],
    "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[3, 3, 3]] * 6,
    "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 1]],
    "n_blocks_per_stage": [1, 3, 4, 6, 6, 6],
    "n_conv_per_stage_decoder": [1, 1, 1, 1, 1],
    "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None,
    "dropout_op_kwargs": None,
    "nonlin": "torch.nn.LeakyReLU",
    "nonlin_kwargs": {"inplace": True},
}

SMALL_ANISO = {
    "n_stages": 4,
    "features_per_stage": [8, 16, 24, 32],
    "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]],
    "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
    "n_conv_per_stage": [2, 2, 2, 2],
    "n_conv_per_stage_decoder": [2, 2, 2],
    "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None,
    "dropout_op_kwargs": None,
    "nonlin": "torch.nn.LeakyReLU",
    "nonlin_kwargs": {"inplace": True},
}

SMALL_2D_BN_DROPOUT = {
    "n_stages": 3,
    "features_per_stage": [4, 8, 16],
    "conv_op": "torch.nn.modules.conv.Conv2d",
    "kernel_sizes": 3,
    "strides": [1, 2, 2],
    "n_conv_per_stage": 2,
    "n_conv_per_stage_decoder": 1,
    "conv_bias": False,
    "norm_op": "torch.nn.BatchNorm2d",
    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": "torch.nn.Dropout2d",
    "dropout_op_kwargs": {"p": 0.0},
    "nonlin": "torch.nn.ReLU",
    "nonlin_kwargs": None,
    "nonlin_first": True,
}

SMALL_RESENC_BOTTLENECK = {
    "n_stages": 3,
    "features_per_stage": [8, 16, 32],
    "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[3, 3, 3]] * 3,
    "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 1]],
    "n_blocks_per_stage": [1, 2, 2],
    "n_conv_per_stage_decoder": [1, 1],
    "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None,
    "dropout_op_kwargs": None,
    "nonlin": "torch.nn.LeakyReLU",
    "nonlin_kwargs": {"inplace": True},
    "bottleneck_channels": [4, 8, 16],
    "stem_channels": 6,
}


def _dna(cls_name: str, arch_kwargs: dict, in_ch: int, classes: int, ds: bool) -> torch.nn.Module:
    kwargs = resolve_arch_kwargs(copy.deepcopy(arch_kwargs))
    if "bottleneck_channels" in kwargs:
        from dynamic_network_architectures.building_blocks.residual import BottleneckD

        kwargs["block"] = BottleneckD
    return getattr(dna_unet, cls_name)(input_channels=in_ch, num_classes=classes, deep_supervision=ds, **kwargs)


def _zoo(arch: str, arch_kwargs: dict, in_ch: int, classes: int, ds: bool) -> torch.nn.Module:
    kwargs = copy.deepcopy(arch_kwargs)
    if "bottleneck_channels" in kwargs:
        kwargs["block"] = "BottleneckD"
    return build_architecture(arch, in_channels=in_ch, num_classes=classes, deep_supervision=ds, **kwargs)


def _same_layout(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert a[key].shape == b[key].shape, key


def test_lung_plan_keys_match_dna_and_reference_count():
    with torch.device("meta"):
        ours = _zoo("plain_conv_unet", LUNG_PLAN_ARCH_KWARGS, 1, 2, False)
        theirs = _dna("PlainConvUNet", LUNG_PLAN_ARCH_KWARGS, 1, 2, False)
    _same_layout(ours, theirs)
    assert len(ours.state_dict()) == 292  # docs/upstream-checkpoints.md section 2.3: lung plan incl. all_modules / decoder.encoder aliases


def test_resenc_m_plan_keys_match_dna():
    with torch.device("meta"):
        ours = _zoo("residual_encoder_unet", RESENC_M, 4, 4, True)
        theirs = _dna("ResidualEncoderUNet", RESENC_M, 4, 4, True)
    _same_layout(ours, theirs)
    n_params = sum(p.numel() for p in ours.parameters())
    assert n_params == sum(p.numel() for p in theirs.parameters())


@pytest.mark.parametrize(
    "arch,cls_name,kwargs,in_ch,shape",
    [
        ("plain_conv_unet", "PlainConvUNet", SMALL_ANISO, 2, (2, 2, 8, 32, 32)),
        ("plain_conv_unet", "PlainConvUNet", SMALL_2D_BN_DROPOUT, 3, (2, 3, 32, 32)),
        ("residual_encoder_unet", "ResidualEncoderUNet", {**SMALL_ANISO, "n_blocks_per_stage": [1, 2, 2, 2]}, 1,
         (1, 1, 8, 32, 32)),
        ("residual_encoder_unet", "ResidualEncoderUNet", SMALL_RESENC_BOTTLENECK, 1, (1, 1, 16, 16, 8)),
    ],
)
@pytest.mark.parametrize("deep_supervision", [False, True])
def test_outputs_equal_dna(arch, cls_name, kwargs, in_ch, shape, deep_supervision):
    kwargs = dict(kwargs)
    if arch == "residual_encoder_unet":
        kwargs.pop("n_conv_per_stage", None)
    torch.manual_seed(0)
    theirs = _dna(cls_name, kwargs, in_ch, 3, deep_supervision)
    ours = _zoo(arch, kwargs, in_ch, 3, deep_supervision)
    _same_layout(ours, theirs)
    # random non-trivial norm statistics so BatchNorm / InstanceNorm parameters matter
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(shape)
    for mode in ("train", "eval"):
        getattr(ours, mode)()
        getattr(theirs, mode)()
        with torch.no_grad():
            a, b = ours(x), theirs(x)
        if deep_supervision:
            assert isinstance(a, list) and len(a) == len(b)
            for u, v in zip(a, b):
                torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)
        else:
            assert a.shape == (shape[0], 3, *shape[2:])
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_deep_supervision_toggle_like_nnunet_trainer():
    net = _zoo("plain_conv_unet", SMALL_ANISO, 1, 2, True)
    x = torch.randn(1, 1, 8, 32, 32)
    with torch.no_grad():
        outs = net(x)
        assert [o.shape[2:] for o in outs] == [(8, 32, 32), (8, 16, 16), (4, 8, 8)]
        net.decoder.deep_supervision = False  # what nnUNetTrainer.set_deep_supervision_enabled does
        assert net(x).shape == (1, 2, 8, 32, 32)


def test_initialization_matches_dna_statistics():
    torch.manual_seed(0)
    net = _zoo("residual_encoder_unet", SMALL_RESENC_BOTTLENECK, 1, 2, False)
    block = net.encoder.stages[1].blocks[0]
    assert torch.count_nonzero(block.conv3.norm.weight) == 0  # residual branch starts at zero, as in DNA
    conv = net.encoder.stem.convs[0].conv
    assert conv.bias.abs().sum() == 0
    expected_std = (2.0 / (1 + 0.01**2) / (conv.weight[0].numel())) ** 0.5
    assert abs(conv.weight.std().item() - expected_std) / expected_std < 0.35


def test_bad_plan_kwargs_name_the_problem():
    bad = dict(SMALL_ANISO, conv_op="torch.nn.NoSuchConv")
    with pytest.raises(ValueError, match="conv_op"):
        _zoo("plain_conv_unet", bad, 1, 2, False)
    bad = dict(SMALL_ANISO, kernel_sizes=[[3, 3, 3]] * 3)
    with pytest.raises(ValueError, match="kernel_sizes must have 4 entries"):
        _zoo("plain_conv_unet", bad, 1, 2, False)
    with pytest.raises(ValueError, match="num_classes"):
        _zoo("plain_conv_unet", SMALL_ANISO, 1, None, False)
