"""Run one 3D self-supervised task with the shared loop (:func:`export.common.loop.fit`)."""

from __future__ import annotations

import os
from typing import Any, Callable

from ..common.loop import FitResult, fit
from .config import SSLConfig
from .encoders import EncoderSpec
from .tasks import make_task


def train(cfg: SSLConfig, spec: EncoderSpec, data: Any, out_dir: str | os.PathLike, *, device: str | None = None,
          resume: bool = True, max_steps: int | None = None, progress: bool = True, loader_workers: int = 0,
          log: Callable[[str], None] = print) -> FitResult:
    """Train ``cfg.task`` on the cubes of ``data`` (:class:`export.ssl3d.data.SSLData`, a prepared folder;
    or :class:`export.ssl3d.data.ArrayCubes`), streamed by ``loader_workers`` processes (0: in this process).
    Writes ``out_dir/checkpoint.pt`` and TensorBoard scalars. The result's best state holds the whole task
    network (``backbone.*`` is the encoder)."""
    task = make_task(cfg, spec, data, loader_workers=loader_workers)
    return fit(task, cfg, out_dir, device=device, resume=resume, max_steps=max_steps, progress=progress, log=log)
