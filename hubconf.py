"""torch.hub entry points of medzoo.

    model = torch.hub.load("<org>/medzoo", "med3d_resnet50", in_channels=4)
    model = torch.hub.load("<org>/medzoo", "load", "suprem-unet")
    model = torch.hub.load("/path/to/medzoo", "genesis_nnunet", source="local", pretrained=False)

Every entry point takes the arguments of ``zoo.load`` (``pretrained``, ``in_channels``, ``num_classes``,
``checkpoint``, ``cache_dir`` ...). Helpers are imported under ``_`` names so that they are not entry points.
"""

dependencies = ["torch", "huggingface_hub", "safetensors", "numpy", "einops"]

from zoo import load as _load  # noqa: E402


def load(name: str, pretrained: bool = True, **kwargs):
    """Any registry model by name, e.g. ``torch.hub.load(repo, 'load', 'med3d-resnet34-23datasets')``.
    ``zoo list`` (or ``zoo.list_models()``) shows the names."""
    return _load(name, pretrained=pretrained, **kwargs)


def genesis_chest_ct(pretrained: bool = True, **kwargs):
    """Models Genesis Chest CT UNet3D (19.1M params), self-supervised on LUNA16 chest CT.
    Input (N, 1, X, Y, Z) HU clipped to [-1000, 1000] and scaled to [0, 1]; spatial dims divisible by 8.
    Licence: non-commercial research only (ASU)."""
    return _load("genesis-chest-ct", pretrained=pretrained, **kwargs)


def genesis_nnunet(pretrained: bool = True, **kwargs):
    """Models Genesis pretrained nnU-Net (Task006 Lung 3d_fullres plan) as an nnU-Net v2 PlainConvUNet.
    Fit it to your own nnU-Net plan with ``zoo export-nnunet``. Licence: non-commercial research only (ASU)."""
    return _load("genesis-chest-ct-nnunet-lung", pretrained=pretrained, **kwargs)


def _med3d(depth: int):
    def entry(pretrained: bool = True, **kwargs):
        return _load(f"med3d-resnet{depth}", pretrained=pretrained, **kwargs)

    entry.__name__ = f"med3d_resnet{depth}"
    entry.__doc__ = (
        f"MedicalNet (Med3D) 3D ResNet-{depth} backbone, supervised multi-domain pretraining on 3DSeg-8 (MIT). "
        "Input (N, C, D, H, W); output stride 8. Pass num_classes=K for a classification head, "
        "head='segmentation' for the MedicalNet decoder, in_channels=C for C-channel inputs."
    )
    return entry


med3d_resnet10 = _med3d(10)
med3d_resnet18 = _med3d(18)
med3d_resnet34 = _med3d(34)
med3d_resnet50 = _med3d(50)
med3d_resnet101 = _med3d(101)
med3d_resnet152 = _med3d(152)
med3d_resnet200 = _med3d(200)


def i3d_resnet18_imagenet(pretrained: bool = True, **kwargs):
    """timm's 2D ImageNet ResNet-18 inflated I3D-style to a 3D ResNet (Med3D layout, output stride 32): the
    natural-image baseline. Input (N, 1, D, H, W), z-scored CT/MR. Licence: Apache-2.0 (ImageNet terms apply)."""
    return _load("i3d-resnet18-imagenet", pretrained=pretrained, **kwargs)


def i3d_resnet50_imagenet(pretrained: bool = True, **kwargs):
    """timm's 2D ImageNet ResNet-50 inflated I3D-style to a 3D ResNet (Med3D layout, output stride 32): the
    natural-image baseline. Input (N, 1, D, H, W), z-scored CT/MR. Licence: Apache-2.0 (ImageNet terms apply)."""
    return _load("i3d-resnet50-imagenet", pretrained=pretrained, **kwargs)


def unetpp_liver(pretrained: bool = True, **kwargs):
    """UNet++ (NestedUNet) on the nnU-Net liver plan, 1 CT channel, 3 classes. No supervised liver weights are
    published: ``pretrained=True`` initialises the encoder and the matching decoder from the Models Genesis
    nnU-Net (``init='genesis'``); ``pretrained=False`` gives a random network. Licence: non-commercial (ASU)."""
    if pretrained:
        kwargs.setdefault("init", "genesis")
    return _load("unetpp-liver", pretrained=False, **kwargs)
