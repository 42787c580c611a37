"""SuPreM (Li, Yuille, Zhou; ICLR 2024): supervised pretraining on AbdomenAtlas 1.1 (CC BY-NC-ND 4.0).

Facts: MrGiovanni/SuPreM ``supervised_pretraining/train.py`` (SegResNet arguments; checkpoints saved as
``{'net': model.state_dict(), 'optimizer', 'scheduler', 'epoch'}`` from DistributedDataParallel, hence ``module.``),
``supervised_pretraining/backbone/Universal_model.py`` (the Swin UNETR is ``self.backbone``, hence
``module.backbone.``), ``backbone/swinunetr.py`` (the class, no ``out`` head), the fine-tuning loaders of
``target_applications/imagecas/train.py`` (prefixes, the SegResNet head ``conv_final.2.conv`` skipped). Files at
https://huggingface.co/MrGiovanni/SuPreM; parameter counts 62.19M / 4.70M in the SuPreM README.
"""

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

#: the SuPreM input contract (``target_applications/*/train.py`` and ``supervised_pretraining/train.py`` defaults:
#: Orientation RAS, Spacing 1.5 mm, ScaleIntensityRange a_min -175 a_max 250 -> [0, 1] clipped, ROI 96^3)
def _suprem_input(divisible_by: int) -> InputContract:
    return InputContract(
        in_channels=1,
        modality="CT",
        axis_order="xyz",
        intensity="clip HU to [-175, 250], scale to [0, 1]; orientation RAS",
        patch_size=(96, 96, 96),
        spacing_mm=(1.5, 1.5, 1.5),
        channel_names=("CT",),
        divisible_by=divisible_by,
        normalization=Normalization(scheme="ct_clip_scale", mean=-175.0, std=425.0, clip=(-175.0, 250.0)),
    )


_SUPREM_PRETRAINING = Pretraining(
    data="AbdomenAtlas 1.1: 2,100 abdominal CT scans with 25 organ labels (from 9,262 annotated)",
    method="supervised multi-organ segmentation; AdamW lr 1e-3 (README command), warm-up + cosine, 800 epochs",
    datasets=("AbdomenAtlas1.1",),
    recipe="",
)

def _unconfirmed(head: bool) -> str:
    """What could not be confirmed from the file itself (it cannot be downloaded where medzoo was written)."""
    head_count = ("the class count of the pretraining head (25 by the README's command; the head is dropped either "
                  "way), ") if head else ""
    return (f" Not confirmed from the file itself (it cannot be downloaded where medzoo was written): {head_count}the "
            "revision and sha256 (None: verified against the Hub's LFS hash on download).")

SUPREM_SEGRESNET = ModelEntry(
    name="suprem-segresnet",
    architecture="monai_segresnet",
    arch_kwargs={"blocks_down": (1, 2, 2, 4), "blocks_up": (1, 1, 1), "init_filters": 16, "dropout_prob": 0.0},
    description=(
        "SuPreM SegResNet: MONAI's SegResNet(blocks_down=[1,2,2,4], blocks_up=[1,1,1], init_filters=16; 4.70M "
        "parameters) trained with full supervision on 25 abdominal organs of 2,100 CT scans (AbdomenAtlas 1.1). "
        "Backbone only: the pretraining head conv_final.2 is dropped, as SuPreM's fine-tuning code does."
        + _unconfirmed(head=True)
    ),
    source=CheckpointSource(
        repo_id="MrGiovanni/SuPreM",
        filename="supervised_suprem_segresnet_2100.pth",
        format="suprem-segresnet",
        revision_note="revision not yet recorded; 'main' is used until pinned",
    ),
    license=CC_BY_NC_ND,
    input=_suprem_input(8),
    pretraining=_SUPREM_PRETRAINING,
    paper=SUPREM_UNET.paper,
    first_conv=("convInit.conv.weight",),
    classifier=("conv_final.2", "decoder.seg_layers"),
    num_classes=None,
    tags=("supervised", "segresnet", "monai", "ct", "abdomen"),
    output=OutputContract(
        kind="features",
        activation=None,
        channels=16,
        target="the last decoder feature map after conv_final's GroupNorm + ReLU (the 1x1 head is not part of the "
               "weights)",
        resolution="input size",
    ),
)

SUPREM_SWINUNETR = ModelEntry(
    name="suprem-swinunetr",
    architecture="monai_swinunetr",
    arch_kwargs={"feature_size": 48, "downsample": "merging-suprem"},
    description=(
        "SuPreM Swin UNETR: MONAI's SwinUNETR(feature_size=48; 62.19M parameters) trained with full supervision "
        "on 25 abdominal organs of 2,100 CT scans (AbdomenAtlas 1.1), as the backbone of SuPreM's universal model. "
        "SuPreM's copy of the class merges patches in its own neighbour order (downsample='merging-suprem'), which "
        "MONAI 1.6's 'merging' does not reproduce. Backbone only: SuPreM's copy has no 'out' head."
        + _unconfirmed(head=False)
    ),
    source=CheckpointSource(
        repo_id="MrGiovanni/SuPreM",
        filename="supervised_suprem_swinunetr_2100.pth",
        format="suprem-swinunetr",
        revision_note="revision not yet recorded; 'main' is used until pinned",
    ),
    license=CC_BY_NC_ND,
    input=_suprem_input(32),
    pretraining=_SUPREM_PRETRAINING,
    paper=SUPREM_UNET.paper,
    first_conv=("swinViT.patch_embed.proj.weight", "encoder1.layer.conv1.conv.weight",
                "encoder1.layer.conv3.conv.weight"),
    classifier=("out", "decoder.seg_layers"),
    num_classes=None,
    tags=("supervised", "swin-unetr", "transformer", "monai", "ct", "abdomen"),
    output=OutputContract(
        kind="features",
        activation=None,
        channels=48,
        target="the decoder1 feature map of the Swin UNETR (upstream 'out' of the backbone's forward); no head",
        resolution="input size",
    ),
)

ENTRIES: tuple[ModelEntry, ...] = (SUPREM_UNET, SUPREM_SEGRESNET, SUPREM_SWINUNETR)
