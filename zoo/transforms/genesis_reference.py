"""Per-cube numpy implementation of the Models Genesis corruptions: the baseline for tests and benchmarks.

Written from the documented algorithm (``docs/pretraining-recipes.md`` §1.3, after MrGiovanni/ModelsGenesis
``pytorch/utils.py``), one cube at a time, with plain Python loops where the upstream code loops. It is
deliberately simple and slow; the batched torch version is :mod:`zoo.transforms.genesis`.

Conventions
-----------
* A cube is a numpy array of shape ``(C, S0, S1, S2)``: channel axis first, then three spatial axes. As in
  upstream Models Genesis the spatial axes are ``(X, Y, Z)`` of a 64 x 64 x 32 cube, but nothing here depends
  on which physical axis is which: every size and position is computed from that axis's own length, so a
  ``(C, Z, Y, X)`` cube of 32 x 64 x 64 (the :mod:`zoo.io` order) gets the same per-axis geometry.
* Values are expected in ``[0, 1]`` (Genesis CT scaling, :func:`zoo.io.preprocess.genesis_ct`).
* Randomness comes only from the ``numpy.random.Generator`` passed in. ``randint(a, b)`` of the upstream
  code (both ends included) is ``rng.integers(a, b + 1)`` here.

Differences from the upstream code, on purpose
----------------------------------------------
* Flip: upstream draws the flip axis from ``{0, 1, 2}`` of a ``(C, X, Y, Z)`` array, so one draw in three
  flips the singleton channel axis (a no-op) and the Z axis is never flipped. Here the axis is drawn from
  the three spatial axes; ``legacy_flip=True`` restores the upstream behaviour.
* Multi-channel cubes: upstream shuffling reads and writes channel 0 only. Here all channels share the
  geometry and the permutation (the spatial corruption is the same for every channel); painting noise is
  drawn independently per channel, as upstream (``np.random.rand`` of the full shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ShuffleBlock",
    "reference_bezier_curve",
    "reference_bezier_map",
    "reference_flip",
    "reference_genesis_corrupt",
    "reference_in_painting",
    "reference_local_pixel_shuffle",
    "reference_nonlinear",
    "reference_out_painting",
]


def _randint(rng: np.random.Generator, low: int, high: int) -> int:
    """Python's ``random.randint``: an integer in ``[low, high]``, both ends included."""
    return int(rng.integers(low, high + 1))


# ----------------------------------------------------------------------------------------------- flip
def reference_flip(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, rate: float = 0.4,
                   max_flips: int = 3, legacy_flip: bool = False):
    """Flip input ``x`` and target ``y`` (both ``(C, S0, S1, S2)``) together.

    While ``rng.random() < rate`` and at most ``max_flips`` times, flip both arrays along one axis drawn
    uniformly from the spatial axes ``{1, 2, 3}`` (or ``{0, 1, 2}`` with ``legacy_flip``: the upstream bug).
    Returns ``(x, y, axes)`` with the list of axes flipped, in order.
    """
    axes_choice = (0, 1, 2) if legacy_flip else (1, 2, 3)
    flipped = []
    cnt = max_flips
    while rng.random() < rate and cnt > 0:
        axis = axes_choice[int(rng.integers(0, 3))]
        x = np.flip(x, axis=axis)
        y = np.flip(y, axis=axis)
        flipped.append(axis)
        cnt -= 1
    return np.ascontiguousarray(x), np.ascontiguousarray(y), flipped


# ----------------------------------------------------------------------------------- pixel shuffling
@dataclass(frozen=True)
class ShuffleBlock:
    """One shuffled block: start and size per spatial axis ``(S0, S1, S2)``."""

    start: tuple[int, int, int]
    size: tuple[int, int, int]

    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.size))


def reference_local_pixel_shuffle(x: np.ndarray, rng: np.random.Generator, n_blocks: int = 10_000,
                                  return_blocks: bool = False):
    """Local pixel shuffling of one cube ``(C, S0, S1, S2)``.

    ``n_blocks`` times: block size per axis ``randint(1, S // 10)``, start ``randint(0, S - size)``; the
    block's voxels are read from the **original** cube, flattened, randomly permuted and written into the
    output (blocks may overlap; later writes win). All channels use the same permutation.
    """
    _, s0, s1, s2 = x.shape
    orig = x.copy()
    out = x.copy()
    blocks = []
    for _ in range(n_blocks):
        size = (_randint(rng, 1, s0 // 10), _randint(rng, 1, s1 // 10), _randint(rng, 1, s2 // 10))
        start = (_randint(rng, 0, s0 - size[0]), _randint(rng, 0, s1 - size[1]), _randint(rng, 0, s2 - size[2]))
        sl = tuple(slice(a, a + n) for a, n in zip(start, size))
        window = orig[(slice(None),) + sl].reshape(x.shape[0], -1)
        perm = rng.permutation(window.shape[1])
        out[(slice(None),) + sl] = window[:, perm].reshape((x.shape[0],) + size)
        if return_blocks:
            blocks.append(ShuffleBlock(start, size))
    return (out, blocks) if return_blocks else out


# ----------------------------------------------------------------------------------- Bezier intensity
def reference_bezier_curve(points, n_samples: int = 100_000):
    """Sample the cubic Bezier curve of ``points`` (4 ``(x, y)`` pairs) at ``n_samples`` values of ``t``.

    The Bernstein term is written as upstream, ``C(n, i) t^(n-i) (1-t)^i``, so ``t = 0`` is the **last**
    control point and ``t = 1`` the first. Returns ``(xvals, yvals)``.
    """
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts) - 1
    t = np.linspace(0.0, 1.0, n_samples)
    binom = [1, 3, 3, 1] if n == 3 else [_binom(n, i) for i in range(n + 1)]
    poly = np.stack([binom[i] * t ** (n - i) * (1.0 - t) ** i for i in range(n + 1)])
    return pts[:, 0] @ poly, pts[:, 1] @ poly


def _binom(n: int, k: int) -> int:
    from math import comb
    return comb(n, k)


def reference_bezier_map(values: np.ndarray, control: tuple[float, float, float, float], inverted: bool,
                         n_samples: int = 100_000) -> np.ndarray:
    """Map ``values`` (any shape, intensities in ``[0, 1]``) through the Genesis Bezier curve with inner
    control points ``(a, b), (c, d)``.

    Control points ``[0, 0], [a, b], [c, d], [1, 1]``. Plain: both the curve's x and y samples are sorted
    (increasing map, 0 -> 0, 1 -> 1). Inverted: only the x samples are sorted, so ``y`` keeps its order in
    ``t`` (from 1 down to 0): the map sends 0 -> 1 and 1 -> 0. Applied with ``np.interp`` (values outside
    ``[0, 1]`` are clamped to the end values).
    """
    a, b, c, d = control
    xvals, yvals = reference_bezier_curve([[0, 0], [a, b], [c, d], [1, 1]], n_samples)
    if inverted:
        xvals = np.sort(xvals)
    else:
        xvals, yvals = np.sort(xvals), np.sort(yvals)
    return np.interp(values, xvals, yvals)


def reference_nonlinear(x: np.ndarray, rng: np.random.Generator, rate: float = 0.9,
                        invert_rate: float = 0.5, n_samples: int = 100_000):
    """Non-linear intensity on one cube ``x`` ``(C, S0, S1, S2)``. With probability ``rate``: draw ``a, b, c, d``
    uniform in ``[0, 1)``, then invert with probability
    ``invert_rate``, and map every voxel (all channels) through :func:`reference_bezier_map`.

    Returns ``(x, info)``; ``info`` is ``None`` when not applied, else ``(a, b, c, d, inverted)``.
    """
    if rng.random() >= rate:
        return x, None
    a, b, c, d = (float(rng.random()) for _ in range(4))
    inverted = bool(rng.random() < invert_rate)
    return reference_bezier_map(x, (a, b, c, d), inverted, n_samples), (a, b, c, d, inverted)


# ------------------------------------------------------------------------------------------ painting
@dataclass
class PaintRecord:
    """Boxes painted on one cube: ``(start, size)`` per block, spatial axes ``(S0, S1, S2)``."""

    kind: str
    boxes: list = field(default_factory=list)


def reference_in_painting(x: np.ndarray, rng: np.random.Generator, max_blocks: int = 5,
                          continue_rate: float = 0.95):
    """In-painting of one cube ``x`` ``(C, S0, S1, S2)``: while ``rng.random() < continue_rate`` (at most ``max_blocks`` times) fill a box with
    uniform noise in ``[0, 1)``; box size per axis ``randint(S // 6, S // 3)``, start ``randint(3, S - size - 3)``.
    Returns ``(x, PaintRecord)``; ``x`` is modified in place (a copy is the caller's business)."""
    _, s0, s1, s2 = x.shape
    rec = PaintRecord("in")
    cnt = max_blocks
    while cnt > 0 and rng.random() < continue_rate:
        size = tuple(_randint(rng, s // 6, s // 3) for s in (s0, s1, s2))
        start = tuple(_randint(rng, 3, s - n - 3) for s, n in zip((s0, s1, s2), size))
        sl = tuple(slice(a, a + n) for a, n in zip(start, size))
        x[(slice(None),) + sl] = rng.random((x.shape[0],) + size)
        rec.boxes.append((start, size))
        cnt -= 1
    return x, rec


def reference_out_painting(x: np.ndarray, rng: np.random.Generator, max_extra: int = 4,
                           continue_rate: float = 0.95):
    """Out-painting of one cube ``x`` ``(C, S0, S1, S2)``: the whole cube becomes uniform noise in ``[0, 1)`` except one window of the original,
    then up to ``max_extra`` more windows while ``rng.random() < continue_rate``. Window size per axis
    ``S - randint(3 * S // 7, 4 * S // 7)``, start ``randint(3, S - size - 3)``. Returns ``(x, PaintRecord)``."""
    _, s0, s1, s2 = x.shape
    orig = x.copy()
    out = rng.random(x.shape)
    rec = PaintRecord("out")

    def window():
        size = tuple(s - _randint(rng, 3 * s // 7, 4 * s // 7) for s in (s0, s1, s2))
        start = tuple(_randint(rng, 3, s - n - 3) for s, n in zip((s0, s1, s2), size))
        sl = (slice(None),) + tuple(slice(a, a + n) for a, n in zip(start, size))
        out[sl] = orig[sl]
        rec.boxes.append((start, size))

    window()
    cnt = max_extra
    while cnt > 0 and rng.random() < continue_rate:
        window()
        cnt -= 1
    return out, rec


# ------------------------------------------------------------------------------------------ pipeline
def reference_genesis_corrupt(cube: np.ndarray, rng: np.random.Generator, config=None):
    """One Genesis training pair from one cube ``(C, S0, S1, S2)`` in ``[0, 1]``.

    In order, each with its own probability (``config`` is a :class:`zoo.transforms.genesis.GenesisConfig`):
    flip (input and target together), local pixel shuffle, non-linear Bezier intensity, then in-painting
    (``paint_rate * inpaint_rate``) or out-painting (``paint_rate * (1 - inpaint_rate)``).

    Returns ``(damaged, target, info)`` where ``info`` records what was applied.
    """
    if config is None:
        from .genesis import GenesisConfig
        config = GenesisConfig()
    y = np.array(cube, dtype=np.float64, copy=True)
    x = y.copy()
    x, y, flips = reference_flip(x, y, rng, config.flip_rate, config.max_flips, config.legacy_flip)
    info = {"flips": flips, "shuffled": False, "nonlinear": None, "paint": None}
    if rng.random() < config.local_rate:
        x = reference_local_pixel_shuffle(x, rng, config.shuffle_blocks)
        info["shuffled"] = True
    x, info["nonlinear"] = reference_nonlinear(x, rng, config.nonlinear_rate, config.invert_rate,
                                               config.bezier_samples_reference)
    if rng.random() < config.paint_rate:
        if rng.random() < config.inpaint_rate:
            x, info["paint"] = reference_in_painting(x, rng, config.inpaint_max_blocks, config.paint_continue_rate)
        else:
            x, info["paint"] = reference_out_painting(x, rng, config.outpaint_max_extra, config.paint_continue_rate)
    return x, y, info
