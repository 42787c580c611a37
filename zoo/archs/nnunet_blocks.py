"""Building blocks of nnU-Net v2 networks, with dynamic-network-architectures' module names.

Everything here reproduces the *state_dict layout* of dynamic-network-architectures (DNA) 0.4: the same
module names (``convs.0.conv``, ``convs.0.all_modules.0`` as an alias of the same conv, ``blocks.0.skip.1``,
``decoder.encoder`` as an alias of the encoder, ...), the same parameter shapes and the same forward
computation, so checkpoints move between DNA / nnU-Net and medzoo without any key mapping. The test suite
checks this against the real package.

Tensors are (N, C, *spatial) with the spatial axes in the plan's order (nnU-Net: z, y, x for 3D). Kernel
sizes and strides are per spatial axis in that same order.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from . import ops

#: arch_kwargs that name a class (nnU-Net plans list them in ``_kw_requires_import``); looked up in the
#: allow-list of :mod:`zoo.archs.ops`, never imported
IMPORT_KWARGS = ops.ROLES

_TRANSPOSED = {nn.Conv1d: nn.ConvTranspose1d, nn.Conv2d: nn.ConvTranspose2d, nn.Conv3d: nn.ConvTranspose3d}
_AVG_POOL = {nn.Conv1d: nn.AvgPool1d, nn.Conv2d: nn.AvgPool2d, nn.Conv3d: nn.AvgPool3d}


def resolve_op(value: Any, key: str) -> Any:
    """The torch class a plan names for ``key`` (``"torch.nn.modules.conv.Conv3d"`` -> ``nn.Conv3d``), from the
    allow-list of :mod:`zoo.archs.ops` only (nothing is imported); ``None`` stays ``None`` except for conv_op.

    Raises:
        ArchitectureSpecError: (a ``ValueError``) for a name or class outside the allow-list or of another role.
    """
    return ops.resolve_op(value, key, f"arch_kwargs.{key}")


def resolve_arch_kwargs(arch_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of plan ``arch_kwargs`` with the class-valued entries (:data:`IMPORT_KWARGS`) looked up in the
    allow-list, and the ``*_kwargs`` of those present checked against their class (JSON scalars, accepted names)."""
    out = dict(arch_kwargs)
    for key in IMPORT_KWARGS:
        if key in out:
            out[key] = resolve_op(out[key], key)
            kwargs_key = ops.KWARGS_KEY.get(key)
            if kwargs_key is not None and out.get(kwargs_key) is not None:
                out[kwargs_key] = ops.check_op_kwargs(out[key], out[kwargs_key], key, f"arch_kwargs.{kwargs_key}")
    return out


def spatial_dims(conv_op: type) -> int:
    for dims, op in ((1, nn.Conv1d), (2, nn.Conv2d), (3, nn.Conv3d)):
        if issubclass(conv_op, op):
            return dims
    raise ValueError(f"conv_op must be nn.Conv1d, nn.Conv2d or nn.Conv3d, got {conv_op!r}")


def as_list(conv_op: type, value: int | Sequence[int]) -> list[int]:
    """``3`` -> ``[3, 3, 3]`` for Conv3d; sequences are returned as lists of ints."""
    if isinstance(value, (int,)):
        return [int(value)] * spatial_dims(conv_op)
    return [int(v) for v in value]


def per_stage(value: Any, n: int, name: str) -> list[Any]:
    """Broadcast a scalar to ``n`` stages, or check a per-stage list has ``n`` entries."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} must have {n} entries (one per stage), got {len(value)}: {value!r}")
        return list(value)
    return [value] * n


def transposed_op(conv_op: type) -> type:
    return _TRANSPOSED[_base_conv(conv_op)]


def avg_pool_op(conv_op: type) -> type:
    return _AVG_POOL[_base_conv(conv_op)]


def _base_conv(conv_op: type) -> type:
    return {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims(conv_op)]


class ConvDropoutNormReLU(nn.Module):
    """conv -> [dropout] -> [norm] -> [nonlin] (norm and nonlin swapped when ``nonlin_first``).

    Same padding ``(k - 1) // 2`` per axis, so the output is ``ceil(size / stride)`` per axis. The conv is
    registered both as ``conv`` and as ``all_modules.0``, exactly like DNA (two state_dict keys, one tensor).
    """

    def __init__(
        self,
        conv_op: type,
        input_channels: int,
        output_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int],
        conv_bias: bool = False,
        norm_op: type | None = None,
        norm_op_kwargs: Mapping[str, Any] | None = None,
        dropout_op: type | None = None,
        dropout_op_kwargs: Mapping[str, Any] | None = None,
        nonlin: type | None = None,
        nonlin_kwargs: Mapping[str, Any] | None = None,
        nonlin_first: bool = False,
    ) -> None:
        super().__init__()
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.stride = as_list(conv_op, stride)
        kernel = as_list(conv_op, kernel_size)
        self.conv = conv_op(
            input_channels, output_channels, kernel, self.stride,
            padding=[(k - 1) // 2 for k in kernel], dilation=1, bias=conv_bias,
        )
        ops: list[nn.Module] = [self.conv]
        if dropout_op is not None:
            self.dropout = dropout_op(**(dropout_op_kwargs or {}))
            ops.append(self.dropout)
        if norm_op is not None:
            self.norm = norm_op(output_channels, **(norm_op_kwargs or {}))
            ops.append(self.norm)
        if nonlin is not None:
            self.nonlin = nonlin(**(nonlin_kwargs or {}))
            ops.append(self.nonlin)
        if nonlin_first and norm_op is not None and nonlin is not None:
            ops[-1], ops[-2] = ops[-2], ops[-1]
        self.all_modules = nn.Sequential(*ops)

    def forward(self, x: Tensor) -> Tensor:
        return self.all_modules(x)


class StackedConvBlocks(nn.Module):
    """``num_convs`` :class:`ConvDropoutNormReLU` in ``convs``; only the first one strides."""

    def __init__(
        self,
        num_convs: int,
        conv_op: type,
        input_channels: int,
        output_channels: int,
        kernel_size: int | Sequence[int],
        initial_stride: int | Sequence[int],
        conv_bias: bool = False,
        norm_op: type | None = None,
        norm_op_kwargs: Mapping[str, Any] | None = None,
        dropout_op: type | None = None,
        dropout_op_kwargs: Mapping[str, Any] | None = None,
        nonlin: type | None = None,
        nonlin_kwargs: Mapping[str, Any] | None = None,
        nonlin_first: bool = False,
    ) -> None:
        super().__init__()
        common = (conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs, nonlin_first)
        layers = [ConvDropoutNormReLU(conv_op, input_channels, output_channels, kernel_size, initial_stride, *common)]
        layers += [
            ConvDropoutNormReLU(conv_op, output_channels, output_channels, kernel_size, 1, *common)
            for _ in range(1, num_convs)
        ]
        self.convs = nn.Sequential(*layers)
        self.output_channels = output_channels
        self.initial_stride = as_list(conv_op, initial_stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.convs(x)


def _skip_path(conv_op: type, input_channels: int, output_channels: int, stride: list[int],
               norm_op: type | None, norm_op_kwargs: Mapping[str, Any] | None) -> nn.Module:
    """ResNet-D shortcut: average-pool when strided, then 1x1 conv + norm when the width changes."""
    ops: list[nn.Module] = []
    if any(s != 1 for s in stride):
        ops.append(avg_pool_op(conv_op)(stride, stride))
    if input_channels != output_channels:
        ops.append(ConvDropoutNormReLU(conv_op, input_channels, output_channels, 1, 1, False, norm_op, norm_op_kwargs))
    return nn.Sequential(*ops) if ops else nn.Identity()


class BasicBlockD(nn.Module):
    """Residual block (ResNet-D): conv1 (k, stride) -> conv2 (k, no nonlin), plus the shortcut, then nonlin."""

    def __init__(
        self, conv_op: type, input_channels: int, output_channels: int, kernel_size: int | Sequence[int],
        stride: int | Sequence[int], conv_bias: bool = False, norm_op: type | None = None,
        norm_op_kwargs: Mapping[str, Any] | None = None, dropout_op: type | None = None,
        dropout_op_kwargs: Mapping[str, Any] | None = None, nonlin: type | None = None,
        nonlin_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.input_channels, self.output_channels = input_channels, output_channels
        self.stride = as_list(conv_op, stride)
        self.conv1 = ConvDropoutNormReLU(conv_op, input_channels, output_channels, kernel_size, self.stride, conv_bias,
                                         norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)
        self.conv2 = ConvDropoutNormReLU(conv_op, output_channels, output_channels, kernel_size, 1, conv_bias,
                                         norm_op, norm_op_kwargs)
        self.nonlin2 = nonlin(**(nonlin_kwargs or {})) if nonlin is not None else nn.Identity()
        self.skip = _skip_path(conv_op, input_channels, output_channels, self.stride, norm_op, norm_op_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        residual = self.skip(x)
        out = self.conv2(self.conv1(x))
        out += residual
        return self.nonlin2(out)

    def last_norm(self) -> nn.Module | None:
        return getattr(self.conv2, "norm", None)


class BottleneckD(nn.Module):
    """Bottleneck block (ResNet-D): 1x1 reduce -> k x k (stride) -> 1x1 expand, plus the shortcut."""

    def __init__(
        self, conv_op: type, input_channels: int, bottleneck_channels: int, output_channels: int,
        kernel_size: int | Sequence[int], stride: int | Sequence[int], conv_bias: bool = False,
        norm_op: type | None = None, norm_op_kwargs: Mapping[str, Any] | None = None,
        dropout_op: type | None = None, dropout_op_kwargs: Mapping[str, Any] | None = None,
        nonlin: type | None = None, nonlin_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.input_channels, self.output_channels = input_channels, output_channels
        self.stride = as_list(conv_op, stride)
        norm = (norm_op, norm_op_kwargs)
        self.conv1 = ConvDropoutNormReLU(conv_op, input_channels, bottleneck_channels, 1, 1, conv_bias, *norm,
                                         None, None, nonlin, nonlin_kwargs)
        self.conv2 = ConvDropoutNormReLU(conv_op, bottleneck_channels, bottleneck_channels, kernel_size, self.stride,
                                         conv_bias, *norm, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)
        self.conv3 = ConvDropoutNormReLU(conv_op, bottleneck_channels, output_channels, 1, 1, conv_bias, *norm)
        self.nonlin3 = nonlin(**(nonlin_kwargs or {})) if nonlin is not None else nn.Identity()
        self.skip = _skip_path(conv_op, input_channels, output_channels, self.stride, norm_op, norm_op_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        residual = self.skip(x)
        out = self.conv3(self.conv2(self.conv1(x)))
        out += residual
        return self.nonlin3(out)

    def last_norm(self) -> nn.Module | None:
        return getattr(self.conv3, "norm", None)


BLOCKS = {"BasicBlockD": BasicBlockD, "BottleneckD": BottleneckD}


def resolve_block(block: Any) -> type:
    """``BasicBlockD`` / ``BottleneckD`` from a class or a name in the table :data:`zoo.archs.ops.BLOCK_SPELLINGS`
    (the bare name, DNA's or medzoo's dotted path); nothing is imported."""
    if block in (BasicBlockD, BottleneckD):
        return block
    return BLOCKS[ops.resolve_block_name(block)]


class StackedResidualBlocks(nn.Module):
    """``n_blocks`` residual blocks in ``blocks``; only the first one strides or changes width."""

    def __init__(
        self, n_blocks: int, conv_op: type, input_channels: int, output_channels: int,
        kernel_size: int | Sequence[int], initial_stride: int | Sequence[int], conv_bias: bool = False,
        norm_op: type | None = None, norm_op_kwargs: Mapping[str, Any] | None = None,
        dropout_op: type | None = None, dropout_op_kwargs: Mapping[str, Any] | None = None,
        nonlin: type | None = None, nonlin_kwargs: Mapping[str, Any] | None = None,
        block: type = BasicBlockD, bottleneck_channels: int | None = None,
    ) -> None:
        super().__init__()
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
        rest = (conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)
        layers = []
        for i in range(n_blocks):
            cin = input_channels if i == 0 else output_channels
            stride = initial_stride if i == 0 else 1
            if block is BottleneckD:
                if bottleneck_channels is None:
                    raise ValueError("BottleneckD needs bottleneck_channels")
                layers.append(BottleneckD(conv_op, cin, bottleneck_channels, output_channels, kernel_size, stride, *rest))
            else:
                layers.append(BasicBlockD(conv_op, cin, output_channels, kernel_size, stride, *rest))
        self.blocks = nn.Sequential(*layers)
        self.output_channels = output_channels
        self.initial_stride = as_list(conv_op, initial_stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)


class _EncoderBase(nn.Module):
    """Shared attributes the decoder reads: per-stage widths, strides, kernel sizes and the ops."""

    def _remember(self, conv_op: type, features: list[int], strides: list[Any], kernels: list[Any], conv_bias: bool,
                  norm_op: type | None, norm_op_kwargs: Any, dropout_op: type | None, dropout_op_kwargs: Any,
                  nonlin: type | None, nonlin_kwargs: Any) -> None:
        self.output_channels = features
        self.strides = [as_list(conv_op, s) for s in strides]
        self.kernel_sizes = kernels
        self.conv_op, self.conv_bias = conv_op, conv_bias
        self.norm_op, self.norm_op_kwargs = norm_op, norm_op_kwargs
        self.dropout_op, self.dropout_op_kwargs = dropout_op, dropout_op_kwargs
        self.nonlin, self.nonlin_kwargs = nonlin, nonlin_kwargs


class PlainConvEncoder(_EncoderBase):
    """Stages of :class:`StackedConvBlocks`, each striding in its first conv. Returns every stage's output
    (the skips, full resolution first, bottleneck last) when ``return_skips``, else only the bottleneck."""

    def __init__(
        self, input_channels: int, n_stages: int, features_per_stage: int | Sequence[int], conv_op: type,
        kernel_sizes: Any, strides: Any, n_conv_per_stage: int | Sequence[int], conv_bias: bool = False,
        norm_op: type | None = None, norm_op_kwargs: Any = None, dropout_op: type | None = None,
        dropout_op_kwargs: Any = None, nonlin: type | None = None, nonlin_kwargs: Any = None,
        return_skips: bool = False, nonlin_first: bool = False,
    ) -> None:
        super().__init__()
        kernels = per_stage(kernel_sizes, n_stages, "kernel_sizes")
        features = per_stage(features_per_stage, n_stages, "features_per_stage")
        n_convs = per_stage(n_conv_per_stage, n_stages, "n_conv_per_stage")
        stride_list = per_stage(strides, n_stages, "strides")
        stages = []
        for s in range(n_stages):
            stages.append(nn.Sequential(StackedConvBlocks(
                n_convs[s], conv_op, input_channels, features[s], kernels[s], stride_list[s], conv_bias,
                norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs, nonlin_first,
            )))
            input_channels = features[s]
        self.stages = nn.Sequential(*stages)
        self.return_skips = return_skips
        self._remember(conv_op, features, stride_list, kernels, conv_bias, norm_op, norm_op_kwargs,
                       dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)

    def forward(self, x: Tensor) -> list[Tensor] | Tensor:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips if self.return_skips else skips[-1]


class ResidualEncoder(_EncoderBase):
    """A one-conv stem at full resolution, then stages of residual blocks (strided conv in the first block)."""

    def __init__(
        self, input_channels: int, n_stages: int, features_per_stage: int | Sequence[int], conv_op: type,
        kernel_sizes: Any, strides: Any, n_blocks_per_stage: int | Sequence[int], conv_bias: bool = False,
        norm_op: type | None = None, norm_op_kwargs: Any = None, dropout_op: type | None = None,
        dropout_op_kwargs: Any = None, nonlin: type | None = None, nonlin_kwargs: Any = None,
        block: type = BasicBlockD, bottleneck_channels: int | Sequence[int] | None = None,
        return_skips: bool = False, stem_channels: int | None = None,
    ) -> None:
        super().__init__()
        kernels = per_stage(kernel_sizes, n_stages, "kernel_sizes")
        features = per_stage(features_per_stage, n_stages, "features_per_stage")
        n_blocks = per_stage(n_blocks_per_stage, n_stages, "n_blocks_per_stage")
        stride_list = per_stage(strides, n_stages, "strides")
        bottlenecks = per_stage(bottleneck_channels, n_stages, "bottleneck_channels")
        stem_channels = stem_channels or features[0]
        self.stem = StackedConvBlocks(1, conv_op, input_channels, stem_channels, kernels[0], 1, conv_bias,
                                      norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)
        input_channels = stem_channels
        stages = []
        for s in range(n_stages):
            stages.append(StackedResidualBlocks(
                n_blocks[s], conv_op, input_channels, features[s], kernels[s], stride_list[s], conv_bias,
                norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs,
                block=block, bottleneck_channels=bottlenecks[s],
            ))
            input_channels = features[s]
        self.stages = nn.Sequential(*stages)
        self.return_skips = return_skips
        self._remember(conv_op, features, stride_list, kernels, conv_bias, norm_op, norm_op_kwargs,
                       dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)

    def forward(self, x: Tensor) -> list[Tensor] | Tensor:
        x = self.stem(x)
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips if self.return_skips else skips[-1]


class UNetDecoder(nn.Module):
    """U-Net decoder over an encoder's skips; ``stages[0]`` works at the lowest resolution.

    Per decoder stage s: ``transpconvs[s]`` upsamples by the encoder stride of the stage below,
    the result is concatenated with the matching skip, ``stages[s]`` merges them and ``seg_layers[s]``
    (1x1 conv) predicts ``num_classes`` logits. The encoder is kept as ``self.encoder`` (a state_dict alias,
    as in DNA).

    Forward returns the full-resolution logits (N, num_classes, *spatial), or with ``deep_supervision`` a
    list of logits from full resolution down (the order nnU-Net's loss expects). nnU-Net toggles it through
    ``network.decoder.deep_supervision``.
    """

    def __init__(self, encoder: _EncoderBase, num_classes: int, n_conv_per_stage: int | Sequence[int],
                 deep_supervision: bool, nonlin_first: bool = False) -> None:
        super().__init__()
        self.deep_supervision = deep_supervision
        self.encoder = encoder
        self.num_classes = num_classes
        n_enc = len(encoder.output_channels)
        n_convs = per_stage(n_conv_per_stage, n_enc - 1, "n_conv_per_stage_decoder")
        transp = transposed_op(encoder.conv_op)
        stages, transpconvs, seg_layers = [], [], []
        for s in range(1, n_enc):
            below, skip = encoder.output_channels[-s], encoder.output_channels[-(s + 1)]
            stride = encoder.strides[-s]
            transpconvs.append(transp(below, skip, stride, stride, bias=encoder.conv_bias))
            stages.append(StackedConvBlocks(
                n_convs[s - 1], encoder.conv_op, 2 * skip, skip, encoder.kernel_sizes[-(s + 1)], 1,
                encoder.conv_bias, encoder.norm_op, encoder.norm_op_kwargs, encoder.dropout_op,
                encoder.dropout_op_kwargs, encoder.nonlin, encoder.nonlin_kwargs, nonlin_first,
            ))
            seg_layers.append(encoder.conv_op(skip, num_classes, 1, 1, 0, bias=True))
        self.stages = nn.ModuleList(stages)
        self.transpconvs = nn.ModuleList(transpconvs)
        self.seg_layers = nn.ModuleList(seg_layers)

    def forward(self, skips: list[Tensor]) -> Tensor | list[Tensor]:
        x = skips[-1]
        outputs = []
        last = len(self.stages) - 1
        for s, (up, merge) in enumerate(zip(self.transpconvs, self.stages)):
            x = merge(torch.cat((up(x), skips[-(s + 2)]), 1))
            if self.deep_supervision:
                outputs.append(self.seg_layers[s](x))
            elif s == last:
                outputs.append(self.seg_layers[-1](x))
        outputs.reverse()
        return outputs if self.deep_supervision else outputs[0]


def he_init(module: nn.Module, neg_slope: float = 1e-2) -> None:
    """nnU-Net's default init: Kaiming normal (LeakyReLU slope 0.01) for (transposed) convs, zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=neg_slope)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def zero_last_norm(module: nn.Module) -> None:
    """Residual blocks start as identity: the norm before the addition gets weight 0 and bias 0."""
    if isinstance(module, (BasicBlockD, BottleneckD)):
        norm = module.last_norm()
        if norm is not None and getattr(norm, "weight", None) is not None:
            nn.init.zeros_(norm.weight)
            nn.init.zeros_(norm.bias)
