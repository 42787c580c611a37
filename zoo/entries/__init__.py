"""Registry entries as data, one module per model family, each with a module-level ``ENTRIES`` tuple of
:class:`zoo.entry.ModelEntry`; :data:`ENTRIES` collects them. Nothing here registers anything:
:mod:`zoo.registry` builds its table from :data:`ENTRIES` on first use.

| module       | entries                                                              |
|--------------|----------------------------------------------------------------------|
| ``genesis``  | ``genesis-chest-ct``, ``genesis-chest-ct-nnunet-lung``               |
| ``med3d``    | ``med3d-resnet{10,18,34,50,101,152,200}``, ``med3d-resnet{10,18,34,50}-23datasets`` |
| ``suprem``   | ``suprem-unet``, ``suprem-segresnet``, ``suprem-swinunetr`` (MONAI networks) |
| ``demo``     | ``genesis-ct-demo`` (weights shipped in ``zoo/assets/``)              |
| ``unetpp``   | ``unetpp-liver`` (UNet++ in nnU-Net; no published weights)            |
| ``ssl3d``    | ``ssl3d-{rotation,jigsaw,rpl,cpc,exemplar}`` (Taleb et al.; no published weights) |
| ``i3d``      | ``i3d-resnet{18,50}-imagenet`` (timm's 2D ImageNet ResNets inflated to 3D) |
| ``openmind`` | ``openmind-resencl-{mae,vf,voco,simclr,swinunetr}``, ``openmind-resencl-mae-dkfz`` (nnssl) |
| ``stunet``   | ``stunet-{small,base,large,huge}``                                   |
| ``voco``     | ``voco-omni-nnunet``, ``voco-b-ssl``                                 |
| ``monai_bundles`` | ``monai-wholebody-ct``                                          |

``_nnunet_kwargs`` holds the plan ``arch_kwargs`` shared by the nnU-Net U-Net entries.
"""

from ..entry import ModelEntry
from . import demo, genesis, i3d, med3d, monai_bundles, openmind, ssl3d, stunet, suprem, unetpp, voco

#: every family's entries, in registration order
ENTRIES: tuple[ModelEntry, ...] = (
    *genesis.ENTRIES,
    *demo.ENTRIES,
    *i3d.ENTRIES,
    *med3d.ENTRIES,
    *ssl3d.ENTRIES,
    *suprem.ENTRIES,
    *unetpp.ENTRIES,
    *openmind.ENTRIES,
    *stunet.ENTRIES,
    *voco.ENTRIES,
    *monai_bundles.ENTRIES,
)

#: family module name -> the names of its entries
FAMILY_NAMES: dict[str, tuple[str, ...]] = {
    module.__name__.rpartition(".")[2]: tuple(entry.name for entry in module.ENTRIES)
    for module in (genesis, demo, i3d, med3d, ssl3d, suprem, unetpp, openmind, stunet, voco, monai_bundles)
}

__all__ = ["ENTRIES", "FAMILY_NAMES"]
