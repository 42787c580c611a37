"""The model-ready tensor of a volume, from an entry's own input contract (timm's ``resolve_data_config`` /
``create_transform``, for 3D medical volumes).

* :func:`resolve_data_config` reads a registry entry (``zoo.get_entry(name)``, a loaded model's
  ``pretrained_cfg``, or the model itself) into a frozen :class:`DataConfig`: channels, modality, axis order,
  spacing, intensity scheme of :func:`zoo.io.normalize` with its parameters, patch size, ``divisible_by``;
* :func:`model_input` turns a volume into ``(1, C, a0, a1, a2)``: resampled to the config's spacing
  (:func:`zoo.io.resample`), normalised with its scheme (:func:`zoo.io.normalize`), transposed to its axis
  order, optionally centre-cropped/padded, padded to ``divisible_by``.

Axis orders: volumes here are numpy ``(z, y, x)`` (``(c, z, y, x)`` with channels) with spacings ``(z, y, x)``
mm, as :func:`zoo.io.read_volume` returns them; the config's ``spacing_mm`` and ``patch_size`` are in the
model's ``axis_order`` (``"zyx"`` for nnU-Net / MONAI / MedicalNet, ``"xyz"`` for the Models Genesis UNet3D).

The intensity scheme comes from the entry's structured ``input.normalization`` where it has one, otherwise from
an explicit per-family table (:data:`FAMILY_INTENSITY`) matched to the entry's free-text ``input.intensity``.
An entry whose text maps to no scheme (or lacks the scheme's parameters) gives a config with
``intensity=None``; :func:`model_input` then refuses with :class:`UnmappedIntensityError`, naming the entry and
what to pass (``config.with_intensity(...)``).

This module sits in the base layer: it looks no name up in the registry, so pass an entry, not a name.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ZooError
from ..options import INTENSITY_SCHEMES
from .preprocess import normalize, resample
from .readers import Volume

__all__ = [
    "DataConfig",
    "DataConfigError",
    "FAMILY_INTENSITY",
    "UnmappedIntensityError",
    "model_input",
    "resolve_data_config",
]

_GENESIS_MEAN, _GENESIS_STD = -775.8457, 251.9326   # zoo.entries.genesis.GENESIS_NNUNET_CT_MEAN / _STD

#: the parameters each scheme of :func:`zoo.io.normalize` needs (``zscore``'s ``mask`` is optional here:
#: ``"nonzero"`` computes mean/std over the non-zero voxels of each channel)
_REQUIRED = {"genesis_ct": (), "nnunet_ct": ("mean", "std", "p005", "p995"), "zscore": (), "minmax": (),
             "genesis_mr": ()}
_OPTIONAL = {"zscore": ("mask",)}

#: entry-name pattern(s) -> (scheme or None, parameters or None, note). First match wins; an entry with a
#: structured ``input.normalization`` uses that instead (tests check both agree where both exist).
FAMILY_INTENSITY: tuple[tuple[tuple[str, ...], str | None, dict | None, str], ...] = (
    (("genesis-chest-ct",), "genesis_ct", {},
     "Models Genesis UNet3D: clip HU to [-1000, 1000], then (HU + 1000) / 2000"),
    (("genesis-chest-ct-nnunet-lung", "genesis-ct-demo"), "nnunet_ct",
     {"mean": _GENESIS_MEAN, "std": _GENESIS_STD, "p005": -1000.0, "p995": 1000.0},
     "Models Genesis nnU-Net CT z-score: HU clipped to [-1000, 1000] (its cubes are stored as (HU + 1000) / "
     "2000), then (HU + 775.8457) / 251.9326"),
    (("med3d-*",), "zscore", {"mask": "nonzero"},
     "MedicalNet: per-volume z-score with mean/std over the non-zero voxels; MedicalNet's N(0, 1) noise in the "
     "zero voxels is not added (the result stays deterministic)"),
    (("i3d-*",), "zscore", {},
     "suggested, not learned (2D ImageNet weights): per-volume z-score over all voxels; window CT first if needed"),
    (("suprem-*", "voco-*"), "nnunet_ct", {"mean": -175.0, "std": 425.0, "p005": -175.0, "p995": 250.0},
     "SuPreM and VoCo: clip HU to [-175, 250], scale to [0, 1] = (HU + 175) / 425; the RAS orientation is not "
     "applied (the volume's (z, y, x) array is taken as it is)"),
    (("openmind-*", "stunet-*"), "zscore", {},
     "OpenMind (nnssl) and STU-Net: per-volume, per-channel z-score over all voxels (no foreground mask)"),
    (("monai-wholebody-ct",), None, None,
     "MONAI whole-body CT bundle: z-score over the non-zero voxels, then min-max scaled to [-1, 1]; none of "
     "zoo.io.normalize's schemes, 'zscore' with mask 'nonzero' is the nearest"),
    (("unetpp-liver",), "nnunet_ct", None,
     "nnU-Net CTNormalization with the Liver data set's foreground statistics, which the entry does not record: "
     "pass them from the plans' foreground_intensity_properties_per_channel"),
    (("ssl3d-*",), None, None,
     "per-volume clipping to the volume's own 0.5 / 99.5 percentiles then z-score is none of zoo.io.normalize's "
     "schemes; 'zscore' without the clipping is the nearest"),
)


class DataConfigError(ZooError, ValueError):
    """A data config that cannot be applied as asked (unknown scheme, missing parameter, wrong shape)."""


class UnmappedIntensityError(DataConfigError):
    """The entry's intensity normalisation maps to no scheme of :func:`zoo.io.normalize` (or lacks parameters)."""


@dataclass(frozen=True)
class DataConfig:
    """What a model expects as input, in a form :func:`model_input` applies.

    ``spacing_mm`` and ``patch_size`` are in the model's ``axis_order`` (``None`` spacing: native, no
    resampling). ``intensity`` is a scheme of :func:`zoo.io.normalize` (``None``: the entry's text maps to no
    scheme, see ``intensity_note``) applied with ``intensity_params``. ``intensity_text`` is the entry's own
    description, ``entry`` its name.
    """

    entry: str
    in_channels: int
    modality: str
    axis_order: str
    spacing_mm: tuple[float, ...] | None
    intensity: str | None
    intensity_params: Mapping[str, Any] = field(default_factory=dict)
    patch_size: tuple[int, ...] = ()
    divisible_by: int = 1
    channel_names: tuple[str, ...] = ()
    intensity_text: str = ""
    intensity_note: str = ""

    def __post_init__(self) -> None:
        if sorted(self.axis_order) != ["x", "y", "z"]:
            raise DataConfigError(f"axis_order must be a permutation of 'xyz', got {self.axis_order!r}")
        object.__setattr__(self, "intensity_params", MappingProxyType(dict(self.intensity_params or {})))
        if self.intensity is not None:
            _check_scheme(self.entry, self.intensity, self.intensity_params)

    @property
    def spacing_zyx(self) -> tuple[float, float, float] | None:
        """``spacing_mm`` in ``(z, y, x)`` order (that of :class:`zoo.io.Volume`), or None."""
        if self.spacing_mm is None:
            return None
        return tuple(float(self.spacing_mm[self.axis_order.index(a)]) for a in "zyx")

    def with_intensity(self, scheme: str, **params) -> DataConfig:
        """A copy normalising with ``scheme`` of :func:`zoo.io.normalize` and ``params`` (e.g.
        ``with_intensity("nnunet_ct", mean=..., std=..., p005=..., p995=...)``)."""
        return replace(self, intensity=scheme, intensity_params=params,
                       intensity_note=f"set by the caller (entry's own: {self.intensity_text!r})")


def _check_scheme(entry: str, scheme: str, params: Mapping[str, Any]) -> None:
    if scheme not in INTENSITY_SCHEMES:
        raise DataConfigError(f"{entry}: unknown intensity scheme {scheme!r}; one of {', '.join(INTENSITY_SCHEMES)}")
    required, optional = _REQUIRED[scheme], _OPTIONAL.get(scheme, ())
    missing = [k for k in required if k not in params]
    extra = [k for k in params if k not in required and k not in optional]
    if missing or extra:
        raise DataConfigError(f"{entry}: intensity scheme {scheme!r} takes {', '.join(required + optional) or 'no'} "
                              f"parameter(s); missing {missing}, unexpected {extra}")
    if scheme == "zscore" and params.get("mask") not in (None, "nonzero"):
        raise DataConfigError(f"{entry}: zscore mask must be None or 'nonzero', got {params['mask']!r}")


def _from_normalization(norm: Any) -> tuple[str, dict, str]:
    """The :func:`zoo.io.normalize` scheme of a structured ``InputContract.normalization``."""
    if norm.scheme == "zscore":
        return "zscore", ({"mask": "nonzero"} if norm.foreground else {}), f"from input.normalization: {norm.describe}"
    lo, hi = norm.clip
    if (lo, hi, norm.mean, norm.std) == (-1000.0, 1000.0, -1000.0, 2000.0):
        return "genesis_ct", {}, f"from input.normalization: {norm.describe}"
    return ("nnunet_ct", {"mean": float(norm.mean), "std": float(norm.std), "p005": lo, "p995": hi},
            f"from input.normalization: {norm.describe}")


def _from_table(entry: Any) -> tuple[str | None, dict | None, str]:
    names = [entry.name] + ([entry.base_model] if getattr(entry, "base_model", None) else [])
    for name in names:
        for patterns, scheme, params, note in FAMILY_INTENSITY:
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                return scheme, (dict(params) if params is not None else None), note
    return None, None, "no intensity mapping is recorded for this entry (zoo.io.model_input.FAMILY_INTENSITY)"


def resolve_data_config(entry: Any, *, intensity: str | None = None,
                        intensity_params: Mapping[str, Any] | None = None) -> DataConfig:
    """The :class:`DataConfig` of a registry entry (``zoo.get_entry(name)``), a loaded model's
    ``pretrained_cfg``, or a loaded model (its ``pretrained_cfg``).

    ``intensity`` (and ``intensity_params``) override the entry's scheme. Without an override, an entry whose
    intensity maps to no scheme gives ``intensity=None`` and :func:`model_input` refuses it.
    """
    if isinstance(entry, str):
        raise TypeError(f"resolve_data_config({entry!r}): pass the entry, zoo.get_entry({entry!r}) "
                        "(zoo.io sits below the registry and looks no name up)")
    entry = getattr(entry, "pretrained_cfg", entry)
    contract = getattr(entry, "input", None)
    if contract is None or not hasattr(contract, "axis_order"):
        raise TypeError(f"resolve_data_config needs a registry entry (zoo.get_entry(name)) or a loaded model, "
                        f"got {type(entry).__name__}")
    norm = getattr(contract, "normalization", None)
    if intensity is not None:
        scheme, params, note = intensity, dict(intensity_params or {}), "set by the caller"
    elif norm is not None:
        scheme, params, note = _from_normalization(norm)
    else:
        scheme, params, note = _from_table(entry)
    if params is None:
        scheme, params = None, {}
    return DataConfig(
        entry=entry.name, in_channels=int(contract.in_channels), modality=contract.modality,
        axis_order=contract.axis_order,
        spacing_mm=None if contract.spacing_mm is None else tuple(float(s) for s in contract.spacing_mm),
        intensity=scheme, intensity_params=params, patch_size=tuple(int(p) for p in contract.patch_size),
        divisible_by=int(contract.divisible_by), channel_names=tuple(contract.channel_names),
        intensity_text=contract.intensity, intensity_note=note,
    )


def _centre_crop_or_pad(t, size: Sequence[int]):
    """Centre crop/zero-pad the last three axes of ``t`` to ``size`` (crop start ``(n - s) // 2``)."""
    import torch.nn.functional as F

    for axis, s in enumerate(size):
        dim = t.dim() - 3 + axis
        n = t.shape[dim]
        if n > s:
            t = t.narrow(dim, (n - s) // 2, s)
        elif n < s:
            before = (s - n) // 2
            pad = [0, 0] * (t.dim() - dim - 1) + [before, s - n - before]
            t = F.pad(t, pad)
    return t


def model_input(volume: Volume | np.ndarray, spacing: Sequence[float] | None, config: DataConfig, *,
                crop_or_pad: str | Sequence[int] | None = None):
    """The model-ready tensor of ``volume``: float32 ``torch.Tensor`` ``(1, C, a0, a1, a2)``, the spatial axes
    in ``config.axis_order`` (``"xyz"``: ``(1, C, x, y, z)``; ``"zyx"``: ``(1, C, z, y, x)``).

    ``volume``: a :class:`zoo.io.Volume` or a numpy array ``(z, y, x)`` / ``(c, z, y, x)``; ``spacing``: its
    voxel size in mm, ``(z, y, x)`` (``None``: the Volume's own). ``config``: a :class:`DataConfig` (or an
    entry / model, resolved with :func:`resolve_data_config`).

    Steps: resample to ``config.spacing_zyx`` (linear, :func:`zoo.io.resample`; skipped when the config has no
    spacing); normalise with ``config.intensity`` (:func:`zoo.io.normalize`); transpose the spatial axes to
    ``config.axis_order``; with ``crop_or_pad`` (``"patch"``: ``config.patch_size``, or three sizes in the
    model's axis order) centre-crop / zero-pad to that size; zero-pad each spatial axis at its far end to a
    multiple of ``config.divisible_by`` (so ``out[..., :n0, :n1, :n2]`` undoes it). Zero is the padding value
    after normalisation (-1000 HU for ``genesis_ct``, the mean for z-scores, as nnU-Net pads).

    Raises :class:`UnmappedIntensityError` when the config has no scheme, :class:`DataConfigError` when the
    channel count or a size is wrong.
    """
    import torch

    if not isinstance(config, DataConfig):
        config = resolve_data_config(config)
    if config.intensity is None:
        raise UnmappedIntensityError(
            f"{config.entry}: its input intensity ({config.intensity_text!r}) maps to no zoo.io.normalize scheme: "
            f"{config.intensity_note}. Normalise as it says and pass config.with_intensity(scheme, **params), "
            f"e.g. config.with_intensity('zscore') or config.with_intensity('nnunet_ct', mean=..., std=..., "
            f"p005=..., p995=...) (schemes: {', '.join(INTENSITY_SCHEMES)})")
    if isinstance(volume, Volume):
        vol = volume if spacing is None else volume.with_array(volume.array, spacing_zyx=tuple(spacing))
    else:
        if spacing is None:
            raise DataConfigError("model_input: pass the spacing (z, y, x) mm of a numpy array")
        array = np.asarray(volume)
        if array.ndim not in (3, 4):
            raise DataConfigError(f"model_input needs a (z, y, x) or (c, z, y, x) array, got shape {array.shape}")
        vol = Volume(array, tuple(spacing))
    if vol.channels != config.in_channels:
        raise DataConfigError(f"{config.entry} takes {config.in_channels} channel(s) "
                              f"{list(config.channel_names)}, the volume has {vol.channels}")
    if config.spacing_zyx is not None:
        vol = resample(vol, config.spacing_zyx)
    params = dict(config.intensity_params)
    if params.pop("mask", None) == "nonzero":
        arr = vol.array if vol.array.ndim == 4 else vol.array[None]
        chans = [normalize(vol.with_array(ch), config.intensity, mask=ch != 0, **params).array for ch in arr]
        vol = vol.with_array(np.stack(chans) if vol.array.ndim == 4 else chans[0])
    else:
        vol = normalize(vol, config.intensity, **params)
    arr = vol.array if vol.array.ndim == 4 else vol.array[None]
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    t = t.permute(0, *(1 + "zyx".index(a) for a in config.axis_order))
    if crop_or_pad is not None:
        size = config.patch_size if isinstance(crop_or_pad, str) and crop_or_pad == "patch" else crop_or_pad
        if isinstance(size, str) or len(size) != 3 or any(int(s) < 1 for s in size):
            raise DataConfigError(f"crop_or_pad must be 'patch' or 3 positive sizes in the model's axis order "
                                  f"({config.axis_order}), got {crop_or_pad!r}")
        t = _centre_crop_or_pad(t, [int(s) for s in size])
    d = max(int(config.divisible_by), 1)
    if d > 1:
        import torch.nn.functional as F

        pad: list[int] = []
        for n in reversed(t.shape[1:]):
            pad += [0, int(math.ceil(n / d) * d - n)]
        if any(pad):
            t = F.pad(t, pad)
    return t.contiguous()[None]
