"""SuPreM (Li, Yuille, Zhou; ICLR 2024): supervised pretraining on AbdomenAtlas 1.1 (CC BY-NC-ND 4.0)."""

from ..entry import CheckpointSource, InputContract, ModelEntry, Normalization, OutputContract, Paper, Pretraining
from ._licenses import CC_BY_NC_ND

SUPREM_UNET = ModelEntry(
    name="suprem-unet",
    architecture="genesis_unet3d",
    arch_kwargs={"upstream_bn": True},
    description=(
        "SuPreM U-Net: the Models Genesis UNet3D (19.1M parameters) trained with full supervision on 25 "
        "abdominal organs of 2,100 CT scans (AbdomenAtlas 1.1), initialised from Genesis Chest CT. Backbone "
        "only: the segmentation head of the universal model is not part of the weights."
    ),
    source=CheckpointSource(
        repo_id="MrGiovanni/SuPreM",
        filename="supervised_suprem_unet_2100.pth",
        format="suprem-unet",
        revision_note="uploaded in Hub commit d578cce (full hash not yet recorded; 'main' is used until pinned)",
    ),
    license=CC_BY_NC_ND,
    input=InputContract(
        in_channels=1,
        modality="CT",
        axis_order="xyz",
        intensity="clip HU to [-175, 250], scale to [0, 1]; orientation RAS",
        patch_size=(96, 96, 96),
        spacing_mm=(1.5, 1.5, 1.5),
        channel_names=("CT",),
        divisible_by=8,
        normalization=Normalization(scheme="ct_clip_scale", mean=-175.0, std=425.0, clip=(-175.0, 250.0)),
    ),
    pretraining=Pretraining(
        data="AbdomenAtlas 1.1: 2,100 abdominal CT scans with 25 organ labels (from 9,262 annotated)",
        method="supervised multi-organ segmentation; AdamW lr 1e-4, warm-up + cosine, 800 epochs",
        datasets=("AbdomenAtlas1.1",),
        recipe="",
    ),
    paper=Paper(
        title="How Well Do Supervised 3D Models Transfer to Medical Imaging Tasks? (ICLR 2024)",
        url="https://openreview.net/forum?id=AhizIPytk4",
        bibtex="""@inproceedings{li2024well,
  title     = {How Well Do Supervised 3D Models Transfer to Medical Imaging Tasks?},
  author    = {Li, Wenxuan and Yuille, Alan and Zhou, Zongwei},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2024}
}""",
    ),
    first_conv=("down_tr64.ops.0.conv1.weight",),
    classifier=("out_tr",),
    num_classes=None,
    tags=("supervised", "unet", "ct", "abdomen"),
    base_model="genesis-chest-ct",
    output=OutputContract(
        kind="features",
        activation=None,
        channels=64,
        target="the last decoder feature map of the UNet3D (upstream out_up_64); the 25-organ head is not part "
               "of the weights",
        resolution="input size",
    ),
)

ENTRIES: tuple[ModelEntry, ...] = (SUPREM_UNET,)
