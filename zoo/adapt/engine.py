"""The transfer engine: fit a U-Net checkpoint (nnU-Net / dynamic-network-architectures layout) to another
U-Net of that family, tensor by tensor, and say what was done (:class:`~zoo.adapt.report.TransferReport`).

Tensors are matched by *role*, not by name:

* encoder convolutions by stage counted **from the input side** and by position along the stage's main path
  (PlainConvUNet ``stages.S.0.convs.C``; ResidualEncoderUNet ``stem`` then ``blocks.B.conv1/conv2/...``), so a
  shallower or deeper target shares its first stages with the checkpoint, and a PlainConvUNet checkpoint
  fills a ResidualEncoderUNet's stem and main path (``realign``);
* decoder stages, transposed convolutions and segmentation heads **by resolution from the output side**
  (full resolution first), so decoders of different depth share their high-resolution stages;
* residual shortcuts by (stage, block);
* UNet++ (:class:`zoo.archs.nested_unet.NestedUNet`) nodes ``X(i, j)`` (convolutions, transposed convolution,
  head) by ``(i, j)`` between two UNet++; between a U-Net and a UNet++ the U-Net's decoder stage, transposed
  convolution and head of resolution ``i`` match the diagonal node ``X(i, L - i)`` (the U-Net path of the nested
  decoder); the other nodes have no counterpart in a U-Net.

Each matched pair goes through these steps; any that applies is recorded in the row's ``action``:

1. widths (output channels, and input channels other than the network input) must agree, otherwise the
   tensor is skipped (``widths='slice'`` copies the leading channels instead);
2. ``axes``/``permute``: kernel axes are put in the target's axis order (``source_axis_order`` /
   ``target_axis_order``, e.g. Models Genesis cubes are ``xyz``, nnU-Net arrays ``zyx``); an axis the target
   lacks (3D checkpoint, 2D target) is summed out, a new one starts at size 1;
3. ``kernel``: per axis, 3 -> 1 by ``kernel_collapse`` (``sum``, default: exact for inputs constant along
   that axis away from the zero-padded border; ``mean``; ``center``), 1 -> 3 by ``kernel_inflate``
   (``center``, default: exact slice by slice; ``i3d``: repeat and divide, exact for inputs constant along the
   axis); other odd sizes are centre-cropped or zero-padded;
4. ``transpconv``: a transposed convolution (kernel = stride) fitted to another stride per axis: a stride that
   is a multiple repeats the kernel (the target output is the checkpoint's output nearest-upsampled), a
   divisor averages it (the target output is the checkpoint's output average-pooled);
5. ``channels``: the network's input convolution gets ``in_channels`` with
   :func:`zoo.adapt.channels.adapt_input_channels` (``repeat_scale`` default: k identical channels reproduce
   the 1-channel response; ``mean``, ``first``, ``random``; k -> 1 sums);
6. ``dense``: the first convolution of a UNet++ node reads ``[upsampled, X(i,0), ..., X(i,j-1)]``, a U-Net
   decoder stage ``[upsampled, skip]``: the leading input channels are copied and the extra dense-skip inputs
   start at zero (the node then computes exactly what the U-Net's stage computed), or dropped the other way.

Segmentation heads are skipped unless ``heads=True`` (and then transferred only when the class count
agrees). Tensors copied unchanged are not cloned: the result shares memory with the checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..errors import AdaptationError
from ..state_dict import alias_groups, expand_aliases, strip_wrappers
from .channels import CHANNEL_MODES, adapt_input_channels
from .report import TransferReport, TransferRow, UnusedRow

COLLAPSE_MODES = ("sum", "mean", "center")
INFLATE_MODES = ("center", "i3d")
WIDTH_MODES = ("skip", "slice")

# ----------------------------------------------------------------------------------------------- kernels


def collapse_axis(weight: Tensor, axis: int, mode: str = "sum") -> Tensor:
    """Reduce spatial ``axis`` (0-based, after the two channel dims) of a kernel to size 1.

    ``sum``: a kernel-1 conv then gives, on inputs constant along the axis, exactly what the original gives
    (away from the zero-padded border); ``mean``: the same up to a factor 1/k (normalised away by a following
    InstanceNorm); ``center``: keep the central slice (exact for inputs that are zero off the centre slice).
    """
    dim = 2 + axis
    if mode == "sum":
        return weight.sum(dim=dim, keepdim=True)
    if mode == "mean":
        return weight.mean(dim=dim, keepdim=True)
    if mode == "center":
        return weight.narrow(dim, weight.shape[dim] // 2, 1)
    raise AdaptationError(f"unknown kernel_collapse {mode!r}; choose one of {COLLAPSE_MODES}")


def inflate_axis(weight: Tensor, axis: int, size: int, mode: str = "center") -> Tensor:
    """Grow spatial ``axis`` of a kernel from 1 to ``size``.

    ``center``: the original in the centre, zeros elsewhere: the 3D conv equals the 2D conv applied to each
    slice; ``i3d``: repeated and divided by ``size`` (I3D): exact for inputs constant along the axis.
    """
    dim = 2 + axis
    if weight.shape[dim] != 1:
        raise AdaptationError(f"inflate_axis needs size 1 along axis {axis}, got {tuple(weight.shape)}")
    if mode == "center":
        shape = list(weight.shape)
        shape[dim] = size
        out = weight.new_zeros(shape)
        out.narrow(dim, size // 2, 1).copy_(weight)
        return out
    if mode == "i3d":
        reps = [1] * weight.dim()
        reps[dim] = size
        return weight.repeat(*reps) / size
    raise AdaptationError(f"unknown kernel_inflate {mode!r}; choose one of {INFLATE_MODES}")


def _crop_or_pad_axis(weight: Tensor, axis: int, size: int) -> Tensor:
    dim = 2 + axis
    k = weight.shape[dim]
    if size < k:
        return weight.narrow(dim, (k - size) // 2, size)
    shape = list(weight.shape)
    shape[dim] = size
    out = weight.new_zeros(shape)
    out.narrow(dim, (size - k) // 2, k).copy_(weight)
    return out


def adapt_kernel(weight: Tensor, kernel: tuple[int, ...] | list[int], collapse: str = "sum",
                 inflate: str = "center") -> tuple[Tensor, list[str]]:
    """Fit the spatial size of a convolution weight (C_out, C_in, *k) to ``kernel``; returns the weight and
    what was done per axis."""
    ops = []
    for axis, size in enumerate(kernel):
        k = weight.shape[2 + axis]
        if k == size:
            continue
        if size == 1:
            weight = collapse_axis(weight, axis, collapse)
            ops.append(f"axis {axis}: {k}->1 ({collapse})")
        elif k == 1:
            weight = inflate_axis(weight, axis, size, inflate)
            ops.append(f"axis {axis}: 1->{size} ({inflate})")
        else:
            weight = _crop_or_pad_axis(weight, axis, size)
            ops.append(f"axis {axis}: {k}->{size} ({'centre crop' if size < k else 'zero pad'})")
    return weight, ops


def adapt_transposed_kernel(weight: Tensor, stride: tuple[int, ...] | list[int]) -> tuple[Tensor, list[str]]:
    """Fit a transposed-convolution weight (C_in, C_out, *s) whose kernel equals its stride to ``stride``.

    Per axis: a target stride that is a multiple of the checkpoint's repeats each kernel entry (target output =
    checkpoint output nearest-upsampled along that axis); a divisor averages groups of entries (target output =
    checkpoint output average-pooled). Other ratios raise :class:`AdaptationError`.
    """
    ops = []
    for axis, size in enumerate(stride):
        dim = 2 + axis
        k = weight.shape[dim]
        if k == size:
            continue
        if size % k == 0:
            weight = weight.repeat_interleave(size // k, dim=dim)
            ops.append(f"axis {axis}: stride {k}->{size} (repeat: nearest upsampling of the checkpoint's output)")
        elif k % size == 0:
            shape = list(weight.shape)
            shape[dim:dim + 1] = [size, k // size]
            weight = weight.reshape(shape).mean(dim=dim + 1)
            ops.append(f"axis {axis}: stride {k}->{size} (mean: average pooling of the checkpoint's output)")
        else:
            raise AdaptationError(f"cannot fit a transposed convolution of stride {k} to stride {size}")
    return weight, ops


def map_axes(weight: Tensor, source_order: str, target_order: str, *, reduce: str = "sum") -> tuple[Tensor, list[str]]:
    """Reorder the spatial axes of a kernel from ``source_order`` to ``target_order`` (strings of axis letters).

    Letters missing from the target are reduced (``reduce``: ``sum`` for convolutions, ``mean`` for
    transposed convolutions); letters missing from the source are added with size 1.
    """
    if source_order == target_order:
        return weight, []
    if weight.dim() - 2 != len(source_order):
        raise AdaptationError(
            f"source_axis_order {source_order!r} has {len(source_order)} axes but the kernel has shape "
            f"{tuple(weight.shape)}"
        )
    ops = []
    current = list(source_order)
    for letter in [c for c in source_order if c not in target_order]:
        axis = current.index(letter)
        dim = 2 + axis
        weight = weight.sum(dim=dim) if reduce == "sum" else weight.mean(dim=dim)
        current.pop(axis)
        ops.append(f"drop axis {letter} ({reduce})")
    for letter in [c for c in target_order if c not in current]:
        weight = weight.unsqueeze(-1)
        current.append(letter)
        ops.append(f"add axis {letter}")
    perm = [current.index(c) for c in target_order]
    if perm != list(range(len(perm))):
        weight = permute_kernel(weight, perm)
        ops.append(f"permute {''.join(current)}->{target_order}")
    return weight, ops


def permute_kernel(weight: Tensor, perm: list[int]) -> Tensor:
    """``weight.permute(0, 1, *[2 + p for p in perm])`` as a new contiguous tensor, computed as one gather over
    the flattened kernel (several times faster than a strided copy for 3x3x3 kernels)."""
    kernel = weight.shape[2:]
    index = torch.arange(weight[0, 0].numel()).reshape(kernel).permute(*perm).reshape(-1)
    flat = weight.reshape(-1, index.numel())  # 2D: index_select along dim 1 is ~15x faster than on a 3D view
    return flat.index_select(1, index).reshape(*weight.shape[:2], *[kernel[p] for p in perm])


# ----------------------------------------------------------------------------------------------- structure

_PLAIN = re.compile(r"^encoder\.stages\.(\d+)\.(\d+)\.convs\.(\d+)\.(conv|norm)\.(\w+)$")
_STEM = re.compile(r"^encoder\.stem\.convs\.(\d+)\.(conv|norm)\.(\w+)$")
_BLOCK = re.compile(r"^encoder\.stages\.(\d+)\.blocks\.(\d+)\.(conv\d+)\.(conv|norm)\.(\w+)$")
_SKIP = re.compile(r"^encoder\.stages\.(\d+)\.blocks\.(\d+)\.skip\.(\d+)\.(conv|norm)\.(\w+)$")
_DEC = re.compile(r"^decoder\.stages\.(\d+)\.convs\.(\d+)\.(conv|norm)\.(\w+)$")
_TRANSP = re.compile(r"^decoder\.transpconvs\.(\d+)\.(\w+)$")
_SEG = re.compile(r"^decoder\.seg_layers\.(\d+)\.(\w+)$")
_ALIAS = re.compile(r"^(.*)\.all_modules\.(\d+)\.(\w+)$")
_NODE = re.compile(r"^decoder\.nodes\.x(\d+)_(\d+)\.convs\.(\d+)\.(conv|norm)\.(\w+)$")
_NODE_TRANSP = re.compile(r"^decoder\.transpconvs\.x(\d+)_(\d+)\.(\w+)$")
_NODE_SEG = re.compile(r"^decoder\.seg_layers\.x(\d+)_(\d+)\.(\w+)$")
#: slot kinds of UNet++ nodes and the U-Net slot kind each one falls back to on the diagonal
_NODE_KINDS = {"node": "dec", "ntu": "tu", "nseg": "seg"}
_DEC_KINDS = ("dec", "tu", "seg", "node", "ntu", "nseg")
_HEAD_KINDS = ("seg", "nseg")


@dataclass
class _Structure:
    """Role of every tensor of a U-Net state dict: ``(slot, leaf)`` with slots ``('enc', stage, position)``,
    ``('skip', stage, block)``, ``('dec', resolution, conv)``, ``('tu', resolution)``, ``('seg', resolution)``;
    UNet++ nodes ``('node', i, j, conv)``, ``('ntu', i, j)``, ``('nseg', i, j)``. ``fallback`` gives the
    U-Net role of each diagonal node ``X(i, L - i)`` (also listed in ``by_role`` when the structure has no
    U-Net decoder of its own), so U-Net and UNet++ decoders meet on the U-Net path."""

    roles: dict[str, tuple] = field(default_factory=dict)
    by_role: dict[tuple, str] = field(default_factory=dict)
    family: str | None = None
    n_stages: int = 0
    n_dec: int = 0
    stage_len: dict[int, int] = field(default_factory=dict)
    fallback: dict[str, tuple] = field(default_factory=dict)
    nested_depth: int = 0

    @classmethod
    def parse(cls, keys: list[str]) -> "_Structure":
        self = cls()
        units: dict[int, set] = {}
        raw: dict[str, tuple] = {}
        dec_max = -1
        families = set()
        for key in keys:
            if m := _PLAIN.match(key):
                s = int(m[1])
                unit = (int(m[2]), int(m[3]))
                units.setdefault(s, set()).add(unit)
                raw[key] = ("enc", s, unit, f"{m[4]}.{m[5]}")
                families.add("plain")
            elif m := _STEM.match(key):
                unit = (-1, int(m[1]), "")
                units.setdefault(0, set()).add(unit)
                raw[key] = ("enc", 0, unit, f"{m[2]}.{m[3]}")
                families.add("residual")
            elif m := _BLOCK.match(key):
                s = int(m[1])
                unit = (int(m[2]), int(m[3][4:]), m[3])
                units.setdefault(s, set()).add(unit)
                raw[key] = ("enc", s, unit, f"{m[4]}.{m[5]}")
                families.add("residual")
            elif m := _SKIP.match(key):
                raw[key] = ("skip", int(m[1]), int(m[2]), f"{m[4]}.{m[5]}")
            elif m := _DEC.match(key):
                dec_max = max(dec_max, int(m[1]))
                raw[key] = ("dec", int(m[1]), int(m[2]), f"{m[3]}.{m[4]}")
            elif m := _TRANSP.match(key):
                dec_max = max(dec_max, int(m[1]))
                raw[key] = ("tu", int(m[1]), None, m[2])
            elif m := _SEG.match(key):
                dec_max = max(dec_max, int(m[1]))
                raw[key] = ("seg", int(m[1]), None, m[2])
            elif m := _NODE.match(key):
                raw[key] = ("node", (int(m[1]), int(m[2])), int(m[3]), f"{m[4]}.{m[5]}")
            elif m := _NODE_TRANSP.match(key):
                raw[key] = ("ntu", (int(m[1]), int(m[2])), None, m[3])
            elif m := _NODE_SEG.match(key):
                raw[key] = ("nseg", (int(m[1]), int(m[2])), None, m[3])
        self.family = families.pop() if len(families) == 1 else ("mixed" if families else None)
        positions = {s: {u: i for i, u in enumerate(sorted(us))} for s, us in units.items()}
        self.stage_len = {s: len(us) for s, us in units.items()}
        self.n_stages = max(units) + 1 if units else 0
        self.n_dec = dec_max + 1
        nodes = [a for kind, a, _, _ in raw.values() if kind in _NODE_KINDS]
        self.nested_depth = max((i + j for i, j in nodes), default=0)
        if self.nested_depth and self.n_dec == 0:
            self.n_dec = self.nested_depth
        for key, (kind, a, b, leaf) in raw.items():
            if kind == "enc":
                slot = ("enc", a, positions[a][b])
            elif kind == "skip":
                slot = ("skip", a, b)
            elif kind == "dec":
                slot = ("dec", self.n_dec - 1 - a, b)
            elif kind in _NODE_KINDS:
                i, j = a
                slot = (kind, i, j) if b is None else (kind, i, j, b)
                if i + j == self.nested_depth:
                    base = _NODE_KINDS[kind]
                    self.fallback[key] = ((base, i) if b is None else (base, i, b), leaf)
            else:
                slot = (kind, self.n_dec - 1 - a)
            self.roles[key] = (slot, leaf)
            self.by_role[(slot, leaf)] = key
        for key, role in self.fallback.items():
            self.by_role.setdefault(role, key)
        return self


def _canonical_source(state_dict: Mapping[str, Tensor]) -> "OrderedDict[str, Tensor]":
    """One name per tensor: drop ``decoder.encoder.*`` and ``all_modules.N`` aliases of present keys."""
    if "network_weights" in state_dict and isinstance(state_dict["network_weights"], Mapping):
        state_dict = state_dict["network_weights"]
    sd = strip_wrappers(state_dict)
    out: "OrderedDict[str, Tensor]" = OrderedDict()
    for key, value in sd.items():
        if not isinstance(value, Tensor):
            continue
        if key.startswith("decoder.encoder.") and key[len("decoder."):] in sd:
            continue
        if m := _ALIAS.match(key):
            twins = [f"{m[1]}.{part}.{m[3]}" for part in ("conv", "norm")]
            if any(t in sd and tuple(sd[t].shape) == tuple(value.shape) for t in twins):
                continue
            key = f"{m[1]}.{'conv' if m[2] == '0' else 'norm'}.{m[3]}"
            if key in out:
                continue
        out[key] = value
    return out


def _model_canonical(model: nn.Module) -> "OrderedDict[str, Tensor]":
    sd = model.state_dict(keep_vars=True)
    return OrderedDict((g[0], sd[g[0]]) for g in alias_groups(model) if g[0] in sd)


# ----------------------------------------------------------------------------------------------- engine


@dataclass
class _Options:
    source_axis_order: str | None
    target_axis_order: str | None
    channel_mode: str
    kernel_collapse: str
    kernel_inflate: str
    widths: str
    heads: bool
    cross_architecture: bool


def _node(slot: tuple) -> str:
    return f"X({slot[1]},{slot[2]})"


def _describe_missing(slot: tuple, leaf: str, src: _Structure, present: bool) -> str:
    kind = slot[0]
    if present:
        return f"the checkpoint has no {leaf} at this position"
    if kind in _NODE_KINDS:
        if not src.nested_depth:
            return (f"no counterpart: UNet++ node {_node(slot)} is off the U-Net path; the checkpoint is a U-Net "
                    "(its decoder matches the diagonal nodes X(i, L-i) only)")
        if kind == "node" and any(r[0][:3] == slot[:3] for r in src.by_role):
            return f"no counterpart: the checkpoint's node {_node(slot)} has fewer convolutions"
        return f"no counterpart: the checkpoint's UNet++ (depth {src.nested_depth}) has no node {_node(slot)}"
    if kind == "enc":
        if slot[1] >= src.n_stages:
            return f"no counterpart: the checkpoint's encoder has {src.n_stages} stages"
        return f"no counterpart: the checkpoint's stage {slot[1]} has {src.stage_len.get(slot[1], 0)} convolutions"
    if kind == "skip":
        return "no counterpart: the checkpoint has no residual shortcut here"
    if kind in ("dec", "tu", "seg"):
        if slot[1] >= src.n_dec:
            return f"no counterpart: the checkpoint's decoder has {src.n_dec} resolutions"
        return "no counterpart: the checkpoint's decoder stage has fewer convolutions"
    return "no counterpart in the checkpoint"


def _unused_reason(slot: tuple, tgt: _Structure) -> str:
    kind = slot[0]
    if kind in _NODE_KINDS:
        if not tgt.nested_depth:
            return (f"UNet++ node {_node(slot)} is off the U-Net path: the target U-Net has no counterpart "
                    "(its decoder takes the diagonal nodes X(i, L-i))")
        return f"the target's UNet++ (depth {tgt.nested_depth}) has no node {_node(slot)}"
    if kind == "enc":
        if slot[1] >= tgt.n_stages:
            return f"the target's encoder has {tgt.n_stages} stages"
        return f"the target's stage {slot[1]} has {tgt.stage_len.get(slot[1], 0)} convolutions"
    if kind in ("dec", "tu", "seg"):
        if slot[1] >= tgt.n_dec:
            return f"the target's decoder has {tgt.n_dec} resolutions"
        return "the target's decoder stage has fewer convolutions"
    if kind == "skip":
        return "the target has no residual shortcut here"
    return "no counterpart in the target"


def _slice_into(base: Tensor, src: Tensor, dims: tuple[int, ...], halves_dim: int | None) -> Tensor:
    """Copy the leading block of ``src`` into a clone of ``base`` along ``dims`` (channel dims); along
    ``halves_dim`` the channels are two concatenated halves ([upsampled, skip]) sliced separately."""
    out = base.detach().clone()
    src = src.to(out.dtype)
    pieces = [(slice(None), slice(None))]
    if halves_dim is not None:
        hs, ht = src.shape[halves_dim] // 2, out.shape[halves_dim] // 2
        n = min(hs, ht)
        pieces = [(slice(0, n), slice(0, n)), (slice(hs, hs + n), slice(ht, ht + n))]
    for src_sl, out_sl in pieces:
        s_idx: list[Any] = [slice(None)] * src.dim()
        o_idx: list[Any] = [slice(None)] * out.dim()
        for d in dims:
            if d == halves_dim:
                s_idx[d], o_idx[d] = src_sl, out_sl
            else:
                n = min(src.shape[d], out.shape[d])
                s_idx[d], o_idx[d] = slice(0, n), slice(0, n)
        for d in range(2, src.dim()):
            if src.shape[d] != out.shape[d]:
                raise AdaptationError("slice: spatial sizes must agree")
        out[tuple(o_idx)] = src[tuple(s_idx)]
    return out


def _fmt(sizes: Any) -> str:
    return "[" + ",".join(str(int(s)) for s in sizes) + "]"


def _transfer(
    value: Tensor,
    target: Tensor,
    slot: tuple,
    leaf: str,
    is_input: bool,
    opt: _Options,
    dense: bool = False,
) -> tuple[Tensor | None, list[str], str, str]:
    """Fit one checkpoint tensor to one target tensor: (tensor or None, op kinds, detail, skip reason).

    ``dense``: the pair is the first convolution of a decoder stage / UNet++ node on either side, whose input
    is a concatenation of equally wide parts (``[upsampled, skip, dense skips...]``)."""
    kinds: list[str] = []
    details: list[str] = []
    tshape = tuple(target.shape)
    w = value
    is_transp = slot[0] in ("tu", "ntu") and leaf == "weight"
    is_kernel = w.dim() >= 3 and (leaf.endswith("weight")) and slot[0] in ("enc", "skip") + _DEC_KINDS
    sliced = False
    dense = (dense and is_kernel and not is_transp and w.dim() == len(tshape) and w.shape[1] != tshape[1]
             and w.shape[0] == tshape[0] and w.shape[1] % w.shape[0] == 0 and tshape[1] % tshape[0] == 0)
    if is_kernel:
        out_d, in_d = (1, 0) if is_transp else (0, 1)
        if w.shape[out_d] != tshape[out_d] or (w.shape[in_d] != tshape[in_d] and not (is_input and not is_transp)
                                               and not dense):
            if opt.widths != "slice":
                return None, [], "", (f"width mismatch: checkpoint {tuple(w.shape[:2])} vs target {tshape[:2]} "
                                      "channels (widths='slice' copies the leading channels)")
            sliced = True
        src_order = opt.source_axis_order
        tgt_order = opt.target_axis_order
        if src_order and tgt_order and w.dim() - 2 == len(src_order):
            reduce = "mean" if is_transp or opt.kernel_collapse == "mean" else "sum"
            w, ops = map_axes(w, src_order, tgt_order, reduce=reduce)
            for op in ops:
                kinds.append("permute" if op.startswith("permute") else "axes")
                details.append(op)
        if w.dim() != len(tshape):
            return None, [], "", (f"dimensionality differs: checkpoint {tuple(value.shape)} vs target {tshape} "
                                  "(give source_axis_order / target_axis_order to drop or add axes)")
        spatial = tshape[2:]
        if tuple(w.shape[2:]) != spatial:
            before = list(w.shape[2:])
            try:
                if is_transp:
                    w, ops = adapt_transposed_kernel(w, spatial)
                    kinds.append("transpconv")
                    details.append(f"stride {_fmt(before)}->{_fmt(spatial)}: " + "; ".join(ops))
                else:
                    w, ops = adapt_kernel(w, spatial, opt.kernel_collapse, opt.kernel_inflate)
                    kinds.append("kernel")
                    details.append(f"kernel {_fmt(before)}->{_fmt(spatial)}: " + "; ".join(ops))
            except AdaptationError as err:
                return None, [], "", str(err)
        if dense:
            parts_src, parts_tgt = w.shape[1] // w.shape[0], tshape[1] // tshape[0]
            n = min(w.shape[1], tshape[1])
            out = w.new_zeros((w.shape[0], tshape[1], *w.shape[2:]))
            out[:, :n] = w[:, :n]
            w = out
            kinds.append("dense")
            if parts_tgt > parts_src:
                details.append(f"input channels {parts_src}x{value.shape[0]} -> {parts_tgt}x{value.shape[0]}: "
                               f"[upsampled, skip{', dense skips' if parts_src > 2 else ''}] copied, the "
                               f"{parts_tgt - parts_src} added dense-skip inputs start at zero")
            else:
                details.append(f"input channels {parts_src}x{value.shape[0]} -> {parts_tgt}x{value.shape[0]}: "
                               f"leading {parts_tgt} parts copied, {parts_src - parts_tgt} dense-skip inputs "
                               "dropped")
        elif is_input and not is_transp and w.shape[1] != tshape[1] and w.shape[0] == tshape[0]:
            before = w.shape[1]
            w = adapt_input_channels(w, tshape[1], opt.channel_mode)
            kinds.append("channels")
            details.append(f"input channels {before}->{tshape[1]} ({opt.channel_mode})")
        if sliced:
            if target.is_meta:
                raise AdaptationError("widths='slice' needs a target with real (not meta) tensors")
            halves = 1 if (slot[0] == "dec" and slot[2] == 0 and leaf == "conv.weight") else None
            w = _slice_into(target, w, (0, 1), halves)
            kinds.append("slice")
            details.append(f"widths {tuple(value.shape[:2])}->{tshape[:2]}: leading channels copied"
                           + (" per concatenated half" if halves is not None else ""))
    elif tuple(w.shape) != tshape:
        if opt.widths != "slice" or w.dim() != len(tshape):
            return None, [], "", (f"width mismatch: checkpoint {tuple(w.shape)} vs target {tshape} "
                                  "(widths='slice' copies the leading channels)")
        if target.is_meta:
            raise AdaptationError("widths='slice' needs a target with real (not meta) tensors")
        w = _slice_into(target, w, tuple(range(w.dim())), None)
        kinds.append("slice")
        details.append(f"widths {tuple(value.shape)}->{tshape}: leading entries copied")
    if tuple(w.shape) != tshape:  # pragma: no cover - guarded above
        return None, [], "", f"shape {tuple(w.shape)} cannot be fitted to {tshape}"
    if w.dtype != target.dtype:
        w = w.to(target.dtype)
        kinds.append("dtype")
        details.append(f"dtype {value.dtype}->{target.dtype}")
    if w is not value and not w.is_contiguous():
        w = w.contiguous()
    return w, kinds, "; ".join(details), ""


def adapt_state_dict(
    source: Mapping[str, Tensor] | nn.Module,
    target: nn.Module,
    *,
    source_axis_order: str | None = None,
    target_axis_order: str | None = None,
    channel_mode: str = "repeat_scale",
    kernel_collapse: str = "sum",
    kernel_inflate: str = "center",
    widths: str = "skip",
    heads: bool = False,
    cross_architecture: bool = True,
    strict: bool = False,
    min_share: float | None = None,
    source_name: str = "checkpoint",
    target_name: str = "target",
) -> tuple["OrderedDict[str, Tensor]", TransferReport]:
    """Fit ``source`` (a state dict or a module of the nnU-Net U-Net family) to the network ``target``.

    ``target`` may live on the meta device (only names and shapes are read) unless ``widths='slice'``.
    Returns the tensors that were initialised from the checkpoint under ``target``'s canonical names (alias
    names not included; unchanged tensors are the checkpoint's own, not copies) and the
    :class:`TransferReport`. ``strict`` / ``min_share`` are checked with :meth:`TransferReport.check` before
    returning. ``source_axis_order`` / ``target_axis_order`` name the kernel axes (``'xyz'``, ``'zyx'``);
    leave them ``None`` when both use the same order.
    """
    if channel_mode not in CHANNEL_MODES:
        raise AdaptationError(f"unknown channel_mode {channel_mode!r}; choose one of {CHANNEL_MODES}")
    if kernel_collapse not in COLLAPSE_MODES:
        raise AdaptationError(f"unknown kernel_collapse {kernel_collapse!r}; choose one of {COLLAPSE_MODES}")
    if kernel_inflate not in INFLATE_MODES:
        raise AdaptationError(f"unknown kernel_inflate {kernel_inflate!r}; choose one of {INFLATE_MODES}")
    if widths not in WIDTH_MODES:
        raise AdaptationError(f"unknown widths mode {widths!r}; choose one of {WIDTH_MODES}")
    for name, order in (("source_axis_order", source_axis_order), ("target_axis_order", target_axis_order)):
        if order is not None and (not isinstance(order, str) or len(set(order)) != len(order) or not order):
            raise AdaptationError(f"{name} must be a string of distinct axis letters such as 'zyx', got {order!r}")
    opt = _Options(source_axis_order, target_axis_order, channel_mode, kernel_collapse, kernel_inflate, widths,
                   heads, cross_architecture)

    src_sd = _model_canonical(source) if isinstance(source, nn.Module) else _canonical_source(source)
    tgt_sd = _model_canonical(target)
    src = _Structure.parse(list(src_sd))
    tgt = _Structure.parse(list(tgt_sd))
    same_family = src.family == tgt.family
    report = TransferReport(
        source=source_name, target=target_name,
        source_params=sum(v.numel() for v in src_sd.values()),
        options={"source_axis_order": source_axis_order, "target_axis_order": target_axis_order,
                 "channel_mode": channel_mode, "kernel_collapse": kernel_collapse, "kernel_inflate": kernel_inflate,
                 "widths": widths, "heads": heads, "cross_architecture": cross_architecture,
                 "source_family": src.family, "target_family": tgt.family},
    )
    out: "OrderedDict[str, Tensor]" = OrderedDict()
    used: set[str] = set()
    considered: dict[str, str] = {}  # source key -> why it was not used
    input_slot = ("enc", 0, 0)

    for tkey, tval in tgt_sd.items():
        tshape = tuple(tval.shape)
        role = tgt.roles.get(tkey)
        if role is None:
            report.rows.append(TransferRow(tkey, None, "new", tshape, None, tval.numel(),
                                           "not a tensor of a recognised U-Net layout"))
            continue
        slot, leaf = role
        head = slot[0] in _HEAD_KINDS
        skey = src.by_role.get(role)
        if skey is None and tkey in tgt.fallback:
            skey = src.by_role.get(tgt.fallback[tkey])
        encoder_slot = slot[0] in ("enc", "skip")
        if skey is not None and encoder_slot and not same_family and not cross_architecture:
            considered[skey] = f"encoder families differ ({src.family} vs {tgt.family}) and cross_architecture=False"
            report.rows.append(TransferRow(tkey, skey, "skip", tshape, tuple(src_sd[skey].shape), tval.numel(),
                                           considered[skey], head))
            continue
        if skey is None:
            why = slot
            if tkey in tgt.fallback and not src.nested_depth:
                why = tgt.fallback[tkey][0]  # a diagonal node: the U-Net decoder lacks that resolution
            present = any(r[0] == why for r in src.by_role)
            report.rows.append(TransferRow(tkey, None, "new", tshape, None, tval.numel(),
                                           _describe_missing(why, leaf, src, present), head))
            continue
        value = src_sd[skey]
        if head and not heads:
            considered[skey] = "segmentation head: task-specific, not transferred (heads=True to transfer)"
            report.rows.append(TransferRow(tkey, skey, "skip", tshape, tuple(value.shape), tval.numel(),
                                           considered[skey], head))
            continue
        if head and tuple(value.shape) != tshape:
            considered[skey] = f"segmentation head with another class count ({tuple(value.shape)} vs {tshape})"
            report.rows.append(TransferRow(tkey, skey, "skip", tshape, tuple(value.shape), tval.numel(),
                                           considered[skey], head))
            continue
        is_input = slot == input_slot and leaf == "conv.weight"
        sslot = src.roles[skey][0]
        dense = leaf == "conv.weight" and "node" in (slot[0], sslot[0]) and slot[-1] == 0 and sslot[-1] == 0
        fitted, kinds, detail, reason = _transfer(value, tval, slot, leaf, is_input, opt, dense)
        if fitted is None:
            considered[skey] = reason
            report.rows.append(TransferRow(tkey, skey, "skip", tshape, tuple(value.shape), tval.numel(), reason, head))
            continue
        if skey != tkey:
            kinds.insert(0, "realign")
        if (slot[0] in _NODE_KINDS) != (sslot[0] in _NODE_KINDS):
            node, res = (slot, sslot) if slot[0] in _NODE_KINDS else (sslot, slot)
            path = (f"U-Net path: the {'checkpoint' if node is sslot else 'target'}'s UNet++ diagonal node "
                    f"{_node(node)} <-> the {'target' if node is sslot else 'checkpoint'}'s decoder at "
                    f"resolution {res[1]}")
            detail = f"{path}; {detail}" if detail else path
        out[tkey] = fitted
        used.add(skey)
        report.rows.append(TransferRow(tkey, skey, "+".join(kinds) or "copy", tshape, tuple(value.shape),
                                       tval.numel(), detail, head))

    def structural(item: tuple[str, Tensor]) -> tuple:
        role = src.roles.get(item[0])
        if role is None:
            return (3, 0, item[0])
        kind, index = role[0][0], role[0][1]
        if kind in ("enc", "skip"):
            return (0, index, item[0])
        return (1 if kind not in _HEAD_KINDS else 2, -index, item[0])  # decoder: lowest resolution first, as stored

    for skey, value in sorted(src_sd.items(), key=structural):
        if skey in used:
            continue
        role = src.roles.get(skey)
        if role is None:
            reason, head = "not a tensor of a recognised U-Net layout", False
        else:
            head = role[0][0] in _HEAD_KINDS
            reason = considered.get(skey) or _unused_reason(role[0], tgt)
        report.unused.append(UnusedRow(skey, tuple(value.shape), value.numel(), reason, head))
    if strict or min_share is not None:
        report.check(strict=strict, min_share=min_share)
    return out, report


# ----------------------------------------------------------------------------------------------- loading


def load_into(model: nn.Module, tensors: Mapping[str, Tensor], *, seed: int | None = None) -> list[str]:
    """Put ``tensors`` (canonical names, from :func:`adapt_state_dict`) into ``model`` by assignment, alias
    names included, and give every tensor still on the meta device fresh storage and the model's own
    initialisation (``model.initialize``, e.g. nnU-Net's He init; residual blocks whose last norm is new start
    as identity). Returns the names of the modules that were (partly) initialised afresh."""
    full = expand_aliases(tensors, model)
    if full:
        model.load_state_dict(full, strict=False, assign=True)
    initialize = getattr(model, "initialize", None)
    fresh_modules: list[str] = []
    fresh_ids: set[int] = set()
    with contextlib.ExitStack() as stack:
        if seed is not None:
            stack.enter_context(torch.random.fork_rng(devices=[]))
            torch.manual_seed(seed)
        for name, module in model.named_modules():
            local = [(n, t) for n, t in list(module.named_parameters(recurse=False))
                     + list(module.named_buffers(recurse=False))]
            meta = [n for n, t in local if t.is_meta]
            if not meta:
                continue
            if len(meta) == len(local):
                _materialize(module, meta)
                _reset(module, initialize)
                fresh_ids.add(id(module))
            else:
                clone = copy.deepcopy(module)
                _materialize(clone, [n for n, _ in local])
                _reset(clone, initialize)
                for n in meta:
                    if n in module._parameters:
                        old = module._parameters[n]
                        module._parameters[n] = nn.Parameter(clone._parameters[n].detach(),
                                                             requires_grad=old.requires_grad)
                    else:
                        module._buffers[n] = clone._buffers[n]
            fresh_modules.append(name)
        if callable(initialize):
            for module in model.modules():
                last = getattr(module, "last_norm", None)
                if callable(last):
                    norm = last()
                    if norm is not None and id(norm) in fresh_ids:
                        initialize(module)
    return fresh_modules


def _materialize(module: nn.Module, names: list[str]) -> None:
    """Replace the named local tensors by uninitialised CPU tensors of the same shape and dtype (cheaper than
    ``to_empty``, whose meta-tensor path goes through torch's reference implementations)."""
    for n in names:
        if n in module._parameters:
            old = module._parameters[n]
            module._parameters[n] = nn.Parameter(torch.empty(old.shape, dtype=old.dtype, device="cpu"),
                                                 requires_grad=old.requires_grad)
        else:
            old = module._buffers[n]
            module._buffers[n] = torch.empty(old.shape, dtype=old.dtype, device="cpu")


def _reset(module: nn.Module, initialize: Any) -> None:
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
    if callable(initialize):
        initialize(module)


def adapt_model(
    source: Mapping[str, Tensor] | nn.Module,
    target: nn.Module,
    *,
    seed: int | None = None,
    **options: Any,
) -> TransferReport:
    """:func:`adapt_state_dict` then :func:`load_into`: ``target`` (meta or real) ends up with the adapted
    checkpoint tensors and, for the rest, its own (fresh) initialisation. Returns the report; nothing is
    loaded when ``strict`` / ``min_share`` refuse the transfer."""
    tensors, report = adapt_state_dict(source, target, **options)
    load_into(target, tensors, seed=seed)
    return report


def parameter_bytes(tensors: Mapping[str, Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


__all__ = [
    "COLLAPSE_MODES", "INFLATE_MODES", "WIDTH_MODES", "adapt_kernel", "adapt_model", "adapt_state_dict",
    "adapt_transposed_kernel", "collapse_axis", "inflate_axis", "load_into", "map_axes", "parameter_bytes",
    "permute_kernel",
]
