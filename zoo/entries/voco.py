"""VoCo (Wu, Zhuang, Chen; CVPR 2024, and the large-scale follow-up): volume-contrastive and omni-supervised
pretraining on CT, weights on the Hub in ``Luffy503/VoCo`` (Apache-2.0).

Facts, from the authors' code in ``Luffy03/Large-Scale-Medical`` (GitHub):

* ``Omni-supervised/models/PlainConvUNet_load.py`` ``get_Plain_nnUNet`` (identical in ``Self-supervised/`` and
  ``VoComni/``, whose default head is 14 classes instead of 21): dynamic-network-architectures'
  ``PlainConvUNet``, 6 stages, features ``min(32 * 2**i, 320)``, kernels 3x3x3, strides (1,1,1) then
  (2,2,2) x 5, 2 convolutions per stage in the encoder and the decoder, ``conv_bias=True``,
  ``InstanceNorm3d(eps=1e-5, affine=True)``, no dropout, ``LeakyReLU(inplace=True)``, ``num_classes=21``.
* ``Downstream/nnUNet/nnunetv2/training/nnUNetTrainer/nnUNetTrainer_pretrain.py`` (the only code that opens
  ``VoComni_nnunet.pt``) accepts a raw state dict or one wrapped in ``state_dict`` / ``network_weights`` /
  ``net`` / ``student``, strips ``module.`` and ``backbone.``, and then keeps every tensor whose name and shape
  match, silently skipping the rest. medzoo's ``voco`` converter refuses instead (strict layout check).
* ``Downstream/nnUNet/README.md``: the models were pretrained with MONAI and transferred to nnU-Net; the MONAI
  pipelines (``VoComni/utils/data_utils.py``, ``Omni-supervised/voco_train.py``) use RAS orientation, 1.5 mm
  isotropic spacing and ``ScaleIntensityRanged(a_min=-175, a_max=250, b_min=0, b_max=1, clip=True)``.

* ``Self-supervised/models/voco_head.py`` ``VoCoHead`` (``VoCo_{B,L,H}_SSL_head.pt``): ``backbone`` = MONAI
  ``SwinTransformer(use_v2=True)`` (embed ``feature_size``, patch 2, window 7, depths 2,2,2,2, heads 3,6,12,24) as
  ``swinViT`` plus the ``UnetrBasicBlock`` encoders ``encoder1-4`` and ``encoder10`` of ``SwinUNETR``; its decoder
  blocks are commented out; ``student`` / ``teacher`` projection heads (pretraining only, dropped).

Not settled by the code (recorded in the entry and its card): the training script of ``VoComni_nnunet`` itself
is not published, so the file's container, its head size (21, as ``get_Plain_nnUNet``'s default and the 21
labels of ``VoComni/VoComni.json``) and its last stride ((2,2,2) as in ``get_Plain_nnUNet``; the repository's
nnU-Net plan for Dataset503 has (1,2,2), which would give ``decoder.transpconvs.0`` a (1,2,2) kernel) could not
be checked against the file; a file that differs is refused with the key and both shapes named. No Hub revision
or sha256 is known: the download is verified against the Hub's LFS hash.
"""

from ._nnunet_kwargs import unet_arch_kwargs
from ..entry import CheckpointSource, InputContract, License, ModelEntry, Normalization, OutputContract, Paper
from ..entry import Pretraining

VOCO_REPO = "Luffy503/VoCo"

VOCO_PAPER = Paper(
    title=(
        "Large-Scale 3D Medical Image Pre-training with Geometric Context Priors (IEEE TPAMI 2026; arXiv "
        "2410.09890) and "
        "VoCo: A Simple-yet-Effective Volume Contrastive Learning Framework for 3D Medical Image Analysis "
        "(CVPR 2024)"
    ),
    url="https://arxiv.org/abs/2410.09890",
    bibtex="""@article{wu2024large,
  title   = {Large-Scale 3D Medical Image Pre-training with Geometric Context Priors},
  author  = {Wu, Linshan and Zhuang, Jiaxin and Chen, Hao},
  journal = {IEEE Transactions on Pattern Analysis and Machine Intelligence},
  note    = {arXiv:2410.09890},
  year    = {2026}
}
@inproceedings{wu2024voco,
  title     = {VoCo: A Simple-yet-Effective Volume Contrastive Learning Framework for 3D Medical Image Analysis},
  author    = {Wu, Linshan and Zhuang, Jiaxin and Chen, Hao},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {22873--22882},
  year      = {2024}
}""",
)

#: the Hub card and the GitHub repository (``LICENSE``) both say Apache-2.0
VOCO_LICENSE = License(
    spdx="apache-2.0",
    notice=(
        "VoCo weights are released under Apache-2.0 (Luffy503/VoCo on the Hub; Luffy03/Large-Scale-Medical). "
        "They were pretrained on public CT collections whose own terms of use apply to the data. Not for "
        "diagnostic use."
    ),
)

#: the MONAI preprocessing of the VoCo pretraining (VoComni/utils/data_utils.py, Omni-supervised/voco_train.py)
VOCO_NORMALIZATION = Normalization(scheme="ct_clip_scale", mean=-175.0, std=425.0, clip=(-175.0, 250.0))



def _hub_file(filename: str) -> CheckpointSource:
    """``filename`` in ``Luffy503/VoCo`` (no revision or sha256 recorded: the Hub's LFS hash verifies it)."""
    return CheckpointSource(repo_id=VOCO_REPO, filename=filename, format="voco",
                            revision_note="not yet pinned: 'main' is used and the file is verified against the Hub's "
                                          "LFS hash")


def _ct_input(patch: int) -> InputContract:
    """VoCo's input (MONAI pipeline): one CT channel, RAS, 1.5 mm, HU [-175, 250] -> [0, 1], a ``patch``^3 crop."""
    return InputContract(in_channels=1, modality="CT", axis_order="xyz",
                         intensity="orientation RAS; clip HU to [-175, 250], scale to [0, 1]",
                         patch_size=(patch, patch, patch), spacing_mm=(1.5, 1.5, 1.5), channel_names=("CT",),
                         divisible_by=32, normalization=VOCO_NORMALIZATION)


#: ``get_Plain_nnUNet`` of Omni-supervised/models/PlainConvUNet_load.py, as nnU-Net v2 plan ``arch_kwargs``
VOCO_NNUNET_ARCH_KWARGS = unet_arch_kwargs(
    [32, 64, 128, 256, 320, 320], [[1, 1, 1]] + [[2, 2, 2]] * 5,
    blocks_key="n_conv_per_stage", blocks_per_stage=[2] * 6, n_conv_per_stage_decoder=[2] * 5)

VOCO_OMNI_NNUNET_NOTE = (
    "Unconfirmed against the file itself (the training script of VoComni_nnunet is not published): the "
    "container (raw state dict or wrapped in state_dict / network_weights / net / student: all accepted), the "
    "21-class head (get_Plain_nnUNet's default; the VoComni label set) and the last stride (2,2,2) "
    "(get_Plain_nnUNet; the repository's Dataset503 nnU-Net plan has (1,2,2)). A file that differs is refused "
    "with the key and both shapes named, never loaded in part. Hub revision and sha256 not yet recorded."
)

VOCO_OMNI_NNUNET = ModelEntry(
    name="voco-omni-nnunet",
    architecture="plain_conv_unet",
    arch_kwargs=VOCO_NNUNET_ARCH_KWARGS,
    description=(
        "VoComni nnU-Net (Wu et al.): the 31M-parameter nnU-Net v2 PlainConvUNet (6 stages, 32-320 features) "
        "of the large-scale VoCo follow-up, pretrained omni-supervised on CT: volume contrast on unlabelled "
        "scans plus segmentation of the 20 pseudo-labelled organ and tumour classes of VoComni. Transfers "
        "into any nnU-Net plan with zoo.adapt / zoo export-nnunet."
    ),
    source=_hub_file("VoComni_nnunet.pt"),
    license=VOCO_LICENSE,
    input=_ct_input(patch=96),
    pretraining=Pretraining(
        data=(
            "PreCT-160K (about 160K public CT volumes) for the self-supervised part and VoComni (20K CT volumes "
            "with VoCo pseudo labels of 20 organ and tumour classes) for the supervised part"
        ),
        method=(
            "omni-supervised: VoCo volume contrast (position prediction of crops against base crops) plus "
            "Dice-CE segmentation of the VoComni pseudo labels, MONAI pipeline at 1.5 mm"
        ),
        datasets=("PreCT-160K", "VoComni"),
        recipe="",
    ),
    paper=VOCO_PAPER,
    first_conv=("encoder.stages.0.0.convs.0.conv.weight",),
    classifier=("decoder.seg_layers",),
    num_classes=21,
    tags=("omni-supervised", "self-supervised", "nnunet", "ct"),
    weights_note=VOCO_OMNI_NNUNET_NOTE,
    output=OutputContract(
        kind="logits",
        activation="softmax",
        channels=21,
        target="the 21 VoComni classes (background + 20 pseudo-labelled organs and tumours, VoComni/VoComni.json)",
        resolution="input size (deep_supervision=True: a list of logits, full resolution first)",
    ),
)

#: MONAI SwinUNETR modules the VoCoHead backbone has (Self-supervised/models/voco_head.py ``Swin``): the Swin
#: transformer and the encoder blocks; its decoder blocks are commented out, so the file has none
VOCO_SSL_DECODER = ("decoder5", "decoder4", "decoder3", "decoder2", "decoder1")

VOCO_B_SSL = ModelEntry(
    name="voco-b-ssl",
    architecture="monai_swinunetr",
    arch_kwargs={"feature_size": 48, "use_v2": True},
    description=(
        "VoCo-B self-supervised (Wu et al.): the encoder of MONAI's SwinUNETR-v2 (feature_size=48) pretrained by "
        "volume contrast on PreCT-160K CT volumes. The file holds the Swin transformer and the encoder blocks "
        "(encoder1-4, encoder10) of the authors' VoCoHead; the decoder and the head are not part of the weights "
        "and start from MONAI's initialisation."
    ),
    source=_hub_file("VoCo_B_SSL_head.pt"),
    license=VOCO_LICENSE,
    input=_ct_input(patch=64),
    pretraining=Pretraining(
        data="PreCT-160K: about 160K public CT volumes",
        method=(
            "VoCo volume contrast: base crops of a volume and random crops, a crop's overlap with each base crop "
            "predicted from projected features (student / teacher heads, EMA), 64^3 crops at 1.5 mm (MONAI)"
        ),
        datasets=("PreCT-160K",),
        recipe="",
    ),
    paper=VOCO_PAPER,
    first_conv=("swinViT.patch_embed.proj.weight", "encoder1.layer.conv1.conv.weight",
                "encoder1.layer.conv3.conv.weight"),
    classifier=("out", "decoder.seg_layers", *VOCO_SSL_DECODER),
    num_classes=None,
    tags=("self-supervised", "contrastive", "swin-unetr", "transformer", "monai", "ct"),
    weights_note=(
        "Encoder only: decoder1-5 and the head start from MONAI's initialisation, so forward's output is "
        "meaningful only after fine-tuning. Unconfirmed against the file itself: the container (raw or wrapped, "
        "all accepted) and the key prefix ('backbone.', from the authors' VoCoHead; stripped). Hub revision and "
        "sha256 not yet recorded."
    ),
    output=OutputContract(
        kind="features",
        activation=None,
        channels=48,
        target=(
            "the decoder1 feature map of the SwinUNETR; the decoder is not part of the weights (fresh "
            "initialisation): the pretrained representation is the encoder's (swinViT hidden states, encoder1-4, "
            "encoder10)"
        ),
        resolution="input size",
    ),
)

ENTRIES: tuple[ModelEntry, ...] = (VOCO_OMNI_NNUNET, VOCO_B_SSL)
