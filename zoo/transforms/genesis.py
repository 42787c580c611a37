"""Models Genesis corruptions, batched on torch tensors: flip, local pixel shuffle, non-linear (Bezier)
intensity, in-painting and out-painting (upstream: MrGiovanni/ModelsGenesis ``pytorch/utils.py``,
``generate_pair``; described in ``docs/pretraining-recipes.md`` §1.3; re-implemented step for step in
:mod:`zoo.transforms.genesis_reference`, the baseline of tests and ``benchmarks/genesis_transforms.py``).

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
(the same generator state and input give the same output on the same device and the same torch and numpy
versions); with ``generator=None`` torch's default generator is used. Results are *statistically*
equivalent to upstream (:mod:`zoo.transforms.genesis_reference` re-implements its loop step for step), not
draw-for-draw identical: the random numbers come from other generators, in another order.

Two code paths with the same laws (tested against each other and against the upstream loop):

* **CPU, float32/float64** (:func:`genesis_corrupt`, :func:`local_pixel_shuffle`, the Bezier tables): numpy
  on the tensors' memory, one core whatever torch's thread count. Each call draws one seed (two 62-bit
  integers) from ``generator`` and takes every other random number from a numpy PCG64 seeded with it, several
  times faster than torch's CPU generator; numpy's vectorised row sorts and radix sort stand in for
  ``torch.sort``, which is about ten times slower on CPU. :func:`genesis_corrupt` also leaves out work whose
  result is overwritten: for an out-painted sample only the shuffle blocks that overlap a kept window are
  computed and the Bezier map is applied to the windows only.
* **Other devices and dtypes** (the training device, e.g. CUDA): torch operations only, every random number
  from ``generator``.

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

import threading
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
    bezier_samples_reference: int = 100_000  #: upstream's curve samples (unused here: kept for old configs)
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
    """Flip sample ``i`` of ``x`` in place along the axes where ``parity[i]`` is set, all in one pass."""
    dims = (0, 1, 2) if legacy_flip else (1, 2, 3)         # axes of one sample (C, S0, S1, S2)
    for i, row in enumerate(parity.tolist()):
        axes = [d for d, on in zip(dims, row) if on]
        if axes:
            x[i] = x[i].flip(axes)


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

    On CPU (float32/float64) the numpy path does the same with numpy primitives (:func:`_np_shuffle`).
    """
    _check_batch(x, "x")
    _check_generator(generator, x.device)
    if _numpy_path(x):
        x = x.contiguous()
        out = torch.empty_like(x)
        blocks = _np_shuffle_rows_(out, x, None, n_blocks, _np_rng(generator, x.device), None, return_blocks)
        return (out, blocks) if return_blocks else out
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


# ------------------------------------------------------------------ pixel shuffling, CPU (numpy) path
_CPU_NUMPY = True           #: CPU float32/float64 tensors take the numpy paths below (tests switch it off)


def _numpy_path(x: torch.Tensor) -> bool:
    return _CPU_NUMPY and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def _np_rng(generator, device) -> np.random.Generator:
    """A numpy PCG64 generator seeded with two 62-bit draws from ``generator`` (so the same generator state
    gives the same numbers). On CPU the bulk random bits come from it: numpy's PCG64 makes them several
    times faster than ``torch.Generator``'s Mersenne twister."""
    seed = torch.randint(0, 1 << 62, (2,), generator=generator, device=device, dtype=torch.int64).tolist()
    return np.random.Generator(np.random.PCG64(seed))


_WORKSPACE = threading.local()
_NP_ROW = 64                    #: block voxels per sort row in _np_shuffle (several small blocks per row)


def _workspace(name: str, n: int, dtype) -> np.ndarray:
    """A reusable 1-D scratch array of ``n`` elements (per thread; grown on demand): saves the page faults of
    fresh multi-megabyte buffers on every call. The shuffle keeps about 30 MB here (8 cubes of 32 x 64 x 64
    per call at most)."""
    cache = _WORKSPACE.__dict__
    buf = cache.get(name)
    nbytes = n * np.dtype(dtype).itemsize
    if buf is None or buf.nbytes < nbytes:
        buf = cache[name] = np.empty(max(nbytes, 1 << 20), dtype=np.uint8)
    return buf[:nbytes].view(dtype)


class _NpBlockTables(NamedTuple):
    sizes: np.ndarray           # (T, 3) int64, C order over (s0, s1, s2), 1 <= s <= S // 10
    counts: np.ndarray          # (T,) voxels per block of each type
    offsets: list               # per type: int64 flat offsets of the block's voxels from its first voxel
    offsets32: list             # the same, int32
    sizes32: np.ndarray         # sizes, int32
    span: np.ndarray            # (T, 3) float64: number of possible starts, S - s + 1
    off_bits: int               # bits of the largest offset
    arange_v: np.ndarray        # int32 0 .. V - 1
    per_row: np.ndarray         # (T,) blocks per sort row: _NP_ROW // voxels (at least 1)
    row_keys: list              # per type: (block index in the row << 46) | offset, for one row
    off_bits_span: int          # largest offset + 1: room past the volumes for the dummy blocks


@lru_cache(maxsize=16)
def _np_block_tables(spatial: tuple[int, int, int]) -> _NpBlockTables:
    sizes, offsets = _block_templates(spatial)
    sizes = sizes.numpy()
    offsets = [t.numpy() for t in offsets]
    v = spatial[0] * spatial[1] * spatial[2]
    per_row = np.maximum(1, _NP_ROW // sizes.prod(1))
    row_keys = [((np.arange(k, dtype=np.int64)[:, None] << 46) | o[None, :]).ravel() for k, o in zip(per_row, offsets)]
    return _NpBlockTables(sizes, sizes.prod(1), offsets, [o.astype(np.int32) for o in offsets],
                          sizes.astype(np.int32), (np.array(spatial) + 1 - sizes).astype(np.float64),
                          max(1, int(max(o[-1] for o in offsets)).bit_length()), np.arange(v, dtype=np.int32),
                          per_row, row_keys, int(max(o[-1] for o in offsets)) + 1)


def _np_blocks_hit(starts: np.ndarray, sizes: np.ndarray, boxes, spatial) -> np.ndarray:
    """Which blocks (first voxels ``starts``, sizes ``sizes``: ``(3, K)`` int32) overlap at least one of
    ``boxes`` (``(start, size)`` pairs of 3-tuples). Per axis a small table gives, for every (start, size),
    the bit mask of the boxes that a block overlaps along that axis (8 boxes per byte); a block overlaps a box
    when its three masks share that box's bit."""
    lo = np.array([b[0] for b in boxes], dtype=np.int64)               # (boxes, 3)
    hi = lo + np.array([b[1] for b in boxes], dtype=np.int64)
    hit = None
    for d, s in enumerate(spatial):
        max_size = s // 10 + 1
        st = np.arange(s)[:, None, None]
        ends = st + np.arange(max_size)[None, :, None]
        table = np.packbits((st < hi[:, d]) & (ends > lo[:, d]), axis=-1, bitorder="little")  # (s, size, bytes)
        idx = starts[d] * max_size
        idx += sizes[d]
        table = table.reshape(s * max_size, -1)
        mask = table[:, 0].take(idx) if table.shape[1] == 1 else table[idx]
        hit = mask if hit is None else np.bitwise_and(hit, mask, out=hit)
    return hit != 0 if hit.ndim == 1 else hit.any(axis=1)


def _np_shuffle(srcs, dsts, rng: np.random.Generator, nb: int, keep_boxes=None, return_blocks: bool = False):
    """Local pixel shuffling, numpy on one core: ``dsts[i]`` becomes the shuffled ``srcs[i]`` (C-contiguous
    float arrays ``(C, S0, S1, S2)`` of one shape and dtype; a destination must not share memory with the
    sources). Returns ``(blocks, sources)``: ``blocks`` is ``(starts, sizes)``, ``(M, nb, 3)`` int64 in block
    order, with ``return_blocks`` (else None); where ``dsts[i]`` is None nothing is written and
    ``sources[i]`` holds instead, for every voxel, the flat index in ``srcs[i]`` of its shuffled value (int32
    ``(S0, S1, S2)``), so that a caller needing a few regions only can gather just those.

    The algorithm of :func:`_shuffle_chunk`, arranged for numpy on one core:

    * geometry: a uniform size type per block (so the size per axis is uniform and independent), start
      ``floor(u * (S - size + 1))`` per axis from a float64 ``u``; blocks grouped by type (then sample and
      first slice, so that consecutive blocks write near each other) with numpy's radix sort of an int16 key;
    * a block's permutation: its template offsets sorted by 32 random bits each (``bits << off_bits |
      offset`` in one int64; a tie, which keeps two voxels in template order, has probability below
      ``n**2 / 2**33`` per block). The sorted offsets are the block's **destinations**, its sources stay in
      template order: a uniform permutation and its inverse have the same law, so this is the upstream
      ``dest[j] = src[perm[j]]``. Small blocks of one type share a sort row (``_NP_ROW`` voxels), their index
      in the row above the random bits, which saves numpy's per-row cost; padding blocks write past the end;
    * last writer wins: ``order << bits | source`` of every block voxel goes to its destination through one
      ``scatter_reduce(amax)``; voxels no block covers keep ``0 << bits | themselves``;
    * ``keep_boxes``: per sample None or a list of ``(start, size)`` boxes; blocks of that sample that overlap
      none of them are dropped before any per-voxel work (the voxels they would write are discarded by the
      caller: :func:`genesis_corrupt` passes the windows that out-painting keeps).
    """
    m, c = len(srcs), srcs[0].shape[0]
    spatial = tuple(int(s) for s in srcs[0].shape[1:])
    d1, d2 = spatial[1], spatial[2]
    v = spatial[0] * d1 * d2
    tab = _np_block_tables(spatial)
    n_types = len(tab.sizes)
    vbits = max(1, (v - 1).bit_length())
    if nb.bit_length() + vbits > 62 or tab.off_bits > 31 or n_types >= 1 << 15:
        raise ValueError(f"local pixel shuffling: too many blocks or voxels ({nb} blocks, {v} voxels per sample)")
    key_dtype = np.int32 if nb.bit_length() + vbits <= 31 else np.int64

    # geometry in block order (sample-major), per axis contiguous
    mb = m * nb
    btype = rng.integers(0, n_types, size=mb, dtype=np.int16)
    bt = btype.astype(np.intp)
    u = rng.random((3, mb))
    starts = np.empty((3, mb), dtype=np.int32)
    for d in range(3):
        u[d] *= tab.span[:, d].take(bt)
        starts[d] = u[d]                               # floor: u * span >= 0
    sizes = None
    if return_blocks or keep_boxes is not None:
        sizes = np.stack([tab.sizes32[:, d].take(bt) for d in range(3)])
    blocks = None
    if return_blocks:
        blocks = (starts.T.reshape(m, nb, 3).astype(np.int64), sizes.T.reshape(m, nb, 3).astype(np.int64))
    # grouping key: type, then sample, then first slice (binned so that the key fits in int16, which numpy
    # sorts with a radix sort): consecutive blocks of a type then write near each other
    z_bins = max(1, min(spatial[0], (1 << 15) // (n_types * m)))
    group = btype.astype(np.int32)
    group *= m
    group += np.arange(m, dtype=np.int32).repeat(nb)
    group *= z_bins
    group += starts[0] * z_bins // spatial[0]
    base = starts[0] * (d1 * d2)
    base += starts[1] * d2
    base += starts[2]
    block_id = None
    if keep_boxes is not None and any(b is not None for b in keep_boxes):
        keep = np.ones(mb, dtype=bool)
        for i, boxes in enumerate(keep_boxes):
            if boxes is not None:
                sl = slice(i * nb, (i + 1) * nb)
                keep[sl] = _np_blocks_hit(starts[:, sl], sizes[:, sl], boxes, spatial)
        block_id = np.flatnonzero(keep)
        btype, base, group = btype[block_id], base[block_id], group[block_id]
    by = np.argsort(group.astype(np.int16) if n_types * m * z_bins <= 1 << 15 else group, kind="stable")
    counts = np.bincount(btype, minlength=n_types)
    base = base[by]
    gid = by if block_id is None else block_id[by]
    sample = (gid // nb).astype(np.int32)
    order = (gid - sample * nb + 1).astype(key_dtype)
    order_src = (order << vbits) + base                            # order << vbits | block start (local)
    dest_base = sample * v + base if m * v < 1 << 31 else sample.astype(np.int64) * v + base

    # Rows of up to _NP_ROW block voxels: k = _NP_ROW // n blocks of a type share a sort row (the block's
    # index in the row sits above the random bits, so each block still sorts on its own), which spares the
    # per-row cost of numpy's sort for small blocks. Counts are padded to multiples of k with dummy blocks
    # that write past the end of the volumes.
    n_t, k_t = tab.counts, tab.per_row
    padded = -(-counts // k_t) * k_t
    pad_start = np.cumsum(padded) - padded
    real_at = np.repeat(pad_start - (np.cumsum(counts) - counts), counts) + np.arange(len(base))
    dest_p = np.full(int(padded.sum()), m * v, dtype=np.int64)              # dummies: past the end
    order_p = np.zeros(len(dest_p), dtype=key_dtype)
    dest_p[real_at], order_p[real_at] = dest_base, order_src
    total = int(padded @ n_t)
    mask = (1 << tab.off_bits) - 1
    keys = _workspace("keys", total, np.int64)
    bits = rng.bit_generator.random_raw((total + 1) // 2).view(np.uint32)[:total]
    np.left_shift(bits, tab.off_bits, out=keys, dtype=np.int64)   # 32 random bits above the offset
    val = _workspace("val", total, key_dtype)
    offsets = tab.offsets32 if key_dtype is np.int32 else tab.offsets
    pos = blk = 0
    for t in np.flatnonzero(counts).tolist():
        cnt, n, k = int(padded[t]), int(n_t[t]), int(k_t[t])
        length = cnt * n
        rows = keys[pos:pos + length].reshape(cnt // k, k * n)
        rows |= tab.row_keys[t]                # block index in the row | template offset
        rows.sort(axis=1)
        rows &= mask                           # each block's template offsets in a uniform random order
        rows = rows.reshape(cnt, n)
        rows += dest_p[blk:blk + cnt, None]    # -> destination voxels (global)
        np.add(order_p[blk:blk + cnt, None], offsets[t], out=val[pos:pos + length].reshape(cnt, n))
        pos += length
        blk += cnt
    winner = _workspace("winner", m * v + tab.off_bits_span, key_dtype)
    winner[:m * v].reshape(m, v)[:] = tab.arange_v
    torch.from_numpy(winner).scatter_reduce_(0, torch.from_numpy(keys), torch.from_numpy(val), reduce="amax")
    winner = winner[:m * v]
    winner &= (1 << vbits) - 1                 # the source voxel, local to the sample
    winner = winner.reshape(m, v)
    sources = [None] * m
    for i in range(m):
        if dsts[i] is None:
            sources[i] = winner[i].reshape(spatial).copy()
            continue
        src = torch.from_numpy(srcs[i]).view(c, v)
        dst = torch.from_numpy(dsts[i]).view(c, v)
        for ch in range(c):
            torch.index_select(src[ch], 0, torch.from_numpy(winner[i]), out=dst[ch])
    return blocks, sources


def _np_group_samples(m_total: int, spatial, nb: int) -> int:
    """Samples per call of :func:`_np_shuffle`: about two million block voxels, at most 8 samples."""
    per_sample = nb * float(_np_block_tables(spatial).counts.mean())
    return max(1, min(8, m_total, int((1 << 21) // per_sample)))


def _np_shuffle_rows_(x: torch.Tensor, source: torch.Tensor, rows, nb: int, rng: np.random.Generator,
                      keep_boxes=None, return_blocks: bool = False):
    """``x[r]`` = shuffled ``source[r]`` for the samples ``rows`` (contiguous CPU tensors of one shape, not
    sharing memory; numpy path). ``keep_boxes``: one entry per row (see :func:`_np_shuffle`); rows that have
    boxes are not written: their source indices are returned instead, as ``{row: (S0, S1, S2) int32}``.
    With ``return_blocks`` returns ``(starts, sizes)`` tensors ``(len(rows), nb, 3)``."""
    spatial = tuple(int(s) for s in x.shape[2:])
    _require(spatial, _shuffle_ok, "local pixel shuffling needs every spatial axis >= 10 voxels")
    rows = list(range(x.shape[0])) if rows is None else [int(r) for r in rows]
    xn, sn = x.numpy(), source.numpy()
    step = _np_group_samples(len(rows), spatial, nb)
    blocks, deferred = [], {}
    for lo in range(0, len(rows), step):
        idx = rows[lo:lo + step]
        boxes = None if keep_boxes is None else keep_boxes[lo:lo + step]
        dsts = [xn[r] if boxes is None or boxes[k] is None else None for k, r in enumerate(idx)]
        b, sources = _np_shuffle([sn[r] for r in idx], dsts, rng, nb, boxes, return_blocks)
        blocks.append(b)
        deferred.update((r, s) for r, s in zip(idx, sources) if s is not None)
    if not return_blocks:
        return deferred
    if not blocks:
        empty = torch.zeros((0, nb, 3), dtype=torch.int64)
        return empty, empty.clone()
    return (torch.from_numpy(np.concatenate([b[0] for b in blocks])),
            torch.from_numpy(np.concatenate([b[1] for b in blocks])))


# ----------------------------------------------------------------------------------- Bezier intensity
def bezier_lut(control: torch.Tensor, inverted: torch.Tensor, n_samples: int = 4096,
               lut_size: int = 8192) -> torch.Tensor:
    """Lookup tables of Genesis Bezier intensity maps, one row per sample, float32 ``(M, lut_size)``.

    ``control`` ``(M, 4)``: the inner control points ``a, b, c, d`` of the curve through ``[0, 0], [a, b],
    [c, d], [1, 1]``; ``inverted`` ``(M,)`` bool. Row ``i`` is the map at ``lut_size`` equally spaced inputs
    in ``[0, 1]``. Plain: increasing, 0 -> 0 and 1 -> 1. Inverted (upstream sorts only the x samples, so y
    keeps its order in t): decreasing, 0 -> 1 and 1 -> 0. Computed in float64, returned as float32. On CPU
    the same table comes from ``np.interp`` of the samples (several times faster than the torch code).
    """
    device = control.device
    if _CPU_NUMPY and device.type == "cpu":
        return torch.from_numpy(_bezier_lut_np(control.to(torch.float64).numpy(), inverted.numpy(),
                                               n_samples, lut_size))
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


@lru_cache(maxsize=8)
def _bezier_weights_np(n_samples: int) -> np.ndarray:
    s = np.linspace(0.0, 1.0, n_samples)
    t = 1.0 - s
    return np.stack([3.0 * t * t * s, 3.0 * t * s * s, s * s * s])     # see bezier_lut


def _bezier_lut_np(control: np.ndarray, inverted: np.ndarray, n_samples: int, lut_size: int) -> np.ndarray:
    """:func:`bezier_lut` in numpy: the same samples, mapped onto the grid with ``np.interp``."""
    m = control.shape[0]
    ones = np.ones((m, 1))
    curve_x = np.concatenate([control[:, 0:1], control[:, 2:3], ones], 1) @ _bezier_weights_np(n_samples)
    curve_y = np.concatenate([control[:, 1:2], control[:, 3:4], ones], 1) @ _bezier_weights_np(n_samples)
    grid = np.linspace(0.0, 1.0, lut_size)
    lut = np.empty((m, lut_size), dtype=np.float32)
    for i in range(m):
        ys = curve_y[i, ::-1] if inverted[i] else curve_y[i]      # inverted: y keeps its order in t
        lut[i] = np.interp(grid, curve_x[i], ys)
    return lut


def _apply_lut_(flat: torch.Tensor, lut: torch.Tensor, slope: torch.Tensor) -> None:
    """``flat = lut(flat)`` in place for a contiguous 1-D tensor: linear interpolation in the table
    (``slope = lut[1:] - lut[:-1]``), inputs clamped to ``[0, 1]``."""
    g = lut.shape[0]
    pos = flat.clamp_(0.0, 1.0).mul_(g - 1)                    # in place: flat is overwritten below
    i0 = pos.to(torch.int32).clamp_(max=g - 2)
    w = pos.sub_(i0)
    torch.addcmul(lut.index_select(0, i0), slope.index_select(0, i0), w, out=pos)


def _apply_lut_rows_(x: torch.Tensor, rows: torch.Tensor, lut: torch.Tensor) -> None:
    """``x[rows[i]] = lut_i(x[rows[i]])`` in place (:func:`_apply_lut_`). One sample at a time, which keeps
    the temporaries in cache (3-4x faster than one batched pass on CPU)."""
    lut = lut.to(x.dtype)
    slope = lut[:, 1:] - lut[:, :-1]
    for i, r in enumerate(rows.tolist()):
        _apply_lut_(x[r].view(-1), lut[i], slope[i])


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


# ------------------------------------------------------------------------------- pipeline, CPU path
def _np_loop_active(rng: np.random.Generator, m: int, max_count: int, rate: float) -> np.ndarray:
    """:func:`_loop_active` with numpy: ``(m, max_count)`` bool, the iterations of ``while random() < rate``."""
    return np.logical_and.accumulate(rng.random((m, max_count)) < rate, axis=1)


def _np_boxes(rng: np.random.Generator, m: int, spatial, k: int, size_lo, size_hi, complement: bool):
    """:func:`_draw_boxes` with numpy: ``(m, k, 3)`` int64 starts and sizes."""
    starts, sizes = np.empty((m, k, 3), np.int64), np.empty((m, k, 3), np.int64)
    for d, s in enumerate(spatial):
        r = rng.integers(size_lo(s), size_hi(s), size=(m, k), endpoint=True)
        sizes[..., d] = s - r if complement else r
        starts[..., d] = rng.integers(3, s - sizes[..., d] - 3, endpoint=True)
    return starts, sizes


def _np_box_lists(starts, sizes, active):
    return [[tuple(slice(int(a), int(a + n)) for a, n in zip(starts[i, j], sizes[i, j]))
             for j in range(active.shape[1]) if active[i, j]] for i in range(len(active))]


def _corrupt_numpy(batch: torch.Tensor, generator, config: GenesisConfig) -> GenesisResult:
    """:func:`genesis_corrupt` for float32/float64 CPU tensors, with numpy on the tensors' memory.

    The same transforms with the same laws as the generic path, drawn from a numpy PCG64 seeded from
    ``generator`` (:func:`_np_rng`), with the work whose result is thrown away left out: out-painting
    replaces everything outside its windows by noise, so for an out-painted sample only the shuffle blocks
    that overlap a window are computed and the Bezier map is applied to the windows only; the target is
    written flipped in one pass, and the damaged copy of a sample is only filled where nothing else writes it
    whole."""
    n, c = batch.shape[:2]
    spatial = tuple(int(s) for s in batch.shape[2:])
    device = batch.device
    rng = _np_rng(generator, device)
    bn = batch.detach().contiguous().numpy()

    # 1. flips: the target is written flipped directly
    go = _np_loop_active(rng, n, config.max_flips, config.flip_rate)
    axis = rng.integers(0, 3, size=(n, config.max_flips))
    parity = ((np.eye(3, dtype=np.int64)[axis] * go[..., None]).sum(1) % 2).astype(bool)
    target = torch.empty_like(batch, memory_format=torch.contiguous_format)
    tn = target.numpy()
    dims = (0, 1, 2) if config.legacy_flip else (1, 2, 3)
    for i in range(n):
        axes = tuple(d for d, on in zip(dims, parity[i]) if on)
        np.copyto(tn[i], np.flip(bn[i], axes) if axes else bn[i])

    # decisions, geometry and Bezier curves, per row (sample, or sample and channel with per_channel)
    m, cr = (n * c, 1) if config.per_channel else (n, c)
    source = target.view(m, cr, *spatial)
    x = torch.empty_like(source)
    sn, xn = source.numpy(), x.numpy()
    shuffled = rng.random(m) < config.local_rate
    nl = rng.random(m) < config.nonlinear_rate
    paint = rng.random(m) < config.paint_rate
    inner = rng.random(m) < config.inpaint_rate
    inpainted, outpainted = paint & inner, paint & ~inner
    in_rows, out_rows = np.flatnonzero(inpainted).tolist(), np.flatnonzero(outpainted).tolist()
    in_active = _np_loop_active(rng, len(in_rows), config.inpaint_max_blocks, config.paint_continue_rate)
    in_boxes = _np_box_lists(*_np_boxes(rng, len(in_rows), spatial, config.inpaint_max_blocks,
                                        lambda s: s // 6, lambda s: s // 3, False), in_active)
    out_active = np.concatenate([np.ones((len(out_rows), 1), bool),
                                 _np_loop_active(rng, len(out_rows), config.outpaint_max_extra,
                                                 config.paint_continue_rate)], axis=1)
    out_geom = _np_boxes(rng, len(out_rows), spatial, config.outpaint_max_extra + 1,
                         lambda s: 3 * s // 7, lambda s: 4 * s // 7, True)
    window_of = dict(zip(out_rows, _np_box_lists(*out_geom, out_active)))
    nl_rows = np.flatnonzero(nl).tolist()
    control = rng.random((len(nl_rows), 4))
    inverted = np.zeros(m, dtype=bool)
    inverted[nl_rows] = rng.random(len(nl_rows)) < config.invert_rate

    # 2. local pixel shuffle: x[r] <- shuffled source[r]; out-painted rows only near their windows, and
    #    only their source indices (step 4 gathers the windows)
    sh_rows = np.flatnonzero(shuffled).tolist()
    shuffled_src = {}
    if sh_rows:
        keep = [[(tuple(b.start for b in w), tuple(b.stop - b.start for b in w)) for w in window_of[r]]
                if r in window_of else None for r in sh_rows]
        shuffled_src = _np_shuffle_rows_(x, source, sh_rows, config.shuffle_blocks, rng, keep)
    for r in range(m):                          # rows nothing else writes whole
        if not shuffled[r] and not outpainted[r]:
            xn[r] = sn[r]

    # 3. Bezier map (out-painted rows: below, on the windows only)
    lut_of = {}
    if nl_rows:
        lut = torch.from_numpy(_bezier_lut_np(control, inverted[nl_rows], config.bezier_samples,
                                              config.bezier_lut_size)).to(x.dtype)
        slope = lut[:, 1:] - lut[:, :-1]
        for i, r in enumerate(nl_rows):
            if outpainted[r]:
                lut_of[r] = (lut[i], slope[i])
            else:
                _apply_lut_(x[r].view(-1), lut[i], slope[i])

    # 4. in-painting: noise in the boxes; out-painting: noise except the windows
    every = (slice(None),)
    for r, boxes in zip(in_rows, in_boxes):
        for box in boxes:
            region = xn[r][every + box]
            region[...] = rng.random(region.shape, dtype=xn.dtype)
    union = np.empty(spatial, dtype=bool)
    for r in out_rows:                          # the windows' union, flat: read once, mapped, then written
        union[...] = False
        for box in window_of[r]:
            union[box] = True
        idx = torch.from_numpy(np.flatnonzero(union))
        src_idx = torch.from_numpy(shuffled_src[r]).view(-1).index_select(0, idx) if shuffled[r] else idx
        kept = source[r].view(cr, -1).index_select(1, src_idx)
        if r in lut_of:
            _apply_lut_(kept.view(-1), *lut_of[r])
        rng.random(out=xn[r], dtype=xn.dtype)
        x[r].view(cr, -1).index_copy_(1, idx, kept)

    as_t = torch.from_numpy
    applied = {"flipped": as_t(parity), "shuffled": as_t(shuffled), "nonlinear": as_t(nl),
               "inverted": as_t(inverted), "inpainted": as_t(inpainted), "outpainted": as_t(outpainted)}
    return GenesisResult(x.view(batch.shape), target, applied)


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
    if _numpy_path(batch):
        return _corrupt_numpy(batch, generator, config)
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
