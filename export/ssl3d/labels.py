"""Label generation of the five 3D self-supervised tasks (Taleb et al., NeurIPS 2020), as pure functions.

Everything here works on torch tensors of shape (C, Z, Y, X) (one cube) or (N, C, Z, Y, X), on any device,
and is exact: the tests prove that rotations invert, that every jigsaw permutation reassembles the cube,
that relative-patch-location labels match the patch offsets, and that the CPC positives are the true next
patches.

Grid geometry follows the authors' ``crop_patches_3d``: for a cube of side ``S``, ``g`` patches per side and
an overlap ``o`` (CPC: ``o = S // (g + 1)``, i.e. half-overlapping patches; jigsaw/RPL: 0), cells are
``cell = (S - o) // g`` apart, each cell window is ``cell + o`` wide, and a patch of side ``patch`` is cut at a
random offset (the *jitter*) inside its window: jigsaw/RPL use ``patch = cell - jitter`` (128^3, jitter 3 ->
cells of 42, patches of 39).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# ------------------------------------------------------------------------------------------------ rotation
#: class -> (quarter turns, the two tensor dims of the rotation plane, counted from the end: Z=-3, Y=-2, X=-1).
#: 0 identity; 1-3: 90/180/270 degrees about the z axis (plane Y-X); 4-6 about y (plane Z-X); 7-9 about x
#: (plane Z-Y). Ten classes, as the paper's 3D rotation task.
ROTATIONS: tuple[tuple[int, tuple[int, int]], ...] = (
    (0, (-2, -1)),
    (1, (-2, -1)), (2, (-2, -1)), (3, (-2, -1)),
    (1, (-3, -1)), (2, (-3, -1)), (3, (-3, -1)),
    (1, (-3, -2)), (2, (-3, -2)), (3, (-3, -2)),
)
N_ROTATIONS = len(ROTATIONS)


def _check_cube(x: Tensor, what: str) -> None:
    if x.dim() < 3 or len(set(x.shape[-3:])) != 1:
        raise ValueError(f"{what} needs a cubic volume (..., S, S, S), got shape {tuple(x.shape)}")


def rotate(x: Tensor, label: int) -> Tensor:
    """Rotate the cube(s) ``x`` (..., S, S, S) by rotation class ``label`` (see :data:`ROTATIONS`)."""
    _check_cube(x, "rotate")
    k, dims = ROTATIONS[int(label)]
    return torch.rot90(x, k, dims) if k else x.clone()


def unrotate(x: Tensor, label: int) -> Tensor:
    """The inverse of :func:`rotate`: ``unrotate(rotate(x, c), c) == x`` exactly."""
    _check_cube(x, "unrotate")
    k, dims = ROTATIONS[int(label)]
    return torch.rot90(x, -k, dims) if k else x.clone()


def rotation_batch(cubes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Each cube of (N, C, S, S, S) rotated by a uniformly drawn class; returns (rotated, labels (N,))."""
    labels = torch.randint(0, N_ROTATIONS, (cubes.shape[0],), generator=generator, device=generator.device)
    out = torch.stack([rotate(c, int(l)) for c, l in zip(cubes, labels.tolist())])
    return out, labels.to(cubes.device)


# ---------------------------------------------------------------------------------------------- grids
@dataclass(frozen=True)
class Grid:
    """``g`` x ``g`` x ``g`` patches of side ``patch`` from a cube of side ``size`` (module docstring)."""

    size: int
    per_side: int
    patch: int
    overlap: int = 0

    @property
    def cell(self) -> int:
        return (self.size - self.overlap) // self.per_side

    @property
    def window(self) -> int:
        return self.cell + self.overlap

    @property
    def jitter(self) -> int:
        return self.window - self.patch

    @property
    def n(self) -> int:
        return self.per_side ** 3

    def check(self) -> None:
        if self.per_side < 1 or self.patch < 1:
            raise ValueError(f"grid needs per_side >= 1 and patch >= 1, got {self}")
        if self.cell < 1 or self.patch > self.window:
            raise ValueError(f"a {self.per_side}x{self.per_side}x{self.per_side} grid of {self.patch}^3 patches does "
                             f"not fit a {self.size}^3 cube (cells of {self.cell}, windows of {self.window})")

    def index(self, z: int, y: int, x: int) -> int:
        g = self.per_side
        return (z * g + y) * g + x

    def coords(self, i: int) -> tuple[int, int, int]:
        g = self.per_side
        return i // (g * g), (i // g) % g, i % g


def grid_for_jigsaw(size: int, per_side: int = 3, jitter: int = 3) -> Grid:
    """The jigsaw / RPL grid: cells of ``size // per_side``, patches ``jitter`` smaller (128 -> 42 / 39)."""
    cell = size // per_side
    return Grid(size, per_side, cell - jitter, 0)


def grid_for_cpc(size: int, per_side: int = 4) -> Grid:
    """The CPC grid: overlap ``size // (per_side + 1)``, patches of one cell plus the overlap, i.e. half-
    overlapping neighbours (128 -> stride 25, patches 50)."""
    overlap = size // (per_side + 1)
    cell = (size - overlap) // per_side
    return Grid(size, per_side, cell + overlap, overlap)


def patch_starts(grid: Grid, offsets: Tensor | None = None) -> Tensor:
    """(n, 3) start corners (z, y, x) of the patches in grid order; ``offsets`` (n, 3) are the jitters in
    ``[0, grid.jitter]`` (zeros when None)."""
    g = grid.per_side
    base = torch.tensor([[z, y, x] for z in range(g) for y in range(g) for x in range(g)], dtype=torch.long)
    starts = base * grid.cell
    if offsets is not None:
        starts = starts + offsets.to(torch.long).cpu()
    return starts


def random_offsets(grid: Grid, generator: torch.Generator, n_sets: int = 1) -> Tensor:
    """Uniform jitters (n_sets, n, 3) in ``[0, grid.jitter]``."""
    return torch.randint(0, grid.jitter + 1, (n_sets, grid.n, 3), generator=generator,
                         device=generator.device).cpu()


def extract_patches(cube: Tensor, grid: Grid, starts: Tensor) -> Tensor:
    """Patches (n, C, p, p, p) of one cube (C, S, S, S) at ``starts`` (n, 3)."""
    grid.check()
    if cube.shape[-1] < grid.size or cube.shape[-2] < grid.size or cube.shape[-3] < grid.size:
        raise ValueError(f"cube of shape {tuple(cube.shape[-3:])} is smaller than the {grid.per_side}^3 grid of "
                         f"side {grid.size}")
    p = grid.patch
    return torch.stack([cube[..., z:z + p, y:y + p, x:x + p] for z, y, x in starts.tolist()])


def assemble(patches: Tensor, grid: Grid) -> Tensor:
    """Put non-overlapping, jitter-free patches (n, C, cell, cell, cell) in grid order back into a cube."""
    if grid.overlap or grid.patch != grid.cell:
        raise ValueError("assemble needs a grid without overlap or jitter (patch == cell)")
    g, c = grid.per_side, grid.cell
    out = patches.new_zeros((patches.shape[1], g * c, g * c, g * c))
    for i in range(grid.n):
        z, y, x = grid.coords(i)
        out[:, z * c:(z + 1) * c, y * c:(y + 1) * c, x * c:(x + 1) * c] = patches[i]
    return out


# ------------------------------------------------------------------------------------------------ jigsaw
def hamming_permutations(n: int = 100, k: int = 27, seed: int = 0, candidates: int = 1000) -> np.ndarray:
    """``n`` permutations of ``k`` items chosen for maximal minimum Hamming distance (the greedy algorithm of
    Noroozi & Favaro, as the Taleb et al. paper describes; their released 3D file is a random set).

    ``k!`` is far too large to enumerate for k = 27, so each step draws ``candidates`` random permutations and
    keeps the one whose minimum Hamming distance to the permutations chosen so far is largest (ties: the
    largest mean distance, then the first drawn). Deterministic for a given ``seed``. Returns (n, k) int64;
    the first permutation is the identity.
    """
    if n < 1 or k < 2:
        raise ValueError(f"need n >= 1 and k >= 2, got n={n}, k={k}")
    rng = np.random.default_rng(seed)
    chosen = [np.arange(k)]
    while len(chosen) < n:
        pool = rng.permuted(np.tile(np.arange(k), (candidates, 1)), axis=1)
        dist = (pool[:, None, :] != np.stack(chosen)[None, :, :]).sum(-1)    # (candidates, chosen)
        mins = dist.min(1)
        score = mins * (k * len(chosen) + 1) + dist.sum(1)                    # (min, then sum) lexicographic
        best = int(np.argmax(score))
        if mins[best] == 0:
            continue                                                          # only duplicates drawn
        chosen.append(pool[best])
    return np.stack(chosen).astype(np.int64)


_PERMUTATIONS: dict[tuple[int, int, int], np.ndarray] = {}


def jigsaw_permutations(n: int = 100, k: int = 27, seed: int = 0) -> np.ndarray:
    """The (cached) permutation set used by the jigsaw task."""
    key = (n, k, seed)
    if key not in _PERMUTATIONS:
        _PERMUTATIONS[key] = hamming_permutations(n, k, seed)
    return _PERMUTATIONS[key]


def min_hamming(perms: np.ndarray) -> int:
    """The smallest Hamming distance between two permutations of the set."""
    d = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    d[np.arange(len(perms)), np.arange(len(perms))] = perms.shape[1] + 1
    return int(d.min())


def shuffle_patches(patches: Tensor, perm: np.ndarray | Tensor) -> Tensor:
    """Position i of the result shows patch ``perm[i]``: ``patches[perm]``."""
    return patches[torch.as_tensor(np.asarray(perm), dtype=torch.long, device=patches.device)]


def unshuffle_patches(shuffled: Tensor, perm: np.ndarray | Tensor) -> Tensor:
    """The inverse of :func:`shuffle_patches`: grid order again."""
    inverse = np.argsort(np.asarray(perm))
    return shuffled[torch.as_tensor(inverse, dtype=torch.long, device=shuffled.device)]


def jigsaw_batch(cubes: Tensor, grid: Grid, perms: np.ndarray,
                 generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Shuffled patches (N, 27, C, p, p, p) and permutation labels (N,) for cubes (N, C, S, S, S)."""
    labels = torch.randint(0, len(perms), (cubes.shape[0],), generator=generator, device=generator.device)
    offsets = random_offsets(grid, generator, cubes.shape[0])
    out = []
    for cube, label, off in zip(cubes, labels.tolist(), offsets):
        out.append(shuffle_patches(extract_patches(cube, grid, patch_starts(grid, off)), perms[label]))
    return torch.stack(out), labels.to(cubes.device)


# --------------------------------------------------------------------------------- relative patch location
def rpl_offsets(per_side: int = 3) -> list[tuple[int, int, int]]:
    """Class -> (dz, dy, dx) grid offset of the neighbour from the centre patch; the centre itself is skipped
    (26 classes for 3 x 3 x 3), classes in grid order as the authors' ``preprocess_batch_3d``."""
    g, c = per_side, per_side // 2
    return [(z - c, y - c, x - c) for z, y, x in itertools.product(range(g), repeat=3) if (z, y, x) != (c, c, c)]


def rpl_patch_index(label: int, per_side: int = 3) -> int:
    """Grid index of the neighbour patch of class ``label`` (the centre index is skipped)."""
    centre = per_side ** 3 // 2
    return int(label) + (1 if int(label) >= centre else 0)


def rpl_batch(cubes: Tensor, grid: Grid, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Pairs (N, 2, C, p, p, p) = (centre patch, neighbour), labels (N,) in ``[0, 26)`` and the patch start
    corners (N, 2, 3) (for checks)."""
    n_classes = grid.n - 1
    labels = torch.randint(0, n_classes, (cubes.shape[0],), generator=generator, device=generator.device)
    offsets = random_offsets(grid, generator, cubes.shape[0])
    centre = grid.n // 2
    pairs, corners = [], []
    p = grid.patch
    for cube, label, off in zip(cubes, labels.tolist(), offsets):
        starts = patch_starts(grid, off)
        chosen = starts[[centre, rpl_patch_index(label, grid.per_side)]]
        pairs.append(torch.stack([cube[..., z:z + p, y:y + p, x:x + p] for z, y, x in chosen.tolist()]))
        corners.append(chosen)
    return torch.stack(pairs), labels.to(cubes.device), torch.stack(corners)


# ------------------------------------------------------------------------------------------------- CPC
@dataclass(frozen=True)
class CPCLayout:
    """Which patches form the context of each column and which are predicted (the authors'
    ``preprocess_grid_3d``): rows run along z. For every (y, x) column, the context is a pyramid: rows
    ``0 .. last`` with ``last = g // 2 - 1``, row r covering the (2 (last - r) + 1)^2 neighbourhood of the
    column (mirrored at the borders), ending with the column's own patch in row ``last``; the targets are the
    column's patches in rows ``last + 1 .. g - 1`` (the next patches, in order)."""

    per_side: int = 4

    @property
    def last_context_row(self) -> int:
        return self.per_side // 2 - 1

    @property
    def steps(self) -> int:
        return self.per_side - 1 - self.last_context_row

    def _mirror(self, i: int) -> int:
        g = self.per_side
        if i < 0:
            return -i
        if i >= g:
            return 2 * (g - 1) - i
        return i

    def context(self, y: int, x: int) -> list[int]:
        g, last = self.per_side, self.last_context_row
        grid = Grid(g, g, 1)
        out = []
        for r in range(0, last + 1):
            reach = last - r
            for yy in range(y - reach, y + reach + 1):
                for xx in range(x - reach, x + reach + 1):
                    out.append(grid.index(r, self._mirror(yy), self._mirror(xx)))
        return out

    def targets(self, y: int, x: int) -> list[int]:
        g, last = self.per_side, self.last_context_row
        grid = Grid(g, g, 1)
        return [grid.index(r, y, x) for r in range(last + 1, g)]

    def context_index(self) -> Tensor:
        """(columns, L) grid indices of each column's context sequence, columns in (y, x) order."""
        g = self.per_side
        return torch.tensor([self.context(y, x) for y in range(g) for x in range(g)], dtype=torch.long)

    def target_index(self) -> Tensor:
        """(columns, steps) grid indices of each column's next patches."""
        g = self.per_side
        return torch.tensor([self.targets(y, x) for y in range(g) for x in range(g)], dtype=torch.long)


def cpc_positive_index(batch: int, layout: CPCLayout) -> Tensor:
    """For predictions laid out (batch, columns, steps): the index of the true next patch in the flattened
    (batch * per_side^3) list of all patches: sample b's patch at the target grid index."""
    targets = layout.target_index()                                  # (columns, steps)
    n = layout.per_side ** 3
    return (torch.arange(batch).view(-1, 1, 1) * n + targets.unsqueeze(0)).reshape(-1)


def cpc_patches(cubes: Tensor, grid: Grid, generator: torch.Generator | None = None, *,
                crop_fraction: float = 0.95, patch_crop_fraction: float = 7 / 8) -> Tensor:
    """All patches (N, g^3, C, p, p, p) in grid order. With a ``generator`` (training), the authors'
    augmentation: the cube is randomly cropped to ``crop_fraction`` and zero-padded back (centred), and each
    patch is randomly cropped to ``patch_crop_fraction``, zero-padded back and flipped along z with
    probability 0.5. Without one (validation): the plain grid."""
    starts = patch_starts(grid)
    out = []
    for cube in cubes:
        if generator is not None:
            cube = _crop_pad(cube, int(grid.size * crop_fraction), generator)
        patches = extract_patches(cube, grid, starts)
        if generator is not None:
            keep = int(grid.patch * patch_crop_fraction)
            flips = torch.rand(len(patches), generator=generator, device=generator.device).cpu() < 0.5
            patches = torch.stack([_crop_pad(p, keep, generator).flip(-3) if f else _crop_pad(p, keep, generator)
                                   for p, f in zip(patches, flips.tolist())])
        out.append(patches)
    return torch.stack(out)


def _crop_pad(x: Tensor, keep: int, generator: torch.Generator) -> Tensor:
    """A random ``keep``^3 crop of (C, S, S, S), zero-padded back to S (centred)."""
    size = x.shape[-1]
    if keep >= size:
        return x
    z, y, w = torch.randint(0, size - keep + 1, (3,), generator=generator, device=generator.device).tolist()
    crop = x[..., z:z + keep, y:y + keep, w:w + keep]
    lo = (size - keep) // 2
    out = x.new_zeros(x.shape)
    out[..., lo:lo + keep, lo:lo + keep, lo:lo + keep] = crop
    return out
