"""Data helpers shared by the pretraining scripts, on top of :mod:`zoo.io` (which reads, resamples and
normalises; nothing here re-implements it).

* :func:`find_volumes`: the volumes named on a command line (files, or folders searched recursively);
* :func:`clip_zscore`: Med3D's per-volume intensity normalisation (clip to the volume's own 0.5 / 99.5
  percentiles, then z-score with its own mean and standard deviation), also used by the 3D self-supervised
  tasks, whose data mix CT and MR;
* :func:`split_by_volume`: the held-out share of volumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np

from zoo.io import zscore

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".inv3")
LABEL_MARKERS = ("_label", "_seg", "mask")

T = TypeVar("T")


def find_volumes(paths: Sequence[str | Path], what: str = "CT volumes") -> list[Path]:
    """Volumes named directly, or found (recursively, sorted) in folders; DICOM series folders count as one.

    Label maps (``*_label.*``, ``*_seg.*``, ``*mask*``) and nnU-Net ``labelsTr``/``labelsTs`` folders are
    skipped when searching folders. Raises ``FileNotFoundError`` naming what is missing.
    """
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            inside = sorted(f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(VOLUME_SUFFIXES))
            inside = [f for f in inside if not any(t in f.name.lower() for t in LABEL_MARKERS)
                      and not any(part in ("labelsTr", "labelsTs") for part in f.relative_to(p).parts)]
            if not inside and any(f.suffix.lower() == ".dcm" for f in p.iterdir()):
                inside = [p]
            if not inside:
                raise FileNotFoundError(f"{p}: no {what} found (looked for {', '.join(VOLUME_SUFFIXES)} and DICOM)")
            found.extend(inside)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    if not found:
        raise FileNotFoundError("no volumes given: pass files or folders with --data")
    return found


def _clipped(array: np.ndarray, lower: float, upper: float) -> tuple[np.ndarray, float, float, np.ndarray]:
    """``(array as float32, lower percentile, upper percentile, array clipped to them)``."""
    a = np.asarray(array, dtype=np.float32)
    lo, hi = np.percentile(a, [lower, upper])
    return a, float(lo), float(hi), np.clip(a, np.float32(lo), np.float32(hi))


def clip_zscore(array: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """Med3D intensity normalisation of one volume: clip to its ``lower`` / ``upper`` percentiles, then
    z-score with the clipped volume's mean and standard deviation (:func:`zoo.io.zscore`). float32, same
    shape; a constant volume becomes zeros."""
    return zscore(_clipped(array, lower, upper)[3])


def clip_zscore_with_stats(array: np.ndarray, lower: float = 0.5,
                           upper: float = 99.5) -> tuple[np.ndarray, dict[str, float]]:
    """:func:`clip_zscore` and the statistics it used (rounded to 6 decimals): the source's ``mean``, ``std``,
    ``min``, ``max``, the clip bounds ``p005`` / ``p995`` (the ``lower`` / ``upper`` percentiles) and the
    clipped volume's ``clipped_mean`` / ``clipped_std``."""
    a, lo, hi, clipped = _clipped(array, lower, upper)
    stats = {"mean": float(a.mean(dtype=np.float64)), "std": float(a.std(dtype=np.float64)),
             "min": float(a.min()), "max": float(a.max()), "p005": lo, "p995": hi,
             "clipped_mean": float(clipped.mean(dtype=np.float64)), "clipped_std": float(clipped.std(dtype=np.float64))}
    return zscore(clipped), {k: round(v, 6) for k, v in stats.items()}


def split_by_volume(items: Sequence[T], fraction: float) -> tuple[list[T], list[T]]:
    """``(train, held_out)``: the last ``round(len * fraction)`` items are held out, never all of them
    (at least one stays for training). ``fraction`` 0 holds out nothing."""
    items = list(items)
    n_val = int(round(len(items) * fraction)) if fraction > 0 else 0
    n_val = min(n_val, max(len(items) - 1, 0))
    return items[: len(items) - n_val], items[len(items) - n_val:]
