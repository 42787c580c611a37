"""Med3D co-training (Chen, Ma, Zheng 2019) as a task of the shared loop (:func:`export.common.loop.fit`).

One MedicalNet ResNet backbone (:func:`zoo.archs.med3d_resnet.build_med3d_resnet`, dilated, output stride 8)
is shared by all data sets; each data set j has its own branch, a 1x1x1 convolution to its classes followed
by trilinear upsampling to the input size. Every batch comes from one data set and only trains that data set's
branch (and the backbone), so incomplete or conflicting label sets never meet. Balanced sampling: per epoch
every data set contributes as many crops as the largest one (``samples_per_volume`` per volume of the largest;
the smaller ones are drawn with repetition); the order of the data sets' batches is shuffled. Under torchrun all
processes train the same data set at a given step (on different crops), so one branch per step gets gradients.

Data: the crops are cut from the memory-mapped prepared volumes by ``DataLoader`` workers
(:class:`export.med3d.data.Med3DCrops` in a :class:`export.common.streaming.StepLoader`, pinned memory on
CUDA); rotation and scaling are applied here, batched on the training device, with the loop's per-step
generator.

Validation: fixed crops (no augmentation) of the held-out cases of each data set (of its training cases when
none could be held out), streamed (:class:`export.med3d.data.Med3DValCrops`); metrics per data set:
cross-entropy and foreground Dice; the validation loss is the mean cross-entropy over data sets. Baselines
(measured on the untrained weights): the cross-entropy of the best constant prediction (the entropy of the
validation label distribution, ``prior_ce``), the Dice of a random guess at the foreground rate
(``chance_dice_*`` = that rate) and the untrained network.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.archs.med3d_resnet import build_med3d_resnet
from zoo.viz import save_panels

from ..common.distributed import DistInfo
from ..common.loop import Autocast, FitResult, fit
from ..common.streaming import StepLoader
from .config import Med3DConfig
from .data import Med3DCrops, Med3DDataset, Med3DValCrops, augment, steps_per_dataset


class Med3DNet(nn.Module):
    """A MedicalNet ResNet backbone plus one 1x1x1 branch per data set (``branches.j``)."""

    def __init__(self, depth: int, num_classes: list[int], shortcut_type: str | None = None) -> None:
        super().__init__()
        self.backbone = build_med3d_resnet(depth=depth, shortcut_type=shortcut_type)
        width = self.backbone.num_features
        self.branches = nn.ModuleList(nn.Conv3d(width, k, kernel_size=1) for k in num_classes)

    def forward(self, x: Tensor, dataset: int) -> Tensor:
        """Logits (N, K_dataset, Z, Y, X) at the input size."""
        y = self.branches[dataset](self.backbone(x))
        return F.interpolate(y, size=x.shape[2:], mode="trilinear", align_corners=False)


class Med3DTask:
    """The co-training task over ``datasets`` (:class:`export.med3d.data.Med3DDataset`); ``loader_workers``
    DataLoader processes cut the training crops (0: in the training process)."""

    desc = "med3d co-training"
    find_unused_parameters = True   # the other data sets' branches get no gradient at a step

    def __init__(self, cfg: Med3DConfig, datasets: list[Med3DDataset], *, loader_workers: int = 0) -> None:
        if not datasets:
            raise ValueError("Med3D co-training needs at least one data set")
        self.cfg = cfg
        self.datasets = datasets
        self.loader_workers = int(loader_workers)
        self.n_max = max(len(d.train) for d in datasets)

    def build_model(self) -> nn.Module:
        return Med3DNet(self.cfg.depth, [d.num_classes for d in self.datasets], self.cfg.shortcut_type)

    # ----------------------------------------------------------------------------------------- data
    def setup(self, device: torch.device, info: DistInfo) -> None:
        self.device = device
        pin = device.type == "cuda"
        self.train_plan = Med3DCrops(self.datasets, self.cfg, info)
        self.val_plan = Med3DValCrops(self.datasets, self.cfg)
        self.train_loader = StepLoader(self.train_plan, workers=self.loader_workers, pin_memory=pin)
        self.val_loader = StepLoader(self.val_plan, workers=min(self.loader_workers, 1), pin_memory=pin)

    def steps_per_epoch(self, info: DistInfo) -> int:
        per = steps_per_dataset(self.n_max, self.cfg.samples_per_volume, self.cfg.batch_size, info.world)
        return len(self.datasets) * per

    def epoch_batches(self, epoch: int, info: DistInfo):
        """The loaded batches of ``epoch`` on this rank: ``(dataset index, images, labels)`` on the CPU."""
        return self.train_loader.epoch(epoch)

    def count(self, batch) -> int:
        return int(batch[1].shape[0])

    def _on_device(self, batch) -> tuple[int, Tensor, Tensor]:
        j, images, labels = batch
        return (int(j), images.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True).long())

    def loss(self, net: nn.Module, batch, generator: torch.Generator,
             autocast: Autocast) -> tuple[Tensor, dict[str, float]]:
        j, images, labels = self._on_device(batch)
        d = self.datasets[j]
        images, labels = augment(images, labels, generator, self.cfg.rotation_deg, tuple(self.cfg.scale_range))
        with autocast():
            logits = net(images, j)
        loss = F.cross_entropy(logits.float(), labels)
        return loss, {f"loss_{d.name}": float(loss.detach()) * len(self.datasets)}

    # ------------------------------------------------------------------------------------ validation
    def _evaluate(self, net: nn.Module, autocast: Autocast) -> tuple[dict[str, float], list[Tensor]]:
        """Metrics on the validation crops, and per data set the label counts (for the baselines)."""
        net.eval()
        n_sets = len(self.datasets)
        ce = [0.0] * n_sets
        counts = [torch.zeros(d.num_classes, dtype=torch.float64) for d in self.datasets]
        # per data set and foreground class: [predicted & true, predicted, true] voxels, pooled over the crops
        overlap = [torch.zeros(max(d.num_classes - 1, 0), 3, dtype=torch.float64) for d in self.datasets]
        with torch.no_grad():
            for batch in self.val_loader.epoch(0):
                j, images, labels = self._on_device(batch)
                with autocast():
                    logits = net(images, j).float()
                ce[j] += F.cross_entropy(logits, labels, reduction="sum").item()
                counts[j] += torch.bincount(labels.flatten(), minlength=self.datasets[j].num_classes).double().cpu()
                pred = logits.argmax(1)
                for k in range(1, self.datasets[j].num_classes):
                    p, t = pred == k, labels == k
                    overlap[j][k - 1] += torch.stack([(p & t).sum(), p.sum(), t.sum()]).double().cpu()
        net.train()
        out: dict[str, float] = {}
        for j, d in enumerate(self.datasets):
            out[f"ce_{d.name}"] = ce[j] / max(float(counts[j].sum()), 1.0)
            out[f"dice_{d.name}"] = _dice_from_counts(overlap[j])
        out["loss"] = float(np.mean([out[f"ce_{d.name}"] for d in self.datasets]))
        out["dice"] = float(np.nanmean([out[f"dice_{d.name}"] for d in self.datasets]))
        return out, counts

    def validate(self, net: nn.Module, autocast: Autocast) -> dict[str, float]:
        return self._evaluate(net, autocast)[0]

    def baselines(self, net: nn.Module, autocast: Autocast) -> dict[str, float]:
        untrained, counts = self._evaluate(net, autocast)
        out: dict[str, float] = {}
        priors = []
        for d, freq in zip(self.datasets, counts):
            p = freq / freq.sum()
            entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
            out[f"prior_ce_{d.name}"] = entropy
            out[f"chance_dice_{d.name}"] = float(p[1:].sum())
            priors.append(entropy)
        out["prior_ce"] = float(np.mean(priors))
        out["untrained_val_loss"] = untrained["loss"]
        out["untrained_dice"] = untrained["dice"]
        return out

    def panel(self, net: nn.Module, autocast: Autocast, path: Path) -> None:
        """Per data set: image | labels | prediction, middle z slice of its first validation crop."""
        net.eval()
        tiles, titles = [], []
        with torch.no_grad():
            for j, step in sorted(self.val_plan.first_step.items()):
                _, images, labels = self._on_device(self.val_plan.load(0, step))
                with autocast():
                    pred = net(images[:1], j).float().argmax(1)
                z = images.shape[2] // 2
                k = max(1, self.datasets[j].num_classes - 1)
                image = images[0, 0, z].float().cpu().numpy()   # z-scored: shown from its own min to max
                image = (image - image.min()) / max(float(image.max() - image.min()), 1e-6)
                tiles += [image, labels[0, z].float().cpu().numpy() / k,
                          pred[0, z].float().cpu().numpy() / k]
                short = self.datasets[j].name.split("_", 1)[-1]
                titles += [short, "labels", "prediction"]
        net.train()
        save_panels(path, tiles, titles=titles)


def _dice_from_counts(overlap: Tensor) -> float:
    """Mean Dice over the foreground classes from rows ``[predicted & true, predicted, true]``; classes absent
    from both prediction and labels are skipped (NaN when all are)."""
    scores = [2.0 * float(both) / float(p + t) for both, p, t in overlap.tolist() if p + t > 0]
    return float(np.mean(scores)) if scores else math.nan


def train(cfg: Med3DConfig, datasets: list[Med3DDataset], out_dir: str | os.PathLike, *, device: str | None = None,
          resume: bool = True, max_steps: int | None = None, progress: bool = True, loader_workers: int = 0,
          log: Callable[[str], None] = print) -> FitResult:
    """Co-train on ``datasets`` (prepared: :func:`export.med3d.data.prepare_datasets`); writes
    ``out_dir/checkpoint.pt``, TensorBoard scalars and panels (see :func:`export.common.loop.fit`). The best
    weights (all branches included) are in the result. ``loader_workers``: DataLoader processes cutting crops."""
    return fit(Med3DTask(cfg, datasets, loader_workers=loader_workers), cfg, out_dir, device=device, resume=resume,
               max_steps=max_steps, progress=progress, log=log)


def backbone_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The backbone's tensors of a :class:`Med3DNet` state dict, in MedicalNet's layout (``conv1.weight``,
    ``layer1.0.conv1.weight``...): what ``zoo.load`` reads for the ``med3d-*`` entries."""
    prefix = "backbone."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
