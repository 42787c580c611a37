"""UNet++ (Zhou et al.) inside nnU-Net v2: ``unetpp-liver``, the nested U-Net on the MSD Liver 3d_fullres plan.

No supervised UNet++ liver checkpoint is public. The entry gives the architecture (``pretrained=False``), an
initialisation from the Models Genesis nnU-Net (``zoo.load("unetpp-liver", init="genesis")``: encoder and the
U-Net path of the nested decoder) and, in ``export/unetpp/README.md``, the nnU-Net recipe that trains the
supervised checkpoint so that it can be published later.
"""

from ..entry import InputContract, License, ModelEntry, OutputContract, Paper, Pretraining
from .genesis import LUNG_PLAN_ARCH_KWARGS

#: the nnU-Net v2 3d_fullres plan of MSD Task03 Liver (patch 128^3, five [2,2,2] pools), as NestedUNet kwargs
LIVER_PLAN_ARCH_KWARGS = {
    **LUNG_PLAN_ARCH_KWARGS,
    "n_stages": 6,
    "features_per_stage": [32, 64, 128, 256, 320, 320],
    "kernel_sizes": [[3, 3, 3]] * 6,
    "strides": [[1, 1, 1]] + [[2, 2, 2]] * 5,
    "n_conv_per_stage": [2] * 6,
    "n_conv_per_stage_decoder": [2] * 5,
}

UNETPP_PAPER = Paper(
    title="UNet++: Redesigning Skip Connections to Exploit Multiscale Features in Image Segmentation (IEEE TMI 2020; "
          "DLMIA 2018)",
    url="https://arxiv.org/abs/1912.05074",
    bibtex="""@article{zhou2020unetplusplus,
  title   = {UNet++: Redesigning Skip Connections to Exploit Multiscale Features in Image Segmentation},
  author  = {Zhou, Zongwei and Rahman Siddiquee, Md Mahfuzur and Tajbakhsh, Nima and Liang, Jianming},
  journal = {IEEE Transactions on Medical Imaging},
  volume  = {39},
  number  = {6},
  pages   = {1856--1867},
  year    = {2020}
}
@inproceedings{zhou2018unetplusplus,
  title     = {UNet++: A Nested U-Net Architecture for Medical Image Segmentation},
  author    = {Zhou, Zongwei and Rahman Siddiquee, Md Mahfuzur and Tajbakhsh, Nima and Liang, Jianming},
  booktitle = {Deep Learning in Medical Image Analysis and Multimodal Learning for Clinical Decision Support (DLMIA)},
  pages     = {3--11},
  year      = {2018}
}
@mastersthesis{bajpai2021pretrained,
  title  = {Pre-trained Models for nnUNet},
  author = {Bajpai, Shivam},
  school = {Arizona State University},
  year   = {2021}
}""",
)

#: weights made from this entry start from Models Genesis (init='genesis', and the export/unetpp recipe)
UNETPP_GENESIS_LICENSE = License(
    spdx="other",
    name="ASU non-commercial research licence (Models Genesis), inherited through init='genesis'",
    link="https://github.com/MrGiovanni/ModelsGenesis/blob/master/LICENSE",
    redistributable=False,
    commercial_use=False,
    notice=(
        "unetpp-liver has no published weights. Weights initialised with init='genesis' (and the supervised "
        "checkpoint of export/unetpp, which starts from them) derive from the Models Genesis weights: academic and "
        "non-commercial research only (Arizona Board of Regents). The MSD Liver training data are CC BY-SA 4.0. "
        "Not for diagnostic use."
    ),
)

UNETPP_LIVER_WEIGHTS_NOTE = (
    "No supervised UNet++ liver checkpoint exists publicly. `zoo.load('unetpp-liver', init='genesis')` initialises "
    "the encoder and the matching decoder (the U-Net path of the nested decoder) from "
    "`genesis-chest-ct-nnunet-lung`; `export/unetpp/README.md` holds the nnU-Net recipe that trains the supervised "
    "checkpoint on MSD Task03 Liver."
)

UNETPP_LIVER = ModelEntry(
    name="unetpp-liver",
    architecture="nested_unet",
    arch_kwargs=LIVER_PLAN_ARCH_KWARGS,
    description=(
        "UNet++ (nested U-Net with dense skip pathways and deep supervision on every top-row node) on the "
        "nnU-Net v2 3d_fullres plan of MSD Task03 Liver: PlainConvUNet's encoder (6 stages, 32-320 features, "
        "3x3x3 kernels), 15 nested decoder nodes, 3 classes (background, liver, tumour). Trains inside nnU-Net "
        "unchanged (network_class_name zoo.archs.nested_unet.NestedUNet); its sub-networks can be pruned at "
        "inference (branch=1..5). Replacing nnU-Net's U-Net by UNet++ raised liver tumour Dice from 63.4 to "
        "66.3 (Bajpai 2021)."
    ),
    source=None,
    license=UNETPP_GENESIS_LICENSE,
    input=InputContract(
        in_channels=1,
        modality="CT",
        axis_order="zyx",
        intensity=(
            "nnU-Net CTNormalization: HU clipped to the Liver data set's foreground 0.5/99.5 percentiles, then "
            "z-scored with its foreground mean and std (nnUNetv2_plan_and_preprocess computes them)"
        ),
        patch_size=(128, 128, 128),
        spacing_mm=(1.0, 0.77, 0.77),
        channel_names=("CT",),
        divisible_by=32,
    ),
    pretraining=Pretraining(
        data="none yet; the recipe trains on MSD Task03 Liver (131 CT volumes with liver and tumour labels)",
        method=(
            "supervised segmentation in nnU-Net v2 with nnUNetTrainerUNetPlusPlus (UNet++ deep supervision: a "
            "full-resolution Dice + cross-entropy loss on every top-row node, equal weights), initialised from "
            "genesis-chest-ct-nnunet-lung"
        ),
        datasets=("MSD-Task03-Liver",),
        recipe="export/unetpp/README.md",
    ),
    paper=UNETPP_PAPER,
    first_conv=("encoder.stages.0.0.convs.0.conv.weight",),
    classifier=("decoder.seg_layers",),
    num_classes=3,
    tags=("unetpp", "nnunet", "ct", "liver", "supervised"),
    weights_note=UNETPP_LIVER_WEIGHTS_NOTE,
    base_model="genesis-chest-ct-nnunet-lung",
    output=OutputContract(
        kind="logits",
        activation="softmax",
        channels=3,
        target="3 classes: background, liver, tumour (argmax over channels gives the label map)",
        scale=None,
        resolution="input size (deep_supervision=True: a list of logits, see zoo.archs.nested_unet)",
    ),
)

ENTRIES: tuple[ModelEntry, ...] = (UNETPP_LIVER,)
