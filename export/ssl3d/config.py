"""Settings of a 3D self-supervised pretraining run, with the published settings as presets.

Published (GitHub HealthML/self-supervised-3d-tasks, ``self_supervised_3d_tasks/configs/train/*_3d.json``;
Taleb et al., NeurIPS 2020, arXiv:2006.03829; summarised in docs/pretraining-recipes.md section 4): 128^3
inputs, the 3D U-Net encoder with 16 base filters, "big_fully" heads (two fully connected layers of 1024),
Adam lr 1e-4, up to 1000 epochs; per task:

==========  ===================================================================================  =====
task        input and labels                                                                     batch
==========  ===================================================================================  =====
rotation    the whole cube rotated by one of 10 rotations (identity, 90/180/270 about 3 axes)      4
jigsaw      3x3x3 grid, cells of 42, patches of 39 (jitter 3), one of 100 permutations             8
rpl         3x3x3 grid, cells of 42, patches of 39 (jitter 3), centre + one of 26 neighbours       32
cpc         4x4x4 grid of half-overlapping patches (50^3, stride 25), code 1024, GRU 256           32
exemplar    triplets (anchor, augmented anchor, another cube), code 1024 (sigmoid), margin 1       2
==========  ===================================================================================  =====

Deviations, all recorded in the model card: the jigsaw permutations are chosen for maximal Hamming distance
(as the paper says; the released 3D file is random), CPC uses InfoNCE over the batch's patches (the issue asks
for it; the authors' code classifies real/fake pairs with a binary loss), exemplar uses one projection shared
by the three branches (the authors' three separate Dense layers admit a trivial solution), and heads pool the
encoder output globally (the authors flatten it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..common.config import JsonConfig

TASKS = ("rotation", "jigsaw", "rpl", "cpc", "exemplar")


@dataclass
class SSLConfig(JsonConfig):
    """Everything that defines a run; saved into checkpoints and the output's provenance.

    ``size``: side of the cubes (the authors' ``data_dim``). ``spacing_zyx``: resample every volume to this
    spacing first (None: native). Intensities: per volume clip to the 0.5 / 99.5 percentiles and z-score.
    ``sampling``: ``"resized"`` (the authors' data: a crop of ``crop_fraction`` of the volume per axis, drawn
    uniformly from that range, the whole volume for (1, 1), resized to ``size``^3) or ``"crop"`` (random
    ``size``^3 sub-cubes at the volume's resolution; ``min_foreground``: a cube is kept only when at least this
    share of its voxels lies above the volume mean). ``cubes_per_volume`` boxes are chosen once per volume, when
    it is prepared (:mod:`.data`), seeded by (``seed``, the volume's path). ``val_fraction`` of the volumes (at
    least one when there are two; of the cubes for a single volume) is held out; ``val_samples`` fixed
    validation samples (a multiple of ``batch_size``) are made from them once, spread over the held-out pool.
    ``steps_per_epoch`` caps an epoch (the first steps of a new permutation of the cube pool each epoch, a random
    subset; None: one pass over the pool).
    """

    TUPLE_FIELDS = ("features", "spacing_zyx", "crop_fraction")  # JSON lists back to tuples (not a field: no annotation)

    task: str = "rotation"
    encoder: str = "unet"
    features: tuple[int, ...] = (16, 32, 64, 128, 256)
    dropout: float = 0.5
    norm_momentum: float | None = None
    depth: int = 10
    size: int = 128
    spacing_zyx: tuple[float, float, float] | None = None
    sampling: str = "resized"
    crop_fraction: tuple[float, float] = (1.0, 1.0)
    cubes_per_volume: int = 1
    min_foreground: float | None = 0.2
    batch_size: int = 4
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    optimizer: str = "adam"
    lr_step_fraction: float | None = None
    patience: int = 50
    max_epochs: int = 1000
    steps_per_epoch: int | None = None
    max_minutes: float | None = None
    seed: int = 1
    hidden: int = 1024
    code_size: int = 1024
    context_size: int = 256
    per_side: int = 3
    jitter: int = 3
    n_permutations: int = 100
    margin: float = 1.0
    val_fraction: float = 0.2
    val_samples: int = 32
    panel_every: int = 0
    amp: bool = True


#: the authors' per-task settings (configs/train/*_3d.json)
PUBLISHED: dict[str, dict[str, Any]] = {
    "rotation": dict(batch_size=4),
    "jigsaw": dict(batch_size=8, per_side=3, jitter=3, n_permutations=100),
    "rpl": dict(batch_size=32, per_side=3, jitter=3),
    "cpc": dict(batch_size=32, per_side=4, code_size=1024, context_size=256),
    "exemplar": dict(batch_size=2, code_size=1024, margin=1.0),
}

#: minutes on a CPU: small cubes of coarsely resampled volumes (so a cube still shows anatomy), the authors'
#: encoder at full width without dropout, lr 1e-3, a large cube pool and short epochs
DEMO_COMMON: dict[str, Any] = dict(sampling="crop", dropout=0.0, norm_momentum=0.1, lr=1e-3, hidden=256, code_size=128,
                                   context_size=128, max_minutes=2.5, patience=1000, val_samples=32,
                                   steps_per_epoch=16)
DEMO: dict[str, dict[str, Any]] = {
    "rotation": dict(size=32, spacing_zyx=(4.0, 4.0, 4.0), batch_size=8, cubes_per_volume=128, val_samples=128),
    "jigsaw": dict(size=51, spacing_zyx=(2.5, 2.5, 2.5), jitter=1, batch_size=4, sampling="resized",
                   crop_fraction=(0.6, 1.0), cubes_per_volume=64, val_samples=128, max_minutes=3.0),
    "rpl": dict(size=51, spacing_zyx=(2.5, 2.5, 2.5), jitter=1, batch_size=16, cubes_per_volume=64,
                val_samples=256),
    "cpc": dict(size=40, spacing_zyx=(3.0, 3.0, 3.0), batch_size=4, cubes_per_volume=96, val_samples=32),
    "exemplar": dict(size=32, spacing_zyx=(4.0, 4.0, 4.0), batch_size=8, cubes_per_volume=128, val_samples=128),
}

PRESETS = ("published", "demo")


def preset(task: str, name: str = "published", **overrides: Any) -> SSLConfig:
    """The settings of ``task`` under preset ``name``, with ``overrides`` (None values ignored)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")
    values: dict[str, Any] = {"task": task, **PUBLISHED[task]}
    if name == "demo":
        values.update(DEMO_COMMON)
        values.update(DEMO[task])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SSLConfig.from_dict(values)
