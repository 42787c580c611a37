"""Unlabelled volumes -> a prepared data folder of the 3D self-supervised tasks, streamed as cubes (B, 1, S, S, S).

Preparation (:func:`prepare_ssl_volume`, run once per volume by :func:`export.common.prepare.prepare_folder`,
in worker processes): read with :func:`zoo.io.read_volume` (CT or MR; NRRD, NIfTI, MetaImage, DICOM,
InVesalius), optionally resample (:func:`zoo.io.resample`), normalise per volume (0.5 / 99.5 percentile clip,
z-score: :func:`export.common.data.clip_zscore`) and store the volume as ``image`` (float32, (z, y, x)). Its
``cubes_per_volume`` samples are chosen there too and stored as boxes ``[z, y, x, dz, dy, dx]`` in
``facts["boxes"]``, in one of two ways:

* ``sampling="resized"`` (the authors' data, e.g. MSD pancreas "images_resized_128_bbox"): a crop covering a
  fraction ``f`` of the volume along every axis (``f`` uniform in ``crop_fraction``; (1, 1) = the whole volume);
  training resizes it to ``size``^3 (trilinear) when it loads it (:class:`export.common.cubes.CubeBatches`), so
  every sample shows the anatomy at a known place;
* ``sampling="crop"``: random ``size``^3 sub-cubes at the volume's own resolution, chosen with
  :func:`zoo.io.sample_cubes` (no border, no Models Genesis tissue rule; ``min_foreground`` keeps cubes with
  enough voxels above the volume mean).

The boxes are drawn from a generator seeded by (seed, the volume's path), so they depend on neither the
preparing worker nor the order of the volumes. A volume that cannot be used (unreadable, several channels,
smaller than the task's cube or grid after resampling, no cube with enough foreground) is named with its reason
and left out, or stops the run with ``--strict``.

Split: by volume, the last ``val_fraction`` of ``--data`` (at least one when there are two or more) validate
unless ``--val-data`` is given; without any validation volume (a single volume) the last ``val_fraction`` of the
training cubes validate (at least one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.io import read_volume, resample, resampled_shape, sample_cubes

from ..common.cubes import CubeBatches
from ..common.data import clip_zscore_with_stats, find_volumes, split_by_volume
from ..common.distributed import DistInfo
from ..common.dry_run import VolumePlan
from ..common.prepare import Manifest, PreparedVolume, Recipe, VolumeJob, job_key, job_seed
from .config import SSLConfig

#: raise when :func:`prepare_ssl_volume` changes what it writes (folders of older versions are then refused)
PREP_VERSION = 1
CLIP_PERCENTILES = (0.5, 99.5)


class GridTooLargeError(ZooError, ValueError):
    """A volume smaller than the cube (grid) the task cuts from it."""


class NoCubeError(ZooError, ValueError):
    """No cube of a volume has enough foreground."""


# ------------------------------------------------------------------------------------------ recipe
def grid_description(cfg: SSLConfig) -> str:
    if cfg.task in ("jigsaw", "rpl"):
        cell = cfg.size // cfg.per_side
        return (f"the {cfg.per_side}x{cfg.per_side}x{cfg.per_side} grid of {cell}-voxel cells "
                f"({cfg.size}^3 voxels)")
    if cfg.task == "cpc":
        return f"the {cfg.per_side}x{cfg.per_side}x{cfg.per_side} grid of half-overlapping patches ({cfg.size}^3 voxels)"
    return f"the {cfg.size}^3 input cube"


def grid_cells(cfg: SSLConfig) -> int:
    """Grid cells per side the task cuts from a sample (1 for the whole-cube tasks)."""
    return cfg.per_side if cfg.task in ("jigsaw", "rpl", "cpc") else 1


def check_crop_fraction(fraction: Sequence[float]) -> tuple[float, float]:
    lo, hi = (float(f) for f in fraction)
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"crop_fraction must satisfy 0 < low <= high <= 1, got {tuple(fraction)}")
    return lo, hi


def ssl_recipe(cfg: SSLConfig) -> Recipe:
    """The preparation parameters of ``cfg``: everything the prepared folder depends on, and nothing else
    (``size`` and the grid only where they decide which boxes exist or which volumes fail)."""
    if cfg.sampling not in ("resized", "crop"):
        raise ValueError(f"unknown sampling {cfg.sampling!r}; use 'resized' or 'crop'")
    if cfg.cubes_per_volume < 1:
        raise ValueError(f"cubes_per_volume must be at least 1, got {cfg.cubes_per_volume}")
    params: dict[str, Any] = {
        "spacing_zyx": [float(s) for s in cfg.spacing_zyx] if cfg.spacing_zyx is not None else None,
        "intensity": "clip_zscore", "clip_percentiles": list(CLIP_PERCENTILES), "sampling": cfg.sampling,
        "cubes_per_volume": int(cfg.cubes_per_volume), "seed": int(cfg.seed),
    }
    if cfg.sampling == "resized":
        params.update(crop_fraction=list(check_crop_fraction(cfg.crop_fraction)), grid_cells=grid_cells(cfg))
    else:
        params.update(size=int(cfg.size), min_foreground=cfg.min_foreground, grid=grid_description(cfg))
    return Recipe("ssl3d", PREP_VERSION, params, prepare_ssl_volume)


def too_small_reason(path: str, shape_zyx: Sequence[int], params: Mapping[str, Any]) -> str | None:
    """Why a volume of ``shape_zyx`` (after resampling) cannot give the task's samples; None when it can."""
    shape = tuple(int(s) for s in shape_zyx)
    spacing = params["spacing_zyx"]
    where = f" after resampling to {tuple(spacing)} mm" if spacing is not None else ""
    if params["sampling"] == "resized":
        lo, cells = params["crop_fraction"][0], params["grid_cells"]
        if min(shape) * lo < 2 * cells:
            grid = f"a {cells}x{cells}x{cells} grid" if cells > 1 else "the cube"
            return (f"{path}: volume of shape (z, y, x) = {shape}{where} is too small for {grid}: a crop of {lo:g} "
                    "of it has fewer than 2 voxels per grid cell; use larger volumes or a finer --spacing")
        return None
    if min(shape) < params["size"]:
        return (f"{path}: volume of shape (z, y, x) = {shape}{where} is smaller than {params['grid']} the task "
                "cuts from it; use larger volumes, a finer --spacing or a smaller --size")
    return None


def resized_boxes(shape_zyx: Sequence[int], n: int, fraction: Sequence[float],
                  rng: np.random.Generator) -> np.ndarray:
    """``(n, 6)`` boxes ``[z, y, x, dz, dy, dx]``: each covers a fraction ``f ~ U(fraction)`` of every axis at
    a uniform position (the crops that ``sampling="resized"`` resizes to the cube)."""
    lo, hi = check_crop_fraction(fraction)
    out = np.empty((n, 6), np.int64)
    for i in range(n):
        f = rng.uniform(lo, hi)
        extent = [max(1, int(round(f * s))) for s in shape_zyx]
        start = [int(rng.integers(0, s - e + 1)) for s, e in zip(shape_zyx, extent)]
        out[i] = [*start, *extent]
    return out


def resize_box(array: np.ndarray, box: Sequence[int], size: int) -> np.ndarray:
    """The box ``[z, y, x, dz, dy, dx]`` of ``array`` resized to ``size``^3 (trilinear), as training loads it."""
    import torch.nn.functional as F

    z, y, x, dz, dy, dx = (int(b) for b in box)
    t = torch.from_numpy(np.array(array[z:z + dz, y:y + dy, x:x + dx], dtype=np.float32, copy=True))[None, None]
    if tuple(t.shape[2:]) != (size,) * 3:
        t = F.interpolate(t, size=(size,) * 3, mode="trilinear", align_corners=False)
    return t[0, 0].numpy()


def resized_crops(array: np.ndarray, size: int, n: int, fraction: tuple[float, float],
                  rng: np.random.Generator) -> np.ndarray:
    """``n`` crops (n, size, size, size) float32 of :func:`resized_boxes`, resized to ``size``^3 (trilinear)."""
    boxes = resized_boxes(array.shape, n, fraction, rng)
    return np.stack([resize_box(array, b, size) for b in boxes]) if n else np.zeros((0,) + (size,) * 3, np.float32)


def prepare_ssl_volume(job: VolumeJob, params: Mapping[str, Any]) -> PreparedVolume:
    """One volume -> ``image`` (z, y, x) float32, clipped and z-scored, and its boxes; raises naming the file
    when it has several channels, is too small for the task or gives no cube with enough foreground."""
    path = job.sources[0]
    volume = read_volume(path)
    if volume.channels != 1:
        raise ValueError(f"{path}: {volume.channels} channels; pass single-channel volumes")
    source = {"source_shape_zyx": list(volume.shape_zyx),
              "source_spacing_zyx": [round(float(s), 6) for s in volume.spacing_zyx]}
    if params["spacing_zyx"] is not None:
        volume = resample(volume, params["spacing_zyx"])
    reason = too_small_reason(path, volume.shape_zyx, params)
    if reason:
        raise GridTooLargeError(reason)
    spacing, modality = volume.spacing_zyx, volume.modality
    image, stats = clip_zscore_with_stats(volume.array, *CLIP_PERCENTILES)
    del volume                                                  # only the normalised image stays in memory
    rng = np.random.default_rng(job_seed(params["seed"], job))
    n = int(params["cubes_per_volume"])
    if params["sampling"] == "resized":
        boxes = resized_boxes(image.shape, n, params["crop_fraction"], rng).tolist()
    else:
        size = int(params["size"])
        _, starts = sample_cubes(image, (size,) * 3, n, rng, max_tissue=None, min_foreground=params["min_foreground"],
                                 threshold=0.0, border_zyx=(0, 0, 0), source=path, return_starts=True)
        if len(starts) == 0:
            raise NoCubeError(f"{path}: no {size}^3 cube has {params['min_foreground']} of its voxels above the "
                              "volume mean; lower --min-foreground or --size")
        boxes = [[int(z), int(y), int(x), size, size, size] for z, y, x in np.asarray(starts).tolist()]
    facts = {**source, "shape_zyx": list(image.shape),
             "spacing_zyx": [round(float(s), 6) for s in spacing], "stats": stats,
             "modality": modality or "unknown", "boxes": boxes}
    return PreparedVolume({"image": image}, facts)


# ------------------------------------------------------------------------------------------ jobs, dry run
def volume_jobs(paths: Sequence[str | Path], val_paths: Sequence[str | Path] | None,
                cfg: SSLConfig) -> list[VolumeJob]:
    """The volumes of a run with their roles: ``val_paths`` validate, else the last ``val_fraction`` of
    ``paths`` (at least one when there are two or more; none for a single volume)."""
    train_files = find_volumes(paths, what="volumes")
    if val_paths:
        val_files = find_volumes(val_paths, what="volumes")
        both = sorted({str(p) for p in train_files} & {str(p) for p in val_files})
        if both:
            raise ValueError(f"{both[0]} is both a training and a validation volume; pass it to --data or to "
                             "--val-data, not both")
    else:
        train_files, val_files = split_by_volume(train_files, cfg.val_fraction if len(train_files) > 1 else 0.0)
        if len(train_files) > 1 and not val_files:
            train_files, val_files = train_files[:-1], train_files[-1:]
    return [VolumeJob(job_key(p), (str(p),), role) for role, files in (("train", train_files), ("val", val_files))
            for p in files]


def plan_ssl_volume(recipe: Recipe) -> Callable[[VolumeJob, list[Any]], VolumePlan]:
    """The dry-run planner of one job from its header (see :mod:`export.common.dry_run`): the shape after
    resampling, the bytes of its prepared image, its cubes (an upper bound for ``crop`` with
    ``min_foreground``), or why it will fail."""
    params = recipe.params

    def plan(job: VolumeJob, headers: list[Any]) -> VolumePlan:
        h = headers[0]
        path = job.sources[0]
        out = VolumePlan(path, job.role, job.group)
        if h.channels != 1:
            out.reason = f"{path}: {h.channels} channels; pass single-channel volumes"
            return out
        shape = resampled_shape(h.shape_zyx, h.spacing_zyx, params["spacing_zyx"])
        out.out_shape_zyx = shape
        out.reason = too_small_reason(path, shape, params)
        if out.reason is None:
            out.out_bytes = 4 * int(np.prod(shape)) + 128
            out.items = int(params["cubes_per_volume"])
        return out

    return plan


# ------------------------------------------------------------------------------------------ training data
def split_rows(manifest: Manifest, cfg: SSLConfig) -> tuple[str, slice | None, slice | None]:
    """The validation role and the rows of the training and validation pools: with validation volumes
    ``("val", None, None)``; without any (a single volume) the last ``val_fraction`` of the training cubes
    (at least one) validate. Validation volumes that were asked for but all failed are an error."""
    if manifest.role("val"):
        return "val", None, None
    lost = [v for v in manifest.failed if v.get("role") == "val"]
    if lost:
        raise ValueError(f"no usable validation volume: {len(lost)} failed (first: {lost[0].get('reason')}); "
                         "pass other --val-data")
    n = sum(len((v.get("facts") or {}).get("boxes", [])) for v in manifest.role("train"))
    n_val = max(1, int(n * cfg.val_fraction))
    return "train", slice(0, max(n - n_val, 0)), slice(max(n - n_val, 0), n)


@dataclass
class SSLData:
    """A prepared folder as the tasks see it: cube plans for training and validation, and the facts of the
    model card and provenance (``files``: path, sha256, role, cubes of every volume used)."""

    manifest: Manifest
    size: int
    files: list[dict[str, str]]
    summary: str
    datasets: tuple[str, ...]
    modalities: tuple[str, ...]
    val_role: str = "val"
    train_rows: slice | None = None
    val_rows: slice | None = None
    n_train: int = 0
    n_val: int = 0
    prepared: dict[str, Any] = field(default_factory=dict)

    def train_plan(self, batch_size: int, seed: int, info: DistInfo) -> CubeBatches:
        """This rank's training batches: a (seed, epoch) permutation of the pool, dealt out to the ranks."""
        return CubeBatches(self.manifest, "train", (self.size,) * 3, batch_size, seed=seed, info=info,
                           rows=self.train_rows)

    def val_cubes(self, n: int) -> torch.Tensor:
        """``n`` fixed validation cubes (n, 1, S, S, S), spread evenly over the validation pool (repeated in
        turn when it holds fewer); the same on every rank. Only these are read: memory does not grow with the
        number of volumes."""
        plan = CubeBatches(self.manifest, self.val_role, (self.size,) * 3, 1, seed=0, shuffle=False,
                           rows=self.val_rows)
        m = len(plan.pool)
        if m == 0:
            raise ValueError("no validation cubes: add volumes, lower --min-foreground or --size")
        idx = (np.arange(n) * m) // n if n <= m else np.arange(n) % m
        return torch.stack([plan.cube(plan.pool[i]) for i in idx])


class ArrayCubes:
    """Cubes held in memory (N, 1, S, S, S) with the interface of :class:`SSLData` the tasks use: for tests
    and benchmarks on synthetic data (training streams prepared folders)."""

    def __init__(self, train: np.ndarray, val: np.ndarray) -> None:
        self.train = torch.from_numpy(np.ascontiguousarray(train, dtype=np.float32))
        self.val = torch.from_numpy(np.ascontiguousarray(val, dtype=np.float32))
        self.n_train, self.n_val = len(self.train), len(self.val)

    def train_plan(self, batch_size: int, seed: int, info: DistInfo) -> "_ArrayPlan":
        return _ArrayPlan(self.train, batch_size, seed, info)

    def val_cubes(self, n: int) -> torch.Tensor:
        if self.n_val == 0:
            raise ValueError("no validation cubes")
        m = self.n_val
        idx = (np.arange(n) * m) // n if n <= m else np.arange(n) % m
        return self.val[torch.from_numpy(idx)]


class _ArrayPlan:
    def __init__(self, cubes: torch.Tensor, batch_size: int, seed: int, info: DistInfo) -> None:
        self.cubes, self.batch_size, self.seed, self.info = cubes, batch_size, seed, info
        self.pool = np.arange(len(cubes))

    def __len__(self) -> int:
        return (len(self.cubes) // self.info.world) // self.batch_size

    def load(self, epoch: int, step: int) -> torch.Tensor:
        n, world = len(self.cubes), self.info.world
        order = np.random.default_rng([self.seed, epoch]).permutation(n)[self.info.rank::world][: n // world]
        idx = np.sort(order[step * self.batch_size:(step + 1) * self.batch_size])
        return self.cubes[torch.from_numpy(idx)].clone()


def ssl_data(manifest: Manifest, cfg: SSLConfig) -> SSLData:
    """The training view of a prepared folder: the split (:func:`split_rows`), cube counts, provenance rows
    and the model card's data line. Raises ``ValueError`` when training or validation gets no cube."""
    from ..common.prepare import source_summary

    if not manifest.volumes:
        raise ValueError(f"none of the volumes could be used ({len(manifest.failed)} failed; see above)")
    val_role, train_rows, val_rows = split_rows(manifest, cfg)
    count = {r: sum(len((v.get("facts") or {}).get("boxes", [])) for v in manifest.role(r)) for r in ("train", "val")}
    if val_rows is not None and train_rows is not None:
        n_train, n_val = train_rows.stop - train_rows.start, val_rows.stop - val_rows.start
    else:
        n_train, n_val = count["train"], count["val"]
    if n_train == 0 or n_val == 0:
        raise ValueError("no training or no validation cubes: add volumes, lower --min-foreground or --size")
    paths = [v["sources"][0]["path"] for v in manifest.volumes]
    shown = ", ".join(Path(p).name for p in paths[:8]) + (f" and {len(paths) - 8} more" if len(paths) > 8 else "")
    how = ("random crops" if cfg.sampling == "crop" else
           f"crops of {cfg.crop_fraction[0]:g}-{cfg.crop_fraction[1]:g} of each volume resized to")
    summary = (f"{len(paths)} unlabelled volumes ({shown})"
               + (f" resampled to {tuple(cfg.spacing_zyx)} mm (z, y, x)" if cfg.spacing_zyx else "")
               + f", per-volume 0.5-99.5 percentile clip and z-score, {n_train} training and "
               f"{n_val} validation {how} {cfg.size}^3")
    modalities = tuple(sorted({str((v.get("facts") or {}).get("modality") or "unknown") for v in manifest.volumes}))
    prepared = {"folder": str(manifest.folder), "recipe": manifest.identity["recipe"],
                "version": manifest.identity["version"], "digest": manifest.to_dict()["digest"],
                "volumes": len(manifest.volumes), "failed": [{"path": (v.get("sources") or [{}])[0].get("path"),
                                                               "reason": v.get("reason")} for v in manifest.failed]}
    return SSLData(manifest, int(cfg.size), source_summary(manifest), summary,
                   tuple(sorted({Path(p).parent.name for p in paths})), modalities, val_role, train_rows, val_rows,
                   n_train, n_val, prepared)


def prepare_data(paths: Sequence[str | Path], val_paths: Sequence[str | Path] | None, cfg: SSLConfig,
                 folder: str | Path, *, workers: int = 1, strict: bool = False, info: DistInfo | None = None,
                 progress: bool = False, log: Callable[[str], None] = print) -> SSLData:
    """Prepare ``paths`` (and ``val_paths``) into ``folder`` and return the training view: what
    ``python -m export.ssl3d`` does before training, in one call."""
    from ..common.prepare import prepare_folder

    manifest = prepare_folder(ssl_recipe(cfg), volume_jobs(paths, val_paths, cfg), folder, workers=workers,
                              strict=strict, info=info, progress=progress, log=log)
    return ssl_data(manifest, cfg)
