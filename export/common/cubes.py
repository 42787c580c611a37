"""Cube pools: the fixed boxes each prepared volume offers, dealt out to ranks and steps, cut on demand.

Models Genesis and the 3D self-supervised tasks choose their boxes once, while a volume is prepared (the
acceptance rule of :func:`zoo.io.sample_cubes` needs the whole volume), and store them in the volume's record
as ``facts["boxes"]``: rows ``[z, y, x, dz, dy, dx]`` (start and size, voxels, (z, y, x) order). Training then
reads only the voxels of the boxes it needs from the memory-mapped volume (:class:`CubeBatches`).

An epoch of training is a permutation of the whole pool seeded by (seed, epoch), dealt out to the ranks in
turn (rank ``r`` takes items ``r, r + world, ...``), so the ranks' batches are disjoint and change every
epoch; validation batches are the pool in order, identical on every rank.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .distributed import DistInfo, rank_order
from .prepare import Manifest
from .streaming import VolumeArrays


def box_pool(volumes: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """``(n, 7)`` int64 rows ``[volume index, z, y, x, dz, dy, dx]`` of every box of ``volumes``, in order."""
    rows = [[i, *box] for i, v in enumerate(volumes) for box in (v.get("facts") or {}).get("boxes", [])]
    pool = np.asarray(rows, dtype=np.int64).reshape(-1, 7)
    if pool.size and (pool[:, 1:4].min() < 0 or pool[:, 4:].min() < 1):
        raise ValueError("a prepared box has a negative start or an empty size; prepare the data again")
    return pool


class CubeBatches:
    """A :class:`export.common.streaming.BatchPlan` over the boxes of the ``role`` volumes of a manifest.

    ``load(epoch, step)`` returns a float32 tensor ``(B, 1, *out_zyx)``; boxes of another size are resized
    trilinearly (the self-supervised ``resized`` sampling). ``shuffle=True`` (training): the rank's share of a
    (seed, epoch) permutation in batches of ``batch_size``, the last partial batch dropped. ``shuffle=False``
    (validation): the whole pool in order, the same on every rank, the last batch possibly smaller.
    ``rows``: keep only these rows of the pool (a single volume's boxes split into training and validation).
    """

    def __init__(self, manifest: Manifest, role: str, out_zyx: Sequence[int], batch_size: int, *, seed: int,
                 info: DistInfo | None = None, shuffle: bool = True, rows: slice | None = None,
                 max_open: int = 16) -> None:
        self.volumes = manifest.role(role)
        self.paths = [str(manifest.path(v)) for v in self.volumes]
        self.pool = box_pool(self.volumes)
        if rows is not None:
            self.pool = self.pool[rows]
        self.out_zyx = tuple(int(s) for s in out_zyx)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.info = info or DistInfo()
        self.shuffle = shuffle
        self.arrays = VolumeArrays(max_open)
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        n = len(self.pool)
        if self.shuffle:
            return (n // self.info.world) // self.batch_size
        return -(-n // self.batch_size)

    def indices(self, epoch: int, step: int) -> np.ndarray:
        """Rows of the pool in batch ``step`` of ``epoch``, sorted (so reads go through each file in order)."""
        bs = self.batch_size
        if not self.shuffle:
            return np.arange(step * bs, min((step + 1) * bs, len(self.pool)))
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, rank_order(len(self.pool), self.seed, epoch, self.info))
        return np.sort(self._order[1][step * bs:(step + 1) * bs])

    def cube(self, row: np.ndarray) -> torch.Tensor:
        """One box, ``(1, *out_zyx)`` float32."""
        v, z, y, x, dz, dy, dx = (int(a) for a in row)
        array = self.arrays(self.paths[v])
        crop = np.array(array[z:z + dz, y:y + dy, x:x + dx], dtype=np.float32, copy=True)
        if crop.shape != (dz, dy, dx):
            raise ValueError(f"{self.paths[v]}: box {row[1:].tolist()} lies outside the volume of shape "
                             f"{array.shape}; prepare the data again")
        t = torch.from_numpy(crop)[None]
        if t.shape[1:] != self.out_zyx:
            t = F.interpolate(t[None], size=self.out_zyx, mode="trilinear", align_corners=False)[0]
        return t

    def load(self, epoch: int, step: int) -> torch.Tensor:
        return torch.stack([self.cube(self.pool[i]) for i in self.indices(epoch, step)])

    def all(self) -> torch.Tensor:
        """Every cube of the pool in order ``(n, 1, *out_zyx)`` (for small validation sets and tests)."""
        return torch.stack([self.cube(r) for r in self.pool]) if len(self.pool) else \
            torch.zeros((0, 1, *self.out_zyx))
