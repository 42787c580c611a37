"""``--dry-run``: what a pretraining run would do, from the volumes' headers only.

A recipe turns each :class:`~export.common.prepare.VolumeJob` and the headers of its sources
(:func:`zoo.io.read_header`, no voxel data read) into a :class:`VolumePlan`: the shape after resampling, the
bytes the prepared folder will hold, the cubes or crops it gives per epoch, or the reason it will fail.
:func:`dry_run` collects the plans and prints volumes per split, items and optimiser steps per epoch, disk and
RAM needed, an estimated preparation time and every file that will fail and why.

The preparation time is estimated from the voxels read and written at the rates measured on a 2-core
x86-64 build machine (one single-threaded worker: reading, resampling and normalising about
``PREP_VOXELS_PER_SECOND`` output voxels per second); it divides by the number of workers and ranks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from .prepare import VolumeJob

#: output voxels one single-threaded worker prepares per second (measured on the pyradiomics 61 x 512 x 512
#: chest CT resampled to 1.5 x 1 x 1 mm: 13.4 M voxels in about 1.6 s with reading and scaling)
PREP_VOXELS_PER_SECOND = 8.0e6


@dataclass
class VolumePlan:
    """One volume's part of a run. ``items``: cubes or crops per epoch it contributes (an upper bound when an
    acceptance rule decides); ``reason``: why it will fail (None when it will be used)."""

    path: str
    role: str
    group: str = ""
    out_shape_zyx: tuple[int, int, int] | None = None
    out_bytes: int = 0
    items: int = 0
    reason: str | None = None


def plan_volumes(jobs: Sequence[VolumeJob], plan: Callable[[VolumeJob, list[Any]], VolumePlan]) -> list[VolumePlan]:
    """Read the headers of every job's sources and ask ``plan`` about each; a header that cannot be read
    becomes a failing plan naming the error."""
    from zoo.io import read_header

    out = []
    for job in jobs:
        try:
            headers = [read_header(p) for p in job.sources]
        except Exception as err:  # noqa: BLE001 - any unreadable header is reported, not raised
            out.append(VolumePlan(job.sources[0], job.role, job.group, reason=str(err) or type(err).__name__))
            continue
        out.append(plan(job, headers))
    return out


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def dry_run(plans: Sequence[VolumePlan], *, what: str, batch_size: int, world: int, workers: int,
            item_bytes: int, model_parameters: int, loader_workers: int, steps_per_epoch: int | None = None,
            exact: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Print the dry-run report and return it as a dict.

    ``what``: ``"cubes"`` or ``"crops"``; ``item_bytes``: bytes of one training item as the loader delivers
    it; ``model_parameters``: for the RAM estimate (weights, gradients and two optimiser buffers in float32);
    ``steps_per_epoch``: when the recipe does not simply divide its items (Med3D's balanced sampling);
    ``exact``: the item counts are exact (not an upper bound set by an acceptance rule).
    """
    ok = [p for p in plans if p.reason is None]
    bad = [p for p in plans if p.reason is not None]
    roles = sorted({p.role for p in plans})
    per_role = {r: sum(1 for p in ok if p.role == r) for r in roles}
    train_items = sum(p.items for p in ok if p.role == "train")
    val_items = sum(p.items for p in ok if p.role != "train")
    steps = steps_per_epoch if steps_per_epoch is not None else (train_items // max(world, 1)) // max(batch_size, 1)
    disk = sum(p.out_bytes for p in ok)
    out_voxels = sum(p.out_bytes for p in ok) / 4
    seconds = out_voxels / PREP_VOXELS_PER_SECOND / max(1, workers * world)
    batch_bytes = item_bytes * batch_size
    ram = (16 * model_parameters + batch_bytes * (2 * max(loader_workers, 1) + 4)
           + 2_000 * len(plans) + 600_000_000)
    report = {
        "volumes": len(plans), "volumes_per_split": per_role, "failing": len(bad),
        f"{what}_per_epoch": train_items, f"validation_{what}": val_items, "steps_per_epoch": steps,
        "disk_bytes": disk, "ram_bytes_per_process": ram, "estimated_prepare_seconds": round(seconds, 1),
        "failures": [{"path": p.path, "reason": p.reason} for p in bad],
        "plans": [asdict(p) for p in plans],
    }
    split = ", ".join(f"{n} {r}" for r, n in per_role.items())
    log(f"dry run: {len(plans)} volumes ({split}), {len(bad)} will fail")
    log(f"  {what} per epoch: {train_items:,} for training{'' if exact else ' (upper bound)'}, {val_items:,} for validation")
    log(f"  optimiser steps per epoch: {steps:,} (batch {batch_size} x {world} process(es))")
    log(f"  disk for the prepared folder: {_size(disk)}")
    log(f"  RAM per training process: about {_size(ram)} (model and optimiser {_size(16 * model_parameters)}, "
        f"{loader_workers} loader worker(s) of batches of {_size(batch_bytes)}), independent of the volume count")
    hours = seconds / 3600
    when = f"{seconds:.0f} s" if seconds < 120 else (f"{seconds / 60:.0f} min" if hours < 2 else f"{hours:.1f} h")
    log(f"  estimated preparation: {when} with {workers} worker(s) x {world} process(es) "
        f"(at {PREP_VOXELS_PER_SECOND / 1e6:.0f} M output voxels/s per worker)")
    if steps == 0 and ok:
        log(f"  warning: fewer {what} than one batch per process: add volumes or lower --batch-size")
    if any(p.role != "train" for p in plans) and not any(p.role != "train" for p in ok):
        log("  warning: every validation volume will fail: the run has no validation cubes; pass --val-data")
    for p in bad:
        reason = str(p.reason)
        log(f"  will fail: {reason if reason.startswith(p.path) else f'{p.path}: {reason}'}")
    if not math.isfinite(seconds):
        report["estimated_prepare_seconds"] = None
    return report
