"""torchrun / DDP helpers: join the process group, reproducible generators, all-reduced means.

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
