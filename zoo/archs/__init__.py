"""Network architectures, built by name from registry ``arch_kwargs``.

Every builder takes keyword arguments only and accepts ``in_channels`` and ``num_classes``; the
remaining arguments come from the registry entry (or an nnU-Net plan). Modules are imported on demand so
that ``import zoo`` does not pay for architectures it does not use.

Each architecture is declared once in :mod:`zoo.archs.declarations` (builder, weight-layout family, task,
nnU-Net class); :data:`ARCHITECTURES` and every other per-architecture set derive from there.
:mod:`zoo.archs.factory` builds by name, :mod:`zoo.archs._common` holds helpers the architecture modules share.
This package only re-exports them.

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

from ._common import on_meta_device
from .declarations import ARCHITECTURES, DECLARATIONS, Architecture
from .factory import build_architecture, get_builder

__all__ = ["ARCHITECTURES", "DECLARATIONS", "Architecture", "build_architecture", "get_builder", "on_meta_device"]
