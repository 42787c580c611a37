"""Network architectures, built by name from registry ``arch_kwargs``.

Every builder takes keyword arguments only and accepts ``in_channels`` and ``num_classes``; the
remaining arguments come from the registry entry (or an nnU-Net plan). Modules are imported on demand so
that ``import zoo`` does not pay for architectures it does not use.

| name                    | class                                           | upstream layout                  |
|-------------------------|-------------------------------------------------|----------------------------------|
| ``genesis_unet3d``      | :class:`zoo.archs.genesis_unet3d.UNet3D`        | Models Genesis ``pytorch/unet3d``|
| ``med3d_resnet``        | :class:`zoo.archs.med3d_resnet.Med3DResNet`     | Tencent/MedicalNet ResNet 10-200 |
| ``plain_conv_unet``     | :class:`zoo.archs.nnunet_unet.PlainConvUNet`    | dynamic-network-architectures    |
| ``residual_encoder_unet``| :class:`zoo.archs.nnunet_unet.ResidualEncoderUNet` | dynamic-network-architectures |
| ``nested_unet``         | :class:`zoo.archs.nested_unet.NestedUNet`       | UNet++ on PlainConvUNet's encoder |
| ``ssl3d_unet_encoder``  | :class:`zoo.archs.ssl3d_encoder.TalebUNetEncoder` | Taleb et al. 3D U-Net encoder  |
| ``nnunet_encoder``      | :class:`zoo.archs.ssl3d_encoder.NNUNetEncoder`  | encoder of any nnU-Net v2 plan   |
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

#: architecture name -> "module:callable"; the callable takes keyword arguments and returns an nn.Module
ARCHITECTURES: dict[str, str] = {
    "genesis_unet3d": "zoo.archs.genesis_unet3d:build_unet3d",
    "med3d_resnet": "zoo.archs.med3d_resnet:build_med3d_resnet",
    "plain_conv_unet": "zoo.archs.nnunet_unet:build_plain_conv_unet",
    "residual_encoder_unet": "zoo.archs.nnunet_unet:build_residual_encoder_unet",
    "nested_unet": "zoo.archs.nested_unet:build_nested_unet",
    "ssl3d_unet_encoder": "zoo.archs.ssl3d_encoder:build_ssl3d_unet_encoder",
    "nnunet_encoder": "zoo.archs.ssl3d_encoder:build_nnunet_encoder",
}


def get_builder(name: str) -> Callable[..., nn.Module]:
    """The builder of architecture ``name``: only the modules of the fixed table :data:`ARCHITECTURES` are
    imported, whatever ``name`` is (a name read from a file selects a row of the table, nothing else).

    Raises:
        ArchitectureSpecError: (a ``ValueError``) for a name outside the table.
    """
    target = ARCHITECTURES.get(name) if isinstance(name, str) else None
    if target is None:
        from .limits import ArchitectureSpecError
        from .ops import shown

        raise ArchitectureSpecError("architecture", f"unknown architecture {shown(name)}; known: "
                                                    f"{', '.join(sorted(ARCHITECTURES))}")
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


def build_architecture(name: str, **kwargs: Any) -> nn.Module:
    """Build architecture ``name`` with ``kwargs`` (must include whatever the builder requires).

    The spec is checked first by arithmetic (:func:`zoo.archs.size_estimate.check_architecture`): class names
    only from the table of :mod:`zoo.archs.ops`, and the size limits of :mod:`zoo.archs.limits`, so nothing is
    allocated for a spec that would be refused.

    Raises:
        ArchitectureSpecError: (a ``ValueError``) naming the offending key, its value and the rule or limit.
    """
    from .size_estimate import check_architecture

    builder = get_builder(name)
    check_architecture(name, kwargs)
    return builder(**kwargs)


def on_meta_device(module: nn.Module) -> bool:
    """True when ``module`` was built under ``torch.device('meta')`` (weights will be assigned, not drawn).

    Builders skip their weight initialisation then: random init on the meta device is pure overhead (and
    kaiming_normal_ there costs about 0.8 s on first use through torch's reference decompositions).
    """
    first = next(iter(module.parameters()), None)
    return first is not None and first.is_meta
