"""Settings of a Models Genesis pretraining run, with the upstream defaults as presets.

Cubes are (C, Z, Y, X) in nnU-Net's numpy axis order (:mod:`zoo.io` returns (Z, Y, X) arrays); the upstream
64 x 64 x 32 (x, y, z) cube is therefore ``cube_zyx = (32, 64, 64)`` here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zoo.entries.genesis import GENESIS_NNUNET_CT_MEAN as LUNG_CT_MEAN
from zoo.entries.genesis import GENESIS_NNUNET_CT_STD as LUNG_CT_STD
from zoo.entries.genesis import LUNG_PLAN_ARCH_KWARGS
from zoo.entries.demo import DEMO_ARCH_KWARGS

from ..common.config import JsonConfig

#: the demo network (registry entry genesis-ct-demo): the first three stages of a default nnU-Net 3d_fullres
#: plan (32, 64, 128 features), about 1.4 M parameters (5.4 MB in fp32)
DEMO_PLAN_ARCH_KWARGS: dict[str, Any] = DEMO_ARCH_KWARGS


@dataclass
class TrainConfig(JsonConfig):
    """Everything that defines a run; saved into checkpoints and the output's provenance.

    ``architecture`` is a :mod:`zoo.archs` name; ``arch_kwargs`` its plan arguments. ``input_norm`` is
    ``"unit"`` (the [0, 1] cube, as the UNet3D model) or ``"ct-zscore"`` ((HU - mean) / std, as the nnU-Net
    model, with ``ct_mean``/``ct_std``). ``num_classes`` output channels all regress the [0, 1] cube through a
    sigmoid (the nnU-Net model has 2, both trained on the same target, as upstream).
    """

    TUPLE_FIELDS = ("cube_zyx", "spacing_zyx")  # JSON lists back to tuples (not a field: no annotation)

    architecture: str = "genesis_unet3d"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 1
    input_norm: str = "unit"
    ct_mean: float = LUNG_CT_MEAN
    ct_std: float = LUNG_CT_STD
    cube_zyx: tuple[int, int, int] = (32, 64, 64)
    spacing_zyx: tuple[float, float, float] | None = (1.5, 1.0, 1.0)
    cubes_per_volume: int = 32
    max_tissue: float | None = 0.15
    min_foreground: float | None = None
    batch_size: int = 6
    lr: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    patience: int = 50
    lr_step_fraction: float = 0.8
    max_epochs: int = 10_000
    max_minutes: float | None = None
    seed: int = 1
    val_fraction: float = 0.2
    panel_every: int = 5
    amp: bool = True


PRESETS: dict[str, dict[str, Any]] = {
    # Genesis_Chest_CT.pt: UNet3D, SGD lr 1, StepLR every int(0.8 * 50) epochs, batch 6, 32 cubes per volume
    "unet3d": dict(architecture="genesis_unet3d", arch_kwargs={}, num_classes=1, input_norm="unit", lr=1.0,
                   batch_size=6, patience=50, lr_step_fraction=0.8, cubes_per_volume=32),
    # genesis_nnunet_luna16_006.model: the Task006 lung plan, lr 0.1, StepLR every int(0.6 * 20), batch 64
    "lung": dict(architecture="plain_conv_unet", arch_kwargs=LUNG_PLAN_ARCH_KWARGS, num_classes=2,
                 input_norm="ct-zscore", lr=0.1, batch_size=64, patience=20, lr_step_fraction=0.6,
                 cubes_per_volume=64, max_epochs=1000),
    # genesis-ct-demo: a small plan trained for minutes on CPU
    "demo": dict(architecture="plain_conv_unet", arch_kwargs=DEMO_PLAN_ARCH_KWARGS, num_classes=1,
                 input_norm="ct-zscore", lr=0.1, batch_size=8, patience=10, lr_step_fraction=0.6,
                 cubes_per_volume=64, max_minutes=10.0, panel_every=2, max_tissue=None, min_foreground=0.3),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig.from_dict(values)
