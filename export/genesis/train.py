"""The Models Genesis restoration loop: one CPU to many GPUs (torchrun + DDP), resumable.

Each step draws clean cubes (N, 1, Z, Y, X) in [0, 1], corrupts them on the training device with
:func:`zoo.transforms.genesis.genesis_corrupt`, and regresses the clean cube with MSE on the sigmoid output
(every output channel regresses the same target, as the upstream nnU-Net variant). Validation uses a fixed
corruption of held-out cubes, so its loss is comparable across epochs; it is compared with two baselines
measured in the same run: the identity (the damaged input itself) and the untrained network.

Randomness is a function of (seed, rank, epoch, step), so a resumed run draws exactly what the
uninterrupted run would have drawn.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from zoo.archs import build_architecture
from zoo.state_dict import canonicalize
from zoo.transforms.genesis import genesis_corrupt
from zoo.viz import save_panels

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig

CHECKPOINT = "checkpoint.pt"


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
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


def _generator(device: torch.device, *parts: int) -> torch.Generator:
    seed = int(np.random.SeedSequence(list(parts)).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(seed)


@dataclass
class History:
    """Per-epoch curves and the two baselines, kept in the checkpoint and written to the provenance."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    identity_val_loss: float = math.nan
    untrained_val_loss: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TrainResult:
    best_state: dict[str, Tensor]
    history: History
    best_epoch: int
    stopped_because: str


def _evaluate(net: nn.Module, damaged: Tensor, target: Tensor, cfg: TrainConfig, amp: Callable) -> float:
    net.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, damaged.shape[0], cfg.batch_size):
            with amp():
                loss, _ = restoration_loss(net, damaged[i:i + cfg.batch_size], target[i:i + cfg.batch_size], cfg)
            total += loss.item() * damaged[i:i + cfg.batch_size].shape[0]
    net.train()
    return total / damaged.shape[0]


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
) -> TrainResult:
    """Train on ``train_cubes`` (N, 1, Z, Y, X) float32 in [0, 1]; early-stop on ``val_cubes``.

    Writes ``out_dir/checkpoint.pt`` (atomically, every epoch, on rank 0), TensorBoard scalars under
    ``out_dir/tensorboard`` when tensorboard is installed, and PNG panels (original | damaged | restored,
    the middle z slice of the first validation cube) under ``out_dir/panels``. With ``resume`` an existing
    checkpoint continues the run. ``max_steps`` (total optimiser steps) cuts a run short, for tests.
    """
    out = Path(out_dir)
    info, dev = init_distributed(device)
    torch.manual_seed(cfg.seed)
    net = build_network(cfg).to(dev)
    if info.world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    module = net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    step_size = max(1, int(cfg.patience * cfg.lr_step_fraction))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=0.5)
    use_bf16 = cfg.amp and dev.type == "cuda"

    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    # a fixed corruption of the validation cubes, identical on every rank and every epoch
    val = torch.from_numpy(np.ascontiguousarray(val_cubes, dtype=np.float32)).to(dev)
    corrupted = genesis_corrupt(val, _generator(dev, cfg.seed, 999_999))
    val_damaged, val_target = corrupted.damaged, corrupted.target

    history, epoch, best_val, best_epoch, bad_epochs = History(), 0, math.inf, -1, 0
    best_state: dict[str, Tensor] = {}
    ckpt_path = out / CHECKPOINT
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = History(**state["history"])
        epoch, best_val, best_epoch, bad_epochs = state["epoch"], state["best_val"], state["best_epoch"], state["bad_epochs"]
        best_state = state["best_state"]
        if info.main:
            log(f"resumed from {ckpt_path} at epoch {epoch} (best validation loss {best_val:.5f})")
    else:
        history.identity_val_loss = float(torch.mean((val_damaged - val_target) ** 2))
        history.untrained_val_loss = _evaluate(net, val_damaged, val_target, cfg, amp)

    writer = None
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(ImportError):
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tensorboard"))

    n_train = train_cubes.shape[0]
    per_rank = n_train // info.world
    steps_per_epoch = max(1, per_rank // cfg.batch_size)
    if per_rank < cfg.batch_size:
        raise ValueError(
            f"{n_train} training cubes over {info.world} processes is fewer than one batch of {cfg.batch_size}; "
            "add volumes, raise cubes_per_volume or lower batch_size"
        )
    bar = None
    if progress and info.main:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_epochs, initial=epoch, desc="genesis pretraining", unit="epoch")
    started = time.perf_counter() - (sum(history.seconds) if history.seconds else 0.0)
    total_steps = epoch * steps_per_epoch
    stopped = "max_epochs"
    while epoch < cfg.max_epochs:
        t0 = time.perf_counter()
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n_train)[info.rank::info.world][:per_rank]
        running, seen = 0.0, 0
        net.train()
        for step in range(steps_per_epoch):
            idx = np.sort(order[step * cfg.batch_size:(step + 1) * cfg.batch_size])
            clean = torch.from_numpy(train_cubes[idx]).to(dev, non_blocking=True)
            batch = genesis_corrupt(clean, _generator(dev, cfg.seed, info.rank, epoch, step))
            with amp():
                loss, _ = restoration_loss(net, batch.damaged, batch.target, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item() * len(idx)
            seen += len(idx)
            total_steps += 1
            if max_steps is not None and total_steps >= max_steps:
                break
        train_loss = running / max(seen, 1)
        if info.world > 1:
            t = torch.tensor([train_loss], device=dev)
            dist.all_reduce(t)
            train_loss = float(t) / info.world
        val_loss = _evaluate(net, val_damaged, val_target, cfg, amp)
        history.train_loss.append(train_loss)
        history.val_loss.append(val_loss)
        history.lr.append(optimizer.param_groups[0]["lr"])
        history.seconds.append(time.perf_counter() - t0)
        scheduler.step()
        epoch += 1
        if val_loss < best_val - 1e-6:
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = {k: v.detach().to("cpu", copy=True)
                          for k, v in canonicalize(module.state_dict(), module).items()}
        else:
            bad_epochs += 1
        if info.main:
            if writer is not None:
                writer.add_scalar("loss/train", train_loss, epoch)
                writer.add_scalar("loss/val", val_loss, epoch)
                writer.add_scalar("lr", history.lr[-1], epoch)
            if cfg.panel_every and (epoch % cfg.panel_every == 0 or epoch == 1):
                _save_panel(net, val_damaged, val_target, cfg, amp, out / "panels" / f"epoch_{epoch:04d}.png")
            save_checkpoint(ckpt_path, {
                "model": module.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "history": history.to_dict(), "epoch": epoch,
                "best_val": best_val, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "best_state": best_state, "config": cfg.to_dict(),
            })
            if bar is not None:
                bar.update(1)
                bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=f"{best_val:.4f}")
        if bad_epochs >= cfg.patience:
            stopped = f"early stop: no validation improvement in {cfg.patience} epochs"
            break
        if max_steps is not None and total_steps >= max_steps:
            stopped = f"max_steps {max_steps}"
            break
        if cfg.max_minutes is not None and (time.perf_counter() - started) / 60 >= cfg.max_minutes:
            stopped = f"time budget of {cfg.max_minutes} minutes"
            break
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    if info.world > 1:
        dist.barrier()
    return TrainResult(best_state or copy.deepcopy(canonicalize(module.state_dict(), module)), history, best_epoch,
                       stopped)


def _save_panel(net: nn.Module, damaged: Tensor, target: Tensor, cfg: TrainConfig, amp: Callable, path: Path) -> None:
    net.eval()
    with torch.no_grad(), amp():
        _, restored = restoration_loss(net, damaged[:1], target[:1], cfg)
    net.train()
    z = damaged.shape[2] // 2
    save_panels(path, [target[0, 0, z].float().cpu().numpy(), damaged[0, 0, z].float().cpu().numpy(),
                       restored[0, 0, z].float().cpu().numpy()])
