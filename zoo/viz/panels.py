"""Side-by-side grey-level panels with captions, written as PNG (:func:`save_panels`).

Each panel is a 2-D array scaled to [0, 255] with a white gap between panels; captions use the bitmap font of
:mod:`zoo.viz.font`; the PNG bytes come from :mod:`zoo.viz.png`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..hub.integrity import atomic_path
from .png import encode_png


def to_uint8(array: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Linearly map [low, high] (default: the array's min and max) to 0..255, clipping outside."""
    a = np.asarray(array, dtype=np.float32)
    low = float(a.min()) if low is None else low
    high = float(a.max()) if high is None else high
    scaled = (a - low) / max(high - low, 1e-12)
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def caption(text: str, width: int, text_scale: int = 2, pad: int = 3) -> np.ndarray:
    """uint8 strip (7 * text_scale + 2 * pad, width): dark ``text`` on white, cut to ``width`` when too wide
    (``..`` marks the cut)."""
    from .font import render_text

    strip = np.full((7 * text_scale + 2 * pad, width), 255, np.uint8)
    mask = render_text(text, text_scale)
    if mask.shape[1] > width - 2:
        keep = max(0, (width - 2) // (6 * text_scale) - 2)
        mask = render_text(text[:keep] + "..", text_scale)[:, : width - 2]
    strip[pad:pad + mask.shape[0], 1:1 + mask.shape[1]][mask] = 0
    return strip


def _caption_scale(titles: Sequence[str], widths: Sequence[int]) -> int:
    """2 when every title fits its panel at twice the font size, else 1 (one size for all captions)."""
    return 2 if all(len(t) * 12 <= w - 2 for t, w in zip(titles, widths)) else 1


def save_panels(path: str | os.PathLike, panels: Sequence[np.ndarray], low: float = 0.0, high: float = 1.0,
                scale: int = 3, gap: int = 4, titles: Sequence[str] | None = None) -> Path:
    """Write 2-D ``panels`` (each (H, W), values in [low, high]) side by side as one PNG, enlarged ``scale``x,
    each under its title when ``titles`` (one per panel) is given.

    Panels are padded to the tallest one; the file is written atomically. Returns the path.
    """
    if not panels:
        raise ValueError("save_panels needs at least one panel")
    if titles is not None and len(titles) != len(panels):
        raise ValueError(f"save_panels got {len(titles)} titles for {len(panels)} panels; give one per panel")
    tiles = [np.kron(to_uint8(p, low, high), np.ones((scale, scale), np.uint8)) for p in panels]
    if titles is not None:
        size = _caption_scale(titles, [tile.shape[1] for tile in tiles])
        tiles = [np.concatenate([caption(t, tile.shape[1], size), tile]) for t, tile in zip(titles, tiles)]
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
