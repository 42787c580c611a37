"""Unlabelled volumes -> cubes (N, 1, S, S, S) for the 3D self-supervised tasks, split by volume.

Each volume is read with :func:`zoo.io.read_volume` (CT or MR; NRRD, NIfTI, MetaImage, DICOM, InVesalius),
optionally resampled (:func:`zoo.io.resample`), normalised per volume (0.5 / 99.5 percentile clip, z-score:
:func:`export.common.data.clip_zscore`), then turned into cubes of ``size``^3 in one of two ways:

* ``sampling="resized"`` (the authors' data, e.g. MSD pancreas "images_resized_128_bbox"): a crop covering a
  fraction ``f`` of the volume along every axis (``f`` uniform in ``crop_fraction``; (1, 1) = the whole volume)
  resized to ``size``^3 (trilinear), so every sample shows the anatomy at a known place;
* ``sampling="crop"``: random ``size``^3 sub-cubes at the volume's own resolution, cut with
  :func:`zoo.io.sample_cubes` (no border, no Models Genesis tissue rule; ``min_foreground`` keeps cubes with
  enough voxels above the volume mean). Volumes smaller than the cube are refused.

Validation cubes come from held-out volumes (a share of the cubes when there is a single volume).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from zoo.errors import ZooError
from zoo.hub.integrity import sha256_file
from zoo.io import read_volume, resample, sample_cubes

from ..common.data import clip_zscore, find_volumes, split_by_volume
from .config import SSLConfig


class GridTooLargeError(ZooError, ValueError):
    """A volume smaller than the cube (grid) the task cuts from it."""


@dataclass
class SSLData:
    train: np.ndarray                 #: (N, 1, S, S, S) float32, per-volume z-scored
    val: np.ndarray                   #: (M, 1, S, S, S)
    files: list[dict[str, str]]       #: path, sha256, role, cubes
    summary: str
    datasets: tuple[str, ...]
    modalities: tuple[str, ...]


def grid_description(cfg: SSLConfig) -> str:
    if cfg.task in ("jigsaw", "rpl"):
        cell = cfg.size // cfg.per_side
        return (f"the {cfg.per_side}x{cfg.per_side}x{cfg.per_side} grid of {cell}-voxel cells "
                f"({cfg.size}^3 voxels)")
    if cfg.task == "cpc":
        return f"the {cfg.per_side}x{cfg.per_side}x{cfg.per_side} grid of half-overlapping patches ({cfg.size}^3 voxels)"
    return f"the {cfg.size}^3 input cube"


def volume_cubes(path: Path, cfg: SSLConfig, seed: int) -> tuple[np.ndarray, str]:
    """Cubes (k, 1, S, S, S) of one volume and its modality; raises naming the file when it is too small."""
    volume = read_volume(path)
    if volume.channels != 1:
        raise ValueError(f"{path}: {volume.channels} channels; pass single-channel volumes")
    if cfg.spacing_zyx is not None:
        volume = resample(volume, cfg.spacing_zyx)
    if cfg.sampling == "resized":
        cells = cfg.per_side if cfg.task in ("jigsaw", "rpl", "cpc") else 1
        if min(volume.shape_zyx) * cfg.crop_fraction[0] < 2 * cells:
            raise GridTooLargeError(
                f"{path}: volume of shape (z, y, x) = {volume.shape_zyx} is too small for {grid_description(cfg)}: "
                f"a crop of {cfg.crop_fraction[0]:g} of it has fewer than 2 voxels per grid cell "
                "(--skip-small leaves such volumes out)")
        cubes = resized_crops(clip_zscore(volume.array), cfg.size, cfg.cubes_per_volume, cfg.crop_fraction,
                              np.random.default_rng(seed))
        return cubes[:, None], volume.modality or "unknown"
    if cfg.sampling != "crop":
        raise ValueError(f"unknown sampling {cfg.sampling!r}; use 'resized' or 'crop'")
    if min(volume.shape_zyx) < cfg.size:
        where = f" after resampling to {cfg.spacing_zyx} mm" if cfg.spacing_zyx is not None else ""
        raise GridTooLargeError(
            f"{path}: volume of shape (z, y, x) = {volume.shape_zyx}{where} is smaller than {grid_description(cfg)} "
            f"the {cfg.task} task cuts from it; use larger volumes, a finer --spacing or a smaller --size "
            "(or --skip-small to leave such volumes out)")
    array = clip_zscore(volume.array)
    cubes = sample_cubes(array, (cfg.size,) * 3, cfg.cubes_per_volume, np.random.default_rng(seed),
                         max_tissue=None, min_foreground=cfg.min_foreground, threshold=0.0, border_zyx=(0, 0, 0),
                         source=str(path))
    return cubes[:, None].astype(np.float32, copy=False), volume.modality or "unknown"


def resized_crops(array: np.ndarray, size: int, n: int, fraction: tuple[float, float],
                  rng: np.random.Generator) -> np.ndarray:
    """``n`` crops (n, size, size, size) float32: each covers a fraction ``f ~ U(fraction)`` of every axis of
    ``array`` at a uniform position and is resized to ``size``^3 (trilinear)."""
    import torch
    import torch.nn.functional as F

    lo, hi = fraction
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"crop_fraction must satisfy 0 < low <= high <= 1, got {fraction}")
    out = np.empty((n, size, size, size), np.float32)
    for i in range(n):
        f = rng.uniform(lo, hi)
        extent = [max(1, int(round(f * s))) for s in array.shape]
        start = [int(rng.integers(0, s - e + 1)) for s, e in zip(array.shape, extent)]
        crop = array[tuple(slice(a, a + e) for a, e in zip(start, extent))]
        t = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))[None, None]
        out[i] = F.interpolate(t, size=(size,) * 3, mode="trilinear", align_corners=False)[0, 0].numpy()
    return out


def prepare_cubes(paths: Sequence[str | Path], val_paths: Sequence[str | Path] | None, cfg: SSLConfig,
                  log: Callable[[str], None] = print, skip_small: bool = False) -> SSLData:
    """Read, resample, normalise and cut every volume (see the module docstring). A volume smaller than the
    task's cube raises :class:`GridTooLargeError`, or with ``skip_small`` is logged and left out."""
    train_files = find_volumes(paths, what="volumes")
    if val_paths:
        val_files = find_volumes(val_paths, what="volumes")
    else:
        train_files, val_files = split_by_volume(train_files, cfg.val_fraction if len(train_files) > 1 else 0.0)
        if len(train_files) > 1 and not val_files:
            train_files, val_files = train_files[:-1], train_files[-1:]
    train, val, records, modalities = [], [], [], set()
    for i, (role, path) in enumerate([("train", p) for p in train_files] + [("val", p) for p in val_files]):
        try:
            cubes, modality = volume_cubes(path, cfg, seed=cfg.seed * 1000 + i)
        except GridTooLargeError as err:
            if not skip_small:
                raise
            log(f"skipped {err}")
            continue
        modalities.add(modality)
        log(f"{role:5s} {path}: {len(cubes)} cubes of {cfg.size}^3 ({cfg.sampling})")
        if len(cubes) == 0:
            log(f"warning: {path} gave no cube with {cfg.min_foreground} foreground; it is not used")
        (train if role == "train" else val).append(cubes)
        records.append({"path": str(path), "sha256": sha256_file(path), "role": role, "cubes": str(len(cubes))})
    empty = np.zeros((0, 1, cfg.size, cfg.size, cfg.size), np.float32)
    train_arr = np.concatenate(train) if train else empty
    if not val_files:
        n_val = max(1, int(len(train_arr) * cfg.val_fraction))
        train_arr, val_arr = train_arr[:-n_val], train_arr[-n_val:]
    else:
        val_arr = np.concatenate(val) if val else empty
    if len(train_arr) == 0 or len(val_arr) == 0:
        raise ValueError("no training or no validation cubes: add volumes, lower --min-foreground or --size")
    names = ", ".join(Path(r["path"]).name for r in records)
    how = ("random crops" if cfg.sampling == "crop" else
           f"crops of {cfg.crop_fraction[0]:g}-{cfg.crop_fraction[1]:g} of each volume resized to")
    summary = (f"{len(records)} unlabelled volumes ({names})"
               + (f" resampled to {cfg.spacing_zyx} mm (z, y, x)" if cfg.spacing_zyx else "")
               + f", per-volume 0.5-99.5 percentile clip and z-score, {len(train_arr)} training and "
               f"{len(val_arr)} validation {how} {cfg.size}^3")
    datasets = tuple(sorted({Path(r["path"]).parent.name for r in records}))
    return SSLData(train_arr, val_arr, records, summary, datasets, tuple(sorted(modalities)))
