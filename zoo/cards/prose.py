"""Hand-written prose of the model cards, one :class:`Family` per model family.

Facts about an entry (architecture, input contract, checkpoint source, licence, pretraining, paper) come from
the registry and are rendered by :mod:`zoo.cards.render`; this module holds only what the registry does not:
a summary in words, the results reported by the original papers **with their source** (each number is quoted
from the publication named by its :class:`Source`, which carries a public URL for it: the arXiv page or the
upstream repository; none of them was reproduced by medzoo), limitations and licence notes.

A family matches entries by shell wildcards on the name; an entry no family matches gets :data:`GENERIC`, so
new registry entries get a valid card without touching this file. ``Result`` rows become the card's
``model-index`` only for the entries whose *own* weights produced the number (``models`` patterns); numbers
about other weights of the same paper appear in the prose tables only.

What the registry or the architecture declarations (:mod:`zoo.archs.declarations`) already say is not repeated
here: the card's ``pipeline_tag`` follows the architecture's task unless a family overrides it, and limitations
that depend on an entry key on its facts (architecture, checkpoint format).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Callable

from ..registry import ModelEntry


@dataclass(frozen=True)
class Source:
    name: str
    url: str


@dataclass(frozen=True)
class Result:
    """One published number, for ``model-index`` (huggingface_hub ``EvalResult`` fields)."""

    models: tuple[str, ...]
    task_type: str
    task_name: str
    dataset_name: str
    dataset_type: str
    metric_type: str
    metric_name: str
    value: float
    source: Source
    split: str | None = None

    def applies_to(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.models)


@dataclass(frozen=True)
class Family:
    key: str
    patterns: tuple[str, ...]
    summary: str
    results_md: Callable[[ModelEntry], str] | str = ""
    results: tuple[Result, ...] = ()
    limitations: Callable[[ModelEntry], tuple[str, ...]] | tuple[str, ...] = ()
    licence_notes: tuple[str, ...] = ()
    pipeline_tag: str | None = None
    nnunet_note: str = ""
    extra_tags: tuple[str, ...] = field(default=())

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def limitations_for(self, entry: ModelEntry) -> tuple[str, ...]:
        return tuple(self.limitations(entry) if callable(self.limitations) else self.limitations)

    def results_text(self, entry: ModelEntry) -> str:
        text = self.results_md(entry) if callable(self.results_md) else self.results_md
        return text.strip()


#: limitations every card states
COMMON_LIMITATIONS = (
    "Research use only: not a medical device, not validated for diagnosis or treatment decisions.",
    "The numbers under *Results* were reported by the original authors for their own pipelines and splits; "
    "medzoo did not reproduce them. Expect different numbers with other preprocessing, patch sizes or "
    "training schedules.",
    "Transfer works best when the target data are prepared like the pretraining data (see *Input*): a "
    "different intensity normalisation, axis order or voxel spacing silently weakens the pretrained features.",
)

# --------------------------------------------------------------------------------------------------------------
# Models Genesis
# --------------------------------------------------------------------------------------------------------------

BAJPAI = Source(
    "Bajpai, Pre-trained Models for nnUNet, MS thesis, Arizona State University, 2021",
    "https://github.com/MrGiovanni/ModelsGenesis/tree/master/competition",
)
GENESIS_SRC = Source(
    "Zhou et al., Models Genesis, Medical Image Analysis 67:101840, 2021 (MICCAI 2019)",
    "https://arxiv.org/abs/1908.06912",
)

_GENESIS_NNUNET = ("genesis-chest-ct-nnunet-lung",)


def _nnunet_result(task: str, dataset: str, dtype: str, metric: str, value: float, split: str) -> Result:
    return Result(_GENESIS_NNUNET, "image-segmentation", task, dataset, dtype, "dice", metric, value, BAJPAI, split)


GENESIS_NNUNET_RESULTS = (
    _nnunet_result("Liver segmentation (fine-tuned in nnU-Net)", "MSD Task03 Liver", "msd-task03-liver",
                   "Dice liver (%)", 95.72, "test (MSD leaderboard)"),
    _nnunet_result("Liver tumour segmentation (fine-tuned in nnU-Net)", "MSD Task03 Liver", "msd-task03-liver",
                   "Dice liver tumour (%)", 77.50, "test (MSD leaderboard)"),
    _nnunet_result("Liver segmentation (fine-tuned in nnU-Net)", "MSD Task03 Liver", "msd-task03-liver",
                   "Dice liver (%)", 96.19, "validation"),
    _nnunet_result("Liver tumour segmentation (fine-tuned in nnU-Net)", "MSD Task03 Liver", "msd-task03-liver",
                   "Dice liver tumour (%)", 65.52, "validation"),
    _nnunet_result("Lung tumour segmentation (fine-tuned in nnU-Net)", "MSD Task06 Lung", "msd-task06-lung",
                   "Dice lung tumour (%)", 74.54, "test (MSD leaderboard)"),
    _nnunet_result("Lung tumour segmentation (fine-tuned in nnU-Net)", "MSD Task06 Lung", "msd-task06-lung",
                   "Dice lung tumour (%)", 71.8, "validation"),
)

GENESIS_NNUNET_TABLE = f"""
Fine-tuned in nnU-Net v1 with nnU-Net's default target-task settings, all layers but the last transferred
(source: {BAJPAI.name}). Dice in %.

| Task (MSD) | Split | nnU-Net from scratch | nnU-Net + Models Genesis |
|---|---|---|---|
| Liver / liver tumour | validation | 96.19 / 63.37 | 96.19 / 65.52 |
| Liver / liver tumour | test (leaderboard) | 95.75 (rank 1) / 75.97 (rank 5) | 95.72 (rank 2) / 77.50 (rank 1) |
| Lung tumour | validation | 69.5 ± 1.13 | 71.8 ± 1.4 |
| Lung tumour | test (leaderboard) | 73.97 (rank 5) | 74.54 (rank 3) |

On Pancreas, Spleen, Colon, Prostate, Brain tumour, Hippocampus and Heart the thesis found about the same as
from scratch, because the layers that differ between those plans and the lung plan (first-layer kernel, depth,
4 MR input channels) were not transferred. medzoo's `zoo export-nnunet` transfers stage by stage into other
plans; that extension has no published numbers.
"""

GENESIS_PAPER_TABLE = f"""
Target tasks of the paper, fine-tuned from different initialisations (source: {GENESIS_SRC.name}). NCC: lung
nodule false-positive reduction (AUC), NCS: lung nodule segmentation (IoU), ECC: pulmonary embolism
false-positive reduction (AUC), LCS: liver segmentation (IoU), BMS: brain tumour segmentation (IoU); all in %.

| Initialisation | NCC | NCS | ECC | LCS | BMS |
|---|---|---|---|---|---|
| Random, MSRA init | 96.03 ± 1.82 | 76.44 ± 0.45 | 78.24 ± 3.60 | 79.76 ± 5.43 | 63.00 ± 1.73 |
| I3D (Kinetics) | 98.26 ± 0.27 | 71.31 ± 0.37 | 80.55 ± 1.11 | 69.82 ± 4.95 | 67.83 ± 0.75 |
| NiftyNet | 94.14 ± 4.57 | 52.98 ± 2.05 | 77.33 ± 8.05 | 83.23 ± 1.05 | 60.78 ± 1.60 |
| MedicalNet | 95.80 ± 0.49 | 75.68 ± 0.32 | 86.43 ± 1.44 | 85.52 ± 0.58 | 66.09 ± 1.35 |
| **Genesis Chest CT** | **98.34 ± 0.44** | **77.62 ± 0.64** | **87.20 ± 2.87** | 85.10 ± 2.15 | **67.96 ± 1.29** |

The authors also report that Genesis Chest CT needs at least 30% less annotation for the same performance, and
that 3D inputs beat 2D and 2.5D ones.
"""


def _genesis_result(task: str, dtype: str, metric_type: str, metric: str, value: float) -> Result:
    task_type = "image-classification" if metric_type == "auc" else "image-segmentation"
    return Result(("genesis-chest-ct",), task_type, task, f"Models Genesis target task {dtype.upper()}",
                  f"models-genesis-{dtype}", metric_type, metric, value, GENESIS_SRC)


GENESIS_RESULTS = (
    _genesis_result("Lung nodule false-positive reduction", "ncc", "auc", "AUC (%)", 98.34),
    _genesis_result("Lung nodule segmentation", "ncs", "iou", "IoU (%)", 77.62),
    _genesis_result("Pulmonary embolism false-positive reduction", "ecc", "auc", "AUC (%)", 87.20),
    _genesis_result("Liver segmentation", "lcs", "iou", "IoU (%)", 85.10),
    _genesis_result("Brain tumour segmentation", "bms", "iou", "IoU (%)", 67.96),
)


def _genesis_results_md(entry: ModelEntry) -> str:
    if entry.name in _GENESIS_NNUNET:
        return GENESIS_NNUNET_TABLE + "\nFor reference, the UNet3D of the same paper:\n" + GENESIS_PAPER_TABLE
    if entry.name == "genesis-chest-ct":
        return GENESIS_PAPER_TABLE
    return (
        "No published results for these weights. For comparison, the original Models Genesis weights:\n"
        + GENESIS_PAPER_TABLE
    )


def _genesis_limitations(entry: ModelEntry) -> tuple[str, ...]:
    items = [
        "Pretrained on chest CT only (LUNA16, native spacing, no resampling); transfer to MR or other body parts "
        "worked in the paper but is weaker than in-domain.",
        "Pretraining cubes were read with SimpleITK and transposed to (x, y, z), z last: the opposite of the "
        "(z, y, x) order of nnU-Net and MONAI. Permute your volumes (or the kernels) accordingly.",
    ]
    if entry.architecture == "genesis_unet3d":
        items.append(
            "The upstream UNet3D normalises with batch statistics even in `eval()` mode (`ContBatchNorm3d`); "
            "results at batch size 1 differ from those of a standard BatchNorm network."
        )
    if entry.source is not None and entry.source.format == "nnunet-v1":
        items.append(
            "Converted from nnU-Net v1 (Generic_UNet) to the v2 PlainConvUNet layout; v2's transposed-convolution "
            "and segmentation-head biases, absent in v1, are zero, which reproduces v1's outputs."
        )
    return tuple(items)


GENESIS_LICENCE_NOTES = (
    "Licence of record: the ASU licence of the Models Genesis repository (Arizona Board of Regents, patent "
    "pending, Tech ID M19-252LC), granted solely for academic and other non-commercial research and revocable. "
    "Commercial use needs a written agreement with ASU.",
    "Redistribution is allowed only for non-commercial purposes, with the licence text, modified files marked "
    "and the changes described in a NOTICE file, and every attribution kept. medzoo therefore never re-hosts "
    "these weights: it downloads the official file at run time and converts it in your local cache.",
)

GENESIS_FAMILY = Family(
    key="genesis",
    patterns=("genesis-chest-ct", "genesis-chest-ct-*"),
    summary=(
        "Models Genesis learn general-purpose 3D features without labels: sub-volumes of chest CT are damaged "
        "(non-linear intensity transforms, local voxel shuffling, in- and out-painting) and the network learns "
        "to restore them. The result is a generic initialisation for 3D segmentation and classification that "
        "beat training from scratch and 3D networks pretrained on natural videos in the paper."
    ),
    results_md=_genesis_results_md,
    results=GENESIS_NNUNET_RESULTS + GENESIS_RESULTS,
    limitations=_genesis_limitations,
    licence_notes=GENESIS_LICENCE_NOTES,
    pipeline_tag="image-to-image",  # the weights restore damaged CT cubes; segmentation comes after fine-tuning
)

GENESIS_DEMO = Family(
    key="genesis-demo",
    patterns=("genesis-ct-demo", "*-demo"),
    summary=(
        "A small network pretrained by medzoo itself with the Models Genesis restoration task on a handful of "
        "public CT volumes, shipped inside the package so that examples, tests and `zoo demo` run offline. It "
        "shows the whole workflow (load, adapt to an nnU-Net plan, export); it is not meant for research results."
    ),
    results_md=(
        "No published results: these weights were trained at demonstration scale. For what full-scale Models "
        "Genesis pretraining achieves, see the cards of `genesis-chest-ct` and `genesis-chest-ct-nnunet-lung`."
    ),
    limitations=(
        "Demonstration scale: few volumes and short training. Do not expect the transfer gains of the published "
        "Models Genesis weights.",
    ),
    licence_notes=(
        "Training data: one of the two training volumes, InVesalius `Cranium.inv3` (Debian package "
        "invesalius-examples), is licensed GPL-2.0; the pyradiomics volumes (`lung1_image.nrrd`, and "
        "`lung2_image.nrrd` for validation) are BSD-3-Clause. The apache-2.0 above is medzoo's licence for the "
        "weights; the GPL-2.0 of that volume is not waived by it.",
    ),
    pipeline_tag="image-to-image",  # Models Genesis restoration: damaged CT cube in, restored cube out
)

# --------------------------------------------------------------------------------------------------------------
# MedicalNet / Med3D
# --------------------------------------------------------------------------------------------------------------

MED3D_SRC = Source("Chen, Ma, Zheng, Med3D: Transfer Learning for 3D Medical Image Analysis, arXiv:1904.00625, 2019",
               "https://arxiv.org/abs/1904.00625")

#: depth -> (Med3D segmentation Dice, Med3D classification accuracy) from the paper's transfer table
MED3D_TRANSFER = {10: (87.16, 86.87), 18: (87.26, 88.89), 34: (89.31, 89.90), 50: (93.31, 89.90),
                  101: (92.79, 90.91), 152: (92.33, 90.91), 200: (92.06, 90.91)}


def _med3d_results() -> tuple[Result, ...]:
    rows = []
    for depth, (dice, acc) in MED3D_TRANSFER.items():
        models = (f"med3d-resnet{depth}",)
        rows.append(Result(models, "image-segmentation", "Lung segmentation (fine-tuned)", "Visceral lung CT",
                           "visceral-lung", "dice", "Dice (%)", dice, MED3D_SRC))
        rows.append(Result(models, "image-classification", "Lung nodule malignancy classification (fine-tuned)",
                           "LIDC-IDRI nodules", "lidc-idri", "accuracy", "Accuracy (%)", acc, MED3D_SRC))
    rows.append(Result(("med3d-resnet152",), "image-segmentation",
                       "Liver segmentation (ResNet-152 + DenseASPP, two-stage)", "LiTS liver", "lits",
                       "dice", "Dice (%)", 94.6, MED3D_SRC))
    return tuple(rows)


MED3D_TABLE = f"""
Transfer of the 3DSeg-8 weights to lung segmentation (Visceral, Dice %) and lung nodule malignancy
classification (LIDC, accuracy %), against training from scratch and Kinetics video pretraining (source:
{MED3D_SRC.name}).

| Backbone | Scratch Seg / Cls | Kinetics Seg / Cls | Med3D Seg / Cls |
|---|---|---|---|
| ResNet-10 | 71.30 / 79.80 | – | 87.16 / 86.87 |
| ResNet-18 | 75.22 / 80.80 | 83.21 / 82.83 | 87.26 / 88.89 |
| ResNet-34 | 76.82 / 83.84 | 85.82 / 83.84 | 89.31 / 89.90 |
| ResNet-50 | 71.75 / 84.85 | 87.11 / 74.75 | 93.31 / 89.90 |
| ResNet-101 | 72.10 / 81.82 | 88.32 / 74.75 | 92.79 / 90.91 |
| ResNet-152 | 73.29 / 73.74 | 88.61 / 75.76 | 92.33 / 90.91 |
| ResNet-200 | 71.29 / 76.77 | – | 92.06 / 90.91 |

LiTS liver segmentation with ResNet-152 + DenseASPP (two-stage, no post-processing): Dice 94.6 and ASSD 1.9
with Med3D weights, 89.6 / 5.0 with Kinetics, 66.0 / 30.4 from scratch. The authors also report 2x faster
convergence than Kinetics pretraining and 10x faster than scratch.
"""


def _med3d_results_md(entry: ModelEntry) -> str:
    if entry.name.endswith("-23datasets"):
        return (
            "The paper evaluates only the 3DSeg-8 weights; the 23-dataset weights were released later without "
            "published results. The table below is for the corresponding `med3d-resnetN` (3DSeg-8) weights.\n"
            + MED3D_TABLE
        )
    return MED3D_TABLE


MED3D_FAMILY = Family(
    key="med3d",
    patterns=("med3d-*",),
    summary=(
        "MedicalNet (Med3D) trains one shared 3D ResNet encoder on several medical segmentation data sets at "
        "once, each data set with its own light decoder branch, so that incomplete and differing label sets "
        "never conflict. The released encoders are dilated (output stride 8, DeepLab style) and transfer to "
        "segmentation and classification; in the paper they beat scratch and Kinetics video pretraining."
    ),
    results_md=_med3d_results_md,
    results=_med3d_results(),
    limitations=(
        "Backbone only: the segmentation head `conv_seg` was not released. `zoo.load(..., num_classes=K)` adds a "
        "new, randomly initialised head.",
        "The 23 data sets behind the `-23datasets` weights were never listed by the authors (MedicalNet issues "
        "#47, #65, #70): their provenance and any overlap with your test data cannot be checked.",
        "ResNet-18 and -34 use the parameter-free shortcut A, the other depths shortcut B (1x1x1 convolution); "
        "the authors never explained why.",
        "MONAI's `ResNet` uses the same key names but stride 2 without dilation in layer3/4: the weights load "
        "there, but the features differ. Use this architecture for faithful results.",
    ),
    licence_notes=(
        "MIT licence (Tencent). Copies and converted weights must keep Tencent's copyright and permission notice "
        "(LICENSE of Tencent/MedicalNet), which also carries the MIT notice of kenshohara/3D-ResNets-PyTorch. "
        "Redistribution, also of converted weights, is allowed.",
    ),
    nnunet_note=(
        "This is a ResNet encoder, not an nnU-Net network: only layers with a counterpart in the target plan "
        "can be transferred. Check the per-tensor transfer report first (`zoo adapt NAME --plans ... --report "
        "report.json`)."
    ),
)

# --------------------------------------------------------------------------------------------------------------
# SuPreM
# --------------------------------------------------------------------------------------------------------------

SUPREM = Family(
    key="suprem",
    patterns=("suprem-*",),
    summary=(
        "SuPreM asks whether supervised pretraining on a large, fully annotated CT corpus transfers better than "
        "self-supervised pretraining. The U-Net (the Models Genesis UNet3D, initialised from Genesis Chest CT) "
        "was trained to segment 25 abdominal organs in 2,100 CT scans of AbdomenAtlas 1.1; the paper argues "
        "that such supervised pretraining transfers better, and with less pretraining data and compute, than "
        "the self-supervised pretraining it compares with."
    ),
    results_md=(
        "The paper reports transfer to TotalSegmentator and other data sets; medzoo does not quote those "
        "numbers yet (see the paper)."
    ),
    limitations=(
        "Backbone only: the segmentation head of the universal model is not part of the weights.",
        "Trained on abdominal CT at 1.5 mm isotropic spacing, RAS orientation, HU clipped to [-175, 250]: other "
        "anatomy, modalities or normalisations are out of domain.",
        "The upstream network normalises with batch statistics in `eval()` mode (`ContBatchNorm3d`, kept here "
        "with `upstream_bn=True`); whether that was intended upstream is an open question (SuPreM issue #19).",
    ),
    licence_notes=(
        "Licence of record: CC BY-NC-ND 4.0 (© Johns Hopkins University; the paper content is covered by "
        "patents pending). Attribution required; non-commercial use only; NoDerivatives: a safetensors "
        "re-encoding is a derivative, so medzoo never re-hosts these weights and converts them only in your "
        "local cache. Fine-tuned derivatives may not be shared.",
    ),
)

SUPREM_MONAI = Family(
    key="suprem-monai",
    patterns=("suprem-segresnet", "suprem-swinunetr"),
    summary=(
        "SuPreM asks whether supervised pretraining on a large, fully annotated CT corpus transfers better than "
        "self-supervised pretraining. Besides its U-Net, SuPreM trained two of MONAI's backbones on the same task "
        "(25 abdominal organs in 2,100 CT scans of AbdomenAtlas 1.1): a SegResNet (init_filters=16, 4.70M "
        "parameters without its head) and the Swin UNETR (feature_size=48, 62.19M parameters) of its universal "
        "model. medzoo builds MONAI's own classes; the Swin UNETR merges patches in the neighbour order of "
        "SuPreM's copy of the class (`downsample='merging-suprem'`), since MONAI's current order computes "
        "something else with the same weights."
    ),
    results_md=(
        "The paper reports transfer to TotalSegmentator and other data sets; medzoo does not quote those "
        "numbers yet (see the paper)."
    ),
    limitations=(
        "Backbone only: the pretraining head (SegResNet `conv_final.2`; the universal model's organ embedding and "
        "controller) is not part of the weights; the output is the last decoder feature map.",
        "Trained on abdominal CT at 1.5 mm isotropic spacing, RAS orientation, HU clipped to [-175, 250] and "
        "scaled to [0, 1]: other anatomy, modalities or normalisations are out of domain.",
        "Transfer into nnU-Net's PlainConvUNet / ResidualEncoderUNet plans is refused: MONAI's residual blocks "
        "(pre-activation GroupNorm, additive skips, transposed 1x1 upsampling) and Swin transformer stages have "
        "no tensor-for-tensor counterpart there. nnU-Net v2 trains the network itself instead "
        "(`zoo plan NAME --arch monai`).",
        "Requires MONAI (`pip install \"medzoo[monai]\"`). Not confirmed from the files themselves: revision "
        "and sha256 (verified against the Hub's LFS hash on download), the SegResNet head's class count.",
    ),
    licence_notes=SUPREM.licence_notes,
    nnunet_note=(
        "Fine-tune in nnU-Net v2 with MONAI's network unchanged (medzoo and MONAI installed where nnU-Net "
        "runs):\n\n"
        "```bash\n"
        "zoo plan NAME --plans $nnUNet_preprocessed/DatasetXXX_Name/nnUNetPlans.json --arch monai \\\n"
        "    -o $nnUNet_preprocessed/DatasetXXX_Name/nnUNetPlans_monai.json\n"
        "nnUNetv2_preprocess -d XXX -plans_name nnUNetPlans_monai -c 3d_fullres\n"
        "python -c \"import torch, zoo; torch.save({'network_weights': zoo.load('NAME', in_channels=K, num_classes=N)"
        ".state_dict()}, 'pretrained_monai.pth')\"  # K image channels, N labels incl. background\n"
        "nnUNetv2_train DatasetXXX_Name 3d_fullres 0 -p nnUNetPlans_monai -pretrained_weights pretrained_monai.pth\n"
        "```\n\n"
        "nnU-Net's `load_pretrained_weights` copies every tensor but the `.seg_layers.` deep-supervision heads. "
        "`zoo export-nnunet` (the transfer engine) is for nnU-Net's own U-Nets and refuses MONAI's networks."
    ),
)

# --------------------------------------------------------------------------------------------------------------
# 3D self-supervised tasks (Taleb et al.): weights trained by medzoo's export/ssl3d, no numbers of their own
# --------------------------------------------------------------------------------------------------------------

TALEB = Source("Taleb et al., 3D Self-Supervised Methods for Medical Imaging, NeurIPS 2020",
               "https://arxiv.org/abs/2006.03829")

TALEB_TABLE = f"""
BraTS 2018 validation Dice (%) after pretraining on UK Biobank brain MRI with the authors' Keras
implementation (source: {TALEB.name}). These are the paper's numbers for the paper's weights, which were never
published; the weights of this entry were trained with medzoo's `export/ssl3d` and have no published results.

| Model | ET | WT | TC |
|---|---|---|---|
| 3D from scratch | 76.38 | 87.82 | 83.11 |
| 3D supervised (FSL-FAST labels) | 78.88 | 90.11 | 84.92 |
| 3D-CPC | 80.83 | 89.88 | 85.11 |
| 3D-RPL | 81.28 | 90.71 | 86.12 |
| 3D-Jigsaw | 79.66 | 89.20 | 82.52 |
| 3D-Rotation | 80.21 | 89.63 | 84.75 |
| 3D-Exemplar | 79.46 | 90.80 | 83.87 |

The 3D tasks beat their 2D counterparts and scratch most clearly with 5-25% of the labels.
"""

SSL3D = Family(
    key="ssl3d",
    patterns=("ssl3d-*",),
    summary=(
        "One of the five 3D self-supervised proxy tasks of Taleb et al. (contrastive predictive coding, rotation "
        "prediction, jigsaw puzzles, relative patch location, exemplar networks), which learn an encoder from "
        "unlabelled scans. The authors published no weights; this encoder comes from medzoo's re-implementation "
        "(`export/ssl3d`)."
    ),
    results_md=TALEB_TABLE,
    limitations=(
        "Re-implementation: the weights were not trained by the paper's authors and their numbers do not carry "
        "over.",
    ),
)

# --------------------------------------------------------------------------------------------------------------
# UNet++ inside nnU-Net (zoo.archs.nested_unet): no weights of its own yet
# --------------------------------------------------------------------------------------------------------------

UNETPP_TABLE = f"""
UNet++ in place of nnU-Net's U-Net, MSD Task03 Liver, trained from scratch with nnU-Net (v1) on the
validation split (source: {BAJPAI.name}). Dice in %, liver / liver tumour. Branch b is the UNet++ sub-network
pruned at depth b (`branch=b`); branch 5 is the whole network.

| Network | Liver | Liver tumour |
|---|---|---|
| nnU-Net U-Net | 96.18 | 63.37 |
| UNet++ branch 1 | 89.96 | 38.03 |
| UNet++ branch 2 | 94.68 | 59.66 |
| UNet++ branch 3 | 95.78 | 65.83 |
| UNet++ branch 4 | 96.03 | 66.02 |
| UNet++ branch 5 | 96.11 | 66.25 |

For comparison, the nnU-Net U-Net initialised from Models Genesis (`genesis-chest-ct-nnunet-lung`) reached
96.19 / 65.52 on the same split. These numbers belong to the thesis' own trainings; no weights were released
and medzoo has not reproduced them.
"""

UNETPP = Family(
    key="unetpp",
    patterns=("unetpp-*",),
    summary=(
        "UNet++ replaces the U-Net's plain skip connections by nested, densely connected decoder nodes X(i, j), "
        "trained with deep supervision on every top-row node, so that shallower sub-networks can be pruned at "
        "inference. medzoo's NestedUNet builds it from any nnU-Net PlainConvUNet plan (same encoder, so "
        "nnU-Net-family checkpoints transfer into it) and nnU-Net trains it without a fork."
    ),
    results_md=UNETPP_TABLE,
    limitations=(
        "`init='genesis'` fills the encoder and the U-Net path of the nested decoder (about 75% of the "
        "parameters); the other nodes and the heads start from nnU-Net's initialisation.",
        "Pruned branches (`branch=1..4`) have trained heads only with `nnUNetTrainerUNetPlusPlus` (UNet++ deep "
        "supervision on every top-row node); the stock `nnUNetTrainer` trains every node but only the heads of the "
        "full network and of the diagonal nodes X(i, L-i) (nnU-Net's multi-scale deep supervision).",
        "Cost: about 1.5x the parameters of the U-Net of the same plan, 4-5x its training time and 3-3.5x its "
        "peak memory per step on CPU (`benchmarks/unetpp.py`).",
    ),
    licence_notes=(
        "Weights made with `init='genesis'` (and the supervised checkpoint of the recipe, which starts from them) "
        "derive from the Models Genesis weights and inherit their non-commercial licence; the MSD Liver data are "
        "CC BY-SA 4.0.",
    ),
    nnunet_note=(
        "Make any PlainConvUNet plan a UNet++ plan and train it in nnU-Net, starting from Models Genesis "
        "(medzoo installed where nnU-Net runs; the full recipe is `export/unetpp/README.md`):\n\n"
        "```bash\n"
        "zoo plan --plans $nnUNet_preprocessed/DatasetXXX_Name/nnUNetPlans.json --arch unetpp \\\n"
        "    -o $nnUNet_preprocessed/DatasetXXX_Name/nnUNetPlans_unetpp.json\n"
        "zoo export-nnunet genesis-chest-ct-nnunet-lung \\\n"
        "    --plans $nnUNet_preprocessed/DatasetXXX_Name/nnUNetPlans_unetpp.json \\\n"
        "    --dataset-json $nnUNet_preprocessed/DatasetXXX_Name/dataset.json -o pretrained_unetpp.pth\n"
        "export nnUNet_extTrainer=$(python -c \"import zoo.nnunet.trainers as t; print(t.EXT_DIR)\")\n"
        "nnUNetv2_train DatasetXXX_Name 3d_fullres 0 -p nnUNetPlans_unetpp -tr nnUNetTrainerUNetPlusPlus \\\n"
        "    -pretrained_weights pretrained_unetpp.pth\n"
        "```\n\n"
        "In Python: `zoo.load(\"NAME\", init=\"genesis\")` gives the same initialisation for this entry's plan, "
        "with `model.transfer_report` listing every tensor."
    ),
)

# --------------------------------------------------------------------------------------------------------------
# I3D: timm's 2D ImageNet ResNets inflated to 3D (the natural-image baseline)
# --------------------------------------------------------------------------------------------------------------

I3D = Family(
    key="i3d",
    patterns=("i3d-*",),
    summary=(
        "The natural-image baseline that Models Genesis and Med3D compare against, built the I3D way "
        "(Carreira & Zisserman 2017). The conversion is exact where it can be: on a volume constant along z, "
        "every stage reproduces timm's 2D features of that slice away from the z borders (tested against timm "
        "itself). Med3D's key names let `zoo.adapt`, `in_channels=` and the Med3D heads apply unchanged."
    ),
    results_md=(
        "No published numbers for these exact weights. The 'I3D' rows of the Models Genesis tables are a "
        "Kinetics-trained I3D network, not an inflated ImageNet ResNet, so they are not quoted here."
    ),
    limitations=(
        "Pretrained on 2D natural photographs (ImageNet-1k, RGB): no notion of 3D anatomy, Hounsfield units or "
        "MR contrast; the inflated z axis only repeats the 2D filters.",
        "ImageNet's mean/std normalisation does not apply to CT or MR; z-score (or a CT window scaled to unit "
        "variance) is a reasonable start.",
        "The timm Hub revision and sha256 are not pinned yet: the file is verified against the Hub's LFS hash.",
    ),
    licence_notes=(
        "timm's weights are published under Apache-2.0; they were trained on ImageNet-1k, whose terms of access "
        "restrict the images to non-commercial research. Check whether that matters for your use.",
    ),
)

# --------------------------------------------------------------------------------------------------------------
# STU-Net: supervised TotalSegmentator pretraining, S/B/L/H
# --------------------------------------------------------------------------------------------------------------

STUNET = Family(
    key="stunet",
    patterns=("stunet-*",),
    summary=(
        "STU-Net scales nnU-Net's U-Net from 14.6M to 1.46B parameters (widths 16-96 x [1, 2, 4, 8, 16, 16], 1-3 "
        "residual blocks per stage) and pretrains it with full supervision on TotalSegmentator (104 structures). "
        "medzoo's STUNet has the authors' state-dict keys (their nnU-Net v1 checkpoints load tensor for tensor; "
        "outputs tested against a re-implementation of their published layout) and nnU-Net v2's constructor "
        "signature, so nnU-Net trains it without a fork."
    ),
    results_md=(
        "The authors report TotalSegmentator Dice and downstream fine-tuning results per size in the paper "
        "(arXiv 2304.06716, tables of direct inference and fine-tuning); they are not reproduced here."
    ),
    limitations=(
        "The 105 output channels follow STU-Net's label order (label_orders.json of the authors' repository), "
        "which differs from TotalSegmentator's own.",
        "Input: per-image z-score (no HU window) at 1.5 mm isotropic; other spacings or CT windowing change the "
        "input distribution the weights saw.",
        "Transfer into nnU-Net plans goes into STU-Net plans only (`zoo plan NAME --arch stunet`): its residual "
        "blocks, 1x1 shortcuts and nearest-neighbour + 1x1 upsampling have no tensor-for-tensor counterpart in "
        "PlainConvUNet, ResidualEncoderUNet or UNet++, so such a transfer is refused.",
        "The Hub revision and sha256 are not pinned yet: the file is verified against the Hub's LFS hash.",
    ),
    licence_notes=(
        "Apache-2.0 (the authors' repository); trained on TotalSegmentator, whose data are CC BY 4.0.",
    ),
    nnunet_note=(
        "Fine-tune in nnU-Net v2 with STU-Net's published topology and preprocessing (medzoo installed where "
        "nnU-Net runs):\n\n"
        "```bash\n"
        "zoo plan NAME --plans $nnUNet_preprocessed/DatasetXXX_Name/nnUNetPlans.json --arch stunet \\\n"
        "    -o $nnUNet_preprocessed/DatasetXXX_Name/nnUNetPlans_stunet.json\n"
        "nnUNetv2_preprocess -d XXX -plans_name nnUNetPlans_stunet -c 3d_fullres\n"
        "zoo export-nnunet NAME --plans $nnUNet_preprocessed/DatasetXXX_Name/nnUNetPlans_stunet.json \\\n"
        "    --dataset-json $nnUNet_preprocessed/DatasetXXX_Name/dataset.json -o pretrained_stunet.pth\n"
        "nnUNetv2_train DatasetXXX_Name 3d_fullres 0 -p nnUNetPlans_stunet -pretrained_weights pretrained_stunet.pth\n"
        "```"
    ),
)

# --------------------------------------------------------------------------------------------------------------
# OpenMind ResEnc-L (nnssl)
# --------------------------------------------------------------------------------------------------------------

OPENMIND = Family(
    key="openmind",
    patterns=("openmind-*",),
    summary=(
        "OpenMind benchmarks 3D self-supervised learning on one large public corpus: 114k brain MRI volumes of 23 "
        "modalities from OpenNeuro, one CNN (nnU-Net's ResEnc-L) and one transformer, each pretrained with "
        "several methods by the nnssl framework and fine-tuned in nnU-Net on the same downstream tasks. The "
        "paper reports that masked-image-modelling (MAE) pretraining gives the best segmentation and "
        "contrastive methods the best classification, and that pretrained networks can exceed a strong "
        "from-scratch ResEnc-L."
    ),
    results_md=(
        "The paper reports fine-tuned segmentation and classification results on its downstream benchmark; "
        "medzoo does not quote those numbers yet (see the paper)."
    ),
    limitations=(
        "Pretrained on brain MRI at 1 mm isotropic spacing with a per-volume z-score: CT and other anatomy are "
        "out of domain (the authors' recipe still z-scores every channel, CT too).",
        "The VoCo, SimCLR and SwinUNETR checkpoints hold the encoder only; the MAE and Volume Fusion ones the "
        "whole U-Net, whose decoder the authors' fine-tuning discards.",
        "Not confirmed from the files themselves (no Hub access when the entries were written): sha256 and "
        "revision (checked against the Hub's LFS hash on download) and the trainer arguments of the published "
        "runs (the trainers' defaults are recorded).",
    ),
    licence_notes=(
        "Weights: CC BY 4.0 (the Hub repositories' licence tag): attribution required, commercial use and "
        "redistribution allowed. The nnssl training code is CC BY-SA 4.0; medzoo does not contain it.",
    ),
    pipeline_tag="image-feature-extraction",
    nnunet_note=(
        "`zoo plan openmind-resencl-mae --plans nnUNetPlans.json -o ptPlans.json --adaptation-plan` writes the "
        "authors' fine-tuning recipe (ResEnc-L, 1 mm, z-score for every channel, patch 160^3) into an nnU-Net "
        "v2 plan; `zoo export-nnunet` then transfers the weights into it."
    ),
)

# --------------------------------------------------------------------------------------------------------------
# VoCo (Luffy503/VoCo): volume contrast and omni-supervised CT pretraining
# --------------------------------------------------------------------------------------------------------------

VOCO = Family(
    key="voco",
    patterns=("voco-*",),
    summary=(
        "VoCo learns 3D CT representations from geometric context: a volume is cut into non-overlapping base "
        "crops, and the network must predict from features alone where a random crop lies among them (volume "
        "contrast). The large-scale follow-up pretrains on PreCT-160K (about 160K public CT volumes), adds "
        "VoComni (20K volumes pseudo-labelled by VoCo with 20 organ and tumour classes) for supervised and "
        "omni-supervised pretraining, and releases networks from a 31M-parameter nnU-Net to 1.2B-parameter "
        "Swin UNETRs."
    ),
    results_md=(
        "The papers report fine-tuning results on more than 50 downstream tasks (segmentation, classification, "
        "registration, vision-language); medzoo does not quote those numbers yet (see the papers)."
    ),
    limitations=(
        "Pretrained on CT only, resampled to 1.5 mm in RAS orientation with HU clipped to [-175, 250] and "
        "scaled to [0, 1] (MONAI pipeline); MR and other normalisations are out of domain.",
        "The authors fine-tune the nnU-Net in nnU-Net's own preprocessing (z, y, x arrays, nnU-Net's CT "
        "normalisation), which they note differs from the pretraining; medzoo permutes the kernels from the "
        "pretraining's x, y, z arrays to the plan's axis order instead, and `zoo plan --match-input` writes the "
        "pretraining normalisation into a plan.",
        "The authors' loader keeps every tensor whose name and shape match and skips the rest without a word; "
        "medzoo refuses a file whose layout differs from the entry's and names the key.",
        "The SSL-head files (`voco-b-ssl`) hold the Swin encoder only: the SwinUNETR decoder and head start from "
        "MONAI's initialisation and must be fine-tuned.",
    ),
    licence_notes=(
        "Weights and code: Apache-2.0 (the Hub repository's licence tag and the GitHub repository's LICENSE). "
        "The pretraining collections (PreCT-160K, VoComni) keep their own terms; several restrict use to research.",
    ),
    nnunet_note=(
        "`zoo export-nnunet voco-omni-nnunet --plans nnUNetPlans.json --dataset-json dataset.json -o "
        "pretrained.pth` transfers the weights into any nnU-Net v2 plan (per-tensor report); "
        "`zoo plan voco-omni-nnunet --plans nnUNetPlans.json -o nnUNetPlans_voco.json --match-input` first makes "
        "the plan's network and input the checkpoint's (6 stages, 32-320 features, HU [-175, 250]; add "
        "`--match-spacing` for 1.5 mm)."
    ),
)

# --------------------------------------------------------------------------------------------------------------
# MONAI model-zoo bundles
# --------------------------------------------------------------------------------------------------------------

MONAI_BUNDLE = Family(
    key="monai-bundle",
    patterns=("monai-*",),
    summary=(
        "A MONAI model-zoo bundle: the network and weights MONAI publishes with its inference and training "
        "configurations. The whole-body CT bundle trains MONAI's SegResNet (init_filters=32, 18.80M parameters) "
        "to segment the 104 TotalSegmentator structures plus background at 1.5 mm; medzoo builds MONAI's own "
        "class from the bundle's `configs/inference.json` and loads `models/model.pt` tensor for tensor."
    ),
    results_md=(
        "The bundle's README reports its validation Dice; medzoo does not quote it and did not reproduce it."
    ),
    limitations=(
        "Input as the bundle's inference.json: RAS, 1.5 mm, z-score over non-zero voxels then scaled to [-1, 1] "
        "per volume; this normalisation has no nnU-Net scheme, so nnU-Net's CT normalisation differs from it.",
        "Transfer into nnU-Net's PlainConvUNet / ResidualEncoderUNet plans is refused (MONAI's SegResNet blocks "
        "have no tensor-for-tensor counterpart there); nnU-Net v2 trains the SegResNet itself instead "
        "(`zoo plan NAME --arch monai`).",
        "Requires MONAI (`pip install \"medzoo[monai]\"`). Not confirmed from the file itself: revision and "
        "sha256 (verified against the Hub's LFS hash on download), and whether it is a raw state dict or "
        "`{'model': ...}` (both are read).",
    ),
    licence_notes=(
        "The bundle (code and weights) is Apache-2.0. Its training data are TotalSegmentator's (zenodo record "
        "6802614): check those terms for your use. The bundle's metadata says it is an example, not for "
        "diagnostic use.",
    ),
    nnunet_note=SUPREM_MONAI.nnunet_note,
)

# --------------------------------------------------------------------------------------------------------------
# fallback
# --------------------------------------------------------------------------------------------------------------

GENERIC = Family(
    key="generic",
    patterns=("*",),
    summary="",
    results_md="No published results for these weights.",
)

FAMILIES: tuple[Family, ...] = (GENESIS_DEMO, GENESIS_FAMILY, MED3D_FAMILY, SUPREM_MONAI, SUPREM, SSL3D, UNETPP,
                                I3D, STUNET, OPENMIND, VOCO, MONAI_BUNDLE)


def family_for(entry: ModelEntry) -> Family:
    """The prose family of ``entry`` (the first whose pattern matches its name), else :data:`GENERIC`."""
    for family in FAMILIES:
        if family.matches(entry.name):
            return family
    return GENERIC


def results_for(entry: ModelEntry) -> list[Result]:
    """Published numbers measured with ``entry``'s own weights (what ``model-index`` may claim)."""
    return [r for r in family_for(entry).results if r.applies_to(entry.name)]
