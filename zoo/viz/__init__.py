"""Dependency-free pictures: side-by-side grey-level panels with captions, written as PNG.

Used by ``zoo demo`` and the pretraining scripts (original | damaged | restored). matplotlib is not needed:
:mod:`zoo.viz.png` encodes PNG, :mod:`zoo.viz.font` is a 5 x 7 bitmap font for captions and
:mod:`zoo.viz.panels` lays out the panels. :mod:`zoo.viz.transfer_png` draws a transfer report
(:func:`save_transfer_png`; ``zoo adapt --report-png``). Every public name is importable from ``zoo.viz``.
"""

from __future__ import annotations

from .font import GLYPH_HEIGHT, GLYPH_WIDTH, glyph, render_text
from .panels import caption, save_panels, to_uint8
from .png import encode_png
from .transfer_png import save_transfer_png, transfer_figure

__all__ = ["GLYPH_HEIGHT", "GLYPH_WIDTH", "caption", "encode_png", "glyph", "render_text", "save_panels",
           "save_transfer_png", "to_uint8", "transfer_figure"]
