"""Where each tensor of a U-Net state dict sits in its network (its *role*), read from its key.

Layouts: nnU-Net / dynamic-network-architectures (PlainConvUNet ``encoder.stages.S.0.convs.C``,
ResidualEncoderUNet ``encoder.stem`` / ``encoder.stages.S.blocks.B``, decoder ``stages`` / ``transpconvs`` /
``seg_layers``), UNet++ (:class:`zoo.archs.nested_unet.NestedUNet`, decoder nodes ``x{i}_{j}``) and STU-Net
(:class:`zoo.archs.stunet.STUNet`: ``conv_blocks_context.S.B.conv1/conv2`` with ``norm1/norm2``, shortcut ``conv3``;
decoder ``conv_blocks_localization``, ``upsample_layers``, ``seg_outputs``; family ``stunet``, which transfers into
STU-Net networks only).

A role is :class:`Role` ``(slot, leaf)``: ``leaf`` is the tensor's name inside its layer (``conv.weight``,
``norm.bias``, ``weight``), ``slot`` the layer's place, one of

* :class:`EncoderConv` ``(stage, position)``: stage counted from the input side, position along the stage's
  main path (a ResidualEncoderUNet's stem is stage 0's first positions);
* :class:`Shortcut` ``(stage, block)``: a residual block's shortcut;
* :class:`DecoderConv` ``(resolution, conv)``, :class:`Transposed` ``(resolution)``, :class:`SegHead`
  ``(resolution)``: a U-Net decoder stage, its transposed convolution and segmentation head, by resolution
  counted **from the output side** (0 = full resolution);
* :class:`DecoderShortcut` ``(resolution, block)``, :class:`UpsampleConv` ``(resolution)``: STU-Net's decoder block
  shortcut (1x1) and its 1x1 convolution after nearest-neighbour upsampling;
* :class:`NodeConv` ``(i, j, conv)``, :class:`NodeTransposed` ``(i, j)``, :class:`NodeSegHead` ``(i, j)``:
  the same parts of UNet++ node ``X(i, j)`` (``i`` is its resolution).

U-Net slots are NamedTuples whose last field ``kind`` tags the type, so slots of different types never compare
equal as tuples (UNet++ slots are frozen dataclasses, equal only to their own type); two state dicts' tensors meet
where their roles are equal (:attr:`Structure.by_role`).
:func:`canonical_source` and :func:`canonical_tensors` give one name per tensor (nnU-Net's ``all_modules.N``
and ``decoder.encoder.*`` aliases dropped) before roles are read.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple, Union

from torch import Tensor, nn

from ..state_dict import alias_groups, strip_wrappers

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
_STU_ENC = re.compile(r"^conv_blocks_context\.(\d+)\.(\d+)\.(conv|norm)([12])\.(weight|bias)$")
_STU_ENC_SKIP = re.compile(r"^conv_blocks_context\.(\d+)\.(\d+)\.conv3\.(weight|bias)$")
_STU_DEC = re.compile(r"^conv_blocks_localization\.(\d+)\.(\d+)\.(conv|norm)([12])\.(weight|bias)$")
_STU_DEC_SKIP = re.compile(r"^conv_blocks_localization\.(\d+)\.(\d+)\.conv3\.(weight|bias)$")
_STU_UP = re.compile(r"^upsample_layers\.(\d+)\.conv\.(weight|bias)$")
_STU_SEG = re.compile(r"^seg_outputs\.(\d+)\.(weight|bias)$")


class EncoderConv(NamedTuple):
    """An encoder convolution (with its norm): ``stage`` from the input side, ``position`` along the stage's
    main path."""

    stage: int
    position: int
    kind: str = "enc"


class Shortcut(NamedTuple):
    """The shortcut (1x1 convolution and norm) of residual block ``block`` of encoder stage ``stage``."""

    stage: int
    block: int
    kind: str = "skip"


class DecoderConv(NamedTuple):
    """Convolution ``conv`` of the U-Net decoder stage at ``resolution`` (0 = full resolution)."""

    resolution: int
    conv: int
    kind: str = "dec"


class Transposed(NamedTuple):
    """The transposed convolution that upsamples to ``resolution`` (0 = full resolution)."""

    resolution: int
    kind: str = "tu"


class SegHead(NamedTuple):
    """The segmentation head (1x1 convolution) at ``resolution`` (0 = full resolution)."""

    resolution: int
    kind: str = "seg"


class DecoderShortcut(NamedTuple):
    """The 1x1 shortcut convolution of residual block ``block`` of STU-Net's decoder stage at ``resolution``."""

    resolution: int
    block: int
    kind: str = "dskip"


class UpsampleConv(NamedTuple):
    """STU-Net's 1x1 convolution after the nearest-neighbour upsampling to ``resolution`` (0 = full resolution)."""

    resolution: int
    kind: str = "up"


@dataclass(frozen=True)
class _Node:
    """A slot of UNet++ node ``X(i, j)``: ``i`` rows below full resolution, ``j`` columns right of the encoder."""

    i: int
    j: int

    @property
    def resolution(self) -> int:
        return self.i

    @property
    def name(self) -> str:
        return f"X({self.i},{self.j})"


@dataclass(frozen=True)
class NodeConv(_Node):
    """Convolution ``conv`` of UNet++ node ``X(i, j)``."""

    conv: int

    def unet_counterpart(self) -> DecoderConv:
        """The U-Net decoder convolution this node's convolution is, on the diagonal ``X(i, L - i)``."""
        return DecoderConv(self.i, self.conv)


@dataclass(frozen=True)
class NodeTransposed(_Node):
    """The transposed convolution feeding UNet++ node ``X(i, j)`` from ``X(i + 1, j - 1)``."""

    def unet_counterpart(self) -> Transposed:
        return Transposed(self.i)


@dataclass(frozen=True)
class NodeSegHead(_Node):
    """The segmentation head on UNet++ node ``X(i, j)``."""

    def unet_counterpart(self) -> SegHead:
        return SegHead(self.i)


#: every kind of slot a tensor can fill
Slot = Union[EncoderConv, Shortcut, DecoderConv, Transposed, SegHead, DecoderShortcut, UpsampleConv, NodeConv,
             NodeTransposed, NodeSegHead]
ENCODER_SLOTS = (EncoderConv, Shortcut)
UNET_DECODER_SLOTS = (DecoderConv, Transposed, SegHead, DecoderShortcut, UpsampleConv)
NODE_SLOTS = (NodeConv, NodeTransposed, NodeSegHead)
HEAD_SLOTS = (SegHead, NodeSegHead)
TRANSPOSED_SLOTS = (Transposed, NodeTransposed)
#: the network input: the first convolution of the first encoder stage
INPUT_SLOT = EncoderConv(0, 0)


class Role(NamedTuple):
    """Where a tensor sits: its layer's ``slot`` and its name ``leaf`` inside that layer (``conv.weight``)."""

    slot: Slot
    leaf: str


def is_head(slot: Slot) -> bool:
    """A segmentation head (of a U-Net or of a UNet++ node): task-specific."""
    return isinstance(slot, HEAD_SLOTS)


def is_node(slot: Slot) -> bool:
    """A part of a UNet++ node."""
    return isinstance(slot, NODE_SLOTS)


class _Match(NamedTuple):
    """A key as its pattern read it, before stage positions and decoder depth are known: ``pattern`` names the
    regex; ``where`` is the stage, the stored decoder index (lowest resolution first) or the node ``(i, j)``;
    ``which`` the encoder unit, the convolution, the block, or None."""

    pattern: str
    where: Any
    which: Any
    leaf: str


def _match(key: str) -> tuple[_Match | None, str | None]:
    """The key's :class:`_Match` and the encoder family it reveals (``plain`` / ``residual`` / None)."""
    if m := _PLAIN.match(key):
        return _Match("enc", int(m[1]), (int(m[2]), int(m[3])), f"{m[4]}.{m[5]}"), "plain"
    if m := _STEM.match(key):
        return _Match("enc", 0, (-1, int(m[1]), ""), f"{m[2]}.{m[3]}"), "residual"
    if m := _BLOCK.match(key):
        return _Match("enc", int(m[1]), (int(m[2]), int(m[3][4:]), m[3]), f"{m[4]}.{m[5]}"), "residual"
    if m := _SKIP.match(key):
        return _Match("skip", int(m[1]), int(m[2]), f"{m[4]}.{m[5]}"), None
    if m := _DEC.match(key):
        return _Match("dec", int(m[1]), int(m[2]), f"{m[3]}.{m[4]}"), None
    if m := _TRANSP.match(key):
        return _Match("tu", int(m[1]), None, m[2]), None
    if m := _SEG.match(key):
        return _Match("seg", int(m[1]), None, m[2]), None
    if m := _STU_ENC.match(key):
        return _Match("enc", int(m[1]), (int(m[2]), int(m[4])), f"{m[3]}.{m[5]}"), "stunet"
    if m := _STU_ENC_SKIP.match(key):
        return _Match("skip", int(m[1]), int(m[2]), f"conv.{m[3]}"), None
    if m := _STU_DEC.match(key):
        return _Match("dec", int(m[1]), 2 * int(m[2]) + int(m[4]) - 1, f"{m[3]}.{m[5]}"), None
    if m := _STU_DEC_SKIP.match(key):
        return _Match("dskip", int(m[1]), int(m[2]), f"conv.{m[3]}"), None
    if m := _STU_UP.match(key):
        return _Match("up", int(m[1]), None, f"conv.{m[2]}"), None
    if m := _STU_SEG.match(key):
        return _Match("seg", int(m[1]), None, m[2]), None
    if m := _NODE.match(key):
        return _Match("node", (int(m[1]), int(m[2])), int(m[3]), f"{m[4]}.{m[5]}"), None
    if m := _NODE_TRANSP.match(key):
        return _Match("ntu", (int(m[1]), int(m[2])), None, m[3]), None
    if m := _NODE_SEG.match(key):
        return _Match("nseg", (int(m[1]), int(m[2])), None, m[3]), None
    return None, None


@dataclass
class Structure:
    """The role of every tensor of a U-Net state dict.

    ``roles``: key -> :class:`Role`; ``by_role``: the inverse. ``family``: the encoder's (``plain``,
    ``residual``, ``mixed`` or None); ``n_stages`` / ``stage_len``: encoder stages and convolutions per stage;
    ``n_dec``: decoder resolutions; ``nested_depth``: a UNet++'s depth ``L`` (0 for a U-Net). ``fallback`` gives
    the U-Net role of each diagonal node ``X(i, L - i)`` (also listed in ``by_role`` when the structure has no
    U-Net decoder of its own), so U-Net and UNet++ decoders meet on the U-Net path."""

    roles: dict[str, Role] = field(default_factory=dict)
    by_role: dict[Role, str] = field(default_factory=dict)
    family: str | None = None
    n_stages: int = 0
    n_dec: int = 0
    stage_len: dict[int, int] = field(default_factory=dict)
    fallback: dict[str, Role] = field(default_factory=dict)
    nested_depth: int = 0

    @classmethod
    def parse(cls, keys: list[str]) -> "Structure":
        self = cls()
        units: dict[int, set] = {}
        found: dict[str, _Match] = {}
        dec_max = -1
        families = set()
        for key in keys:
            match, family = _match(key)
            if match is None:
                continue
            found[key] = match
            if family is not None:
                families.add(family)
            if match.pattern == "enc":
                units.setdefault(match.where, set()).add(match.which)
            elif match.pattern in ("dec", "tu", "seg", "dskip", "up"):
                dec_max = max(dec_max, match.where)
        self.family = families.pop() if len(families) == 1 else ("mixed" if families else None)
        positions = {s: {u: i for i, u in enumerate(sorted(us))} for s, us in units.items()}
        self.stage_len = {s: len(us) for s, us in units.items()}
        self.n_stages = max(units) + 1 if units else 0
        self.n_dec = dec_max + 1
        nodes = [m.where for m in found.values() if m.pattern in ("node", "ntu", "nseg")]
        self.nested_depth = max((i + j for i, j in nodes), default=0)
        if self.nested_depth and self.n_dec == 0:
            self.n_dec = self.nested_depth
        for key, match in found.items():
            slot = self._slot(match, positions)
            role = Role(slot, match.leaf)
            if is_node(slot) and slot.i + slot.j == self.nested_depth:
                self.fallback[key] = Role(slot.unet_counterpart(), match.leaf)
            self.roles[key] = role
            self.by_role[role] = key
        for key, role in self.fallback.items():
            self.by_role.setdefault(role, key)
        return self

    @property
    def input_slots(self) -> tuple[Slot, ...]:
        """The slots whose convolutions read the network input: the first encoder convolution, and in STU-Net
        also the 1x1 shortcut of the first block."""
        return (INPUT_SLOT, Shortcut(0, 0)) if self.family == "stunet" else (INPUT_SLOT,)

    def _slot(self, match: _Match, positions: Mapping[int, Mapping[Any, int]]) -> Slot:
        pattern, where, which = match.pattern, match.where, match.which
        if pattern == "enc":
            return EncoderConv(where, positions[where][which])
        if pattern == "skip":
            return Shortcut(where, which)
        if pattern == "dec":
            return DecoderConv(self.n_dec - 1 - where, which)
        if pattern == "tu":
            return Transposed(self.n_dec - 1 - where)
        if pattern == "seg":
            return SegHead(self.n_dec - 1 - where)
        if pattern == "dskip":
            return DecoderShortcut(self.n_dec - 1 - where, which)
        if pattern == "up":
            return UpsampleConv(self.n_dec - 1 - where)
        if pattern == "node":
            return NodeConv(*where, which)
        if pattern == "ntu":
            return NodeTransposed(*where)
        return NodeSegHead(*where)


def canonical_source(state_dict: Mapping[str, Tensor]) -> "OrderedDict[str, Tensor]":
    """One name per tensor of a checkpoint: unwrap ``network_weights`` and wrapper prefixes, drop non-tensors
    and the ``decoder.encoder.*`` and ``all_modules.N`` aliases of present keys."""
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


def canonical_tensors(model: nn.Module) -> "OrderedDict[str, Tensor]":
    """``model``'s tensors (meta ones included) under their canonical names, one name per tensor."""
    sd = model.state_dict(keep_vars=True)
    return OrderedDict((g[0], sd[g[0]]) for g in alias_groups(model) if g[0] in sd)


__all__ = [
    "DecoderConv", "DecoderShortcut", "EncoderConv", "UpsampleConv", "INPUT_SLOT", "NodeConv", "NodeSegHead", "NodeTransposed", "Role", "SegHead",
    "Shortcut", "Slot", "Structure", "Transposed", "canonical_source", "canonical_tensors", "is_head", "is_node",
]
