"""nnU-Net v2 U-Nets (PlainConvUNet, ResidualEncoderUNet) built from plan ``arch_kwargs``.

The classes take exactly the constructor arguments of dynamic-network-architectures' classes of the same
name (so an nnU-Net plan's ``network_class_name`` may point at them) and produce identical state_dict keys,
shapes and outputs. The builders accept the plan form, where ops are dotted class paths::

    plan = json.load(open("nnUNetPlans.json"))["configurations"]["3d_fullres"]["architecture"]
    net = build_plain_conv_unet(in_channels=1, num_classes=3, **plan["arch_kwargs"])

Input: (N, in_channels, *patch) with spatial axes in the plan's order (z, y, x for 3D); every spatial size
must be divisible by the product of the strides along that axis. Output: (N, num_classes, *patch) logits,
or with ``deep_supervision`` a list of logits from full resolution down to the second-lowest resolution.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from ._common import on_meta_device
from .nnunet_blocks import (
    BasicBlockD,
    PlainConvEncoder,
    ResidualEncoder,
    UNetDecoder,
    he_init,
    resolve_arch_kwargs,
    resolve_block,
    zero_last_norm,
)


class PlainConvUNet(nn.Module):
    """nnU-Net's default U-Net: stages of plain conv blocks, strided-conv downsampling, transposed-conv up."""

    def __init__(
        self,
        input_channels: int,
        n_stages: int,
        features_per_stage: int | Sequence[int],
        conv_op: type,
        kernel_sizes: Any,
        strides: Any,
        n_conv_per_stage: int | Sequence[int],
        num_classes: int,
        n_conv_per_stage_decoder: int | Sequence[int],
        conv_bias: bool = False,
        norm_op: type | None = None,
        norm_op_kwargs: dict | None = None,
        dropout_op: type | None = None,
        dropout_op_kwargs: dict | None = None,
        nonlin: type | None = None,
        nonlin_kwargs: dict | None = None,
        deep_supervision: bool = False,
        nonlin_first: bool = False,
    ) -> None:
        super().__init__()
        ops = resolve_arch_kwargs(
            {"conv_op": conv_op, "norm_op": norm_op, "dropout_op": dropout_op, "nonlin": nonlin}
        )
        self.encoder = PlainConvEncoder(
            input_channels, n_stages, features_per_stage, ops["conv_op"], kernel_sizes, strides, n_conv_per_stage,
            conv_bias, ops["norm_op"], norm_op_kwargs, ops["dropout_op"], dropout_op_kwargs, ops["nonlin"],
            nonlin_kwargs, return_skips=True, nonlin_first=nonlin_first,
        )
        self.decoder = UNetDecoder(self.encoder, num_classes, n_conv_per_stage_decoder, deep_supervision,
                                   nonlin_first=nonlin_first)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        return self.decoder(self.encoder(x))

    def forward_features(self, x: Tensor) -> Tensor:
        """The bottleneck feature map (N, features_per_stage[-1], *patch / prod(strides))."""
        return self.encoder(x)[-1]

    @staticmethod
    def initialize(module: nn.Module) -> None:
        he_init(module)


class ResidualEncoderUNet(nn.Module):
    """nnU-Net ResEnc U-Net: residual encoder (ResNet-D blocks) with the plain U-Net decoder."""

    def __init__(
        self,
        input_channels: int,
        n_stages: int,
        features_per_stage: int | Sequence[int],
        conv_op: type,
        kernel_sizes: Any,
        strides: Any,
        n_blocks_per_stage: int | Sequence[int],
        num_classes: int,
        n_conv_per_stage_decoder: int | Sequence[int],
        conv_bias: bool = False,
        norm_op: type | None = None,
        norm_op_kwargs: dict | None = None,
        dropout_op: type | None = None,
        dropout_op_kwargs: dict | None = None,
        nonlin: type | None = None,
        nonlin_kwargs: dict | None = None,
        deep_supervision: bool = False,
        block: Any = BasicBlockD,
        bottleneck_channels: int | Sequence[int] | None = None,
        stem_channels: int | None = None,
    ) -> None:
        super().__init__()
        ops = resolve_arch_kwargs(
            {"conv_op": conv_op, "norm_op": norm_op, "dropout_op": dropout_op, "nonlin": nonlin}
        )
        self.encoder = ResidualEncoder(
            input_channels, n_stages, features_per_stage, ops["conv_op"], kernel_sizes, strides, n_blocks_per_stage,
            conv_bias, ops["norm_op"], norm_op_kwargs, ops["dropout_op"], dropout_op_kwargs, ops["nonlin"],
            nonlin_kwargs, block=resolve_block(block), bottleneck_channels=bottleneck_channels, return_skips=True,
            stem_channels=stem_channels,
        )
        self.decoder = UNetDecoder(self.encoder, num_classes, n_conv_per_stage_decoder, deep_supervision)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        return self.decoder(self.encoder(x))

    def forward_features(self, x: Tensor) -> Tensor:
        """The bottleneck feature map (N, features_per_stage[-1], *patch / prod(strides))."""
        return self.encoder(x)[-1]

    @staticmethod
    def initialize(module: nn.Module) -> None:
        he_init(module)
        zero_last_norm(module)


def _build(cls: type, in_channels: int, num_classes: int, deep_supervision: bool, arch_kwargs: dict) -> nn.Module:
    if num_classes is None or num_classes < 1:
        raise ValueError(
            f"{cls.__name__} needs num_classes >= 1 (the segmentation head size), got {num_classes!r}"
        )
    try:
        net = cls(input_channels=in_channels, num_classes=num_classes, deep_supervision=deep_supervision,
                  **resolve_arch_kwargs(arch_kwargs))
    except TypeError as exc:
        raise ValueError(f"{cls.__name__}: bad plan arch_kwargs ({exc})") from None
    if not on_meta_device(net):
        net.apply(net.initialize)
    return net


def build_plain_conv_unet(*, in_channels: int, num_classes: int, deep_supervision: bool = False,
                          **plan_arch_kwargs: Any) -> PlainConvUNet:
    """A :class:`PlainConvUNet` from a plan's ``arch_kwargs`` (class paths as strings are fine)."""
    return _build(PlainConvUNet, in_channels, num_classes, deep_supervision, plan_arch_kwargs)


def build_residual_encoder_unet(*, in_channels: int, num_classes: int, deep_supervision: bool = False,
                                **plan_arch_kwargs: Any) -> ResidualEncoderUNet:
    """A :class:`ResidualEncoderUNet` from a plan's ``arch_kwargs`` (class paths as strings are fine)."""
    return _build(ResidualEncoderUNet, in_channels, num_classes, deep_supervision, plan_arch_kwargs)
