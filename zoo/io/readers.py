"""Read 3D medical volumes into one small container, :class:`Volume`, always in numpy ``(z, y, x)`` order.

Formats (``read_volume`` picks by suffix, else by the file's first bytes):

=====================  ===================================  ================================================
Format                 Files                                Reader
=====================  ===================================  ================================================
NRRD                   ``.nrrd`` (attached header),         own pure-numpy reader (raw, gzip, bzip2, ascii,
                       ``.nhdr`` (detached)                 hex encodings; identical to SimpleITK's arrays)
NIfTI-1/2              ``.nii``, ``.nii.gz``                nibabel (imported when needed)
MetaImage              ``.mha``, ``.mhd`` (+ ``.raw``)      SimpleITK (imported when needed)
DICOM                  a folder holding a series, or one    SimpleITK / GDCM (imported when needed)
                       ``.dcm`` file
InVesalius project     ``.inv3``                            own reader (gzip tar + plist + raw matrix)
=====================  ===================================  ================================================

Axis and geometry conventions of :class:`Volume`
-------------------------------------------------
* ``array``: numpy order ``(z, y, x)``: the slice index first, the fastest-varying file axis last. This is
  what ``SimpleITK.GetArrayFromImage`` returns. Files with several components per voxel (NIfTI 4-D, NRRD
  with a non-spatial axis, vector MetaImage) give ``(c, z, y, x)``, channel first.
* ``spacing_zyx``: voxel size in mm in the same ``(z, y, x)`` order (the reverse of ITK's ``GetSpacing()``).
* ``origin`` and ``direction`` keep the **ITK / SimpleITK physical convention**, so they can be compared with
  ``GetOrigin()`` / ``GetDirection()`` directly: ``origin`` is the LPS position in mm of the centre of voxel
  ``array[0, 0, 0]``, as ``(x, y, z)``; ``direction`` is a 3 x 3 matrix whose **column j** is the unit LPS
  direction of index axis j, with j = 0 the x axis (numpy's *last* axis). ``None`` when the file has no
  geometry (InVesalius).
* ``modality``: ``"CT"``, ``"MR"``, another DICOM modality code, or ``None`` when the file does not say
  (NRRD and NIfTI never do; pass ``modality=`` to :func:`read_volume`).

NIfTI specifics: nibabel returns ``(i, j, k[, t])`` arrays, i fastest on disk; they are transposed to
``(k, j, i)`` = ``(z, y, x)`` (and ``t`` to the front). nibabel's RAS+ affine (sform if set, else qform) is
converted to LPS by negating its first two rows. Scaled data (``scl_slope``) come back as float, as nibabel's
``dataobj`` gives them.
"""

from __future__ import annotations

import bz2
import gzip
import importlib
import os
import plistlib
import re
import tarfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import ZooError

__all__ = [
    "SUPPORTED_FORMATS",
    "MissingDependencyError",
    "Volume",
    "VolumeFormatError",
    "read_inv3",
    "read_nrrd",
    "read_volume",
]

SUPPORTED_FORMATS = (
    "NRRD (.nrrd, .nhdr), NIfTI (.nii, .nii.gz), MetaImage (.mha, .mhd with its .raw), "
    "DICOM (a folder holding one series, or a single .dcm file), InVesalius project (.inv3)"
)
EXPORT_EXTRA = 'pip install "medzoo[export]"'


class VolumeFormatError(ZooError, ValueError):
    """A file or folder that cannot be read as a volume (unknown format, corrupt or unsupported content)."""


class MissingDependencyError(ZooError, ImportError):
    """An optional package needed for this format is not installed."""


# ------------------------------------------------------------------------------------------- Volume
@dataclass(eq=False)
class Volume:
    """A 3D (or channel-first 4D) image with its geometry. See the module docstring for the conventions."""

    array: np.ndarray                               #: ``(z, y, x)`` or ``(c, z, y, x)``
    spacing_zyx: tuple[float, float, float]         #: mm, ``(z, y, x)``
    origin: tuple[float, float, float] | None = None   #: LPS mm of voxel [0, 0, 0], ITK ``(x, y, z)`` order
    direction: np.ndarray | None = None             #: 3 x 3, column j = LPS direction of index axis j (x, y, z)
    modality: str | None = None                     #: "CT", "MR", ... or None if unknown
    path: str | None = None                         #: where it was read from
    meta: dict = field(default_factory=dict)        #: format-specific extras (header fields, series id ...)

    def __post_init__(self):
        if self.array.ndim not in (3, 4):
            raise ValueError(f"Volume.array must be (z, y, x) or (c, z, y, x), got shape {self.array.shape}")
        self.spacing_zyx = tuple(float(s) for s in self.spacing_zyx)
        if self.origin is not None:
            self.origin = tuple(float(o) for o in self.origin)
        if self.direction is not None:
            self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        self.modality = normalize_modality(self.modality)

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        """Spatial shape ``(z, y, x)`` (without the channel axis)."""
        return tuple(self.array.shape[-3:])

    @property
    def channels(self) -> int:
        """Number of channels: 1 for a ``(z, y, x)`` array."""
        return 1 if self.array.ndim == 3 else self.array.shape[0]

    @property
    def name(self) -> str:
        return self.path or "<in-memory volume>"

    def with_array(self, array: np.ndarray, **changes) -> Volume:
        """A copy with another array (and optionally other fields), same geometry otherwise."""
        return replace(self, array=array, meta=dict(self.meta), **changes)

    def __repr__(self) -> str:
        return (f"Volume(shape={self.array.shape}, dtype={self.array.dtype}, spacing_zyx={self.spacing_zyx}, "
                f"modality={self.modality!r}, path={self.path!r})")


_MODALITY_ALIASES = {"MRI": "MR", "MET_MOD_MR": "MR", "MET_MOD_CT": "CT", "MET_MOD_PET": "PT", "PET": "PT",
                     "MET_MOD_US": "US", "MET_MOD_NM": "NM", "MET_MOD_UNKNOWN": None, "": None, "OT": None}


def normalize_modality(modality) -> str | None:
    """``"ct"``, ``"MET_MOD_CT"`` -> ``"CT"``; ``"mri"`` -> ``"MR"``; unknown spellings upper-cased; None kept."""
    if modality is None:
        return None
    m = str(modality).strip().upper()
    return _MODALITY_ALIASES.get(m, m)


# ------------------------------------------------------------------------------------- entry point
def read_volume(path, *, modality: str | None = None, series_id: str | None = None) -> Volume:
    """Read a volume; the format is chosen by suffix, else by the file's first bytes.

    ``path``: a file, or a folder holding a DICOM series. ``modality`` sets (or overrides) the modality,
    e.g. for NRRD/NIfTI files that do not record it. ``series_id`` picks one series of a DICOM folder that
    holds several (default: the series with the most files, with a warning).

    Returns a :class:`Volume` with ``array`` in ``(z, y, x)`` order (module docstring). Raises
    ``FileNotFoundError`` for a missing path, :class:`VolumeFormatError` naming the file and the supported
    formats for anything unreadable, :class:`MissingDependencyError` when nibabel/SimpleITK is needed but
    absent.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder (supported: {SUPPORTED_FORMATS})")
    if p.is_dir():
        vol = read_dicom_series(p, series_id=series_id)
    else:
        kind = _format_of(p)
        reader = {"nrrd": read_nrrd, "nifti": _read_nifti, "metaimage": _read_sitk_file,
                  "dicom": _read_sitk_file, "inv3": read_inv3}[kind]
        try:
            vol = reader(p)
        except (VolumeFormatError, MissingDependencyError, MemoryError):
            raise
        except Exception as exc:  # any reader failure (zlib, tarfile, plistlib, nibabel, ...) -> one error type
            raise VolumeFormatError(f"{p}: cannot be read as {_FORMAT_NAMES[kind]} ({type(exc).__name__}: "
                                    f"{exc}). Supported: {SUPPORTED_FORMATS}") from exc
    if modality is not None:
        vol.modality = normalize_modality(modality)
    return vol


_FORMAT_NAMES = {"nrrd": "NRRD", "nifti": "NIfTI", "metaimage": "MetaImage", "dicom": "DICOM",
                 "inv3": "an InVesalius project"}


def _format_of(p: Path) -> str:
    name = p.name.lower()
    for suffixes, kind in ((".nrrd .nhdr", "nrrd"), (".nii .nii.gz", "nifti"), (".mha .mhd", "metaimage"),
                           (".dcm .dicom .ima", "dicom"), (".inv3", "inv3")):
        if any(name.endswith(s) for s in suffixes.split()):
            return kind
    if name.endswith(".raw") or name.endswith(".zraw"):
        raise VolumeFormatError(f"{p}: a .raw file holds no geometry; read the .mhd (or .nhdr) header that "
                                f"points to it. Supported: {SUPPORTED_FORMATS}")
    kind = _sniff(p)
    if kind is None:
        raise VolumeFormatError(f"{p}: unknown or unsupported file format (suffix {p.suffix or 'none'!r}, "
                                f"content not recognised). Supported: {SUPPORTED_FORMATS}")
    return kind


def _sniff(p: Path) -> str | None:
    try:
        with open(p, "rb") as f:
            head = f.read(1024)
    except OSError:
        return None
    if head.startswith(b"NRRD000"):
        return "nrrd"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if re.match(rb"\s*(ObjectType|NDims)\s*=", head):
        return "metaimage"
    if len(head) >= 348 and head[344:348] in (b"n+1\0", b"ni1\0", b"n+2\0"):
        return "nifti"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(p, "rb") as g:
                inner = g.read(1024)
        except (OSError, EOFError):
            return None
        if len(inner) >= 348 and inner[344:348] in (b"n+1\0", b"ni1\0", b"n+2\0"):
            return "nifti"
        if len(inner) >= 262 and inner[257:262] == b"ustar":
            return "inv3"
    return None


def _import_optional(module: str, purpose: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"{purpose} needs the optional package {module.split('.')[0]!r}, which is "
                                     f"not installed: {EXPORT_EXTRA}") from exc


# -------------------------------------------------------------------------------------------- NRRD
_NRRD_TYPES = {
    np.dtype(np.int8): "signed char, int8, int8_t",
    np.dtype(np.uint8): "uchar, unsigned char, uint8, uint8_t",
    np.dtype(np.int16): "short, short int, signed short, signed short int, int16, int16_t",
    np.dtype(np.uint16): "ushort, unsigned short, unsigned short int, uint16, uint16_t",
    np.dtype(np.int32): "int, signed int, int32, int32_t",
    np.dtype(np.uint32): "uint, unsigned int, uint32, uint32_t",
    np.dtype(np.int64): "longlong, long long, long long int, signed long long, signed long long int, int64, "
                        "int64_t",
    np.dtype(np.uint64): "ulonglong, unsigned long long, unsigned long long int, uint64, uint64_t",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}
NRRD_TYPE_MAP = {name.strip(): dt for dt, names in _NRRD_TYPES.items() for name in names.split(",")}
_SPATIAL_KINDS = {"domain", "space", "time"}
# anatomical spaces and the sign flips that bring them to ITK's LPS
_SPACE_TO_LPS = {
    "left-posterior-superior": (1, 1, 1), "lps": (1, 1, 1),
    "right-anterior-superior": (-1, -1, 1), "ras": (-1, -1, 1),
    "left-anterior-superior": (1, -1, 1), "las": (1, -1, 1),
    "scanner-xyz": (1, 1, 1), "3d-right-handed": (1, 1, 1), "3d-left-handed": (1, 1, 1),
}


def _nrrd_vector(text: str):
    text = text.strip()
    if text == "none":
        return None
    return [float(v) for v in text.strip("()").split(",")]


def parse_nrrd_header(raw: bytes, path) -> tuple[dict, int]:
    """Parse an NRRD header. Returns ``(fields, data_offset)``: field names lower-cased, values as text;
    ``data_offset`` is where the payload starts (the byte after the first empty line)."""
    if not raw.startswith(b"NRRD000"):
        raise VolumeFormatError(f"{path}: not an NRRD file (the first line must be NRRD0001..NRRD0005)")
    fields: dict[str, str] = {}
    pos = raw.index(b"\n") + 1
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:                       # detached header without a trailing empty line
            line, nxt = raw[pos:], len(raw)
        else:
            line, nxt = raw[pos:end], end + 1
        line = line.rstrip(b"\r")
        if not line:
            return fields, nxt
        pos = nxt
        text = line.decode("latin-1")
        if text.startswith("#"):
            continue
        if ":=" in text:                  # key/value pairs: kept in meta, not interpreted
            k, v = text.split(":=", 1)
            fields.setdefault("_keyvalue", {})[k] = v
            continue
        if ": " not in text:
            raise VolumeFormatError(f"{path}: malformed NRRD header line {text!r}")
        k, v = text.split(": ", 1)
        fields[k.strip().lower()] = v.strip()
        if end < 0:
            return fields, nxt


def nrrd_axes(fields: dict, dim: int, p) -> tuple[list[str], list | None, list[int], list[int]]:
    """``(kinds, space direction vectors or None, spatial axes, other axes)`` of an NRRD header, axes in NRRD
    order (fastest first); 3 spatial axes and at most one channel axis, else :class:`VolumeFormatError`."""
    kinds = fields.get("kinds", " ".join(["domain"] * dim)).split()
    directions_text = fields.get("space directions")
    vectors = ([_nrrd_vector(v) for v in re.findall(r"\([^)]*\)|none", directions_text)]
               if directions_text else None)
    if vectors and len(vectors) < dim:
        raise VolumeFormatError(f"{p}: NRRD 'space directions' has {len(vectors)} entries for dimension {dim}")
    if not vectors and len(kinds) < dim:
        raise VolumeFormatError(f"{p}: NRRD 'kinds' has {len(kinds)} entries for dimension {dim}")
    spatial = [i for i in range(dim) if (vectors[i] is not None if vectors else
                                         kinds[i].lower() in _SPATIAL_KINDS)]
    other = [i for i in range(dim) if i not in spatial]
    if len(spatial) != 3 or len(other) > 1:
        raise VolumeFormatError(f"{p}: NRRD with {len(spatial)} spatial axes and {len(other)} other axes; "
                                f"need 3 spatial axes and at most one channel axis")
    return kinds, vectors, spatial, other


def read_nrrd(path) -> Volume:
    """Read an NRRD file (``.nrrd`` with attached header, or ``.nhdr`` + one ``data file``) with numpy.

    Header rules (teem NRRD format; the pyradiomics files use ``NRRD0004``): ``key: value`` lines after the
    magic line, ``#`` comments, the header ends at the first empty line. ``type`` maps every NRRD spelling of
    (u)int8/16/32/64, float and double; ``sizes`` lists the fastest axis first, so the numpy shape is its
    reverse (``(z, y, x)`` for ``sizes: x y z``); ``endian`` is honoured (values returned in native byte
    order); ``encoding`` raw, gzip/gz, bzip2/bz2, ascii/txt/text, hex; ``line skip`` / ``byte skip``
    (``-1`` for raw: the data is at the end of the file). Geometry: ``space directions`` (one vector per
    axis, ``none`` for a non-spatial axis) gives spacing = vector length and direction = unit vector (a
    negative component encodes a flip); ``space origin`` the origin; both converted to LPS from RAS/LAS
    ``space`` values, as ITK does. Without ``space directions``, ``spacings`` and an identity direction are
    used. Three spatial axes are required; one extra non-spatial axis (``kinds`` other than ``domain`` /
    ``space``) becomes the channel axis, first.
    """
    p = Path(path)
    raw = p.read_bytes()
    fields, offset = parse_nrrd_header(raw, p)
    try:
        dtype = NRRD_TYPE_MAP[fields["type"]]
    except KeyError:
        raise VolumeFormatError(f"{p}: NRRD type {fields.get('type')!r} is not supported (supported: "
                                f"{', '.join(sorted({str(d) for d in NRRD_TYPE_MAP.values()}))})") from None
    dim = int(fields["dimension"])
    sizes = [int(s) for s in fields["sizes"].split()]
    if len(sizes) != dim:
        raise VolumeFormatError(f"{p}: NRRD 'sizes' has {len(sizes)} entries for dimension {dim}")
    encoding = fields.get("encoding", "raw").lower()
    endian = fields.get("endian", "little").lower()
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder("<" if endian == "little" else ">")
    count = int(np.prod(sizes))

    if "data file" in fields or "datafile" in fields:
        spec = fields.get("data file", fields.get("datafile"))
        if spec.startswith("LIST") or len(spec.split()) > 1:
            raise VolumeFormatError(f"{p}: NRRD 'data file' lists several files ({spec!r}); only one detached "
                                    f"data file is supported")
        data_path = (p.parent / spec) if not os.path.isabs(spec) else Path(spec)
        payload = data_path.read_bytes()
    else:
        payload = raw[offset:]
    for _ in range(int(fields.get("line skip", fields.get("lineskip", 0)))):
        payload = payload[payload.index(b"\n") + 1:]
    byte_skip = int(fields.get("byte skip", fields.get("byteskip", 0)))

    nbytes = count * dtype.itemsize
    if encoding == "raw":
        if byte_skip == -1:
            byte_skip = len(payload) - nbytes
        data = np.frombuffer(payload, dtype=dtype, count=count, offset=byte_skip)
    elif encoding in ("gzip", "gz"):
        data = np.frombuffer(gzip.decompress(payload), dtype=dtype, count=count, offset=max(byte_skip, 0))
    elif encoding in ("bzip2", "bz2"):
        data = np.frombuffer(bz2.decompress(payload), dtype=dtype, count=count, offset=max(byte_skip, 0))
    elif encoding in ("ascii", "txt", "text"):
        data = np.array(payload.decode("latin-1").split()[:count], dtype=dtype.newbyteorder("="))
    elif encoding == "hex":
        text = re.sub(rb"\s+", b"", payload).decode("ascii")
        data = np.frombuffer(bytes.fromhex(text), dtype=dtype, count=count, offset=max(byte_skip, 0))
    else:
        raise VolumeFormatError(f"{p}: NRRD encoding {encoding!r} is not supported "
                                f"(raw, gzip, bzip2, ascii, hex)")
    if data.size != count:
        raise VolumeFormatError(f"{p}: NRRD payload holds {data.size} values, 'sizes' needs {count}")
    array = data.astype(dtype.newbyteorder("="), copy=True).reshape(sizes[::-1])

    # axes in NRRD order (fastest first): which are spatial?
    kinds, vectors, spatial, other = nrrd_axes(fields, dim, p)
    if other:                              # channel axis to the front: numpy axis = dim - 1 - nrrd axis
        array = np.moveaxis(array, dim - 1 - other[0], 0)

    space = fields.get("space", "left-posterior-superior").lower()
    flip = np.array(_SPACE_TO_LPS.get(space, (1, 1, 1)), dtype=np.float64)
    if vectors:
        vecs = np.array([vectors[i] for i in spatial], dtype=np.float64)      # rows: index axes x, y, z
        spacing_xyz = np.linalg.norm(vecs, axis=1)
        direction = (vecs / spacing_xyz[:, None]).T * flip[:, None]
        origin_text = fields.get("space origin")
        origin = (np.array(_nrrd_vector(origin_text)) * flip) if origin_text else np.zeros(3)
    else:
        spacings = fields.get("spacings")
        spacing_xyz = (np.array([float(s) for i, s in enumerate(spacings.split()) if i in spatial])
                       if spacings else np.ones(3))
        spacing_xyz = np.where(np.isfinite(spacing_xyz), spacing_xyz, 1.0)
        direction, origin = np.eye(3), np.zeros(3)
    meta = {k: v for k, v in fields.items() if k != "_keyvalue"}
    meta.update(fields.get("_keyvalue", {}))
    return Volume(np.ascontiguousarray(array), tuple(spacing_xyz[::-1]), tuple(origin), direction,
                  modality=None, path=str(p), meta=meta)


# ------------------------------------------------------------------------------------------- NIfTI
def _read_nifti(p: Path) -> Volume:
    nib = _import_optional("nibabel", f"reading the NIfTI file {p}")
    img = nib.load(str(p))
    data = np.asanyarray(img.dataobj)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 5 and data.shape[3] == 1:             # NIfTI vector data: x y z 1 c
        data = data[:, :, :, 0, :]
    if data.ndim == 3:
        array = data.transpose(2, 1, 0)
    elif data.ndim == 4:
        array = data.transpose(3, 2, 1, 0)
    else:
        raise VolumeFormatError(f"{p}: NIfTI array of shape {data.shape} is not a 3-D volume (or 4-D with "
                                f"channels/time last)")
    zooms = np.array(img.header.get_zooms()[:3], dtype=np.float64)
    affine = np.asarray(img.affine, dtype=np.float64)
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    lin = ras_to_lps @ affine[:3, :3]
    norms = np.linalg.norm(lin, axis=0)
    norms[norms == 0] = 1.0
    direction = lin / norms
    origin = ras_to_lps @ affine[:3, 3]
    meta = {"nifti_version": 2 if img.__class__.__name__.startswith("Nifti2") else 1,
            "qform_code": int(img.header["qform_code"]), "sform_code": int(img.header["sform_code"])}
    return Volume(np.ascontiguousarray(array), tuple(zooms[::-1]), tuple(origin), direction, None, str(p), meta)


# ----------------------------------------------------------------------------- SimpleITK: MHD, DICOM
def _volume_from_sitk(img, path, modality, meta) -> Volume:
    sitk = _import_optional("SimpleITK", "reading MetaImage/DICOM files")
    arr = sitk.GetArrayFromImage(img)
    ncomp = img.GetNumberOfComponentsPerPixel()
    dim = img.GetDimension()
    if ncomp > 1:
        arr = np.moveaxis(arr, -1, 0)
    spacing = list(img.GetSpacing())
    origin = list(img.GetOrigin())
    direction = np.array(img.GetDirection(), dtype=np.float64).reshape(dim, dim)
    if dim == 2:                                 # one slice: a volume of depth 1
        arr = arr[None] if ncomp == 1 else arr[:, None]
        thickness = meta.get("0018|0050")
        spacing = spacing + [float(thickness) if thickness else 1.0]
        origin = origin + [0.0]
        d3 = np.eye(3)
        d3[:2, :2] = direction
        direction = d3
    elif dim != 3:
        raise VolumeFormatError(f"{path}: {dim}-D image; only 3-D volumes (or single 2-D slices) are supported")
    return Volume(np.ascontiguousarray(arr), tuple(spacing[::-1]), tuple(origin), direction, modality,
                  str(path), meta)


def _read_sitk_file(p: Path) -> Volume:
    sitk = _import_optional("SimpleITK", f"reading {p.name} (MetaImage/DICOM)")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise VolumeFormatError(f"{p}: SimpleITK cannot read it ({first}). Supported: {SUPPORTED_FORMATS}") from exc
    meta = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}
    modality = meta.get("0008|0060") or meta.get("Modality")
    return _volume_from_sitk(img, p, modality, meta)


def dicom_series_files(folder: Path, series_id: str | None = None) -> tuple[str, list[str]]:
    """``(series id, files)`` of one DICOM series in ``folder``, files in GDCM's slice order: ``series_id``,
    else the series with the most files (with a warning when there are several). Raises
    :class:`VolumeFormatError`."""
    p = Path(folder)
    sitk = _import_optional("SimpleITK", f"reading the DICOM folder {p}")
    ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(p)) or [])
    if not ids:
        n_files = sum(1 for f in p.iterdir() if f.is_file())
        what = "is empty" if n_files == 0 and not any(p.iterdir()) else f"holds {n_files} file(s) but no DICOM series"
        raise VolumeFormatError(f"{p}: folder {what}. A folder must hold one DICOM series; other formats are "
                                f"read from a file. Supported: {SUPPORTED_FORMATS}")
    files_by_id = {sid: list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(p), sid)) for sid in ids}
    if series_id is None:
        series_id = max(ids, key=lambda s: len(files_by_id[s]))
        if len(ids) > 1:
            warnings.warn(f"{p} holds {len(ids)} DICOM series; reading {series_id} ({len(files_by_id[series_id])} "
                          f"files). Pass series_id= to choose.", stacklevel=4)
    elif series_id not in files_by_id:
        raise VolumeFormatError(f"{p}: no DICOM series {series_id!r}; the folder holds {ids}")
    return series_id, files_by_id[series_id]


def read_dicom_series(folder, series_id: str | None = None) -> Volume:
    """Read one DICOM series from ``folder`` with SimpleITK/GDCM (slices sorted by position) into a
    :class:`Volume` with ``array`` in ``(z, y, x)`` order (slice, row, column) and modality from (0008,0060).

    Several series in the folder: ``series_id`` picks one, else the one with the most files (warning).
    """
    p = Path(folder)
    sitk = _import_optional("SimpleITK", f"reading the DICOM folder {p}")
    series_id, files = dicom_series_files(p, series_id)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise VolumeFormatError(f"{p}: SimpleITK cannot read DICOM series {series_id} "
                                f"({str(exc).strip().splitlines()[-1]})") from exc
    meta = {k: reader.GetMetaData(0, k) for k in reader.GetMetaDataKeys(0)}
    meta["series_id"] = series_id
    meta["files"] = len(files)
    return _volume_from_sitk(img, p, meta.get("0008|0060"), meta)


# ------------------------------------------------------------------------------------- InVesalius
def read_inv3(path) -> Volume:
    """Read an InVesalius project (``.inv3``): a gzip-compressed tar holding ``main.plist`` and raw arrays.

    ``main.plist`` (Apple property list) gives ``modality``, ``spacing`` as ``(x, y, z)`` mm and ``matrix``:
    the raw file's name, numpy dtype and shape, ``(z, y, x)``. The raw file is the array's buffer (numpy
    memmap, little-endian as written on x86). No origin or direction is stored: they stay None. The masks
    (``mask_*.dat``) are listed in ``meta['masks']`` but not read.
    """
    p = Path(path)
    with tarfile.open(p, "r:*") as tf:
        members = {PurePosixPath(m.name).name: m for m in tf.getmembers() if m.isfile()}
        if "main.plist" not in members:
            raise VolumeFormatError(f"{p}: no main.plist inside; not an InVesalius project")
        main = plistlib.load(tf.extractfile(members["main.plist"]))
        matrix = main["matrix"]
        dtype = np.dtype(matrix["dtype"])
        if dtype.itemsize > 1 and dtype.byteorder == "=":
            dtype = dtype.newbyteorder("<")
        shape = tuple(int(s) for s in matrix["shape"])
        name = PurePosixPath(matrix["filename"]).name
        if name not in members:
            raise VolumeFormatError(f"{p}: main.plist names {name!r}, which the archive does not hold")
        buf = tf.extractfile(members[name]).read()
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(buf) != expected:
        raise VolumeFormatError(f"{p}: {name} has {len(buf)} bytes, {shape} {dtype} needs {expected}")
    array = np.frombuffer(buf, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    if array.ndim != 3:
        raise VolumeFormatError(f"{p}: matrix of shape {shape} is not 3-D")
    spacing_xyz = [float(s) for s in main["spacing"]]
    meta = {k: main[k] for k in ("name", "invesalius_version", "scalar_range", "orientation", "window_level",
                                 "window_width") if k in main}
    meta["masks"] = sorted(n for n in members if n.startswith("mask_") and n.endswith(".dat"))
    return Volume(array, tuple(spacing_xyz[::-1]), None, None, main.get("modality"), str(p), meta)

