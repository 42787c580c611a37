"""nnU-Net v2 trainers for medzoo's UNet++ (:class:`zoo.archs.nested_unet.NestedUNet`).

This file is found by nnU-Net's ``-tr`` lookup through ``nnUNet_extTrainer`` (nnunetv2 >= 2.8), which imports
every module of that folder under its bare name: keep this module free of relative imports and of imports of
``zoo.nnunet.trainers`` itself. Normal Python code imports the same classes from :mod:`zoo.nnunet.trainers`.

* ``nnUNetTrainerUNetPlusPlus``: UNet++'s deep supervision: one full-resolution loss on every top-row node
  ``X(0, 1..L)`` with equal weights, so each pruned branch (``branch=1..L`` at inference) has a trained head.
  The stock ``nnUNetTrainer`` also trains a NestedUNet plan (multi-scale deep supervision on the diagonal
  nodes, nnU-Net's own weights), but then only the full network's head ``X(0, L)`` is trained.
* ``nnUNetTrainerUNetPlusPlus_smoke``: the same with 1 epoch of 2 iterations (1 validation iteration): checks a
  setup end to end (plans, pretrained file, checkpoint, prediction) in about a minute on a CPU. Not for results.
* ``nnUNetTrainerQuick``: a short run for any plan (PlainConvUNet, ResidualEncoderUNet, NestedUNet with the stock
  multi-scale deep supervision): ``quick_epochs`` epochs of ``quick_iterations`` iterations (env
  ``ZOO_QUICK_EPOCHS`` / ``ZOO_QUICK_ITERS``), the training loss printed (and logged) after every iteration.
  ``nnUNetTrainerUNetPlusPlusQuick`` is the same for ``nnUNetTrainerUNetPlusPlus``. Not for results.

* ``nnUNetTrainerFinetune``: fine-tuning from ``-pretrained_weights``: nnunetv2's ``nnUNetTrainer_warmup``
  schedule (linear warm-up of the whole network over 50 epochs, then poly 0.9 to epoch 1000, one SGD optimiser
  throughout) on nnU-Net's own checkpoint code: 2.8.1's ``nnUNetTrainer_warmup.load_checkpoint`` reads checkpoints
  with ``torch.load``'s default ``weights_only=True`` (torch >= 2.6), which refuses the numpy scalars in nnU-Net's
  training log, so ``--c`` cannot resume it.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch._dynamo import OptimizedModule
from torch.optim.lr_scheduler import _LRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def _unwrap(network):
    mod = network.module if hasattr(network, "module") else network
    return mod._orig_mod if isinstance(mod, OptimizedModule) else mod


class nnUNetTrainerUNetPlusPlus(nnUNetTrainer):
    """nnUNetTrainer with UNet++ deep supervision (all outputs full resolution, equal loss weights).

    Needs a plan whose ``architecture.network_class_name`` is ``zoo.archs.nested_unet.NestedUNet``
    (``zoo plan --plans nnUNetPlans.json --arch unetpp -o nnUNetPlans_unetpp.json``).
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)

    def _n_outputs(self) -> int:
        return len(self.configuration_manager.pool_op_kernel_sizes) - 1

    def _get_deep_supervision_scales(self):
        if not self.enable_deep_supervision:
            return None
        dims = len(self.configuration_manager.patch_size)
        return [[1.0] * dims for _ in range(self._n_outputs())]

    def _build_loss(self):
        loss = super()._build_loss()
        if self.enable_deep_supervision:
            n = self._n_outputs()
            loss.weight_factors = tuple([1.0 / n] * n)
        return loss

    def initialize(self):
        super().initialize()
        decoder = getattr(_unwrap(self.network), "decoder", None)
        if not hasattr(decoder, "deep_supervision_mode"):
            raise RuntimeError(
                f"{type(self).__name__} trains zoo.archs.nested_unet.NestedUNet (UNet++), but the plan's "
                f"network_class_name is {self.configuration_manager.network_arch_class_name!r}; rewrite the plan "
                "with `zoo plan --plans PLANS.json --arch unetpp -o PLANS_unetpp.json` and train with "
                "-p PLANS_unetpp")
        decoder.deep_supervision_mode = "top_row"


class nnUNetTrainerUNetPlusPlus_smoke(nnUNetTrainerUNetPlusPlus):
    """1 epoch of 2 training iterations and 1 validation iteration: a quick end-to-end check, not for results."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1


def _env_int(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer (allowed: {low}..{high})") from None
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is outside {low}..{high}")
    return value


class nnUNetTrainerQuick(nnUNetTrainer):
    """A short run of any plan's network: ``quick_epochs`` epochs of ``quick_iterations`` training iterations
    (``quick_val_iterations`` validation iterations), the loss printed after every iteration (nnU-Net prints it
    only at an epoch's end). Environment overrides: ``ZOO_QUICK_ITERS`` (1..250), ``ZOO_QUICK_EPOCHS`` (1..100).

    Checks that a plan, a ``-pretrained_weights`` file and the data train, and shows the loss moving, in minutes.
    Learning rate: nnU-Net's poly schedule over the short run. Not for results. ``nnUNetv2_train`` still runs its
    final sliding-window validation of the fold's validation cases afterwards (``checkpoint_final.pth`` is written
    before it starts).
    """

    quick_iterations = 5
    quick_epochs = 1
    quick_val_iterations = 1

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = _env_int("ZOO_QUICK_ITERS", self.quick_iterations, 1, 250)
        self.num_epochs = _env_int("ZOO_QUICK_EPOCHS", self.quick_epochs, 1, 100)
        self.num_val_iterations_per_epoch = self.quick_val_iterations
        self._quick_iteration = 0

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._quick_iteration = 0

    def train_step(self, batch: dict) -> dict:
        out = super().train_step(batch)
        self._quick_iteration += 1
        self.print_to_log_file(f"epoch {self.current_epoch} iteration {self._quick_iteration}/"
                               f"{self.num_iterations_per_epoch} train_loss "
                               f"{float(np.mean(out['loss'])):.4f}")
        return out


class nnUNetTrainerUNetPlusPlusQuick(nnUNetTrainerQuick, nnUNetTrainerUNetPlusPlus):
    """:class:`nnUNetTrainerQuick` with UNet++ deep supervision (:class:`nnUNetTrainerUNetPlusPlus`)."""


class WarmupPolyLRScheduler(_LRScheduler):
    """Per epoch ``e`` (nnU-Net steps it with the epoch): ``initial_lr * (e + 1) / warmup`` for ``e < warmup``,
    then ``initial_lr * (1 - (e - warmup) / (max_epochs - warmup)) ** exponent``: nnunetv2's
    ``Lin_incr_LRScheduler`` followed by ``PolyLRScheduler_offset``, as ``nnUNetTrainer_warmup`` uses them."""

    def __init__(self, optimizer, initial_lr: float, warmup: int, max_epochs: int, exponent: float = 0.9):
        self.optimizer, self.initial_lr, self.exponent = optimizer, initial_lr, exponent
        self.max_epochs = max_epochs
        self.warmup = max(1, min(warmup, max_epochs - 1))
        self.ctr = 0
        super().__init__(optimizer, -1)

    def lr_at(self, epoch: int) -> float:
        if epoch < self.warmup:
            return self.initial_lr * (epoch + 1) / self.warmup
        done = min(1.0, (epoch - self.warmup) / max(1, self.max_epochs - self.warmup))
        return self.initial_lr * (1 - done) ** self.exponent

    def step(self, current_step=None):
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        lr = self.lr_at(current_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = [lr] * len(self.optimizer.param_groups)


class nnUNetTrainerFinetune(nnUNetTrainer):
    """Fine-tuning from ``-pretrained_weights``: linear warm-up of the whole network for ``warmup_epochs`` (50)
    epochs, then nnU-Net's poly decay to ``num_epochs`` (1000); SGD (momentum 0.99, Nesterov) kept throughout.
    The schedule of nnunetv2's ``nnUNetTrainer_warmup``, resumable with ``--c`` (nnU-Net's own checkpoint code)."""

    warmup_epochs = 50

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay,
                                    momentum=0.99, nesterov=True)
        return optimizer, WarmupPolyLRScheduler(optimizer, self.initial_lr, self.warmup_epochs, self.num_epochs)


__all__ = ["nnUNetTrainerUNetPlusPlus", "nnUNetTrainerUNetPlusPlus_smoke", "nnUNetTrainerQuick",
           "nnUNetTrainerUNetPlusPlusQuick", "nnUNetTrainerFinetune", "WarmupPolyLRScheduler"]
