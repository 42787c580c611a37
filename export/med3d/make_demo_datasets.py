"""Public labelled volumes -> small data sets in nnU-Net's raw layout, for Med3D demos and tests.

    python -m export.data.fetch --out data            # pyradiomics, InVesalius, mricron (sha256-pinned)
    python -m export.med3d.make_demo_datasets --data data --out raw

writes (``--domains``, default ``chest,brain,head``):

=============================  ==========================================================================
``Dataset901_ChestCTTumour``   pyradiomics ``lung1`` / ``lung2`` chest CT (HU) + their tumour labels (BSD-3)
``Dataset902_BrainMRTumour``   pyradiomics ``brain1`` / ``brain2`` brain MR + their tumour labels (BSD-3)
``Dataset903_HeadCTBone``      InVesalius ``Cranium.inv3`` head CT + its bone mask (GPL-2; see below)
``Dataset904_BreastMRTumour``  pyradiomics ``breast1`` breast MR + tumour label (``--domains ...,breast``)
=============================  ==========================================================================

Head CT bone: the label is the project's own bone mask ``mask_0.dat`` ("Máscara 1", InVesalius' threshold mask
for 226..3071 HU). The file stores it on a grid padded by one leading row per axis (109 x 257 x 257 for the
108 x 256 x 256 image); the padding is dropped and voxels > 127 are bone. On this file the mask equals
thresholding the image at [226, 3071] HU exactly (checked when the data set is written); when a project has no
mask, that threshold is used instead (recorded in dataset.json).

Images keep their native grid and intensities (int16 HU / MR units); label maps are uint8. Files are
NIfTI (``.nii.gz``, written with SimpleITK, geometry preserved). Each ``dataset.json`` records the sources, their
sha256 and licences; the licence files are copied beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import plistlib
import shutil
import sys
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

from zoo.hub.integrity import atomic_path, sha256_file
from zoo.io import Volume, read_volume

DOMAINS = {
    "chest": ("Dataset901_ChestCTTumour", "CT", "tumour"),
    "brain": ("Dataset902_BrainMRTumour", "MR", "tumour"),
    "head": ("Dataset903_HeadCTBone", "CT", "bone"),
    "breast": ("Dataset904_BreastMRTumour", "MR", "tumour"),
}
BONE_HU = (226, 3071)


def write_nifti(path: Path, array_zyx: np.ndarray, like: Volume) -> None:
    """``array_zyx`` on ``like``'s grid (spacing, origin, direction) as NIfTI, written atomically."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx))
    img.SetSpacing(tuple(float(s) for s in like.spacing_zyx[::-1]))
    if like.origin is not None:
        img.SetOrigin(tuple(float(o) for o in like.origin))
    if like.direction is not None:
        img.SetDirection(tuple(float(d) for d in np.asarray(like.direction).reshape(-1)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name[:-len('.nii.gz')]}.partial.nii.gz")  # ITK picks the writer by suffix
    try:
        sitk.WriteImage(img, str(tmp), useCompression=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def inv3_bone_mask(path: Path, image: Volume) -> tuple[np.ndarray, str]:
    """The InVesalius bone mask on the image grid (module docstring), and how it was obtained."""
    lo, hi = BONE_HU
    threshold = (image.array >= lo) & (image.array <= hi)
    with tarfile.open(path, "r:*") as tf:
        members = {PurePosixPath(m.name).name: m for m in tf.getmembers() if m.isfile()}
        if "mask_0.dat" not in members or "mask_0.plist" not in members:
            return threshold.astype(np.uint8), f"threshold {lo}..{hi} HU (the project holds no mask_0)"
        meta = plistlib.load(tf.extractfile(members["mask_0.plist"]))
        shape = tuple(int(s) for s in meta["mask_shape"])
        raw = np.frombuffer(tf.extractfile(members["mask_0.dat"]).read(), np.uint8).reshape(shape)
    if tuple(s - 1 for s in shape) != image.shape_zyx:
        raise ValueError(f"{path}: mask_0 of shape {shape} does not fit the image {image.shape_zyx} plus one padded row")
    mask = raw[1:, 1:, 1:] > 127
    agree = float((mask == threshold).mean())
    how = (f"InVesalius mask_0 ('{meta.get('name', '')}', threshold {meta.get('threshold_range')} HU), padding row "
           f"dropped; agrees with thresholding the image at {lo}..{hi} HU on {agree:.2%} of voxels")
    return mask.astype(np.uint8), how


def _sources(data: Path) -> dict[str, list[tuple[str, Path, Path | None]]]:
    rad, inv = data / "pyradiomics", data / "invesalius"
    return {
        "chest": [(n, rad / f"{n}_image.nrrd", rad / f"{n}_label.nrrd") for n in ("lung1", "lung2")],
        "brain": [(n, rad / f"{n}_image.nrrd", rad / f"{n}_label.nrrd") for n in ("brain1", "brain2")],
        "head": [("cranium", inv / "Cranium.inv3", None)],
        "breast": [("breast1", rad / "breast1_image.nrrd", rad / "breast1_label.nrrd")],
    }


def make_dataset(domain: str, data: Path, out: Path, log=print) -> Path:
    """Write one domain's data set folder; returns it."""
    name, modality, target = DOMAINS[domain]
    folder = out / name
    cases = _sources(data)[domain]
    for _, image_path, label_path in cases:
        for p in (image_path, label_path):
            if p is not None and not p.is_file():
                raise FileNotFoundError(f"{p} is missing; run: python -m export.data.fetch --out {data}")
    records, notes = [], []
    for case, image_path, label_path in cases:
        image = read_volume(image_path)
        if label_path is None:
            label, how = inv3_bone_mask(image_path, image)
            notes.append(f"{case}: {how}")
        else:
            lab = read_volume(label_path)
            if lab.shape_zyx != image.shape_zyx:
                raise ValueError(f"{label_path}: shape {lab.shape_zyx} differs from its image {image.shape_zyx}")
            label = (lab.array > 0).astype(np.uint8)
        write_nifti(folder / "imagesTr" / f"{case}_0000.nii.gz", image.array.astype(np.int16), image)
        write_nifti(folder / "labelsTr" / f"{case}.nii.gz", label, image)
        records.append({"case": case, "source": str(image_path), "source_sha256": sha256_file(image_path),
                        "label_source": str(label_path or image_path)})
        log(f"{name}/{case}: image {image.shape_zyx} at {tuple(round(s, 3) for s in image.spacing_zyx)} mm, "
            f"{int(label.sum())} {target} voxels")
    licences = []
    for src in sorted({Path(r["source"]).parent for r in records}):
        for lic in ("LICENSE.txt", "copyright"):
            if (src / lic).is_file():
                shutil.copyfile(src / lic, folder / f"LICENSE-{src.name}.txt")
                licences.append(f"{src.name}: see LICENSE-{src.name}.txt")
    dataset_json = {
        "name": name,
        "description": f"medzoo Med3D demo domain: {modality} {target} segmentation from public volumes "
                       "(python -m export.med3d.make_demo_datasets)",
        "channel_names": {"0": modality},
        "labels": {"background": 0, target: 1},
        "numTraining": len(records),
        "file_ending": ".nii.gz",
        "sources": records,
        "label_notes": notes,
        "licence": "; ".join(sorted(licences)) or "see the sources",
    }
    with atomic_path(folder / "dataset.json") as tmp:
        tmp.write_text(json.dumps(dataset_json, indent=2))
        tmp.chmod(0o644)
    return folder


#: nnU-Net's default cross-validation has 5 folds: fold 0 needs at least this many training cases
NNUNET_FOLDS = 5


def training_fold(n_cases: int) -> str:
    """The fold to train: ``0`` with at least :data:`NNUNET_FOLDS` cases, else ``all`` (nnU-Net stops with
    'n_splits=5 greater than n_samples' when it splits fewer cases into 5 folds)."""
    return "0" if n_cases >= NNUNET_FOLDS else "all"


def next_commands(folder: Path, model: str = "genesis-chest-ct-nnunet-lung") -> list[str]:
    """The nnU-Net commands that preprocess ``folder`` (a ``DatasetXXX_Name`` raw folder with its dataset.json) and
    fine-tune ``model`` on it, with fold ``all`` when it has fewer than :data:`NNUNET_FOLDS` cases."""
    folder = Path(folder)
    dataset_id = int(folder.name.split("_", 1)[0].removeprefix("Dataset"))
    n_cases = int(json.loads((folder / "dataset.json").read_text())["numTraining"])
    pre = f"$nnUNet_preprocessed/{folder.name}"
    weights = f"{folder.name}_{model}.pth"
    return [
        f"nnUNetv2_plan_and_preprocess -d {dataset_id} --verify_dataset_integrity",
        f"zoo export-nnunet {model} --plans {pre}/nnUNetPlans.json --dataset-json {pre}/dataset.json "
        f"-c 3d_fullres -o {weights}",
        f"nnUNetv2_train {dataset_id} 3d_fullres {training_fold(n_cases)} -pretrained_weights {weights}",
    ]


def print_next_commands(folders: list[Path], log=print) -> None:
    """Print :func:`next_commands` for every data set written."""
    log(f"\nnext (with nnUNet_raw set to the --out folder; fold 'all' where a data set has fewer than "
        f"{NNUNET_FOLDS} cases, as nnU-Net's 5-fold split needs 5):")
    for folder in folders:
        log(f"# {folder.name}")
        for command in next_commands(folder):
            log(command)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.med3d.make_demo_datasets", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the folder export.data.fetch wrote")
    p.add_argument("--out", required=True, help="where the DatasetXXX_Name folders go")
    p.add_argument("--domains", default="chest,brain,head", help=f"comma-separated, from {', '.join(DOMAINS)}")
    args = p.parse_args(argv)
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown:
        print(f"error: unknown domain(s) {unknown}; choose from {sorted(DOMAINS)}", file=sys.stderr)
        return 2
    folders = []
    try:
        for d in domains:
            folders.append(make_dataset(d, Path(args.data), Path(args.out)))
            print(folders[-1])
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_next_commands(folders)
    return 0


if __name__ == "__main__":
    sys.exit(main())
