"""Encoders for the 3D self-supervised tasks (Taleb et al., NeurIPS 2020), with nnU-Net encoder key names.

Two architectures, both head-less by default (``num_classes=None``: forward returns the bottleneck feature
map), with an optional classification head (global average pool + ``head`` Linear) for fine-tuning:

``ssl3d_unet_encoder`` (:class:`TalebUNetEncoder`)
    The authors' 3D U-Net encoder (``models/unet3d.py``, ``downconv_model_3d``): 4 levels and a bottleneck
    block with ``features_per_stage`` filters (16, 32, 64, 128, 256). Each block is Conv3d 3^3 (bias, ReLU)
    -> BatchNorm -> Dropout (0.5) -> Conv3d 3^3 (bias, ReLU) -> BatchNorm; a MaxPool3d(2) precedes every block
    but the first. BatchNorm defaults are Keras' (eps 1e-3, momentum 0.99 in Keras = 0.01 here). The authors'
    optional final max-pool after the bottleneck belongs to the task heads, which pool globally here.

``nnunet_encoder`` (:class:`NNUNetEncoder`)
    The encoder of any nnU-Net v2 plan (PlainConvUNet or ResidualEncoderUNet ``arch_kwargs`` plus
    ``unet="plain_conv_unet"`` / ``"residual_encoder_unet"``), built with medzoo's DNA-identical blocks.

Both store their weights under ``encoder.stages.S.0.convs.C.{conv,norm}.*`` (PlainConvEncoder layout;
``encoder.stem`` / ``encoder.stages.S.blocks.B`` for residual encoders), so :func:`zoo.adapt.adapt_state_dict`
transfers a pretrained encoder into the network of any nnU-Net plan stage by stage (the max-pool has no
parameters; BatchNorm running statistics have no counterpart in nnU-Net's InstanceNorm and are reported
unused).

Input (N, C, Z, Y, X); every spatial size should be divisible by 2^(number of stages - 1) (16 for the
default), e.g. 39^3 patches give a 2^3 bottleneck (odd sizes are floored by the pooling).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ._common import on_meta_device
from .features import FeatureInfo, cumulative_reductions
from .nnunet_blocks import ConvDropoutNormReLU, PlainConvEncoder, ResidualEncoder, he_init, resolve_arch_kwargs, \
    resolve_block, zero_last_norm

__all__ = ["NNUNetEncoder", "TalebUNetEncoder", "build_nnunet_encoder", "build_ssl3d_unet_encoder"]

TALEB_FEATURES = (16, 32, 64, 128, 256)
KERAS_BN = {"eps": 1e-3, "momentum": 0.01}


class TalebBlock(nn.Module):
    """[MaxPool3d(2)] -> conv-ReLU-BN -> Dropout -> conv-ReLU-BN; the convs live in ``convs.0`` / ``convs.1``."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool, dropout: float,
                 norm_kwargs: dict[str, Any]) -> None:
        super().__init__()
        unit = dict(conv_bias=True, norm_op=nn.BatchNorm3d, norm_op_kwargs=norm_kwargs, nonlin=nn.ReLU,
                    nonlin_kwargs={"inplace": True}, nonlin_first=True)
        self.pool = nn.MaxPool3d(2) if pool else nn.Identity()
        self.convs = nn.Sequential(
            ConvDropoutNormReLU(nn.Conv3d, in_channels, out_channels, 3, 1, **unit),
            ConvDropoutNormReLU(nn.Conv3d, out_channels, out_channels, 3, 1, **unit),
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.convs[1](self.dropout(self.convs[0](self.pool(x))))


class _Stages(nn.Module):
    """``stages.S.0`` = block S (the PlainConvEncoder nesting)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.stages = nn.Sequential(*[nn.Sequential(b) for b in blocks])
        self.output_channels = [b.output_channels for b in blocks]

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class _HeadMixin(nn.Module):
    """Shared forward: ``encoder`` returns the per-stage maps; optional pooled ``head``."""

    encoder: nn.Module
    features_only: bool
    num_classes: int | None

    def _attach_feature_info(self, channels: Sequence[int], strides: Sequence[Any]) -> None:
        """``feature_info`` (timm convention, :mod:`zoo.archs.features`) of ``features_only`` models: one level
        per stage, the output of ``encoder.stages.S``."""
        if self.features_only:
            dims = next((len(s) for s in strides if not isinstance(s, int)), 3)  # 2 for a 2D nnU-Net plan
            self.feature_info = FeatureInfo(
                ({"num_chs": c, "reduction": r, "module": f"encoder.stages.{s}"}
                 for s, (c, r) in enumerate(zip(channels, cumulative_reductions(strides, dims)))), dims=dims)

    def _make_head(self, channels: int, num_classes: int | None) -> None:
        self.num_features = channels
        if num_classes is not None:
            self.pool = nn.AdaptiveAvgPool3d(1)
            self.head = nn.Linear(channels, num_classes)

    def _skips(self, x: Tensor) -> list[Tensor]:
        return self.encoder(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """The bottleneck feature map (N, features[-1], ...)."""
        return self._skips(x)[-1]

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        if self.features_only:
            return self._skips(x)
        y = self.forward_features(x)
        if self.num_classes is None:
            return y
        return self.head(torch.flatten(self.pool(y), 1))


class TalebUNetEncoder(_HeadMixin):
    """The Taleb et al. 3D U-Net encoder (module docstring)."""

    def __init__(self, in_channels: int = 1, features_per_stage: Sequence[int] = TALEB_FEATURES,
                 dropout: float = 0.5, norm_op_kwargs: dict[str, Any] | None = None,
                 num_classes: int | None = None, features_only: bool = False) -> None:
        super().__init__()
        features = [int(f) for f in features_per_stage]
        if len(features) < 1 or min(features) < 1:
            raise ValueError(f"features_per_stage must be positive widths, got {features_per_stage!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        norm_kwargs = dict(KERAS_BN if norm_op_kwargs is None else norm_op_kwargs)
        blocks, cin = [], in_channels
        for s, f in enumerate(features):
            blocks.append(TalebBlock(cin, f, pool=s > 0, dropout=dropout, norm_kwargs=norm_kwargs))
            cin = f
        self.encoder = _Stages(blocks)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.features_only = features_only
        self.feature_channels = tuple(features)
        self._attach_feature_info(features, [1] + [2] * (len(features) - 1))  # MaxPool3d(2) before stages 1..
        self._make_head(features[-1], num_classes)
        if not on_meta_device(self):
            self.apply(self.initialize)

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """Keras ``he_normal`` for the convs (here: Kaiming normal, fan_in, ReLU gain), zero biases; BN 1 / 0."""
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm3d):
            module.reset_parameters()
        elif isinstance(module, nn.Linear):
            module.reset_parameters()


_DECODER_ONLY = ("n_conv_per_stage_decoder", "deep_supervision", "nonlin_first_decoder")


class NNUNetEncoder(_HeadMixin):
    """The encoder of an nnU-Net v2 plan (module docstring); ``unet`` names the plan's network class."""

    def __init__(self, in_channels: int = 1, unet: str = "plain_conv_unet", num_classes: int | None = None,
                 features_only: bool = False, **plan_arch_kwargs: Any) -> None:
        super().__init__()
        kw = resolve_arch_kwargs({k: v for k, v in plan_arch_kwargs.items() if k not in _DECODER_ONLY})
        try:
            if unet == "plain_conv_unet":
                self.encoder = PlainConvEncoder(input_channels=in_channels, return_skips=True, **kw)
            elif unet == "residual_encoder_unet":
                if "block" in kw:
                    kw["block"] = resolve_block(kw["block"])
                self.encoder = ResidualEncoder(input_channels=in_channels, return_skips=True, **kw)
            else:
                raise ValueError(f"unet must be 'plain_conv_unet' or 'residual_encoder_unet', got {unet!r}")
        except TypeError as exc:
            raise ValueError(f"nnunet_encoder: bad plan arch_kwargs ({exc})") from None
        self.unet = unet
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.features_only = features_only
        self.feature_channels = tuple(self.encoder.output_channels)
        self._attach_feature_info(self.encoder.output_channels, self.encoder.strides)
        self._make_head(self.encoder.output_channels[-1], num_classes)
        if not on_meta_device(self):
            self.apply(self.initialize)

    def initialize(self, module: nn.Module) -> None:
        he_init(module)
        if self.unet == "residual_encoder_unet":
            zero_last_norm(module)


def _check_num_classes(num_classes: int | None) -> None:
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes must be a positive integer or None, got {num_classes!r}")


def build_ssl3d_unet_encoder(*, in_channels: int = 1, num_classes: int | None = None,
                             features_per_stage: Sequence[int] = TALEB_FEATURES, dropout: float = 0.5,
                             norm_op_kwargs: dict[str, Any] | None = None,
                             features_only: bool = False) -> TalebUNetEncoder:
    """The Taleb et al. 3D U-Net encoder; ``num_classes`` adds a pooled linear head."""
    _check_num_classes(num_classes)
    return TalebUNetEncoder(in_channels, features_per_stage, dropout, norm_op_kwargs, num_classes, features_only)


def build_nnunet_encoder(*, in_channels: int = 1, num_classes: int | None = None, unet: str = "plain_conv_unet",
                         features_only: bool = False, **plan_arch_kwargs: Any) -> NNUNetEncoder:
    """The encoder of an nnU-Net plan (``plan_arch_kwargs`` = the plan's ``architecture.arch_kwargs``)."""
    _check_num_classes(num_classes)
    return NNUNetEncoder(in_channels, unet, num_classes, features_only, **plan_arch_kwargs)
