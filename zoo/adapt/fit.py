"""Fit an entry's converted weights to the network ``zoo.load`` built for them, or refuse.

Only two changes are made, each reported: the first convolution's input channels are adapted
(:func:`zoo.adapt.kernels.adapt_input_channels`), and a pretrained head is dropped when another class count
was asked for. Dtypes are checked like shapes: floating weights are cast to the network's floating dtype,
integer buffers to its integer dtype. Anything else that does not fit raises: partial transfers are
:mod:`zoo.adapt.engine`'s job, with its per-tensor report.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import AdaptationError, CheckpointFormatError
from ..options import ChannelMode
from ..registry import ModelEntry
from ..state_dict import expand_aliases
from .kernels import adapt_input_channels


class FittedWeights(NamedTuple):
    """The tensors to assign (alias names included) and one line per change made to fit them."""

    tensors: "OrderedDict[str, Tensor]"
    adaptations: list[str]


def fit_state_dict(
    sd: "OrderedDict[str, Tensor]",
    model: nn.Module,
    entry: ModelEntry,
    in_channels: int,
    num_classes: int | None,
    channel_mode: ChannelMode,
) -> FittedWeights:
    """Adapt first-conv channels and drop a replaced head; everything else must fit ``model`` exactly.

    ``sd`` (canonical names, modified in place) holds ``entry``'s weights; ``model`` (meta device is fine) is
    the network built with ``in_channels`` and ``num_classes``. First-convolution weights are
    (C_out, C_in, *k) and get C_in = ``in_channels`` by ``channel_mode``.

    Raises:
        AdaptationError: the weights have tensors the network lacks, tensors of other shapes, or leave network
            tensors outside the head without a value.
        CheckpointFormatError: a tensor's dtype is of another kind than the network's (see :func:`match_dtypes`).
    """
    adaptations: list[str] = []
    for key in entry.first_conv:
        if key in sd and sd[key].dim() >= 3 and sd[key].shape[1] != in_channels:
            before = tuple(sd[key].shape)
            sd[key] = adapt_input_channels(sd[key], in_channels, channel_mode)
            adaptations.append(f"{key}: {before} -> {tuple(sd[key].shape)} ({channel_mode})")
    if num_classes != entry.num_classes:
        dropped = [k for k in sd if _under(k, entry.classifier)]
        for k in dropped:
            del sd[k]
        if dropped:
            adaptations.append(
                f"pretrained head dropped ({len(dropped)} tensors under {', '.join(entry.classifier)}): "
                f"{entry.num_classes} -> {num_classes} classes"
            )
    full = expand_aliases(sd, model)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    unexpected = [k for k in full if k not in shapes]
    if unexpected:
        raise AdaptationError(
            f"{entry.name}: the weights have tensors the built network lacks (e.g. {unexpected[:4]}); "
            "an architecture override removed layers the checkpoint has",
            key=unexpected[0],
        )
    mismatched = [(k, tuple(full[k].shape), shapes[k]) for k in full if tuple(full[k].shape) != shapes[k]]
    if mismatched:
        k, got, want = mismatched[0]
        raise AdaptationError(
            f"{entry.name}: {len(mismatched)} tensors do not fit, e.g. {k} is {got} in the weights but {want} in the "
            "network built with these arguments; only in_channels and num_classes are adapted by zoo.load. "
            "Use zoo.adapt for other changes, or pretrained=False.",
            key=k,
        )
    missing = [k for k in shapes if k not in full]
    outside_head = [k for k in missing if not _under(k, entry.classifier)]
    if outside_head:
        raise AdaptationError(
            f"{entry.name}: {len(outside_head)} network tensors have no pretrained value (e.g. {outside_head[:4]}); "
            "refusing a partial load. Use zoo.adapt for a reported partial transfer.",
            key=outside_head[0],
        )
    full, casts = match_dtypes(full, model, entry)
    return FittedWeights(full, adaptations + casts)


def match_dtypes(
    sd: "OrderedDict[str, Tensor]", model: nn.Module, entry: ModelEntry
) -> tuple["OrderedDict[str, Tensor]", list[str]]:
    """Check dtypes like shapes: floating weights are cast to the network's floating dtype (one report line per
    dtype pair, returned with ``sd``), integer buffers to the network's integer dtype; a floating tensor given
    as integers (or the reverse, or a bool/complex tensor) is refused, since a cast would silently change its
    values."""
    wanted = {k: v.dtype for k, v in model.state_dict(keep_vars=True).items()}
    casts: dict[tuple[torch.dtype, torch.dtype], int] = {}
    for key, value in sd.items():
        want = wanted[key]
        if value.dtype == want:
            continue
        same_kind = (value.is_floating_point() and want.is_floating_point) or (
            _is_integer(value.dtype) and _is_integer(want)
        )
        if not same_kind:
            raise CheckpointFormatError(
                f"{entry.name}: tensor {key!r} is {value.dtype} in the weights but the network expects {want}; "
                "the file does not hold this model's weights (re-export them from the model that trained them)",
                key=key,
            )
        sd[key] = value.to(want)
        casts[(value.dtype, want)] = casts.get((value.dtype, want), 0) + 1
    return sd, [f"{count} tensors cast {src} -> {dst}" for (src, dst), count in casts.items()]


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _is_integer(dtype: torch.dtype) -> bool:
    return not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool


__all__ = ["FittedWeights", "fit_state_dict", "match_dtypes"]
