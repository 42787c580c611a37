"""The five 3D self-supervised tasks as tasks of the shared loop (:func:`export.common.loop.fit`).

Every task network has a ``backbone`` (the encoder that is exported, :mod:`.encoders`) and a task head that
pools the encoder output globally:

* rotation: cube -> encoder -> MLP (two hidden layers) -> 10 rotation classes, cross-entropy;
* jigsaw: 27 shuffled patches -> shared encoder -> concatenated -> MLP -> 100 permutations, cross-entropy;
* rpl: centre + neighbour patch -> shared encoder -> concatenated -> MLP -> 26 locations, cross-entropy;
* cpc: 64 patches -> encoder -> code; for every (y, x) column a GRU summarises the context pyramid (rows above,
  :class:`.labels.CPCLayout`) and one linear predictor per step predicts the codes of the next patches;
  InfoNCE: the true next patch against every other patch of the batch;
* exemplar: anchor, augmented anchor, augmented other cube of the batch (negatives come from the batch the
  loader delivers, a random draw from the whole pool) -> shared encoder -> shared sigmoid projection; triplet
  loss (mean squared distances, margin 1).

Each reports a loss and an accuracy whose chance levels are known (baselines): ln 10 / 0.1, ln 100 / 0.01,
ln 26 / 1/26, ln(batch x 64) / 1/(batch x 64), margin / 0.5.

Data: the loader (:class:`export.common.streaming.StepLoader` over the prepared folder's cube plan) delivers
clean cubes (B, 1, S, S, S); every task-specific step (rotations, grids, jitter, CPC augmentation, exemplar
augmentation) runs in :meth:`SSLTask.loss` on the training device with the step's generator, seeded from
(seed, rank, epoch, step), so a resumed run draws what the uninterrupted run would have. Validation uses
inputs and labels made once from ``val_samples`` held-out cubes with a fixed generator.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common.distributed import DistInfo, seeded_generator
from ..common.loop import Autocast, unwrap
from ..common.streaming import StepLoader
from . import labels as L
from .config import SSLConfig
from .encoders import EncoderSpec, pooled


def mlp(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    """The authors' "big_fully" top: two hidden fully connected layers (ReLU), then the output layer."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, out_features))


class _Net(nn.Module):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def embed(self, x: Tensor) -> Tensor:
        """(M, C, ...) -> (M, width) pooled encoder features."""
        return pooled(self.backbone(x))

    def embed_many(self, x: Tensor) -> Tensor:
        """(N, K, C, ...) -> (N, K, width)."""
        n, k = x.shape[:2]
        return self.embed(x.flatten(0, 1)).view(n, k, -1)


class ClassifierNet(_Net):
    """Encoder on ``parts`` inputs per sample (1 for rotation), concatenated, MLP to ``classes``."""

    def __init__(self, backbone: nn.Module, width: int, parts: int, hidden: int, classes: int) -> None:
        super().__init__(backbone)
        self.parts = parts
        self.head = mlp(width * parts, hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.parts == 1:
            return self.head(self.embed(x))
        return self.head(self.embed_many(x).flatten(1))


class CPCNet(_Net):
    def __init__(self, backbone: nn.Module, width: int, code: int, context: int, layout: L.CPCLayout) -> None:
        super().__init__(backbone)
        self.project = nn.Linear(width, code)
        self.gru = nn.GRU(code, context, batch_first=True)
        self.predictors = nn.ModuleList(nn.Linear(context, code) for _ in range(layout.steps))
        self.register_buffer("context_index", layout.context_index(), persistent=False)

    def forward(self, patches: Tensor) -> tuple[Tensor, Tensor]:
        """patches (N, g^3, C, p, p, p) -> predictions (N, columns, steps, code), codes (N, g^3, code)."""
        n = patches.shape[0]
        codes = self.project(self.embed_many(patches))
        seq = codes[:, self.context_index]                                   # (N, columns, L, code)
        cols, length = seq.shape[1:3]
        _, h = self.gru(seq.reshape(n * cols, length, -1))
        ctx = h[-1]                                                          # (N * columns, context)
        preds = torch.stack([p(ctx) for p in self.predictors], 1).view(n, cols, len(self.predictors), -1)
        return preds, codes


class ExemplarNet(_Net):
    def __init__(self, backbone: nn.Module, width: int, code: int) -> None:
        super().__init__(backbone)
        self.project = nn.Linear(width, code)

    def forward(self, triplets: Tensor) -> Tensor:
        """(N, 3, C, S, S, S) -> codes (N, 3, code) in (0, 1)."""
        return torch.sigmoid(self.project(self.embed_many(triplets)))


# ------------------------------------------------------------------------------------------ augmentation
def exemplar_augment(cube: Tensor, generator: torch.Generator) -> Tensor:
    """The exemplar task's 3D augmentation of one cube (C, S, S, S): random flips per axis; a rotation, with
    probability 0.5 by a multiple of 90 degrees in a random plane, else by an arbitrary angle in a random
    plane; intensity distortion (contrast x U(0.75, 1.25), brightness + U(-0.25, 0.25) in z-score units);
    zoom-crop (a random crop of 75-100 % of the side, resized back)."""
    g = generator

    def u() -> float:
        return float(torch.rand((), generator=g, device=g.device))

    x = cube
    for axis in (-3, -2, -1):
        if u() < 0.5:
            x = x.flip(axis)
    planes = ((-2, -1), (-3, -1), (-3, -2))
    plane = planes[min(int(u() * 3), 2)]
    if u() < 0.5:
        x = torch.rot90(x, 1 + min(int(u() * 3), 2), plane)
    else:
        angle = (u() * 2 - 1) * math.pi
        c, s = math.cos(angle), math.sin(angle)
        theta = torch.eye(3, 4, dtype=x.dtype, device=x.device)
        i, j = [3 + p for p in plane]                 # affine_grid axes are (x, y, z) = tensor dims (-1, -2, -3)
        a, b = 2 - i, 2 - j
        theta[a, a], theta[a, b], theta[b, a], theta[b, b] = c, -s, s, c
        grid = F.affine_grid(theta[None], [1, *x.shape], align_corners=False)
        x = F.grid_sample(x[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    x = x * (0.75 + 0.5 * u()) + (u() - 0.5) * 0.5
    size = x.shape[-1]
    keep = max(1, int(round(size * (0.75 + 0.25 * u()))))
    if keep < size:
        z, y, w = (int(u() * (size - keep + 1)) for _ in range(3))
        crop = x[..., z:z + keep, y:y + keep, w:w + keep]
        x = F.interpolate(crop[None], size=(size,) * 3, mode="trilinear", align_corners=False)[0]
    return x.contiguous()


# ------------------------------------------------------------------------------------------------ tasks
class _FirstSteps:
    """The first ``steps`` batches of every epoch of a plan (``steps_per_epoch``: a random subset of the pool,
    since each epoch is a new permutation of it)."""

    def __init__(self, plan: Any, steps: int) -> None:
        self.plan, self.steps = plan, min(int(steps), len(plan))

    def __len__(self) -> int:
        return self.steps

    def load(self, epoch: int, step: int) -> Tensor:
        return self.plan.load(epoch, step)


class SSLTask:
    """Shared data handling: streamed cube batches, fixed validation inputs, loss/accuracy averaging.

    ``data``: an :class:`export.ssl3d.data.SSLData` (a prepared folder) or :class:`export.ssl3d.data.ArrayCubes`;
    None builds a task for its network and criterion only. Training cubes come through a
    :class:`export.common.streaming.StepLoader` with ``loader_workers`` processes (pinned memory on CUDA) as
    clean (B, 1, S, S, S) tensors; :meth:`make` turns them into the task's inputs and labels on the training
    device, with the step's generator. Validation: ``val_samples`` cubes (a multiple of the batch size) spread
    over the held-out pool are read once, on first use, and turned into fixed inputs with a fixed generator, the
    same on every rank; their memory is bounded by ``val_samples``, not by the number of volumes.
    """

    chance_loss: float = math.nan
    chance_accuracy: float = math.nan

    def __init__(self, cfg: SSLConfig, spec: EncoderSpec, data: Any = None, *, loader_workers: int = 0) -> None:
        self.cfg, self.spec, self.data = cfg, spec, data
        self.loader_workers = int(loader_workers)
        self.desc = f"ssl3d {cfg.task}"
        self.val_batches: list[tuple[Any, Tensor | None]] | None = None
        side = self.patch_side()
        if side < spec.min_patch:
            raise ValueError(f"{cfg.task}: inputs of {side}^3 voxels are smaller than the {spec.architecture} encoder "
                             f"accepts ({spec.min_patch}^3: it downsamples {spec.min_patch}x); raise --size")

    # task specifics -----------------------------------------------------------------------------------
    def patch_side(self) -> int:
        return self.cfg.size

    def make(self, cubes: Tensor, generator: torch.Generator) -> tuple[Any, Tensor | None]:
        """Inputs and labels from clean cubes (B, 1, S, S, S) on the device; all randomness from ``generator``."""
        raise NotImplementedError

    def criterion(self, output: Any, labels: Tensor | None) -> tuple[Tensor, Tensor]:
        """(mean loss, number of correct predictions)."""
        raise NotImplementedError

    def predictions_per_sample(self) -> int:
        return 1

    # loop interface ------------------------------------------------------------------------------------
    def setup(self, device: torch.device, info: DistInfo) -> None:
        if self.data is None:
            raise ValueError("this task has no data: pass a prepared folder (export.ssl3d.data.ssl_data)")
        self.device = device
        bs = self.cfg.batch_size
        plan = self.data.train_plan(bs, self.cfg.seed, info)
        if len(plan) == 0:
            raise ValueError(f"{self.data.n_train} training cubes over {info.world} processes is fewer than one batch "
                             f"of {bs}; add volumes, raise --cubes-per-volume or lower --batch-size")
        if self.cfg.steps_per_epoch:
            plan = _FirstSteps(plan, self.cfg.steps_per_epoch)
        self.loader = StepLoader(plan, workers=self.loader_workers, pin_memory=device.type == "cuda")
        self.val_batches = None

    def steps_per_epoch(self, info: DistInfo) -> int:
        return len(self.loader)

    def epoch_batches(self, epoch: int, info: DistInfo):
        """This rank's clean cube batches of ``epoch``, loaded by the loader's workers."""
        return self.loader.epoch(epoch)

    def loss(self, net: nn.Module, batch: Tensor, generator: torch.Generator,
             autocast: Autocast) -> tuple[Tensor, dict[str, float]]:
        cubes = batch.to(self.device, non_blocking=True)
        inputs, labels = self.make(cubes, generator)
        with autocast():
            out = net(inputs)
        loss, correct = self.criterion(out, labels)
        return loss, {"accuracy": float(correct) / (len(batch) * self.predictions_per_sample())}

    def validation_batches(self) -> list[tuple[Any, Tensor | None]]:
        """The fixed validation inputs and labels, made on first use (after the first training steps)."""
        if self.val_batches is None:
            bs = self.cfg.batch_size
            n = max(bs, (self.cfg.val_samples // bs) * bs)
            cubes = self.data.val_cubes(n)
            g = seeded_generator(self.device, self.cfg.seed, 999_999)
            self.val_batches = [self.make(cubes[i:i + bs].to(self.device), g) for i in range(0, n, bs)]
        return self.val_batches

    def _evaluate(self, net: nn.Module, autocast: Autocast) -> dict[str, float]:
        net.eval()
        total, correct, count, samples = 0.0, 0.0, 0, 0
        with torch.no_grad():
            for inputs, labels in self.validation_batches():
                with autocast():
                    out = net(inputs)
                loss, right = self.criterion(out, labels)
                n = inputs.shape[0]
                total += float(loss) * n
                samples += n
                correct += float(right)
                count += n * self.predictions_per_sample()
        net.train()
        return {"loss": total / samples, "accuracy": correct / count}

    def validate(self, net: nn.Module, autocast: Autocast) -> dict[str, float]:
        return self._evaluate(net, autocast)

    def baselines(self, net: nn.Module, autocast: Autocast) -> dict[str, float]:
        # the unwrapped network: a forward through DDP without gradients would spend DDP's buffer broadcast on
        # these (temporarily restored) weights, and the validation right after would not sync BatchNorm
        # statistics across ranks
        untrained = self._evaluate(unwrap(net), autocast)
        return {"chance_loss": self.chance_loss, "chance_accuracy": self.chance_accuracy,
                "untrained_val_loss": untrained["loss"], "untrained_accuracy": untrained["accuracy"]}


class _CrossEntropyTask(SSLTask):
    classes: int = 0

    def criterion(self, output: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        logits = output.float()
        return F.cross_entropy(logits, labels), (logits.argmax(1) == labels).sum()

    @property
    def chance_loss(self) -> float:  # type: ignore[override]
        return math.log(self.classes)

    @property
    def chance_accuracy(self) -> float:  # type: ignore[override]
        return 1.0 / self.classes


class RotationTask(_CrossEntropyTask):
    classes = L.N_ROTATIONS

    def build_model(self) -> nn.Module:
        return ClassifierNet(self.spec.build(), self.spec.width, 1, self.cfg.hidden, self.classes)

    def make(self, cubes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return L.rotation_batch(cubes, generator)


class JigsawTask(_CrossEntropyTask):
    def __init__(self, cfg: SSLConfig, *args: Any, **kwargs: Any) -> None:
        self.grid = L.grid_for_jigsaw(cfg.size, cfg.per_side, cfg.jitter)
        self.grid.check()
        self.perms = L.jigsaw_permutations(cfg.n_permutations, self.grid.n, seed=0)
        self.classes = len(self.perms)
        super().__init__(cfg, *args, **kwargs)

    def patch_side(self) -> int:
        return self.grid.patch

    def build_model(self) -> nn.Module:
        return ClassifierNet(self.spec.build(), self.spec.width, self.grid.n, self.cfg.hidden, self.classes)

    def make(self, cubes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return L.jigsaw_batch(cubes, self.grid, self.perms, generator)


class RPLTask(_CrossEntropyTask):
    def __init__(self, cfg: SSLConfig, *args: Any, **kwargs: Any) -> None:
        self.grid = L.grid_for_jigsaw(cfg.size, cfg.per_side, cfg.jitter)
        self.grid.check()
        self.classes = self.grid.n - 1
        super().__init__(cfg, *args, **kwargs)

    def patch_side(self) -> int:
        return self.grid.patch

    def build_model(self) -> nn.Module:
        return ClassifierNet(self.spec.build(), self.spec.width, 2, self.cfg.hidden, self.classes)

    def make(self, cubes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        pairs, labels, _ = L.rpl_batch(cubes, self.grid, generator)
        return pairs, labels


class CPCTask(SSLTask):
    def __init__(self, cfg: SSLConfig, *args: Any, **kwargs: Any) -> None:
        self.grid = L.grid_for_cpc(cfg.size, cfg.per_side)
        self.grid.check()
        self.layout = L.CPCLayout(cfg.per_side)
        super().__init__(cfg, *args, **kwargs)
        self.chance_loss = math.log(cfg.batch_size * self.grid.n)
        self.chance_accuracy = 1.0 / (cfg.batch_size * self.grid.n)

    def patch_side(self) -> int:
        return self.grid.patch

    def predictions_per_sample(self) -> int:
        return self.grid.per_side ** 2 * self.layout.steps

    def build_model(self) -> nn.Module:
        return CPCNet(self.spec.build(), self.spec.width, self.cfg.code_size, self.cfg.context_size, self.layout)

    def make(self, cubes: Tensor, generator: torch.Generator) -> tuple[Tensor, None]:
        return L.cpc_patches(cubes, self.grid, generator), None

    def criterion(self, output: tuple[Tensor, Tensor], labels: None) -> tuple[Tensor, Tensor]:
        preds, codes = output
        n = codes.shape[0]
        logits = preds.float().reshape(-1, preds.shape[-1]) @ codes.float().reshape(-1, codes.shape[-1]).t()
        target = L.cpc_positive_index(n, self.layout).to(logits.device)
        return F.cross_entropy(logits, target), (logits.argmax(1) == target).sum()


EXEMPLAR_BATCH = "exemplar draws each negative from the other cubes of its batch: use --batch-size 2 or more"


class ExemplarTask(SSLTask):
    chance_accuracy = 0.5

    def __init__(self, cfg: SSLConfig, *args: Any, **kwargs: Any) -> None:
        if cfg.batch_size < 2:
            raise ValueError(EXEMPLAR_BATCH)
        super().__init__(cfg, *args, **kwargs)
        self.chance_loss = cfg.margin

    def build_model(self) -> nn.Module:
        return ExemplarNet(self.spec.build(), self.spec.width, self.cfg.code_size)

    def make(self, cubes: Tensor, generator: torch.Generator) -> tuple[Tensor, None]:
        """(N, 3, C, S, S, S): anchor, augmented anchor, augmented other cube. The other cube is drawn
        uniformly from the rest of the batch; batches are random draws from the whole (training or validation)
        pool, so this is the authors' ``sample_neg_examples_from: dataset`` without holding the data set in
        memory (it needs batches of at least 2)."""
        g = generator
        n = len(cubes)
        if n < 2:
            raise ValueError(EXEMPLAR_BATCH)
        out = []
        for i, cube in enumerate(cubes):
            j = int(torch.randint(0, n - 1, (), generator=g, device=g.device))
            j += int(j >= i)
            out.append(torch.stack([cube, exemplar_augment(cube, g), exemplar_augment(cubes[j], g)]))
        return torch.stack(out), None

    def criterion(self, output: Tensor, labels: None) -> tuple[Tensor, Tensor]:
        codes = output.float()
        anchor, positive, negative = codes[:, 0], codes[:, 1], codes[:, 2]
        d_pos = ((anchor - positive) ** 2).mean(-1)
        d_neg = ((anchor - negative) ** 2).mean(-1)
        loss = torch.clamp(d_pos - d_neg + self.cfg.margin, min=0).mean()
        return loss, (d_pos < d_neg).sum()


TASK_CLASSES = {"rotation": RotationTask, "jigsaw": JigsawTask, "rpl": RPLTask, "cpc": CPCTask,
                "exemplar": ExemplarTask}


def make_task(cfg: SSLConfig, spec: EncoderSpec, data: Any = None, *, loader_workers: int = 0) -> SSLTask:
    """The task of ``cfg.task`` on ``data`` (see :class:`SSLTask`)."""
    try:
        cls = TASK_CLASSES[cfg.task]
    except KeyError:
        raise ValueError(f"unknown task {cfg.task!r}; choose one of {sorted(TASK_CLASSES)}") from None
    return cls(cfg, spec, data, loader_workers=loader_workers)
