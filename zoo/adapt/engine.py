"""The transfer engine: fit a U-Net checkpoint (nnU-Net / dynamic-network-architectures layout) to another
U-Net of that family, tensor by tensor, and say what was done (:class:`~zoo.adapt.report.TransferReport`).

This module matches and reports; the kernel maths is :mod:`zoo.adapt.kernels`, the roles read from keys
:mod:`zoo.adapt.roles`, and giving the unmatched tensors storage and initialisation :mod:`zoo.adapt.materialise`.

Tensors are matched by *role* (:class:`zoo.adapt.roles.Role`), not by name:

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
   :func:`zoo.adapt.kernels.adapt_input_channels` (``repeat_scale`` default: k identical channels reproduce
   the 1-channel response; ``mean``, ``first``, ``random``; k -> 1 sums);
6. ``dense``: the first convolution of a UNet++ node reads ``[upsampled, X(i,0), ..., X(i,j-1)]``, a U-Net
   decoder stage ``[upsampled, skip]``: the leading input channels are copied and the extra dense-skip inputs
   start at zero (the node then computes exactly what the U-Net's stage computed), or dropped the other way.

Segmentation heads are skipped unless ``heads=True`` (and then transferred only when the class count
agrees). Tensors copied unchanged are not cloned: the result shares memory with the checkpoint.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

from torch import Tensor, nn

from ..errors import AdaptationError
from ..options import (  # noqa: F401  (WIDTH_MODES is re-exported)
    WIDTH_MODES,
    ChannelMode,
    InvalidAdaptationOption,
    KernelCollapse,
    KernelInflate,
    WidthMode,
    check_option,
)
from .kernels import (
    adapt_input_channels,
    adapt_kernel,
    adapt_transposed_kernel,
    map_axes,
)
from .materialise import load_into
from .report import TransferReport, TransferRow, UnusedRow

#: keys that only MONAI's SegResNet (``convInit``) and SwinUNETR (``swinViT``) have: the engine refuses them
_MONAI_MARKERS = ("convInit.conv.weight", "swinViT.patch_embed.proj.weight")
from .roles import (
    ENCODER_SLOTS,
    TRANSPOSED_SLOTS,
    UNET_DECODER_SLOTS,
    DecoderConv,
    EncoderConv,
    NodeConv,
    Shortcut,
    Slot,
    Structure,
    canonical_source,
    canonical_tensors,
    is_head,
    is_node,
)


@dataclass
class _Options:
    source_axis_order: str | None
    target_axis_order: str | None
    channel_mode: ChannelMode
    kernel_collapse: KernelCollapse
    kernel_inflate: KernelInflate
    widths: WidthMode
    heads: bool
    cross_architecture: bool


def _describe_missing(slot: Slot, leaf: str, src: Structure, present: bool) -> str:
    """Why target ``slot`` / ``leaf`` has no counterpart in the checkpoint's structure ``src``; ``present``: the
    checkpoint has the slot but not this leaf."""
    if present:
        return f"the checkpoint has no {leaf} at this position"
    if is_node(slot):
        if not src.nested_depth:
            return (f"no counterpart: UNet++ node {slot.name} is off the U-Net path; the checkpoint is a U-Net "
                    "(its decoder matches the diagonal nodes X(i, L-i) only)")
        if isinstance(slot, NodeConv) and any(isinstance(r.slot, NodeConv) and (r.slot.i, r.slot.j) == (slot.i, slot.j)
                                              for r in src.by_role):
            return f"no counterpart: the checkpoint's node {slot.name} has fewer convolutions"
        return f"no counterpart: the checkpoint's UNet++ (depth {src.nested_depth}) has no node {slot.name}"
    if isinstance(slot, EncoderConv):
        if slot.stage >= src.n_stages:
            return f"no counterpart: the checkpoint's encoder has {src.n_stages} stages"
        return (f"no counterpart: the checkpoint's stage {slot.stage} has {src.stage_len.get(slot.stage, 0)} "
                "convolutions")
    if isinstance(slot, Shortcut):
        return "no counterpart: the checkpoint has no residual shortcut here"
    if isinstance(slot, UNET_DECODER_SLOTS):
        if slot.resolution >= src.n_dec:
            return f"no counterpart: the checkpoint's decoder has {src.n_dec} resolutions"
        return "no counterpart: the checkpoint's decoder stage has fewer convolutions"
    return "no counterpart in the checkpoint"  # pragma: no cover - every slot type is handled above


def _unused_reason(slot: Slot, tgt: Structure) -> str:
    """Why the checkpoint tensor at ``slot`` initialised nothing in the target's structure ``tgt``."""
    if is_node(slot):
        if not tgt.nested_depth:
            return (f"UNet++ node {slot.name} is off the U-Net path: the target U-Net has no counterpart "
                    "(its decoder takes the diagonal nodes X(i, L-i))")
        return f"the target's UNet++ (depth {tgt.nested_depth}) has no node {slot.name}"
    if isinstance(slot, EncoderConv):
        if slot.stage >= tgt.n_stages:
            return f"the target's encoder has {tgt.n_stages} stages"
        return f"the target's stage {slot.stage} has {tgt.stage_len.get(slot.stage, 0)} convolutions"
    if isinstance(slot, UNET_DECODER_SLOTS):
        if slot.resolution >= tgt.n_dec:
            return f"the target's decoder has {tgt.n_dec} resolutions"
        return "the target's decoder stage has fewer convolutions"
    if isinstance(slot, Shortcut):
        return "the target has no residual shortcut here"
    return "no counterpart in the target"  # pragma: no cover - every slot type is handled above


def _is_first_conv(slot: Slot) -> bool:
    """The first convolution of a U-Net decoder stage or a UNet++ node (its input is a concatenation)."""
    return isinstance(slot, (DecoderConv, NodeConv)) and slot.conv == 0


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


class TensorFit(NamedTuple):
    """What :func:`_transfer` made of one checkpoint tensor: the fitted ``tensor`` (None when it is not used),
    the ``steps`` applied (the report row's action kinds), a readable ``detail`` of them, and the ``reason``
    the tensor was not used (empty when it was)."""

    tensor: Tensor | None
    steps: list[str]
    detail: str
    reason: str


def _refused(reason: str) -> TensorFit:
    return TensorFit(None, [], "", reason)


def _transfer(
    value: Tensor,
    target: Tensor,
    slot: Slot,
    leaf: str,
    is_input: bool,
    opt: _Options,
    dense: bool = False,
) -> TensorFit:
    """Fit one checkpoint tensor ``value`` to one target tensor ``target`` (at ``slot`` / ``leaf``).

    Kernels are (C_out, C_in, *k), transposed-convolution kernels (C_in, C_out, *stride). ``is_input``: the
    network's input convolution (its input channels are adapted with ``opt.channel_mode``). ``dense``: the pair
    is the first convolution of a decoder stage / UNet++ node on either side, whose input is a concatenation of
    equally wide parts (``[upsampled, skip, dense skips...]``)."""
    kinds: list[str] = []
    details: list[str] = []
    tshape = tuple(target.shape)
    w = value
    is_transp = isinstance(slot, TRANSPOSED_SLOTS) and leaf == "weight"
    is_kernel = w.dim() >= 3 and leaf.endswith("weight")
    sliced = False
    dense = (dense and is_kernel and not is_transp and w.dim() == len(tshape) and w.shape[1] != tshape[1]
             and w.shape[0] == tshape[0] and w.shape[1] % w.shape[0] == 0 and tshape[1] % tshape[0] == 0)
    if is_kernel:
        out_d, in_d = (1, 0) if is_transp else (0, 1)
        if w.shape[out_d] != tshape[out_d] or (w.shape[in_d] != tshape[in_d] and not (is_input and not is_transp)
                                               and not dense):
            if opt.widths != "slice":
                return _refused(f"width mismatch: checkpoint {tuple(w.shape[:2])} vs target {tshape[:2]} "
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
            return _refused(f"dimensionality differs: checkpoint {tuple(value.shape)} vs target {tshape} "
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
                return _refused(str(err))
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
            halves = 1 if (isinstance(slot, DecoderConv) and slot.conv == 0 and leaf == "conv.weight") else None
            w = _slice_into(target, w, (0, 1), halves)
            kinds.append("slice")
            details.append(f"widths {tuple(value.shape[:2])}->{tshape[:2]}: leading channels copied"
                           + (" per concatenated half" if halves is not None else ""))
    elif tuple(w.shape) != tshape:
        if opt.widths != "slice" or w.dim() != len(tshape):
            return _refused(f"width mismatch: checkpoint {tuple(w.shape)} vs target {tshape} "
                            "(widths='slice' copies the leading channels)")
        if target.is_meta:
            raise AdaptationError("widths='slice' needs a target with real (not meta) tensors")
        w = _slice_into(target, w, tuple(range(w.dim())), None)
        kinds.append("slice")
        details.append(f"widths {tuple(value.shape)}->{tshape}: leading entries copied")
    if tuple(w.shape) != tshape:  # pragma: no cover - guarded above
        return _refused(f"shape {tuple(w.shape)} cannot be fitted to {tshape}")
    if w.dtype != target.dtype:
        w = w.to(target.dtype)
        kinds.append("dtype")
        details.append(f"dtype {value.dtype}->{target.dtype}")
    if w is not value and not w.is_contiguous():
        w = w.contiguous()
    return TensorFit(w, kinds, "; ".join(details), "")


def adapt_state_dict(
    source: Mapping[str, Tensor] | nn.Module,
    target: nn.Module,
    *,
    source_axis_order: str | None = None,
    target_axis_order: str | None = None,
    channel_mode: ChannelMode = "repeat_scale",
    kernel_collapse: KernelCollapse = "sum",
    kernel_inflate: KernelInflate = "center",
    widths: WidthMode = "skip",
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
    for name, value, alias in (("channel_mode", channel_mode, ChannelMode),
                               ("kernel_collapse", kernel_collapse, KernelCollapse),
                               ("kernel_inflate", kernel_inflate, KernelInflate), ("widths", widths, WidthMode)):
        check_option(name, value, alias, error=InvalidAdaptationOption)
    for name, order in (("source_axis_order", source_axis_order), ("target_axis_order", target_axis_order)):
        if order is not None and (not isinstance(order, str) or len(set(order)) != len(order) or not order):
            raise AdaptationError(f"{name} must be a string of distinct axis letters such as 'zyx', got {order!r}")
    opt = _Options(source_axis_order, target_axis_order, channel_mode, kernel_collapse, kernel_inflate, widths,
                   heads, cross_architecture)

    src_sd = canonical_tensors(source) if isinstance(source, nn.Module) else canonical_source(source)
    tgt_sd = canonical_tensors(target)
    src = Structure.parse(list(src_sd))
    tgt = Structure.parse(list(tgt_sd))
    same_family = src.family == tgt.family
    monai = [name for name, sd in ((source_name, src_sd), (target_name, tgt_sd)) if any(k in sd for k in _MONAI_MARKERS)]
    if monai:
        raise AdaptationError(
            f"{' and '.join(str(m) for m in monai)}: MONAI's SegResNet / SwinUNETR (keys {' / '.join(_MONAI_MARKERS)}) "
            "have no tensor-for-tensor counterpart in PlainConvUNet, ResidualEncoderUNet, UNet++ or STU-Net (pre-"
            "activation GroupNorm residual blocks, additive skips, Swin transformer stages), so the engine transfers "
            "nothing into or out of them; nnU-Net trains the MONAI network itself: `zoo plan NAME --arch monai`, and "
            "-pretrained_weights from zoo.load(NAME, num_classes=n)")
    if (src.family == "stunet") != (tgt.family == "stunet") and src.family and tgt.family:
        raise AdaptationError(
            f"{source_name} ({src.family}) and {target_name} ({tgt.family}): STU-Net's weights transfer into STU-Net "
            "networks only (an nnU-Net plan rewritten with `zoo plan NAME --arch stunet`); its residual blocks with "
            "1x1 shortcuts, nearest-neighbour + 1x1 upsampling and decoder blocks have no tensor-for-tensor "
            "counterpart in PlainConvUNet, ResidualEncoderUNet or UNet++")
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

    for tkey, tval in tgt_sd.items():
        tshape = tuple(tval.shape)
        role = tgt.roles.get(tkey)
        if role is None:
            report.rows.append(TransferRow(tkey, None, "new", tshape, None, tval.numel(),
                                           "not a tensor of a recognised U-Net layout"))
            continue
        slot, leaf = role
        head = is_head(slot)
        skey = src.by_role.get(role)
        if skey is None and tkey in tgt.fallback:
            skey = src.by_role.get(tgt.fallback[tkey])
        if skey is not None and isinstance(slot, ENCODER_SLOTS) and not same_family and not cross_architecture:
            considered[skey] = f"encoder families differ ({src.family} vs {tgt.family}) and cross_architecture=False"
            report.rows.append(TransferRow(tkey, skey, "skip", tshape, tuple(src_sd[skey].shape), tval.numel(),
                                           considered[skey], head))
            continue
        if skey is None:
            why = slot
            if tkey in tgt.fallback and not src.nested_depth:
                why = tgt.fallback[tkey].slot  # a diagonal node: the U-Net decoder lacks that resolution
            present = any(r.slot == why for r in src.by_role)
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
        is_input = slot in tgt.input_slots and leaf == "conv.weight"
        sslot = src.roles[skey].slot
        dense = (leaf == "conv.weight" and (isinstance(slot, NodeConv) or isinstance(sslot, NodeConv))
                 and _is_first_conv(slot) and _is_first_conv(sslot))
        fit = _transfer(value, tval, slot, leaf, is_input, opt, dense)
        if fit.tensor is None:
            considered[skey] = fit.reason
            report.rows.append(TransferRow(tkey, skey, "skip", tshape, tuple(value.shape), tval.numel(), fit.reason,
                                           head))
            continue
        kinds, detail = fit.steps, fit.detail
        if skey != tkey:
            kinds.insert(0, "realign")
        if is_node(slot) != is_node(sslot):
            node, res = (slot, sslot) if is_node(slot) else (sslot, slot)
            path = (f"U-Net path: the {'checkpoint' if node is sslot else 'target'}'s UNet++ diagonal node "
                    f"{node.name} <-> the {'target' if node is sslot else 'checkpoint'}'s decoder at "
                    f"resolution {res.resolution}")
            detail = f"{path}; {detail}" if detail else path
        out[tkey] = fit.tensor
        used.add(skey)
        report.rows.append(TransferRow(tkey, skey, "+".join(kinds) or "copy", tshape, tuple(value.shape),
                                       tval.numel(), detail, head))

    def structural(item: tuple[str, Tensor]) -> tuple:
        role = src.roles.get(item[0])
        if role is None:
            return (3, 0, item[0])
        if isinstance(role.slot, ENCODER_SLOTS):
            return (0, role.slot.stage, item[0])
        # decoder: lowest resolution first, as stored
        return (2 if is_head(role.slot) else 1, -role.slot.resolution, item[0])

    for skey, value in sorted(src_sd.items(), key=structural):
        if skey in used:
            continue
        role = src.roles.get(skey)
        if role is None:
            reason, head = "not a tensor of a recognised U-Net layout", False
        else:
            head = is_head(role.slot)
            reason = considered.get(skey) or _unused_reason(role.slot, tgt)
        report.unused.append(UnusedRow(skey, tuple(value.shape), value.numel(), reason, head))
    if strict or min_share is not None:
        report.check(strict=strict, min_share=min_share)
    return out, report


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
    """Bytes held by ``tensors`` (numel x element size, summed)."""
    return sum(t.numel() * t.element_size() for t in tensors.values())


__all__ = ["WIDTH_MODES", "TensorFit", "adapt_model", "adapt_state_dict", "parameter_bytes"]
