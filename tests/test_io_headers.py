"""zoo.io.read_header: header-only reads equal read_volume's shape/spacing/channels/dtype/modality on real
volumes in every format this machine can write; they are fast and allocate nothing from the sizes; broken,
truncated and absurd headers raise VolumeFormatError naming the file."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import plistlib
import subprocess
import sys
import tarfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import pyradiomics_dir  # noqa: F401 (fixture)

from zoo.io import MissingDependencyError, VolumeFormatError, VolumeHeader, read_header, read_volume

sitk = pytest.importorskip("SimpleITK")
nib = pytest.importorskip("nibabel")

PYRADIOMICS = ["brain1_image", "brain1_label", "brain2_image", "brain2_label", "breast1_image", "breast1_label",
               "lung1_image", "lung1_label", "lung2_image", "lung2_label"]
MiB = 1 << 20


def summary(obj) -> tuple:
    """The fields a header must share with the volume read from the same file."""
    if isinstance(obj, VolumeHeader):
        return obj.shape_zyx, obj.spacing_zyx, obj.channels, obj.dtype, obj.modality
    return obj.shape_zyx, obj.spacing_zyx, obj.channels, obj.array.dtype.name, obj.modality


def assert_header_equals_volume(path, **kwargs) -> VolumeHeader:
    header = read_header(path, **kwargs)
    volume = read_volume(path, **kwargs)
    assert summary(header) == summary(volume)
    assert header.path == str(path) and header.voxels == volume.array.size
    assert header.nbytes == volume.array.nbytes
    return header


def peak_python_alloc(fn, *args, **kwargs):
    """(result or exception, peak bytes allocated through Python/numpy while running fn)."""
    tracemalloc.start()
    try:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 (returned to the caller to assert on)
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------------------------- writers
def sitk_image(vol):
    img = sitk.GetImageFromArray(vol.array)
    img.SetSpacing(tuple(vol.spacing_zyx[::-1]))
    img.SetOrigin(vol.origin)
    img.SetDirection(tuple(vol.direction.ravel()))
    return img


def nifti_image(array_zyx: np.ndarray, spacing_zyx) -> object:
    data = np.ascontiguousarray(np.moveaxis(array_zyx, 0, -1).transpose(2, 1, 0, 3) if array_zyx.ndim == 4
                                else array_zyx.transpose(2, 1, 0))
    affine = np.diag([*spacing_zyx[::-1], 1.0])
    affine[:3, 3] = (12.0, -30.0, 7.5)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


def write_dicom_series(folder: Path, arr: np.ndarray, spacing_xy=(0.6, 0.7), z_positions=None, modality="CT",
                       uid="1.2.826.0.1.3680043.2.1125.1.4244"):
    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((*spacing_xy, 2.5))
    z_positions = [2.5 * i for i in range(arr.shape[0])] if z_positions is None else z_positions
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for i, z in enumerate(z_positions):
        sl = img[:, :, i]
        for tag, value in (("0008|0060", modality), ("0020|000d", uid + ".1"), ("0020|000e", uid + ".2"),
                           ("0020|0032", f"-10\\20.5\\{z}"), ("0020|0013", str(i + 1)),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0018|0050", "3.3"), ("0008|0018", f"{uid}.3.{i}")):
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid[-4:]}_{i:03d}.dcm"))
        writer.Execute(sl)
    return folder


def make_inv3(path: Path, arr: np.ndarray, spacing_xyz=(0.9, 0.9, 1.5), modality="CT", plist_last=True,
              shape=None, compress=True):
    main = {"modality": modality, "spacing": list(spacing_xyz), "name": "synthetic",
            "matrix": {"dtype": str(arr.dtype), "filename": "matrix.dat", "shape": list(shape or arr.shape)}}
    members = [("main.plist", plistlib.dumps(main)), ("matrix.dat", arr.astype(arr.dtype.newbyteorder("<")).tobytes())]
    with tarfile.open(path, "w:gz" if compress else "w") as tf:
        for name, data in (members[::-1] if plist_last else members):   # InVesalius stores main.plist last
            info = tarfile.TarInfo(f"tmpabc/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def nrrd_bytes(fields: str, payload: bytes = b"") -> bytes:
    return b"NRRD0004\n" + fields.encode("latin-1") + b"\n\n" + payload


# ----------------------------------------------------------------------------------- real NRRDs
@pytest.mark.parametrize("name", PYRADIOMICS)
def test_pyradiomics_nrrd_header_equals_read_volume(pyradiomics_dir, name):
    header = assert_header_equals_volume(pyradiomics_dir / f"{name}.nrrd")
    assert header.format == "nrrd" and header.modality is None


def test_header_fields_and_modality_override(pyradiomics_dir):
    header = read_header(pyradiomics_dir / "lung1_image.nrrd", modality="ct")
    assert header == VolumeHeader(str(pyradiomics_dir / "lung1_image.nrrd"), "nrrd", (48, 512, 512),
                                  (5.0, 0.5703125, 0.5703125), 1, "int16", "CT")
    assert header.voxels == 48 * 512 * 512 and header.nbytes == 2 * header.voxels
    assert read_header(pyradiomics_dir / "brain1_image.nrrd", modality="mri").modality == "MR"
    with pytest.raises(dataclasses.FrozenInstanceError):
        header.channels = 2
    assert hash(header) == hash(dataclasses.replace(header))


# ----------------------------------------------------------------- every other format, from a real MR
@pytest.fixture(scope="module")
def derived(pyradiomics_dir, tmp_path_factory):
    """brain1 (25 x 256 x 256 MR, flipped y axis) written in every format this machine can write."""
    out = tmp_path_factory.mktemp("derived")
    vol = read_volume(pyradiomics_dir / "brain1_image.nrrd")
    arr, spacing = vol.array, vol.spacing_zyx
    files = {}

    nib.save(nifti_image(arr, spacing), out / "brain.nii")
    nib.save(nifti_image(arr, spacing), out / "brain.nii.gz")
    scaled = nifti_image(arr, spacing)
    scaled.header.set_slope_inter(0.5, -10.0)                       # scaled int16 -> read as float
    nib.save(scaled, out / "scaled.nii.gz")
    nib.save(nifti_image(np.stack([arr[:4], arr[4:8]]), spacing), out / "two_channels.nii")
    files.update(nifti=out / "brain.nii", nifti_gz=out / "brain.nii.gz", nifti_scaled=out / "scaled.nii.gz",
                 nifti_channels=out / "two_channels.nii")

    img = sitk_image(vol)
    sitk.WriteImage(img, str(out / "brain.mha"))
    sitk.WriteImage(img, str(out / "brain_z.mha"), useCompression=True)
    sitk.WriteImage(img, str(out / "brain.mhd"))
    text = (out / "brain.mha").read_bytes().replace(b"ElementDataFile", b"Modality = MET_MOD_MR\nElementDataFile", 1)
    (out / "brain_mr.mha").write_bytes(text)
    vector = sitk.GetImageFromArray(np.stack([arr[:3], arr[3:6]], axis=-1).astype(np.float32), isVector=True)
    vector.SetSpacing((0.5, 0.6, 2.0))
    sitk.WriteImage(vector, str(out / "vector.mha"))
    files.update(mha=out / "brain.mha", mha_compressed=out / "brain_z.mha", mhd=out / "brain.mhd",
                 mha_modality=out / "brain_mr.mha", mha_vector=out / "vector.mha")

    write_dicom_series(out / "dicom", arr[:12, ::2, ::2], spacing_xy=spacing[:0:-1], modality="MR")
    files.update(dicom_folder=out / "dicom", dicom_file=sorted((out / "dicom").iterdir())[3])
    for name, zs in (("dicom_nonuniform", [0, 2.5, 5, 10]), ("dicom_reversed", [10, 7, 4, 1]),
                     ("dicom_same_position", [3, 3, 3])):
        files[name] = write_dicom_series(out / name, arr[: len(zs), :32, :24], z_positions=zs)
    (out / "dicom_one").mkdir()
    (out / "dicom_one" / "only.dcm").write_bytes(files["dicom_file"].read_bytes())
    files["dicom_one_file_folder"] = out / "dicom_one"

    files["inv3"] = make_inv3(out / "brain.inv3", arr, spacing_xyz=spacing[::-1], modality="MR")
    files["inv3_plist_first"] = make_inv3(out / "first.inv3", arr[:5], plist_last=False)
    files["inv3_plain_tar"] = make_inv3(out / "plain.inv3", arr[:5], compress=False)
    files["inv3_sniffed"] = out / "project.bin"
    files["inv3_sniffed"].write_bytes(files["inv3"].read_bytes())

    (out / "brain.raw").write_bytes(arr.astype("<i2").tobytes())
    (out / "brain.nhdr").write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 256 256 25\nencoding: raw\n"
                                     b"space directions: (0.78125,0,0) (0,-0.78125,0) (0,0,6.5)\n"
                                     b"data file: brain.raw\n")
    files["nhdr_detached"] = out / "brain.nhdr"
    four = np.arange(2 * 3 * 4 * 5, dtype=np.float32)                # nrrd order: channel axis fastest
    (out / "vector.nrrd").write_bytes(nrrd_bytes(
        "type: float\ndimension: 4\nsizes: 2 5 4 3\nkinds: vector domain domain domain\nencoding: raw\n"
        "space directions: none (0.5,0,0) (0,0.75,0) (0,0,2.5)", four.tobytes()))
    files["nrrd_channels"] = out / "vector.nrrd"
    return files


FORMATS = ["nifti", "nifti_gz", "nifti_scaled", "nifti_channels", "mha", "mha_compressed", "mhd", "mha_modality",
           "mha_vector", "dicom_folder", "dicom_file", "dicom_nonuniform", "dicom_reversed", "dicom_same_position",
           "dicom_one_file_folder", "inv3", "inv3_plist_first", "inv3_plain_tar", "inv3_sniffed", "nhdr_detached",
           "nrrd_channels"]


@pytest.mark.parametrize("name", FORMATS)
def test_header_equals_read_volume_in_every_format(derived, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")                           # one series per folder: no warning expected
        header = assert_header_equals_volume(derived[name])
    expected = {"nifti_scaled": ("nifti", "float64", None), "mha_modality": ("metaimage", "int16", "MR"),
                "mha_vector": ("metaimage", "float32", None), "dicom_folder": ("dicom", "int16", "MR"),
                "dicom_file": ("dicom", "int16", "MR"), "inv3": ("inv3", "int16", "MR"),
                "nrrd_channels": ("nrrd", "float32", None)}
    if name in expected:
        assert (header.format, header.dtype, header.modality) == expected[name]


def test_geometry_of_channels_and_series(derived):
    assert read_header(derived["nifti_channels"]).shape_zyx == (4, 256, 256)
    assert read_header(derived["nifti_channels"]).channels == 2
    assert read_header(derived["mha_vector"]).channels == 2
    assert summary(read_header(derived["nrrd_channels"]))[:3] == ((3, 4, 5), (2.5, 0.75, 0.5), 2)
    assert read_header(derived["dicom_folder"]).shape_zyx == (12, 128, 128)
    assert read_header(derived["dicom_nonuniform"]).spacing_zyx[0] == pytest.approx(10 / 3)
    assert read_header(derived["dicom_same_position"]).spacing_zyx[0] == 1.0   # ITK's rule: unknown -> 1.0
    assert read_header(derived["dicom_file"]).shape_zyx == (1, 128, 128)


def test_dicom_folder_with_two_series_warns_and_picks_like_read_volume(tmp_path):
    arr = np.arange(4 * 8 * 6, dtype=np.int16).reshape(4, 8, 6)
    write_dicom_series(tmp_path / "mixed", arr, uid="1.2.826.0.1.3680043.2.1125.1.5001")
    write_dicom_series(tmp_path / "mixed", arr[:2, :5, :7], uid="1.2.826.0.1.3680043.2.1125.1.5002", modality="MR")
    with pytest.warns(UserWarning, match="2 DICOM series"):
        header = read_header(tmp_path / "mixed")
    with pytest.warns(UserWarning, match="2 DICOM series"):
        assert summary(header) == summary(read_volume(tmp_path / "mixed"))
    other = "1.2.826.0.1.3680043.2.1125.1.5002.2"
    assert summary(read_header(tmp_path / "mixed", series_id=other)) == summary(
        read_volume(tmp_path / "mixed", series_id=other))
    assert read_header(tmp_path / "mixed", series_id=other).modality == "MR"
    with pytest.raises(VolumeFormatError, match="no DICOM series 'nope'"):
        read_header(tmp_path / "mixed", series_id="nope")


# ----------------------------------------------------------------------------------- header only
def test_large_nifti_gz_header_is_fast_and_allocates_nothing(pyradiomics_dir, tmp_path):
    vol = read_volume(pyradiomics_dir / "lung1_image.nrrd")          # 48 x 512 x 512 int16: 25 MB
    nib.save(nifti_image(vol.array, vol.spacing_zyx), tmp_path / "lung.nii")
    path = tmp_path / "lung.nii.gz"
    with open(tmp_path / "lung.nii", "rb") as src, gzip.open(path, "wb", compresslevel=1) as dst:
        dst.write(src.read())
    read_header(path)                                                # warm up the imports
    t0 = time.perf_counter()
    header = read_header(path)
    t_header = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = read_volume(path)
    t_full = time.perf_counter() - t0
    assert summary(header) == summary(full)
    assert t_header < t_full / 5, (t_header, t_full)
    _, peak = peak_python_alloc(read_header, path)
    assert peak < 2 * MiB < full.array.nbytes / 10

    # the gzip stream cut after the first 64 KiB: the header is all that is read, the full read fails
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(path.read_bytes()[: 64 * 1024])
    assert summary(read_header(cut)) == summary(header)
    with pytest.raises(VolumeFormatError, match="cut.nii.gz"):
        read_volume(cut)


def test_inv3_header_never_extracts_the_matrix(tmp_path):
    arr = np.zeros((64, 256, 256), np.int16)                        # 8 MB matrix stored before main.plist
    path = make_inv3(tmp_path / "big.inv3", arr)
    header, peak = peak_python_alloc(read_header, path)
    assert header.shape_zyx == (64, 256, 256) and header.dtype == "int16"
    assert peak < 2 * MiB <= arr.nbytes / 4


@pytest.mark.parametrize("suffix,content", [
    (".nrrd", nrrd_bytes("type: float\ndimension: 3\nsizes: 100000 100000 100000\nencoding: gzip",
                         gzip.compress(b"\0" * 64))),
    (".nii.gz", None),                                               # built in the test: 2048^3 float32
])
def test_absurd_sizes_are_reported_without_allocating(tmp_path, suffix, content):
    path = tmp_path / f"huge{suffix}"
    if content is None:
        img = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4))
        img.header.set_data_shape((2048, 2048, 2048))
        bio = io.BytesIO()
        img.header.write_to(bio)
        content = gzip.compress(bio.getvalue() + b"\0" * 4 + b"\0" * 1024)
    path.write_bytes(content)
    header, peak = peak_python_alloc(read_header, path)
    assert isinstance(header, VolumeHeader), header
    assert header.voxels >= 2048 ** 3 and peak < 1 * MiB


@pytest.mark.parametrize("suffix,make", [
    (".nrrd", lambda p: p.write_bytes(nrrd_bytes("type: short\ndimension: 3\nsizes: 100000 100000 100000\n"
                                                 "encoding: raw", b"\0" * 64))),
    (".nii", lambda p: p.write_bytes(_nifti_header_bytes((4096, 4096, 4096)) + b"\0" * 64)),
    (".mha", lambda p: p.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 100000 100000 100000\n"
                                     b"ElementType = MET_SHORT\nElementDataFile = LOCAL\n" + b"\0" * 64)),
    (".inv3", lambda p: make_inv3(p, np.zeros((2, 2, 2), np.int16), shape=[100000, 100000, 100000])),
])
def test_absurd_sizes_with_short_data_raise_without_allocating(tmp_path, suffix, make):
    path = tmp_path / f"huge{suffix}"
    make(path)
    err, peak = peak_python_alloc(read_header, path)
    assert isinstance(err, VolumeFormatError) and f"huge{suffix}" in str(err), err
    assert peak < 1 * MiB
    if suffix in (".nrrd", ".inv3"):      # these fail before allocating; nibabel/SimpleITK would try first
        with pytest.raises(VolumeFormatError):
            read_volume(path)


def _nifti_header_bytes(shape, dtype=np.float32, zooms=None) -> bytes:
    img = nib.Nifti1Image(np.zeros((2, 2, 2), dtype), np.eye(4))
    img.header.set_data_shape(shape)
    if zooms is not None:
        img.header["pixdim"][1:4] = zooms
    img.header["vox_offset"] = 352
    bio = io.BytesIO()
    img.header.write_to(bio)
    return bio.getvalue() + b"\0" * 4


# ------------------------------------------------------------------------------------- bad input
def test_missing_path_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nii"):
        read_header(tmp_path / "nope.nii")
    junk = tmp_path / "scan.xyz"
    junk.write_bytes(b"hello, not a volume" * 50)
    with pytest.raises(VolumeFormatError, match="scan.xyz.*NIfTI"):
        read_header(junk)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VolumeFormatError, match="empty"):
        read_header(tmp_path / "empty")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hi", encoding="utf-8")
    with pytest.raises(VolumeFormatError, match="no DICOM series"):
        read_header(tmp_path / "notes")


def _broken(derived, pyradiomics_dir):
    brain_nrrd = (pyradiomics_dir / "brain1_image.nrrd").read_bytes()
    nii = derived["nifti"].read_bytes()
    mha = derived["mha"].read_bytes()
    inv3 = derived["inv3"].read_bytes()
    good = "type: short\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n"
    return {
        "nrrd_cut_in_header": (".nrrd", brain_nrrd[:150]),
        "nrrd_cut_after_header": (".nrrd", brain_nrrd[: brain_nrrd.index(b"\n\n") + 1]),
        "nrrd_not_nrrd": (".nrrd", b"not an nrrd"),
        "nrrd_no_sizes": (".nrrd", nrrd_bytes("type: short\ndimension: 3\nencoding: raw", b"\0" * 128)),
        "nrrd_bad_type": (".nrrd", nrrd_bytes("type: block\ndimension: 3\nsizes: 4 4 4\nencoding: raw", b"\0" * 64)),
        "nrrd_bad_encoding": (".nrrd", nrrd_bytes("type: short\ndimension: 3\nsizes: 4 4 4\nencoding: zstd", b"\0")),
        "nrrd_float_size": (".nrrd", nrrd_bytes("type: short\ndimension: 3\nsizes: 4 4.5 4\nencoding: raw",
                                                b"\0" * 200)),
        "nrrd_zero_size": (".nrrd", nrrd_bytes("type: short\ndimension: 3\nsizes: 4 0 4\nencoding: gzip",
                                               gzip.compress(b""))),
        "nrrd_raw_short": (".nrrd", nrrd_bytes(good, b"\0" * 100)),
        "nrrd_two_axes": (".nrrd", nrrd_bytes("type: short\ndimension: 2\nsizes: 4 4\nencoding: raw", b"\0" * 32)),
        "nrrd_missing_data_file": (".nhdr", nrrd_bytes(good + "data file: gone.raw")[:-1]),
        "nifti_cut_header": (".nii", nii[:200]),
        "nifti_gz_cut_header": (".nii.gz", gzip.compress(nii[:200])),
        "nifti_gz_garbage": (".nii.gz", b"garbage"),
        "nifti_data_short": (".nii", nii[: len(nii) // 2]),
        "nifti_2d": (".nii", _nifti_header_bytes((8, 8)) + b"\0" * 256),
        "mha_garbage": (".mha", b"garbage"),
        "mha_cut_in_header": (".mha", mha[:40]),
        "mha_data_short": (".mha", mha[: len(mha) // 2]),
        "mhd_missing_raw": (".mhd", derived["mhd"].read_bytes().replace(b"brain.raw", b"gone.raw")),
        "dcm_garbage": (".dcm", b"\0" * 128 + b"DICM" + b"garbage" * 10),
        "inv3_garbage": (".inv3", b"garbage"),
        "inv3_cut": (".inv3", inv3[:300]),
        "inv3_no_main_plist": (".inv3", _tar_gz({"other.plist": plistlib.dumps({"a": 1})})),
        "inv3_wrong_matrix_size": (".inv3", _tar_gz({
            "main.plist": plistlib.dumps({"modality": "CT", "spacing": [1, 1, 1],
                                          "matrix": {"dtype": "int16", "filename": "matrix.dat", "shape": [2, 2, 2]}}),
            "matrix.dat": b"\0" * 10})),
    }


def _tar_gz(members: dict) -> bytes:
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return bio.getvalue()


BROKEN = ["nrrd_cut_in_header", "nrrd_cut_after_header", "nrrd_not_nrrd", "nrrd_no_sizes", "nrrd_bad_type",
          "nrrd_bad_encoding", "nrrd_float_size", "nrrd_raw_short", "nrrd_two_axes",
          "nrrd_missing_data_file", "nifti_cut_header", "nifti_gz_cut_header", "nifti_gz_garbage",
          "nifti_data_short", "nifti_2d", "mha_garbage", "mha_cut_in_header", "mha_data_short", "mhd_missing_raw",
          "dcm_garbage", "inv3_garbage", "inv3_cut", "inv3_no_main_plist", "inv3_wrong_matrix_size"]


@pytest.mark.parametrize("case", BROKEN)
def test_broken_files_raise_volume_format_error_naming_the_file(derived, pyradiomics_dir, tmp_path, case):
    suffix, content = _broken(derived, pyradiomics_dir)[case]
    path = tmp_path / f"broken_{case}{suffix}"
    path.write_bytes(content)
    with pytest.raises(VolumeFormatError) as exc:
        read_header(path)
    assert path.name in str(exc.value)
    with pytest.raises(VolumeFormatError):                          # the full read agrees: this file fails
        read_volume(path)


def test_zero_size_refused_by_the_header_check(derived, pyradiomics_dir, tmp_path):
    suffix, content = _broken(derived, pyradiomics_dir)["nrrd_zero_size"]
    path = tmp_path / f"empty_axis{suffix}"
    path.write_bytes(content)
    assert read_volume(path).array.size == 0          # read_volume returns an empty volume; the header check refuses
    with pytest.raises(VolumeFormatError, match="empty_axis.nrrd.*positive integers"):
        read_header(path)


@pytest.mark.parametrize("fields", [
    "space directions: (0,0,0) (0,1,0) (0,0,1)",                  # zero-length axis
    "space directions: (nan,0,0) (0,1,0) (0,0,1)",
    "spacings: 1 -2 1",
    "spacings: 1 0 1",                                            # (nan/inf become 1.0, as in read_nrrd)
])
def test_nrrd_spacing_must_be_finite_and_positive(tmp_path, fields):
    path = tmp_path / "bad_spacing.nrrd"
    path.write_bytes(nrrd_bytes(f"type: short\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n{fields}", b"\0" * 16))
    with pytest.raises(VolumeFormatError, match="bad_spacing.nrrd.*spacing"):
        read_header(path)


def test_nifti_zero_pixdim_repaired_like_read_volume(tmp_path):
    path = tmp_path / "flat.nii"
    path.write_bytes(_nifti_header_bytes((2, 2, 2), zooms=(1.0, 0.0, 1.0)) + b"\0" * 32)
    assert assert_header_equals_volume(path).spacing_zyx == (1.0, 1.0, 1.0)      # nibabel sets 0 to 1


def test_missing_optional_dependency(tmp_path, monkeypatch):
    mha = tmp_path / "v.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.int16)), str(mha))
    nii = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4), np.int16), np.eye(4)), nii)
    monkeypatch.setitem(sys.modules, "SimpleITK", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "medzoo\[export\]"'):
        read_header(mha)
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(MissingDependencyError, match="nibabel"):
        read_header(nii)


def test_import_zoo_stays_free_of_nibabel_and_simpleitk():
    code = ("import sys, zoo, zoo.io, zoo.io.headers; from zoo.io import read_header, VolumeHeader; "
            "print(sorted(m for m in ('nibabel', 'SimpleITK') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", env=env, check=True)
    assert out.stdout.strip() == "[]"
