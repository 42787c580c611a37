"""Resumable training checkpoints (moved to :mod:`export.common.checkpoint`; re-exported here)."""

from ..common.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["load_checkpoint", "save_checkpoint"]
