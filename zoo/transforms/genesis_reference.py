"""The Models Genesis corruption loop as upstream runs it, step for step: the baseline of tests and benchmarks.

Source: GitHub MrGiovanni/ModelsGenesis, file ``pytorch/utils.py`` (functions ``bernstein_poly``,
``bezier_curve``, ``data_augmentation``, ``nonlinear_transformation``, ``local_pixel_shuffling``,
``image_in_painting``, ``image_out_painting``, ``generate_pair``; last changed in commit 32b7b5e, February
2020), described in ``docs/pretraining-recipes.md`` section 1.3. This module is written anew from that
description; it keeps the upstream function names, signatures, structure and every random draw, in the same
order and with the same generators, so its cost and its statistics are the original's:

* every decision, size and position is a Python ``random`` call (``random.random``, ``random.randint``
  with both ends included, ``random.choice``, ``random.shuffle``), one call at a time;
* local pixel shuffling runs 10,000 iterations per cube, each with six ``randint`` draws, a slice of the
  original, ``flatten`` (a copy), one ``np.random.shuffle`` of the block's voxels and a write-back;
* the Bezier map samples the curve at 100,000 values of ``t`` with ``bernstein_poly`` (``comb(n, i)
  t**(n-i) (1-t)**i``), sorts the samples with ``np.sort`` and maps the cube with ``np.interp``;
* painting noise is ``np.random.rand``; copies are ``copy.deepcopy``.

The only addition: every function takes two optional keyword arguments, ``rnd`` (default: the ``random``
module) and ``nprnd`` (default: the ``numpy.random`` module), so a test can pass a seeded
``random.Random`` and ``np.random.RandomState`` and replay the draws. The module functions are bound
methods of hidden instances of those very classes, so the defaults cost what upstream costs. (Upstream also
has a sample-image writer in ``generate_pair``, active only with ``status="train"``; it writes PNG files and
is left out.)

Upstream behaviour kept on purpose, bugs included (the batched :mod:`zoo.transforms.genesis` documents the
ones it fixes):

* Arrays are ``(C, X, Y, Z)`` per sample and ``(N, C, X, Y, Z)`` per batch; nothing depends on which
  physical axis is which (every size comes from that axis's own length), so ``(N, C, Z, Y, X)`` cubes of
  32 x 64 x 64 work the same.
* Flip axis drawn from ``{0, 1, 2}`` of the ``(C, X, Y, Z)`` sample: axis 0 is the channel (a no-op for one
  channel) and the last spatial axis is never flipped.
* Local pixel shuffling reads and writes channel 0 only.
* ``nonlinear_transformation`` with the inverting branch (only the x samples sorted) when
  ``random() < 0.5``; inputs outside ``[0, 1]`` are clamped to the end values by ``np.interp``.
"""

from __future__ import annotations

import copy
import random

import numpy as np

try:                                    # upstream's import; math.comb gives the same values
    from scipy.special import comb
except ImportError:                     # pragma: no cover - scipy is optional here
    from math import comb

__all__ = [
    "BEZIER_SAMPLES",
    "NUM_BLOCK",
    "UpstreamConfig",
    "bernstein_poly",
    "bezier_curve",
    "corrupt_batch",
    "data_augmentation",
    "generate_pair",
    "image_in_painting",
    "image_out_painting",
    "local_pixel_shuffling",
    "nonlinear_transformation",
]

NUM_BLOCK = 10_000          #: blocks per shuffled cube, a constant inside upstream's local_pixel_shuffling
BEZIER_SAMPLES = 100_000    #: curve samples, a constant inside upstream's nonlinear_transformation


class UpstreamConfig:
    """The transform rates of upstream ``pytorch/config.py`` (``models_genesis_config``); any object with
    these attributes works, :class:`zoo.transforms.genesis.GenesisConfig` included."""

    flip_rate = 0.4
    local_rate = 0.5
    nonlinear_rate = 0.9
    paint_rate = 0.9
    outpaint_rate = 0.8
    inpaint_rate = 1.0 - outpaint_rate

    def __init__(self, **rates):
        for k, v in rates.items():
            if not hasattr(self, k):
                raise AttributeError(f"UpstreamConfig has no rate {k!r}")
            setattr(self, k, v)


# ---------------------------------------------------------------------------------------------- Bezier
def bernstein_poly(i, n, t):
    """Bernstein term as upstream writes it: ``C(n, i) * t**(n - i) * (1 - t)**i`` (so ``t = 0`` is the
    last control point)."""
    return comb(n, i) * (t ** (n - i)) * (1 - t) ** i


def bezier_curve(points, nTimes=1000):  # noqa: N803 - upstream's name
    """Samples ``(xvals, yvals)`` of the Bezier curve of ``points`` (a list of ``[x, y]``) at ``nTimes``
    equally spaced ``t`` in ``[0, 1]``."""
    n_points = len(points)
    x_points = np.array([p[0] for p in points])
    y_points = np.array([p[1] for p in points])
    t = np.linspace(0.0, 1.0, nTimes)
    polynomial_array = np.array([bernstein_poly(i, n_points - 1, t) for i in range(0, n_points)])
    xvals = np.dot(x_points, polynomial_array)
    yvals = np.dot(y_points, polynomial_array)
    return xvals, yvals


# ------------------------------------------------------------------------------------------ transforms
def data_augmentation(x, y, prob=0.5, *, rnd=random):
    """Flip ``x`` and ``y`` (``(C, X, Y, Z)``) together: while ``random() < prob``, at most 3 times, along an
    axis drawn with ``random.choice([0, 1, 2])``. Returns the (possibly flipped) views."""
    cnt = 3
    while rnd.random() < prob and cnt > 0:
        degree = rnd.choice([0, 1, 2])
        x = np.flip(x, axis=degree)
        y = np.flip(y, axis=degree)
        cnt = cnt - 1
    return x, y


def nonlinear_transformation(x, prob=0.5, *, rnd=random):
    """With probability ``prob``: control points ``[0, 0], [a, b], [c, d], [1, 1]`` (four ``random()``
    draws, in the order a, b, c, d), 100,000 curve samples, then with probability 0.5 only the x samples
    sorted (an inverting map), else both; ``np.interp`` of every voxel. Returns ``x`` itself when not
    applied, else a new float64 array."""
    if rnd.random() >= prob:
        return x
    points = [[0, 0], [rnd.random(), rnd.random()], [rnd.random(), rnd.random()], [1, 1]]
    xvals, yvals = bezier_curve(points, nTimes=BEZIER_SAMPLES)
    if rnd.random() < 0.5:
        xvals = np.sort(xvals)              # y keeps its order in t: decreasing map
    else:
        xvals, yvals = np.sort(xvals), np.sort(yvals)
    nonlinear_x = np.interp(x, xvals, yvals)
    return nonlinear_x


def local_pixel_shuffling(x, prob=0.5, *, rnd=random, nprnd=np.random):
    """With probability ``prob``: 10,000 blocks on channel 0 of ``x`` ``(C, X, Y, Z)``, each of size
    ``randint(1, S // 10)`` per axis at ``randint(0, S - size)``, read from a deep copy of the original,
    flattened, ``np.random.shuffle``-d and written into another deep copy (later blocks win). Returns
    ``x`` itself when not applied."""
    if rnd.random() >= prob:
        return x
    image_temp = copy.deepcopy(x)
    orig_image = copy.deepcopy(x)
    _, img_rows, img_cols, img_deps = x.shape
    for _ in range(NUM_BLOCK):
        block_noise_size_x = rnd.randint(1, img_rows // 10)
        block_noise_size_y = rnd.randint(1, img_cols // 10)
        block_noise_size_z = rnd.randint(1, img_deps // 10)
        noise_x = rnd.randint(0, img_rows - block_noise_size_x)
        noise_y = rnd.randint(0, img_cols - block_noise_size_y)
        noise_z = rnd.randint(0, img_deps - block_noise_size_z)
        window = orig_image[0, noise_x:noise_x + block_noise_size_x,
                            noise_y:noise_y + block_noise_size_y,
                            noise_z:noise_z + block_noise_size_z]
        window = window.flatten()
        nprnd.shuffle(window)
        window = window.reshape((block_noise_size_x, block_noise_size_y, block_noise_size_z))
        image_temp[0, noise_x:noise_x + block_noise_size_x,
                   noise_y:noise_y + block_noise_size_y,
                   noise_z:noise_z + block_noise_size_z] = window
    local_shuffling_x = image_temp
    return local_shuffling_x


def image_in_painting(x, *, rnd=random, nprnd=np.random):
    """While ``random() < 0.95``, at most 5 times: a box of ``randint(S // 6, S // 3)`` per axis at
    ``randint(3, S - size - 3)`` becomes ``np.random.rand`` noise (one draw of the box's spatial shape,
    broadcast to every channel). Modifies ``x`` in place and returns it."""
    _, img_rows, img_cols, img_deps = x.shape
    cnt = 5
    while cnt > 0 and rnd.random() < 0.95:
        block_noise_size_x = rnd.randint(img_rows // 6, img_rows // 3)
        block_noise_size_y = rnd.randint(img_cols // 6, img_cols // 3)
        block_noise_size_z = rnd.randint(img_deps // 6, img_deps // 3)
        noise_x = rnd.randint(3, img_rows - block_noise_size_x - 3)
        noise_y = rnd.randint(3, img_cols - block_noise_size_y - 3)
        noise_z = rnd.randint(3, img_deps - block_noise_size_z - 3)
        x[:,
          noise_x:noise_x + block_noise_size_x,
          noise_y:noise_y + block_noise_size_y,
          noise_z:noise_z + block_noise_size_z] = nprnd.rand(block_noise_size_x, block_noise_size_y,
                                                             block_noise_size_z) * 1.0
        cnt -= 1
    return x


def image_out_painting(x, *, rnd=random, nprnd=np.random):
    """The whole cube becomes ``np.random.rand`` noise (float64) except one window of the original, then up
    to 4 more while ``random() < 0.95``; window ``S - randint(3 * S // 7, 4 * S // 7)`` per axis at
    ``randint(3, S - size - 3)``. Returns the new array."""
    _, img_rows, img_cols, img_deps = x.shape
    image_temp = copy.deepcopy(x)
    x = nprnd.rand(x.shape[0], x.shape[1], x.shape[2], x.shape[3]) * 1.0

    def restore_window():               # upstream writes this block out twice, identically
        block_noise_size_x = img_rows - rnd.randint(3 * img_rows // 7, 4 * img_rows // 7)
        block_noise_size_y = img_cols - rnd.randint(3 * img_cols // 7, 4 * img_cols // 7)
        block_noise_size_z = img_deps - rnd.randint(3 * img_deps // 7, 4 * img_deps // 7)
        noise_x = rnd.randint(3, img_rows - block_noise_size_x - 3)
        noise_y = rnd.randint(3, img_cols - block_noise_size_y - 3)
        noise_z = rnd.randint(3, img_deps - block_noise_size_z - 3)
        x[:,
          noise_x:noise_x + block_noise_size_x,
          noise_y:noise_y + block_noise_size_y,
          noise_z:noise_z + block_noise_size_z] = image_temp[:, noise_x:noise_x + block_noise_size_x,
                                                             noise_y:noise_y + block_noise_size_y,
                                                             noise_z:noise_z + block_noise_size_z]

    restore_window()
    cnt = 4
    while cnt > 0 and rnd.random() < 0.95:
        restore_window()
        cnt -= 1
    return x


# ------------------------------------------------------------------------------------------- pipeline
def corrupt_batch(y, config, *, rnd=random, nprnd=np.random):
    """The per-sample loop of :func:`generate_pair` on a batch ``y`` ``(N, C, X, Y, Z)`` that is flipped in
    place (as upstream flips its targets). Returns ``(x, y)``: the damaged inputs (``y``'s dtype) and
    targets."""
    x = copy.deepcopy(y)
    for n in range(y.shape[0]):
        # Autoencoder
        x[n] = copy.deepcopy(y[n])
        # Flip
        x[n], y[n] = data_augmentation(x[n], y[n], config.flip_rate, rnd=rnd)
        # Local Shuffle Pixel
        x[n] = local_pixel_shuffling(x[n], prob=config.local_rate, rnd=rnd, nprnd=nprnd)
        # Apply non-Linear transformation with an assigned probability
        x[n] = nonlinear_transformation(x[n], config.nonlinear_rate, rnd=rnd)
        # Inpainting & Outpainting
        if rnd.random() < config.paint_rate:
            if rnd.random() < config.inpaint_rate:
                x[n] = image_in_painting(x[n], rnd=rnd, nprnd=nprnd)
            else:
                x[n] = image_out_painting(x[n], rnd=rnd, nprnd=nprnd)
    return x, y


def generate_pair(img, batch_size, config, status="test", *, rnd=random, nprnd=np.random):
    """Endless generator of training pairs ``(x, y)`` from cubes ``img`` ``(N, C, X, Y, Z)``: each step
    ``random.shuffle`` of all indices, the first ``batch_size`` cubes (a copy) as targets, then
    :func:`corrupt_batch`. ``status`` is accepted for upstream's signature (its sample-image writer is left
    out)."""
    while True:
        index = [i for i in range(img.shape[0])]
        rnd.shuffle(index)
        y = img[index[:batch_size]]
        yield corrupt_batch(y, config, rnd=rnd, nprnd=nprnd)
