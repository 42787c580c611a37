"""Dependency-free pictures: side-by-side grey-level panels written as PNG.

Used by ``zoo demo`` and the pretraining scripts (original | damaged | restored). matplotlib is not needed;
each panel is a 2-D array scaled to [0, 255] with a white gap between panels.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from .hub.integrity import atomic_path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an 8-bit image, (H, W) grey or (H, W, 3) RGB."""
    img = np.ascontiguousarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"expected uint8 (H, W) or (H, W, 3), got {img.dtype} {img.shape}")
    height, width = img.shape[:2]
    colour = 0 if img.ndim == 2 else 2
    rows = img.reshape(height, -1)
    raw = b"".join(b"\x00" + rows[r].tobytes() for r in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def to_uint8(array: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Linearly map [low, high] (default: the array's min and max) to 0..255, clipping outside."""
    a = np.asarray(array, dtype=np.float32)
    low = float(a.min()) if low is None else low
    high = float(a.max()) if high is None else high
    scaled = (a - low) / max(high - low, 1e-12)
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_panels(path: str | os.PathLike, panels: Sequence[np.ndarray], low: float = 0.0, high: float = 1.0,
                scale: int = 3, gap: int = 4) -> Path:
    """Write 2-D ``panels`` (each (H, W), values in [low, high]) side by side as one PNG, enlarged ``scale``x.

    Panels are padded to the tallest one; the file is written atomically. Returns the path.
    """
    if not panels:
        raise ValueError("save_panels needs at least one panel")
    tiles = [np.kron(to_uint8(p, low, high), np.ones((scale, scale), np.uint8)) for p in panels]
    height = max(t.shape[0] for t in tiles)
    parts = []
    for i, tile in enumerate(tiles):
        padded = np.full((height, tile.shape[1]), 255, np.uint8)
        padded[: tile.shape[0]] = tile
        parts.append(padded)
        if i < len(tiles) - 1:
            parts.append(np.full((height, gap), 255, np.uint8))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_bytes(encode_png(np.concatenate(parts, axis=1)))
    return out
