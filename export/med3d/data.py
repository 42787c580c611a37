"""Labelled data sets in nnU-Net's raw layout -> a prepared Med3D data folder -> crops streamed to training.

A data set is a folder ``DatasetXXX_Name/`` with ``dataset.json``, ``imagesTr/`` and ``labelsTr/``::

    dataset.json            {"channel_names": {"0": "CT"}, "labels": {"background": 0, "tumour": 1},
                             "numTraining": 2, "file_ending": ".nii.gz"}
    imagesTr/case_0000.nii.gz   (channel 0 of case "case"; channel k is _000k)
    labelsTr/case.nii.gz        (integer label map on the image grid)

Each data set is one Med3D *domain*. Preprocessing follows the Med3D paper: every volume is resampled
(:func:`zoo.io.resample`, linear for images, nearest for labels) to the **median spacing of its own data set**,
then clipped to its own 0.5 / 99.5 percentiles and z-scored (:func:`export.common.data.clip_zscore`).

How it runs (:mod:`export.common.prepare`):

1. In the main process, before any volume is read: every folder's layout and ``dataset.json``
   (:func:`scan_datasets`), then each data set's median spacing from the **headers** of its images
   (:func:`zoo.io.read_header`; no voxel is read) and the split into training and held-out cases
   (:func:`med3d_jobs`).
2. Each case is then prepared on its own, by one worker process (:func:`prepare_med3d_case`, the
   :func:`med3d_recipe`): read, checked (one 3D volume per file, label map on the image grid, only declared
   label values), resampled, normalised and written as ``image`` (float32) and ``label`` (uint8) ``.npy``
   files, with its facts: shapes and spacings before and after, the source's intensity statistics, the
   foreground bounding box (``bbox``) and voxel count. The paper's own pipeline reads every raw volume of a
   data set before resampling; here no process ever holds more than one case, whatever the data set's size.
3. Training maps the arrays into memory (:func:`datasets_from_manifest`) and cuts crops from them in
   ``DataLoader`` workers (:class:`Med3DCrops`, :class:`Med3DValCrops`).

Crops (:func:`crop_box`, :func:`sample_crop`): a random box whose size per axis is drawn between
``crop_min_factor`` times the foreground bounding box and the whole volume, placed so that the foreground lies
inside, then resized to the network input (image trilinear, labels nearest). Errors name the file and say what
is wrong (:class:`DatasetLayoutError`, :class:`LabelSetError`); a case that cannot be used is named and left out,
or stops the run with ``strict``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from zoo.errors import ZooError
from zoo.io import read_volume, resample, resampled_shape

from ..common.data import clip_zscore, split_by_volume
from ..common.distributed import DistInfo
from ..common.dry_run import VolumePlan
from ..common.prepare import Manifest, PreparedVolume, Recipe, VolumeJob, job_key, prepare_folder
from ..common.streaming import VolumeArrays
from .config import Med3DConfig

#: raise when :func:`prepare_med3d_case` changes what it writes (folders prepared before are then refused)
PREP_VERSION = 1


class DatasetLayoutError(ZooError, ValueError):
    """A folder that is not a data set in nnU-Net's raw layout (dataset.json, imagesTr/, labelsTr/)."""


class LabelSetError(ZooError, ValueError):
    """Label maps and dataset.json disagree (undeclared values, non-contiguous ids, shapes)."""


LAYOUT_HELP = ("nnU-Net's raw layout: DatasetXXX_Name/dataset.json (channel_names, labels, file_ending), "
               "imagesTr/CASE_0000<file_ending> (one file per channel) and labelsTr/CASE<file_ending>")


@dataclass
class RawCase:
    case_id: str
    images: list[Path]          #: one file per channel, channel order
    label: Path


@dataclass
class RawDataset:
    folder: Path
    name: str
    labels: dict[str, int]
    channel_names: dict[str, str]
    file_ending: str
    cases: list[RawCase]

    @property
    def num_classes(self) -> int:
        return max(self.labels.values()) + 1


def _dataset_json(folder: Path) -> dict:
    path = folder / "dataset.json"
    if not path.is_file():
        raise DatasetLayoutError(f"{folder}: no dataset.json; expected {LAYOUT_HELP}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise DatasetLayoutError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise DatasetLayoutError(f"{path} must hold a JSON object")
    return data


def _check_labels(labels: object, where: Path) -> dict[str, int]:
    if not isinstance(labels, dict) or not labels:
        raise LabelSetError(f"{where}: 'labels' must map names to integer ids, e.g. {{\"background\": 0, \"tumour\": 1}}")
    out: dict[str, int] = {}
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise LabelSetError(f"{where}: label {name!r} is a region ({value}); Med3D needs one integer id per class")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LabelSetError(f"{where}: label {name!r} has id {value!r}; ids must be integers >= 0")
        out[str(name)] = value
    ids = sorted(out.values())
    if ids != list(range(len(ids))):
        raise LabelSetError(f"{where}: label ids {ids} must be 0..{len(ids) - 1} without gaps or repeats "
                            "(0 = background)")
    if len(ids) < 2:
        raise LabelSetError(f"{where}: only background is declared; a segmentation data set needs >= 1 foreground class")
    return out


def scan_raw_dataset(folder: str | Path) -> RawDataset:
    """Check the layout of one data set and list its training cases (no pixel data read)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetLayoutError(f"{folder}: no such folder; each --data entry is a data set in {LAYOUT_HELP}")
    data = _dataset_json(folder)
    where = folder / "dataset.json"
    labels = _check_labels(data.get("labels"), where)
    channels = data.get("channel_names", data.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise DatasetLayoutError(f"{where}: needs 'channel_names', e.g. {{\"0\": \"CT\"}}")
    channel_names = {str(k): str(v) for k, v in channels.items()}
    ending = data.get("file_ending")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise DatasetLayoutError(f"{where}: needs 'file_ending', e.g. \".nii.gz\"")
    images_dir, labels_dir = folder / "imagesTr", folder / "labelsTr"
    for d in (images_dir, labels_dir):
        if not d.is_dir():
            raise DatasetLayoutError(f"{folder}: no {d.name}/ folder; expected {LAYOUT_HELP}")
    n_ch = len(channel_names)
    pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(ending) + "$")
    images: dict[str, dict[int, Path]] = {}
    for f in sorted(images_dir.iterdir()):
        if f.name.startswith("."):
            continue
        m = pattern.match(f.name)
        if not m:
            raise DatasetLayoutError(f"{f}: image files must be named CASE_XXXX{ending} (XXXX = channel); "
                                     f"expected {LAYOUT_HELP}")
        images.setdefault(m[1], {})[int(m[2])] = f
    cases = []
    label_files = sorted(f for f in labels_dir.iterdir() if not f.name.startswith("."))
    for f in label_files:
        if not f.name.endswith(ending):
            raise DatasetLayoutError(f"{f}: label files must end with the data set's file_ending {ending!r}")
        case = f.name[: -len(ending)]
        chans = images.pop(case, None)
        if chans is None:
            raise DatasetLayoutError(f"{f}: no image imagesTr/{case}_0000{ending} for this label map")
        missing = [c for c in range(n_ch) if c not in chans]
        if missing:
            raise DatasetLayoutError(f"{folder}: case {case!r} lacks channel(s) {missing} "
                                     f"(dataset.json declares {n_ch} channel(s))")
        cases.append(RawCase(case, [chans[c] for c in range(n_ch)], f))
    if images:
        raise DatasetLayoutError(f"{folder}: image(s) without a label map in labelsTr/: {sorted(images)[:5]}")
    if not cases:
        raise DatasetLayoutError(f"{folder}: labelsTr/ holds no label maps; expected {LAYOUT_HELP}")
    return RawDataset(folder, folder.name, labels, channel_names, ending, cases)


class NoUsableCaseError(ZooError, ValueError):
    """A data set none of whose training cases could be prepared."""


def scan_datasets(folders: Sequence[str | Path], cfg: Med3DConfig) -> list[RawDataset]:
    """Every data-set-level check, in the main process and before any voxel is read: each folder's layout and
    dataset.json (:func:`scan_raw_dataset`), distinct names, the ``channel`` asked for, at most 255 classes."""
    raws = [scan_raw_dataset(f) for f in folders]
    names = [r.name for r in raws]
    if len(set(names)) != len(names):
        raise DatasetLayoutError(f"data set folders must have distinct names, got {names}")
    for raw in raws:
        if cfg.channel >= len(raw.channel_names):
            raise DatasetLayoutError(f"{raw.folder}: channel {cfg.channel} asked for, the data set has "
                                     f"{len(raw.channel_names)} ({raw.channel_names})")
        if raw.num_classes > 255:
            raise LabelSetError(f"{raw.folder}: {raw.num_classes} classes; at most 255 are supported")
    return raws


def median_spacing(raw: RawDataset, channel: int, *, strict: bool = True) -> tuple[float, float, float] | None:
    """The data set's median spacing (z, y, x) in mm, from the headers of its images (no voxel read). Images
    whose header cannot be read are left out of the median (their cases fail when prepared); when none can be
    read: :class:`NoUsableCaseError`, or None when not ``strict``."""
    from zoo.io import read_header

    spacings, first_error = [], None
    for case in raw.cases:
        try:
            spacings.append(read_header(case.images[channel]).spacing_zyx)
        except (ZooError, ValueError, OSError) as err:
            first_error = first_error or err
    if not spacings:
        if not strict:
            return None
        raise NoUsableCaseError(f"{raw.folder}: no image header of this data set can be read ({first_error})")
    return tuple(float(np.median([s[a] for s in spacings])) for a in range(3))  # type: ignore[return-value]


def med3d_recipe(cfg: Med3DConfig) -> Recipe:
    """The preparation parameters of ``cfg``: everything a prepared folder depends on besides each case's
    own settings (its data set's median spacing and label set)."""
    params = {"channel": int(cfg.channel), "percentiles": [float(p) for p in cfg.percentiles],
              "intensity": "clip_zscore", "image_order": 1, "label_order": 0}
    return Recipe("med3d", PREP_VERSION, params, prepare_med3d_case)


def med3d_jobs(raws: Sequence[RawDataset], cfg: Med3DConfig, *, dry_run: bool = False) -> list[VolumeJob]:
    """One job per case, data sets in the given order: sources (image of channel ``cfg.channel``, label map),
    role (the last ``val_fraction`` of each data set's cases is held out, as :func:`split_by_volume` says),
    group (the data set) and settings (the data set's median spacing from the headers, its label set and
    modality, the case id). ``dry_run``: a data set without one readable header is planned anyway (its
    cases are reported as failing) instead of stopping here."""
    jobs = []
    for raw in raws:
        spacing = median_spacing(raw, cfg.channel, strict=not dry_run) or (1.0, 1.0, 1.0)
        _, held_out = split_by_volume(raw.cases, cfg.val_fraction)
        val_ids = {c.case_id for c in held_out}
        common = {"dataset": raw.name, "labels": dict(raw.labels), "spacing_zyx": list(spacing),
                  "modality": raw.channel_names.get(str(cfg.channel), "unknown")}
        for case in raw.cases:
            image = case.images[cfg.channel]
            jobs.append(VolumeJob(job_key(image, f"{raw.name}."), (str(image), str(case.label)),
                                  "val" if case.case_id in val_ids else "train", raw.name,
                                  {**common, "case": case.case_id}))
    return jobs


def _intensity_stats(array: np.ndarray, percentiles: Sequence[float]) -> dict[str, float]:
    lo, hi = (float(p) for p in percentiles)
    p_lo, p_hi = np.percentile(array, [lo, hi])
    return {"mean": round(float(array.mean(dtype=np.float64)), 6), "std": round(float(array.std(dtype=np.float64)), 6),
            "min": float(array.min()), "max": float(array.max()), f"p{lo:g}": round(float(p_lo), 6),
            f"p{hi:g}": round(float(p_hi), 6)}


def prepare_med3d_case(job: VolumeJob, params: Mapping[str, Any]) -> PreparedVolume:
    """One case (runs in a worker process): read, check, resample to ``job.settings["spacing_zyx"]``,
    clip-z-score; raises :class:`DatasetLayoutError` / :class:`LabelSetError` naming the file."""
    image_path, label_path = job.sources
    settings = job.settings
    img = read_volume(image_path)
    lab = read_volume(label_path)
    for vol, path in ((img, image_path), (lab, label_path)):
        if vol.channels != 1:
            raise DatasetLayoutError(f"{path}: {vol.channels} channels in one file; one 3D volume per file "
                                     "expected (nnU-Net raw layout)")
    if img.shape_zyx != lab.shape_zyx:
        raise LabelSetError(f"{label_path}: label map of shape {lab.shape_zyx} (z, y, x) does not match its "
                            f"image {Path(image_path).name} of shape {img.shape_zyx}")
    values = np.unique(lab.array)
    if not np.all(np.equal(np.mod(values, 1), 0)):
        raise LabelSetError(f"{label_path}: non-integer label values {values[:5]}")
    labels = {str(k): int(v) for k, v in settings["labels"].items()}
    undeclared = sorted({int(v) for v in values} - set(labels.values()))
    if undeclared:
        labels = dict(sorted(labels.items(), key=lambda kv: kv[1]))
        raise LabelSetError(f"{label_path}: label values {undeclared} are not declared in "
                            f"{Path(label_path).parent.parent / 'dataset.json'} (labels {labels}); the label maps "
                            "and dataset.json must use the same label set")
    spacing = tuple(float(s) for s in settings["spacing_zyx"])
    facts: dict[str, Any] = {
        "case": settings["case"],
        "source_shape_zyx": list(img.shape_zyx),
        "source_spacing_zyx": [round(float(s), 6) for s in img.spacing_zyx],
        "source_intensity": _intensity_stats(img.array, params["percentiles"]),
    }
    img_r = resample(img, spacing, order=1)
    del img
    image = clip_zscore(img_r.array, *params["percentiles"])
    del img_r
    lab_r = resample(lab.with_array(lab.array.astype(np.int16, copy=False)), spacing, order=0)
    del lab
    label = lab_r.array.astype(np.uint8)
    bbox = foreground_bbox(label)
    facts.update({
        "shape_zyx": list(image.shape), "spacing_zyx": list(spacing),
        "bbox": [list(b) for b in bbox] if bbox is not None else None,
        "foreground_voxels": int(np.count_nonzero(label)),
        "label_values": np.flatnonzero(np.bincount(label.ravel(), minlength=1)).tolist(),
    })
    return PreparedVolume({"image": image, "label": label}, facts)


# ------------------------------------------------------------------------------------------ prepared data sets
@dataclass
class Case:
    """One prepared case. ``image`` / ``label``: the ``(z, y, x)`` arrays (float32 / uint8), or the paths of
    their ``.npy`` files in a prepared folder (memory-mapped when used, see :func:`case_arrays`)."""

    case_id: str
    image: np.ndarray | str
    label: np.ndarray | str
    bbox: tuple[tuple[int, int], ...] | None   #: per axis (lo, hi) of the foreground, hi exclusive
    key: str = ""                               #: the volume's key in the prepared folder
    shape_zyx: tuple[int, int, int] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        if self.shape_zyx is not None:
            return tuple(self.shape_zyx)
        if isinstance(self.image, np.ndarray):
            return tuple(self.image.shape)
        return tuple(np.load(self.image, mmap_mode="r", allow_pickle=False).shape)


def _mmap(path: str | os.PathLike) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


def case_arrays(case: Case, open_array: Callable[[str], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(image, label)`` of a case: its arrays, or its ``.npy`` files memory-mapped (by ``open_array``, e.g. a
    :class:`export.common.streaming.VolumeArrays`)."""
    opener = open_array or _mmap
    image = case.image if isinstance(case.image, np.ndarray) else opener(case.image)
    label = case.label if isinstance(case.label, np.ndarray) else opener(case.label)
    return image, label


@dataclass
class Med3DDataset:
    """One domain: its cases (prepared), label set, modality, spacing, the files used and the cases left out."""

    name: str
    labels: dict[str, int]
    modality: str
    spacing_zyx: tuple[float, float, float]
    train: list[Case]
    val: list[Case]
    files: list[dict[str, str]] = field(default_factory=list)
    left_out: list[dict[str, str]] = field(default_factory=list)   #: {"path", "reason"} of cases that failed

    @property
    def num_classes(self) -> int:
        return max(self.labels.values()) + 1

    @property
    def val_from_training(self) -> bool:
        """True when no case could be held out: validation uses fixed crops of the training volumes."""
        return not self.val


def foreground_bbox(label: np.ndarray) -> tuple[tuple[int, int], ...] | None:
    """Per axis ``(lo, hi)`` (hi exclusive) of the voxels > 0, or None for an empty label map."""
    if not label.any():
        return None
    out = []
    for axis in range(label.ndim):
        other = tuple(a for a in range(label.ndim) if a != axis)
        idx = np.flatnonzero(label.any(axis=other))
        out.append((int(idx[0]), int(idx[-1]) + 1))
    return tuple(out)


def datasets_from_manifest(manifest: Manifest, names: Sequence[str] | None = None) -> list[Med3DDataset]:
    """The data sets of a prepared folder, in the order of ``names`` (default: as they first appear in the
    manifest); each case's arrays stay on disk. Raises :class:`NoUsableCaseError` for a data set without one
    usable training case, naming the reasons."""
    volumes: dict[str, list[dict[str, Any]]] = {}
    for v in manifest.volumes:
        volumes.setdefault(str(v["group"]), []).append(v)
    failed: dict[str, list[dict[str, str]]] = {}
    for v in manifest.failed:
        sources = v.get("sources") or [{"path": "?"}]
        failed.setdefault(str(v.get("group", "")), []).append(
            {"path": str(sources[0].get("path")), "reason": str(v.get("reason", "unknown"))})
    if names is None:
        names = list(volumes)
    if not names:
        raise NoUsableCaseError(f"{manifest.folder}: no case could be prepared ({len(manifest.failed)} failed)")
    out = []
    for name in names:
        vols = volumes.get(name, [])
        bad = failed.get(name, [])
        if not any(v["role"] == "train" for v in vols):
            why = "; ".join(f"{b['reason']}" for b in bad[:3])
            raise NoUsableCaseError(f"data set {name}: no training case could be used"
                                    + (f" ({len(bad)} left out: {why})" if bad else ""))
        settings = vols[0]["settings"]
        cases: dict[str, list[Case]] = {"train": [], "val": []}
        files = []
        for v in vols:
            f = v["facts"]
            bbox = tuple((int(lo), int(hi)) for lo, hi in f["bbox"]) if f.get("bbox") else None
            cases[v["role"]].append(Case(str(f["case"]), str(manifest.path(v, "image")), str(manifest.path(v, "label")),
                                         bbox, str(v["key"]), tuple(int(s) for s in f["shape_zyx"])))
            files += [{"path": str(s["path"]), "sha256": str(s["sha256"]), "role": f"{name} {v['role']}"}
                      for s in v["sources"]]
        labels = dict(sorted(((str(k), int(i)) for k, i in settings["labels"].items()), key=lambda kv: kv[1]))
        out.append(Med3DDataset(name, labels, str(settings.get("modality", "unknown")),
                                tuple(float(s) for s in settings["spacing_zyx"]),  # type: ignore[arg-type]
                                cases["train"], cases["val"], files, bad))
    return out


def prepare_datasets(folders: Sequence[str | Path], cfg: Med3DConfig, prepared: str | Path, *, workers: int = 1,
                     strict: bool = False, info: DistInfo | None = None, progress: bool = True,
                     log: Callable[[str], None] = print) -> tuple[Manifest, list[Med3DDataset]]:
    """Check the data sets, prepare (or reuse) every case into the folder ``prepared`` and return its manifest
    and the data sets (see the module docstring)."""
    raws = scan_datasets(folders, cfg)
    jobs = med3d_jobs(raws, cfg)
    manifest = prepare_folder(med3d_recipe(cfg), jobs, prepared, workers=workers, strict=strict, info=info,
                              progress=progress, log=log)
    datasets = datasets_from_manifest(manifest, [r.name for r in raws])
    describe(datasets, log)
    return manifest, datasets


def describe(datasets: Sequence[Med3DDataset], log: Callable[[str], None] = print) -> None:
    """One line per data set: modality, cases per split, median spacing, cases left out."""
    for d in datasets:
        log(f"{d.name} ({d.modality}): {len(d.train)} training / {len(d.val)} held-out cases at the data set's "
            f"median spacing {tuple(round(s, 3) for s in d.spacing_zyx)} mm"
            + (f", {len(d.left_out)} left out" if d.left_out else ""))


# ------------------------------------------------------------------------------------------------ dry run
def plan_med3d_case(job: VolumeJob, headers: list[Any]) -> VolumePlan:
    """The dry-run plan of one case from the headers of its image and label map."""
    img, lab = headers
    out = VolumePlan(job.sources[0], job.role, job.group)
    for h, path in ((img, job.sources[0]), (lab, job.sources[1])):
        if h.channels != 1:
            out.path, out.reason = path, (f"{h.channels} channels in one file; one 3D volume per file expected "
                                          "(nnU-Net raw layout)")
            return out
    if tuple(img.shape_zyx) != tuple(lab.shape_zyx):
        out.path = job.sources[1]
        out.reason = (f"label map of shape {tuple(lab.shape_zyx)} (z, y, x) does not match its image "
                      f"{Path(job.sources[0]).name} of shape {tuple(img.shape_zyx)}")
        return out
    shape = resampled_shape(img.shape_zyx, img.spacing_zyx, job.settings["spacing_zyx"])
    out.out_shape_zyx = shape  # type: ignore[assignment]
    out.out_bytes = 5 * int(np.prod(shape))                 # image float32 + label uint8
    return out


def plan_med3d(jobs: Sequence[VolumeJob], cfg: Med3DConfig, world: int) -> tuple[list[VolumePlan], int]:
    """Dry-run plans of every job (headers only) with the crops each contributes per epoch under balanced
    sampling, and the optimiser steps per epoch."""
    from ..common.dry_run import plan_volumes

    plans = plan_volumes(jobs, plan_med3d_case)
    groups = list(dict.fromkeys(j.group for j in jobs))
    train = {g: [p for p in plans if p.group == g and p.role == "train" and p.reason is None] for g in groups}
    usable = [g for g in groups if train[g]]
    if not usable:
        return plans, 0
    per = steps_per_dataset(max(len(train[g]) for g in usable), cfg.samples_per_volume, cfg.batch_size, world)
    need = per * cfg.batch_size * world
    for g in usable:
        share, extra = divmod(need, len(train[g]))
        for i, p in enumerate(train[g]):
            p.items = share + (1 if i < extra else 0)
    for p in plans:
        if p.role != "train" and p.reason is None:
            p.items = cfg.val_crops_per_volume
    return plans, len(usable) * per


# ------------------------------------------------------------------------------------------------ crops
def steps_per_dataset(n_max: int, samples_per_volume: int, batch_size: int, world: int) -> int:
    """Optimiser steps per data set per epoch: ``samples_per_volume`` crops per volume of the largest data set
    (``n_max`` training cases), dealt out in batches of ``batch_size`` to ``world`` processes (at least 1)."""
    return max(1, (n_max * samples_per_volume) // (batch_size * world))


def crop_box(shape: Sequence[int], bbox: tuple[tuple[int, int], ...] | None, rng: np.random.Generator,
             min_factor: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(start, size)`` of a random crop: per axis the size is uniform between ``min_factor`` x the bounding
    box (at least 1 voxel) and the whole axis, and the box holds the whole bounding box (uniform crops when
    there is no foreground)."""
    starts, sizes = [], []
    for axis, s in enumerate(shape):
        if bbox is None:
            lo, hi = 0, 0
            smallest = max(1, int(math.ceil(s / 4)))
        else:
            lo, hi = bbox[axis]
            smallest = min(s, max(1, int(math.ceil(min_factor * (hi - lo)))))
        size = int(rng.integers(smallest, s + 1))
        if bbox is None:
            first, last = 0, s - size
        else:
            first, last = max(0, hi - size), min(lo, s - size)
        starts.append(int(rng.integers(first, last + 1)))
        sizes.append(size)
    return tuple(starts), tuple(sizes)


def cut_crop(image: np.ndarray, label: np.ndarray, start: Sequence[int], size: Sequence[int],
             patch_zyx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The box ``(start, size)`` of ``image`` / ``label`` (only its voxels are read from a memory map) resized
    to ``patch_zyx``: image (1, Z, Y, X) float32 (trilinear), labels (Z, Y, X) uint8 (nearest)."""
    sl = tuple(slice(int(a), int(a) + int(n)) for a, n in zip(start, size))
    img = torch.from_numpy(np.array(image[sl], dtype=np.float32, copy=True))[None, None]
    lab = torch.from_numpy(np.array(label[sl], dtype=np.float32, copy=True))[None, None]
    patch = tuple(int(p) for p in patch_zyx)
    img = F.interpolate(img, size=patch, mode="trilinear", align_corners=False)
    lab = F.interpolate(lab, size=patch, mode="nearest")
    return img[0], lab[0, 0].to(torch.uint8)


def sample_crop(case: Case, patch_zyx: Sequence[int], rng: np.random.Generator, min_factor: float,
                open_array: Callable[[str], np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One random crop of ``case`` (:func:`crop_box`) resized to ``patch_zyx``: image (1, Z, Y, X) float32,
    labels (Z, Y, X) uint8."""
    image, label = case_arrays(case, open_array)
    start, size = crop_box(image.shape, case.bbox, rng, min_factor)
    return cut_crop(image, label, start, size, patch_zyx)


class Med3DCrops:
    """The training batches of one rank (an :class:`export.common.streaming.BatchPlan`).

    Balanced sampling: per epoch every data set contributes ``steps_per_dataset`` batches (``samples_per_volume``
    crops per volume of the largest data set; the smaller ones are drawn with repetition, a fresh permutation of
    their cases each round), the order of the data sets' batches is shuffled, and all ranks train the same data
    set at a given step, on disjoint slices of its case sequence. The schedule depends on (seed, epoch) only;
    the crops of step ``s`` on rank ``r`` on a numpy generator seeded by (seed, epoch, r, s), so 0 or 8 loader
    workers, and a resumed run, give the same batches.

    ``load(epoch, step)`` -> ``(dataset index, images (B, 1, Z, Y, X) float32, labels (B, Z, Y, X) uint8)``.
    """

    def __init__(self, datasets: Sequence[Med3DDataset], cfg: Med3DConfig, info: DistInfo | None = None,
                 max_open: int = 16) -> None:
        if not datasets or any(not d.train for d in datasets):
            raise ValueError("Med3D co-training needs at least one data set, each with a training case")
        self.cases = [list(d.train) for d in datasets]
        self.patch = tuple(int(p) for p in cfg.patch_zyx)
        self.batch_size = int(cfg.batch_size)
        self.min_factor = float(cfg.crop_min_factor)
        self.seed = int(cfg.seed)
        self.info = info or DistInfo()
        self.per = steps_per_dataset(max(len(c) for c in self.cases), cfg.samples_per_volume, self.batch_size,
                                     self.info.world)
        self.arrays = VolumeArrays(max_open)
        self._schedule: tuple[int, list[tuple[int, np.ndarray]]] | None = None

    def __len__(self) -> int:
        return len(self.cases) * self.per

    def schedule(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        """``(dataset index, case indices)`` of every step of ``epoch`` on this rank."""
        if self._schedule is not None and self._schedule[0] == epoch:
            return self._schedule[1]
        bs, world, rank = self.batch_size, self.info.world, self.info.rank
        need = self.per * bs * world
        sequences = []
        for j, cases in enumerate(self.cases):
            rng = np.random.default_rng([self.seed, epoch, j])
            n = len(cases)
            reps = -(-need // n)
            sequences.append(np.concatenate([rng.permutation(n) for _ in range(reps)])[:need])
        order = np.repeat(np.arange(len(self.cases)), self.per)
        np.random.default_rng([self.seed, epoch, 10_000]).shuffle(order)
        seen = [0] * len(self.cases)
        out = []
        for j in order:
            k = seen[j]
            seen[j] += 1
            start = (k * world + rank) * bs
            out.append((int(j), sequences[j][start:start + bs]))
        self._schedule = (epoch, out)
        return out

    def load(self, epoch: int, step: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        j, idx = self.schedule(epoch)[step]
        rng = np.random.default_rng([self.seed, epoch, self.info.rank, step])
        crops = [sample_crop(self.cases[j][i], self.patch, rng, self.min_factor, self.arrays) for i in idx]
        return j, torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops])


class Med3DValCrops:
    """The fixed validation crops (an :class:`export.common.streaming.BatchPlan`; the epoch is ignored).

    Per data set, ``val_crops_per_volume`` crops of each held-out case (of each training case when none was
    held out), the box of crop ``k`` of case ``i`` of data set ``j`` drawn by a generator seeded with (seed,
    777, j, i, k): the same on every rank, in every epoch and after a resume. Batches hold crops of one data
    set; only the boxes (not the crops) are kept, so memory does not grow with the number of volumes beyond a
    few integers per crop.
    """

    def __init__(self, datasets: Sequence[Med3DDataset], cfg: Med3DConfig, max_open: int = 16) -> None:
        self.cases = [list(d.val or d.train) for d in datasets]
        self.patch = tuple(int(p) for p in cfg.patch_zyx)
        self.arrays = VolumeArrays(max_open)
        self.batches: list[tuple[int, list[tuple[int, tuple[int, ...], tuple[int, ...]]]]] = []
        self.first_step: dict[int, int] = {}
        bs = int(cfg.batch_size)
        for j, cases in enumerate(self.cases):
            rows = []
            for i, case in enumerate(cases):
                shape = case.shape
                for k in range(cfg.val_crops_per_volume):
                    rng = np.random.default_rng([cfg.seed, 777, j, i, k])
                    rows.append((i, *crop_box(shape, case.bbox, rng, cfg.crop_min_factor)))
            if rows:
                self.first_step[j] = len(self.batches)
            self.batches += [(j, rows[b:b + bs]) for b in range(0, len(rows), bs)]

    def __len__(self) -> int:
        return len(self.batches)

    def load(self, epoch: int, step: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        j, rows = self.batches[step]
        crops = [cut_crop(*case_arrays(self.cases[j][i], self.arrays), start, size, self.patch)
                 for i, start, size in rows]
        return j, torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops])


def augment(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, max_deg: float,
            scale_range: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rotation (three angles within +-``max_deg`` degrees) and scaling (within ``scale_range``) of a
    batch (N, 1, Z, Y, X) with its labels (N, Z, Y, X); image trilinear, labels nearest, borders repeated."""
    n = images.shape[0]
    dev = images.device
    angles = (torch.rand(n, 3, generator=generator, device=generator.device) * 2 - 1) * math.radians(max_deg)
    lo, hi = scale_range
    scale = lo + torch.rand(n, generator=generator, device=generator.device) * (hi - lo)
    angles, scale = angles.to(dev), scale.to(dev)
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones(n, device=dev), torch.zeros(n, device=dev)
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], 1).view(n, 3, 3)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], 1).view(n, 3, 3)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], 1).view(n, 3, 3)
    theta = torch.cat([(rz @ ry @ rx) / scale.view(n, 1, 1), torch.zeros(n, 3, 1, device=dev)], 2)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out_img = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out_lab = F.grid_sample(labels[:, None].float(), grid, mode="nearest", padding_mode="border", align_corners=False)
    return out_img, out_lab[:, 0].long()
