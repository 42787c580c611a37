"""Run one 3D self-supervised task with the shared loop (:func:`export.common.loop.fit`)."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from ..common.loop import FitResult, fit
from .config import SSLConfig
from .encoders import EncoderSpec
from .tasks import make_task


def train(cfg: SSLConfig, spec: EncoderSpec, train_cubes: np.ndarray, val_cubes: np.ndarray,
          out_dir: str | os.PathLike, *, device: str | None = None, resume: bool = True, max_steps: int | None = None,
          progress: bool = True, log: Callable[[str], None] = print) -> FitResult:
    """Train ``cfg.task`` on cubes (N, 1, S, S, S); writes ``out_dir/checkpoint.pt`` and TensorBoard scalars.
    The result's best state holds the whole task network (``backbone.*`` is the encoder)."""
    task = make_task(cfg, spec, train_cubes, val_cubes)
    return fit(task, cfg, out_dir, device=device, resume=resume, max_steps=max_steps, progress=progress, log=log)
