"""torchrun / DDP helpers: join the process group, reproducible generators, rank-sharded batches, all-reduced means.

A script started with ``torchrun --nproc_per_node=N`` sees ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; a plain
``python -m ...`` sees none of them and runs as a single process (world size 1, no process group).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when launched by torchrun (gloo on CPU, nccl on CUDA).

    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or None (CUDA when available). Under torchrun a bare
    ``"cuda"`` becomes the process's ``LOCAL_RANK`` GPU. Calling it again is harmless.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", info.local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return info, dev


def finish_distributed() -> None:
    """Leave the process group (a no-op for single-process runs)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def seeded_generator(device: torch.device | str, *parts: int) -> torch.Generator:
    """A torch generator on ``device`` seeded from the integers ``parts`` (e.g. seed, rank, epoch, step), so a
    resumed run draws exactly what the uninterrupted run would have drawn."""
    seed = int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(seed)


def mean_over_ranks(values: Mapping[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """The mean of each value over all processes (unchanged for a single process)."""
    if info.world == 1 or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / info.world for k, v in zip(keys, t.tolist())}


def pool_steps(n: int, info: DistInfo, batch_size: int, advice: str) -> int:
    """Optimiser steps per epoch when each rank takes ``n // world`` items of a pool of ``n`` in batches of
    ``batch_size``; raises ``ValueError`` (ending with ``advice``) when a rank cannot fill one batch."""
    per_rank = n // info.world
    if per_rank < batch_size:
        raise ValueError(f"{n} training cubes over {info.world} processes is fewer than one batch of "
                         f"{batch_size}; {advice}")
    return per_rank // batch_size


def rank_order(n: int, seed: int, epoch: int, info: DistInfo) -> np.ndarray:
    """This rank's items of a pool of ``n`` in ``epoch``: a (seed, epoch) permutation of the pool dealt out to
    the ranks in turn (``n // world`` each), so the ranks' shares are disjoint and depend on nothing but
    (seed, epoch, rank)."""
    return np.random.default_rng([seed, epoch]).permutation(n)[info.rank::info.world][: n // info.world]
