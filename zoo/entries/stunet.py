"""STU-Net S/B/L/H (Huang et al. 2023): supervised pretraining on TotalSegmentator (105 classes) in nnU-Net v1.

Facts, each read in the authors' code (github.com/uni-medical/STU-Net):

* Network: ``nnUNet-1.7.1/nnunet/network_architecture/STUNet.py`` (medzoo's own exact class:
  :mod:`zoo.archs.stunet`). Sizes from ``nnUNet-1.7.1/nnunet/training/network_training/STUNetTrainer.py`` (and the
  nnU-Net v2 port ``nnUNet-2.2/nnunetv2/training/nnUNetTrainer/STUNetTrainer.py``): widths 16 / 32 / 64 / 96 x
  [1, 2, 4, 8, 16, 16], residual blocks per stage 1 / 1 / 2 / 3, kernels 3^3 everywhere, deep supervision on.
  Parameters with the 105-class head: 14,596,941 / 58,262,669 / 440,302,605 / 1,457,326,221 (the README's 14.6M,
  58.26M, 440.30M, 1457.33M).
* Pretraining plan (``plan_files/*_ep4k.model.pkl``, read statically): 1 input channel, normalisation scheme
  ``nonCT`` (per-image z-score, ``use_mask_for_norm`` False), 104 foreground classes, spacing 1.5 mm isotropic,
  patch 128^3, batch size 2, ``pool_op_kernel_sizes`` ``[[2, 2, 2]] * 4 + [[1, 1, 2]]`` (``transpose_forward``
  [0, 1, 2]: nnU-Net's z, y, x array order, so the last axis is pooled five times).
* Checkpoint (nnU-Net v1 ``NetworkTrainer.save_checkpoint``): ``{epoch, state_dict, optimizer_state_dict,
  lr_scheduler_state_dict, plot_stuff, best_stuff[, amp_grad_scaler]}``; ``state_dict`` holds the network's keys
  unprefixed.
* Hub files (github.com/uni-medical/MedIM ``medim/models/_hf_utils.py``): ``ziyanhuang/STU-Net``
  ``{small,base,large,huge}_ep4k.model``, 1 input channel, 105 classes. Licence: Apache-2.0 (the STU-Net
  repository's LICENSE).

Not confirmed from here (no Hub access): sha256 and revision of the files (left ``None``: verified against the
Hub's LFS hash on download), the licence field of the Hub card, and whether the published files kept the optimizer
state (the converter drops it either way).
"""

from __future__ import annotations

from typing import Any

from ..entry import (
    CheckpointSource,
    InputContract,
    License,
    ModelEntry,
    Normalization,
    OutputContract,
    Paper,
    Pretraining,
)

STUNET_REPO = "ziyanhuang/STU-Net"

STUNET_LICENSE = License(
    spdx="apache-2.0",
    notice=(
        "STU-Net weights: Apache-2.0 (the licence of the authors' repository, uni-medical/STU-Net). Trained on "
        "TotalSegmentator (CC BY 4.0 data). Research use, not for diagnostic use."
    ),
)

STUNET_PAPER = Paper(
    title="STU-Net: Scalable and Transferable Medical Image Segmentation Models Empowered by Large-Scale "
          "Supervised Pre-training (Huang et al., 2023)",
    url="https://arxiv.org/abs/2304.06716",
    bibtex="""@misc{huang2023stunet,
  title         = {STU-Net: Scalable and Transferable Medical Image Segmentation Models Empowered by Large-Scale
                   Supervised Pre-training},
  author        = {Huang, Ziyan and Wang, Haoyu and Deng, Zhongying and Ye, Jin and Su, Yanzhou and Sun, Hui and
                   He, Junjun and Gu, Yun and Gu, Lixu and Zhang, Shaoting and Qiao, Yu},
  year          = {2023},
  eprint        = {2304.06716},
  archivePrefix = {arXiv},
  primaryClass  = {cs.CV}
}""",
)

#: the TotalSegmentator pretraining plan's strides (stem first, nnU-Net z, y, x order)
PRETRAINING_STRIDES = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 1, 2]]

#: size -> (base width, residual blocks per stage, parameters with the 105-class head)
SIZES: dict[str, tuple[int, int, int]] = {
    "small": (16, 1, 14_596_941),
    "base": (32, 1, 58_262_669),
    "large": (64, 2, 440_302_605),
    "huge": (96, 3, 1_457_326_221),
}

_INTENSITY = ("per-image z-score over all voxels (nnU-Net v1 scheme 'nonCT', use_mask_for_norm False; no HU "
              "clipping), resampled to 1.5 mm isotropic; nnU-Net z, y, x axis order")
_NOT_CONFIRMED = (
    "Not confirmed from here (no Hub access): sha256 and revision of the file (verified against the Hub's LFS hash "
    "on download) and the Hub card's licence field; the licence of record is the Apache-2.0 of the authors' "
    "repository."
)


def stunet_arch_kwargs(size: str) -> dict[str, Any]:
    """The plan ``arch_kwargs`` of STU-Net ``size`` on the pretraining plan's strides."""
    width, blocks, _ = SIZES[size]
    return {
        "n_stages": 6,
        "features_per_stage": [width * f for f in (1, 2, 4, 8, 16, 16)],
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * 6,
        "strides": [list(s) for s in PRETRAINING_STRIDES],
        "n_blocks_per_stage": [blocks] * 6,
    }


def _entry(size: str) -> ModelEntry:
    width, blocks, params = SIZES[size]
    letter = size[0].upper()
    return ModelEntry(
        name=f"stunet-{size}",
        architecture="stunet",
        arch_kwargs=stunet_arch_kwargs(size),
        description=(
            f"STU-Net-{letter} ({params / 1e6:.1f}M parameters): nnU-Net-style U-Net of residual blocks (widths "
            f"{width}-{16 * width}, {blocks} block(s) per stage, 1x1 strided shortcuts, nearest-neighbour + 1x1 "
            "upsampling) trained with full supervision on TotalSegmentator (104 structures + background, 4000 "
            "epochs). Trains inside nnU-Net v2 unchanged (network_class_name zoo.archs.stunet.STUNet; "
            "`zoo plan --arch stunet`)."
        ),
        source=CheckpointSource(
            repo_id=STUNET_REPO,
            filename=f"{size}_ep4k.model",
            format="stunet-v1",
            revision_note="revision and sha256 not recorded: 'main' is used, verified against the Hub's LFS hash",
        ),
        license=STUNET_LICENSE,
        input=InputContract(
            in_channels=1,
            modality="CT",
            axis_order="zyx",
            intensity=_INTENSITY,
            patch_size=(128, 128, 128),
            spacing_mm=(1.5, 1.5, 1.5),
            channel_names=("CT",),
            divisible_by=32,
            normalization=Normalization(scheme="zscore", foreground=False),
        ),
        pretraining=Pretraining(
            data="TotalSegmentator: 1,204 CT scans with 104 anatomical structures (27 organs, 59 bones, 10 muscles, "
                 "8 vessels)",
            method=(f"supervised segmentation in nnU-Net v1 (STUNetTrainer_{size}_ep4k: 4000 epochs, SGD lr 1e-2, "
                    "Nesterov momentum 0.99, deep supervision, mirror augmentation), patch 128^3 at 1.5 mm"),
            datasets=("TotalSegmentator",),
            recipe="",
        ),
        paper=STUNET_PAPER,
        first_conv=("conv_blocks_context.0.0.conv1.weight", "conv_blocks_context.0.0.conv3.weight"),
        classifier=("seg_outputs",),
        num_classes=105,
        tags=("supervised", "unet", "stunet", "ct", "whole-body", "totalsegmentator"),
        weights_note=_NOT_CONFIRMED,
        output=OutputContract(
            kind="logits",
            activation="softmax",
            channels=105,
            target=("background + the 104 TotalSegmentator (v1) structures in STU-Net's label order "
                    "(label_orders.json of the STU-Net repository, which differs from TotalSegmentator's own)"),
            resolution="input size (deep_supervision=True: a list of 5 logits, full resolution first)",
        ),
    )


STUNET_SMALL = _entry("small")
STUNET_BASE = _entry("base")
STUNET_LARGE = _entry("large")
STUNET_HUGE = _entry("huge")

ENTRIES: tuple[ModelEntry, ...] = (STUNET_SMALL, STUNET_BASE, STUNET_LARGE, STUNET_HUGE)
