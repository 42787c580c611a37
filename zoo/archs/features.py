"""``feature_info`` of ``features_only`` models, after timm's convention (without importing timm).

Every architecture that accepts ``features_only=True`` (``med3d_resnet``, ``ssl3d_unet_encoder``,
``nnunet_encoder``) then carries ``model.feature_info``, a :class:`FeatureInfo` with one entry per feature
map that ``forward`` returns, in the same order::

    model = zoo.load("med3d-resnet18", features_only=True)
    model.feature_info.channels()      # [64, 64, 128, 256, 512]
    model.feature_info.reduction()     # [2, 4, 8, 8, 8]
    model.feature_info.module_name()   # ['relu', 'layer1', 'layer2', 'layer3', 'layer4']
    model.feature_info.get_dicts()     # [{'num_chs': 64, 'reduction': 2, 'module': 'relu', ...}, ...]

Each entry is a dict with timm's keys ``num_chs`` (channels), ``reduction`` and ``module`` (the name of the
submodule whose output is that feature map, a key of ``dict(model.named_modules())``), plus
``reduction_per_axis`` and ``index``.

Reduction of 3D maps
    timm's ``reduction`` is one int: the input size over the feature map's size (the output stride). 3D
    networks may stride anisotropically (nnU-Net plans, e.g. strides ``[1, 2, 2]``), so here:

    * ``reduction_per_axis`` (:meth:`FeatureInfo.reduction_per_axis`) is the exact per-axis tuple
      ``(z, y, x)``: the cumulative product of the strides along each spatial axis, so an input of size
      ``S`` (divisible by it) gives a map of size ``S // r`` along that axis;
    * ``reduction`` (:meth:`FeatureInfo.reduction`) is an int, ``max(reduction_per_axis)``: the coarsest
      axis's down-sampling. It equals the per-axis value for isotropic networks (MedicalNet, Taleb et al.),
      never decreases from level to level, and is what timm-style consumers (feature pyramids, ``reduction``
      arithmetic) expect. Use ``reduction_per_axis`` for anisotropic plans.

Differences from timm's ``FeatureInfo``: medzoo's holds only the returned levels (timm's keeps every level
plus ``out_indices``; its ``__len__`` / ``__getitem__`` count all of them); ``idx`` arguments therefore index
the returned levels.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

__all__ = ["FeatureInfo", "cumulative_reductions"]


def cumulative_reductions(strides: Iterable[Sequence[int] | int], dims: int = 3) -> list[tuple[int, ...]]:
    """Per-axis reduction after each stage, from each stage's stride (an int or one int per axis)."""
    out, current = [], (1,) * dims
    for stride in strides:
        per_axis = (int(stride),) * dims if isinstance(stride, int) else tuple(int(s) for s in stride)
        if len(per_axis) != dims:
            raise ValueError(f"stride {stride!r} does not have {dims} axes")
        current = tuple(c * s for c, s in zip(current, per_axis))
        out.append(current)
    return out


class FeatureInfo:
    """Channels, reduction and module of each feature map a ``features_only`` model returns (module docstring).

    Args:
        levels: one dict per returned map with ``num_chs``, ``module`` and ``reduction`` (an int, or one int per
            spatial axis); ``reduction_per_axis`` (optional) overrides the per-axis value.
        dims: number of spatial axes (3 for medzoo's volumes), used to broadcast int reductions.
    """

    def __init__(self, levels: Iterable[dict[str, Any]], dims: int = 3) -> None:
        info = []
        previous = 0
        for i, level in enumerate(levels):
            level = dict(level)
            num_chs, module = int(level["num_chs"]), str(level["module"])
            if num_chs < 1:
                raise ValueError(f"feature level {i}: num_chs must be >= 1, got {num_chs}")
            per_axis = level.get("reduction_per_axis", level["reduction"])
            per_axis = (int(per_axis),) * dims if isinstance(per_axis, int) else tuple(int(r) for r in per_axis)
            if len(per_axis) != dims or min(per_axis) < 1:
                raise ValueError(f"feature level {i}: reduction must be >= 1 per axis ({dims} axes), got {per_axis}")
            reduction = max(per_axis)
            if reduction < previous:
                raise ValueError(f"feature level {i}: reduction {reduction} is below the previous level's {previous}")
            previous = reduction
            level.update(num_chs=num_chs, reduction=reduction, reduction_per_axis=per_axis, module=module)
            level.setdefault("index", i)
            info.append(level)
        if not info:
            raise ValueError("a FeatureInfo needs at least one feature level")
        self.info = info
        self.dims = dims

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        """``key`` of every level (``idx=None``), of level ``idx`` (int) or of the levels in ``idx`` (a list)."""
        if idx is None:
            return [level[key] for level in self.info]
        if isinstance(idx, (list, tuple)):
            return [self.info[i][key] for i in idx]
        return self.info[idx][key]

    def get_dicts(self, keys: Sequence[str] | None = None,
                  idx: int | Sequence[int] | None = None) -> list[dict[str, Any]] | dict[str, Any]:
        """The level dicts (copies), restricted to ``keys`` if given; ``idx`` as in :meth:`get`."""
        def pick(level: dict[str, Any]) -> dict[str, Any]:
            return dict(level) if keys is None else {k: level[k] for k in keys}
        if idx is None:
            return [pick(level) for level in self.info]
        if isinstance(idx, (list, tuple)):
            return [pick(self.info[i]) for i in idx]
        return pick(self.info[idx])

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        """Channels of each feature map."""
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        """Down-sampling of each feature map, an int: the largest over the spatial axes (module docstring)."""
        return self.get("reduction", idx)

    def reduction_per_axis(self, idx: int | Sequence[int] | None = None) -> Any:
        """Down-sampling of each feature map along each spatial axis, ``(z, y, x)``."""
        return self.get("reduction_per_axis", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        """Name of the submodule whose output each feature map is."""
        return self.get("module", idx)

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.info[item]

    def __len__(self) -> int:
        return len(self.info)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo({self.info!r})"
