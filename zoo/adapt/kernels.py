"""Convolution-weight maths, nothing else: fit a kernel to another spatial size, stride, axis order or number
of input channels. Pure tensor functions (torch, :mod:`zoo.errors` and :mod:`zoo.options` only), shared by the transfer engine
(:mod:`zoo.adapt.engine`) and the 2D -> 3D conversion (:mod:`zoo.convert.inflate2d`).

Shapes: a convolution weight is (C_out, C_in, *k), a transposed-convolution weight (C_in, C_out, *s) with its
kernel equal to its stride; the spatial axes follow the two channel dims (Conv3d: (C_out, C_in, D, H, W)).
``axis`` arguments count spatial axes from 0, so axis ``a`` is tensor dim ``2 + a``.

Input channels: adapting C_in = S source channels to C target channels (:func:`adapt_input_channels`):

* ``repeat_scale`` (default): tile the weight ceil(C/S) times along dim 1, keep the first C, multiply by
  S/C. Exact in the sense that C identical copies of a 1-channel input give the original response.
  C == 1 from S > 1 sums over the input channels (exact for an input repeated S times).
* ``mean``: every target channel gets the mean of the source channels, scaled by S/C (same exactness
  as ``repeat_scale`` for identical channels).
* ``first``: keep the first C source channels (reduction) or copy the source and zero-fill the new
  channels (inflation): the extra channels start with no influence.
* ``random``: the source channels kept as in ``first``; new channels get He-normal noise.

Channel adaptation computes in float32 and casts the result back to the input dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import AdaptationError
from ..options import (  # noqa: F401  (the *_MODES tuples are re-exported)
    CHANNEL_MODES,
    COLLAPSE_MODES,
    INFLATE_MODES,
    ChannelMode,
    InvalidAdaptationOption,
    KernelCollapse,
    KernelInflate,
    check_option,
)

# ----------------------------------------------------------------------------------------------- spatial axes


def collapse_axis(weight: Tensor, axis: int, mode: KernelCollapse = "sum") -> Tensor:
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
    check_option("kernel_collapse", mode, KernelCollapse, error=InvalidAdaptationOption)
    raise AssertionError(mode)  # pragma: no cover - every choice is handled above


def inflate_axis(weight: Tensor, axis: int, size: int, mode: KernelInflate = "center") -> Tensor:
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
    check_option("kernel_inflate", mode, KernelInflate, error=InvalidAdaptationOption)
    raise AssertionError(mode)  # pragma: no cover - every choice is handled above


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


def adapt_kernel(weight: Tensor, kernel: tuple[int, ...] | list[int], collapse: KernelCollapse = "sum",
                 inflate: KernelInflate = "center") -> tuple[Tensor, list[str]]:
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


# ----------------------------------------------------------------------------------------------- input channels


def adapt_input_channels(
    weight: Tensor,
    in_channels: int,
    mode: ChannelMode = "repeat_scale",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Return ``weight`` (C_out, S, *k) adapted to (C_out, ``in_channels``, *k) with strategy ``mode``."""
    check_option("channel_mode", mode, ChannelMode, error=InvalidAdaptationOption)
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


__all__ = [
    "CHANNEL_MODES", "COLLAPSE_MODES", "INFLATE_MODES", "adapt_input_channels", "adapt_kernel",
    "adapt_transposed_kernel", "collapse_axis", "inflate_axis", "map_axes", "permute_kernel",
]
