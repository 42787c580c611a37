"""Check a safetensors file's header before the safetensors library reads it.

Layout: an 8-byte little-endian header length ``n``, ``n`` bytes of JSON (``{"name": {"dtype", "shape",
"data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}``), then the data. The library validates the
same rules; checking them here first keeps every failure a :class:`~zoo.errors.CheckpointFormatError` with a
clear reason, bounds the header read by the file size, and refuses what the library accepts silently (two
tensors with the same name, where the last would win).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointFormatError

MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
# Bits per element of every dtype the format defines.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64,
    "I64": 64, "U64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}


class _HeaderError(ValueError):
    """One reason the header is not valid; ``key`` is the tensor it names, if any."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def check_safetensors_file(path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointFormatError` unless ``path`` has a well-formed safetensors header whose tensors
    exactly tile the data that follows it; nothing larger than the file is read or allocated."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if file.is_dir():
            raise _HeaderError("it is a directory")
        with open(file, "rb") as fh:
            header = _read_header(fh, size)
        _check_tensors(header, size - 8 - len(header.raw))
    except FileNotFoundError:
        raise CheckpointFormatError(f"{file} does not exist", path=file) from None
    except OSError as err:
        raise CheckpointFormatError(f"{file} cannot be read ({err.strerror or err})", path=file) from None
    except _HeaderError as err:
        raise CheckpointFormatError(
            f"{file} is not a valid safetensors file: {err}. Delete it and download or convert it again.",
            path=file, key=err.key,
        ) from None


class _Header(dict):
    """The parsed header; ``raw`` is its bytes."""

    raw: bytes = b""


def _read_header(fh: Any, size: int) -> _Header:
    if size < 8:
        raise _HeaderError(f"it has {size} bytes, fewer than the 8-byte header length")
    n = int.from_bytes(fh.read(8), "little")
    if n > size - 8 or n > MAX_HEADER_BYTES:
        raise _HeaderError(f"its header length field claims {n:,} bytes but the file has {size:,} bytes")
    raw = fh.read(n)
    if raw[:1] != b"{":
        raise _HeaderError("its header is not a JSON object")
    try:
        pairs = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except _HeaderError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise _HeaderError(f"its header is not valid JSON ({str(err)[:120]})") from None
    header = _Header(pairs)
    header.raw = raw
    return header


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _HeaderError(f"its header names {sorted({k for k in keys if keys.count(k) > 1})[:3]} twice")
    return dict(pairs)


def _check_tensors(header: dict[str, Any], data_size: int) -> None:
    """Every tensor's byte range matches its dtype and shape; the ranges tile ``[0, data_size)`` exactly."""
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _HeaderError("its __metadata__ is not a mapping of strings")
    ranges = sorted(_tensor_range(name, info, data_size) for name, info in header.items() if name != "__metadata__")
    position = 0
    for begin, end, name in ranges:
        if begin != position:
            raise _HeaderError(f"tensor {name!r} starts at byte {begin:,} of the data, expected {position:,}", key=name)
        position = end
    if position != data_size:
        raise _HeaderError(f"its tensors cover {position:,} bytes of data but the file holds {data_size:,}")


def _tensor_range(name: str, info: Any, data_size: int) -> tuple[int, int, str]:
    """``(begin, end, name)`` of one tensor, after checking its dtype, shape and offsets."""
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise _HeaderError(f"tensor {name!r} is not described by exactly dtype, shape and data_offsets", key=name)
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in DTYPE_BITS:
        raise _HeaderError(f"tensor {name!r} has the unknown dtype {str(dtype)[:20]!r}", key=name)
    if not isinstance(shape, list) or not all(_size(d) for d in shape):
        raise _HeaderError(f"tensor {name!r} has a shape that is not a list of sizes", key=name)
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_size(o) for o in offsets)):
        raise _HeaderError(f"tensor {name!r} has data_offsets that are not two sizes", key=name)
    begin, end = offsets
    if not begin <= end <= data_size:
        raise _HeaderError(f"tensor {name!r} has data_offsets {offsets} outside the {data_size:,} bytes of data", key=name)
    bits = 0 if 0 in shape else DTYPE_BITS[dtype]
    for d in shape:  # stop as soon as the claim exceeds the data (a huge shape costs nothing to check)
        bits *= d
        if bits > 8 * data_size:
            raise _HeaderError(f"tensor {name!r} of shape {shape[:8]} claims more than the {data_size:,} bytes of data", key=name)
    if bits % 8 or bits // 8 != end - begin:
        raise _HeaderError(f"tensor {name!r}: {dtype} of shape {shape[:8]} does not fill data_offsets {offsets}", key=name)
    return begin, end, name


def _size(value: Any) -> bool:
    """A JSON integer >= 0 (not a bool or float)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
