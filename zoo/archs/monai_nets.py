"""MONAI's own SegResNet and SwinUNETR, built from checked arguments, usable by nnU-Net v2 through a plan.

The networks are MONAI's classes (``monai.networks.nets.SegResNet`` / ``SwinUNETR``), subclassed only to add
what medzoo and nnU-Net need, never to change MONAI's layers or state-dict keys:

* ``num_classes=None`` gives the head-less backbone of a checkpoint whose head is not part of the weights: the
  SegResNet's last 1x1 convolution (``conv_final.2``) or the SwinUNETR's ``out`` block becomes ``nn.Identity``,
  so the output is the last decoder feature map (SegResNet: GroupNorm + ReLU applied, ``init_filters`` channels;
  SwinUNETR: ``feature_size`` channels), at the input resolution.
* nnU-Net v2's constructor convention (``input_channels``, ``num_classes``, ``deep_supervision`` plus the plan's
  ``arch_kwargs``; nnUNetv2 ``utilities/get_network_from_plans.py``), a ``strides`` argument that must equal the
  network's fixed downsampling (nnU-Net derives its deep-supervision scales from it), and a
  ``decoder.deep_supervision`` switch the trainer toggles (``nnUNetTrainer.set_deep_supervision_enabled``).
  The nnU-Net class (``seg_layers=True``, its default) with a class count has 1x1 deep-supervision heads
  ``decoder.seg_layers.*`` on the coarser decoder levels; medzoo's builders make them only with
  ``deep_supervision=True``, so that ``zoo.load`` gives MONAI's exact key set (the heads' keys contain
  ``.seg_layers.``, which nnU-Net's ``load_pretrained_weights`` skips, as for its own U-Nets); with deep supervision on, ``forward`` returns ``[full, 1/2, 1/4, ...]`` resolution logits like
  nnU-Net's U-Nets, otherwise the full-resolution logits only.

MONAI is an optional extra (``pip install "medzoo[monai]"``): it is imported when such a network is built (or
its class is looked up, as nnU-Net does with ``pydoc.locate``), never by ``import zoo``.

SuPreM's Swin UNETR (MrGiovanni/SuPreM ``supervised_pretraining/backbone/swinunetr.py``) is a copy of an early
MONAI SwinUNETR whose patch merging concatenates the 2x2x2 neighbours in another order (with two of them
repeated) than MONAI 1.6's ``PatchMerging``; same keys and shapes, other outputs. ``downsample="merging-suprem"``
selects :data:`SUPREM_MERGE_OFFSETS`, the order of the authors' code, so the pretrained weights compute what
they were trained to compute. Shapes: inputs ``(N, C, D, H, W)`` (axis order as the entry's input contract),
each spatial size divisible by 8 (SegResNet with 4 levels) or 32 (SwinUNETR).
"""

from __future__ import annotations

import importlib
import inspect
from functools import lru_cache
from typing import Any, Literal, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..io.readers import MissingDependencyError

#: how to install MONAI for medzoo
MONAI_EXTRA = 'pip install "medzoo[monai]"'

#: ``downsample`` choices of :func:`build_monai_swinunetr`: MONAI's ``"merging"`` / ``"mergingv2"``, or the
#: merging order of SuPreM's SwinUNETR copy (:data:`SUPREM_MERGE_OFFSETS`)
SwinDownsample = Literal["merging", "mergingv2", "merging-suprem"]

#: the (d, h, w) offsets of the eight 2x2x2 neighbours, in the order SuPreM's ``PatchMerging.forward``
#: concatenates them (``x0`` .. ``x7`` of MrGiovanni/SuPreM ``supervised_pretraining/backbone/swinunetr.py``;
#: (0, 1, 0) and (0, 0, 1) appear twice, (1, 1, 0) and (0, 1, 1) not at all)
SUPREM_MERGE_OFFSETS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 0), (0, 0, 1), (1, 1, 1),
)


def require_monai(purpose: str = "this network") -> Any:
    """``monai.networks.nets``, or :class:`~zoo.io.readers.MissingDependencyError` naming the extra."""
    try:
        return importlib.import_module("monai.networks.nets")
    except ImportError as exc:
        raise MissingDependencyError(f"{purpose} is MONAI's class and needs the optional package 'monai', which is "
                                     f"not installed: {MONAI_EXTRA}") from exc


def _check_strides(strides: Any, n_stages: int, name: str) -> None:
    """``strides`` (nnU-Net plan) must be stride 1, then 2 on every axis for each of the ``n_stages - 1`` levels."""
    if strides is None:
        return
    want = [[1, 1, 1]] + [[2, 2, 2]] * (n_stages - 1)
    got = [[s] * 3 if isinstance(s, int) else list(s) for s in strides] if isinstance(strides, (list, tuple)) else None
    if got != want:
        raise ValueError(f"{name}: strides must be {want} (the network's fixed downsampling, one entry per level), "
                         f"got {strides!r}; rewrite the plan with `zoo plan` for this network")


class _DeepSupervision(nn.Module):
    """``decoder`` of the nnU-Net view: the switch nnU-Net's trainer sets and the coarser-level heads."""

    def __init__(self, widths: Sequence[int], num_classes: int | None, deep_supervision: bool, heads: bool) -> None:
        super().__init__()
        self.deep_supervision = deep_supervision
        self.seg_layers = nn.ModuleList(
            [nn.Conv3d(w, num_classes, 1, bias=True) for w in widths] if num_classes is not None and heads else [])


def _ds_outputs(full: torch.Tensor, decoder: _DeepSupervision, features: list[torch.Tensor]) -> list[torch.Tensor]:
    """``[full, head_0(1/2 features), head_1(1/4 features), ...]``; ``features`` finest first."""
    return [full] + [head(f) for head, f in zip(decoder.seg_layers, features)]


class _ScalarsOnCPU(TorchFunctionMode):
    """Makes ``torch.linspace`` (MONAI's drop-path schedule, read back with ``.item()``) a CPU tensor, also while
    building under ``torch.device('meta')``; every other call passes through unchanged."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        if func is torch.linspace:
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


@lru_cache(maxsize=None)
def _classes() -> dict[str, type]:
    nets = require_monai()
    from monai.networks.nets.swin_unetr import PatchMergingV2

    class SuPreMPatchMerging(PatchMergingV2):
        """MONAI's patch merging (same ``norm`` / ``reduction``), neighbours in :data:`SUPREM_MERGE_OFFSETS` order.
        Input ``(N, D, H, W, C)`` channels-last, output ``(N, ceil(D/2), ceil(H/2), ceil(W/2), 2C)``."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.dim() != 5:
                raise ValueError(f"merging-suprem is 3D only: expected (N, D, H, W, C), got {tuple(x.shape)}")
            d, h, w = x.shape[1:4]
            if d % 2 or h % 2 or w % 2:
                x = nn.functional.pad(x, (0, 0, 0, w % 2, 0, h % 2, 0, d % 2))
            x = torch.cat([x[:, i::2, j::2, k::2, :] for i, j, k in SUPREM_MERGE_OFFSETS], -1)
            return self.reduction(self.norm(x))

    class MonaiSegResNet(nets.SegResNet):
        """MONAI ``SegResNet`` (3D), head-less with ``num_classes=None``, nnU-Net-trainable (module docstring).

        Input ``(N, input_channels, D, H, W)``, each size divisible by ``2 ** (len(blocks_down) - 1)``; output
        ``(N, num_classes, D, H, W)`` logits (or ``init_filters`` feature channels head-less); with deep supervision
        a list ``[full, 1/2, ..., 1/2**(len(blocks_down) - 2)]``.
        """

        def __init__(self, input_channels: int, num_classes: int | None, *, blocks_down: Sequence[int] = (1, 2, 2, 4),
                     blocks_up: Sequence[int] = (1, 1, 1), init_filters: int = 16, dropout_prob: float | None = None,
                     norm_groups: int = 8, deep_supervision: bool = False, strides: Any = None,
                     seg_layers: bool = True) -> None:
            if len(blocks_up) != len(blocks_down) - 1:
                raise ValueError(f"SegResNet: blocks_up needs len(blocks_down) - 1 = {len(blocks_down) - 1} entries, "
                                 f"got {list(blocks_up)}")
            _check_strides(strides, len(blocks_down), "SegResNet")
            super().__init__(spatial_dims=3, init_filters=init_filters, in_channels=input_channels,
                             out_channels=num_classes or 1, dropout_prob=dropout_prob,
                             norm=("GROUP", {"num_groups": norm_groups}), blocks_down=tuple(blocks_down),
                             blocks_up=tuple(blocks_up))
            if num_classes is None:
                self.conv_final[2] = nn.Identity()
            levels = len(blocks_up)
            # decoder levels finest first, without the last (full resolution): init_filters * 2, * 4, ...
            self.decoder = _DeepSupervision([init_filters * 2 ** k for k in range(1, levels)], num_classes,
                                            deep_supervision, seg_layers)
            self._features: list[torch.Tensor] | None = None
            for layer in self.up_layers:
                layer.register_forward_hook(self._keep)

        def _keep(self, module: nn.Module, args: Any, output: torch.Tensor) -> None:
            if self._features is not None:
                self._features.append(output)

        def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:  # type: ignore[override]
            if not (self.decoder.deep_supervision and len(self.decoder.seg_layers)):
                return super().forward(x)
            self._features = []
            try:
                full = super().forward(x)
                coarse_first = self._features[:-1]
            finally:
                self._features = None
            return _ds_outputs(full, self.decoder, coarse_first[::-1])

    class MonaiSwinUNETR(nets.SwinUNETR):
        """MONAI ``SwinUNETR`` (3D), head-less with ``num_classes=None``, nnU-Net-trainable (module docstring).

        Input ``(N, input_channels, D, H, W)``, each size divisible by 32; output ``(N, num_classes, D, H, W)``
        logits (``feature_size`` feature channels head-less); with deep supervision ``[full, 1/2, 1/4, 1/8, 1/16]``.
        """

        def __init__(self, input_channels: int, num_classes: int | None, *, feature_size: int = 48,
                     depths: Sequence[int] = (2, 2, 2, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                     norm_name: str = "instance", drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                     dropout_path_rate: float = 0.0, normalize: bool = True, use_v2: bool = False,
                     downsample: SwinDownsample = "merging", use_checkpoint: bool = False,
                     deep_supervision: bool = False, strides: Any = None, seg_layers: bool = True) -> None:
            _check_strides(strides, 6, "SwinUNETR")
            kwargs: dict[str, Any] = dict(
                in_channels=input_channels, out_channels=num_classes or 1, feature_size=feature_size,
                depths=tuple(depths), num_heads=tuple(num_heads), norm_name=norm_name, drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate, dropout_path_rate=dropout_path_rate, normalize=normalize,
                use_checkpoint=use_checkpoint, spatial_dims=3, use_v2=use_v2,
                downsample=SuPreMPatchMerging if downsample == "merging-suprem" else downsample)
            if "img_size" in inspect.signature(nets.SwinUNETR.__init__).parameters:
                kwargs["img_size"] = (96, 96, 96)  # MONAI < 1.5 requires it; no weight depends on it
            with _ScalarsOnCPU():  # MONAI reads drop-path rates with .item(), impossible on the meta device
                super().__init__(**kwargs)
            if num_classes is None:
                self.out = nn.Identity()
            widths = [feature_size, 2 * feature_size, 4 * feature_size, 8 * feature_size]  # 1/2 .. 1/16
            self.decoder = _DeepSupervision(widths, num_classes, deep_supervision, seg_layers)
            self._features: dict[int, torch.Tensor] | None = None
            for level, block in enumerate((self.decoder2, self.decoder3, self.decoder4, self.decoder5)):
                block.register_forward_hook(self._keeper(level))

        def _keeper(self, level: int) -> Any:
            def keep(module: nn.Module, args: Any, output: torch.Tensor) -> None:
                if self._features is not None:
                    self._features[level] = output
            return keep

        def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:  # type: ignore[override]
            if not (self.decoder.deep_supervision and len(self.decoder.seg_layers)):
                return super().forward(x)
            self._features = {}
            try:
                full = super().forward(x)
                finest_first = [self._features[k] for k in range(4)]
            finally:
                self._features = None
            return _ds_outputs(full, self.decoder, finest_first)

    made = {"MonaiSegResNet": MonaiSegResNet, "MonaiSwinUNETR": MonaiSwinUNETR,
            "SuPreMPatchMerging": SuPreMPatchMerging}
    for name, cls in made.items():  # pickle and pydoc.locate find them through the module's __getattr__
        cls.__qualname__ = name
    return made


def __getattr__(name: str) -> type:
    """The classes are made on first access (they subclass MONAI's): ``zoo.archs.monai_nets.MonaiSegResNet``
    resolves for nnU-Net's ``pydoc.locate`` without importing MONAI at ``import zoo``."""
    if name in ("MonaiSegResNet", "MonaiSwinUNETR", "SuPreMPatchMerging"):
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_monai_segresnet(*, in_channels: int = 1, num_classes: int | None = None,
                          blocks_down: Sequence[int] = (1, 2, 2, 4), blocks_up: Sequence[int] = (1, 1, 1),
                          init_filters: int = 16, dropout_prob: float | None = None, norm_groups: int = 8,
                          deep_supervision: bool = False) -> nn.Module:
    """MONAI ``SegResNet(spatial_dims=3, ...)`` as :class:`MonaiSegResNet` (``num_classes=None``: head-less).
    Works under ``torch.device('meta')``."""
    return _classes()["MonaiSegResNet"](in_channels, num_classes, blocks_down=blocks_down, blocks_up=blocks_up,
                                        init_filters=init_filters, dropout_prob=dropout_prob,
                                        norm_groups=norm_groups, deep_supervision=deep_supervision,
                                        seg_layers=deep_supervision)


def build_monai_swinunetr(*, in_channels: int = 1, num_classes: int | None = None, feature_size: int = 48,
                          depths: Sequence[int] = (2, 2, 2, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                          norm_name: Literal["instance"] = "instance", drop_rate: float = 0.0,
                          attn_drop_rate: float = 0.0, dropout_path_rate: float = 0.0, normalize: bool = True,
                          use_v2: bool = False, downsample: SwinDownsample = "merging",
                          deep_supervision: bool = False) -> nn.Module:
    """MONAI ``SwinUNETR(spatial_dims=3, ...)`` as :class:`MonaiSwinUNETR` (``num_classes=None``: head-less;
    ``use_v2=True``: SwinUNETR-v2; ``downsample="merging-suprem"``: SuPreM's merging order). Works under
    ``torch.device('meta')``."""
    return _classes()["MonaiSwinUNETR"](in_channels, num_classes, feature_size=feature_size, depths=depths,
                                        num_heads=num_heads, norm_name=norm_name, drop_rate=drop_rate,
                                        attn_drop_rate=attn_drop_rate, dropout_path_rate=dropout_path_rate,
                                        normalize=normalize, use_v2=use_v2, downsample=downsample,
                                        deep_supervision=deep_supervision, seg_layers=deep_supervision)


#: architecture name -> (nnU-Net class path, number of resolution levels)
NNUNET_CLASS_PATHS = {"monai_segresnet": "zoo.archs.monai_nets.MonaiSegResNet",
                      "monai_swinunetr": "zoo.archs.monai_nets.MonaiSwinUNETR"}


def nnunet_architecture(architecture: str, arch_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``configurations[C]["architecture"]`` of an nnU-Net v2 plan that trains this MONAI network unchanged:
    ``network_class_name`` (resolved by nnU-Net with ``pydoc.locate``), the builder's ``arch_kwargs`` (minus
    ``deep_supervision``, which nnU-Net passes itself) and ``strides`` (stride 1, then 2 per level: nnU-Net's
    deep-supervision scales). The plan's patch size must be divisible by 8 (SegResNet, 4 levels) or 32."""
    if architecture not in NNUNET_CLASS_PATHS:
        raise ValueError(f"no nnU-Net class for {architecture!r}; known: {sorted(NNUNET_CLASS_PATHS)}")
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in arch_kwargs.items()
              if k not in ("deep_supervision", "in_channels", "num_classes")}
    levels = len(kwargs.get("blocks_down", (1, 2, 2, 4))) if architecture == "monai_segresnet" else 6
    kwargs["strides"] = [[1, 1, 1]] + [[2, 2, 2]] * (levels - 1)
    return {"network_class_name": NNUNET_CLASS_PATHS[architecture], "arch_kwargs": kwargs,
            "_kw_requires_import": []}


__all__ = ["MONAI_EXTRA", "NNUNET_CLASS_PATHS", "nnunet_architecture", "SUPREM_MERGE_OFFSETS", "SwinDownsample", "build_monai_segresnet",
           "build_monai_swinunetr", "require_monai"]
