"""Models Genesis UNet3D (Zhou et al.), with the exact state_dict layout of the upstream PyTorch code.

The checkpoints ``Genesis_Chest_CT.pt`` (Models Genesis) and ``supervised_suprem_unet_2100.pth`` (SuPreM,
backbone only) load into :class:`UNet3D` without any key mapping once the ``module.`` /
``module.backbone.`` prefixes are stripped (docs/upstream-checkpoints.md, sections 1 and 4; upstream network:
MrGiovanni/ModelsGenesis ``pytorch/unet3d.py``).

Layout (C = output channels of a unit; every unit is Conv3d 3x3x3 with bias -> BatchNorm3d -> activation)::

    down_tr64   ops.0: in->32    ops.1: 32->64       then MaxPool3d(2)
    down_tr128  ops.0: 64->64    ops.1: 64->128      then MaxPool3d(2)
    down_tr256  ops.0: 128->128  ops.1: 128->256     then MaxPool3d(2)
    down_tr512  ops.0: 256->256  ops.1: 256->512     (no pooling: the deepest level)
    up_tr256    up_conv ConvTranspose3d(512, 512, 2, 2); cat [up, skip256] = 768; ops 768->256, 256->256
    up_tr128    up_conv ConvTranspose3d(256, 256, 2, 2); cat [up, skip128] = 384; ops 384->128, 128->128
    up_tr64     up_conv ConvTranspose3d(128, 128, 2, 2); cat [up, skip64]  = 192; ops 192->64,  64->64
    out_tr      final_conv Conv3d(64, num_classes, 1) (+ sigmoid in forward)

Each unit ``<stage>.ops.<i>`` holds ``conv1.{weight,bias}`` and ``bn1.{weight,bias,running_mean,running_var,
num_batches_tracked}``: 14 units x 7 + 3 up-convs x 2 + head 2 = 106 state_dict entries and 19,073,665
parameters for ``in_channels=1, num_classes=1`` (104 entries without the head).

Axis order: the Genesis pretraining cubes are (N, 1, X, Y, Z) = (rows, cols, slices) with z last, 64x64x32,
i.e. the transpose of the (z, y, x) numpy order used by nnU-Net / MONAI. The network itself is
axis-agnostic, but weights learned on (x, y, z) cubes expect that orientation. Every spatial size must be
divisible by 8 (three 2x poolings; the Models Genesis README asks for 16, which is stricter than needed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..options import GenesisAct, OutActivation, check_option

__all__ = ["ContBatchNorm3d", "LUConv", "UNet3D", "build_unet3d"]



class ContBatchNorm3d(_BatchNorm):
    """The upstream ``ContBatchNorm3d``: batch normalisation that ALWAYS uses the statistics of the batch.

    It calls ``F.batch_norm(..., training=True)`` whatever ``self.training`` is, so

    * after ``model.eval()`` the output of one sample still depends on the other samples in the batch (and
      a batch of one sample is normalised by its own statistics);
    * the running mean/var are still updated (momentum 0.1) on every forward pass, also in eval mode and
      under ``torch.no_grad()``, although they are never used;
    * ``num_batches_tracked`` is never incremented (it stays 0 in the released checkpoints).

    Same parameters, buffers and state_dict keys as :class:`torch.nn.BatchNorm3d`.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 5:
            raise ValueError(f"expected a 5D input (N, C, X, Y, Z), got {input.dim()}D")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        return F.batch_norm(
            input, self.running_mean, self.running_var, self.weight, self.bias, True, self.momentum, self.eps
        )


def _activation(act: GenesisAct, channels: int) -> nn.Module:
    if act == "relu":
        return nn.ReLU(inplace=True)
    if act == "prelu":
        return nn.PReLU(channels)  # upstream: one slope per channel -> key ``activation.weight`` [C]
    if act == "elu":
        return nn.ELU(inplace=True)
    check_option("act", act, GenesisAct)  # raises: every choice is handled above (UNet3D checked it already)
    raise AssertionError(act)  # pragma: no cover


class LUConv(nn.Module):
    """Conv3d(k=3, padding=1, bias) -> batch norm -> activation; keys ``conv1.*``, ``bn1.*`` (+ ``activation.weight`` for PReLU)."""

    def __init__(self, in_channels: int, out_channels: int, act: GenesisAct = "relu", upstream_bn: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=True)
        self.bn1 = ContBatchNorm3d(out_channels) if upstream_bn else nn.BatchNorm3d(out_channels)
        self.activation = _activation(act, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.bn1(self.conv1(x)))


def _two_units(in_channels: int, mid: int, out: int, act: GenesisAct, upstream_bn: bool) -> nn.Sequential:
    return nn.Sequential(LUConv(in_channels, mid, act, upstream_bn), LUConv(mid, out, act, upstream_bn))


class _Down(nn.Module):
    """Encoder level: ``ops`` (two units, channels doubling in the second), then 2x max pooling unless deepest."""

    def __init__(self, in_channels: int, width: int, act: GenesisAct, upstream_bn: bool, pool: bool) -> None:
        super().__init__()
        self.ops = _two_units(in_channels, width, 2 * width, act, upstream_bn)
        self.maxpool = nn.MaxPool3d(2) if pool else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (input of the next level, skip feature before pooling)."""
        skip = self.ops(x)
        return (self.maxpool(skip) if self.maxpool is not None else skip), skip


class _Up(nn.Module):
    """Decoder level: ``up_conv`` (ConvTranspose3d k=2 s=2, same width), concat [up, skip], ``ops`` (two units)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, act: GenesisAct, upstream_bn: bool) -> None:
        super().__init__()
        self.up_conv = nn.ConvTranspose3d(in_channels, in_channels, kernel_size=2, stride=2, bias=True)
        self.ops = _two_units(in_channels + skip_channels, out_channels, out_channels, act, upstream_bn)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.ops(torch.cat((self.up_conv(x), skip), dim=1))


class _Out(nn.Module):
    """Head: ``final_conv`` Conv3d(64, num_classes, 1) with bias."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.final_conv = nn.Conv3d(in_channels, num_classes, kernel_size=1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.final_conv(x)


class UNet3D(nn.Module):
    """The Models Genesis 3D U-Net (also SuPreM's U-Net backbone).

    Args:
        in_channels: input channels (upstream: 1).
        num_classes: output channels of the 1x1x1 head ``out_tr``; ``None`` builds no head (SuPreM backbone):
            :meth:`forward` then returns the last decoder feature map.
        upstream_bn: ``True`` uses :class:`ContBatchNorm3d`, the upstream norm that uses batch statistics
            even in eval mode. This reproduces the published networks exactly as they were trained and
            evaluated upstream, but eval outputs then depend on batch composition (a sample's prediction
            changes with whatever else is in the batch, and with batch size 1 each sample is normalised by
            its own statistics), and running statistics keep drifting in eval. ``False`` (default) uses
            ordinary :class:`torch.nn.BatchNorm3d` (running statistics in eval) with the same keys; note the
            released running statistics were accumulated but never used upstream.
        out_activation: ``'sigmoid'`` (upstream: sigmoid inside forward) or ``None`` (return logits).
        act: ``'relu'`` (upstream default), ``'prelu'`` (adds ``activation.weight`` keys) or ``'elu'``.

    Shapes: input (N, in_channels, X, Y, Z), each spatial size divisible by 8. :meth:`forward` returns
    (N, num_classes, X, Y, Z) (or (N, 64, X, Y, Z) without head); :meth:`forward_features` returns the
    deepest encoder map (N, 512, X/8, Y/8, Z/8) (upstream attribute ``out512``).
    """

    #: total downsampling factor along every spatial axis
    divisible_by = 8

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int | None = 1,
        upstream_bn: bool = False,
        out_activation: OutActivation = "sigmoid",
        act: GenesisAct = "relu",
    ) -> None:
        super().__init__()
        check_option("act", act, GenesisAct)
        check_option("out_activation", out_activation, OutActivation)
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive integer or None, got {num_classes!r}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.upstream_bn = upstream_bn
        self.out_activation = out_activation
        self.down_tr64 = _Down(in_channels, 32, act, upstream_bn, pool=True)
        self.down_tr128 = _Down(64, 64, act, upstream_bn, pool=True)
        self.down_tr256 = _Down(128, 128, act, upstream_bn, pool=True)
        self.down_tr512 = _Down(256, 256, act, upstream_bn, pool=False)
        self.up_tr256 = _Up(512, 256, 256, act, upstream_bn)
        self.up_tr128 = _Up(256, 128, 128, act, upstream_bn)
        self.up_tr64 = _Up(128, 64, 64, act, upstream_bn)
        self.out_tr = _Out(64, num_classes) if num_classes is not None else None

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, X, Y, Z), got {tuple(x.shape)}")
        bad = [s for s in x.shape[2:] if s % self.divisible_by]
        if bad:
            raise ValueError(
                f"spatial sizes {tuple(x.shape[2:])} must all be divisible by {self.divisible_by} (3 poolings)"
            )

    def _encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self._check_input(x)
        x, skip64 = self.down_tr64(x)
        x, skip128 = self.down_tr128(x)
        x, skip256 = self.down_tr256(x)
        out512, _ = self.down_tr512(x)
        return skip64, skip128, skip256, out512

    def forward_features(self, x: Tensor) -> Tensor:
        """Deepest encoder feature map (N, 512, X/8, Y/8, Z/8): the input of the Genesis classification head."""
        return self._encode(x)[-1]

    def forward_decoder(self, x: Tensor) -> Tensor:
        """Last decoder feature map (N, 64, X, Y, Z), before the head (upstream ``out_up_64``)."""
        skip64, skip128, skip256, out512 = self._encode(x)
        y = self.up_tr256(out512, skip256)
        y = self.up_tr128(y, skip128)
        return self.up_tr64(y, skip64)

    def forward(self, x: Tensor) -> Tensor:
        """(N, num_classes, X, Y, Z) probabilities (sigmoid) or logits; without head the decoder features."""
        y = self.forward_decoder(x)
        if self.out_tr is None:
            return y
        y = self.out_tr(y)
        return torch.sigmoid(y) if self.out_activation == "sigmoid" else y

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """Default initialisation, applied to ``module`` and its submodules (the loader uses it for new heads).

        Upstream never re-initialised anything, so this is PyTorch's own default: ``reset_parameters()`` of
        every convolution (kaiming-uniform, a=sqrt(5), uniform bias) and norm (weight 1, bias 0, running
        statistics reset), PReLU slopes 0.25.
        """
        for m in module.modules():
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d, _BatchNorm, nn.PReLU)):
                m.reset_parameters()


def build_unet3d(
    *,
    in_channels: int = 1,
    num_classes: int | None = 1,
    upstream_bn: bool = False,
    out_activation: OutActivation = "sigmoid",
    act: GenesisAct = "relu",
) -> UNet3D:
    """Build a Models Genesis :class:`UNet3D` (see the class for arguments, shapes and the BN switch).

    ``num_classes=None`` gives the head-less SuPreM backbone. Works under ``torch.device('meta')``.
    """
    return UNet3D(
        in_channels=in_channels,
        num_classes=num_classes,
        upstream_bn=upstream_bn,
        out_activation=out_activation,
        act=act,
    )
