"""Models Genesis (Zhou et al.): the UNet3D of the paper and the pretrained nnU-Net of Bajpai (2021)."""

from ._nnunet_kwargs import unet_arch_kwargs
from ..entry import CheckpointSource, InputContract, ModelEntry, Normalization, OutputContract, Paper, Pretraining
from ._licenses import ASU_NONCOMMERCIAL

GENESIS_PAPER = Paper(
    title="Models Genesis: Generic Autodidactic Models for 3D Medical Image Analysis (MICCAI 2019; MedIA 2021)",
    url="https://arxiv.org/abs/1908.06912",
    bibtex="""@article{zhou2021models,
  title   = {Models Genesis},
  author  = {Zhou, Zongwei and Sodha, Vatsal and Pang, Jiaxuan and Gotway, Michael B. and Liang, Jianming},
  journal = {Medical Image Analysis},
  volume  = {67},
  pages   = {101840},
  year    = {2021}
}
@inproceedings{zhou2019models,
  title     = {Models Genesis: Generic Autodidactic Models for 3D Medical Image Analysis},
  author    = {Zhou, Zongwei and Sodha, Vatsal and Rahman Siddiquee, Md Mahfuzur and Feng, Ruibin and
               Tajbakhsh, Nima and Gotway, Michael B. and Liang, Jianming},
  booktitle = {Medical Image Computing and Computer Assisted Intervention (MICCAI)},
  pages     = {384--393},
  year      = {2019}
}""",
)

#: the CT z-score of the Models Genesis nnU-Net input, (HU - mean) / std (MrGiovanni/ModelsGenesis
#: competition/Genesis_nnUNet.py; docs/pretraining-recipes.md section 1.4)
GENESIS_NNUNET_CT_MEAN, GENESIS_NNUNET_CT_STD = -775.8457, 251.9326
#: the Models Genesis nnU-Net input: HU in [-1000, 1000] (its cubes are stored as (HU + 1000) / 2000), then the
#: z-score above
GENESIS_NNUNET_NORMALIZATION = Normalization(
    scheme="ct_zscore", mean=GENESIS_NNUNET_CT_MEAN, std=GENESIS_NNUNET_CT_STD, clip=(-1000.0, 1000.0))

GENESIS_RESTORATION = (
    "Models Genesis restoration: 64x64x32 cubes damaged by non-linear intensity, local pixel shuffling and "
    "in-/out-painting (plus flips) are restored to the original with an MSE loss"
)

#: the target scale of Models Genesis restoration (MrGiovanni/ModelsGenesis; zoo.transforms.genesis works on it)
GENESIS_TARGET_SCALE = "(HU + 1000) / 2000 with HU clipped to [-1000, 1000]: [0, 1]"
#: what a Models Genesis restoration output means
GENESIS_RESTORED = "the restored cube: CT intensities of the undamaged input"

#: nnU-Net v2 arch_kwargs equivalent to the nnU-Net v1 Task006 Lung 3d_fullres Generic_UNet.
LUNG_PLAN_ARCH_KWARGS = unet_arch_kwargs(
    [32, 64, 128, 256, 320, 320], [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]],
    blocks_key="n_conv_per_stage", blocks_per_stage=[2] * 6, n_conv_per_stage_decoder=[2] * 5)

GENESIS_CHEST_CT = ModelEntry(
    name="genesis-chest-ct",
    architecture="genesis_unet3d",
    arch_kwargs={},
    description=(
        "Models Genesis Chest CT: the 3D U-Net (UNet3D, 19.1M parameters) self-supervised on LUNA16 chest CT "
        "by restoring damaged cubes. A generic initialisation for 3D CT (and MR) segmentation and "
        "classification."
    ),
    source=CheckpointSource(
        repo_id="MrGiovanni/ModelsGenesis",
        filename="Genesis_Chest_CT.pt",
        format="genesis-unet3d",
        revision_note="uploaded in Hub commit 4f4e9cb (full hash not yet recorded; 'main' is used until pinned)",
    ),
    license=ASU_NONCOMMERCIAL,
    input=InputContract(
        in_channels=1,
        modality="CT",
        axis_order="xyz",
        intensity="clip HU to [-1000, 1000], then scale to [0, 1]: (HU + 1000) / 2000",
        patch_size=(64, 64, 32),
        spacing_mm=None,
        channel_names=("CT",),
        divisible_by=8,
        normalization=Normalization(scheme="ct_clip_scale", mean=-1000.0, std=2000.0, clip=(-1000.0, 1000.0)),
    ),
    pretraining=Pretraining(
        data="LUNA16 chest CT (623 scans), cubes cut at native spacing",
        method=GENESIS_RESTORATION + "; SGD lr 1, batch 6",
        datasets=("LUNA16",),
        recipe="python -m export.genesis --preset unet3d",
    ),
    paper=GENESIS_PAPER,
    first_conv=("down_tr64.ops.0.conv1.weight",),
    classifier=("out_tr",),
    num_classes=1,
    tags=("self-supervised", "restoration", "unet", "ct", "chest"),
    output=OutputContract(
        kind="probabilities",
        activation="sigmoid",
        channels=1,
        target=GENESIS_RESTORED,
        scale=GENESIS_TARGET_SCALE,
        resolution="input size",
        new_head="a new head (num_classes=n) drops the sigmoid (out_activation=None): n channels of logits",
    ),
)

GENESIS_CHEST_CT_NNUNET_LUNG = ModelEntry(
    name="genesis-chest-ct-nnunet-lung",
    architecture="plain_conv_unet",
    arch_kwargs=LUNG_PLAN_ARCH_KWARGS,
    description=(
        "The Models Genesis pretrained nnU-Net (Bajpai, Sodha; ASU 2021): nnU-Net v1 Generic_UNet of the MSD "
        "Task006 Lung 3d_fullres plan, restoration-pretrained on LUNA16, converted to the nnU-Net v2 "
        "PlainConvUNet layout. Transfers into other nnU-Net plans with zoo.adapt / zoo export-nnunet."
    ),
    source=CheckpointSource(
        repo_id="MrGiovanni/ModelsGenesis",
        filename="genesis_nnunet_luna16_006.model",
        format="nnunet-v1",
        revision_note="uploaded in Hub commit 4f4e9cb (full hash not yet recorded; 'main' is used until pinned)",
    ),
    license=ASU_NONCOMMERCIAL,
    input=InputContract(
        in_channels=1,
        modality="CT",
        axis_order="xyz",
        intensity="nnU-Net-style CT z-score: (HU + 775.8457) / 251.9326",
        patch_size=(64, 64, 32),
        spacing_mm=None,
        channel_names=("CT",),
        divisible_by=32,
        normalization=GENESIS_NNUNET_NORMALIZATION,
    ),
    pretraining=Pretraining(
        data="LUNA16 chest CT, 64 cubes per scan at native spacing",
        method=GENESIS_RESTORATION + "; SGD lr 0.1, batch 64, StepLR 12 epochs x 0.5",
        datasets=("LUNA16",),
        recipe="python -m export.genesis --preset lung",
    ),
    paper=Paper(
        title="Pre-trained Models for nnUNet (S. Bajpai, MS thesis, Arizona State University, 2021)",
        url="https://github.com/MrGiovanni/ModelsGenesis/tree/master/competition",
        bibtex="""@mastersthesis{bajpai2021pretrained,
  title  = {Pre-trained Models for nnUNet},
  author = {Bajpai, Shivam},
  school = {Arizona State University},
  year   = {2021}
}
""" + GENESIS_PAPER.bibtex,
    ),
    first_conv=("encoder.stages.0.0.convs.0.conv.weight",),
    classifier=("decoder.seg_layers",),
    num_classes=2,
    tags=("self-supervised", "restoration", "nnunet", "ct", "chest"),
    output=OutputContract(
        kind="logits",
        activation="sigmoid",
        channels=2,
        target=GENESIS_RESTORED + " (both channels were trained on the same target, as upstream; use channel 0)",
        scale=GENESIS_TARGET_SCALE,
        resolution="input size (deep_supervision=True: a list of logits, full resolution first)",
    ),
)

ENTRIES: tuple[ModelEntry, ...] = (GENESIS_CHEST_CT, GENESIS_CHEST_CT_NNUNET_LUNG)
