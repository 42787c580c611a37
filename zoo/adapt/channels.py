"""Input-channel adaptation of a first convolution weight.

A conv weight has shape (C_out, C_in, *kernel) (any number of spatial dims, so Conv3d weights are
5-D: (C_out, C_in, D, H, W)). Adapting C_in = S source channels to C target channels:

* ``repeat_scale`` (default): tile the weight ceil(C/S) times along dim 1, keep the first C, multiply by
  S/C. Exact in the sense that C identical copies of a 1-channel input give the original response.
  C == 1 from S > 1 sums over the input channels (exact for an input repeated S times).
* ``mean``: every target channel gets the mean of the source channels, scaled by S/C (same exactness
  as ``repeat_scale`` for identical channels).
* ``first``: keep the first C source channels (reduction) or copy the source and zero-fill the new
  channels (inflation): the extra channels start with no influence.
* ``random``: the source channels kept as in ``first``; new channels get He-normal noise.

Computation happens in float32 and the result is cast back to the input dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import AdaptationError

CHANNEL_MODES = ("repeat_scale", "mean", "first", "random")


def adapt_input_channels(
    weight: Tensor,
    in_channels: int,
    mode: str = "repeat_scale",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Return ``weight`` (C_out, S, *k) adapted to (C_out, ``in_channels``, *k) with strategy ``mode``."""
    if mode not in CHANNEL_MODES:
        raise AdaptationError(f"unknown channel mode {mode!r}; choose one of {CHANNEL_MODES}")
    if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
        raise AdaptationError(f"in_channels must be a positive integer, got {in_channels!r}")
    if weight.dim() < 3:
        raise AdaptationError(
            f"expected a convolution weight (C_out, C_in, *kernel), got shape {tuple(weight.shape)}"
        )
    source = weight.shape[1]
    if source == in_channels:
        return weight
    w = weight.float()
    if mode == "repeat_scale":
        if in_channels == 1:
            out = w.sum(dim=1, keepdim=True)
        else:
            reps = math.ceil(in_channels / source)
            out = w.repeat(1, reps, *([1] * (w.dim() - 2)))[:, :in_channels] * (source / in_channels)
    elif mode == "mean":
        mean = w.mean(dim=1, keepdim=True)
        out = mean.expand(-1, in_channels, *w.shape[2:]) * (source / in_channels)
        out = out.contiguous()
    else:
        if in_channels < source:
            out = w[:, :in_channels].clone()
        else:
            extra_shape = (w.shape[0], in_channels - source, *w.shape[2:])
            if mode == "first":
                extra = torch.zeros(extra_shape, dtype=w.dtype)
            else:
                fan_in = in_channels * math.prod(w.shape[2:])
                extra = torch.randn(extra_shape, generator=generator) * math.sqrt(2.0 / fan_in)
            out = torch.cat([w, extra], dim=1)
    return out.to(weight.dtype)
