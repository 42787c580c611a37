"""2D ImageNet ResNets from timm, inflated to 3D (I3D, Carreira & Zisserman 2017) in the Med3D layout.

The natural-image baseline of 3D transfer learning. The weights are timm's default ImageNet-1k tags (ResNet
strikes back, recipe A1), read from timm's Hub repos (``config.json`` + ``model.safetensors``, e.g.
https://huggingface.co/timm/resnet50.a1_in1k; docs/upstream-checkpoints.md section 6) and converted by
:mod:`zoo.convert.inflate2d`: every 2D kernel repeated along z and divided by its size, RGB stem summed to one
grey channel, ImageNet ``fc`` dropped.

The network is :class:`zoo.archs.med3d_resnet.Med3DResNet` with shortcut B (timm has 1x1 downsample convs)
and ``dilated=False``: layer3/4 with stride 2, as the 2D networks were trained (output stride 32), so that
a volume constant along z reproduces timm's 2D features exactly away from the z borders.
``zoo.load(name, dilated=True)`` gives MedicalNet's dilated layout (output stride 8) with the same weights.
"""

from ..entry import CheckpointSource, InputContract, License, ModelEntry, Paper, Pretraining
from .med3d import resnet_features

I3D_PAPER = Paper(
    title="Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset",
    url="https://arxiv.org/abs/1705.07750",
    bibtex="""@inproceedings{carreira2017quovadis,
  title     = {Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset},
  author    = {Carreira, Jo{\\~a}o and Zisserman, Andrew},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2017}
}
@article{wightman2021rsb,
  title   = {ResNet strikes back: An improved training procedure in timm},
  author  = {Wightman, Ross and Touvron, Hugo and J{\\'e}gou, Herv{\\'e}},
  journal = {arXiv preprint arXiv:2110.00476},
  year    = {2021}
}""",
)

TIMM_IMAGENET = License(
    spdx="apache-2.0",
    notice=(
        "timm's ImageNet weights are released under Apache-2.0. They were trained on ImageNet-1k, whose terms of "
        "access allow non-commercial research and educational use of the images only; whether those terms "
        "extend to trained weights is unsettled, so check before commercial use. Not for diagnostic use."
    ),
)

_INPUT = InputContract(
    in_channels=1,
    modality="CT+MR",
    axis_order="zyx",
    intensity=(
        "no medical normalisation was learned: the 2D weights saw RGB photographs normalised with ImageNet "
        "mean/std, which does not apply to CT or MR. Suggested: per-volume z-score (CT: clip to a window "
        "first), giving roughly zero-mean unit-variance inputs as after ImageNet normalisation"
    ),
    patch_size=(1, 224, 224),
    spacing_mm=None,
    channel_names=("image",),
    divisible_by=32,
)

_UNPINNED = (
    "unpinned: the Hub commit and the file's sha256 were not recorded when this entry was written (no network "
    "access), so `main` is downloaded and checked against the Hub's LFS sha256; pin both after a first download"
)

#: depth -> (timm tag, parameters of the inflated backbone in millions)
_DEPTHS = {18: ("a1_in1k", 33.16), 50: ("a1_in1k", 46.16)}


def _entry(depth: int) -> ModelEntry:
    tag, params = _DEPTHS[depth]
    repo = f"timm/resnet{depth}.{tag}"
    return ModelEntry(
        name=f"i3d-resnet{depth}-imagenet",
        architecture="med3d_resnet",
        arch_kwargs={"depth": depth, "shortcut_type": "B", "dilated": False},
        description=(
            f"timm's 2D ImageNet-1k ResNet-{depth} (`{repo}`, ResNet strikes back A1 recipe) inflated to 3D "
            f"I3D-style in the MedicalNet ResNet layout ({params:.2f}M parameters): 2D kernels k x k repeated "
            "along z and divided by k (k x k x k), RGB stem summed to one grey channel, ImageNet classifier "
            "dropped. Classic non-dilated layout (layer3/4 stride 2, output stride 32, as the 2D network was "
            "trained; `dilated=True` gives MedicalNet's output stride 8). A volume constant along z gives the "
            "2D network's features of that slice. The natural-image baseline for 3D transfer."
        ),
        source=CheckpointSource(
            repo_id=repo,
            filename="model.safetensors",
            format="timm",
            revision=None,
            sha256=None,
            size=None,
            revision_note=_UNPINNED,
        ),
        license=TIMM_IMAGENET,
        input=_INPUT,
        pretraining=Pretraining(
            data="ImageNet-1k (ILSVRC 2012): 1.28M natural RGB photographs, 1000 classes; 2D, 224 x 224 crops",
            method=(
                "supervised 2D classification with timm's ResNet strikes back A1 recipe (Wightman, Touvron, "
                "Jegou 2021, arXiv:2110.00476: 600 epochs, LAMB, binary cross-entropy); then I3D inflation "
                "to 3D by medzoo (Carreira & Zisserman 2017), with no 3D or medical training"
            ),
            datasets=("imagenet-1k",),
            recipe="",
        ),
        paper=I3D_PAPER,
        first_conv=("conv1.weight",),
        classifier=("fc", "conv_seg"),
        num_classes=None,
        tags=("supervised", "resnet", "backbone", "imagenet", "i3d", "2d-to-3d", "ct", "mr"),
        weights_note=(
            "The features come from 2D natural images: nothing was learned along z (every z slice of a "
            "kernel is the same) and nothing from CT or MR intensities; fine-tune before use."
        ),
        output=resnet_features(depth, 32, "classic layer3/4 with stride 2; dilated=True gives 8"),
    )


ENTRIES: tuple[ModelEntry, ...] = tuple(_entry(depth) for depth in _DEPTHS)
