"""CT volumes -> Models Genesis cubes (N, 1, Z, Y, X) in [0, 1], split into training and validation by volume.

Each volume is read with :func:`zoo.io.read_volume`, resampled to ``cfg.spacing_zyx``, scaled with the Genesis
CT scheme (HU clipped to [-1000, 1000] -> [0, 1]) and cut into cubes with the upstream acceptance rule
(:func:`zoo.io.sample_cubes`). Validation cubes come from volumes never seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from zoo.hub.integrity import sha256_file
from zoo.io import normalize, read_volume, resample, sample_cubes

from ..common.data import find_volumes
from .config import TrainConfig


@dataclass
class CubeData:
    train: np.ndarray                 #: (N, 1, Z, Y, X) float32 in [0, 1]
    val: np.ndarray                   #: (M, 1, Z, Y, X) float32 in [0, 1]
    files: list[dict[str, str]]       #: every volume used: path, sha256, role (train/val), cubes
    summary: str                      #: one line for the model card
    datasets: tuple[str, ...]


def volume_cubes(path: Path, cfg: TrainConfig, seed: int) -> np.ndarray:
    """Cubes (k, 1, Z, Y, X) of one CT volume; raises naming the file when it is not CT or too small."""
    volume = read_volume(path)
    if volume.modality not in (None, "CT"):
        raise ValueError(f"{path}: modality {volume.modality}, but Models Genesis CT pretraining needs CT in HU")
    if volume.channels != 1:
        raise ValueError(f"{path}: {volume.channels} channels; pass single-channel CT volumes")
    if cfg.spacing_zyx is not None:
        volume = resample(volume, cfg.spacing_zyx)
    volume = normalize(volume, "genesis_ct")
    cubes = sample_cubes(volume, cfg.cube_zyx, cfg.cubes_per_volume, np.random.default_rng(seed),
                         max_tissue=cfg.max_tissue, min_foreground=cfg.min_foreground)
    return cubes[:, None].astype(np.float32, copy=False)


def prepare_cubes(paths: Sequence[str | Path], val_paths: Sequence[str | Path] | None, cfg: TrainConfig,
                  log: Callable[[str], None] = print) -> CubeData:
    """Read, resample, scale and cut every volume; the last ``val_fraction`` of volumes (at least one when
    there are two or more) validate unless ``val_paths`` are given."""
    train_files = find_volumes(paths)
    if val_paths:
        val_files = find_volumes(val_paths)
    else:
        n_val = max(1, round(len(train_files) * cfg.val_fraction)) if len(train_files) > 1 else 0
        train_files, val_files = train_files[: len(train_files) - n_val], train_files[len(train_files) - n_val:]
    train, val, records = [], [], []
    for i, (role, path) in enumerate([("train", p) for p in train_files] + [("val", p) for p in val_files]):
        cubes = volume_cubes(path, cfg, seed=cfg.seed * 1000 + i)
        log(f"{role:5s} {path}: {len(cubes)} cubes")
        if len(cubes) == 0:
            log(f"warning: {path} gave no cube that passes the acceptance rule; it is not used")
        (train if role == "train" else val).append(cubes)
        records.append({"path": str(path), "sha256": sha256_file(path), "role": role, "cubes": str(len(cubes))})
    train_arr = np.concatenate(train) if train else np.zeros((0, 1, *cfg.cube_zyx), np.float32)
    if not val_files:  # a single volume: hold out a share of its cubes
        n_val = max(1, int(len(train_arr) * cfg.val_fraction))
        train_arr, val_arr = train_arr[:-n_val], train_arr[-n_val:]
    else:
        val_arr = np.concatenate(val)
    if len(train_arr) == 0 or len(val_arr) == 0:
        raise ValueError("no training or no validation cubes: add volumes, or relax the acceptance rule")
    names = ", ".join(Path(r["path"]).name for r in records)
    summary = (f"{len(records)} public CT volumes ({names}) resampled to {cfg.spacing_zyx} mm (z, y, x), "
               f"{len(train_arr)} training and {len(val_arr)} validation cubes of {cfg.cube_zyx} (z, y, x)")
    datasets = tuple(sorted({Path(r["path"]).parent.name for r in records}))
    return CubeData(train_arr, val_arr, records, summary, datasets)
