"""The Models Genesis restoration task, trained by the shared loop (:func:`export.common.loop.fit`).

Each step takes clean cubes (N, 1, Z, Y, X) in [0, 1] streamed from the prepared folder, corrupts them on the training device with
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

import torch
from torch import Tensor, nn

from zoo.archs import build_architecture
from zoo.transforms.genesis import genesis_corrupt
from zoo.viz import save_panels

from ..common.cubes import CubeBatches
from ..common.distributed import DistInfo, pool_steps, seeded_generator
from ..common.loop import CHECKPOINT, Autocast, FitResult, fit
from ..common.loop import History as _History
from ..common.prepare import Manifest
from ..common.streaming import StepLoader
from .config import TrainConfig
from .data import split_rows

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
    """Restoration of Genesis-corrupted cubes, as a :class:`export.common.loop.Task`.

    Clean cubes come from the prepared folder (``manifest``) through :class:`export.common.cubes.CubeBatches`
    and a :class:`export.common.streaming.StepLoader` with ``loader_workers`` processes; they are corrupted
    here, in the training process, on the training device. Validation cubes are streamed too, each batch
    corrupted with a generator seeded by (seed, batch), so the validation set is identical on every rank and
    in every epoch and no process holds it whole.
    """

    desc = "genesis pretraining"

    def __init__(self, cfg: TrainConfig, manifest: Manifest, *, loader_workers: int = 0) -> None:
        self.cfg = cfg
        self.manifest = manifest
        self.loader_workers = loader_workers
        self.val_role, self.train_rows, self.val_rows = split_rows(manifest, cfg)

    def build_model(self) -> nn.Module:
        return build_network(self.cfg)

    def setup(self, device: torch.device, info: DistInfo) -> None:
        self.device = device
        pin = device.type == "cuda"
        cfg = self.cfg
        self.train_plan = CubeBatches(self.manifest, "train", cfg.cube_zyx, cfg.batch_size, seed=cfg.seed, info=info,
                                      rows=self.train_rows)
        self.val_plan = CubeBatches(self.manifest, self.val_role, cfg.cube_zyx, cfg.batch_size, seed=cfg.seed,
                                    shuffle=False, rows=self.val_rows)
        if len(self.val_plan.pool) == 0:
            raise ValueError("no validation cubes: add volumes, or relax the acceptance rule")
        self.steps_per_epoch(info)
        self.train_loader = StepLoader(self.train_plan, workers=self.loader_workers, pin_memory=pin)
        self.val_loader = StepLoader(self.val_plan, workers=min(self.loader_workers, 1), pin_memory=pin)

    @property
    def cube_counts(self) -> tuple[int, int]:
        """(training cubes, validation cubes)."""
        return len(self.train_plan.pool), len(self.val_plan.pool)

    def steps_per_epoch(self, info: DistInfo) -> int:
        return pool_steps(len(self.train_plan.pool), info, self.cfg.batch_size,
                          "add volumes, raise cubes_per_volume or lower batch_size")

    def epoch_batches(self, epoch: int, info: DistInfo):
        return self.train_loader.epoch(epoch)

    def loss(self, net: nn.Module, batch: Tensor, generator: torch.Generator,
             autocast: Autocast) -> tuple[Tensor, dict[str, float]]:
        clean = batch.to(self.device, non_blocking=True)
        corrupted = genesis_corrupt(clean, generator)
        with autocast():
            loss, _ = restoration_loss(net, corrupted.damaged, corrupted.target, self.cfg)
        return loss, {}

    def val_batches(self):
        """``(damaged, target)`` on the device for every validation batch, the same on every call."""
        for k, clean in enumerate(self.val_loader.epoch(0)):
            corrupted = genesis_corrupt(clean.to(self.device, non_blocking=True),
                                        seeded_generator(self.device, self.cfg.seed, 999_999, k))
            yield corrupted.damaged, corrupted.target

    def _evaluate(self, net: nn.Module, autocast: Autocast) -> tuple[float, float]:
        """(validation loss, identity loss: the damaged input itself as the restoration)."""
        net.eval()
        total, identity, n = 0.0, 0.0, 0
        with torch.no_grad():
            for damaged, target in self.val_batches():
                with autocast():
                    loss, _ = restoration_loss(net, damaged, target, self.cfg)
                total += loss.item() * damaged.shape[0]
                identity += float(torch.mean((damaged - target) ** 2)) * damaged.shape[0]
                n += damaged.shape[0]
        net.train()
        return total / n, identity / n

    def baselines(self, net: nn.Module, autocast: Autocast) -> dict[str, float]:
        untrained, identity = self._evaluate(net, autocast)
        return {"identity_val_loss": identity, "untrained_val_loss": untrained}

    def validate(self, net: nn.Module, autocast: Autocast) -> dict[str, float]:
        return {"loss": self._evaluate(net, autocast)[0]}

    def panel(self, net: nn.Module, autocast: Autocast, path: Path) -> None:
        """original | damaged | restored, the middle z slice of the first validation cube."""
        damaged, target = next(iter(self.val_batches()))
        net.eval()
        with torch.no_grad(), autocast():
            _, restored = restoration_loss(net, damaged[:1], target[:1], self.cfg)
        net.train()
        z = damaged.shape[2] // 2
        save_panels(path, [target[0, 0, z].float().cpu().numpy(), damaged[0, 0, z].float().cpu().numpy(),
                           restored[0, 0, z].float().cpu().numpy()], titles=["original", "damaged", "restored"])


def train(
    cfg: TrainConfig,
    manifest: Manifest,
    out_dir: str | os.PathLike,
    *,
    device: str | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    progress: bool = True,
    loader_workers: int = 0,
    log: Callable[[str], None] = print,
) -> FitResult:
    """Train on the cubes of a prepared folder (:func:`export.common.prepare.prepare_folder` with
    :func:`export.genesis.data.genesis_recipe`); early-stop on its validation cubes.

    Writes ``out_dir/checkpoint.pt`` (atomically, every epoch, on rank 0), TensorBoard scalars under
    ``out_dir/tensorboard`` when tensorboard is installed, and PNG panels (original | damaged | restored,
    the middle z slice of the first validation cube) under ``out_dir/panels``. With ``resume`` an existing
    checkpoint continues the run. ``max_steps`` (total optimiser steps) cuts a run short, for tests.
    """
    task = GenesisTask(cfg, manifest, loader_workers=loader_workers)
    return fit(task, cfg, out_dir, device=device, resume=resume, max_steps=max_steps, progress=progress, log=log,
               history_cls=History)
