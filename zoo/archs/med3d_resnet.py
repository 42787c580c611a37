"""MedicalNet / Med3D 3D ResNets 10-200 (Chen, Ma, Zheng 2019), with the upstream state_dict layout.

Tencent's ``resnet_{depth}.pth`` files load into :class:`Med3DResNet` (head ``'none'``) once ``module.``
is stripped (docs/upstream-checkpoints.md, section 3). The network is MedicalNet's dilated backbone,
NOT the classic (Kinetics / MONAI) ResNet: layer3 and layer4 keep stride 1 and use dilation 2 and 4, so
the output stride is 8. ``dilated=False`` builds the classic layout instead (layer3 and layer4 with stride 2
in their first block, dilation 1: output stride 32), with the same keys and shapes; the 2D ImageNet ResNets
inflated to 3D (``i3d-*`` entries, :mod:`zoo.convert.inflate2d`) were trained for that layout.

| stage   | modules                                              | channels (Basic / Bottleneck) | stride (cumulative) |
|---------|------------------------------------------------------|-------------------------------|---------------------|
| stem    | conv1 7x7x7 s2 p3 (no bias), bn1, relu               | 64                            | 2                   |
| layer1  | maxpool 3x3x3 s2 p1, blocks of planes 64             | 64 / 256                      | 4                   |
| layer2  | blocks of planes 128, first block stride 2           | 128 / 512                     | 8                   |
| layer3  | blocks of planes 256, stride 1, dilation 2           | 256 / 1024                    | 8                   |
| layer4  | blocks of planes 512, stride 1, dilation 4           | 512 / 2048                    | 8                   |

With ``dilated=False``: layer3 and layer4 have stride 2 in their first block and dilation 1 (cumulative
strides 16 and 32), as in torchvision / timm / MONAI ResNets.

Blocks: ``BasicBlock`` (depth 10/18/34; conv1 3^3 (stride) - bn1 - relu - conv2 3^3 - bn2 + shortcut - relu)
and ``Bottleneck`` (depth 50+; conv1 1^3 - conv2 3^3 (stride, dilation) - conv3 1^3 to 4x planes). Every
3x3x3 conv of a dilated stage uses dilation d and padding d, including the stage's first block. All convs
are bias-free. Shortcuts, used when the stride is not 1 or the channels change:

* ``'A'``: parameter-free. Stride-``s`` subsampling (average pooling with kernel 1) and zero channels
  appended. Upstream builds it with ``out.data``, which cuts the gradient through the shortcut; here the
  gradient flows (forward values are identical).
* ``'B'``: ``downsample`` = Conv3d 1x1x1 (stride, no bias) + BatchNorm3d: keys ``layerN.0.downsample.0.weight``
  and ``layerN.0.downsample.1.*``.

Released files use shortcut B except ResNet-18 and -34 (A).

Axis order: MedicalNet volumes are (N, C, D, H, W) with D the slice axis (z, y, x numpy order of the
NIfTI data); the network is axis-agnostic. Spatial sizes should be divisible by 8 (32 if not dilated) for exact maps
(odd sizes are rounded up by the strided convs/pooling, as upstream).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..options import Med3DDepth, Med3DHead, check_option
from ._common import on_meta_device
from .features import FeatureInfo

__all__ = ["BasicBlock", "Bottleneck", "Med3DResNet", "build_med3d_resnet", "DEPTHS"]


class BasicBlock(nn.Module):
    """Two 3x3x3 convs (both dilated in layer3/4); expansion 1."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1x1 reduce, 3x3x3 (stride and dilation here, "v1.5" style), 1x1x1 expand to 4x planes."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ZeroPadShortcut(nn.Module):
    """Shortcut 'A': subsample by ``stride`` (avg-pool with kernel 1) and append zero channels. No parameters."""

    def __init__(self, out_channels: int, stride: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride != 1:
            x = F.avg_pool3d(x, kernel_size=1, stride=self.stride)
        missing = self.out_channels - x.shape[1]
        if missing > 0:
            x = torch.cat([x, x.new_zeros(x.shape[0], missing, *x.shape[2:])], dim=1)
        return x

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}, stride={self.stride}"


#: depth -> (block, blocks per stage, shortcut of the released MedicalNet weights)
DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int], str]] = {
    10: (BasicBlock, (1, 1, 1, 1), "B"),
    18: (BasicBlock, (2, 2, 2, 2), "A"),
    34: (BasicBlock, (3, 4, 6, 3), "A"),
    50: (Bottleneck, (3, 4, 6, 3), "B"),
    101: (Bottleneck, (3, 4, 23, 3), "B"),
    152: (Bottleneck, (3, 8, 36, 3), "B"),
    200: (Bottleneck, (3, 24, 36, 3), "B"),
}

#: feature names for ``features_only`` / ``out_indices``
FEATURE_NAMES = ("stem", "layer1", "layer2", "layer3", "layer4")
_FEATURE_STRIDES = (2, 4, 8, 8, 8)
_CLASSIC_FEATURE_STRIDES = (2, 4, 8, 16, 32)
#: the submodule whose output each feature is (the stem map is the output of ``relu``, used only there)
_FEATURE_MODULES = ("relu", "layer1", "layer2", "layer3", "layer4")


class Med3DResNet(nn.Module):
    """MedicalNet's dilated 3D ResNet (see the module docstring for the layout).

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. ``(1, 1, 1, 1)`` for ResNet-10.
        in_channels: input channels of ``conv1`` (upstream: 1).
        shortcut_type: ``'A'`` (zero padding, no parameters) or ``'B'`` (1x1x1 conv + BN).
        head: ``'none'`` (forward returns layer4 features), ``'classification'`` (global average pool + ``fc``)
            or ``'segmentation'`` (MedicalNet's ``conv_seg``).
        num_classes: outputs of the classification / segmentation head (``None`` for ``'none'``).
        features_only: forward returns a list of feature maps (see ``out_indices``); no head is built.
        out_indices: which of (stem, layer1, layer2, layer3, layer4) = (0..4) ``features_only`` returns.
        dilated: ``True`` (MedicalNet): layer3/4 stride 1, dilation 2/4, output stride 8; ``False`` (classic
            ResNet): layer3/4 stride 2, dilation 1, output stride 32 (layer3 D/16, layer4 D/32). Same keys.

    Shapes for input (N, in_channels, D, H, W) with E = block expansion (1 or 4), ``dilated=True``:

    * stem (N, 64, D/2, H/2, W/2); layer1 (N, 64E, D/4, ...); layer2 (N, 128E, D/8, ...);
      layer3 (N, 256E, D/8, ...); layer4 (N, 512E, D/8, ...);
    * ``'none'`` -> layer4 map; ``'classification'`` -> (N, num_classes) logits;
      ``'segmentation'`` -> (N, num_classes, D/4, H/4, W/4) logits (MedicalNet's output resolution:
      upstream trains against labels resized to it).
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: Sequence[int],
        in_channels: int = 1,
        shortcut_type: str = "B",
        head: Med3DHead = "none",
        num_classes: int | None = None,
        features_only: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3, 4),
        dilated: bool = True,
    ) -> None:
        super().__init__()
        if shortcut_type not in ("A", "B"):
            raise ValueError(f"unknown shortcut_type {shortcut_type!r}; choose 'A' or 'B'")
        check_option("head", head, Med3DHead)
        if (head == "none") != (num_classes is None):
            raise ValueError(f"head {head!r} needs num_classes {'None' if head == 'none' else '>= 1'}, got {num_classes!r}")
        if features_only and head != "none":
            raise ValueError("features_only=True returns feature maps only: do not ask for a head / num_classes")
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or any(i not in range(len(FEATURE_NAMES)) for i in out_indices):
            raise ValueError(f"out_indices must be a non-empty subset of 0..4 {FEATURE_NAMES}, got {out_indices}")
        self.block = block
        self.layers = tuple(layers)
        self.in_channels = in_channels
        self.shortcut_type = shortcut_type
        self.head = head
        self.num_classes = num_classes
        self.features_only = features_only
        self.out_indices = out_indices
        self.dilated = bool(dilated)
        expansion = block.expansion  # type: ignore[attr-defined]
        #: channels of (stem, layer1, ..., layer4), for feature pyramids
        self.feature_channels = (64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)
        self.feature_strides = _FEATURE_STRIDES if self.dilated else _CLASSIC_FEATURE_STRIDES
        self.num_features = 512 * expansion
        if features_only:
            #: channels / reduction / module of each returned map (timm convention, :mod:`zoo.archs.features`)
            self.feature_info = FeatureInfo(
                {"num_chs": self.feature_channels[i], "reduction": self.feature_strides[i],
                 "module": _FEATURE_MODULES[i], "index": i} for i in out_indices)

        self._in_planes = 64
        self.conv1 = nn.Conv3d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        if self.dilated:
            self.layer3 = self._make_layer(256, layers[2], dilation=2)
            self.layer4 = self._make_layer(512, layers[3], dilation=4)
        else:
            self.layer3 = self._make_layer(256, layers[2], stride=2)
            self.layer4 = self._make_layer(512, layers[3], stride=2)
        del self._in_planes

        if head == "classification":
            self.avgpool = nn.AdaptiveAvgPool3d(1)
            self.fc = nn.Linear(self.num_features, num_classes)
        elif head == "segmentation":
            self.conv_seg = nn.Sequential(
                nn.ConvTranspose3d(self.num_features, 32, kernel_size=2, stride=2, bias=True),
                nn.BatchNorm3d(32),
                nn.ReLU(inplace=True),
                nn.Conv3d(32, 32, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm3d(32),
                nn.ReLU(inplace=True),
                nn.Conv3d(32, num_classes, kernel_size=1, bias=False),
            )
        if not on_meta_device(self):
            self.initialize(self)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        block = self.block
        out_planes = planes * block.expansion  # type: ignore[attr-defined]
        downsample: nn.Module | None = None
        if stride != 1 or self._in_planes != out_planes:
            if self.shortcut_type == "A":
                downsample = ZeroPadShortcut(out_planes, stride)
            else:
                downsample = nn.Sequential(
                    nn.Conv3d(self._in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm3d(out_planes),
                )
        units = [block(self._in_planes, planes, stride=stride, dilation=dilation, downsample=downsample)]
        self._in_planes = out_planes
        units += [block(out_planes, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*units)

    def _features(self, x: Tensor, upto: int) -> list[Tensor]:
        """Feature maps 0..upto of (stem, layer1, layer2, layer3, layer4)."""
        feats = [self.relu(self.bn1(self.conv1(x)))]
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        y = self.maxpool(feats[0])
        for i in range(upto):
            y = stages[i](y)
            feats.append(y)
        return feats

    def forward_features(self, x: Tensor) -> Tensor:
        """The layer4 feature map (N, 512E, D/8, H/8, W/8); D/32 ... with ``dilated=False``."""
        return self._features(x, 4)[-1]

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        if self.features_only:
            feats = self._features(x, max(self.out_indices))
            return [feats[i] for i in self.out_indices]
        y = self.forward_features(x)
        if self.head == "classification":
            return self.fc(torch.flatten(self.avgpool(y), 1))
        if self.head == "segmentation":
            return self.conv_seg(y)
        return y

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """MedicalNet's initialisation, for ``module`` and its submodules.

        Conv3d: kaiming-normal, fan_out, ReLU gain; BatchNorm: weight 1, bias 0 (running stats reset).
        Other layers (the segmentation head's ConvTranspose3d, the ``fc`` Linear) keep PyTorch's default
        initialisation, as upstream.
        """
        for m in module.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                if m.affine:
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)


def build_med3d_resnet(
    *,
    depth: Med3DDepth,
    in_channels: int = 1,
    num_classes: int | None = None,
    head: Med3DHead | None = None,
    shortcut_type: str | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] = (0, 1, 2, 3, 4),
    dilated: bool = True,
) -> Med3DResNet:
    """Build MedicalNet ResNet-``depth`` (10, 18, 34, 50, 101, 152, 200).

    Args:
        depth: network depth; BasicBlock for 10/18/34, Bottleneck for 50 and deeper.
        in_channels: input channels (upstream weights have 1; the loader adapts ``conv1.weight``).
        num_classes: head outputs; ``None`` with ``head=None`` gives the released backbone (no head).
        head: ``None`` picks ``'none'`` if ``num_classes`` is None, else ``'classification'``;
            ``'segmentation'`` builds MedicalNet's ``conv_seg`` decoder.
        shortcut_type: ``'A'`` or ``'B'``; ``None`` = the shortcut of the released weights for this depth
            (A for 18 and 34, B otherwise).
        features_only: return [stem, layer1, layer2, layer3, layer4] maps (selected by ``out_indices``),
            strides (2, 4, 8, 8, 8); all backbone modules are built, so the released weights load strictly.
        out_indices: subset of 0..4.
        dilated: ``True`` = MedicalNet's dilated layer3/4 (output stride 8); ``False`` = the classic ResNet
            (layer3/4 stride 2, output stride 32; feature strides (2, 4, 8, 16, 32)). Keys and shapes are the
            same, so any weights load into either; the released MedicalNet weights were trained dilated.

    Raises:
        ValueError: unknown depth, shortcut or head, or a head / num_classes combination that does not fit.
    """
    check_option("depth", depth, Med3DDepth, label="MedicalNet ResNet depth")
    block, layers, default_shortcut = DEPTHS[depth]
    if shortcut_type is None:
        shortcut_type = default_shortcut
    if shortcut_type not in ("A", "B"):
        raise ValueError(f"unknown shortcut_type {shortcut_type!r}; choose 'A' or 'B' (or None for the upstream default)")
    if not isinstance(dilated, bool):
        raise ValueError(f"dilated must be True (MedicalNet, output stride 8) or False (classic, 32), got {dilated!r}")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes must be a positive integer or None, got {num_classes!r}")
    if head is None:
        head = "none" if num_classes is None else "classification"
    model = Med3DResNet(
        block, layers, in_channels=in_channels, shortcut_type=shortcut_type, head=head, num_classes=num_classes,
        features_only=features_only, out_indices=out_indices, dilated=dilated,
    )
    model.depth = depth
    return model
