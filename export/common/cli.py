"""Command-line options every pretraining script shares (``python -m export.<family>``)."""

from __future__ import annotations

import argparse
from pathlib import Path

#: config fields set by :func:`add_training_arguments` (``None`` when not given: the preset's value stays)
TRAINING_KEYS = ("max_epochs", "max_minutes", "batch_size", "lr", "patience", "seed")


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """Add the run-length, optimiser, device, resume and progress options (see :data:`TRAINING_KEYS`)."""
    p.add_argument("--name", default=None, help="model name in config.json (default: the --out folder name)")
    p.add_argument("--epochs", type=int, dest="max_epochs")
    p.add_argument("--minutes", type=float, dest="max_minutes", help="stop after this much training time")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--patience", type=int, help="stop after this many epochs without a better validation loss")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (smoke tests)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint.pt and start over")
    p.add_argument("--no-progress", action="store_true")


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """Add the preprocessing and loading options (:mod:`export.common.prepare`, :mod:`export.common.streaming`)."""
    g = p.add_argument_group("data preparation and loading")
    g.add_argument("--prepared", metavar="DIR",
                   help="the prepared-data folder (default OUT/prepared): volumes read, resampled and normalised "
                        "once, then memory-mapped by training; reused when its parameters match, refused otherwise")
    g.add_argument("--workers", type=int, default=None,
                   help="processes preparing volumes in parallel (default: the CPU cores, at most 8)")
    g.add_argument("--loader-workers", type=int, default=None,
                   help="DataLoader worker processes per training process (default: the spare cores, at most 4; "
                        "0 loads in the training process)")
    g.add_argument("--strict", action="store_true",
                   help="stop at the first volume that cannot be used (default: name it and leave it out)")
    g.add_argument("--dry-run", action="store_true",
                   help="read headers only and print what a run would do: volumes per split, cubes or crops and "
                        "steps per epoch, disk and RAM needed, estimated preparation time, files that will fail")
    g.add_argument("--prepare-only", action="store_true",
                   help="prepare the data folder and stop (e.g. on a CPU node before the GPU job)")


def default_prep_workers() -> int:
    """Preparation processes: the usable CPU cores, at most 8."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores))


def run_cli(args: argparse.Namespace, cfg, run) -> int:
    """Join torchrun's process group (if any) and return ``run(args, cfg, info, device)``; a
    :class:`zoo.errors.ZooError`, ``ValueError`` or ``OSError`` prints one line and exits with 2 (the
    traceback only with ``--debug``). The process group is left in every case."""
    import sys

    from zoo.errors import ZooError

    from .distributed import finish_distributed, init_distributed

    info, device = init_distributed(args.device)
    try:
        return run(args, cfg, info, device)
    except (ZooError, ValueError, OSError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        finish_distributed()


def data_options(args: argparse.Namespace, info) -> tuple[Path, int, int]:
    """``(prepared folder, preparation workers, loader workers)`` from the :func:`add_data_arguments` options:
    ``--prepared`` or ``OUT/prepared``; ``--workers`` or the cores (at most 8); ``--loader-workers`` or the
    spare cores (at most 4)."""
    from .streaming import default_workers

    folder = Path(args.prepared or Path(args.out) / "prepared")
    workers = args.workers or default_prep_workers()
    loader_workers = default_workers(info) if args.loader_workers is None else args.loader_workers
    return folder, workers, loader_workers
