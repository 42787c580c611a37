"""The Models Genesis restoration task, trained by the shared loop (:func:`export.common.loop.fit`).

Each step draws clean cubes (N, 1, Z, Y, X) in [0, 1], corrupts them on the training device with
:func:`zoo.transforms.genesis.genesis_corrupt`, and regresses the clean cube with MSE on the sigmoid output
(every output channel regresses the same target, as the upstream nnU-Net variant). Validation uses a fixed
corruption of held-out cubes, so its loss is comparable across epochs; it is compared with two baselines
measured in the same run: the identity (the damaged input itself) and the untrained network.

Everything task-independent (torchrun/DDP, bf16 on GPU, resume, early stopping, TensorBoard, progress bar,
checkpoints) lives in :mod:`export.common`; randomness is a function of (seed, rank, epoch, step), so a
resumed run draws exactly what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from zoo.archs import build_architecture
from zoo.transforms.genesis import genesis_corrupt
from zoo.viz import save_panels

from ..common.distributed import DistInfo, pool_batches, pool_steps, seeded_generator
from ..common.loop import CHECKPOINT, Autocast, FitResult, fit
from ..common.loop import History as _History
from .config import TrainConfig

__all__ = ["CHECKPOINT", "GenesisTask", "History", "TrainResult", "build_network", "normalize_input",
           "restoration_loss", "train"]

TrainResult = FitResult


class History(_History):
    """The loop's history, with the two Genesis baselines as attributes (and flat keys in ``to_dict``)."""

    @property
    def identity_val_loss(self) -> float:
        return float(self.baselines.get("identity_val_loss", math.nan))

    @property
    def untrained_val_loss(self) -> float:
        return float(self.baselines.get("untrained_val_loss", math.nan))

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["identity_val_loss"] = self.identity_val_loss
        out["untrained_val_loss"] = self.untrained_val_loss
        return out


def normalize_input(x: Tensor, cfg: TrainConfig) -> Tensor:
    """Network input from [0, 1] cubes: unchanged (``unit``) or HU z-scored (``ct-zscore``)."""
    if cfg.input_norm == "unit":
        return x
    if cfg.input_norm == "ct-zscore":
        return (x * 2000.0 - 1000.0 - cfg.ct_mean) / cfg.ct_std
    raise ValueError(f"unknown input_norm {cfg.input_norm!r}; use 'unit' or 'ct-zscore'")


def build_network(cfg: TrainConfig, in_channels: int = 1) -> nn.Module:
    kwargs = dict(cfg.arch_kwargs)
    if cfg.architecture == "genesis_unet3d":
        kwargs.setdefault("out_activation", None)  # the loop applies the sigmoid itself
    return build_architecture(cfg.architecture, in_channels=in_channels, num_classes=cfg.num_classes, **kwargs)


def restoration_loss(net: nn.Module, damaged: Tensor, target: Tensor, cfg: TrainConfig) -> tuple[Tensor, Tensor]:
    """MSE between sigmoid(net(input)) and the clean cube; returns (loss, restored (N, 1, ...))."""
    logits = net(normalize_input(damaged, cfg))
    if isinstance(logits, (list, tuple)):
        logits = logits[0]
    restored = torch.sigmoid(logits.float())
    loss = torch.mean((restored - target.expand_as(restored)) ** 2)
    return loss, restored[:, :1]


class GenesisTask:
    """Restoration of Genesis-corrupted cubes, as a :class:`export.common.loop.Task`."""

    desc = "genesis pretraining"

    def __init__(self, cfg: TrainConfig, train_cubes: np.ndarray, val_cubes: np.ndarray) -> None:
        self.cfg = cfg
        self.train_cubes = train_cubes
        self.val_cubes = val_cubes

    def build_model(self) -> nn.Module:
        return build_network(self.cfg)

    def setup(self, device: torch.device, info: DistInfo) -> None:
        """A fixed corruption of the validation cubes, identical on every rank and every epoch."""
        self.device = device
        val = torch.from_numpy(np.ascontiguousarray(self.val_cubes, dtype=np.float32)).to(device)
        corrupted = genesis_corrupt(val, seeded_generator(device, self.cfg.seed, 999_999))
        self.val_damaged, self.val_target = corrupted.damaged, corrupted.target

    def steps_per_epoch(self, info: DistInfo) -> int:
        return pool_steps(self.train_cubes.shape[0], info, self.cfg.batch_size,
                          "add volumes, raise cubes_per_volume or lower batch_size")

    def epoch_batches(self, epoch: int, info: DistInfo):
        return pool_batches(self.train_cubes.shape[0], self.cfg.seed, epoch, info, self.cfg.batch_size,
                            self.steps_per_epoch(info))

    def loss(self, net: nn.Module, batch: np.ndarray, generator: torch.Generator,
             autocast: Autocast) -> tuple[Tensor, dict[str, float]]:
        clean = torch.from_numpy(self.train_cubes[batch]).to(self.device, non_blocking=True)
        corrupted = genesis_corrupt(clean, generator)
        with autocast():
            loss, _ = restoration_loss(net, corrupted.damaged, corrupted.target, self.cfg)
        return loss, {}

    def _evaluate(self, net: nn.Module, autocast: Autocast) -> float:
        net.eval()
        total = 0.0
        bs = self.cfg.batch_size
        damaged, target = self.val_damaged, self.val_target
        with torch.no_grad():
            for i in range(0, damaged.shape[0], bs):
                with autocast():
                    loss, _ = restoration_loss(net, damaged[i:i + bs], target[i:i + bs], self.cfg)
                total += loss.item() * damaged[i:i + bs].shape[0]
        net.train()
        return total / damaged.shape[0]

    def baselines(self, net: nn.Module, autocast: Autocast) -> dict[str, float]:
        return {
            "identity_val_loss": float(torch.mean((self.val_damaged - self.val_target) ** 2)),
            "untrained_val_loss": self._evaluate(net, autocast),
        }

    def validate(self, net: nn.Module, autocast: Autocast) -> dict[str, float]:
        return {"loss": self._evaluate(net, autocast)}

    def panel(self, net: nn.Module, autocast: Autocast, path: Path) -> None:
        """original | damaged | restored, the middle z slice of the first validation cube."""
        damaged, target = self.val_damaged, self.val_target
        net.eval()
        with torch.no_grad(), autocast():
            _, restored = restoration_loss(net, damaged[:1], target[:1], self.cfg)
        net.train()
        z = damaged.shape[2] // 2
        save_panels(path, [target[0, 0, z].float().cpu().numpy(), damaged[0, 0, z].float().cpu().numpy(),
                           restored[0, 0, z].float().cpu().numpy()], titles=["original", "damaged", "restored"])


def train(
    cfg: TrainConfig,
    train_cubes: np.ndarray,
    val_cubes: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    device: str | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> FitResult:
    """Train on ``train_cubes`` (N, 1, Z, Y, X) float32 in [0, 1]; early-stop on ``val_cubes``.

    Writes ``out_dir/checkpoint.pt`` (atomically, every epoch, on rank 0), TensorBoard scalars under
    ``out_dir/tensorboard`` when tensorboard is installed, and PNG panels (original | damaged | restored,
    the middle z slice of the first validation cube) under ``out_dir/panels``. With ``resume`` an existing
    checkpoint continues the run. ``max_steps`` (total optimiser steps) cuts a run short, for tests.
    """
    task = GenesisTask(cfg, train_cubes, val_cubes)
    return fit(task, cfg, out_dir, device=device, resume=resume, max_steps=max_steps, progress=progress, log=log,
               history_cls=History)
