"""STU-Net (Huang et al., "STU-Net: Scalable and Transferable Medical Image Segmentation Models Empowered by
Large-Scale Supervised Pre-training", arXiv 2304.06716), with the state-dict keys of the authors' code, so that
their checkpoints load tensor for tensor, and the constructor signature of nnU-Net v2's U-Nets, so that
``nnUNetv2_train`` builds it from a plan (``network_class_name`` ``zoo.archs.stunet.STUNet``).

Facts from the authors' code (github.com/uni-medical/STU-Net, ``nnUNet-1.7.1/nnunet/network_architecture/
STUNet.py``, ``nnUNet-1.7.1/nnunet/training/network_training/STUNetTrainer.py`` and the nnU-Net v2 port
``nnUNet-2.2/nnunetv2/training/nnUNetTrainer/STUNetTrainer.py``):

* residual block (``BasicResBlock``): ``conv1`` (kernel k, stride s, padding k // 2, bias) -> ``norm1``
  (InstanceNorm, affine) -> LeakyReLU(0.01) -> ``conv2`` (kernel k, bias) -> ``norm2``; plus the shortcut, which
  is ``conv3`` (1x1 convolution with stride s and bias, no norm) in the first block of every stage and the identity
  elsewhere; sum, then LeakyReLU(0.01);
* encoder ``conv_blocks_context.S`` (S = 0..n_stages - 1): ``n_blocks_per_stage[S]`` blocks, the first one
  strided by ``strides[S]`` (stage 0 is never strided);
* upsampling ``upsample_layers.U`` (U = 0 is the deepest): nearest-neighbour interpolation by the stride of
  encoder stage ``n_stages - 1 - U``, then ``conv`` (1x1, bias) to the width of the stage above;
* decoder ``conv_blocks_localization.U``: blocks over the concatenation ``[upsampled, skip]`` (the first block has
  the 1x1 shortcut), as many blocks as the encoder stage of that resolution;
* heads ``seg_outputs.U`` (1x1 convolution, bias) after every decoder stage;
* sizes (``STUNetTrainer_{small,base,large,huge}``): widths ``w x [1, 2, 4, 8, 16, 16]`` with w = 16, 32, 64,
  96 and 1, 1, 2, 3 blocks per stage; kernels 3 everywhere; the pretraining plan (TotalSegmentator, 1.5 mm,
  patch 128^3, ``plan_files/*.model.pkl``) pools ``[[2, 2, 2]] * 4 + [[1, 1, 2]]`` in nnU-Net's array order (the
  last axis pooled five times).

Here the strides are given as nnU-Net v2 plans give them: one per stage, ``strides[0] == [1, 1, 1]`` (upstream's
``pool_op_kernel_sizes`` are ``strides[1:]``).

Input ``(N, C, Z, Y, X)`` (spatial axes in the plan's order, nnU-Net arrays: ``zyx``), each spatial size divisible
by the product of the strides along that axis. Output: ``(N, num_classes, Z, Y, X)`` logits, or with
``deep_supervision`` a list of ``n_stages - 1`` logits, full resolution first, output ``k`` at the resolution of
encoder stage ``k`` (upstream's order: ``[seg_outputs[-1], seg_outputs[-2], ...]``). nnU-Net toggles deep
supervision through ``network.decoder.deep_supervision`` (``decoder`` holds only that flag: no tensors).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .nnunet_blocks import he_init, resolve_op

#: the dotted class path an nnU-Net plan names in ``architecture.network_class_name``
NNUNET_CLASS_PATH = "zoo.archs.stunet.STUNet"

#: the strides of the TotalSegmentator pretraining plan (nnU-Net array order), stem first
PRETRAINING_STRIDES = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 1, 2]]


def _axes(value: Any, name: str) -> list[int]:
    vals = [value] * 3 if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(vals, (list, tuple)) or len(vals) != 3 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in vals):
        raise ValueError(f"{name} must be 3 positive integers (one per spatial axis) or one, got {value!r}")
    return [int(v) for v in vals]


def _stages(value: Any, n: int, name: str) -> list[Any]:
    """One entry per stage: a list must have ``n`` entries, a single integer serves every stage (as nnU-Net)."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} must have {n} entries (one per stage), got {len(value)}: {value!r}")
        return list(value)
    return [value] * n


class ResBlock(nn.Module):
    """STU-Net's ``BasicResBlock``: ``(N, C_in, *S) -> (N, C_out, *S / stride)``; ``conv3`` (1x1, stride, bias, no
    norm) is the shortcut when ``shortcut`` is true, else the identity (then ``C_in == C_out``, stride 1)."""

    def __init__(self, input_channels: int, output_channels: int, kernel_size: Sequence[int],
                 stride: Sequence[int] | int = 1, shortcut: bool = False) -> None:
        super().__init__()
        padding = [k // 2 for k in kernel_size]
        self.conv1 = nn.Conv3d(input_channels, output_channels, tuple(kernel_size), stride=stride, padding=padding)
        self.norm1 = nn.InstanceNorm3d(output_channels, affine=True)
        self.act1 = nn.LeakyReLU(inplace=True)
        self.conv2 = nn.Conv3d(output_channels, output_channels, tuple(kernel_size), padding=padding)
        self.norm2 = nn.InstanceNorm3d(output_channels, affine=True)
        self.act2 = nn.LeakyReLU(inplace=True)
        if shortcut:
            self.conv3: nn.Conv3d | None = nn.Conv3d(input_channels, output_channels, 1, stride=stride)
        else:
            if input_channels != output_channels or _axes(stride, "stride") != [1, 1, 1]:
                raise ValueError("a block without its 1x1 shortcut keeps channels and resolution")
            self.conv3 = None

    def forward(self, x: Tensor) -> Tensor:
        y = self.act1(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        shortcut = x if self.conv3 is None else self.conv3(x)
        return self.act2(y + shortcut)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by ``scale`` per axis, then a 1x1 convolution (bias):
    ``(N, C_in, *S) -> (N, C_out, *S * scale)``."""

    def __init__(self, input_channels: int, output_channels: int, scale: Sequence[int]) -> None:
        super().__init__()
        self.conv = nn.Conv3d(input_channels, output_channels, kernel_size=1)
        self.scale = tuple(int(s) for s in scale)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


class DeepSupervisionFlag(nn.Module):
    """Holds ``deep_supervision``, the switch nnU-Net's trainer sets on ``network.decoder``; no tensors."""

    def __init__(self, deep_supervision: bool) -> None:
        super().__init__()
        self.deep_supervision = deep_supervision


class STUNet(nn.Module):
    """STU-Net with nnU-Net v2's U-Net constructor signature (see the module docstring for structure and shapes).

    Args:
        input_channels: image channels C.
        num_classes: segmentation heads (logit channels).
        n_stages: encoder stages (6 in every published size).
        features_per_stage: widths (one per stage, or one for all).
        conv_op: ``Conv3d`` (class or dotted path; STU-Net is 3D only).
        kernel_sizes: per stage, 3 integers (or one); odd.
        strides: per stage, 3 integers (or one); ``strides[0]`` must be 1 (stage 0 is not strided).
        n_blocks_per_stage: residual blocks per encoder stage; the decoder stage of a resolution has as many.
        deep_supervision: return every head's logits (see module docstring).
    """

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        n_stages: int = 6,
        features_per_stage: int | Sequence[int] = (32, 64, 128, 256, 512, 512),
        conv_op: Any = nn.Conv3d,
        kernel_sizes: Any = 3,
        strides: Any = tuple(tuple(s) for s in PRETRAINING_STRIDES),
        n_blocks_per_stage: int | Sequence[int] = 1,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        if resolve_op(conv_op, "conv_op") is not nn.Conv3d:
            raise ValueError(f"STUNet is a 3D network: conv_op must be Conv3d, got {conv_op!r}")
        if isinstance(n_stages, bool) or not isinstance(n_stages, int) or n_stages < 2:
            raise ValueError(f"n_stages must be an integer >= 2, got {n_stages!r}")
        n = n_stages
        dims = [int(f) for f in _stages(features_per_stage, n, "features_per_stage")]
        kernels = [_axes(k, f"kernel_sizes[{i}]") for i, k in enumerate(_stages(kernel_sizes, n, "kernel_sizes"))]
        if any(k % 2 == 0 for kernel in kernels for k in kernel):
            raise ValueError(f"kernel_sizes must be odd (padding k // 2), got {kernel_sizes!r}")
        stride = [_axes(s, f"strides[{i}]") for i, s in enumerate(_stages(strides, n, "strides"))]
        if stride[0] != [1, 1, 1]:
            raise ValueError(f"strides[0] must be [1, 1, 1]: STU-Net's first stage is not strided, got {stride[0]}")
        depth = [int(b) for b in _stages(n_blocks_per_stage, n, "n_blocks_per_stage")]
        if any(b < 1 for b in depth) or any(f < 1 for f in dims):
            raise ValueError("features_per_stage and n_blocks_per_stage must be positive")
        self.input_channels, self.num_classes = input_channels, num_classes
        self.features_per_stage, self.kernel_sizes, self.strides, self.n_blocks_per_stage = dims, kernels, stride, depth

        def stage(cin: int, cout: int, kernel: list[int], s: list[int], blocks: int) -> nn.Sequential:
            return nn.Sequential(ResBlock(cin, cout, kernel, s, shortcut=True),
                                 *[ResBlock(cout, cout, kernel) for _ in range(blocks - 1)])

        self.conv_blocks_context = nn.ModuleList(
            stage(input_channels if d == 0 else dims[d - 1], dims[d], kernels[d], stride[d], depth[d])
            for d in range(n))
        # decoder index u = 0 is the deepest: it upsamples stage n-1 to the resolution of stage n-2
        self.upsample_layers = nn.ModuleList(
            Upsample(dims[n - 1 - u], dims[n - 2 - u], stride[n - 1 - u]) for u in range(n - 1))
        self.conv_blocks_localization = nn.ModuleList(
            stage(2 * dims[n - 2 - u], dims[n - 2 - u], kernels[n - 2 - u], [1, 1, 1], depth[n - 2 - u])
            for u in range(n - 1))
        self.seg_outputs = nn.ModuleList(nn.Conv3d(dims[n - 2 - u], num_classes, 1) for u in range(n - 1))
        self.decoder = DeepSupervisionFlag(deep_supervision)

    @property
    def deep_supervision(self) -> bool:
        return bool(self.decoder.deep_supervision)

    @deep_supervision.setter
    def deep_supervision(self, value: bool) -> None:
        self.decoder.deep_supervision = bool(value)

    def encode(self, x: Tensor) -> list[Tensor]:
        """Every encoder stage's output, full resolution first: ``(N, features_per_stage[s], *S / prod(strides[:s+1]))``."""
        skips = []
        for stage in self.conv_blocks_context:
            x = stage(x)
            skips.append(x)
        return skips

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """``(N, C, Z, Y, X)`` -> ``(N, num_classes, Z, Y, X)`` logits (deep supervision: a list, see module
        docstring)."""
        skips = self.encode(x)
        x = skips[-1]
        ds = self.deep_supervision
        last = len(self.conv_blocks_localization) - 1
        outputs = []
        for u, (up, block) in enumerate(zip(self.upsample_layers, self.conv_blocks_localization)):
            x = block(torch.cat((up(x), skips[-(u + 2)]), dim=1))
            if ds or u == last:
                outputs.append(self.seg_outputs[u](x))
        return outputs[::-1] if ds else outputs[-1]

    def forward_features(self, x: Tensor) -> Tensor:
        """The bottleneck feature map ``(N, features_per_stage[-1], *S / prod(strides))``."""
        return self.encode(x)[-1]

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """The authors' v1 init (nnU-Net's ``InitWeights_He(1e-2)``): Kaiming normal, zero biases; applied with
        ``net.apply(net.initialize)`` (nnU-Net v2's ``get_network_from_plans`` does so)."""
        he_init(module)


def build_stunet(*, in_channels: int, num_classes: int, deep_supervision: bool = False,
                 **plan_arch_kwargs: Any) -> STUNet:
    """A :class:`STUNet` from plan ``arch_kwargs`` (``conv_op`` as a class or dotted path), He-initialised
    (skipped on the meta device)."""
    from ._common import on_meta_device

    if num_classes is None or num_classes < 1:
        raise ValueError(f"STUNet needs num_classes >= 1 (the segmentation head size), got {num_classes!r}")
    try:
        net = STUNet(input_channels=in_channels, num_classes=num_classes, deep_supervision=deep_supervision,
                     **plan_arch_kwargs)
    except TypeError as exc:
        raise ValueError(f"STUNet: bad arch_kwargs ({exc})") from None
    if not on_meta_device(net):
        net.apply(net.initialize)
    return net


__all__ = ["NNUNET_CLASS_PATH", "PRETRAINING_STRIDES", "ResBlock", "STUNet", "Upsample", "build_stunet"]
