"""CT volumes -> a prepared Models Genesis data folder: each volume resampled, scaled to [0, 1] and its cubes
chosen once, then memory-mapped by training.

Preparation (:func:`prepare_genesis_volume`, run by :func:`export.common.prepare.prepare_folder` in worker
processes): read with :func:`zoo.io.read_volume`, resample to ``spacing_zyx``, scale with the Genesis CT
scheme (HU clipped to [-1000, 1000] -> [0, 1]), and choose up to ``cubes_per_volume`` cube origins with the
upstream acceptance rule (:func:`zoo.io.sample_cubes`), seeded by (seed, the volume's key) so the choice
depends on neither the worker nor the order of the volumes. The volume is stored as ``image`` (float32,
(z, y, x)); the cubes as ``facts["boxes"]``. Upstream (``infinite_generator_3D.py``) likewise cuts a fixed set
of cubes per volume once, before training.

Split: by volume, the last ``val_fraction`` of ``--data`` (at least one when there are two or more) validate
unless ``--val-data`` is given; with a single volume a share of its cubes validates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from zoo.io import normalize, read_volume, resample, resampled_shape, sample_cubes

from ..common.data import find_volumes
from ..common.dry_run import VolumePlan
from ..common.prepare import Manifest, PreparedVolume, Recipe, VolumeJob, job_key, job_seed
from .config import TrainConfig

#: raise when :func:`prepare_genesis_volume` changes what it writes (older folders are then refused)
PREP_VERSION = 1


class NoCubeError(ValueError):
    """No cube of the volume passes the acceptance rule."""


def genesis_recipe(cfg: TrainConfig) -> Recipe:
    """The preparation parameters of ``cfg``: everything the prepared folder depends on."""
    params = {"spacing_zyx": list(cfg.spacing_zyx) if cfg.spacing_zyx is not None else None,
              "intensity": "genesis_ct", "cube_zyx": list(cfg.cube_zyx), "cubes_per_volume": cfg.cubes_per_volume,
              "max_tissue": cfg.max_tissue, "min_foreground": cfg.min_foreground, "seed": cfg.seed}
    return Recipe("genesis", PREP_VERSION, params, prepare_genesis_volume)


def intensity_stats(array: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation, extremes and 0.5 / 99.5 percentiles (on every 7th voxel) of an array."""
    flat = np.asarray(array, dtype=np.float32).reshape(-1)
    sample = flat[::7] if flat.size > 7 else flat
    p005, p995 = np.percentile(sample, [0.5, 99.5]) if sample.size else (0.0, 0.0)
    return {"mean": round(float(flat.mean(dtype=np.float64)), 6), "std": round(float(flat.std(dtype=np.float64)), 6),
            "min": float(flat.min()), "max": float(flat.max()), "p005": round(float(p005), 6),
            "p995": round(float(p995), 6)}


def prepare_genesis_volume(job: VolumeJob, params: Mapping[str, Any]) -> PreparedVolume:
    """One CT volume -> ``image`` (z, y, x) float32 in [0, 1] and its cube boxes; raises naming the file when it
    is not single-channel CT, is smaller than a cube or gives no acceptable cube."""
    path = job.sources[0]
    volume = read_volume(path)
    if volume.modality not in (None, "CT"):
        raise ValueError(f"{path}: modality {volume.modality}, but Models Genesis CT pretraining needs CT in HU")
    if volume.channels != 1:
        raise ValueError(f"{path}: {volume.channels} channels; pass single-channel CT volumes")
    source = {"source_shape_zyx": list(volume.shape_zyx),
              "source_spacing_zyx": [round(float(s), 6) for s in volume.spacing_zyx],
              "source_hu": intensity_stats(volume.array)}
    if params["spacing_zyx"] is not None:
        volume = resample(volume, params["spacing_zyx"])
    volume = normalize(volume, "genesis_ct")
    cube = tuple(params["cube_zyx"])
    _, starts = sample_cubes(volume, cube, params["cubes_per_volume"], np.random.default_rng(job_seed(params["seed"], job)),
                             max_tissue=params["max_tissue"], min_foreground=params["min_foreground"],
                             source=path, return_starts=True)
    if len(starts) == 0:
        raise NoCubeError(f"{path}: no cube of {cube} (z, y, x) passes the acceptance rule (max_tissue "
                          f"{params['max_tissue']}, min_foreground {params['min_foreground']}); it is not used")
    image = volume.array.astype(np.float32, copy=False)
    boxes = [[int(z), int(y), int(x), *cube] for z, y, x in np.asarray(starts).tolist()]
    facts = {**source, "shape_zyx": list(image.shape), "spacing_zyx": [round(float(s), 6) for s in volume.spacing_zyx],
             "stats": intensity_stats(image), "boxes": boxes}
    return PreparedVolume({"image": image}, facts)


def genesis_jobs(paths: Sequence[str | Path], val_paths: Sequence[str | Path] | None,
                 cfg: TrainConfig) -> list[VolumeJob]:
    """The volumes of a run with their roles: ``val_paths`` validate, else the last ``val_fraction`` of
    ``paths`` (at least one when there are two or more)."""
    train_files = find_volumes(paths)
    if val_paths:
        val_files = find_volumes(val_paths)
    else:
        n_val = max(1, round(len(train_files) * cfg.val_fraction)) if len(train_files) > 1 else 0
        train_files, val_files = train_files[: len(train_files) - n_val], train_files[len(train_files) - n_val:]
    return [VolumeJob(job_key(p), (str(p),), role) for role, files in (("train", train_files), ("val", val_files))
            for p in files]


def plan_genesis_volume(cfg: TrainConfig):
    """The dry-run planner of one job from its header (see :mod:`export.common.dry_run`)."""

    def plan(job: VolumeJob, headers: list[Any]) -> VolumePlan:
        h = headers[0]
        out = VolumePlan(job.sources[0], job.role, job.group)
        if h.modality not in (None, "CT"):
            out.reason = f"modality {h.modality}; Models Genesis CT pretraining needs CT in HU"
            return out
        if h.channels != 1:
            out.reason = f"{h.channels} channels; pass single-channel CT volumes"
            return out
        shape = resampled_shape(h.shape_zyx, h.spacing_zyx, cfg.spacing_zyx)
        out.out_shape_zyx = shape
        if any(s < c for s, c in zip(shape, cfg.cube_zyx)):
            out.reason = (f"shape {shape} (z, y, x) after resampling to {cfg.spacing_zyx} mm is smaller than the "
                          f"cube {tuple(cfg.cube_zyx)}")
            return out
        out.out_bytes = 4 * int(np.prod(shape))
        out.items = cfg.cubes_per_volume
        return out

    return plan


def split_rows(manifest: Manifest, cfg: TrainConfig) -> tuple[str, slice | None, slice | None]:
    """The validation role and the rows of the training and validation pools: with validation volumes
    ``("val", None, None)``; with a single training volume a share of its cubes validates."""
    if manifest.role("val"):
        return "val", None, None
    n = sum(len(v["facts"]["boxes"]) for v in manifest.role("train"))
    n_val = max(1, int(n * cfg.val_fraction))
    return "train", slice(0, n - n_val), slice(n - n_val, n)


def cube_counts(manifest: Manifest, cfg: TrainConfig) -> tuple[int, int]:
    """(training cubes, validation cubes) of a prepared folder under the split of :func:`split_rows`."""
    val_role, train_rows, val_rows = split_rows(manifest, cfg)
    if val_rows is not None and train_rows is not None:
        return train_rows.stop, val_rows.stop - val_rows.start
    count = lambda role: sum(len(v["facts"]["boxes"]) for v in manifest.role(role))  # noqa: E731
    return count("train"), count("val")


def data_summary(manifest: Manifest, cfg: TrainConfig, n_train: int, n_val: int) -> tuple[str, tuple[str, ...]]:
    """One line for the model card, and the data set names (the volumes' folder names)."""
    paths = [v["sources"][0]["path"] for v in manifest.volumes]
    names = ", ".join(Path(p).name for p in paths)
    summary = (f"{len(paths)} public CT volumes ({names}) resampled to {cfg.spacing_zyx} mm (z, y, x), "
               f"{n_train} training and {n_val} validation cubes of {cfg.cube_zyx} (z, y, x)")
    return summary, tuple(sorted({Path(p).parent.name for p in paths}))
