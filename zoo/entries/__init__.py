"""Registry entries, one module per model family. Importing this package registers all of them.

| module       | entries                                                              |
|--------------|----------------------------------------------------------------------|
| ``genesis``  | ``genesis-chest-ct``, ``genesis-chest-ct-nnunet-lung``               |
| ``med3d``    | ``med3d-resnet{10,18,34,50,101,152,200}``, ``med3d-resnet{10,18,34,50}-23datasets`` |
| ``suprem``   | ``suprem-unet``                                                      |
| ``demo``     | ``genesis-ct-demo`` (weights shipped in ``zoo/assets/``)              |
| ``unetpp``   | ``unetpp-liver`` (UNet++ in nnU-Net; no published weights)            |
| ``ssl3d``    | ``ssl3d-{rotation,jigsaw,rpl,cpc,exemplar}`` (Taleb et al.; no published weights) |
| ``i3d``      | ``i3d-resnet{18,50}-imagenet`` (timm's 2D ImageNet ResNets inflated to 3D) |
"""

from . import demo, genesis, i3d, med3d, ssl3d, suprem, unetpp  # noqa: F401
