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
"""

from __future__ import annotations

import torch
from torch._dynamo import OptimizedModule
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


__all__ = ["nnUNetTrainerUNetPlusPlus", "nnUNetTrainerUNetPlusPlus_smoke"]
