"""Resumable training checkpoints, written atomically and read back without executing pickled code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from zoo.errors import CheckpointFormatError
from zoo.hub.integrity import atomic_path


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """``torch.save`` into a temporary file beside ``path``, then rename: an interrupted write leaves the
    previous checkpoint intact and never a truncated one."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: plain data only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged or foreign file
        raise CheckpointFormatError(
            f"cannot resume from {path}: {err}. Delete it to start over, or pass another --out"
        ) from None
    missing = {"model", "optimizer", "scheduler", "epoch", "history"} - set(state)
    if missing:
        raise CheckpointFormatError(f"{path} is not a medzoo pretraining checkpoint (missing {sorted(missing)})")
    return state
