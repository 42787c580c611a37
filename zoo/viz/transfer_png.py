"""The transfer report as a picture: :func:`save_transfer_png` draws what a weight transfer did to each block.

One row per part of the *target* network in network order (``encoder stem``, ``encoder stage N``, ``decoder
stage N``, UNet++ ``decoder row I``, ``heads``; other networks: one row per top-level module), one cell per layer
group in that row (the tensors up to the key's last index: ``encoder.stages.1.0.convs.0`` holds that
convolution's weight, bias and norm; a residual block's shortcut belongs to its block; a decoder stage's
transposed convolution comes first). A cell is split left to right by the parameters of each action in it, so a
block whose weight was inflated but whose norm was copied shows both. Right of each row: the share of that row's
parameters initialised from the checkpoint. Below: a legend with every action present, its share of the target's
parameters and its number of tensors; above: ``source -> target`` and the headline share.

Colours are per *action*, the report's own names (see :mod:`zoo.adapt.report`): ``copy``, ``realign``,
``permute``, ``channels`` (input channels inflated or reduced), ``kernel`` (kernel axis collapsed, inflated,
cropped or padded), ``transpconv``, ``axes``, ``slice``, ``dense``, ``dtype``, ``skip`` and ``new``. A tensor
whose action joins several (``permute+kernel``) takes the colour of the most telling one (:func:`action_category`:
``slice`` (part of the pretrained channels only) before ``kernel``, ``transpconv``, ``axes``, ``channels``,
``dense``, ``realign``, ``permute``, ``dtype``, ``copy``).

Only numpy: the PNG comes from :mod:`zoo.viz.png`, the text from the bitmap font of :mod:`zoo.viz.font`.
Use it on ``model.transfer_report`` (``zoo.load(name, init=...)``) or on the report of
:func:`zoo.nnunet.export.adapt_to_plan`; ``zoo adapt ... --report-png transfer.png`` writes it from the CLI.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..hub.integrity import atomic_path
from .font import GLYPH_HEIGHT, GLYPH_WIDTH, render_text
from .png import encode_png

RGB = tuple[int, int, int]

#: legend order; also the colour of each action (a tensor's action may join several with ``+``)
ACTION_COLOURS: dict[str, RGB] = {
    "copy": (44, 160, 44),
    "realign": (31, 119, 180),
    "permute": (120, 190, 235),
    "channels": (148, 103, 189),
    "kernel": (255, 127, 14),
    "transpconv": (140, 86, 75),
    "axes": (227, 119, 194),
    "slice": (205, 190, 30),
    "dense": (23, 190, 207),
    "dtype": (120, 140, 90),
    "skip": (214, 39, 40),
    "new": (205, 205, 205),
}

#: a few words per action for the legend
ACTION_GLOSS: dict[str, str] = {
    "copy": "as is",
    "realign": "other position",
    "permute": "axes reordered",
    "channels": "in-ch. inflated/reduced",
    "kernel": "kernel infl./collapsed",
    "transpconv": "up-kernel refitted",
    "axes": "axis added/dropped",
    "slice": "leading channels",
    "dense": "dense-skip inputs",
    "dtype": "dtype cast",
    "skip": "not used",
    "new": "fresh init",
}

#: which action names a compound action (``permute+kernel``), most telling first
_PRIORITY = ("slice", "kernel", "transpconv", "axes", "channels", "dense", "realign", "permute", "dtype", "copy")

# layout, in pixels
SCALE = 2                                   # font scale of every text
TEXT_H = GLYPH_HEIGHT * SCALE               # 14
CHAR_W = (GLYPH_WIDTH + 1) * SCALE          # 12: advance per character
LINE = TEXT_H + 8                           # pitch of text lines
MARGIN = 12
CELL_W, CELL_H, CELL_GAP = 30, 22, 4
ROW_PITCH = CELL_H + 6
SECTION_GAP = 8                             # extra space where encoder, decoder and heads meet
MAX_WIDTH = 1600
BACKGROUND: RGB = (255, 255, 255)
INK: RGB = (0, 0, 0)
OUTLINE: RGB = (70, 70, 70)

_GRID_HEADER = "layer groups"
_INDEX = re.compile(r"^(\d+|x\d+_\d+)$")
_NODE = re.compile(r"^x(\d+)_(\d+)$")


def action_category(action: str) -> str:
    """The action whose colour a tensor gets: ``'permute+kernel'`` -> ``'kernel'``; ``copy``, ``skip`` and
    ``new`` as they are; an action this module does not know, as it is."""
    parts = action.split("+")
    for name in _PRIORITY:
        if name in parts:
            return name
    return parts[0]


def colour_of(category: str) -> RGB:
    """The colour of ``category`` (:data:`ACTION_COLOURS`; a fixed one derived from the name otherwise)."""
    if category in ACTION_COLOURS:
        return ACTION_COLOURS[category]
    h = zlib.crc32(category.encode())
    return (60 + h % 160, 60 + (h >> 8) % 160, 60 + (h >> 16) % 160)


def cell_of(key: str) -> str:
    """The layer group of tensor ``key``: the key up to its last index (``encoder.stages.1.0.convs.0.conv.weight``
    -> ``encoder.stages.1.0.convs.0``; a shortcut ``...blocks.B.skip.N...`` -> its block ``...blocks.B``); a key
    without an index, its top-level module (``conv1.weight`` -> ``conv1``)."""
    parts = key.split(".")[:-1]
    idx = [i for i, p in enumerate(parts) if _INDEX.match(p)]
    if not idx:
        return parts[0] if parts else key
    cut = idx[-1]
    if len(idx) >= 2 and parts[cut - 1] == "skip":
        cut = idx[-2]
    return ".".join(parts[: cut + 1])


def row_of(key: str, head: bool) -> str:
    """The figure row of tensor ``key``: ``heads``, ``encoder stem``, ``encoder stage N``, ``decoder stage N``
    (nnU-Net's ``decoder.stages.N`` and the ``decoder.transpconvs.N`` feeding it), ``decoder row I`` (UNet++ nodes
    ``X(I, *)``), else the key's top-level module."""
    if head:
        return "heads"
    parts = key.split(".")
    if parts[0] == "encoder" and len(parts) > 2 and parts[1] == "stages" and parts[2].isdigit():
        return f"encoder stage {int(parts[2])}"
    if parts[:2] == ["encoder", "stem"]:
        return "encoder stem"
    if parts[0] == "decoder" and len(parts) > 2:
        if parts[1] in ("stages", "transpconvs") and parts[2].isdigit():
            return f"decoder stage {int(parts[2])}"
        node = _NODE.match(parts[2])
        if node:
            return f"decoder row {int(node.group(1))}"
    return parts[0]


def _cell_order(cell: str, first_seen: int) -> tuple[int, int, int]:
    """UNet++ nodes left to right, a transposed convolution before the convolutions it feeds, else as met."""
    node = next((_NODE.match(p) for p in cell.split(".") if _NODE.match(p)), None)
    return (int(node.group(2)) if node else 0, 0 if ".transpconvs." in f".{cell}." else 1, first_seen)


@dataclass(frozen=True)
class Cell:
    """One layer group drawn: its ``row`` and ``name`` (key prefix), pixel ``box`` ``(y0, x0, y1, x1)`` (end
    exclusive) and the parameters per action in it (legend order)."""

    row: str
    name: str
    box: tuple[int, int, int, int]
    params: dict[str, int]
    tensors: int

    @property
    def centre(self) -> tuple[int, int]:
        """``(y, x)`` of the box's centre."""
        y0, x0, y1, x1 = self.box
        return (y0 + y1) // 2, (x0 + x1) // 2


@dataclass(frozen=True)
class LegendEntry:
    """One action of the legend: its colour, swatch ``box`` ``(y0, x0, y1, x1)``, tensors and parameters."""

    action: str
    colour: RGB
    box: tuple[int, int, int, int]
    tensors: int
    params: int
    share_params: float
    share_tensors: float


@dataclass
class TransferFigure:
    """The picture (``image``: uint8 (H, W, 3) RGB) and where everything is on it."""

    image: np.ndarray
    title: str
    rows: list[str]
    cells: list[Cell] = field(default_factory=list)
    legend: list[LegendEntry] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` as PIL reports it."""
        return self.image.shape[1], self.image.shape[0]

    def cell(self, name: str) -> Cell:
        """The cell of layer group ``name`` (see :func:`cell_of`)."""
        for c in self.cells:
            if c.name == name:
                return c
        raise KeyError(f"no cell {name!r}; cells: {', '.join(c.name for c in self.cells[:12])}, ...")

    def legend_entry(self, action: str) -> LegendEntry:
        for e in self.legend:
            if e.action == action:
                return e
        raise KeyError(f"no legend entry {action!r}; the legend has {', '.join(e.action for e in self.legend)}")

    def to_png(self) -> bytes:
        return encode_png(self.image)


def _text(canvas: np.ndarray, text: str, y: int, x: int, colour: RGB = INK, max_width: int | None = None) -> int:
    """Draw ``text`` at ``(y, x)`` (top left), cut with ``..`` to ``max_width`` pixels; return its width."""
    limit = canvas.shape[1] - x if max_width is None else min(max_width, canvas.shape[1] - x)
    if len(text) * CHAR_W > limit:
        text = text[: max(0, limit // CHAR_W - 2)] + ".."
    mask = render_text(text, SCALE)[:, :limit]
    canvas[y:y + mask.shape[0], x:x + mask.shape[1]][mask] = colour
    return mask.shape[1]


def _percent(share: float) -> str:
    if 0 < share < 0.005:
        return "<1%"
    if 0.995 <= share < 1:
        return ">99%"
    return f"{share:.0%}"


def _groups(report: Any) -> list[tuple[str, list[tuple[str, dict[str, int], int]]]]:
    """Rows in network order (heads last), each with its cells ``(name, params per action, tensors)``."""
    rows: dict[str, dict[str, list]] = {}
    seen = 0
    for r in report.rows:
        row = rows.setdefault(row_of(r.target_key, r.head), {})
        name = cell_of(r.target_key)
        if name not in row:
            row[name] = [{}, 0, seen]
            seen += 1
        cat = action_category(r.action)
        row[name][0][cat] = row[name][0].get(cat, 0) + int(r.params)
        row[name][1] += 1
    order = sorted(rows, key=lambda k: k == "heads")  # stable: network order, heads last
    out = []
    for key in order:
        cells = sorted(rows[key].items(), key=lambda kv: _cell_order(kv[0], kv[1][2]))
        out.append((key, [(n, v[0], v[1]) for n, v in cells]))
    return out


def _section(row: str) -> str:
    return row.split(" ")[0]


def _legend_rows(report: Any) -> list[tuple[str, int, int]]:
    """``(action, tensors, params)`` per action present, in :data:`ACTION_COLOURS` order (unknown ones last)."""
    tensors: dict[str, int] = {}
    params: dict[str, int] = {}
    for r in report.rows:
        cat = action_category(r.action)
        tensors[cat] = tensors.get(cat, 0) + 1
        params[cat] = params.get(cat, 0) + int(r.params)
    known = list(ACTION_COLOURS)
    order = sorted(tensors, key=lambda c: (known.index(c) if c in known else len(known), c))
    return [(c, tensors[c], params[c]) for c in order]


def _legend_text(action: str, tensors: int, params: int, total_t: int, total_p: int) -> str:
    share_p = params / total_p if total_p else 0.0
    share_t = tensors / total_t if total_t else 0.0
    shown = "<0.01%" if 0 < share_p < 0.0001 else f"{share_p:.2%}"
    return (f"{action:<11}{ACTION_GLOSS.get(action, ''):<24}{shown:>7} of params "
            f"{tensors:>4} {'tensor ' if tensors == 1 else 'tensors'} ({_percent(share_t)})")


def transfer_figure(report: Any) -> TransferFigure:
    """Draw ``report`` (a :class:`zoo.adapt.report.TransferReport`) as a :class:`TransferFigure`.

    Width: the widest of the title lines, the grid (label column, cells, share column) and the legend, at most
    :data:`MAX_WIDTH` (longer titles are cut with ``..``). Height: :func:`figure_height`.
    """
    if not report.rows:
        raise ValueError(f"transfer report {report.source} -> {report.target} has no rows: nothing to draw")
    groups = _groups(report)
    legend = _legend_rows(report)
    total_t, total_p = len(report.rows), sum(int(r.params) for r in report.rows)
    title = f"{report.source} -> {report.target}"
    headline = (f"initialised from the checkpoint: {report.share_initialised:.2%} of params "
                f"({report.initialised_tensors} of {len(report.rows)} tensors)")
    footer = f"checkpoint used: {report.share_used:.2%} of its params"
    label_w = max(len(name) for name, _ in groups) * CHAR_W + CHAR_W
    max_cells = max(len(cells) for _, cells in groups)
    cell_w = CELL_W if max_cells <= 30 else max(8, (30 * (CELL_W + CELL_GAP)) // max_cells - CELL_GAP)
    grid_w = max(max_cells * (cell_w + CELL_GAP), (len(_GRID_HEADER) + 1) * CHAR_W)
    share_w = 6 * CHAR_W
    legend_texts = [_legend_text(a, t, p, total_t, total_p) for a, t, p in legend]
    legend_w = CELL_W + CHAR_W + max(len(t) for t in legend_texts) * CHAR_W
    content_w = max(label_w + grid_w + share_w, legend_w, len(title) * CHAR_W, len(headline) * CHAR_W,
                    len(footer) * CHAR_W)
    width = min(MAX_WIDTH, content_w + 2 * MARGIN)
    changes = sum(1 for (a, _), (b, _) in zip(groups, groups[1:]) if _section(a) != _section(b))
    height = figure_height(len(groups), changes, len(legend))
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = BACKGROUND

    y = MARGIN
    _text(canvas, title, y, MARGIN)
    y += LINE
    _text(canvas, headline, y, MARGIN)
    y += LINE
    grid_x = MARGIN + label_w
    share_x = grid_x + grid_w
    _text(canvas, _GRID_HEADER, y, grid_x, OUTLINE, max_width=grid_w)
    _text(canvas, "init.", y, share_x, OUTLINE)
    y += LINE

    cells: list[Cell] = []
    previous = None
    for name, row_cells in groups:
        if previous is not None and _section(previous) != _section(name):
            y += SECTION_GAP
        previous = name
        _text(canvas, name, y + (CELL_H - TEXT_H) // 2, MARGIN, max_width=label_w - CHAR_W)
        row_params = sum(sum(p.values()) for _, p, _ in row_cells)
        row_init = sum(v for _, p, _ in row_cells for k, v in p.items() if k not in ("skip", "new"))
        _text(canvas, _percent(row_init / row_params if row_params else 0.0), y + (CELL_H - TEXT_H) // 2,
              share_x + CHAR_W // 2)
        x = grid_x
        for cell_name, params, tensors in row_cells:
            box = (y, x, y + CELL_H, x + cell_w)
            _draw_cell(canvas, box, params)
            ordered = {a: params[a] for a, _, _ in legend if a in params}
            cells.append(Cell(name, cell_name, box, ordered, tensors))
            x += cell_w + CELL_GAP
        y += ROW_PITCH
    y += LINE // 2  # space between the grid and the legend
    entries: list[LegendEntry] = []
    for (action, tensors, params), text in zip(legend, legend_texts):
        colour = colour_of(action)
        box = (y + 1, MARGIN, y + 1 + TEXT_H, MARGIN + CELL_W)
        _draw_cell(canvas, box, {action: 1})
        _text(canvas, text, y + 1, MARGIN + CELL_W + CHAR_W)
        entries.append(LegendEntry(action, colour, box, tensors, params, params / total_p if total_p else 0.0,
                                   tensors / total_t))
        y += LINE
    _text(canvas, footer, y + 1, MARGIN)
    return TransferFigure(canvas, title, [name for name, _ in groups], cells, entries)


def figure_height(rows: int, section_changes: int, legend_entries: int) -> int:
    """Pixel height of a figure with ``rows`` grid rows, ``section_changes`` places where the section (encoder,
    decoder, heads) changes and ``legend_entries`` actions: margins, title, headline and column header, the rows,
    half a line, the legend and the footer."""
    return (2 * MARGIN + 3 * LINE + rows * ROW_PITCH + SECTION_GAP * section_changes + LINE // 2
            + LINE * (legend_entries + 1))


def _draw_cell(canvas: np.ndarray, box: tuple[int, int, int, int], params: dict[str, int]) -> None:
    """A 1-pixel outline, inside it one band per action (legend order) as wide as its share of the parameters."""
    y0, x0, y1, x1 = box
    canvas[y0:y1, x0:x1] = OUTLINE
    inner_x0, inner_x1 = x0 + 1, x1 - 1
    known = list(ACTION_COLOURS)
    order = sorted(params, key=lambda c: (known.index(c) if c in known else len(known), c))
    total = sum(params.values())
    if total <= 0:  # parameter-free tensors only: colour by the first action
        canvas[y0 + 1:y1 - 1, inner_x0:inner_x1] = colour_of(order[0])
        return
    done, start = 0, inner_x0
    for action in order:
        done += params[action]
        end = inner_x0 + round((inner_x1 - inner_x0) * done / total)
        canvas[y0 + 1:y1 - 1, start:end] = colour_of(action)
        start = end


def save_transfer_png(report: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``report`` as a PNG at ``path`` (atomically; parent folders are created). An existing file is
    replaced only with ``overwrite=True`` (else :class:`FileExistsError`). Returns the path."""
    out = Path(path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (CLI: --force) to replace it")
    data = transfer_figure(report).to_png()
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return out


__all__: Sequence[str] = ["ACTION_COLOURS", "Cell", "LegendEntry", "TransferFigure", "action_category", "cell_of",
                          "colour_of", "figure_height", "row_of", "save_transfer_png", "transfer_figure"]
