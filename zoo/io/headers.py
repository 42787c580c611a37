"""Header-only reads: :func:`read_header` -> :class:`VolumeHeader` (shape, spacing, channels, dtype, modality)
without reading the voxels, for dry runs that check a whole data folder in seconds.

Every field equals what :func:`zoo.io.read_volume` gives for the same file (same ``(z, y, x)`` order, same
modality rules, same dtype), and failures raise the same error types: ``FileNotFoundError``,
:class:`~zoo.io.VolumeFormatError` (naming the file and the fix), :class:`~zoo.io.MissingDependencyError`.
Sizes and spacings from a header are validated (positive integers, finite positive spacings) and never used to
allocate anything; where it costs no more than a ``stat``, a payload shorter than the header needs is reported
too (a truncated file).

How each format is read:

=====================  ===========================================================================================
Format                 What is read
=====================  ===========================================================================================
NRRD / ``.nhdr``       the header bytes up to the first empty line (at most 1 MiB), parsed by
                       :func:`zoo.io.readers.parse_nrrd_header` and interpreted with :func:`read_nrrd`'s rules
                       (types, spatial/channel axes, ``space directions`` / ``spacings``). A detached data file
                       must exist; a raw payload must hold the bytes the header needs (``stat`` only). A cut
                       gzip/bzip2 payload is only found by a full read.
NIfTI-1/2              nibabel's header (``nib.load`` reads only the header, also from ``.nii.gz``: the gzip
                       stream is decompressed up to the header's end). dtype as nibabel's ``dataobj`` gives it
                       (float after ``scl_slope`` scaling). Uncompressed files must be long enough (``stat``).
MetaImage              SimpleITK ``ImageFileReader.ReadImageInformation()`` (the reader ``read_volume`` uses), plus
                       the text header's ``ElementDataFile``: a ``.raw`` data file must exist, and uncompressed
                       data must hold the bytes ``DimSize`` needs (``stat`` only).
DICOM file             SimpleITK ``ReadImageInformation()`` on the file.
DICOM folder           GDCM's series scan (the same ``GetGDCMSeriesIDs`` / ``GetGDCMSeriesFileNames`` calls and
                       series choice as :func:`read_dicom_series`, headers of every file), then
                       ``ReadImageInformation()`` on the first and last file of the series: slice count = number of
                       files, in-plane size/spacing, dtype and modality from the first file, slice spacing =
                       distance between the first and last slice origins / (files - 1) (1.0 when they coincide),
                       exactly as ITK's ``ImageSeriesReader`` computes it. Slices between first and last are not
                       opened. A series of multi-frame files (rare) falls back to a full read.
InVesalius ``.inv3``   the tar's member headers and ``main.plist``; the matrix is never extracted. A gzip archive
                       cannot be seeked, so when ``main.plist`` is stored after the matrix (as InVesalius writes
                       it) the stream is decompressed through the matrix and discarded in small blocks: one pass
                       of gzip, constant memory. The matrix member's size must match ``shape`` x ``dtype``.
=====================  ===========================================================================================
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import math
import os
import plistlib
import re
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np

from .readers import (
    _FORMAT_NAMES,
    NRRD_TYPE_MAP,
    SUPPORTED_FORMATS,
    MissingDependencyError,
    VolumeFormatError,
    _format_of,
    _import_optional,
    dicom_series_files,
    nrrd_axes,
    normalize_modality,
    parse_nrrd_header,
    read_dicom_series,
)

__all__ = ["VolumeHeader", "read_header"]

_MAX_TEXT_HEADER = 1 << 20          # NRRD / MetaImage text headers: read at most this much
_MAX_PLIST = 64 << 20               # InVesalius main.plist: refuse larger members instead of reading them
_FIX = "The file is damaged or was written wrongly: re-export it, or leave it out of the data folder."


@dataclass(frozen=True)
class VolumeHeader:
    """What a volume's header says, in :class:`~zoo.io.Volume`'s conventions (``(z, y, x)`` order)."""

    path: str                                  #: the file or DICOM folder
    format: str                                #: "nrrd", "nifti", "metaimage", "dicom" or "inv3"
    shape_zyx: tuple[int, int, int]            #: spatial shape, without the channel axis
    spacing_zyx: tuple[float, float, float]    #: mm
    channels: int                              #: 1, or the size of the channel axis of a (c, z, y, x) volume
    dtype: str                                 #: numpy dtype name of the array read_volume returns, e.g. "int16"
    modality: str | None                       #: "CT", "MR", ... or None when the file does not say

    @property
    def voxels(self) -> int:
        """``z * y * x * channels``: the number of values ``read_volume`` would return."""
        z, y, x = self.shape_zyx
        return z * y * x * self.channels

    @property
    def nbytes(self) -> int:
        """Bytes of the array ``read_volume`` would return (``voxels`` x the dtype's size)."""
        return self.voxels * np.dtype(self.dtype).itemsize


# ------------------------------------------------------------------------------------- entry point
def read_header(path, *, modality: str | None = None, series_id: str | None = None) -> VolumeHeader:
    """Read only the header of a volume file (or DICOM folder): no voxel data is read or allocated.

    ``path``, ``modality`` and ``series_id`` mean what they mean for :func:`zoo.io.read_volume`, and the result
    equals ``read_volume``'s ``shape_zyx``, ``spacing_zyx``, ``channels``, ``array.dtype`` and ``modality``.
    The module docstring says what is read per format. Raises ``FileNotFoundError`` for a missing path,
    :class:`VolumeFormatError` naming the file (unknown format, damaged or truncated header, sizes that are not
    positive integers, spacings that are not finite and positive, a missing or short data file),
    :class:`MissingDependencyError` when nibabel/SimpleITK is needed but absent.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder (supported: {SUPPORTED_FORMATS})")
    kind = "dicom" if p.is_dir() else _format_of(p)
    try:
        if p.is_dir():
            header = _dicom_series_header(p, series_id)
        else:
            header = {"nrrd": _nrrd_header, "nifti": _nifti_header, "metaimage": _metaimage_header,
                      "dicom": _dicom_file_header, "inv3": _inv3_header}[kind](p)
    except (VolumeFormatError, MissingDependencyError, MemoryError):
        raise
    except Exception as exc:  # any parser failure (nibabel, tarfile, plistlib, int(), ...) -> one error type
        raise VolumeFormatError(f"{p}: cannot read the header as {_FORMAT_NAMES[kind]} ({type(exc).__name__}: "
                                f"{exc}). {_FIX} Supported: {SUPPORTED_FORMATS}") from exc
    if modality is not None:
        header = replace(header, modality=normalize_modality(modality))
    return header


def _make(p: Path, kind: str, shape_zyx, spacing_zyx, channels, dtype, modality) -> VolumeHeader:
    """Validate what a header says and build the :class:`VolumeHeader`; nothing is allocated from the sizes."""
    name = _FORMAT_NAMES[kind]
    shape = tuple(shape_zyx)
    if len(shape) != 3 or not all(_is_positive_int(s) for s in shape) or not _is_positive_int(channels):
        raise VolumeFormatError(f"{p}: the {name} header gives shape (z, y, x) {shape} with {channels} "
                                f"channel(s); every size must be a positive integer. {_FIX}")
    try:
        spacing = tuple(float(s) for s in spacing_zyx)
    except (TypeError, ValueError):
        spacing = ()
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise VolumeFormatError(f"{p}: the {name} header gives voxel spacing (z, y, x) {tuple(spacing_zyx)}; "
                                f"three finite positive sizes in mm are needed. {_FIX}")
    return VolumeHeader(str(p), kind, tuple(int(s) for s in shape), spacing, int(channels), np.dtype(dtype).name,
                        normalize_modality(modality))


def _is_positive_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and int(value) > 0


def _read_text_header(p: Path, end: re.Pattern, end_at_eof: re.Pattern | None = None) -> tuple[bytes, bool]:
    """The file's first bytes up to the end of the first match of ``end`` (at most 1 MiB are read).
    Returns ``(head, complete)``; at EOF without a match, ``end_at_eof`` (if given) gets a last try, else
    ``(whole file, False)``."""
    buf = b""
    with open(p, "rb") as f:
        while True:
            chunk = f.read(65536)
            buf += chunk
            m = end.search(buf) if chunk else None
            if m:
                return buf[: m.end()], True
            if not chunk:
                m = end_at_eof.search(buf) if end_at_eof is not None else None
                return (buf[: m.end()], True) if m else (buf, False)
            if len(buf) > _MAX_TEXT_HEADER:
                raise VolumeFormatError(f"{p}: no end of the header in its first {_MAX_TEXT_HEADER >> 20} MiB; "
                                        f"the file is damaged or not in the format its name says. {_FIX}")


# -------------------------------------------------------------------------------------------- NRRD
_NRRD_END = re.compile(rb"\n\r?\n")
_NRRD_ENCODINGS = ("raw", "gzip", "gz", "bzip2", "bz2", "ascii", "txt", "text", "hex")


def _nrrd_header(p: Path) -> VolumeHeader:
    """The rules of :func:`zoo.io.readers.read_nrrd`, applied to the header only."""
    head, complete = _read_text_header(p, _NRRD_END)
    fields, offset = parse_nrrd_header(head, p)
    detached = "data file" in fields or "datafile" in fields
    if not complete and not detached:
        raise VolumeFormatError(f"{p}: NRRD header is cut off (no empty line after it, and no 'data file' "
                                f"field): the file is truncated. {_FIX}")
    for key in ("type", "dimension", "sizes"):
        if key not in fields:
            raise VolumeFormatError(f"{p}: NRRD header lacks the required field '{key}'. {_FIX}")
    dtype = NRRD_TYPE_MAP.get(fields["type"])
    if dtype is None:
        raise VolumeFormatError(f"{p}: NRRD type {fields.get('type')!r} is not supported (supported: "
                                f"{', '.join(sorted({str(d) for d in NRRD_TYPE_MAP.values()}))})")
    dim = int(fields["dimension"])
    sizes = [int(s) for s in fields["sizes"].split()]
    if len(sizes) != dim:
        raise VolumeFormatError(f"{p}: NRRD 'sizes' has {len(sizes)} entries for dimension {dim}")
    if not all(s > 0 for s in sizes):
        raise VolumeFormatError(f"{p}: NRRD 'sizes' {fields['sizes']!r} must be positive integers. {_FIX}")
    encoding = fields.get("encoding", "raw").lower()
    if encoding not in _NRRD_ENCODINGS:
        raise VolumeFormatError(f"{p}: NRRD encoding {encoding!r} is not supported (raw, gzip, bzip2, ascii, hex)")

    # payload: where it is and, for raw data, whether it is long enough (stat only)
    if detached:
        spec = fields.get("data file", fields.get("datafile"))
        if spec.startswith("LIST") or len(spec.split()) > 1:
            raise VolumeFormatError(f"{p}: NRRD 'data file' lists several files ({spec!r}); only one detached "
                                    f"data file is supported")
        data_path = (p.parent / spec) if not os.path.isabs(spec) else Path(spec)
        if not data_path.is_file():
            raise VolumeFormatError(f"{p}: NRRD 'data file' {spec!r} not found (looked for {data_path}); keep the "
                                    f"data file next to its header or fix the field")
        payload_len = data_path.stat().st_size
    else:
        payload_len = p.stat().st_size - offset
    byte_skip = int(fields.get("byte skip", fields.get("byteskip", 0)))
    int(fields.get("line skip", fields.get("lineskip", 0)))            # must parse, as read_nrrd parses it
    if encoding == "raw":
        if byte_skip < -1:
            raise VolumeFormatError(f"{p}: NRRD 'byte skip' {byte_skip} is invalid for raw data (-1 or >= 0)")
        needed = math.prod(sizes) * dtype.itemsize
        available = payload_len - max(byte_skip, 0)
        if available < needed:
            raise VolumeFormatError(f"{p}: NRRD raw data is truncated: {max(available, 0)} bytes after the header, "
                                    f"'sizes' {fields['sizes']} of {dtype.name} need {needed}. {_FIX}")
    elif payload_len <= 0:
        raise VolumeFormatError(f"{p}: NRRD file holds no data after its header: the file is truncated. {_FIX}")

    # axes, as read_nrrd picks them (fastest first): 3 spatial, at most one channel axis
    kinds, vectors, spatial, other = nrrd_axes(fields, dim, p)
    if vectors:
        spacing_xyz = np.linalg.norm(np.array([vectors[i] for i in spatial], dtype=np.float64), axis=1)
    else:
        spacings = fields.get("spacings")
        spacing_xyz = (np.array([float(s) for i, s in enumerate(spacings.split()) if i in spatial])
                       if spacings else np.ones(3))
        spacing_xyz = np.where(np.isfinite(spacing_xyz), spacing_xyz, 1.0)
    shape_zyx = tuple(sizes[i] for i in reversed(spatial))
    channels = sizes[other[0]] if other else 1
    return _make(p, "nrrd", shape_zyx, tuple(spacing_xyz[::-1]), channels, dtype.newbyteorder("="), None)


# ------------------------------------------------------------------------------------------- NIfTI
def _nifti_header(p: Path) -> VolumeHeader:
    """nibabel's header and array proxy (no data read); shape rules of ``read_volume``'s NIfTI reader."""
    nib = _import_optional("nibabel", f"reading the NIfTI file {p}")
    from nibabel.volumeutils import apply_read_scaling

    img = nib.load(str(p))
    proxy = img.dataobj
    full_shape = tuple(int(s) for s in proxy.shape)
    shape = full_shape
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 5 and shape[3] == 1:                  # NIfTI vector data: x y z 1 c
        shape = shape[:3] + shape[4:]
    if len(shape) == 3:
        shape_zyx, channels = shape[::-1], 1
    elif len(shape) == 4:
        shape_zyx, channels = shape[2::-1], shape[3]
    else:
        raise VolumeFormatError(f"{p}: NIfTI array of shape {shape} is not a 3-D volume (or 4-D with "
                                f"channels/time last)")
    stored = np.dtype(proxy.dtype)
    # the dtype nibabel's dataobj returns (scaled data become float): the same function on a 1-value array
    dtype = apply_read_scaling(np.zeros(1, stored), getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)).dtype
    zooms = np.array(img.header.get_zooms()[:3], dtype=np.float64)

    holder = img.file_map.get("image")
    data_file = getattr(holder, "filename", None)
    if data_file and not str(data_file).lower().endswith((".gz", ".bz2", ".zst")) and all(s > 0 for s in full_shape):
        needed = int(getattr(proxy, "offset", 0)) + math.prod(full_shape) * stored.itemsize
        if not os.path.isfile(data_file):
            raise VolumeFormatError(f"{p}: NIfTI image data file {data_file} not found")
        have = os.path.getsize(data_file)
        if have < needed:
            raise VolumeFormatError(f"{p}: NIfTI data is truncated: {data_file} holds {have} bytes, the header "
                                    f"(shape {full_shape}, {stored}) needs {needed}. {_FIX}")
    return _make(p, "nifti", shape_zyx, tuple(zooms[::-1]), channels, dtype, None)


# ----------------------------------------------------------------------------- SimpleITK: MHD, DICOM
_SITK_NUMPY = {"UInt8": "uint8", "Int8": "int8", "UInt16": "uint16", "Int16": "int16", "UInt32": "uint32",
               "Int32": "int32", "UInt64": "uint64", "Int64": "int64", "Float32": "float32", "Float64": "float64"}


def _sitk_dtype(sitk, pixel_id: int) -> str:
    table = {}
    for name, dtype in _SITK_NUMPY.items():
        for prefix in ("sitk", "sitkVector", "sitkLabel"):
            if hasattr(sitk, prefix + name):
                table[getattr(sitk, prefix + name)] = dtype
    table[sitk.sitkComplexFloat32] = "complex64"
    table[sitk.sitkComplexFloat64] = "complex128"
    if pixel_id not in table:
        raise VolumeFormatError(f"pixel type {sitk.GetPixelIDValueAsString(pixel_id)!r} has no numpy equivalent")
    return table[pixel_id]


def _sitk_info(p: Path, purpose: str):
    """An ``ImageFileReader`` after ``ReadImageInformation()`` (header only), and the SimpleITK module."""
    sitk = _import_optional("SimpleITK", purpose)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise VolumeFormatError(f"{p}: SimpleITK cannot read its header ({first}). {_FIX} "
                                f"Supported: {SUPPORTED_FORMATS}") from exc
    return sitk, reader


def _meta(reader, key: str) -> str | None:
    return reader.GetMetaData(key) if reader.HasMetaDataKey(key) else None


def _sitk_geometry(p: Path, sitk, reader):
    """``(shape_zyx, spacing_zyx, channels, dtype)`` as ``_volume_from_sitk`` would make them."""
    dim = reader.GetDimension()
    size = [int(s) for s in reader.GetSize()]
    spacing = [float(s) for s in reader.GetSpacing()]
    if dim == 2:                                 # one slice: a volume of depth 1
        thickness = _meta(reader, "0018|0050")
        size = size + [1]
        spacing = spacing + [float(thickness) if thickness else 1.0]
    elif dim != 3:
        raise VolumeFormatError(f"{p}: {dim}-D image; only 3-D volumes (or single 2-D slices) are supported")
    dtype = _sitk_dtype(sitk, reader.GetPixelID())
    return tuple(size[::-1]), tuple(spacing[::-1]), reader.GetNumberOfComponents(), dtype


def _metaimage_header(p: Path) -> VolumeHeader:
    sitk, reader = _sitk_info(p, f"reading {p.name} (MetaImage/DICOM)")
    shape, spacing, channels, dtype = _sitk_geometry(p, sitk, reader)
    header = _make(p, "metaimage", shape, spacing, channels, dtype,
                   _meta(reader, "0008|0060") or _meta(reader, "Modality"))
    _check_metaimage_data(p, header.voxels * np.dtype(dtype).itemsize)
    return header


_MHA_DATA_LINE = re.compile(rb"^[ \t]*ElementDataFile[ \t]*=[^\n]*\n", re.MULTILINE)
_MHA_DATA_LINE_AT_EOF = re.compile(rb"^[ \t]*ElementDataFile[ \t]*=[^\n]*\Z", re.MULTILINE)


def _check_metaimage_data(p: Path, needed: int) -> None:
    """The data file named by ``ElementDataFile`` exists and, uncompressed, holds ``needed`` bytes (stat only)."""
    head, complete = _read_text_header(p, _MHA_DATA_LINE, _MHA_DATA_LINE_AT_EOF)
    if not complete:
        return                                   # SimpleITK accepted the header; nothing more to check cheaply
    fields = {}
    for line in head.decode("latin-1").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip().lower()] = value.strip()
    spec = fields.get("elementdatafile", "")
    if spec.upper() == "LOCAL":
        data_path, available = p, p.stat().st_size - len(head)
    elif not spec or spec.upper().startswith("LIST") or "%" in spec:
        return                                   # file lists and patterns: left to the full read
    else:
        data_path = (p.parent / spec) if not os.path.isabs(spec) else Path(spec)
        if not data_path.is_file():
            raise VolumeFormatError(f"{p}: MetaImage ElementDataFile {spec!r} not found (looked for {data_path}); "
                                    f"keep the data file next to its .mhd header")
        available = data_path.stat().st_size
    if available <= 0:
        raise VolumeFormatError(f"{p}: MetaImage data is missing ({data_path} holds nothing after the header). "
                                f"{_FIX}")
    if fields.get("compresseddata", "false").lower() == "true":
        return                                   # compressed size unknown without decompressing
    try:
        header_size = int(fields.get("headersize", "0"))
    except ValueError:
        header_size = 0
    if header_size > 0:
        available -= header_size
    if available < needed:
        raise VolumeFormatError(f"{p}: MetaImage data is truncated: {data_path} holds {max(available, 0)} bytes "
                                f"of voxels, DimSize x ElementType needs {needed}. {_FIX}")


def _dicom_file_header(p: Path) -> VolumeHeader:
    sitk, reader = _sitk_info(p, f"reading {p.name} (MetaImage/DICOM)")
    shape, spacing, channels, dtype = _sitk_geometry(p, sitk, reader)
    return _make(p, "dicom", shape, spacing, channels, dtype,
                 _meta(reader, "0008|0060") or _meta(reader, "Modality"))


def _dicom_series_header(p: Path, series_id: str | None) -> VolumeHeader:
    """Series choice as :func:`read_dicom_series`; geometry as ITK's ``ImageSeriesReader`` computes it."""
    series_id, files = dicom_series_files(p, series_id)
    sitk, first = _sitk_info(Path(files[0]), f"reading the DICOM folder {p}")
    shape, spacing, channels, dtype = _sitk_geometry(Path(files[0]), sitk, first)
    modality = _meta(first, "0008|0060")
    if len(files) == 1:                          # one file: ImageSeriesReader keeps the file's own geometry
        return _make(p, "dicom", shape, spacing, channels, dtype, modality)
    if shape[0] != 1:                            # multi-frame files in a series: rare, read it all
        vol = read_dicom_series(p, series_id=series_id)
        return _make(p, "dicom", vol.shape_zyx, vol.spacing_zyx, vol.channels, vol.array.dtype, vol.modality)
    _, last = _sitk_info(Path(files[-1]), f"reading the DICOM folder {p}")
    if tuple(last.GetSize())[:2] != tuple(first.GetSize())[:2]:
        raise VolumeFormatError(f"{p}: DICOM series {series_id} mixes slice sizes ({files[0]}: "
                                f"{tuple(first.GetSize())[:2]}, {files[-1]}: {tuple(last.GetSize())[:2]})")
    # ITK ImageSeriesReader: slice spacing = |origin(last) - origin(first)| / (n - 1), 1.0 when they coincide
    o1, o2 = first.GetOrigin(), last.GetOrigin()
    sq = 0.0
    for a, b in zip(o1, o2):
        sq += (b - a) * (b - a)
    norm = math.sqrt(sq)
    dz = 1.0 if abs(norm) <= 0.1 * np.finfo(np.float64).eps else norm / (len(files) - 1)
    return _make(p, "dicom", (len(files),) + shape[1:], (dz,) + spacing[1:], channels, dtype, modality)


# ------------------------------------------------------------------------------------- InVesalius
def _inv3_header(p: Path) -> VolumeHeader:
    """Tar member headers and ``main.plist`` only; the matrix member is skipped, never extracted."""
    with open(p, "rb") as f:
        magic = f.read(6)
    # gzip/bzip2/xz through their file objects, which decompress in bounded blocks (tarfile's own stream mode
    # would inflate a whole compressed block at once: megabytes for a block of zeros), skipped forward 256 KiB at a
    # time; a plain tar is read in place (only the 512-byte member headers)
    opener = {b"\x1f\x8b": gzip.GzipFile, b"BZh": bz2.BZ2File, b"\xfd7zXZ": lzma.LZMAFile}
    open_raw = next((o for m, o in opener.items() if magic.startswith(m)), None)
    sizes: dict[str, int] = {}
    main = matrix_name = None
    with (open_raw(p, "rb") if open_raw else open(p, "rb")) as raw, \
            tarfile.open(fileobj=_ForwardOnly(raw) if open_raw else raw, mode="r:") as tf:
        for member in tf:                        # member headers only: the data between them is skipped
            if not member.isfile():
                continue
            name = PurePosixPath(member.name).name
            sizes[name] = member.size
            if name == "main.plist":
                if member.size > _MAX_PLIST:
                    raise VolumeFormatError(f"{p}: main.plist of {member.size} bytes is not an InVesalius "
                                            f"project header. {_FIX}")
                main = plistlib.loads(tf.extractfile(member).read())
                matrix_name = PurePosixPath(main["matrix"]["filename"]).name
            if matrix_name is not None and matrix_name in sizes:
                break
    if main is None:
        raise VolumeFormatError(f"{p}: no main.plist inside; not an InVesalius project")
    matrix = main["matrix"]
    if matrix_name not in sizes:
        raise VolumeFormatError(f"{p}: main.plist names {matrix_name!r}, which the archive does not hold")
    dtype = np.dtype(matrix["dtype"])
    if dtype.kind not in "biufc" or dtype.itemsize == 0:
        raise VolumeFormatError(f"{p}: main.plist gives matrix dtype {matrix['dtype']!r}, not a numeric type. {_FIX}")
    shape = tuple(int(s) for s in matrix["shape"])
    if len(shape) != 3 or not all(s > 0 for s in shape):
        raise VolumeFormatError(f"{p}: main.plist gives matrix shape {shape}; a 3-D shape of positive sizes is "
                                f"needed. {_FIX}")
    expected = math.prod(shape) * dtype.itemsize
    if sizes[matrix_name] != expected:
        raise VolumeFormatError(f"{p}: {matrix_name} has {sizes[matrix_name]} bytes, {shape} {dtype} needs "
                                f"{expected}")
    spacing_xyz = [float(s) for s in main["spacing"]]
    return _make(p, "inv3", shape, tuple(spacing_xyz[::-1]), 1, dtype.newbyteorder("="), main.get("modality"))


class _ForwardOnly:
    """A forward-only view of a decompressing file object for :mod:`tarfile`: skipping ahead reads and drops at
    most 256 KiB at a time (``GzipFile.seek`` would use 8 KiB steps, several times slower)."""

    def __init__(self, f):
        self._f = f
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset + (self._pos if whence == 1 else 0)
        if whence not in (0, 1) or target < self._pos:
            raise OSError("the archive is read forward only")
        while self._pos < target:
            chunk = self._f.read(min(target - self._pos, 1 << 18))
            if not chunk:
                break                             # end of data: tarfile reports the truncation
            self._pos += len(chunk)
        return self._pos
