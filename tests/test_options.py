"""Typed options (:mod:`zoo.options`): every ``Literal`` alias lists exactly what the code accepts, a wrong value
raises :class:`InvalidOptionError` with its fields, each option set is declared once, and the CLI's choices
are the aliases'."""

from __future__ import annotations

import argparse
import copy
import re
import warnings
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch

import zoo
import zoo.options as options
from zoo.adapt.engine import adapt_state_dict
from zoo.adapt.kernels import adapt_input_channels, collapse_axis, inflate_axis
from zoo.archs import build_architecture
from zoo.archs.genesis_unet3d import build_unet3d
from zoo.archs.med3d_resnet import DEPTHS, build_med3d_resnet
from zoo.convert.cache import find_cached
from zoo.errors import AdaptationError, InvalidOptionError, PlanError
from zoo.io.preprocess import SCHEMES, normalize
from zoo.io.readers import Volume
from zoo.options import ALIASES, check_option

ROOT = Path(zoo.__file__).resolve().parent

OPS = {
    "conv_op": "torch.nn.modules.conv.Conv3d", "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
}
SMALL = {"n_stages": 2, "features_per_stage": [2, 4], "kernel_sizes": [[3, 3, 3], [3, 3, 3]],
         "strides": [[1, 1, 1], [2, 2, 2]], "n_conv_per_stage": [1, 1], "n_conv_per_stage_decoder": [1], **OPS}


def refused(call, option, value, alias, error=InvalidOptionError):
    with pytest.raises(error) as info:
        call()
    err = info.value
    assert isinstance(err, InvalidOptionError) and isinstance(err, ValueError)
    assert (err.option, err.value, err.choices) == (option, value, get_args(alias) if alias else err.choices)
    return err


# ----------------------------------------------------------------------------------------------- the aliases


def test_derived_tuples_are_the_aliases_choices():
    pairs = {
        "CHANNEL_MODES": options.ChannelMode, "COLLAPSE_MODES": options.KernelCollapse,
        "INFLATE_MODES": options.KernelInflate, "WIDTH_MODES": options.WidthMode, "VERIFY_MODES": options.VerifyMode,
        "GENESIS_ACTS": options.GenesisAct, "OUT_ACTIVATIONS": options.OutActivation,
        "MED3D_HEADS": options.Med3DHead, "MED3D_DEPTHS": options.Med3DDepth,
        "DEEP_SUPERVISION_MODES": options.DeepSupervisionMode, "INTENSITY_SCHEMES": options.IntensityScheme,
        "WEIGHTS_PREFERENCES": options.WeightsPreference,
    }
    for name, alias in pairs.items():
        assert getattr(options, name) == get_args(alias), name
    assert set(pairs.values()) == set(ALIASES.values())
    # the old public names are the same objects, re-exported
    from zoo.adapt import CHANNEL_MODES
    from zoo.adapt import kernels
    from zoo.adapt.engine import WIDTH_MODES
    from zoo.archs.nested_unet import DEEP_SUPERVISION_MODES
    from zoo.convert.cache import VerifyMode

    assert CHANNEL_MODES is options.CHANNEL_MODES and kernels.COLLAPSE_MODES is options.COLLAPSE_MODES
    assert kernels.INFLATE_MODES is options.INFLATE_MODES and WIDTH_MODES is options.WIDTH_MODES
    assert DEEP_SUPERVISION_MODES is options.DEEP_SUPERVISION_MODES and VerifyMode is options.VerifyMode
    # tables keyed by an option agree with its alias
    assert set(DEPTHS) == set(options.MED3D_DEPTHS)
    assert set(SCHEMES) == set(options.INTENSITY_SCHEMES)


def test_check_option_compares_type_and_value():
    assert check_option("verify", True, options.VerifyMode) is True
    refused(lambda: check_option("verify", 1, options.VerifyMode), "verify", 1, options.VerifyMode)
    refused(lambda: check_option("depth", True, options.Med3DDepth), "depth", True, options.Med3DDepth)
    err = refused(lambda: check_option("x", "b", ("a",)), "x", "b", None)
    assert err.choices == ("a",)
    err = refused(lambda: check_option("m", "z", options.WidthMode, error=options.InvalidAdaptationOption),
                  "m", "z", options.WidthMode, AdaptationError)
    assert isinstance(err, AdaptationError)
    assert copy.deepcopy(err).choices == err.choices


# ----------------------------------------------------------------------------------------------- adaptation


def test_adaptation_options_accept_every_choice_and_refuse_others():
    w = torch.randn(2, 1, 3, 3, 3)
    for mode in options.CHANNEL_MODES:
        assert adapt_input_channels(w, 3, mode).shape[1] == 3
    for mode in options.COLLAPSE_MODES:
        assert collapse_axis(w, 0, mode).shape[2] == 1
    for mode in options.INFLATE_MODES:
        assert inflate_axis(w[:, :, :1], 0, 3, mode).shape[2] == 3
    refused(lambda: adapt_input_channels(w, 3, "nope"), "channel_mode", "nope", options.ChannelMode, AdaptationError)
    refused(lambda: collapse_axis(w, 0, "median"), "kernel_collapse", "median", options.KernelCollapse, AdaptationError)
    refused(lambda: inflate_axis(w[:, :, :1], 0, 3, "x"), "kernel_inflate", "x", options.KernelInflate, AdaptationError)

    torch.manual_seed(0)
    source = build_architecture("plain_conv_unet", in_channels=1, num_classes=2, **copy.deepcopy(SMALL))
    target = build_architecture("plain_conv_unet", in_channels=2, num_classes=2, **copy.deepcopy(SMALL))
    for option in ("channel_mode", "kernel_collapse", "kernel_inflate", "widths"):
        for choice in get_args(ALIASES[option]):
            adapt_state_dict(source.state_dict(), target, **{option: choice})
        refused(lambda: adapt_state_dict(source.state_dict(), target, **{option: "bad"}), option, "bad",
                ALIASES[option], AdaptationError)


def test_zoo_load_checks_its_options_before_any_work():
    refused(lambda: zoo.load("genesis-chest-ct", channel_mode="nope"), "channel_mode", "nope", options.ChannelMode,
            AdaptationError)
    refused(lambda: zoo.load("genesis-chest-ct", verify="always"), "verify", "always", options.VerifyMode)
    refused(lambda: zoo.resolve_weights(zoo.registry.get_entry("genesis-chest-ct"), verify=1), "verify", 1,
            options.VerifyMode)


def test_every_verify_choice_is_accepted(tmp_path):
    for verify in options.VERIFY_MODES:
        assert find_cached(tmp_path, verify) is None


# ----------------------------------------------------------------------------------------------- architectures


def test_architecture_options_accept_every_choice_and_refuse_others():
    with torch.device("meta"):
        for act in options.GENESIS_ACTS:
            build_unet3d(act=act)
        for out in options.OUT_ACTIVATIONS:
            build_unet3d(out_activation=out)
        for depth in options.MED3D_DEPTHS:
            build_med3d_resnet(depth=depth)
        for head in options.MED3D_HEADS:
            build_med3d_resnet(depth=10, head=head, num_classes=None if head == "none" else 2)
        for mode in options.DEEP_SUPERVISION_MODES:
            net = build_architecture("nested_unet", in_channels=1, num_classes=2, deep_supervision_mode=mode,
                                     **copy.deepcopy(SMALL))
            assert net.decoder.deep_supervision_mode == mode
        refused(lambda: build_unet3d(act="gelu"), "act", "gelu", options.GenesisAct)
        refused(lambda: build_unet3d(out_activation="softmax"), "out_activation", "softmax", options.OutActivation)
        refused(lambda: build_med3d_resnet(depth=20), "depth", 20, options.Med3DDepth)
        refused(lambda: build_med3d_resnet(depth=18, head="detection", num_classes=2), "head", "detection",
                options.Med3DHead)
    # (a spec's deep_supervision_mode is refused earlier, by the spec validator; the attribute may be switched)
    net = build_architecture("nested_unet", in_channels=1, num_classes=2, deep_supervision=True,
                             **copy.deepcopy(SMALL))
    net.decoder.deep_supervision_mode = "all"
    refused(lambda: net(torch.zeros(1, 1, 4, 4, 4)), "deep_supervision_mode", "all", options.DeepSupervisionMode)


def test_intensity_schemes_accept_every_choice_and_refuse_others():
    ct = Volume(np.linspace(-1000, 1000, 27, dtype=np.float32).reshape(3, 3, 3), (1.0, 1.0, 1.0))
    extra = {"nnunet_ct": {"mean": 0.0, "std": 1.0, "p005": -1000.0, "p995": 1000.0}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for scheme in options.INTENSITY_SCHEMES:
            assert normalize(ct, scheme, **extra.get(scheme, {})).array.dtype == np.float32
    refused(lambda: normalize(ct, "hu_magic"), "scheme", "hu_magic", options.IntensityScheme)


def test_plan_arch_is_checked_as_a_plan_error():
    from zoo.nnunet.plan_rewrite import PLAN_ARCHS, rewrite_plan

    err = refused(lambda: rewrite_plan(None, {}, arch="vnet"), "arch", "vnet", None, PlanError)
    assert err.choices == PLAN_ARCHS


# ----------------------------------------------------------------------------------------------- one declaration


def test_no_hand_written_choice_checks_are_left():
    # the file-content validators keep their own messages (they name the file's keys)
    allowed = {"options.py", "errors.py", "archs/size_estimate.py", "archs/ops.py", "model_config.py", "entry.py"}
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in allowed:
            continue
        text = path.read_text(encoding="utf-8")
        if "choose one of" in text:
            offenders.append(f"{rel}: 'choose one of'")
        for m in re.finditer(r"^[A-Z_]*(MODES|_ACTS|_HEADS|_OUT_ACTIVATIONS)\s*=\s*\(", text, re.M):
            offenders.append(f"{rel}: tuple of choices {m.group(0)!r} (declare a Literal in zoo.options)")
    assert not offenders, offenders
    # each check_option call site names an alias declared in zoo.options (or a tuple derived from data)
    declared = set(ALIASES.values())
    assert all(get_args(a) for a in declared)


def _adapt_parsers():
    from zoo import cli
    from zoo.cli.adapt import add_subcommands

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "adapt" not in sub.choices:
        add_subcommands(sub)
    return sub.choices


def test_cli_choices_are_the_aliases():
    parsers = _adapt_parsers()
    seen = 0
    for name in ("adapt", "export-nnunet"):
        if name not in parsers:
            continue
        for action in parsers[name]._actions:
            if action.dest in ALIASES and action.choices is not None:
                assert list(action.choices) == list(get_args(ALIASES[action.dest])), (name, action.dest)
                seen += 1
    assert seen >= 4
