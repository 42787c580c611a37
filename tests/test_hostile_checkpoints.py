"""Hostile checkpoint files: each gets one clear medzoo error naming the file; nothing in it runs, nothing much
larger than the file is allocated, and it fails fast.

The pickles are assembled opcode by opcode (``_Pickle`` below; ``test_assembled_pickles_are_well_formed``
checks them with :mod:`pickletools`) and wrapped in the two ``torch.save`` containers: the zip format
(``<folder>/data.pkl`` plus ``<folder>/data/<key>`` records) and the legacy format (magic number, protocol
version, system info, the object, the storage keys, then each storage as an 8-byte element count and its
bytes). Sizes claimed by the hostile files are either far beyond any machine (they fail at once without the
checks) or a few GiB that the allocator hands out lazily; none is ever allocated by medzoo.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo.convert.cache import load_converted
from zoo.convert.formats import unwrap_checkpoint
from zoo.convert.safe_load import load_legacy_checkpoint
from zoo.errors import CheckpointFormatError, ChecksumError, UnsafeCheckpointError

GiB = 2**30
RSS_SLACK_KB = 96 * 1024  # peak RSS may grow by this much while a hostile file is refused
MAX_SECONDS = 5.0
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


# ---------------------------------------------------------------------------------------------- pickle assembly


class _Pickle:
    """Opcodes of pickle protocol 2 as bytes (the subset ``torch.save`` writes, plus a few it never does)."""

    MARK, TUPLE, REDUCE, BUILD, NEWOBJ, PERSID, STOP = b"(", b"t", b"R", b"b", b"\x81", b"Q", b"."
    EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, SETITEM, APPEND = b"}", b"]", b")", b"s", b"a"
    NONE, FALSE, TRUE = b"N", b"\x89", b"\x88"

    @staticmethod
    def glob(module: str, name: str) -> bytes:
        return b"c" + f"{module}\n{name}\n".encode()

    @staticmethod
    def text(value: str) -> bytes:
        raw = value.encode("utf-8", "surrogatepass")
        return b"X" + struct.pack("<I", len(raw)) + raw

    @staticmethod
    def num(n: int) -> bytes:
        """BININT1, BININT or LONG1, as pickle chooses."""
        if 0 <= n < 256:
            return b"K" + bytes([n])
        if -(2**31) <= n < 2**31:
            return b"J" + struct.pack("<i", n)
        raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw

    @classmethod
    def tup(cls, *items: bytes) -> bytes:
        return cls.MARK + b"".join(items) + cls.TUPLE

    @classmethod
    def call(cls, func: bytes, *args: bytes) -> bytes:
        return func + cls.tup(*args) + cls.REDUCE

    @classmethod
    def latin1(cls, raw: bytes) -> bytes:
        """``bytes`` as protocol 2 pickles them: ``_codecs.encode(str, 'latin1')``."""
        return cls.call(cls.glob("_codecs", "encode"), cls.text(raw.decode("latin-1")), cls.text("latin1"))

    @classmethod
    def program(cls, *body: bytes) -> bytes:
        return b"\x80\x02" + b"".join(body) + cls.STOP

    @classmethod
    def state_dict(cls, value: bytes) -> bytes:
        """``{'state_dict': value}``, the usual checkpoint wrapper."""
        return cls.program(cls.EMPTY_DICT, cls.text("state_dict"), value, cls.SETITEM)

    @classmethod
    def storage(cls, key: str, numel: int, kind: bytes | None = None, legacy: bool = False, view: bytes | None = None) -> bytes:
        """A persistent storage id ``('storage', type, key, 'cpu', numel[, view])``, loaded with BINPERSID."""
        kind = cls.glob("torch", "FloatStorage") if kind is None else kind
        fields = [cls.text("storage"), kind, cls.text(key), cls.text("cpu"), cls.num(numel)]
        if legacy:
            fields.append(cls.NONE if view is None else view)
        return cls.tup(*fields) + cls.PERSID

    @classmethod
    def tensor(cls, storage: bytes, size: tuple[int, ...], stride: tuple[int, ...], offset: int = 0) -> bytes:
        """``_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""
        return cls.call(
            cls.glob("torch._utils", "_rebuild_tensor_v2"), storage, cls.num(offset),
            cls.tup(*map(cls.num, size)), cls.tup(*map(cls.num, stride)), cls.FALSE,
            cls.call(cls.glob("collections", "OrderedDict")),
        )


P = _Pickle


def zip_checkpoint(path: Path, data_pkl: bytes, records: dict[str, bytes] | None = None,
                   compress: int = zipfile.ZIP_STORED) -> Path:
    """A zip-format checkpoint as torch.save lays it out (folder, data.pkl, byteorder, data/<key>, version)."""
    with zipfile.ZipFile(path, "w", compress) as zf:
        zf.writestr("ckpt/data.pkl", data_pkl)
        zf.writestr("ckpt/byteorder", b"little")
        for key, raw in (records or {}).items():
            zf.writestr(f"ckpt/data/{key}", raw)
        zf.writestr("ckpt/version", b"3\n")
    return path


def legacy_checkpoint(path: Path, main: bytes, records: dict[str, tuple[int, bytes]] | None = None,
                      keys: list[str] | None = None, sys_info: bytes | None = None) -> Path:
    """A legacy-format checkpoint: ``records`` maps a key to (stored element count, bytes)."""
    records = records or {}
    parts = [pickle.dumps(LEGACY_MAGIC, protocol=2), pickle.dumps(1001, protocol=2),
             sys_info if sys_info is not None else pickle.dumps(SYS_INFO, protocol=2), main,
             pickle.dumps(list(records) if keys is None else keys, protocol=2)]
    parts += [struct.pack("<q", count) + raw for count, raw in records.values()]
    path.write_bytes(b"".join(parts))
    return path


def one_float_tensor(legacy: bool = False) -> bytes:
    """``{'state_dict': tensor([1.5])}`` backed by storage '0' (a benign control)."""
    return P.state_dict(P.tensor(P.storage("0", 1, legacy=legacy), (1,), (1,)))


FLOAT_RECORD = struct.pack("<f", 1.5)


# ---------------------------------------------------------------------------------------------- payloads


class _Exploit:
    """Pickles as ``os.system('touch <marker>')``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _touch(marker: Path) -> bytes:
    """``os.system('touch <marker>')`` as opcodes."""
    return P.call(P.glob("os", "system"), P.text(f"touch {marker}"))


# ---------------------------------------------------------------------------------------------- hostile cases


@dataclass(frozen=True)
class Hostile:
    """A hostile file: how to write it, the error it must get, and text the message must contain."""

    build: Callable[[Path, Path], Path]  # (directory, marker) -> file
    error: type[Exception]
    match: str = ""
    oversized: bool = False  # the message must state the file's size
    subprocess: bool = False  # crashes or hangs the interpreter without the checks: load it in a child process


def _raw(name: str, data: bytes) -> Callable[[Path, Path], Path]:
    """A file holding exactly ``data``."""

    def build(d: Path, marker: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name

    return build


def _zip(pkl: Callable[[Path], bytes], records: dict[str, bytes] | None = None, **kw) -> Callable[[Path, Path], Path]:
    """A zip checkpoint whose data.pkl is ``pkl(marker)``."""
    return lambda d, marker: zip_checkpoint(d / "hostile.pt", pkl(marker), records, **kw)


def _legacy(main: Callable[[Path], bytes], records: dict[str, tuple[int, bytes]] | None = None,
            **kw) -> Callable[[Path, Path], Path]:
    """A legacy checkpoint whose object pickle is ``main(marker)``."""
    return lambda d, marker: legacy_checkpoint(d / "hostile.pth", main(marker), records, **kw)


def _torch_save(fmt: str, protocol: int = 2) -> Callable[[Path, Path], Path]:
    """A real torch.save file with ``os.system`` nested in its metadata."""

    def build(d: Path, marker: Path) -> Path:
        obj = {"state_dict": {"w": torch.ones(2)}, "meta": {"nested": [1, _Exploit(marker)]}}
        torch.save(obj, d / "evil.pt", _use_new_zipfile_serialization=fmt == "zip", pickle_protocol=protocol)
        return d / "evil.pt"

    return build


def _raw_exploit(protocol: int) -> Callable[[Path, Path], Path]:
    """A plain pickle (not a torch file) of ``os.system``."""
    return lambda d, marker: _raw("evil.pkl", pickle.dumps(_Exploit(marker), protocol=protocol))(d, marker)


def _dtype(code: str, **forged: int) -> bytes:
    """``numpy.dtype(code, False, True)`` and BUILD with the state numpy writes for it (fields in ``forged``
    replaced: ``elsize``, ``flags``)."""
    version, order, sub, names, fields, elsize, align, flags = np.dtype(code).__reduce__()[2]
    elsize, flags = forged.get("elsize", elsize), forged.get("flags", flags)
    state = P.tup(P.num(version), P.text(order), P.NONE, P.NONE, P.NONE, P.num(elsize), P.num(align), P.num(flags))
    return P.call(P.glob("numpy", "dtype"), P.text(np.dtype(code).__reduce__()[1][0]), P.FALSE, P.TRUE) + state + P.BUILD


def _ndarray(module: str, shape: tuple[int, ...], code: str, raw: bytes, **forged: int) -> bytes:
    """numpy's pickle of an array: ``_reconstruct(ndarray, (0,), b'b')`` then BUILD with its state."""
    empty = P.call(P.glob(module, "_reconstruct"), P.glob("numpy", "ndarray"), P.tup(P.num(0)), P.latin1(b"b"))
    state = P.tup(P.num(1), P.tup(*map(P.num, shape)), _dtype(code, **forged), P.FALSE, raw)
    return empty + state + P.BUILD


def _hex_chain(levels: int) -> bytes:
    """``_codecs.encode`` applied ``levels`` times with the doubling 'hex' codec: 4 bytes become 4 * 2**levels."""
    value = P.latin1(b"abcd")
    for _ in range(levels):
        value = P.call(P.glob("_codecs", "encode"), value, P.text("hex"))
    return value


def _hash_bomb(levels: int) -> bytes:
    """``{t: 1}`` where ``t = (t', t')`` nested ``levels`` deep through the memo: hashing it walks 2**levels items."""
    body = P.num(1) + b"\x85" + b"q\x00"  # (1,) -> memo 0
    for i in range(1, levels + 1):
        body += b"h" + bytes([i - 1]) + b"\x86" + b"q" + bytes([i])  # (t, t): the one on the stack and the memo's
    return P.program(P.EMPTY_DICT, body, P.num(1), P.SETITEM)


def _zip_declaring_huge_member(d: Path, marker: Path) -> Path:
    """A zip whose central directory says ``data/0`` holds 4 GiB (stored), in a file of a few hundred bytes."""
    path = zip_checkpoint(d / "bomb.pt", one_float_tensor(), {"0": FLOAT_RECORD})
    data = bytearray(path.read_bytes())
    name = b"ckpt/data/0"
    pos = data.find(b"PK\x01\x02")  # central directory entries: name at +46, sizes at +20
    while pos >= 0:
        if data[pos + 46 : pos + 46 + len(name)] == name:
            data[pos + 20 : pos + 28] = struct.pack("<II", 0xF0000000, 0xF0000000)  # compressed, uncompressed size
        pos = data.find(b"PK\x01\x02", pos + 4)
    path.write_bytes(bytes(data))
    return path


def _legacy_code_in_sys_info(d: Path, marker: Path) -> Path:
    """The system-info pickle (third of the legacy format) replaced by ``os.system(...)``."""
    return legacy_checkpoint(d / "sysinfo.pth", one_float_tensor(legacy=True), {"0": (1, FLOAT_RECORD)},
                             sys_info=P.program(_touch(marker)))


def _legacy_code_in_storage_keys(d: Path, marker: Path) -> Path:
    """The list of storage keys (the pickle after the object) replaced by ``os.system(...)``."""
    path = legacy_checkpoint(d / "keys.pth", one_float_tensor(legacy=True), {"0": (1, FLOAT_RECORD)})
    head = path.read_bytes()[: -len(pickle.dumps(["0"], protocol=2) + struct.pack("<q", 1) + FLOAT_RECORD)]
    path.write_bytes(head + P.program(_touch(marker)) + struct.pack("<q", 1) + FLOAT_RECORD)
    return path


def _zip_with_two_data_pkl(d: Path, marker: Path) -> Path:
    """Two members whose names differ only in case: torch's reader may match either."""
    path = d / "twins.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ckpt/data.pkl", one_float_tensor())
        zf.writestr("ckpt/data/0", FLOAT_RECORD)
        zf.writestr("ckpt/DATA.PKL", P.program(_touch(marker)))
        zf.writestr("ckpt/version", b"3\n")
    return path


def _zip_after_another(d: Path, marker: Path) -> Path:
    """A hostile zip checkpoint followed by a benign one: zipfile reads the benign one (shifting its offsets),
    a reader that does not shift would read the other."""
    hostile = zip_checkpoint(d / "a.pt", P.state_dict(P.call(P.glob("builtins", "bytearray"), P.num(2**40)))).read_bytes()
    benign = zip_checkpoint(d / "b.pt", one_float_tensor(), {"0": FLOAT_RECORD}).read_bytes()
    (d / "shifted.pt").write_bytes(hostile + benign)
    return d / "shifted.pt"


def _truncated(fmt: str, keep: float) -> Callable[[Path, Path], Path]:
    """A real checkpoint cut to the fraction ``keep`` of its bytes."""

    def build(d: Path, marker: Path) -> Path:
        path = d / "cut.pt"
        torch.save({"state_dict": {"w": torch.arange(64.0)}}, path, _use_new_zipfile_serialization=fmt == "zip")
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
        return path

    return build


def _directory(d: Path, marker: Path) -> Path:
    """A directory given as the checkpoint."""
    (d / "ckpt_dir").mkdir()
    return d / "ckpt_dir"



# Pickle bodies of the hostile cases (``m`` is the marker file a payload would create).


def _bytearray(n: int, module: str = "builtins") -> bytes:
    """``bytearray(n)``: n zero bytes."""
    return P.call(P.glob(module, "bytearray"), P.num(n))


def _bytearray_via_rebuild_from_type(n: int) -> bytes:
    """``_rebuild_from_type_v2(bytearray, Tensor, (n,), {})`` calls ``bytearray(n)``."""
    return P.call(P.glob("torch._tensor", "_rebuild_from_type_v2"), P.glob("builtins", "bytearray"),
                  P.glob("torch", "Tensor"), P.tup(P.num(n)), P.EMPTY_DICT)


def _reconstruct(module: str, n: int) -> bytes:
    """numpy's ``_reconstruct(ndarray, (n,), b'b')``: an n-byte array before any data is read."""
    return P.call(P.glob(module, "_reconstruct"), P.glob("numpy", "ndarray"), P.tup(P.num(n)), P.latin1(b"b"))


def _legacy_set_(numel: int) -> bytes:
    """Legacy tensor pickling: ``FloatTensor()`` then BUILD ``set_(storage, 0, (numel,), (1,))``."""
    state = P.tup(P.storage("0", 1, legacy=True), P.num(0), P.tup(P.num(numel)), P.tup(P.num(1)))
    return P.call(P.glob("torch", "FloatTensor")) + state + P.BUILD


def _qtensor(numel: int) -> bytes:
    """``_rebuild_qtensor`` allocates the full quantized size before it looks at the (1-byte) storage."""
    params = P.tup(P.glob("torch", "per_tensor_affine"), b"G" + struct.pack(">d", 0.1), P.num(0))
    return P.call(P.glob("torch._utils", "_rebuild_qtensor"), P.storage("0", 1, P.glob("torch", "QInt8Storage")),
                  P.num(0), P.tup(P.num(numel)), P.tup(P.num(1)), params, P.FALSE,
                  P.call(P.glob("collections", "OrderedDict")))


def _expanded_then_converted(side: int) -> bytes:
    """A one-element storage expanded to side x side (stride 0), then copied to float64 by
    ``_rebuild_device_tensor_from_cpu_tensor``: the copy is materialised."""
    expanded = P.tensor(P.storage("0", 1), (side, side), (0, 0))
    return P.call(P.glob("torch._utils", "_rebuild_device_tensor_from_cpu_tensor"), expanded,
                  P.glob("torch", "float64"), P.text("cpu"), P.FALSE)


def _float_tensor_with(kind: bytes, legacy: bool = False) -> bytes:
    """``{'state_dict': tensor}`` whose storage reference names ``kind`` as its storage type."""
    return P.state_dict(P.tensor(P.storage("0", 1, kind, legacy=legacy), (1,), (1,)))


def _many_storages(count: int, numel: int) -> bytes:
    """A list of ``count`` tensors on distinct storages of ``numel`` floats each (legacy format)."""
    items = [P.tensor(P.storage(str(k), numel, legacy=True), (1,), (1,)) + P.APPEND for k in range(count)]
    return P.program(P.EMPTY_LIST, *items)


def _view_beyond_storage() -> bytes:
    """A legacy storage view of 2**31 elements of a one-element storage."""
    view = P.tup(P.text("v"), P.num(0), P.num(2**31))
    return P.state_dict(P.tensor(P.storage("0", 1, legacy=True, view=view), (1,), (1,)))


def _object_array(items_claimed: int) -> bytes:
    """An object array whose shape claims ``items_claimed`` items but whose pickled list holds one."""
    return P.state_dict(_ndarray("numpy._core.multiarray", (items_claimed,), "O8", P.EMPTY_LIST + P.num(1) + P.APPEND))


def _call_global(module: str, name: str, *args: bytes) -> bytes:
    """``{'state_dict': module.name(*args)}``."""
    return P.state_dict(P.call(P.glob(module, name), *args))


_TINY = 4  # bytes of the one real storage record in the view/claim cases
_ALLOC, _BAD, _UNSAFE = CheckpointFormatError, CheckpointFormatError, UnsafeCheckpointError
HOSTILE: dict[str, Hostile] = {
    # --- allowed callables turned into huge allocations (the message states the file's size) ---------------
    "zip-bytearray-1TiB": Hostile(_zip(lambda m: P.state_dict(_bytearray(2**40))), _ALLOC, "bytearray", True),
    "raw-70-bytes-bytearray-1TiB": Hostile(_raw("tiny.pt", P.program(_bytearray(2**40))), _ALLOC, "bytearray", True),
    "legacy-bytearray-py2-name": Hostile(_legacy(lambda m: P.state_dict(_bytearray(2**40, "__builtin__"))),
                                         _ALLOC, "bytearray", True),
    "zip-bytearray-via-rebuild_from_type": Hostile(_zip(lambda m: P.state_dict(_bytearray_via_rebuild_from_type(2**40))),
                                                   _ALLOC, "bytearray", True),
    "zip-FloatTensor-8GiB": Hostile(_zip(lambda m: _call_global("torch", "FloatTensor", P.num(2**31))),
                                    _ALLOC, "FloatTensor", True),
    "zip-UntypedStorage-8GiB": Hostile(_zip(lambda m: _call_global("torch.storage", "UntypedStorage", P.num(8 * GiB))),
                                       _ALLOC, "UntypedStorage", True),
    "zip-Tensor-NEWOBJ-4GiB": Hostile(
        _zip(lambda m: P.state_dict(P.glob("torch", "Tensor") + P.tup(P.num(2**15), P.num(2**15)) + P.NEWOBJ)),
        _ALLOC, "Tensor", True),
    "zip-ndarray-8GiB": Hostile(_zip(lambda m: P.state_dict(_reconstruct("numpy._core.multiarray", 8 * GiB))),
                                _ALLOC, "numpy array", True),
    "zip-ndarray-numpy1-spelling-1PiB": Hostile(_zip(lambda m: P.state_dict(_reconstruct("numpy.core.multiarray", 2**50))),
                                                _ALLOC, "numpy array", True),
    "zip-ndarray-state-1TiB": Hostile(
        _zip(lambda m: P.state_dict(_ndarray("numpy.core.multiarray", (2**37,), "f8", P.latin1(bytes(8))))),
        _ALLOC, "numpy array", True),
    "zip-view-grows-storage-8GiB": Hostile(
        _zip(lambda m: P.state_dict(P.tensor(P.storage("0", 1), (2**31,), (1,))), {"0": bytes(_TINY)}),
        _ALLOC, "tensor", True),
    "legacy-set_-grows-storage-8GiB": Hostile(_legacy(lambda m: P.state_dict(_legacy_set_(2**31)), {"0": (1, bytes(_TINY))}),
                                              _ALLOC, "tensor", True),
    "zip-qtensor-8GiB": Hostile(_zip(lambda m: P.state_dict(_qtensor(8 * GiB)), {"0": bytes(1)}),
                                _ALLOC, "quantized tensor", True),
    "zip-expanded-tensor-converted-512MiB": Hostile(
        _zip(lambda m: P.state_dict(_expanded_then_converted(2**13)), {"0": bytes(_TINY)}), _ALLOC, "converted", True),
    "zip-storage-claims-8GiB": Hostile(
        _zip(lambda m: P.state_dict(P.tensor(P.storage("0", 2**31), (1,), (1,))), {"0": FLOAT_RECORD}),
        _ALLOC, "storage", True),
    "legacy-storage-claims-8GiB": Hostile(
        _legacy(lambda m: P.state_dict(P.tensor(P.storage("0", 2**31, legacy=True), (1,), (1,))), {"0": (2**31, FLOAT_RECORD)}),
        _ALLOC, "storage", True),
    "legacy-64-storages-each-file-sized": Hostile(_legacy(lambda m: _many_storages(64, 300)), _ALLOC, "all storages", True),
    "zip-string-claims-4GiB": Hostile(_zip(lambda m: b"\x80\x02X\xff\xff\xff\xffabc."), _ALLOC, "string", True),
    "legacy-string-claims-4GiB": Hostile(_legacy(lambda m: b"\x80\x02X\xff\xff\xff\xffabc."), _ALLOC, "string", True),
    "zip-member-declares-4GiB": Hostile(_zip_declaring_huge_member, _ALLOC, "declares", True),
    "zip-hash-bomb-tuple-key": Hostile(_zip(lambda m: _hash_bomb(60)), _ALLOC, "expands to", True, subprocess=True),
    "object-array-claims-10M-items": Hostile(_zip(lambda m: _object_array(10**7)), _ALLOC, "numpy array", True,
                                             subprocess=True),
    # --- refused before they can allocate, crash or hang (no size to state) ----------------------------------
    "zip-codecs-hex-doubling-256MiB": Hostile(_zip(lambda m: P.state_dict(_hex_chain(26))), _BAD, "_codecs.encode"),
    "zip-numpy-scalar-1TiB-dtype": Hostile(
        _zip(lambda m: _call_global("numpy.core.multiarray", "scalar", _dtype("U1", elsize=2**40), P.latin1(b"abcd"))),
        _BAD, "state numpy never writes"),
    "zip-numpy-float-dtype-forged-to-hold-objects": Hostile(
        _zip(lambda m: P.state_dict(_ndarray("numpy._core.multiarray", (1,), "f8", P.EMPTY_LIST + P.num(1) + P.APPEND,
                                             flags=63))),
        _BAD, "state numpy never writes", subprocess=True),
    "object-array-shorter-than-its-shape": Hostile(_zip(lambda m: _object_array(40)), _BAD, "fewer items", subprocess=True),
    # --- malformed storage references -------------------------------------------------------------------------
    "legacy-storage-type-is-a-string": Hostile(
        _legacy(lambda m: _float_tensor_with(P.text("FloatStorage"), legacy=True), {"0": (1, FLOAT_RECORD)}),
        _BAD, "not a torch storage class"),
    "zip-storage-type-is-a-string": Hostile(_zip(lambda m: _float_tensor_with(P.text("FloatStorage")), {"0": FLOAT_RECORD}),
                                            _BAD, "not a torch storage class"),
    "zip-storage-type-is-a-dtype": Hostile(_zip(lambda m: _float_tensor_with(P.glob("torch", "float32")), {"0": FLOAT_RECORD}),
                                           _BAD, "not a torch storage class"),
    "zip-persistent-id-not-a-storage": Hostile(_zip(lambda m: P.program(P.tup(P.text("module"), P.num(1)) + P.PERSID)),
                                               _BAD, "not a storage reference"),
    "legacy-view-beyond-its-storage": Hostile(_legacy(lambda m: _view_beyond_storage(), {"0": (1, FLOAT_RECORD)}), _BAD, "view"),
    "legacy-stored-count-mismatch": Hostile(_legacy(lambda m: one_float_tensor(legacy=True), {"0": (2, FLOAT_RECORD * 2)}),
                                            _BAD, "its data holds"),
    # --- not a checkpoint, truncated, broken pickles, zip tricks ----------------------------------------------
    "text-file": Hostile(_raw("notes.txt", b"hello world, this is not a checkpoint\n"), _BAD, "not a torch checkpoint"),
    "json-file": Hostile(_raw("config.json", json.dumps({"state_dict": {"w": [1, 2]}}).encode()), _BAD,
                         "not a torch checkpoint"),
    "empty-file": Hostile(_raw("zero.pt", b""), _BAD, "empty (0 bytes)"),
    "one-byte-file": Hostile(_raw("one.pt", b"\x80"), _BAD, "ends in the middle of a pickle"),
    "directory": Hostile(_directory, _BAD, "directory"),
    "missing-file": Hostile(lambda d, m: d / "nope.pt", _BAD, "does not exist"),
    "truncated-zip": Hostile(_truncated("zip", 0.5), _BAD, "starts like a zip archive"),
    "truncated-legacy": Hostile(_truncated("legacy", 0.9), _BAD, "ends inside the data"),
    "zip-archive-appended-to-another": Hostile(_zip_after_another, _BAD, "central directory"),
    "zip-compressed-data.pkl": Hostile(_zip(lambda m: one_float_tensor(), {"0": FLOAT_RECORD}, compress=zipfile.ZIP_DEFLATED),
                                       _BAD, "compressed"),
    "zip-two-data.pkl-differing-in-case": Hostile(_zip_with_two_data_pkl, _BAD, "two members"),
    "legacy-wrong-magic": Hostile(_raw("magic.pth", pickle.dumps(1234, protocol=2) + b"rest"), _BAD, "neither a zip archive nor"),
    "stack-underflow": Hostile(_raw("underflow.pt", P.program(P.REDUCE)), _BAD, "inconsistent"),
    "undefined-memo-entry": Hostile(_raw("memo.pt", P.program(b"h\x05")), _BAD, "memo"),
    "setitem-on-a-list": Hostile(_zip(lambda m: P.program(P.EMPTY_LIST, P.text("a"), P.text("b"), P.SETITEM)),
                                 _BAD, "sets items of a list"),
    # --- code: refused as unsafe, never run (the message names what was refused) -------------------------------
    "raw-os.system-protocol-0": Hostile(_raw_exploit(0), _UNSAFE, "system"),
    "raw-os.system-protocol-2": Hostile(_raw_exploit(2), _UNSAFE, "system"),
    "raw-os.system-protocol-4": Hostile(_raw_exploit(4), _UNSAFE, "STACK_GLOBAL"),
    "raw-os.system-protocol-5": Hostile(_raw_exploit(5), _UNSAFE, "STACK_GLOBAL"),
    "zip-os.system-nested-in-dict": Hostile(_torch_save("zip"), _UNSAFE, "system"),
    "legacy-os.system-nested-in-dict": Hostile(_torch_save("legacy"), _UNSAFE, "system"),
    "zip-os.system-protocol-4-data.pkl": Hostile(_torch_save("zip", protocol=4), _UNSAFE, "system"),
    "zip-STACK_GLOBAL-in-protocol-2": Hostile(
        _zip(lambda m: P.program(P.text("os"), P.text("system"), b"\x93", P.tup(P.text(f"touch {m}")), P.REDUCE)),
        _UNSAFE, "STACK_GLOBAL"),
    "INST-opcode": Hostile(lambda d, m: _raw("inst.pt", f"(S'touch {m}'\nios\nsystem\n.".encode())(d, m), _UNSAFE, "INST"),
    "OBJ-opcode": Hostile(lambda d, m: _raw("obj.pt", f"(cos\nsystem\nS'touch {m}'\no.".encode())(d, m), _UNSAFE, "system"),
    "EXT1-opcode": Hostile(_zip(lambda m: P.program(b"\x82\x01", P.tup(P.text(f"touch {m}")), P.REDUCE)), _UNSAFE, "EXT1"),
    "NEWOBJ_EX-opcode": Hostile(
        _zip(lambda m: P.program(P.glob("collections", "OrderedDict"), P.EMPTY_TUPLE, P.EMPTY_DICT, b"\x92")),
        _UNSAFE, "NEWOBJ_EX"),
    "BUILD-setstate-on-a-class": Hostile(
        _zip(lambda m: P.program(P.glob("torch", "Tensor"), P.EMPTY_DICT, P.text("__setstate__"), _touch(m), P.SETITEM,
                                 P.BUILD)),
        _UNSAFE, "system"),
    "BUILD-on-an-allowed-class": Hostile(_zip(lambda m: P.program(P.glob("collections", "OrderedDict"), P.EMPTY_DICT, P.BUILD)),
                                         _UNSAFE, "BUILD on the global"),
    "REDUCE-of-a-non-global": Hostile(_zip(lambda m: P.program(P.text("print"), P.EMPTY_TUPLE, P.REDUCE)),
                                      _UNSAFE, "not an allowed function"),
    "torch._utils-function-not-allowed": Hostile(
        _zip(lambda m: _call_global("torch._utils", "_import_dotted_name", P.text("os.system"))),
        _UNSAFE, "_import_dotted_name"),
    "torch.load-in-a-checkpoint": Hostile(_zip(lambda m: _call_global("torch.serialization", "load", P.text("/etc/passwd"))),
                                          _UNSAFE, "torch.serialization.load"),
    "py2-__builtin__.eval": Hostile(
        _zip(lambda m: _call_global("__builtin__", "eval", P.text(f"__import__('os').system('touch {m}')"))),
        _UNSAFE, "builtins.eval"),
    "numpy-function-not-allowed": Hostile(
        _zip(lambda m: _call_global("numpy.testing._private.utils", "runstring",
                                    P.text(f"import os; os.system('touch {m}')"), P.EMPTY_DICT)),
        _UNSAFE, "runstring"),
    "legacy-os.system-in-sys-info": Hostile(_legacy_code_in_sys_info, _UNSAFE, "system"),
    "legacy-os.system-in-storage-keys": Hostile(_legacy_code_in_storage_keys, _UNSAFE, "system"),
}


def _peak_rss_kb() -> int:
    """This process's peak resident set size so far (KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _load_in_child(path: Path) -> subprocess.CompletedProcess:
    """Load ``path`` in a child interpreter; it prints the error's class and message, or nothing."""
    code = (
        "import sys\nfrom zoo.convert.safe_load import load_legacy_checkpoint\n"
        "try:\n    load_legacy_checkpoint(sys.argv[1])\nexcept Exception as err:\n"
        "    print(type(err).__name__ + ': ' + str(err))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_checkpoint_is_refused(name, tmp_path):
    """One clear error of the expected class naming the file; no payload ran; no memory or time spent."""
    case = HOSTILE[name]
    marker = tmp_path / "pwned"
    path = case.build(tmp_path, marker)
    if case.subprocess:
        result = _load_in_child(path)
        assert result.returncode == 0, f"the loader crashed (exit {result.returncode}): {result.stderr[-500:]}"
        assert result.stdout.startswith(case.error.__name__ + ":"), result.stdout + result.stderr[-500:]
        assert str(path) in result.stdout and case.match in result.stdout
        assert not case.oversized or f"{path.stat().st_size:,} bytes" in result.stdout
        return
    rss, start = _peak_rss_kb(), time.perf_counter()
    with pytest.raises(Exception) as info:
        load_legacy_checkpoint(path)
    elapsed, grown = time.perf_counter() - start, _peak_rss_kb() - rss
    err = info.value
    assert type(err) is case.error, f"{type(err).__name__}: {err}"
    assert str(path) in str(err), str(err)
    assert case.match in str(err), str(err)
    if case.oversized:
        assert f"{path.stat().st_size:,} bytes" in str(err), str(err)
    assert grown < RSS_SLACK_KB, f"peak RSS grew by {grown // 1024} MiB"
    assert elapsed < MAX_SECONDS
    assert not marker.exists()


def test_no_hostile_payload_ran_anywhere(tmp_path):
    """The loader also refuses every hostile file through medzoo's format readers, and no marker appears."""
    for name, case in HOSTILE.items():
        if case.subprocess:
            continue
        directory = tmp_path / name
        directory.mkdir()
        marker = directory / "pwned"
        path = case.build(directory, marker)
        for fmt in ("genesis-unet3d", "nnunet-v1"):
            with pytest.raises((CheckpointFormatError, UnsafeCheckpointError)):
                unwrap_checkpoint(path, fmt)
        assert not marker.exists(), name


def test_assembled_pickles_are_well_formed():
    """The opcode assembler writes what pickletools parses, and the benign controls are valid protocol 2."""
    ops = [op.name for op, _, _ in pickletools.genops(one_float_tensor())]
    assert ops[:2] == ["PROTO", "EMPTY_DICT"] and ops[-1] == "STOP"
    assert {"GLOBAL", "BINPERSID", "REDUCE", "SETITEM", "TUPLE"} <= set(ops)
    assert pickle.loads(P.program(P.tup(P.num(1), P.num(-5), P.num(2**70), P.text("é")))) == (1, -5, 2**70, "é")
    assert pickle.loads(P.program(P.latin1(b"\x00\xff"))) == b"\x00\xff"
    pair = ((1,), (1,))
    assert pickle.loads(_hash_bomb(2)) == {(pair, pair): 1}


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_assembled_control_checkpoints_load(fmt, tmp_path):
    """The containers the hostile cases use are valid: with a benign pickle they load (so a refusal above
    is due to the hostile part alone)."""
    if fmt == "zip":
        path = zip_checkpoint(tmp_path / "ok.pt", one_float_tensor(), {"0": FLOAT_RECORD})
    else:
        path = legacy_checkpoint(tmp_path / "ok.pth", one_float_tensor(legacy=True), {"0": (1, FLOAT_RECORD)})
    loaded = load_legacy_checkpoint(path)
    assert torch.equal(loaded["state_dict"], torch.tensor([1.5]))
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"], torch.tensor([1.5]))


def test_object_array_child_process_loader_works(tmp_path):
    """The child-process loader used for crashing cases loads a valid object array (1 item for shape (1,))."""
    path = zip_checkpoint(tmp_path / "obj.pt", P.state_dict(_ndarray("numpy._core.multiarray", (1,), "O8", P.EMPTY_LIST + P.num(7) + P.APPEND)))
    arr = load_legacy_checkpoint(path)["state_dict"]
    assert arr.dtype == object and arr.tolist() == [7]
    assert _load_in_child(path).stdout == ""


@pytest.mark.parametrize("spelling", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_numpy_rebuilds_are_bounded_when_called(spelling, tmp_path):
    """The second line of defence: numpy's rebuild functions, as registered for the unpickler, refuse sizes
    larger than the file even when torch.load runs without the static check."""
    from zoo.convert import safe_load

    path = zip_checkpoint(tmp_path / "big.pt", P.state_dict(P.call(P.glob(spelling, "_reconstruct"), P.glob("numpy", "ndarray"),
                                                                   P.tup(P.num(8 * GiB)), P.latin1(b"b"))))
    token = safe_load._BUDGET.set(safe_load._Budget(str(path), path.stat().st_size))
    try:
        with torch.serialization.safe_globals(safe_load._numpy_safe_globals()):
            with pytest.raises(CheckpointFormatError, match=f"{path.stat().st_size:,} bytes"):
                torch.load(path, weights_only=True)
    finally:
        safe_load._BUDGET.reset(token)


# ---------------------------------------------------------------------------------------------- numpy 1.x pickles


def _numpy1_spelling(data_pkl: bytes) -> bytes:
    """Rewrite numpy 2's module name in GLOBAL opcodes to numpy 1's (lines end with a newline: lengths are free)."""
    rewritten = data_pkl.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert rewritten != data_pkl and b"numpy._core" not in rewritten
    return rewritten


def _nnunet_v1_trainer(sd: "OrderedDict[str, torch.Tensor]") -> dict:
    """An nnU-Net v1 trainer file's contents: weights, optimizer, and metrics in ``plot_stuff`` as numpy values."""
    losses = [np.float64(1.0 / (i + 1)) for i in range(20)]
    return {
        "epoch": 20,
        "state_dict": sd,
        "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": np.float64(0.01), "params": [0, 1]}]},
        "plot_stuff": (losses, [np.float32(x) for x in losses], [], [np.float64(0.5)] * 20),
        "best_stuff": (np.int64(19), np.float64(0.3), np.float64(0.4)),
        "amp_grad_scaler": {"scale": 65536.0},
        "curves": np.arange(12, dtype=np.float64).reshape(3, 4),
        "flags": np.array([True, False]),
    }


def _write_numpy1_checkpoint(obj: dict, path: Path, fmt: str) -> Path:
    """``torch.save`` under numpy 2, then the pickle rewritten as numpy 1.x wrote it."""
    torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip")
    if fmt == "legacy":
        path.write_bytes(_numpy1_spelling(path.read_bytes()))
        return path
    with zipfile.ZipFile(path) as src:
        members = [(info.filename, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w") as dst:
        for name, raw in members:
            dst.writestr(name, _numpy1_spelling(raw) if name.endswith("/data.pkl") else raw)
    return path


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_numpy1_pickled_trainer_file_loads(fmt, tmp_path):
    sd = OrderedDict(w=torch.randn(3, 2), b=torch.zeros(3))
    obj = _nnunet_v1_trainer(sd)
    path = _write_numpy1_checkpoint(obj, tmp_path / "model_final_checkpoint.model", fmt)
    loaded = load_legacy_checkpoint(path)
    assert all(torch.equal(loaded["state_dict"][k], v) for k, v in sd.items())
    assert loaded["plot_stuff"][0] == obj["plot_stuff"][0] and type(loaded["plot_stuff"][0][0]) is np.float64
    assert type(loaded["plot_stuff"][1][0]) is np.float32 and loaded["best_stuff"] == obj["best_stuff"]
    assert np.array_equal(loaded["curves"], obj["curves"]) and loaded["curves"].dtype == np.float64
    assert np.array_equal(loaded["flags"], obj["flags"])


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_numpy1_pickled_nnunet_v1_file_converts(fmt, tmp_path):
    """Through medzoo's converter: a real nnU-Net v1 layout whose trainer file was pickled under numpy 1.x."""
    from upstream import nnunet_v1_lung_state_dict

    sd = nnunet_v1_lung_state_dict()
    path = _write_numpy1_checkpoint(_nnunet_v1_trainer(sd), tmp_path / "genesis_nnunet_luna16_006.model", fmt)
    plain = tmp_path / "plain.model"
    torch.save({"state_dict": sd}, plain)
    unwrapped, expected = unwrap_checkpoint(path, "nnunet-v1"), unwrap_checkpoint(plain, "nnunet-v1")
    assert list(unwrapped.state_dict) == list(expected.state_dict)
    assert all(torch.equal(unwrapped.state_dict[k], v) for k, v in expected.state_dict.items())
    assert "plot_stuff" in unwrapped.dropped_entries


# ---------------------------------------------------------------------------------------------- real checkpoints


REAL_KINDS = ["views", "expanded", "empty-and-scalar", "dtypes", "parameter-and-optimizer", "containers", "numpy",
              "sparse-and-quantized"]


def _real_objects() -> dict[str, object]:
    """Objects as real checkpoints hold them (one per entry of REAL_KINDS)."""
    base = torch.arange(24.0).reshape(4, 6)
    param = torch.nn.Parameter(torch.randn(3, 3))
    return {
        "views": {"base": base, "row": base[1], "t": base.t(), "slice": base[1:3, 2:5]},
        "expanded": {"e": torch.zeros(1).expand(1000), "e2": torch.ones(3, 1).expand(3, 50)},
        "empty-and-scalar": {"e": torch.empty(0), "e2": torch.empty(0, 5), "s": torch.tensor(3.0)},
        "dtypes": {str(d): torch.ones(3, dtype=d) for d in (torch.float16, torch.bfloat16, torch.int8, torch.complex64, torch.bool)},
        "parameter-and-optimizer": {"p": param, "opt": torch.optim.Adam([param]).state_dict()},
        "containers": {"set": {1, 2}, "bytes": b"\x00\xff", "ba": bytearray(b"xy"), "c": 1 + 2j, "size": torch.Size([2, 3]),
                       "dev": torch.device("cpu"), "dtype": torch.float32, "big": 2**70},
        "numpy": {"a": np.arange(6.0).reshape(2, 3), "s": np.float64(0.5), "u": np.array(["ab"]), "o": np.array([1, "a"], dtype=object)},
        "sparse-and-quantized": {"s": torch.eye(3).to_sparse(), "q": torch.quantize_per_tensor(torch.ones(4), 0.1, 0, torch.qint8)},
    }


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor", "ignore:Validating sparse tensor",
                            "ignore:TypedStorage is deprecated")
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("kind", REAL_KINDS)
def test_real_checkpoints_still_load(kind, fmt, tmp_path):
    objects = _real_objects()
    assert list(objects) == REAL_KINDS
    obj = objects[kind]
    path = tmp_path / f"{kind}.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip")
    assert repr(load_legacy_checkpoint(path)) == repr(obj)


# ---------------------------------------------------------------------------------------------- safetensors fuzzing

_DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "U16", "U32", "U64", "F8_E4M3", "F4"]
_sizes = st.one_of(st.integers(0, 6), st.sampled_from([-1, 2**31, 2**32, 2**62, 2**63, 2**64 - 1, 2**64, 10**30]))
_tensor_info = st.one_of(
    st.fixed_dictionaries({
        "dtype": st.sampled_from(_DTYPES + ["X32", "f32", "", "F 32"]) | st.integers(),
        "shape": st.lists(_sizes, max_size=4) | st.just("3"),
        "data_offsets": st.lists(st.integers(-3, 80) | _sizes, min_size=0, max_size=3),
    }),
    st.dictionaries(st.sampled_from(["dtype", "shape", "data_offsets", "x"]), st.integers() | st.text(max_size=3), max_size=4),
)


@st.composite
def _valid_safetensors(draw) -> bytes:
    """A well-formed file of a few small tensors (the base that mutations start from)."""
    header, data = {}, b""
    for i in range(draw(st.integers(0, 3))):
        dtype = draw(st.sampled_from(_DTYPES[:10]))
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        nbytes = int(np.prod(shape, dtype=np.int64)) * {"F64": 8, "I64": 8, "F32": 4, "I32": 4}.get(dtype, 2 if "16" in dtype else 1)
        header[f"t{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + nbytes]}
        data += draw(st.binary(min_size=nbytes, max_size=nbytes))
    if draw(st.booleans()):
        header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@st.composite
def _hostile_safetensors(draw) -> bytes:
    """Random headers, lengths, JSON and data, or a valid file with one mutation."""
    kind = draw(st.sampled_from(["random-header", "raw-json", "mutated", "duplicate-names"]))
    if kind == "mutated":
        data = bytearray(draw(_valid_safetensors()))
        how = draw(st.sampled_from(["flip", "length", "truncate", "append"]))
        if how == "flip" and len(data) > 8:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif how == "length":
            data[:8] = struct.pack("<Q", draw(st.integers(0, 2**64 - 1) | st.sampled_from([len(data), len(data) - 7, 2**63, 2**64 - 1])))
        elif how == "truncate":
            del data[draw(st.integers(0, len(data))):]
        else:
            data += draw(st.binary(min_size=1, max_size=16))
        return bytes(data)
    if kind == "raw-json":
        raw = draw(st.binary(max_size=40) | st.sampled_from([b"{", b"[]", b"{}", b"null", b"[" * 5000 + b"]" * 5000, b'{"a": NaN}']))
    elif kind == "duplicate-names":
        info = json.dumps({"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})
        raw = ("{" + ", ".join([f'"w": {info}'] * draw(st.integers(2, 3))) + "}").encode()
    else:
        header = draw(st.dictionaries(st.sampled_from(["w", "b", "__metadata__", "é"]), _tensor_info, max_size=3))
        raw = json.dumps(header).encode()
    data = draw(st.binary(max_size=64))
    length = draw(st.sampled_from(["exact", "random"]))
    n = len(raw) if length == "exact" else draw(st.integers(0, 2**64 - 1) | st.sampled_from([2**63, len(raw) + len(data) + 1]))
    return struct.pack("<Q", n) + raw + data


@pytest.fixture(scope="module")
def _fuzz_dir():
    """One directory for all fuzz examples (hypothesis runs many examples per test call)."""
    with tempfile.TemporaryDirectory(prefix="medzoo-fuzz-") as d:
        yield Path(d)


def _check_safetensors_reader(read: Callable[[Path], dict], allowed: type[Exception], data: bytes, path: Path) -> None:
    """``read`` either raises ``allowed`` naming the file or returns tensors that fit in the file."""
    path.write_bytes(data)
    try:
        tensors = read(path)
    except allowed as err:
        assert str(path) in str(err)
        return
    assert sum(t.numel() * t.element_size() for t in tensors.values()) <= len(data)


_FUZZ = settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_FUZZ
@given(data=_hostile_safetensors())
def test_safetensors_fuzz_format_reader(_fuzz_dir, data):
    """``unwrap_checkpoint(..., 'safetensors')`` raises only CheckpointFormatError and reads no more than the file."""
    rss = _peak_rss_kb()
    _check_safetensors_reader(lambda p: unwrap_checkpoint(p, "safetensors").state_dict, CheckpointFormatError, data,
                              _fuzz_dir / "model.safetensors")
    assert _peak_rss_kb() - rss < RSS_SLACK_KB


@_FUZZ
@given(data=_hostile_safetensors())
def test_safetensors_fuzz_cache_reader(_fuzz_dir, data):
    """The cache's ``load_converted`` raises only ChecksumError and reads no more than the file."""
    rss = _peak_rss_kb()
    _check_safetensors_reader(load_converted, ChecksumError, data, _fuzz_dir / "cached.safetensors")
    assert _peak_rss_kb() - rss < RSS_SLACK_KB


@pytest.mark.parametrize("header, reason", [
    ({"w": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 4]}}, "claims more than"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, "starts at byte"),
    ({"w": {"dtype": "Q8", "shape": [1], "data_offsets": [0, 4]}}, "unknown dtype"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 2**64]}}, "outside"),
    ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, "not a list of sizes"),
])
def test_safetensors_header_errors_are_clear(header, reason, tmp_path):
    path = tmp_path / "bad.safetensors"
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(4))
    with pytest.raises(CheckpointFormatError, match=reason) as err:
        unwrap_checkpoint(path, "safetensors")
    assert (err.value.path, err.value.key) == (str(path), "w")


def test_safetensors_duplicate_names_and_huge_length_are_refused(tmp_path):
    path = tmp_path / "dup.safetensors"
    info = json.dumps({"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})
    raw = f'{{"w": {info}, "w": {info}}}'.encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(4))
    with pytest.raises(CheckpointFormatError, match="twice") as err:
        unwrap_checkpoint(path, "safetensors")
    assert err.value.path == str(path)
    path.write_bytes(struct.pack("<Q", 2**63) + raw + bytes(4))
    with pytest.raises(CheckpointFormatError, match="header length") as err:
        unwrap_checkpoint(path, "safetensors")
    assert err.value.path == str(path) and err.value.key is None
