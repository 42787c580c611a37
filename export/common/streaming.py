"""Streaming training data: batches cut from memory-mapped volumes by ``DataLoader`` worker processes.

A recipe describes its batches with a :class:`BatchPlan`: how many steps an epoch has on this rank, and how to
load step ``s`` of epoch ``e`` (CPU tensors). Everything a batch holds is a function of (seed, epoch, rank,
step), never of the worker that loads it or of the order in which workers finish, so 0, 1 or 8 workers give
the same batches and a resumed run sees what the uninterrupted run would have seen.

:class:`StepLoader` wraps a plan in a ``torch.utils.data.DataLoader`` (one batch per item, persistent workers,
pinned memory when training on CUDA); the epoch number travels with each item, so persistent workers need no
restart between epochs. :class:`VolumeArrays` opens the ``.npy`` files of a prepared folder
(:mod:`.prepare`) memory-mapped, keeping at most ``max_open`` maps open, so a process's memory does not grow
with the number of volumes.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Iterator, Protocol

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from .distributed import DistInfo


class BatchPlan(Protocol):
    """The batches of one rank. ``len(plan)``: steps per epoch; ``plan.load(epoch, step)``: that batch, as
    CPU tensors (it runs in a worker process; it must be picklable)."""

    def __len__(self) -> int: ...

    def load(self, epoch: int, step: int) -> Any: ...


class VolumeArrays:
    """Memory-mapped ``.npy`` arrays, opened on first use; the least recently used map is closed once more
    than ``max_open`` are open. Pickles without its open maps (each worker opens its own)."""

    def __init__(self, max_open: int = 16) -> None:
        self.max_open = max_open
        self._open: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, path: str | os.PathLike) -> np.ndarray:
        key = os.fspath(path)
        array = self._open.get(key)
        if array is None:
            array = np.load(key, mmap_mode="r", allow_pickle=False)
            self._open[key] = array
            while len(self._open) > self.max_open:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(key)
        return array

    def __getstate__(self) -> dict[str, Any]:
        return {"max_open": self.max_open}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_open"])  # type: ignore[misc]


class _Steps(Dataset):
    def __init__(self, plan: BatchPlan) -> None:
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        epoch, step = item
        return self.plan.load(epoch, step)


class _EpochSteps(Sampler):
    """Yields ``(epoch, step)`` for every step of the current epoch (set in the main process)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, s) for s in range(self.steps))


def default_workers(info: DistInfo | None = None, cap: int = 4) -> int:
    """Loader workers per training process: the cores left after one per process on this node, at most
    ``cap``; 0 (load in the main process) when no core is to spare."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if info is None or info.world > 1 else 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(cap, cores // max(local_world, 1) - 1))


class StepLoader:
    """The batches of a :class:`BatchPlan`, epoch after epoch.

    ``workers``: loader processes (0 loads in this process); they persist across epochs. ``pin_memory``:
    page-locked batches for fast, asynchronous copies to a GPU.
    """

    def __init__(self, plan: BatchPlan, *, workers: int = 0, pin_memory: bool = False, prefetch: int = 2) -> None:
        self.plan = plan
        self.steps = len(plan)
        self._sampler = _EpochSteps(self.steps)
        kwargs: dict[str, Any] = {}
        if workers > 0:
            kwargs.update(persistent_workers=True, prefetch_factor=prefetch)
        self.loader = DataLoader(_Steps(plan), batch_size=None, sampler=self._sampler, num_workers=workers,
                                 pin_memory=pin_memory, **kwargs)

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int) -> Iterator[Any]:
        """The batches of ``epoch`` in step order."""
        self._sampler.epoch = int(epoch)
        return iter(self.loader)

