"""UNet++ (Zhou et al., "UNet++: A Nested U-Net Architecture", DLMIA 2018; TMI 2020) on nnU-Net's blocks,
built from the same plan ``arch_kwargs`` as nnU-Net's PlainConvUNet.

Structure, with ``L = n_stages - 1``:

* ``encoder``: exactly :class:`~zoo.archs.nnunet_blocks.PlainConvEncoder`, so every ``encoder.stages.*`` key
  and shape is the one of PlainConvUNet (and of dynamic-network-architectures' PlainConvUNet); node
  ``X(i, 0)`` is the output of encoder stage ``i``.
* ``decoder.nodes["x{i}_{j}"]`` for ``j >= 1``, ``i + j <= L``: node ``X(i, j)`` = StackedConvBlocks over the
  concatenation ``[up(X(i+1, j-1)), X(i, 0), X(i, 1), ..., X(i, j-1)]`` (dense skips), ``(j + 1) * F_i`` input
  channels, ``F_i`` output channels, the kernel of stage ``i`` and ``n_conv_per_stage_decoder`` of that
  resolution; ``up`` is ``decoder.transpconvs["x{i}_{j}"]`` (transposed conv, kernel = stride of stage
  ``i + 1``). The first two slots, ``[up, skip]``, are PlainConvUNet's decoder input in its order.
* The diagonal nodes ``X(i, L - i)`` form PlainConvUNet's decoder path (bottleneck up to ``X(0, L)``):
  with the extra dense-skip input channels at zero they compute exactly what PlainConvUNet's decoder stage of
  that resolution computes; :mod:`zoo.adapt` transfers a PlainConvUNet checkpoint that way.
* Segmentation heads (1x1 convs, bias) ``decoder.seg_layers["x{i}_{j}"]`` on the top-row nodes ``X(0, 1..L)``
  and on the diagonal nodes ``X(1..L-1, L-i)``. All keys contain ``.seg_layers.``, so nnU-Net's
  ``load_pretrained_weights`` treats every one of them as a task head.

Outputs (input ``(N, C, *patch)``, spatial axes in the plan's order; each size divisible by the product of
the strides along that axis):

* ``deep_supervision`` off: ``(N, num_classes, *patch)`` logits of ``X(0, L)``, or of ``X(0, branch)`` when
  ``branch`` is set (pruned inference: only encoder stages ``0..branch`` and nodes with ``i + j <= branch``
  run);
* ``deep_supervision`` on, ``deep_supervision_mode="multiscale"`` (default): nnU-Net's contract, the same
  count and shapes as PlainConvUNet's: a list of ``L`` logits, full resolution first, output ``k`` at the
  resolution of encoder stage ``k`` from the diagonal node ``X(k, L - k)``; the stock ``nnUNetTrainer``
  trains it unchanged;
* ``deep_supervision`` on, ``deep_supervision_mode="top_row"``: UNet++'s own deep supervision: a list of
  ``L`` full-resolution logits from ``X(0, L), X(0, L-1), ..., X(0, 1)`` (so each pruned branch has a trained
  head). :class:`zoo.nnunet.trainers.nnUNetTrainerUNetPlusPlus` switches to it and gives nnU-Net's loss
  full-resolution targets for every output.

nnU-Net toggles deep supervision through ``network.decoder.deep_supervision`` (as for PlainConvUNet);
``network.decoder.deep_supervision_mode`` and ``network.branch`` can be changed at any time as well. A plan
whose ``architecture.network_class_name`` is ``"zoo.archs.nested_unet.NestedUNet"`` builds this class in
nnunetv2's ``get_network_from_plans`` (``pydoc.locate`` of the dotted path; medzoo must be importable there).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..options import DEEP_SUPERVISION_MODES, DeepSupervisionMode, check_option  # noqa: F401 (re-exported)
from .nnunet_blocks import (
    PlainConvEncoder,
    StackedConvBlocks,
    he_init,
    per_stage,
    resolve_arch_kwargs,
    transposed_op,
)


#: the dotted class path an nnU-Net plan names in ``architecture.network_class_name``
NNUNET_CLASS_PATH = "zoo.archs.nested_unet.NestedUNet"


def node_name(i: int, j: int) -> str:
    """Module name of node ``X(i, j)`` in ``decoder.nodes`` / ``decoder.transpconvs`` / ``decoder.seg_layers``."""
    return f"x{i}_{j}"


def _stacked_feature_map_size(block: StackedConvBlocks, input_size: Sequence[int]) -> np.int64:
    """DNA's ``StackedConvBlocks.compute_conv_feature_map_size``: each conv's output, channels x voxels (the
    first conv strides, same padding)."""
    size = [v // k for v, k in zip(input_size, block.initial_stride)]
    return np.int64(len(block.convs)) * np.int64(block.output_channels) * np.prod(size, dtype=np.int64)


def _check_branch(branch: Any, depth: int) -> int | None:
    if branch is None:
        return None
    if isinstance(branch, bool) or not isinstance(branch, int) or not 1 <= branch <= depth:
        raise ValueError(f"branch must be None (the whole network) or an integer 1..{depth} (UNet++ sub-network "
                         f"L{depth} ... L1), got {branch!r}")
    return branch


def _check_mode(mode: Any) -> DeepSupervisionMode:
    """The one check of ``deep_supervision_mode``: at construction and in ``forward`` (the attribute may be
    switched at any time)."""
    return check_option("deep_supervision_mode", mode, DeepSupervisionMode)


class NestedUNetDecoder(nn.Module):
    """The nested decoder of UNet++ over a :class:`PlainConvEncoder` (see the module docstring).

    Attributes nnU-Net and users switch: ``deep_supervision`` (bool), ``deep_supervision_mode``
    (``"multiscale"`` / ``"top_row"``), ``branch`` (``None`` or ``1..depth``). The encoder is kept as
    ``self.encoder`` (a state-dict alias, as in DNA's ``UNetDecoder``).
    """

    def __init__(self, encoder: PlainConvEncoder, num_classes: int, n_conv_per_stage: int | Sequence[int],
                 deep_supervision: bool, nonlin_first: bool = False, branch: int | None = None,
                 deep_supervision_mode: DeepSupervisionMode = "multiscale") -> None:
        super().__init__()
        self.encoder = encoder
        self.num_classes = num_classes
        features = list(encoder.output_channels)
        self.depth = depth = len(features) - 1
        if depth < 1:
            raise ValueError("NestedUNet needs n_stages >= 2")
        n_convs = per_stage(n_conv_per_stage, depth, "n_conv_per_stage_decoder")
        transp = transposed_op(encoder.conv_op)
        nodes, transpconvs, seg_layers = {}, {}, {}
        for j in range(1, depth + 1):          # column by column: X(i+1, j-1) exists before X(i, j)
            for i in range(depth - j + 1):
                name = node_name(i, j)
                stride = encoder.strides[i + 1]
                transpconvs[name] = transp(features[i + 1], features[i], stride, stride, bias=encoder.conv_bias)
                nodes[name] = StackedConvBlocks(
                    n_convs[depth - 1 - i], encoder.conv_op, (j + 1) * features[i], features[i],
                    encoder.kernel_sizes[i], 1, encoder.conv_bias, encoder.norm_op, encoder.norm_op_kwargs,
                    encoder.dropout_op, encoder.dropout_op_kwargs, encoder.nonlin, encoder.nonlin_kwargs,
                    nonlin_first,
                )
                if i == 0 or i + j == depth:   # top row (branch outputs) and diagonal (nnU-Net's scales)
                    seg_layers[name] = encoder.conv_op(features[i], num_classes, 1, 1, 0, bias=True)
        self.nodes = nn.ModuleDict(nodes)
        self.transpconvs = nn.ModuleDict(transpconvs)
        self.seg_layers = nn.ModuleDict(seg_layers)
        self.deep_supervision = deep_supervision
        self.deep_supervision_mode = _check_mode(deep_supervision_mode)
        self.branch = _check_branch(branch, depth)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        """The decoder's share of :meth:`NestedUNet.compute_conv_feature_map_size`; ``input_size`` is the
        encoder's input (as in DNA's ``UNetDecoder``)."""
        sizes = [[int(v) for v in input_size]]
        for stride in self.encoder.strides[1:]:
            sizes.append([v // k for v, k in zip(sizes[-1], stride)])
        features = list(self.encoder.output_channels)
        L = self.depth
        total = np.int64(0)
        for j in range(1, L + 1):
            for i in range(L - j + 1):
                voxels = np.prod(sizes[i], dtype=np.int64)
                total += _stacked_feature_map_size(self.nodes[node_name(i, j)], sizes[i])
                total += np.int64(features[i]) * voxels  # transposed conv output
        heads = self.output_nodes() if self.deep_supervision else [(0, L)]
        for i, _ in heads:
            total += np.int64(self.num_classes) * np.prod(sizes[i], dtype=np.int64)
        return total

    # ------------------------------------------------------------------------------------------ structure
    def output_nodes(self) -> list[tuple[int, int]]:
        """The nodes whose logits :meth:`forward` returns under deep supervision, in order."""
        L = self.depth
        if self.deep_supervision_mode == "top_row":
            return [(0, L - k) for k in range(L)]
        return [(k, L - k) for k in range(L)]

    def active_depth(self) -> int:
        """Depth of the sub-network that runs: ``branch`` at inference, the whole network with deep supervision."""
        if self.deep_supervision or self.branch is None:
            return self.depth
        return _check_branch(self.branch, self.depth)

    def forward(self, skips: list[Tensor]) -> Tensor | list[Tensor]:
        depth = self.active_depth()
        if len(skips) < depth + 1:
            raise ValueError(f"the decoder needs {depth + 1} encoder outputs, got {len(skips)}")
        grid: dict[tuple[int, int], Tensor] = {(i, 0): skips[i] for i in range(depth + 1)}
        for j in range(1, depth + 1):
            for i in range(depth - j + 1):
                name = node_name(i, j)
                inputs = [self.transpconvs[name](grid[(i + 1, j - 1)])] + [grid[(i, k)] for k in range(j)]
                grid[(i, j)] = self.nodes[name](torch.cat(inputs, 1))
        if not self.deep_supervision:
            return self.seg_layers[node_name(0, depth)](grid[(0, depth)])
        _check_mode(self.deep_supervision_mode)
        nodes = self.output_nodes()
        outputs = [self.seg_layers[node_name(i, j)](grid[(i, j)]) for i, j in nodes]
        # the heads this mode does not use take part with weight 0, so that every parameter has a gradient
        # (DistributedDataParallel without find_unused_parameters); values are unchanged
        used = {node_name(i, j) for i, j in nodes}
        idle = [p for name, head in self.seg_layers.items() if name not in used for p in head.parameters()]
        if idle and torch.is_grad_enabled():
            outputs[0] = outputs[0] + 0.0 * sum(p.sum() for p in idle)
        return outputs


class NestedUNet(nn.Module):
    """UNet++ with nnU-Net's PlainConvUNet constructor signature (plus ``branch``, ``deep_supervision_mode``).

    The encoder is PlainConvUNet's (identical keys, shapes and outputs for the same weights); see the module
    docstring for the nested decoder, the heads and the outputs.
    """

    key_to_encoder = "encoder.stages"
    key_to_stem = "encoder.stages.0"
    keys_to_in_proj = ("encoder.stages.0.0.convs.0.conv", "encoder.stages.0.0.convs.0.all_modules.0")

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
        branch: int | None = None,
        deep_supervision_mode: DeepSupervisionMode = "multiscale",
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
        self.decoder = NestedUNetDecoder(self.encoder, num_classes, n_conv_per_stage_decoder, deep_supervision,
                                         nonlin_first=nonlin_first, branch=branch,
                                         deep_supervision_mode=deep_supervision_mode)

    @property
    def depth(self) -> int:
        """``L = n_stages - 1``: the number of branches (UNet++ sub-networks L1..L{depth})."""
        return self.decoder.depth

    @property
    def branch(self) -> int | None:
        """Pruned sub-network used at inference (``None``: all of it). Settable."""
        return self.decoder.branch

    @branch.setter
    def branch(self, value: int | None) -> None:
        self.decoder.branch = _check_branch(value, self.decoder.depth)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        depth = self.decoder.active_depth()
        skips = []
        for stage in self.encoder.stages[: depth + 1]:   # a pruned branch needs encoder stages 0..branch only
            x = stage(x)
            skips.append(x)
        return self.decoder(skips)

    def forward_features(self, x: Tensor) -> Tensor:
        """The bottleneck feature map (N, features_per_stage[-1], *patch / prod(strides))."""
        return self.encoder(x)[-1]

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        """nnU-Net's memory estimate (``ExperimentPlanner.static_estimate_VRAM_usage``) for ``input_size`` (the
        patch, spatial axes only), counted as dynamic-network-architectures counts PlainConvUNet's: every conv's
        output (``channels x voxels``) in the encoder and in every node ``X(i, j)``, every transposed conv's output
        and the segmentation outputs (all of :meth:`NestedUNetDecoder.output_nodes` with deep supervision, else
        the last node's). Like DNA's count it leaves out the concatenations (and weights), which nnU-Net's
        reference value absorbs; about 3.2x PlainConvUNet's for nnU-Net's default 3D topologies."""
        return self.encoder_feature_map_size(input_size) + self.decoder.compute_conv_feature_map_size(input_size)

    def encoder_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        """The encoder's share of :meth:`compute_conv_feature_map_size` (DNA's ``PlainConvEncoder`` count)."""
        enc = self.encoder
        if len(input_size) != len(enc.strides[0]):
            raise ValueError(f"input_size must be the {len(enc.strides[0])} spatial sizes (no batch or channel axis), "
                             f"got {list(input_size)}")
        size, total = [int(v) for v in input_size], np.int64(0)
        for s, stage in enumerate(enc.stages):
            total += _stacked_feature_map_size(stage[-1], size)
            size = [v // k for v, k in zip(size, enc.strides[s])]
        return total

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """nnU-Net's init (He normal, LeakyReLU slope 1e-2, zero bias), applied with ``net.apply(net.initialize)``."""
        he_init(module)


def build_nested_unet(*, in_channels: int, num_classes: int, deep_supervision: bool = False,
                      branch: int | None = None, **plan_arch_kwargs: Any) -> NestedUNet:
    """A :class:`NestedUNet` from a plan's ``arch_kwargs`` (class paths as strings are fine), He-initialised
    (skipped on the meta device)."""
    from .nnunet_unet import _build

    if branch is not None:
        plan_arch_kwargs["branch"] = branch
    return _build(NestedUNet, in_channels, num_classes, deep_supervision, plan_arch_kwargs)


__all__ = ["DEEP_SUPERVISION_MODES", "NNUNET_CLASS_PATH", "NestedUNet", "NestedUNetDecoder", "build_nested_unet",
           "node_name"]
