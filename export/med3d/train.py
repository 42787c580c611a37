"""Med3D co-training (Chen, Ma, Zheng 2019) as a task of the shared loop (:func:`export.common.loop.fit`).

One MedicalNet ResNet backbone (:func:`zoo.archs.med3d_resnet.build_med3d_resnet`, dilated, output stride 8)
is shared by all data sets; each data set j has its own branch, a 1x1x1 convolution to its classes followed
by trilinear upsampling to the input size. Every batch comes from one data set and only trains that data set's
branch (and the backbone), so incomplete or conflicting label sets never meet. Balanced sampling: per epoch
every data set contributes as many crops as the largest one (``samples_per_volume`` per volume of the largest;
the smaller ones are drawn with repetition); the order of the data sets' batches is shuffled. Under torchrun all
processes train the same data set at a given step (on different crops), so one branch per step gets gradients.

Validation: fixed crops (no augmentation) of the held-out cases of each data set (of its training cases when
none could be held out); metrics per data set: cross-entropy and foreground Dice; the validation loss is the
mean cross-entropy over data sets. Baselines measured before training: the cross-entropy of the best constant
prediction (the entropy of the validation label distribution, ``prior_ce``), the Dice of a random guess at the
foreground rate (``chance_dice_*`` = that rate) and the untrained network.
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
from .config import Med3DConfig
from .data import Med3DDataset, augment, sample_crop


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


def numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy generator drawn from a torch generator (crop geometry is numpy; the seed stays (seed, rank,
    epoch, step))."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    return np.random.default_rng(seed)


class Med3DTask:
    """The co-training task over ``datasets`` (:class:`export.med3d.data.Med3DDataset`)."""

    desc = "med3d co-training"
    find_unused_parameters = True   # the other data sets' branches get no gradient at a step

    def __init__(self, cfg: Med3DConfig, datasets: list[Med3DDataset]) -> None:
        if not datasets:
            raise ValueError("Med3D co-training needs at least one data set")
        self.cfg = cfg
        self.datasets = datasets
        self.n_max = max(len(d.train) for d in datasets)

    def build_model(self) -> nn.Module:
        return Med3DNet(self.cfg.depth, [d.num_classes for d in self.datasets], self.cfg.shortcut_type)

    # ----------------------------------------------------------------------------------------- data
    def setup(self, device: torch.device, info: DistInfo) -> None:
        self.device = device
        self.val = []
        for j, d in enumerate(self.datasets):
            cases = d.val or d.train
            rng = np.random.default_rng([self.cfg.seed, 777, j])
            crops = [sample_crop(c, self.cfg.patch_zyx, rng, self.cfg.crop_min_factor)
                     for c in cases for _ in range(self.cfg.val_crops_per_volume)]
            images = torch.stack([c[0] for c in crops]).to(device)
            labels = torch.stack([c[1] for c in crops]).to(device)
            self.val.append((images, labels))

    def _steps_per_dataset(self, info: DistInfo) -> int:
        per_dataset = self.n_max * self.cfg.samples_per_volume
        return max(1, per_dataset // (self.cfg.batch_size * info.world))

    def steps_per_epoch(self, info: DistInfo) -> int:
        return len(self.datasets) * self._steps_per_dataset(info)

    def epoch_batches(self, epoch: int, info: DistInfo):
        """``(dataset index, case indices)`` per step: the same data set on every rank at a step, disjoint
        crops of a balanced per-data-set sequence of cases."""
        bs, world = self.cfg.batch_size, info.world
        per = self._steps_per_dataset(info)
        need = per * bs * world
        sequences = []
        for j, d in enumerate(self.datasets):
            rng = np.random.default_rng([self.cfg.seed, epoch, j])
            n = len(d.train)
            reps = -(-need // n)
            sequences.append(np.concatenate([rng.permutation(n) for _ in range(reps)])[:need])
        schedule = np.repeat(np.arange(len(self.datasets)), per)
        np.random.default_rng([self.cfg.seed, epoch, 10_000]).shuffle(schedule)
        seen = [0] * len(self.datasets)
        for j in schedule:
            k = seen[j]
            seen[j] += 1
            start = (k * world + info.rank) * bs
            yield int(j), sequences[j][start:start + bs]

    def count(self, batch) -> int:
        return len(batch[1])

    def loss(self, net: nn.Module, batch, generator: torch.Generator,
             autocast: Autocast) -> tuple[Tensor, dict[str, float]]:
        j, idx = batch
        d = self.datasets[j]
        rng = numpy_rng(generator)
        crops = [sample_crop(d.train[i], self.cfg.patch_zyx, rng, self.cfg.crop_min_factor) for i in idx]
        images = torch.stack([c[0] for c in crops]).to(self.device)
        labels = torch.stack([c[1] for c in crops]).to(self.device)
        images, labels = augment(images, labels, generator, self.cfg.rotation_deg, tuple(self.cfg.scale_range))
        with autocast():
            logits = net(images, j)
        loss = F.cross_entropy(logits.float(), labels)
        return loss, {f"loss_{d.name}": float(loss.detach()) * len(self.datasets)}

    # ------------------------------------------------------------------------------------ validation
    def _evaluate(self, net: nn.Module, autocast: Autocast) -> dict[str, float]:
        net.eval()
        out: dict[str, float] = {}
        bs = self.cfg.batch_size
        with torch.no_grad():
            for j, (d, (images, labels)) in enumerate(zip(self.datasets, self.val)):
                ce, logits_all = 0.0, []
                for i in range(0, images.shape[0], bs):
                    with autocast():
                        logits = net(images[i:i + bs], j).float()
                    ce += F.cross_entropy(logits, labels[i:i + bs], reduction="sum").item()
                    logits_all.append(logits.argmax(1).to(torch.uint8))
                out[f"ce_{d.name}"] = ce / labels.numel()
                pred = torch.cat(logits_all)
                out[f"dice_{d.name}"] = _dice_from_pred(pred, labels, d.num_classes)
        net.train()
        out["loss"] = float(np.mean([out[f"ce_{d.name}"] for d in self.datasets]))
        out["dice"] = float(np.nanmean([out[f"dice_{d.name}"] for d in self.datasets]))
        return out

    def validate(self, net: nn.Module, autocast: Autocast) -> dict[str, float]:
        return self._evaluate(net, autocast)

    def baselines(self, net: nn.Module, autocast: Autocast) -> dict[str, float]:
        out: dict[str, float] = {}
        priors = []
        for d, (_, labels) in zip(self.datasets, self.val):
            freq = torch.bincount(labels.flatten(), minlength=d.num_classes).double()
            p = freq / freq.sum()
            entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
            out[f"prior_ce_{d.name}"] = entropy
            out[f"chance_dice_{d.name}"] = float(p[1:].sum())
            priors.append(entropy)
        out["prior_ce"] = float(np.mean(priors))
        untrained = self._evaluate(net, autocast)
        out["untrained_val_loss"] = untrained["loss"]
        out["untrained_dice"] = untrained["dice"]
        return out

    def panel(self, net: nn.Module, autocast: Autocast, path: Path) -> None:
        """Per data set: image | labels | prediction, middle z slice of the first validation crop."""
        net.eval()
        tiles, titles = [], []
        with torch.no_grad():
            for j, (images, labels) in enumerate(self.val):
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


def _dice_from_pred(pred: Tensor, labels: Tensor, num_classes: int) -> float:
    """Mean Dice over the foreground classes (1..K-1), pooled over the crops; classes absent from both
    prediction and labels are skipped (NaN when all are)."""
    scores = []
    for k in range(1, num_classes):
        p, t = pred == k, labels == k
        denom = int(p.sum()) + int(t.sum())
        if denom:
            scores.append(2.0 * int((p & t).sum()) / denom)
    return float(np.mean(scores)) if scores else math.nan


def train(cfg: Med3DConfig, datasets: list[Med3DDataset], out_dir: str | os.PathLike, *, device: str | None = None,
          resume: bool = True, max_steps: int | None = None, progress: bool = True,
          log: Callable[[str], None] = print) -> FitResult:
    """Co-train on ``datasets``; writes ``out_dir/checkpoint.pt``, TensorBoard scalars and panels (see
    :func:`export.common.loop.fit`). The best weights (all branches included) are in the result."""
    return fit(Med3DTask(cfg, datasets), cfg, out_dir, device=device, resume=resume, max_steps=max_steps,
               progress=progress, log=log)


def backbone_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The backbone's tensors of a :class:`Med3DNet` state dict, in MedicalNet's layout (``conv1.weight``,
    ``layer1.0.conv1.weight``...): what ``zoo.load`` reads for the ``med3d-*`` entries."""
    prefix = "backbone."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
