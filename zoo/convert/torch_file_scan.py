"""Static check of a ``torch.save`` file (zip or legacy format) before :func:`torch.load` reads it.

Zip format (torch >= 1.6): a stored (uncompressed) zip whose first member names the archive folder; the
pickle is ``<folder>/data.pkl`` and storage ``key`` is the member ``<folder>/data/<key>``. Every member must be
stored, lie inside the archive and have a unique name (the C++ reader and :mod:`zipfile` must see the same
file), and each storage may claim no more bytes than its member holds.

Legacy format: consecutive pickles (magic number, protocol version, system info, the object, the list of
storage keys), then for each key an 8-byte little-endian element count and the raw bytes. The storages the
object's pickle claims must add up to no more than the file and match the counts stored with their data.

Both read the pickle bytes through :class:`~.pickle_scan.PickleScanner` (nothing is unpickled) and raise
its exceptions; :mod:`.safe_load` turns them into medzoo's errors.
"""

from __future__ import annotations

import mmap
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import torch

from .pickle_scan import MalformedPickle, OversizedClaim, PickleScanner, Ref, StorageClaim, is_int

ZIP_MAGIC = b"PK\x03\x04"
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


def storage_element_sizes(allowed: Mapping[str, Any]) -> dict[str, int]:
    """Element size of every storage type a persistent id may name (``torch.FloatStorage``: 4, ...)."""
    from torch.serialization import StorageType

    sizes = {}
    for name, obj in allowed.items():
        if isinstance(obj, StorageType):
            sizes[name] = obj.dtype.itemsize
        elif obj is torch.UntypedStorage:
            sizes[name] = 1
    return sizes


def _storage_fields(pid: tuple, length: int, elsizes: Mapping[str, int]) -> tuple[str, int, int]:
    """``(key, element size, element count)`` of a persistent id ``('storage', type, key, location, numel, ...)``."""
    if len(pid) != length:
        raise MalformedPickle(f"a storage reference has {len(pid)} fields instead of {length}")
    storage_type, key, location, numel = pid[1:5]
    if not isinstance(storage_type, Ref) or storage_type.name not in elsizes:
        raise MalformedPickle(f"a storage reference names {_describe(storage_type)} as its type, not a torch storage class")
    if not isinstance(key, str) or not isinstance(location, str):
        raise MalformedPickle("a storage reference has a key or location that is not a string")
    if not is_int(numel) or numel < 0:
        raise MalformedPickle(f"a storage reference claims {_describe(numel)} elements")
    return key, elsizes[storage_type.name], numel


def _describe(value: Any) -> str:
    """A short description of a stand-in, for messages."""
    if isinstance(value, (str, bytes)):
        return f"the string {value[:40]!r}"
    if is_int(value):
        return str(value)
    return getattr(value, "name", None) or f"a {type(value).__name__}"


class _ZipStorages:
    """Persistent ids of a zip checkpoint: each storage must fit in its ``data/<key>`` member."""

    def __init__(self, members: Mapping[str, zipfile.ZipInfo], folder: str, limit: int, elsizes: Mapping[str, int]):
        self.members, self.folder, self.limit, self.elsizes = members, folder, limit, elsizes

    def __call__(self, pid: tuple) -> StorageClaim:
        key, elsize, numel = _storage_fields(pid, 5, self.elsizes)
        claim = StorageClaim(key, elsize, numel)
        if claim.nbytes > self.limit:
            raise OversizedClaim(f"storage {key!r} claims {claim.nbytes:,} bytes")
        member = self.members.get(f"{self.folder}/data/{key}".lower())
        held = member.file_size if member is not None else 0
        if claim.nbytes > held:
            raise MalformedPickle(f"storage {key!r} claims {claim.nbytes:,} bytes but its member holds {held:,}")
        return claim


class _LegacyStorages:
    """Persistent ids of a legacy checkpoint: together no more bytes than the file; views inside their root."""

    def __init__(self, limit: int, elsizes: Mapping[str, int]):
        self.limit, self.elsizes = limit, elsizes
        self.claims: dict[str, StorageClaim] = {}
        self.total = 0

    def __call__(self, pid: tuple) -> StorageClaim:
        key, elsize, numel = _storage_fields(pid, 6, self.elsizes)
        root = self.claims.get(key)
        if root is None:
            root = self.claims[key] = StorageClaim(key, elsize, numel)
            self.total += root.nbytes
            if self.total > self.limit:
                raise OversizedClaim(f"storage {key!r} claims {root.nbytes:,} bytes (all storages: {self.total:,})")
        view = pid[5]
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str) and is_int(view[1])
                and is_int(view[2]) and view[1] >= 0 and view[2] >= 0 and view[1] + view[2] <= root.numel):
            raise MalformedPickle(f"a view of storage {key!r} does not lie inside it")
        return StorageClaim(view[0], root.elsize, view[2])


def scan_torch_file(path: Path, allowed: Mapping[str, Any]) -> None:
    """Check ``path`` (a regular, non-empty file) as a ``torch.save`` file; raise a ScanError if it is refused."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] == ZIP_MAGIC:
            _scan_zip(fh, len(data), allowed)
        else:
            _scan_legacy(data, allowed)


# ---------------------------------------------------------------------------------------------- zip


def _zip_members(infos: list[zipfile.ZipInfo], size: int) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by lower-case name, each checked to be stored, unencrypted, inside the archive
    and uniquely named (torch's C++ reader may match names without regard to case)."""
    if not infos:
        raise MalformedPickle("it is an empty zip archive")
    by_name: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise MalformedPickle(f"its member {info.filename!r} is compressed or encrypted; torch.save never does that")
        if info.file_size != info.compress_size or info.header_offset + info.compress_size > size:
            raise OversizedClaim(f"its member {info.filename!r} declares {info.file_size:,} bytes")
        if info.filename.lower() in by_name:
            raise MalformedPickle(f"it has two members named {info.filename!r}")
        by_name[info.filename.lower()] = info
    return by_name


def _zip_pickle(fh: BinaryIO, size: int) -> tuple[bytes, str, dict[str, zipfile.ZipInfo]]:
    """``(data.pkl bytes, archive folder, members)`` of a zip checkpoint, read only after the members are checked.

    (:mod:`zipfile` reads the central directory only from where the end record says it lies, which is inside
    the file, so a huge declared directory size cannot make it allocate more than the file.)
    """
    try:
        with zipfile.ZipFile(fh) as zf:
            _check_no_shift(zf, fh)
            infos = zf.infolist()
            members = _zip_members(infos, size)
            folder = infos[0].filename.split("/", 1)[0]
            if "/" not in infos[0].filename:
                raise MalformedPickle(f"its first member {infos[0].filename!r} is not in a folder, as torch.save writes")
            info = members.get(f"{folder}/data.pkl".lower())
            if info is None:
                raise MalformedPickle(f"it is a zip archive without {folder}/data.pkl: not a torch.save file")
            return zf.read(info), folder, members
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError) as err:
        reason = f"it starts like a zip archive but is not a readable one ({err}); it may be truncated"
        raise MalformedPickle(reason) from None


def _check_no_shift(zf: zipfile.ZipFile, fh: BinaryIO) -> None:
    """The central directory must lie where the end record says. (:mod:`zipfile` tolerates data before the
    archive by shifting every offset; torch's reader does not, so the two would read different bytes.)"""
    end_record = zipfile._EndRecData(fh)  # type: ignore[attr-defined]  # stable since Python 2
    if end_record is None or zf.start_dir != end_record[zipfile._ECD_OFFSET]:  # type: ignore[attr-defined]
        raise MalformedPickle("its zip central directory is not where its end record says (bytes were added before it)")


def _scan_zip(fh: BinaryIO, size: int, allowed: Mapping[str, Any]) -> None:
    pickle_bytes, folder, members = _zip_pickle(fh, size)
    scanner = PickleScanner(allowed, size, _ZipStorages(members, folder, size, storage_element_sizes(allowed)))
    _, end = scanner.scan(pickle_bytes)
    if end != len(pickle_bytes):
        raise MalformedPickle(f"its {folder}/data.pkl has {len(pickle_bytes) - end:,} bytes after the pickle")


# ---------------------------------------------------------------------------------------------- legacy


def _scan_legacy(data: mmap.mmap, allowed: Mapping[str, Any]) -> None:
    size = len(data)
    suspect = None if data[:1] == b"\x80" else f"it is not a torch checkpoint (it starts with {bytes(data[:12])!r})"
    header = PickleScanner(allowed, size)
    magic, pos = header.scan(data, 0, suspect)
    if magic != LEGACY_MAGIC_NUMBER:
        raise MalformedPickle("it is neither a zip archive nor a legacy torch file (no magic number)")
    version, pos = header.scan(data, pos)
    if version != LEGACY_PROTOCOL_VERSION:
        raise MalformedPickle(f"its legacy protocol version is {_describe(version)}, not {LEGACY_PROTOCOL_VERSION}")
    _, pos = header.scan(data, pos)  # system info: a dict of sizes and byte order
    storages = _LegacyStorages(size, storage_element_sizes(allowed))
    _, pos = PickleScanner(allowed, size, storages).scan(data, pos)
    keys, pos = header.scan(data, pos)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise MalformedPickle("its list of storage keys is not a list of strings")
    _check_legacy_records(data, pos, keys, storages.claims)


def _check_legacy_records(data: mmap.mmap, pos: int, keys: list[str], claims: Mapping[str, StorageClaim]) -> None:
    """Each listed storage is stored as an 8-byte element count and its bytes, in order, inside the file."""
    size = len(data)
    for key in keys:
        claim = claims.get(key)
        if claim is None:
            raise MalformedPickle(f"it lists storage {key!r}, which its object never references")
        if pos + 8 > size:
            raise MalformedPickle(f"it ends before the data of storage {key!r}: it is truncated")
        stored = int.from_bytes(data[pos : pos + 8], "little", signed=True)
        if stored != claim.numel:
            raise MalformedPickle(f"storage {key!r} claims {claim.numel:,} elements but its data holds {stored:,}")
        pos += 8 + claim.nbytes
        if pos > size:
            raise MalformedPickle(f"it ends inside the data of storage {key!r}: it is truncated")
