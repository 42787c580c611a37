"""The fixed choices of medzoo's options, each declared once as a :data:`typing.Literal` alias, and the one
check of a value against them (:func:`check_option`).

Public functions type their parameters with these aliases (``channel_mode: ChannelMode = "repeat_scale"``)
and call :func:`check_option` once, where the value enters (``zoo.load``, ``adapt_state_dict``, the
architecture builders, ``normalize``); the functions they call take the checked value as it is. The tuples of
choices (``CHANNEL_MODES``, ...) are derived from the aliases with :func:`typing.get_args`, and so are the
``choices=`` of the command line.

Base layer: the standard library and :mod:`zoo.errors` only.
"""

from __future__ import annotations

from typing import Literal, TypeVar, get_args

from .errors import AdaptationError, InvalidOptionError

# ----------------------------------------------------------------------------------------------- adaptation

#: input-channel adaptation of a first convolution (``zoo.load(in_channels=...)``, ``adapt_state_dict``)
ChannelMode = Literal["repeat_scale", "mean", "first", "random"]
#: how a kernel axis shrinks to size 1
KernelCollapse = Literal["sum", "mean", "center"]
#: how a size-1 kernel axis grows
KernelInflate = Literal["center", "i3d"]
#: what ``adapt_state_dict`` does with tensors whose widths differ
WidthMode = Literal["skip", "slice"]

# ----------------------------------------------------------------------------------------------- weights cache

#: re-hash a cached file: ``"auto"`` when its size, mtime, ctime or inode changed, ``True`` always, ``False`` never
VerifyMode = Literal["auto", True, False]
#: which copy of an entry's weights ``zoo.load`` tries first: the hosted safetensors (falling back to the upstream
#: file) or the upstream file only
WeightsPreference = Literal["hosted", "upstream"]

# ----------------------------------------------------------------------------------------------- architectures

#: activation of the Models Genesis U-Net
GenesisAct = Literal["relu", "prelu", "elu"]
#: output activation of the Models Genesis U-Net (``None``: logits)
OutActivation = Literal["sigmoid", None]
#: head of a MedicalNet ResNet
Med3DHead = Literal["none", "classification", "segmentation"]
#: depth of a MedicalNet ResNet
Med3DDepth = Literal[10, 18, 34, 50, 101, 152, 200]
#: deep-supervision outputs of the nested U-Net (UNet++)
DeepSupervisionMode = Literal["multiscale", "top_row"]

# ----------------------------------------------------------------------------------------------- preprocessing

#: intensity normalisation of :func:`zoo.io.normalize`
IntensityScheme = Literal["genesis_ct", "nnunet_ct", "zscore", "minmax", "genesis_mr"]

# ----------------------------------------------------------------------------------------------- derived tuples

CHANNEL_MODES: tuple[str, ...] = get_args(ChannelMode)
COLLAPSE_MODES: tuple[str, ...] = get_args(KernelCollapse)
INFLATE_MODES: tuple[str, ...] = get_args(KernelInflate)
WIDTH_MODES: tuple[str, ...] = get_args(WidthMode)
VERIFY_MODES: tuple = get_args(VerifyMode)
WEIGHTS_PREFERENCES: tuple[str, ...] = get_args(WeightsPreference)
GENESIS_ACTS: tuple[str, ...] = get_args(GenesisAct)
OUT_ACTIVATIONS: tuple = get_args(OutActivation)
MED3D_HEADS: tuple[str, ...] = get_args(Med3DHead)
MED3D_DEPTHS: tuple[int, ...] = get_args(Med3DDepth)
DEEP_SUPERVISION_MODES: tuple[str, ...] = get_args(DeepSupervisionMode)
INTENSITY_SCHEMES: tuple[str, ...] = get_args(IntensityScheme)

#: every option alias, by the name the public API gives the option (tests and docs iterate over it)
ALIASES = {
    "channel_mode": ChannelMode,
    "kernel_collapse": KernelCollapse,
    "kernel_inflate": KernelInflate,
    "widths": WidthMode,
    "verify": VerifyMode,
    "prefer": WeightsPreference,
    "act": GenesisAct,
    "out_activation": OutActivation,
    "head": Med3DHead,
    "depth": Med3DDepth,
    "deep_supervision_mode": DeepSupervisionMode,
    "scheme": IntensityScheme,
}


class InvalidAdaptationOption(InvalidOptionError, AdaptationError):
    """An adaptation option (``channel_mode``, ``kernel_collapse``, ...) outside its choices: an
    :class:`InvalidOptionError` that is also the :class:`AdaptationError` the adaptation functions raise."""


T = TypeVar("T")


def choices_of(alias: object) -> tuple:
    """The choices of a ``Literal`` alias (a tuple of choices is returned as it is)."""
    return alias if isinstance(alias, tuple) else get_args(alias)


def check_option(
    name: str,
    value: T,
    alias: object,
    *,
    error: type[InvalidOptionError] = InvalidOptionError,
    label: str | None = None,
) -> T:
    """``value`` when it is one of the choices of ``alias`` (a ``Literal`` alias, or a tuple of choices);
    otherwise raise ``error`` (an :class:`InvalidOptionError`) naming the option ``name``, the value and the
    choices (``label`` replaces ``name`` in the message only).

    Comparison is by type and value, so ``1`` is not ``True`` and ``True`` is not the depth ``1``.
    """
    choices = choices_of(alias)
    for choice in choices:
        if value is choice or (type(value) is type(choice) and value == choice):
            return value
    raise error(name, value, choices, label)


__all__ = [
    "ALIASES", "CHANNEL_MODES", "COLLAPSE_MODES", "ChannelMode", "DEEP_SUPERVISION_MODES", "DeepSupervisionMode",
    "GENESIS_ACTS", "GenesisAct", "INFLATE_MODES", "INTENSITY_SCHEMES", "IntensityScheme", "InvalidAdaptationOption",
    "InvalidOptionError", "KernelCollapse", "KernelInflate", "MED3D_DEPTHS", "MED3D_HEADS", "Med3DDepth",
    "Med3DHead", "OUT_ACTIVATIONS", "OutActivation", "VERIFY_MODES", "VerifyMode", "WEIGHTS_PREFERENCES", "WIDTH_MODES",
    "WeightsPreference", "WidthMode",
    "check_option", "choices_of",
]
