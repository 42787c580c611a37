"""Command-line options every pretraining script shares (``python -m export.<family>``)."""

from __future__ import annotations

import argparse

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
