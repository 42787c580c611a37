"""Models Genesis corruptions, batched in torch: flip, local pixel shuffle, non-linear (Bezier) intensity,
in-painting and out-painting (upstream: MrGiovanni/ModelsGenesis ``pytorch/utils.py``, ``generate_pair``;
described in ``docs/pretraining-recipes.md`` §1.3).

Axis order
----------
Batches are ``(N, C, S0, S1, S2)``: sample, channel, then three spatial axes. Upstream Models Genesis feeds
``(N, 1, X, Y, Z)`` cubes of 64 x 64 x 32; :mod:`zoo.io` produces ``(Z, Y, X)`` arrays, i.e. 32 x 64 x 64
cubes. Either works: every block size and position is computed from each axis's own length (``S // 10``,
``S // 6`` ...), so the geometry per physical axis is the same whichever order you pick. Values are expected
in ``[0, 1]`` (:func:`zoo.io.preprocess.genesis_ct`); the Bezier map clamps values outside to the end values.

Device and randomness
---------------------
Everything runs on ``batch.device``. Pass a ``torch.Generator`` **on that device** for reproducible results
(the same generator state and input give the same output on the same device and torch version); with
``generator=None`` torch's default generator is used. Results are *statistically* equivalent to the
per-cube numpy reference (:mod:`zoo.transforms.genesis_reference`) and to upstream, not draw-for-draw
identical: the random numbers are drawn in a different order. On CPU two steps call numpy on the tensors'
memory (row sorts of random int64 keys and a radix argsort), because its vectorised sorts are about ten
times faster than ``torch.sort`` there; the keys themselves come from ``generator``.

Multi-channel batches
---------------------
With ``GenesisConfig.per_channel=False`` (default) every decision and every geometry (flip, shuffled blocks
and their permutations, Bezier curve, painted boxes) is drawn per *sample* and applied identically to all
its channels, so co-registered modalities stay aligned and get the same corruption; uniform noise values are
drawn per voxel and channel. With ``per_channel=True`` each channel is corrupted independently (as the
multi-modality refactor of upstream, PR #49, decides per channel), except the flip, which is per sample
because the target is flipped with the input.

Deviations from upstream
------------------------
* Flip: upstream draws the axis from ``{0, 1, 2}`` of a ``(C, X, Y, Z)`` array, so axis 0 (the singleton
  channel) makes one draw in three a no-op and Z is never flipped. Fixed here: the axis is drawn from the
  three spatial axes (``legacy_flip=True`` restores the upstream behaviour).
* Bezier: the curve is sampled at ``bezier_samples`` values of ``t`` (upstream: 100,000) and turned into a
  per-sample lookup table of ``bezier_lut_size`` entries on a uniform grid of ``[0, 1]``; voxels are mapped
  by linear interpolation in that table instead of ``np.interp`` over the raw samples. Upstream sorts the
  samples; here they are computed in increasing order directly (at ``1 - t``), which is the same thing
  because both coordinates of a cubic Bezier curve with control values ``0, a, c, 1`` (``a, c`` in
  ``[0, 1]``) are monotone in ``t``: the derivative is the quadratic Bernstein form with coefficients
  ``a, c - a, 1 - c`` whose discriminant ``(c - a)**2 - a(1 - c) = a(a - 1) + c(c - a)`` is never positive
  when it matters (``c < a``). With the defaults the map stays between the reference's values one table step
  either side of every input (tested for any control points) and differs from the 100,000-sample
  ``np.interp`` by about ``1e-7`` on average and less than ``1e-3`` for typical curves (tested). Only near a
  vertical tangent of the map (``x'(t) = 0``, e.g. ``a = 1, c = 0``), a cube-root profile no uniform table
  resolves, does the pointwise difference reach about ``1e-2``.
* Multi-channel cubes: upstream shuffles channel 0 only; here all channels (see above).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "GenesisConfig",
    "GenesisResult",
    "bezier_lut",
    "bezier_map",
    "flip",
    "genesis_corrupt",
    "in_painting",
    "inpaint_boxes",
    "local_pixel_shuffle",
    "nonlinear",
    "out_painting",
    "outpaint_windows",
]


@dataclass(frozen=True)
class GenesisConfig:
    """Probabilities and sizes of the Genesis corruptions (upstream values by default)."""

    flip_rate: float = 0.4          #: probability of each of up to ``max_flips`` flips
    max_flips: int = 3
    legacy_flip: bool = False       #: reproduce the upstream flip-axis bug (see module docstring)
    local_rate: float = 0.5         #: probability of local pixel shuffling
    shuffle_blocks: int = 10_000    #: blocks per shuffled cube
    nonlinear_rate: float = 0.9     #: probability of the Bezier intensity map
    invert_rate: float = 0.5        #: probability that an applied Bezier map is the inverting one
    bezier_samples: int = 4096      #: curve samples of the batched version (see module docstring)
    bezier_lut_size: int = 8192     #: lookup-table entries of the batched version
    bezier_samples_reference: int = 100_000  #: curve samples of the numpy reference (upstream value)
    paint_rate: float = 0.9         #: probability of in- or out-painting
    inpaint_rate: float = 0.2       #: in-painting share of painting (out-painting: 1 - inpaint_rate)
    inpaint_max_blocks: int = 5
    outpaint_max_extra: int = 4     #: extra windows after the first
    paint_continue_rate: float = 0.95
    per_channel: bool = False

    def replace(self, **changes) -> GenesisConfig:
        return replace(self, **changes)


class GenesisResult(NamedTuple):
    """Output of :func:`genesis_corrupt`.

    ``damaged``: the corrupted input; ``target``: the original after the same flips (restoration target);
    ``applied``: what happened, as bool tensors: ``flipped`` ``(N, 3)`` flip parity per spatial axis
    ``(S0, S1, S2)`` (legacy: ``(C, S0, S1)``); ``shuffled``, ``nonlinear``, ``inverted``, ``inpainted``,
    ``outpainted`` of length ``N`` (``N * C`` with ``per_channel``, sample-major).
    """

    damaged: torch.Tensor
    target: torch.Tensor
    applied: dict


# ------------------------------------------------------------------------------------------- helpers
def _check_batch(x: torch.Tensor, name: str = "batch") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, S0, S1, S2), got {type(x).__name__}")
    if x.dim() != 5:
        raise ValueError(f"{name} must have shape (N, C, S0, S1, S2) (5 dimensions), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor with values in [0, 1], got dtype {x.dtype}")


def _check_generator(generator, device: torch.device) -> None:
    if generator is not None and torch.device(generator.device).type != device.type:
        raise ValueError(f"the generator is on {generator.device} but the tensor is on {device}; "
                         f"create it with torch.Generator(device={str(device)!r})")


def _rand(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device, dtype=dtype)


def _randint_incl(low, high, shape, generator, device) -> torch.Tensor:
    """Python ``random.randint`` semantics, vectorised: integers in ``[low, high]``, both included; ``low``
    and ``high`` may be tensors broadcastable to ``shape``. ``floor(u * (high - low + 1))`` with a float64
    ``u < 1 - 2**-53``, so the product stays below the span and the bias is below 1e-15."""
    u = _rand(shape, generator, device, torch.float64)
    span = torch.as_tensor(high, device=device) - low + 1
    return (u * span).to(torch.int64) + low


def _require(spatial, ok, what: str) -> None:
    bad = [s for s in spatial if not ok(s)]
    if bad:
        raise ValueError(f"{what}: spatial shape {tuple(spatial)} is too small (axis of {bad[0]} voxels)")


def _shuffle_ok(s: int) -> bool:            # block size randint(1, S // 10)
    return s // 10 >= 1


def _inpaint_ok(s: int) -> bool:            # size randint(S//6, S//3) at randint(3, S - size - 3)
    return s // 6 >= 1 and s - s // 3 - 6 >= 0


def _outpaint_ok(s: int) -> bool:           # size S - randint(3S//7, 4S//7) at randint(3, S - size - 3)
    return 3 * s // 7 >= 6


def _rows(rows, n: int, device) -> torch.Tensor:
    if rows is None:
        return torch.arange(n, device=device)
    return torch.as_tensor(rows, device=device, dtype=torch.int64).flatten()


# ---------------------------------------------------------------------------------------------- flip
def _flip_parity(n: int, generator, device, rate: float, max_flips: int) -> torch.Tensor:
    go = _rand((n, max_flips), generator, device) < rate
    go = torch.cumprod(go.to(torch.int64), dim=1).bool()      # while random() < rate: stops at first miss
    axis = torch.randint(0, 3, (n, max_flips), generator=generator, device=device)
    counts = (torch.nn.functional.one_hot(axis, 3) * go.unsqueeze(-1)).sum(dim=1)
    return (counts % 2).bool()


def _apply_flips_(x: torch.Tensor, parity: torch.Tensor, legacy_flip: bool) -> None:
    dims = (1, 2, 3) if legacy_flip else (2, 3, 4)
    for k, dim in enumerate(dims):
        idx = parity[:, k].nonzero().flatten()
        if idx.numel():
            x.index_copy_(0, idx, x.index_select(0, idx).flip(dim))


def flip(x: torch.Tensor, target: torch.Tensor | None = None, generator: torch.Generator | None = None,
         rate: float = 0.4, max_flips: int = 3, legacy_flip: bool = False):
    """Random flips of ``x`` and ``target`` together (both ``(N, C, S0, S1, S2)``), per sample.

    Upstream: while ``random() < rate`` (at most ``max_flips`` times) flip along an axis drawn from
    ``{0, 1, 2}`` of the ``(C, X, Y, Z)`` sample. That is a **bug**: axis 0 is the channel axis (a no-op
    for one channel, one draw in three wasted) and the last spatial axis is never flipped. Here the axis is
    drawn from the three spatial axes; ``legacy_flip=True`` draws from ``(C, S0, S1)`` as upstream. Two
    flips of one axis cancel, so only the parity per axis is applied.

    Returns ``(x, target, parity)``: new tensors (``target`` None if not given) and ``(N, 3)`` bool parity.
    """
    _check_batch(x, "x")
    _check_generator(generator, x.device)
    parity = _flip_parity(x.shape[0], generator, x.device, rate, max_flips)
    x = x.clone()
    _apply_flips_(x, parity, legacy_flip)
    if target is not None:
        target = target.clone()
        _apply_flips_(target, parity, legacy_flip)
    return x, target, parity


# ----------------------------------------------------------------------------------- pixel shuffling
@lru_cache(maxsize=64)
def _block_templates(spatial: tuple[int, int, int], device: torch.device = torch.device("cpu")):
    """Block sizes ``(T, 3)`` (all ``(s0, s1, s2)`` with ``1 <= s <= S // 10``, C order) and, per size, the
    flat offsets of the block's voxels from its first voxel in a C-ordered volume of shape ``spatial``."""
    if device.type != "cpu":
        sizes, templates = _block_templates(spatial)
        return sizes.to(device), [t.to(device) for t in templates]
    _, d1, d2 = spatial
    max_size = tuple(s // 10 for s in spatial)
    sizes, templates = [], []
    for s0 in range(1, max_size[0] + 1):
        for s1 in range(1, max_size[1] + 1):
            for s2 in range(1, max_size[2] + 1):
                a = torch.arange(s0).view(-1, 1, 1) * (d1 * d2)
                b = torch.arange(s1).view(1, -1, 1) * d2
                c = torch.arange(s2).view(1, 1, -1)
                sizes.append((s0, s1, s2))
                templates.append((a + b + c).flatten())
    return torch.tensor(sizes, dtype=torch.int64), templates


@lru_cache(maxsize=8)
def _arange_cached(n: int, device: torch.device) -> torch.Tensor:
    return torch.arange(n, device=device, dtype=torch.int64)


def _argsort_small_ints(keys: torch.Tensor, bound: int) -> torch.Tensor:
    """Stable argsort of integers in ``[0, bound)`` (on CPU numpy's radix sort when they fit in int16)."""
    if keys.device.type == "cpu":
        small = keys.numpy().astype(np.int16 if bound <= 1 << 15 else np.int64)
        return torch.from_numpy(np.argsort(small, kind="stable"))
    return torch.sort(keys, stable=True).indices


def _sort_rows_(packed: torch.Tensor) -> torch.Tensor:
    """Sort every row of an int64 matrix in place (numpy's vectorised sort on CPU, ``torch.sort`` else)."""
    if packed.device.type == "cpu":
        packed.numpy().sort(axis=1)
        return packed
    return packed.copy_(torch.sort(packed, dim=1).values)


def local_pixel_shuffle(x: torch.Tensor, generator: torch.Generator | None = None, n_blocks: int = 10_000,
                        return_blocks: bool = False, chunk_voxels: int = 1 << 19):
    """Local pixel shuffling of every sample of ``x`` ``(N, C, S0, S1, S2)`` (always applied; the
    probability is :func:`genesis_corrupt`'s business). Returns a new tensor.

    Per sample, ``n_blocks`` blocks: size per axis ``randint(1, S // 10)``, start ``randint(0, S - size)``.
    Each block's voxels are read from the **original** sample and written back in a uniformly random order
    (one permutation shared by all channels); blocks may overlap and later blocks win, exactly as the
    sequential upstream loop.

    How it is batched: blocks are grouped by size and a group's voxels enumerated with a per-size offset
    template. A block's permutation sorts its template offsets by random keys packed into the same int64
    (``key << bits | offset`` with 31 random bits: ties, which would keep two voxels in place, have
    probability below ``n**2 / 2**32`` per block). One ``scatter_reduce(amax)`` of
    ``block order << bits | source voxel`` into each destination voxel then keeps the last block that wrote
    the voxel together with its source; voxels no block covers keep their value. Samples are processed
    ``chunk_voxels`` voxels at a time so the per-voxel table stays in cache.

    With ``return_blocks`` also returns ``(starts, sizes)``, two ``(N, n_blocks, 3)`` int64 tensors in block
    order (the block at index ``n_blocks - 1`` is written last).
    """
    _check_batch(x, "x")
    _check_generator(generator, x.device)
    out = x.clone()
    blocks = _shuffle_rows_(out, None, generator, n_blocks, chunk_voxels, return_blocks)
    return (out, blocks) if return_blocks else out


def _shuffle_rows_(x: torch.Tensor, rows, generator, n_blocks: int, chunk_voxels: int = 1 << 19,
                   return_blocks: bool = False):
    """Shuffle the samples ``rows`` of ``x`` in place (all samples when ``rows`` is None)."""
    spatial = tuple(int(s) for s in x.shape[2:])
    _require(spatial, _shuffle_ok, "local pixel shuffling needs every spatial axis >= 10 voxels")
    rows = _rows(rows, x.shape[0], x.device)
    v = spatial[0] * spatial[1] * spatial[2]
    per_chunk = max(1, chunk_voxels // v)
    blocks = []
    for lo in range(0, rows.numel(), per_chunk):
        idx = rows[lo:lo + per_chunk]
        out, b = _shuffle_chunk(x.index_select(0, idx), n_blocks, generator, return_blocks)
        x.index_copy_(0, idx, out)
        blocks.append(b)
    if not return_blocks:
        return None
    if not blocks:
        empty = torch.zeros((0, n_blocks, 3), dtype=torch.int64, device=x.device)
        return empty, empty.clone()
    return torch.cat([b[0] for b in blocks]), torch.cat([b[1] for b in blocks])


def _shuffle_chunk(x: torch.Tensor, nb: int, generator, return_blocks: bool):
    m, c = x.shape[:2]
    spatial = tuple(int(s) for s in x.shape[2:])
    d1, d2 = spatial[1], spatial[2]
    v = spatial[0] * d1 * d2
    mv = m * v
    device = x.device
    size_table, templates = _block_templates(spatial, device)
    n_types = size_table.shape[0]
    src_bits = max(1, (mv - 1).bit_length())
    if nb.bit_length() + src_bits > 62 or v >= 1 << 31:
        raise ValueError(f"local pixel shuffling: too many blocks or voxels ({nb} blocks, {v} voxels per sample)")

    # a uniform size per axis == a uniform size type; blocks grouped by type for the loop below
    btype = torch.randint(0, n_types, (m * nb,), generator=generator, device=device)
    by_type = _argsort_small_ints(btype, n_types).to(device)      # grouped block -> original block index
    counts = torch.bincount(btype, minlength=n_types).tolist()
    sizes = size_table.index_select(0, btype.index_select(0, by_type))
    span = torch.tensor(spatial, device=device) - sizes + 1
    starts = (_rand((m * nb, 3), generator, device, torch.float64) * span).to(torch.int64)
    sample = torch.div(by_type, nb, rounding_mode="floor")
    order = by_type - sample * nb + 1                             # 1 .. nb: later blocks are larger
    base = sample * v + starts[:, 0] * (d1 * d2) + starts[:, 1] * d2 + starts[:, 2]
    order_base = (order << src_bits) + base

    # every block voxel once: dest = block start + template offset; key = (order << src_bits) | source,
    # source = block start + permuted template offset (row sort of random << off_bits | offset)
    lengths = [cnt * tm.numel() for cnt, tm in zip(counts, templates)]
    total = sum(lengths)
    off_bits = max(1, (spatial[0] // 10 - 1) * d1 * d2 + (d1 // 10 - 1) * d2 + d2 // 10 - 1).bit_length()
    packed = torch.empty(total, dtype=torch.int32, device=device).random_(generator=generator)
    packed = packed.to(torch.int64).bitwise_left_shift_(off_bits)     # 31 random bits above the offset
    dest = torch.empty(total, dtype=torch.int64, device=device)
    mask = (1 << off_bits) - 1
    pos = blk = 0
    for t, cnt in enumerate(counts):
        if cnt == 0:
            continue
        tmpl = templates[t]
        shape = (cnt, tmpl.numel())
        rows = packed[pos:pos + lengths[t]].view(shape)
        torch.add(base[blk:blk + cnt].unsqueeze(1), tmpl, out=dest[pos:pos + lengths[t]].view(shape))
        _sort_rows_(rows.bitwise_or_(tmpl)).bitwise_and_(mask)      # template offsets, permuted per row
        rows.add_(order_base[blk:blk + cnt].unsqueeze(1))
        pos += lengths[t]
        blk += cnt
    # per voxel: max over its writers of the key; initially (0 << src_bits) | itself
    keys = _arange_cached(mv, device).clone()
    keys.scatter_reduce_(0, dest, packed, reduce="amax")
    src = keys.bitwise_and_((1 << src_bits) - 1)
    if c == 1:
        out = x.reshape(mv).index_select(0, src).view_as(x)
    else:
        flat = x.reshape(m, c, v).transpose(1, 2).reshape(mv, c)
        out = flat.index_select(0, src).view(m, v, c).transpose(1, 2).reshape(x.shape)
    blocks = None
    if return_blocks:
        st, sz = torch.empty_like(starts), torch.empty_like(sizes)
        st[by_type] = starts
        sz[by_type] = sizes
        blocks = (st.view(m, nb, 3), sz.view(m, nb, 3))
    return out, blocks


# ----------------------------------------------------------------------------------- Bezier intensity
def bezier_lut(control: torch.Tensor, inverted: torch.Tensor, n_samples: int = 4096,
               lut_size: int = 8192) -> torch.Tensor:
    """Lookup tables of Genesis Bezier intensity maps, one row per sample, float32 ``(M, lut_size)``.

    ``control`` ``(M, 4)``: the inner control points ``a, b, c, d`` of the curve through ``[0, 0], [a, b],
    [c, d], [1, 1]``; ``inverted`` ``(M,)`` bool. Row ``i`` is the map at ``lut_size`` equally spaced inputs
    in ``[0, 1]``. Plain: increasing, 0 -> 0 and 1 -> 1. Inverted (upstream sorts only the x samples, so y
    keeps its order in t): decreasing, 0 -> 1 and 1 -> 0. Computed in float64, returned as float32.
    """
    device = control.device
    ctl = control.to(torch.float64)
    m = ctl.shape[0]
    # upstream samples t in [0, 1] with t = 0 at the last point [1, 1]; s = 1 - t runs the other way, so the
    # samples come out in increasing order directly (np.sort of monotone samples == reversing them)
    s = torch.linspace(0.0, 1.0, n_samples, device=device, dtype=torch.float64)
    t = 1.0 - s
    weights = torch.stack([3.0 * t * t * s,        # weight of [a, b] (upstream: C(3,1) t^2 (1-t))
                           3.0 * t * s * s,        # weight of [c, d]
                           s * s * s])             # weight of [1, 1]
    ones = torch.ones(m, 1, device=device, dtype=torch.float64)
    coef = torch.cat([torch.cat([ctl[:, 0:1], ctl[:, 2:3], ones], 1),      # x: a, c, 1
                      torch.cat([ctl[:, 1:2], ctl[:, 3:4], ones], 1)])     # y: b, d, 1
    curve = coef @ weights                         # (2M, K): x(1 - s) and y(1 - s), both increasing
    xs, ys = curve[:m], curve[m:]
    inv = inverted.to(device).view(-1, 1)
    ys = torch.where(inv, ys.flip(-1), ys)         # inverted: y keeps its order in upstream's t
    grid = torch.linspace(0.0, 1.0, lut_size, device=device, dtype=torch.float64)
    # np.interp(grid, xs, ys): idx[g] = #{k: xs[k] <= grid[g]} (searchsorted right), counted with a
    # histogram because both xs and the grid are sorted (O(K + G), much faster than searchsorted on CPU);
    # round-off at exact ties only moves the segment by one, where both give the same value
    bins = (xs * (lut_size - 1)).ceil_().clamp_(0, lut_size - 1).to(torch.int64)
    hist = torch.zeros(xs.shape[0], lut_size, dtype=torch.int64, device=device)
    hist.scatter_add_(1, bins, torch.ones_like(bins))
    idx = hist.cumsum_(1).clamp_(1, n_samples - 1)
    x0, x1 = xs.gather(1, idx - 1), xs.gather(1, idx)
    y0, y1 = ys.gather(1, idx - 1), ys.gather(1, idx)
    # xs runs exactly from 0 to 1 (the end points), so every grid value lies inside; dx == 0 only for
    # repeated samples, where grid == x0 and the weight is 0
    w = ((grid - x0) / (x1 - x0).clamp_min_(1e-300)).clamp_(0.0, 1.0)
    lut = y1.sub_(y0).mul_(w).add_(y0)
    lut[:, 0], lut[:, -1] = ys[:, 0], ys[:, -1]     # np.interp at the end points (x = 0 and x = 1 exactly)
    return lut.to(torch.float32)


def _apply_lut_rows_(x: torch.Tensor, rows: torch.Tensor, lut: torch.Tensor) -> None:
    """``x[rows[i]] = lut_i(x[rows[i]])`` in place, linear interpolation, inputs clamped to ``[0, 1]``. One
    sample at a time, which keeps the temporaries in cache (3-4x faster than one batched pass on CPU)."""
    g = lut.shape[1]
    lut = lut.to(x.dtype)
    slope = lut[:, 1:] - lut[:, :-1]
    for i, r in enumerate(rows.tolist()):
        pos = x[r].view(-1).clamp_(0.0, 1.0).mul_(g - 1)         # in place: x[r] is overwritten below
        i0 = pos.to(torch.int32).clamp_(max=g - 2)
        w = pos.sub_(i0)
        torch.addcmul(lut[i].index_select(0, i0), slope[i].index_select(0, i0), w, out=pos)


def bezier_map(x: torch.Tensor, control: torch.Tensor, inverted: torch.Tensor, n_samples: int = 4096,
               lut_size: int = 8192) -> torch.Tensor:
    """Map every sample of ``x`` ``(M, ...)`` through its Bezier curve (``control`` ``(M, 4)``, ``inverted``
    ``(M,)``; :func:`bezier_lut`). Inputs outside ``[0, 1]`` are clamped, like ``np.interp``. New tensor."""
    out = x.contiguous().clone()
    _apply_lut_rows_(out, torch.arange(x.shape[0]), bezier_lut(control, inverted, n_samples, lut_size))
    return out


def _nonlinear_rows_(x, rows, generator, invert_rate, n_samples, lut_size):
    rows = _rows(rows, x.shape[0], x.device)
    control = _rand((rows.numel(), 4), generator, x.device, torch.float64)
    inverted = _rand((rows.numel(),), generator, x.device) < invert_rate
    for lo in range(0, rows.numel(), 64):          # a few rows at a time: the tables stay in cache
        hi = lo + 64
        _apply_lut_rows_(x, rows[lo:hi], bezier_lut(control[lo:hi], inverted[lo:hi], n_samples, lut_size))
    return control, inverted


def nonlinear(x: torch.Tensor, generator: torch.Generator | None = None, invert_rate: float = 0.5,
              n_samples: int = 4096, lut_size: int = 8192):
    """The Genesis non-linear intensity transform on every sample of ``x`` ``(M, C, S0, S1, S2)`` (always
    applied): ``a, b, c, d`` uniform in ``[0, 1)``, inverting with probability ``invert_rate``; the channels
    of a sample share its curve. Returns ``(y, control, inverted)``."""
    _check_batch(x, "x")
    _check_generator(generator, x.device)
    out = x.contiguous().clone()
    control, inverted = _nonlinear_rows_(out, None, generator, invert_rate, n_samples, lut_size)
    return out, control, inverted


# ------------------------------------------------------------------------------------------ painting
def _loop_active(m: int, max_count: int, rate: float, generator, device) -> torch.Tensor:
    """Which iterations of ``while cnt > 0 and random() < rate`` (``cnt = max_count``) run: ``(m, max_count)``."""
    go = _rand((m, max_count), generator, device) < rate
    return torch.cumprod(go.to(torch.int64), dim=1).bool()


def _draw_boxes(m, spatial, k, size_lo, size_hi, generator, device, complement: bool):
    """``k`` boxes per sample: size per axis ``randint(lo(S), hi(S))`` (``S - randint(...)`` when
    ``complement``), start ``randint(3, S - size - 3)``; ``(m, k, 3)`` starts and sizes."""
    starts, sizes = [], []
    for s in spatial:
        r = _randint_incl(size_lo(s), size_hi(s), (m, k), generator, device)
        size = s - r if complement else r
        sizes.append(size)
        starts.append(_randint_incl(3, s - size - 3, (m, k), generator, device))
    return torch.stack(starts, -1), torch.stack(sizes, -1)


def _box_lists(starts, sizes, active):
    st, sz, ac = starts.tolist(), sizes.tolist(), active.tolist()
    return [[tuple(slice(a, a + n) for a, n in zip(st[i][k], sz[i][k])) for k in range(len(ac[i])) if ac[i][k]]
            for i in range(len(ac))]


def inpaint_boxes(m: int, spatial, generator=None, max_blocks: int = 5, continue_rate: float = 0.95,
                  device="cpu"):
    """In-painting geometry for ``m`` samples of spatial shape ``spatial``: ``(starts, sizes, active)``,
    ``(m, max_blocks, 3)`` int64 twice and ``(m, max_blocks)`` bool. Box k is painted when ``active[:, k]``
    (``while random() < continue_rate``, at most ``max_blocks`` times); size per axis
    ``randint(S // 6, S // 3)``, start ``randint(3, S - size - 3)``."""
    _require(tuple(spatial), _inpaint_ok, "in-painting needs every spatial axis >= 8 voxels")
    active = _loop_active(m, max_blocks, continue_rate, generator, device)
    starts, sizes = _draw_boxes(m, spatial, max_blocks, lambda s: s // 6, lambda s: s // 3, generator,
                                device, complement=False)
    return starts, sizes, active


def outpaint_windows(m: int, spatial, generator=None, max_extra: int = 4, continue_rate: float = 0.95,
                     device="cpu"):
    """Out-painting geometry for ``m`` samples: ``(starts, sizes, active)`` with ``1 + max_extra`` windows,
    the first always active, the others while ``random() < continue_rate``; size per axis
    ``S - randint(3 * S // 7, 4 * S // 7)``, start ``randint(3, S - size - 3)``."""
    _require(tuple(spatial), _outpaint_ok, "out-painting needs every spatial axis >= 14 voxels")
    extra = _loop_active(m, max_extra, continue_rate, generator, device)
    active = torch.cat([torch.ones((m, 1), dtype=torch.bool, device=device), extra], dim=1)
    starts, sizes = _draw_boxes(m, spatial, max_extra + 1, lambda s: 3 * s // 7, lambda s: 4 * s // 7,
                                generator, device, complement=True)
    return starts, sizes, active


def _inpaint_rows_(x, rows, generator, max_blocks, continue_rate):
    rows = _rows(rows, x.shape[0], x.device)
    starts, sizes, active = inpaint_boxes(rows.numel(), tuple(x.shape[2:]), generator, max_blocks,
                                          continue_rate, x.device)
    for r, boxes in zip(rows.tolist(), _box_lists(starts, sizes, active)):
        for box in boxes:
            x[(r, slice(None)) + box].uniform_(generator=generator)
    return starts, sizes, active


def _outpaint_rows_(x, rows, generator, max_extra, continue_rate):
    rows = _rows(rows, x.shape[0], x.device)
    starts, sizes, active = outpaint_windows(rows.numel(), tuple(x.shape[2:]), generator, max_extra,
                                             continue_rate, x.device)
    for r, boxes in zip(rows.tolist(), _box_lists(starts, sizes, active)):
        kept = [x[(r, slice(None)) + box].clone() for box in boxes]
        x[r].uniform_(generator=generator)
        for box, values in zip(boxes, kept):
            x[(r, slice(None)) + box] = values
    return starts, sizes, active


def in_painting(x: torch.Tensor, generator: torch.Generator | None = None, max_blocks: int = 5,
                continue_rate: float = 0.95, return_boxes: bool = False):
    """In-painting on every sample of ``x`` ``(M, C, S0, S1, S2)`` (always applied). New tensor.

    While ``random() < continue_rate`` (at most ``max_blocks`` times, so no box at all with probability
    ``1 - continue_rate``): a box of size ``randint(S // 6, S // 3)`` per axis at ``randint(3, S - size - 3)``
    is filled with uniform noise in ``[0, 1)`` (per voxel and channel; the boxes are shared by all channels).
    With ``return_boxes`` also returns ``(starts, sizes, active)``: ``(M, max_blocks, 3)`` int64 twice and
    ``(M, max_blocks)`` bool (which boxes were painted).
    """
    _check_batch(x, "x")
    _check_generator(generator, x.device)
    out = x.clone()
    boxes = _inpaint_rows_(out, None, generator, max_blocks, continue_rate)
    return (out, boxes) if return_boxes else out


def out_painting(x: torch.Tensor, generator: torch.Generator | None = None, max_extra: int = 4,
                 continue_rate: float = 0.95, return_boxes: bool = False):
    """Out-painting on every sample of ``x`` ``(M, C, S0, S1, S2)`` (always applied). New tensor.

    The sample becomes uniform noise in ``[0, 1)`` except one window of the original, plus up to
    ``max_extra`` more windows while ``random() < continue_rate``. Window size per axis
    ``S - randint(3 * S // 7, 4 * S // 7)``, start ``randint(3, S - size - 3)``; windows are shared by all
    channels. With ``return_boxes`` also returns ``(starts, sizes, active)`` (``max_extra + 1`` windows).
    """
    _check_batch(x, "x")
    _check_generator(generator, x.device)
    out = x.clone()
    boxes = _outpaint_rows_(out, None, generator, max_extra, continue_rate)
    return (out, boxes) if return_boxes else out


# ------------------------------------------------------------------------------------------ pipeline
def genesis_corrupt(batch: torch.Tensor, generator: torch.Generator | None = None,
                    config: GenesisConfig = GenesisConfig()) -> GenesisResult:
    """One Models Genesis training batch from clean cubes ``batch`` ``(N, C, S0, S1, S2)`` in ``[0, 1]``.

    Per sample, in the upstream order, each with its own probability (``config``):

    1. flip input and target together (``flip_rate`` per flip, up to ``max_flips``; the upstream axis bug
       is fixed, see :func:`flip`);
    2. local pixel shuffle (``local_rate``; :func:`local_pixel_shuffle`);
    3. Bezier intensity map (``nonlinear_rate``; inverting with ``invert_rate``; :func:`nonlinear`);
    4. in-painting (``paint_rate * inpaint_rate`` = 18 %) or out-painting
       (``paint_rate * (1 - inpaint_rate)`` = 72 %), else neither (10 %).

    Every spatial axis must have at least 14 voxels (the out-painting geometry). The input is not modified.
    Returns :class:`GenesisResult` ``(damaged, target, applied)``.
    """
    _check_batch(batch)
    _check_generator(generator, batch.device)
    spatial = tuple(batch.shape[2:])
    _require(spatial, lambda s: _outpaint_ok(s) and _inpaint_ok(s) and _shuffle_ok(s),
             "genesis_corrupt needs every spatial axis >= 14 voxels")
    n, c = batch.shape[:2]
    device = batch.device

    parity = _flip_parity(n, generator, device, config.flip_rate, config.max_flips)
    target = batch.contiguous().clone()
    _apply_flips_(target, parity, config.legacy_flip)
    x = target.clone()
    if config.per_channel:
        x = x.view(n * c, 1, *spatial)
    m = x.shape[0]

    shuffled = _rand((m,), generator, device) < config.local_rate
    nl = _rand((m,), generator, device) < config.nonlinear_rate
    paint = _rand((m,), generator, device) < config.paint_rate
    inner = _rand((m,), generator, device) < config.inpaint_rate
    inpainted, outpainted = paint & inner, paint & ~inner

    _shuffle_rows_(x, shuffled.nonzero().flatten(), generator, config.shuffle_blocks)
    inverted = torch.zeros(m, dtype=torch.bool, device=device)
    rows = nl.nonzero().flatten()
    _, inv = _nonlinear_rows_(x, rows, generator, config.invert_rate, config.bezier_samples,
                              config.bezier_lut_size)
    inverted[rows] = inv
    _inpaint_rows_(x, inpainted.nonzero().flatten(), generator, config.inpaint_max_blocks,
                   config.paint_continue_rate)
    _outpaint_rows_(x, outpainted.nonzero().flatten(), generator, config.outpaint_max_extra,
                    config.paint_continue_rate)

    applied = {"flipped": parity, "shuffled": shuffled, "nonlinear": nl, "inverted": inverted,
               "inpainted": inpainted, "outpainted": outpainted}
    return GenesisResult(x.view(batch.shape), target, applied)
