"""The encoders a 3D self-supervised task can train, each a registry architecture, so the exported weights load
with ``zoo.load(OUT/model)``:

=============  ==========================  =================================================================
``--encoder``  architecture                 notes
=============  ==========================  =================================================================
``unet``       ``ssl3d_unet_encoder``      the authors' 3D U-Net encoder, 16/32/64/128/256 filters (default)
``plan``       ``nnunet_encoder``           the encoder of an nnU-Net plan (``--plans``, ``-c``): transfers into
                                            that plan's network with every encoder tensor
``resnet``     ``med3d_resnet``             a MedicalNet ResNet (``--depth``), ``med3d-*`` layout
=============  ==========================  =================================================================

:class:`EncoderSpec` carries the architecture name and arguments (for ``config.json``), the feature width the
task heads see, and the smallest patch side the encoder accepts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from zoo.archs import build_architecture

ENCODERS = ("unet", "plan", "resnet")


@dataclass
class EncoderSpec:
    kind: str
    architecture: str
    arch_kwargs: dict[str, Any]
    first_conv: tuple[str, ...]
    width: int
    min_patch: int
    in_channels: int = 1
    notes: list[str] = field(default_factory=list)

    def build(self) -> nn.Module:
        return build_architecture(self.architecture, in_channels=self.in_channels, num_classes=None,
                                  **self.arch_kwargs)


def encoder_spec(kind: str = "unet", *, in_channels: int = 1, features: tuple[int, ...] | None = None,
                 dropout: float = 0.5, norm_momentum: float | None = None, plans: Any = None,
                 configuration: str = "3d_fullres", depth: int = 10) -> EncoderSpec:
    """Describe the encoder ``kind`` (module docstring)."""
    if kind == "unet":
        feats = list(features or (16, 32, 64, 128, 256))
        kwargs: dict[str, Any] = {"features_per_stage": feats, "dropout": dropout}
        if norm_momentum is not None:
            kwargs["norm_op_kwargs"] = {"eps": 1e-3, "momentum": norm_momentum}
        return EncoderSpec(kind, "ssl3d_unet_encoder", kwargs, ("encoder.stages.0.0.convs.0.conv.weight",),
                           feats[-1], 2 ** (len(feats) - 1), in_channels)
    if kind == "plan":
        if plans is None:
            raise ValueError("--encoder plan needs --plans nnUNetPlans.json (and -c CONFIGURATION)")
        from zoo.nnunet.plans import arch_for_configuration

        arch = arch_for_configuration(plans, configuration, in_channels=in_channels, num_classes=1)
        if arch.arch not in ("plain_conv_unet", "residual_encoder_unet"):
            raise ValueError(f"plan configuration {configuration!r} builds {arch.arch}; its encoder cannot be "
                             "pretrained here (plain_conv_unet and residual_encoder_unet can)")
        kw = dict(arch.arch_kwargs)
        strides = kw.get("strides") or []
        conv = str(kw.get("conv_op", ""))
        if not conv.endswith("Conv3d") and not conv.endswith("conv.Conv3d"):
            raise ValueError(f"plan configuration {configuration!r} is not 3D (conv_op {conv!r})")
        per_axis = [math.prod(int(s[a]) if isinstance(s, (list, tuple)) else int(s) for s in strides) for a in range(3)]
        first = ("encoder.stages.0.0.convs.0.conv.weight" if arch.arch == "plain_conv_unet"
                 else "encoder.stem.convs.0.conv.weight")
        feats = kw["features_per_stage"]
        width = feats[-1] if isinstance(feats, (list, tuple)) else int(feats)
        return EncoderSpec(kind, "nnunet_encoder", {"unet": arch.arch, **kw}, (first,), int(width),
                           max(per_axis), in_channels,
                           [f"encoder of plan configuration {configuration!r} ({arch.arch})"])
    if kind == "resnet":
        from zoo.archs.med3d_resnet import DEPTHS

        if depth not in DEPTHS:
            raise ValueError(f"unknown MedicalNet ResNet depth {depth!r}; choose one of {sorted(DEPTHS)}")
        expansion = DEPTHS[depth][0].expansion
        return EncoderSpec(kind, "med3d_resnet", {"depth": depth, "shortcut_type": DEPTHS[depth][2]},
                           ("conv1.weight",), 512 * expansion, 8, in_channels)
    raise ValueError(f"unknown encoder {kind!r}; choose one of {ENCODERS}")


def pooled(features: Tensor | list[Tensor]) -> Tensor:
    """Global average pool of an encoder's output (the bottleneck map, or the last of a list) -> (N, C)."""
    if isinstance(features, (list, tuple)):
        features = features[-1]
    return features.mean(dim=tuple(range(2, features.dim())))
