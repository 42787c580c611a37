"""Settings of a Med3D co-training run, with presets.

Spatial sizes are (z, y, x) in numpy order, as :mod:`zoo.io` returns volumes. The paper's recipe (Chen, Ma,
Zheng, "Med3D", arXiv:1904.00625; summarised in docs/pretraining-recipes.md section 2): per-domain median
spacing, per-volume 0.5-99.5 percentile clip and z-score, random crops from twice the target's bounding box up
to the whole volume (target always inside), rotation within +-5 degrees, scaling within [0.8, 1.2], one 1x1x1
branch per data set, balanced sampling, cross-entropy, SGD lr 0.1, momentum 0.9, weight decay 1e-3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..common.config import JsonConfig


@dataclass
class Med3DConfig(JsonConfig):
    """Everything that defines a run; saved into checkpoints and the output's provenance.

    ``patch_zyx``: every crop is resized to this network input (MedicalNet trains at 56 x 448 x 448).
    ``samples_per_volume``: crops drawn per volume of the *largest* data set per epoch; every other data set is
    sampled (with repetition) up to the same count (the paper's balanced sampling). ``val_fraction``: share of
    each data set's cases held out (the paper: 10 %); a data set too small to hold one out is validated on fixed
    crops of its training volumes (recorded in the provenance). ``crop_min_factor``: the smallest crop is this
    many times the target's bounding box per axis (the paper: 2). ``channel``: which input channel of
    multi-channel data sets to use (MedicalNet's ResNets take one).
    """

    TUPLE_FIELDS = ("patch_zyx", "scale_range", "percentiles")  # JSON lists back to tuples (not a field: no annotation)

    depth: int = 10
    shortcut_type: str | None = None
    patch_zyx: tuple[int, int, int] = (56, 448, 448)
    batch_size: int = 8
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-3
    optimizer: str = "sgd"
    lr_step_fraction: float | None = None
    patience: int = 50
    max_epochs: int = 200
    max_minutes: float | None = None
    seed: int = 1
    samples_per_volume: int = 4
    val_fraction: float = 0.1
    val_crops_per_volume: int = 4
    crop_min_factor: float = 2.0
    rotation_deg: float = 5.0
    scale_range: tuple[float, float] = (0.8, 1.2)
    percentiles: tuple[float, float] = (0.5, 99.5)
    channel: int = 0
    panel_every: int = 5
    amp: bool = True


PRESETS: dict[str, dict[str, Any]] = {
    # MedicalNet's setting.py input size and the paper's optimiser; batch as large as memory allows
    "medicalnet": dict(patch_zyx=(56, 448, 448), batch_size=8, depth=10, samples_per_volume=4, max_epochs=200),
    # minutes on a CPU: small crops, ResNet-10
    "demo": dict(patch_zyx=(32, 64, 64), batch_size=2, depth=10, samples_per_volume=8, max_epochs=100,
                 max_minutes=4.0, patience=20, val_crops_per_volume=4, panel_every=1),
}


def preset(name: str, **overrides: Any) -> Med3DConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    return Med3DConfig.from_dict(values)
