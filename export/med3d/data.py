"""Labelled data sets in nnU-Net's raw layout -> Med3D training volumes and crops.

A data set is a folder ``DatasetXXX_Name/`` with ``dataset.json``, ``imagesTr/`` and ``labelsTr/``::

    dataset.json            {"channel_names": {"0": "CT"}, "labels": {"background": 0, "tumour": 1},
                             "numTraining": 2, "file_ending": ".nii.gz"}
    imagesTr/case_0000.nii.gz   (channel 0 of case "case"; channel k is _000k)
    labelsTr/case.nii.gz        (integer label map on the image grid)

Each data set is one Med3D *domain*. Preprocessing follows the Med3D paper: every volume is resampled
(:func:`zoo.io.resample`, linear for images, nearest for labels) to the **median spacing of its own data set**,
then clipped to its own 0.5 / 99.5 percentiles and z-scored (:func:`export.common.data.clip_zscore`).

Crops (:func:`sample_crop`): a random box whose size per axis is drawn between ``crop_min_factor`` times the
foreground bounding box and the whole volume, placed so that the foreground lies inside, then resized to the
network input (image trilinear, labels nearest). Errors name the file and say what is wrong
(:class:`DatasetLayoutError`, :class:`LabelSetError`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from zoo.errors import ZooError
from zoo.hub.integrity import sha256_file
from zoo.io import read_volume, resample

from ..common.data import clip_zscore, split_by_volume
from .config import Med3DConfig


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
        data = json.loads(path.read_text())
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


@dataclass
class Case:
    case_id: str
    image: np.ndarray               #: (z, y, x) float32, resampled and clip-z-scored
    label: np.ndarray               #: (z, y, x) uint8
    bbox: tuple[tuple[int, int], ...] | None   #: per axis (lo, hi) of the foreground, hi exclusive


@dataclass
class Med3DDataset:
    """One domain: its cases (preprocessed), label set and the files used."""

    name: str
    labels: dict[str, int]
    modality: str
    spacing_zyx: tuple[float, float, float]
    train: list[Case]
    val: list[Case]
    files: list[dict[str, str]] = field(default_factory=list)

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


def load_dataset(raw: RawDataset, cfg: Med3DConfig, log: Callable[[str], None] = print) -> Med3DDataset:
    """Read, check, resample to the data set's median spacing and normalise every case of ``raw``."""
    if cfg.channel >= len(raw.channel_names):
        raise DatasetLayoutError(f"{raw.folder}: channel {cfg.channel} asked for, the data set has "
                                 f"{len(raw.channel_names)} ({raw.channel_names})")
    declared = set(raw.labels.values())
    if raw.num_classes > 255:
        raise LabelSetError(f"{raw.folder}: {raw.num_classes} classes; at most 255 are supported")
    volumes = []
    for case in raw.cases:
        img = read_volume(case.images[cfg.channel])
        lab = read_volume(case.label)
        if img.channels != 1 or lab.channels != 1:
            raise DatasetLayoutError(f"{case.images[cfg.channel]}: one 3D volume per file expected (nnU-Net raw layout)")
        if img.shape_zyx != lab.shape_zyx:
            raise LabelSetError(f"{case.label}: label map of shape {lab.shape_zyx} (z, y, x) does not match its "
                                f"image {case.images[cfg.channel].name} of shape {img.shape_zyx}")
        values = np.unique(lab.array)
        if not np.all(np.equal(np.mod(values, 1), 0)):
            raise LabelSetError(f"{case.label}: non-integer label values {values[:5]}")
        undeclared = sorted(set(int(v) for v in values) - declared)
        if undeclared:
            raise LabelSetError(f"{case.label}: label values {undeclared} are not declared in "
                                f"{raw.folder / 'dataset.json'} (labels {raw.labels}); the label maps and "
                                "dataset.json must use the same label set")
        volumes.append((case, img, lab))
    spacing = tuple(float(np.median([v[1].spacing_zyx[a] for v in volumes])) for a in range(3))
    cases, files = [], []
    for case, img, lab in volumes:
        img_r = resample(img, spacing, order=1)
        lab_r = resample(lab.with_array(lab.array.astype(np.int16, copy=False)), spacing, order=0)
        image = clip_zscore(img_r.array, *cfg.percentiles)
        label = lab_r.array.astype(np.uint8)
        cases.append(Case(case.case_id, image, label, foreground_bbox(label)))
        log(f"{raw.name}/{case.case_id}: {img.shape_zyx} at {tuple(round(s, 3) for s in img.spacing_zyx)} mm -> "
            f"{image.shape} at the domain median {tuple(round(s, 3) for s in spacing)} mm, "
            f"{int((label > 0).sum())} foreground voxels")
    train, val = split_by_volume(cases, cfg.val_fraction)
    val_ids = {c.case_id for c in val}
    for case, _, _ in volumes:
        role = "val" if case.case_id in val_ids else "train"
        for p in [case.images[cfg.channel], case.label]:
            files.append({"path": str(p), "sha256": sha256_file(p), "role": f"{raw.name} {role}"})
    modality = raw.channel_names.get(str(cfg.channel), "unknown")
    return Med3DDataset(raw.name, dict(raw.labels), modality, spacing, train, val, files)


def load_datasets(folders: Sequence[str | Path], cfg: Med3DConfig,
                  log: Callable[[str], None] = print) -> list[Med3DDataset]:
    """Check every folder's layout first (cheap), then read them; names must be unique."""
    raws = [scan_raw_dataset(f) for f in folders]
    names = [r.name for r in raws]
    if len(set(names)) != len(names):
        raise DatasetLayoutError(f"data set folders must have distinct names, got {names}")
    return [load_dataset(r, cfg, log) for r in raws]


# ------------------------------------------------------------------------------------------------ crops
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


def sample_crop(case: Case, patch_zyx: Sequence[int], rng: np.random.Generator,
                min_factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One crop of ``case`` resized to ``patch_zyx``: image (1, Z, Y, X) float32, labels (Z, Y, X) int64."""
    start, size = crop_box(case.image.shape, case.bbox, rng, min_factor)
    sl = tuple(slice(a, a + n) for a, n in zip(start, size))
    img = torch.from_numpy(np.ascontiguousarray(case.image[sl]))[None, None]
    lab = torch.from_numpy(np.ascontiguousarray(case.label[sl]))[None, None].float()
    patch = tuple(int(p) for p in patch_zyx)
    img = F.interpolate(img, size=patch, mode="trilinear", align_corners=False)
    lab = F.interpolate(lab, size=patch, mode="nearest")
    return img[0], lab[0, 0].long()


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
