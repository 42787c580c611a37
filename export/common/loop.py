"""The pretraining loop shared by every ``export`` script: one CPU to many GPUs (torchrun + DDP), resumable.

:func:`fit` owns everything that does not depend on the pretraining task: process group, model placement and
DDP wrapping, optimiser and StepLR schedule, bf16 autocast on CUDA, the epoch/step loop with
per-(seed, rank, epoch, step) generators, all-reduced training metrics, validation and early stopping, the
best weights, atomic resumable checkpoints (``OUT/checkpoint.pt``), TensorBoard scalars, a progress bar, PNG
panels and the time / step budgets. The task (:class:`Task`) supplies the network, the batches and the loss.

Reproducibility: the network is built right after ``torch.manual_seed(cfg.seed)``; the generator handed to
:meth:`Task.loss` is seeded from (seed, rank, epoch, step); so a resumed run continues the curve exactly and a
run never depends on how it was split into sessions.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from zoo.state_dict import canonicalize

from .checkpoint import load_checkpoint, save_checkpoint
from .config import JsonConfig
from .distributed import DistInfo, init_distributed, mean_over_ranks, seeded_generator

CHECKPOINT = "checkpoint.pt"

Autocast = Callable[[], ContextManager]


@runtime_checkable
class Task(Protocol):
    """What :func:`fit` needs from a pretraining task.

    Required:

    * ``build_model() -> nn.Module``: the whole trainable network (encoder and task heads), on CPU;
    * ``setup(device, info)``: move data to the device, fix the validation inputs (called once, after the
      model is built);
    * ``steps_per_epoch(info) -> int``: optimiser steps per epoch for this process (raise ``ValueError`` with
      advice when the data cannot fill one batch);
    * ``epoch_batches(epoch, info) -> iterable``: that many batch descriptions for this rank (indices,
      ``(dataset, indices)``...), a function of (seed, epoch, rank) only;
    * ``loss(net, batch, generator, autocast) -> (loss, metrics)``: the training loss of one batch (a scalar
      tensor with a graph) and float metrics; all randomness must come from ``generator`` (seeded from
      (seed, rank, epoch, step)); ``net`` may be DDP-wrapped; run the forward pass under ``autocast()``;
    * ``validate(net, autocast) -> dict``: metrics on the fixed validation set, with a ``"loss"`` key (early
      stopping and the best weights follow it).

    Optional: ``count(batch) -> int`` (samples in a batch, default ``len(batch)``), ``baselines(net, autocast)
    -> dict`` (reference values measured once, before training: chance level, untrained network...),
    ``panel(net, autocast, path)`` (write a PNG), ``find_unused_parameters`` (bool, for DDP: True when a step
    leaves some parameters without gradient, e.g. one branch per data set), ``desc`` (progress bar label).
    """

    def build_model(self) -> nn.Module: ...

    def setup(self, device: torch.device, info: DistInfo) -> None: ...

    def steps_per_epoch(self, info: DistInfo) -> int: ...

    def epoch_batches(self, epoch: int, info: DistInfo) -> Iterable[Any]: ...

    def loss(self, net: nn.Module, batch: Any, generator: torch.Generator,
             autocast: Autocast) -> tuple[Tensor, dict[str, float]]: ...

    def validate(self, net: nn.Module, autocast: Autocast) -> dict[str, float]: ...


@dataclass
class LoopConfig(JsonConfig):
    """The loop's settings. Any object with these attributes works (``export.genesis.config.TrainConfig``).

    ``optimizer``: ``"sgd"`` (``lr``, ``momentum``, ``weight_decay``) or ``"adam"`` (``lr``, ``weight_decay``).
    ``lr_step_fraction``: StepLR every ``int(patience * lr_step_fraction)`` epochs, gamma 0.5 (Models Genesis);
    0 or None keeps the learning rate constant.
    """

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    optimizer: str = "sgd"
    patience: int = 50
    lr_step_fraction: float | None = 0.8
    max_epochs: int = 10_000
    max_minutes: float | None = None
    seed: int = 1
    panel_every: int = 0
    amp: bool = True


@dataclass
class History:
    """Per-epoch curves and the baselines, kept in the checkpoint and written to the provenance."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    train_metrics: dict[str, list[float]] = field(default_factory=dict)
    val_metrics: dict[str, list[float]] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "History":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: copy.deepcopy(v) for k, v in data.items() if k in known})


@dataclass
class FitResult:
    best_state: dict[str, Tensor]
    history: History
    best_epoch: int
    stopped_because: str
    #: ``time.time()`` right after this run's first optimiser step (None when it took none)
    first_step_time: float | None = None


def make_optimizer(cfg: Any, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    kind = getattr(cfg, "optimizer", "sgd")
    if kind == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if kind == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {kind!r}; use 'sgd' or 'adam'")


def make_scheduler(cfg: Any, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    fraction = getattr(cfg, "lr_step_fraction", None)
    if not fraction:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    step_size = max(1, int(cfg.patience * fraction))
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=0.5)


def autocast_for(device: torch.device, enabled: bool) -> Autocast:
    """bf16 autocast on CUDA when ``enabled``; a no-op context otherwise."""
    use_bf16 = enabled and device.type == "cuda"

    def amp() -> ContextManager:
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    return amp


def unwrap(net: nn.Module) -> nn.Module:
    return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net


def _tensorboard(out: Path):
    with contextlib.suppress(ImportError):
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(out / "tensorboard"))
    return None


def fit(
    task: Task,
    cfg: Any,
    out_dir: str | Path,
    *,
    device: str | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    history_cls: type[History] = History,
    config_dict: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``task`` with the settings ``cfg`` (see :class:`LoopConfig`); early-stop on the validation loss.

    Writes ``out_dir/checkpoint.pt`` (atomically, every epoch, on rank 0), TensorBoard scalars under
    ``out_dir/tensorboard`` when tensorboard is installed, and the task's PNG panels under ``out_dir/panels``
    every ``cfg.panel_every`` epochs. With ``resume`` an existing checkpoint continues the run.
    ``max_steps`` (total optimiser steps) cuts a run short, for tests and benchmarks. ``config_dict`` is stored
    in the checkpoint (default ``cfg.to_dict()``).
    """
    out = Path(out_dir)
    info, dev = init_distributed(device)
    torch.manual_seed(cfg.seed)
    model = task.build_model().to(dev)
    net: nn.Module = model
    if info.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=bool(getattr(task, "find_unused_parameters", False)),
        )
    optimizer = make_optimizer(cfg, net.parameters())
    scheduler = make_scheduler(cfg, optimizer)
    amp = autocast_for(dev, bool(getattr(cfg, "amp", True)))
    task.setup(dev, info)

    history, epoch, best_val, best_epoch, bad_epochs = history_cls(), 0, math.inf, -1, 0
    best_state: dict[str, Tensor] = {}
    ckpt_path = out / CHECKPOINT
    # rank 0 alone writes the checkpoint, so rank 0 alone reads it and hands it to the others: a resume is
    # then the same on every rank even when the other nodes cannot see OUT
    state = load_checkpoint(ckpt_path) if resume and info.main and ckpt_path.exists() else None
    if info.world > 1:
        import torch.distributed as dist

        box = [state]
        dist.broadcast_object_list(box, src=0)
        state = box[0]
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = history_cls.from_dict(state["history"])
        epoch, best_val, best_epoch, bad_epochs = state["epoch"], state["best_val"], state["best_epoch"], state["bad_epochs"]
        best_state = state["best_state"]
        if info.main:
            log(f"resumed from {ckpt_path} at epoch {epoch} (best validation loss {best_val:.5f})")
        initial_state = None
    else:
        # the baselines (untrained network, ...) are measured on these weights after the first epoch's
        # training steps, so the first step never waits for a pass over the validation set
        initial_state = ({k: v.detach().clone() for k, v in model.state_dict().items()}
                         if hasattr(task, "baselines") else None)

    writer = None
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        writer = _tensorboard(out)

    steps_per_epoch = task.steps_per_epoch(info)
    count = getattr(task, "count", len)
    bar = None
    if progress and info.main:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_epochs, initial=epoch, desc=getattr(task, "desc", "pretraining"), unit="epoch")
    started = time.perf_counter() - (sum(history.seconds) if history.seconds else 0.0)
    total_steps = epoch * steps_per_epoch
    stopped = "max_epochs"
    first_step_time: float | None = None
    panel_every = int(getattr(cfg, "panel_every", 0) or 0)
    while epoch < cfg.max_epochs:
        t0 = time.perf_counter()
        running, seen = 0.0, 0
        sums: dict[str, float] = {}
        net.train()
        for step, batch in enumerate(task.epoch_batches(epoch, info)):
            if step >= steps_per_epoch:
                break
            generator = seeded_generator(dev, cfg.seed, info.rank, epoch, step)
            loss, metrics = task.loss(net, batch, generator, amp)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if first_step_time is None:
                first_step_time = time.time()
            n = count(batch)
            running += loss.item() * n
            seen += n
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
            total_steps += 1
            if max_steps is not None and total_steps >= max_steps:
                break
        train_loss = running / max(seen, 1)
        if initial_state is not None:
            trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(initial_state)
            # the bare model, not the DDP wrapper: a forward through DDP would spend its buffer broadcast
            # on these weights, and the ranks' BatchNorm statistics would part ways
            history.baselines.update(task.baselines(model, amp))
            model.load_state_dict(trained)
            initial_state = trained = None
        train_metrics = {k: v / max(seen, 1) for k, v in sums.items()}
        if info.world > 1:
            reduced = mean_over_ranks({"loss": train_loss, **{f"m/{k}": v for k, v in train_metrics.items()}}, info, dev)
            train_loss = reduced.pop("loss")
            train_metrics = {k[2:]: v for k, v in reduced.items()}
        val = task.validate(net, amp)
        val_loss = float(val["loss"])
        history.train_loss.append(train_loss)
        history.val_loss.append(val_loss)
        history.lr.append(optimizer.param_groups[0]["lr"])
        history.seconds.append(time.perf_counter() - t0)
        for k, v in train_metrics.items():
            history.train_metrics.setdefault(k, []).append(v)
        for k, v in val.items():
            if k != "loss":
                history.val_metrics.setdefault(k, []).append(float(v))
        scheduler.step()
        epoch += 1
        if val_loss < best_val - 1e-6:
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in canonicalize(model.state_dict(), model).items()}
        else:
            bad_epochs += 1
        if info.main:
            if writer is not None:
                writer.add_scalar("loss/train", train_loss, epoch)
                writer.add_scalar("loss/val", val_loss, epoch)
                writer.add_scalar("lr", history.lr[-1], epoch)
                for k, v in train_metrics.items():
                    writer.add_scalar(f"train/{k}", v, epoch)
                for k, v in val.items():
                    if k != "loss":
                        writer.add_scalar(f"val/{k}", float(v), epoch)
            if panel_every and hasattr(task, "panel") and (epoch % panel_every == 0 or epoch == 1):
                task.panel(net, amp, out / "panels" / f"epoch_{epoch:04d}.png")
            save_checkpoint(ckpt_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "history": history.to_dict(), "epoch": epoch,
                "best_val": best_val, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "best_state": best_state, "config": config_dict if config_dict is not None else cfg.to_dict(),
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
        import torch.distributed as dist

        dist.barrier()
    if not best_state:
        best_state = copy.deepcopy(canonicalize(model.state_dict(), model))
    return FitResult(best_state, history, best_epoch, stopped, first_step_time)
