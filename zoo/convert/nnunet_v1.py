"""nnU-Net v1 ``Generic_UNet`` keys -> nnU-Net v2 ``PlainConvUNet`` keys (canonical names, no aliases).

v1 layout (u = 0 is the lowest resolution in both versions; both concatenate ``[upsampled, skip]``):

| v1                                                         | v2                                           |
|------------------------------------------------------------|----------------------------------------------|
| ``conv_blocks_context.{d}.blocks.{i}.conv.*`` (d < N)       | ``encoder.stages.{d}.0.convs.{i}.conv.*``    |
| ``conv_blocks_context.{d}.blocks.{i}.instnorm.*``           | ``encoder.stages.{d}.0.convs.{i}.norm.*``    |
| ``conv_blocks_context.{N}.{j}.blocks.{k}.*`` (bottleneck)  | ``encoder.stages.{N}.0.convs.{c}.*``, c counted across j |
| ``tu.{u}.weight``                                          | ``decoder.transpconvs.{u}.weight`` (+ zero bias)|
| ``conv_blocks_localization.{u}.{j}.blocks.{k}.*``          | ``decoder.stages.{u}.convs.{c}.*``           |
| ``seg_outputs.{u}.weight``                                 | ``decoder.seg_layers.{u}.weight`` (+ zero bias) |

v1 has no bias on transposed convolutions and segmentation heads; the v2 biases are filled with zeros,
which reproduces v1's outputs exactly.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Mapping

import torch
from torch import Tensor

from ..errors import CheckpointFormatError

_CONTEXT = re.compile(r"^conv_blocks_context\.(\d+)\.blocks\.(\d+)\.(conv|instnorm)\.(\w+)$")
_BOTTLENECK = re.compile(r"^conv_blocks_context\.(\d+)\.(\d+)\.blocks\.(\d+)\.(conv|instnorm)\.(\w+)$")
_LOCAL = re.compile(r"^conv_blocks_localization\.(\d+)\.(\d+)\.blocks\.(\d+)\.(conv|instnorm)\.(\w+)$")
_TU = re.compile(r"^tu\.(\d+)\.weight$")
_SEG = re.compile(r"^seg_outputs\.(\d+)\.weight$")

_PART = {"conv": "conv", "instnorm": "norm"}


def is_nnunet_v1(state_dict: Mapping[str, Tensor]) -> bool:
    return any(k.startswith("conv_blocks_context.") for k in state_dict)


def _running_index(keys: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Number (sub-block j, block k) pairs consecutively in (j, k) order."""
    return {jk: i for i, jk in enumerate(sorted(set(keys)))}


def convert_nnunet_v1(state_dict: Mapping[str, Tensor]) -> "OrderedDict[str, Tensor]":
    """Map a v1 ``Generic_UNet`` state dict to canonical v2 ``PlainConvUNet`` keys; raise on unknown keys."""
    out: "OrderedDict[str, Tensor]" = OrderedDict()
    bottleneck: dict[int, list[tuple[int, int]]] = {}
    local: dict[int, list[tuple[int, int]]] = {}
    unknown = []
    for key in state_dict:
        if m := _BOTTLENECK.match(key):
            bottleneck.setdefault(int(m[1]), []).append((int(m[2]), int(m[3])))
        elif m := _LOCAL.match(key):
            local.setdefault(int(m[1]), []).append((int(m[2]), int(m[3])))
        elif not (_CONTEXT.match(key) or _TU.match(key) or _SEG.match(key)):
            unknown.append(key)
    if unknown:
        raise CheckpointFormatError(
            f"not an nnU-Net v1 Generic_UNet state dict: {len(unknown)} unexpected keys, e.g. {unknown[:5]}"
        )
    if len(bottleneck) != 1:
        raise CheckpointFormatError(
            f"expected exactly one bottleneck stage (conv_blocks_context.N.j.blocks.k), found {sorted(bottleneck)}"
        )
    bottleneck_index = {d: _running_index(v) for d, v in bottleneck.items()}
    local_index = {u: _running_index(v) for u, v in local.items()}

    for key, value in state_dict.items():
        if m := _CONTEXT.match(key):
            d, i, part, leaf = int(m[1]), int(m[2]), _PART[m[3]], m[4]
            out[f"encoder.stages.{d}.0.convs.{i}.{part}.{leaf}"] = value
        elif m := _BOTTLENECK.match(key):
            d, jk = int(m[1]), (int(m[2]), int(m[3]))
            c = bottleneck_index[d][jk]
            out[f"encoder.stages.{d}.0.convs.{c}.{_PART[m[4]]}.{m[5]}"] = value
    for key, value in state_dict.items():
        if m := _LOCAL.match(key):
            u, jk = int(m[1]), (int(m[2]), int(m[3]))
            c = local_index[u][jk]
            out[f"decoder.stages.{u}.convs.{c}.{_PART[m[4]]}.{m[5]}"] = value
    for key, value in state_dict.items():
        if m := _TU.match(key):
            u = int(m[1])
            out[f"decoder.transpconvs.{u}.weight"] = value
            out[f"decoder.transpconvs.{u}.bias"] = torch.zeros(value.shape[1], dtype=value.dtype)
    for key, value in state_dict.items():
        if m := _SEG.match(key):
            u = int(m[1])
            out[f"decoder.seg_layers.{u}.weight"] = value
            out[f"decoder.seg_layers.{u}.bias"] = torch.zeros(value.shape[0], dtype=value.dtype)
    return out
