"""Resampling, intensity normalisation and Models Genesis cube sampling for :class:`zoo.io.Volume`.

Axis order everywhere: numpy ``(z, y, x)`` for a single-channel array, ``(c, z, y, x)`` with channels, as
produced by :func:`zoo.io.read_volume`; spacings are ``(z, y, x)`` in mm. Nothing here needs scipy: resampling
is a separable linear (or nearest) interpolation written with torch ``index_select``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from ..errors import ZooError
from ..options import IntensityScheme, check_option
from .readers import Volume, normalize_modality

__all__ = [
    "CT_SCHEMES",
    "MR_SCHEMES",
    "ModalityError",
    "SCHEMES",
    "VolumeTooSmallError",
    "genesis_ct",
    "genesis_mr",
    "minmax",
    "nnunet_ct",
    "normalize",
    "resample",
    "resampled_shape",
    "sample_cubes",
    "zscore",
]

HU_MIN, HU_MAX = -1000.0, 1000.0
#: Models Genesis tissue threshold: -150 HU on the [0, 1] scale
GENESIS_TISSUE_THRESHOLD = (-150.0 - HU_MIN) / (HU_MAX - HU_MIN)


class ModalityError(ZooError, ValueError):
    """An intensity scheme meant for another modality (a CT scheme on MR, or the reverse)."""


class VolumeTooSmallError(ZooError, ValueError):
    """The volume is smaller than what was asked of it (a cube larger than the volume)."""


# ---------------------------------------------------------------------------------------- resample
def _axis_plan(n_in: int, old: float, new: float, order: int):
    """Output length and, per output voxel, source indices and weights along one axis.

    Output voxel k sits at ``k * new`` mm from the first input voxel centre (same origin, as ITK's
    resampler with an unchanged origin); the output covers the input's voxel-centre extent:
    ``n_out = floor((n_in - 1) * old / new) + 1``.
    """
    n_out = int(math.floor((n_in - 1) * old / new + 1e-9)) + 1
    pos = np.arange(n_out, dtype=np.float64) * (new / old)          # in input voxel units
    pos = np.clip(pos, 0.0, n_in - 1)
    if order == 0:
        i0 = np.floor(pos + 0.5).astype(np.int64).clip(0, n_in - 1)   # ITK rounds halves up
        return n_out, i0, None, None
    i0 = np.floor(pos).astype(np.int64).clip(0, max(n_in - 2, 0))
    w = pos - i0
    i1 = np.minimum(i0 + 1, n_in - 1)
    return n_out, i0, i1, w


def resampled_shape(shape_zyx: Sequence[int], spacing_zyx: Sequence[float],
                    target_zyx: Sequence[float | None] | None) -> tuple[int, int, int]:
    """The ``(z, y, x)`` shape :func:`resample` gives a volume of ``shape_zyx`` at ``spacing_zyx`` mm
    for ``target_zyx`` (None, or None per axis, keeps it): ``floor((n - 1) * old / new) + 1`` per changed
    axis. Used to plan from headers without reading any voxel."""
    if target_zyx is None:
        return tuple(int(n) for n in shape_zyx)  # type: ignore[return-value]
    out = []
    for n, old, new in zip(shape_zyx, spacing_zyx, target_zyx):
        if new is None or float(old) == float(new):
            out.append(int(n))
        else:
            out.append(int(math.floor((int(n) - 1) * float(old) / float(new) + 1e-9)) + 1)
    return tuple(out)  # type: ignore[return-value]


def resample(volume: Volume, spacing_zyx: Sequence[float | None], order: int = 1,
             dtype=np.float32) -> Volume:
    """Resample ``volume`` to ``spacing_zyx`` (mm, ``(z, y, x)``; ``None`` keeps an axis as it is).

    ``order=1``: linear along each axis in turn (= trilinear); ``order=0``: nearest (for label maps, keeps
    the dtype). scipy-free: separable interpolation with ``torch.index_select`` (multi-threaded), computed in
    ``dtype`` (float32 by default; pass ``np.float64`` for exactness tests).

    Grid: the first output voxel centre coincides with the first input voxel centre (``origin`` unchanged,
    as ITK/SimpleITK ``Resample`` with the same origin and direction); output voxel ``k`` lies ``k * new``
    mm further along the axis, and the output stops at the last input voxel centre:
    ``n_out = floor((n_in - 1) * old / new) + 1``. So the spacing is exactly the one asked for, and up to one
    new voxel of extent can be lost at the far end. Channels (``(c, z, y, x)``) are resampled alike.
    """
    import torch

    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (linear), got {order}")
    if len(spacing_zyx) != 3:
        raise ValueError(f"spacing_zyx needs 3 values (z, y, x) in mm, got {spacing_zyx!r}")
    new_spacing = tuple(float(o) if n is None else float(n) for n, o in zip(spacing_zyx, volume.spacing_zyx))
    if any(not (s > 0 and math.isfinite(s)) for s in new_spacing):
        raise ValueError(f"spacings must be positive, got {spacing_zyx!r}")
    arr = volume.array
    lead = arr.ndim - 3
    if order == 0:
        t = torch.from_numpy(np.ascontiguousarray(arr))
    else:
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=dtype))
    for axis, (old, new) in enumerate(zip(volume.spacing_zyx, new_spacing)):
        if old == new:
            continue
        n_out, i0, i1, w = _axis_plan(t.shape[lead + axis], old, new, order)
        dim = lead + axis
        if order == 0:
            t = t.index_select(dim, torch.from_numpy(i0))
            continue
        shape = [1] * t.dim()
        shape[dim] = n_out
        wt = torch.from_numpy(w.astype(dtype)).view(shape)
        a = t.index_select(dim, torch.from_numpy(i0))
        b = t.index_select(dim, torch.from_numpy(i1))
        t = a.add_((b - a).mul_(wt))
    out = t.numpy()
    if np.shares_memory(out, arr):           # no axis changed: never hand back the input's buffer
        out = out.copy()
    return volume.with_array(out, spacing_zyx=new_spacing)


# --------------------------------------------------------------------------------------- intensity
def genesis_ct(array: np.ndarray) -> np.ndarray:
    """Models Genesis CT scaling: clip HU to ``[-1000, 1000]``, map linearly to ``[0, 1]``
    (``(HU + 1000) / 2000``). float32, same shape/axis order as the input."""
    a = np.clip(np.asarray(array, dtype=np.float32), HU_MIN, HU_MAX)
    return (a - HU_MIN) / np.float32(HU_MAX - HU_MIN)


def nnunet_ct(array: np.ndarray, mean: float, std: float, p005: float, p995: float) -> np.ndarray:
    """nnU-Net ``CTNormalization``: clip to the dataset's foreground 0.5 / 99.5 percentiles
    (``p005``, ``p995``), then z-score with the dataset's foreground ``mean`` and ``std``
    (``std`` floored at 1e-8). float32, same shape/axis order."""
    if p005 > p995:
        raise ValueError(f"p005 ({p005}) must not exceed p995 ({p995})")
    a = np.clip(np.asarray(array, dtype=np.float32), p005, p995)
    return (a - np.float32(mean)) / np.float32(max(float(std), 1e-8))


def zscore(array: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(x - mean) / std`` with mean/std over all voxels, or over ``mask`` (bool, same shape) when given;
    applied to every voxel. std floored at 1e-8 (a constant image becomes 0). float32, same shape."""
    a = np.asarray(array, dtype=np.float32)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != a.shape:
            raise ValueError(f"mask shape {mask.shape} differs from array shape {a.shape}")
        if not mask.any():
            raise ValueError("zscore: the mask selects no voxel")
        sel = a[mask]
    else:
        sel = a
    mean = float(sel.mean(dtype=np.float64))
    std = float(sel.std(dtype=np.float64))
    return (a - np.float32(mean)) / np.float32(max(std, 1e-8))


def minmax(array: np.ndarray) -> np.ndarray:
    """``(x - min) / (max - min)`` into ``[0, 1]``; a constant image becomes zeros. float32, same shape."""
    a = np.asarray(array, dtype=np.float32)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros_like(a)
    return (a - np.float32(lo)) / np.float32(hi - lo)


def genesis_mr(array: np.ndarray) -> np.ndarray:
    """Models Genesis MR scaling as the maintainer recommends (issue #36): per-image min-max to
    ``[0, 1]``. Same as :func:`minmax`, but refused on CT by :func:`normalize`."""
    return minmax(array)


SCHEMES = {"genesis_ct": genesis_ct, "nnunet_ct": nnunet_ct, "zscore": zscore, "minmax": minmax,
           "genesis_mr": genesis_mr}
CT_SCHEMES = frozenset({"genesis_ct", "nnunet_ct"})
MR_SCHEMES = frozenset({"genesis_mr"})


def normalize(volume: Volume, scheme: IntensityScheme, **kwargs) -> Volume:
    """Apply an intensity scheme to ``volume`` and return a new float32 :class:`Volume`.

    ``scheme``: ``"genesis_ct"``, ``"nnunet_ct"`` (needs ``mean, std, p005, p995``), ``"zscore"`` (optional
    ``mask``), ``"minmax"``, ``"genesis_mr"``. CT schemes assume Hounsfield units and are refused
    (:class:`ModalityError`) on a volume whose modality is known and not CT; ``genesis_mr`` is refused on
    a known non-MR volume. With an unknown modality a CT scheme runs, with a warning when no value is
    negative (HU data always has air below 0). Channel-first volumes are normalised channel by channel.
    """
    check_option("scheme", scheme, IntensityScheme, label="intensity scheme")
    modality = normalize_modality(volume.modality)
    if scheme in CT_SCHEMES and modality not in (None, "CT"):
        raise ModalityError(f"{volume.name}: intensity scheme {scheme!r} expects CT in Hounsfield units, but the "
                            f"volume's modality is {modality}. Use 'zscore', 'minmax' or 'genesis_mr' for MR, or "
                            f"read it with read_volume(..., modality='CT') if the modality is wrong.")
    if scheme in MR_SCHEMES and modality not in (None, "MR"):
        raise ModalityError(f"{volume.name}: intensity scheme {scheme!r} is for MR, but the volume's modality is "
                            f"{modality}. Use 'genesis_ct' or 'nnunet_ct' for CT.")
    if scheme in CT_SCHEMES and modality is None and np.asarray(volume.array).min() >= 0:
        warnings.warn(f"{volume.name}: modality unknown and no value below 0; this does not look like CT in "
                      f"Hounsfield units, yet scheme {scheme!r} assumes it", stacklevel=2)
    fn = SCHEMES[scheme]
    arr = volume.array
    out = np.stack([fn(ch, **kwargs) for ch in arr]) if arr.ndim == 4 else fn(arr, **kwargs)
    return volume.with_array(out.astype(np.float32, copy=False))


# ------------------------------------------------------------------------------------ cube sampling
def _tissue_density_sum(crop: np.ndarray, cube_z: int, len_depth: int, threshold: float) -> float:
    """Models Genesis ``d_img`` sum for one crop ``(cube_z + len_depth, y, x)``: for each voxel of the
    first ``cube_z`` slices, ``k`` = index of the first of the next ``len_depth`` slices (itself included)
    at or above ``threshold`` (``len_depth - 1`` when none); density ``1 - k / (len_depth - 1)``."""
    hit = crop >= threshold
    total = 0.0
    remaining = np.ones((cube_z,) + crop.shape[1:], dtype=bool)
    for k in range(len_depth):
        weight = 1.0 - k / (len_depth - 1) if len_depth > 1 else 1.0
        total += weight * float(np.count_nonzero(hit[k:k + cube_z] & remaining))
        remaining &= ~hit[k:k + cube_z]
    return total


def sample_cubes(array, cube_zyx: Sequence[int] = (32, 64, 64), n: int = 32, rng=None, *,
                 max_tissue: float | None = 0.15, min_foreground: float | None = None,
                 threshold: float = GENESIS_TISSUE_THRESHOLD, len_depth: int = 3,
                 border_zyx: Sequence[int] = (30, 100, 100), max_attempts: int | None = None,
                 source: str | None = None, return_starts: bool = False):
    """Random cubes for Models Genesis pretraining, with the upstream acceptance rule.

    ``array``: ``(z, y, x)`` (or ``(c, z, y, x)``; the rule then looks at channel 0) already scaled to
    ``[0, 1]`` by :func:`genesis_ct`, or a :class:`Volume`. ``cube_zyx``: cube size ``(z, y, x)``; upstream's
    64 x 64 x 32 ``(x, y, z)`` cube is ``(32, 64, 64)`` here. ``rng``: ``numpy.random.Generator``, a seed or
    None. Returns ``cubes`` ``(k, cz, cy, cx)`` (``(k, c, cz, cy, cx)`` with channels), float32, ``k <= n``,
    and with ``return_starts`` also the ``(k, 3)`` start corners ``(z, y, x)``.

    Upstream rule (``infinite_generator_3D.py``), followed here:

    * start corners uniform with borders ``border_zyx`` = (30, 100, 100) voxels: ``randint(b, S - crop - 1 - b)``
      per axis; the crop takes ``len_depth`` = 3 extra slices in z for the look-ahead below;
    * tissue density (upstream ``d_img``): for each cube voxel, ``k`` = the first of the next ``len_depth``
      slices (itself first) whose value is ``>= threshold`` (0.425 = -150 HU), density ``1 - k/(len_depth-1)``
      (1 for tissue, 0.5 for tissue one slice deeper, 0 otherwise); **reject** the crop when the density sum
      exceeds ``max_tissue`` (upstream ``lung_max`` = 0.15) times the cube volume. This prefers air/lung-rich
      cubes;
    * at most ``50 * n`` attempts (``max_attempts``); upstream returns what it has after that (or skips the
      volume when nothing was accepted: here, an empty array).

    Deviations, documented: axes too short for the upstream borders are sampled without a border (upstream
    would skip the volume, or fail for x/y); when the volume has fewer than ``cz + len_depth`` slices the
    look-ahead is cut at the last slice (missing slices count as no tissue); ``max_tissue=None`` disables
    the rule; ``min_foreground`` (off by default, not upstream) additionally rejects cubes whose fraction of
    voxels ``>= threshold`` is below it, useful on MR or to avoid empty air cubes.

    Raises :class:`VolumeTooSmallError` (naming the file) when the volume is smaller than the cube.
    """
    if isinstance(array, Volume):
        source = source or array.path
        array = array.array
    name = source or "<array>"
    arr = np.asarray(array)
    if arr.ndim not in (3, 4):
        raise ValueError(f"{name}: sample_cubes needs a (z, y, x) or (c, z, y, x) array, got shape {arr.shape}")
    cube = tuple(int(c) for c in cube_zyx)
    if len(cube) != 3 or min(cube) < 1:
        raise ValueError(f"cube_zyx must be 3 positive sizes (z, y, x), got {cube_zyx!r}")
    spatial = arr.shape[-3:]
    if any(s < c for s, c in zip(spatial, cube)):
        raise VolumeTooSmallError(f"{name}: volume of shape (z, y, x) = {tuple(spatial)} is smaller than the cube "
                                  f"{cube} (z, y, x); resample it (zoo.io.resample) or ask for a smaller cube")
    rule = arr[0] if arr.ndim == 4 else arr
    if max_tissue is not None and arr.size and (float(rule.min()) < -1e-6 or float(rule.max()) > 1 + 1e-6):
        raise ValueError(f"{name}: values span [{float(rule.min()):g}, {float(rule.max()):g}]; the Genesis rule "
                         f"needs [0, 1] data: apply zoo.io.genesis_ct (or normalize(volume, 'genesis_ct')) first")
    if rng is None or isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(rng)
    if max_attempts is None:
        max_attempts = 50 * n

    if max_tissue is not None and len_depth < 1:
        raise ValueError(f"len_depth must be >= 1 for the tissue rule, got {len_depth}")
    look = len_depth if max_tissue is not None else 0
    need = (cube[0] + look, cube[1], cube[2])
    ranges = []
    for s, c_need, c, b in zip(spatial, need, cube, border_zyx):
        lo, hi = int(b), s - c_need - 1 - int(b)          # upstream randint(b, S - crop - 1 - b)
        if hi < lo:                                       # too short for the border: none
            lo, hi = 0, (s - c_need if s >= c_need else s - c)
        ranges.append((lo, hi))

    cz, cy, cx = cube
    vol_cube = cz * cy * cx
    cubes, starts = [], []
    for _ in range(max_attempts):
        if len(cubes) == n:
            break
        z, y, x = (int(rng.integers(lo, hi + 1)) for lo, hi in ranges)
        if max_tissue is not None or min_foreground is not None:
            crop = rule[z:z + cz + look, y:y + cy, x:x + cx]
            if crop.shape[0] < cz + look:                   # look-ahead cut at the last slice
                pad = np.full((cz + look - crop.shape[0],) + crop.shape[1:], -np.inf, dtype=np.float64)
                crop = np.concatenate([crop.astype(np.float64), pad])
            if max_tissue is not None and \
                    _tissue_density_sum(crop, cz, look, threshold) > max_tissue * vol_cube:
                continue
            if min_foreground is not None and \
                    np.count_nonzero(crop[:cz] >= threshold) < min_foreground * vol_cube:
                continue
        sl = (Ellipsis, slice(z, z + cz), slice(y, y + cy), slice(x, x + cx))
        cubes.append(np.asarray(arr[sl], dtype=np.float32))
        starts.append((z, y, x))
    shape = ((0,) + arr.shape[:-3] + cube)
    out = np.stack(cubes) if cubes else np.zeros(shape, dtype=np.float32)
    if return_starts:
        return out, np.array(starts, dtype=np.int64).reshape(-1, 3)
    return out
