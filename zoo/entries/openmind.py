"""OpenMind ResEnc-L (Wald et al. 2025, nnssl): five self-supervised pretrainings of one ResEnc-L on brain MRI.

Facts, each read in the authors' code (github.com/MIC-DKFZ/nnssl, ``src/nnssl/``):

* Network: ``architectures/architecture_registry.py`` ``get_res_enc_l`` = dynamic-network-architectures'
  ``ResidualEncoderUNet`` with 6 stages, features 32, 64, 128, 256, 320, 320, kernels 3^3 everywhere, strides
  1, 2, 2, 2, 2, 2, residual blocks 1, 3, 4, 6, 6, 6, one decoder convolution per stage, conv bias,
  ``InstanceNorm3d(eps=1e-5, affine=True)``, ``LeakyReLU(inplace=True)`` (slope 0.01), no dropout,
  ``deep_supervision=False`` in pretraining (the decoder still holds one 1x1x1 ``seg_layers`` conv per stage).
  102.3M parameters with one output channel.
* What the checkpoint holds (``network_weights`` = the trained module's ``state_dict()``, trainer classes under
  ``training/nnsslTrainer/``): MAE (``BaseMAETrainer``, 1 output channel, 75 % of 16^3 blocks masked, 160^3
  patch) and Volume Fusion (``VolumeFusionTrainer``, ``foreground_classes=5`` output channels, 160^3) save the
  whole U-Net, decoder included. SimCLR (``SimCLRTrainer``) and VoCo (``VoCoTrainer``) save
  ``VoCoArchitecture(encoder)``: the ResEnc-L *encoder only* under ``encoder.*`` plus a ``projector.*`` MLP;
  SwinUNETR pretraining (``SwinUNETRTrainer``) saves the encoder plus ``rotation_proj_head`` /
  ``contrast_proj_head`` / ``recon_proj_head``. The encoder-only checkpoints are therefore the ``nnunet_encoder``
  architecture here (the heads are dropped by the converter and listed in the conversion metadata).
* Container (``AbstractTrainer.save_checkpoint``): ``{network_weights, optimizer_state, grad_scaler_state,
  logging, _best_ema, current_epoch, init_args, trainer_name, nnssl_adaptation_plan}``, numpy values converted
  to Python / tensors before ``torch.save``; the authors' fine-tuning fork reads it with
  ``torch.load(weights_only=True)`` (github.com/TaWald/nnUNet, branch ``nnssl_finetuning_inclusion``,
  ``nnunetv2/experiment_planning/like_nnssl.py``), so it is plain data.
* Input: the ``onemmiso`` configuration of nnssl's planner (``default_experiment_planner.py``): 1 mm isotropic,
  ``ZScoreNormalization`` with ``use_mask_for_norm=False``; images read in nnU-Net's z, y, x order (the
  nibabel reader transposes to SimpleITK's order). The fine-tuning recipe (``like_nnssl.py``,
  ``adaptation_mode=like_pretrained``) resamples to the pretraining spacing, z-scores *every* channel (CT
  too), builds the ResEnc-L and uses the adaptation plan's ``recommended_downstream_patchsize`` (160^3,
  ``AbstractTrainer``); only ``encoder.stem`` and ``encoder.stages`` are loaded, the decoder starts fresh.

Not confirmed (no Hub access from here): the files' sha256 and Hub revision (left ``None``: verified against the
Hub's LFS hash on download), which trainer arguments the published runs used (the trainers' defaults are
recorded), and whether the published files kept the optimizer state.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from ._nnunet_kwargs import unet_arch_kwargs
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

#: ``get_res_enc_l`` as nnU-Net v2 plan ``arch_kwargs`` (ops as the class paths nnU-Net's plans use)
RESENC_L_ARCH_KWARGS: Mapping[str, Any] = MappingProxyType(unet_arch_kwargs(
    [32, 64, 128, 256, 320, 320], [[1, 1, 1]] + [[2, 2, 2]] * 5,
    blocks_key="n_blocks_per_stage", blocks_per_stage=[1, 3, 4, 6, 6, 6], n_conv_per_stage_decoder=[1] * 5))

#: the fine-tuning patch every nnssl trainer recommends (``AbstractTrainer.recommended_downstream_patchsize``)
RECOMMENDED_DOWNSTREAM_PATCH = (160, 160, 160)

OPENMIND_LICENSE = License(
    spdx="cc-by-4.0",
    notice=(
        "OpenMind ResEnc-L weights: CC BY 4.0 (the licence tag of the Hub repositories); attribution required "
        "(cite the OpenMind paper). The nnssl training code itself is CC BY-SA 4.0. Research use only, not for "
        "diagnostic use."
    ),
)

OPENMIND_PAPER = Paper(
    title="An OpenMind for 3D medical vision self-supervised learning (Wald et al., ICCV 2025)",
    url="https://arxiv.org/abs/2412.17041",
    bibtex="""@article{wald2024openmind,
  title   = {An OpenMind for 3D medical vision self-supervised learning},
  author  = {Wald, Tassilo and Ulrich, Constantin and Suprijadi, Jonathan and Ziegler, Sebastian and
             Nohel, Michal and Peretzke, Robin and K{\\"o}hler, Gregor and Maier-Hein, Klaus H.},
  journal = {arXiv preprint arXiv:2412.17041},
  year    = {2024}
}""",
)

_DATA = ("OpenMind: 114k 3D brain MRI volumes of 23 MRI modalities from 800 OpenNeuro studies (the Hub dataset "
         "AnonRes/OpenMind), preprocessed to 1 mm isotropic spacing")
_INTENSITY = ("z-score of each channel of each volume over all voxels (nnU-Net ZScoreNormalization, "
              "use_mask_for_norm=False), every channel, CT too; 1 mm isotropic; nnU-Net z, y, x axis order")
_ZSCORE = Normalization(scheme="zscore", foreground=False)
_NOT_CONFIRMED = (
    "Not confirmed from here (no Hub access): sha256 and revision of the file (verified against the Hub's LFS "
    "hash on download), the trainer arguments of the published run (the trainer's defaults are recorded)."
)


def _input(patch: tuple[int, int, int]) -> InputContract:
    return InputContract(
        in_channels=1,
        modality="MRI",
        axis_order="zyx",
        intensity=_INTENSITY,
        patch_size=patch,
        spacing_mm=(1.0, 1.0, 1.0),
        channel_names=("MRI",),
        divisible_by=32,
        normalization=_ZSCORE,
    )


_FIRST_CONV = ("encoder.stem.convs.0.conv.weight",)


def _full(name: str, repo: str, method: str, trainer: str, classes: int, output: OutputContract,
          description: str, tags: tuple[str, ...], note: str = "") -> ModelEntry:
    return ModelEntry(
        name=name,
        architecture="residual_encoder_unet",
        arch_kwargs=dict(RESENC_L_ARCH_KWARGS),
        description=description,
        source=CheckpointSource(repo_id=repo, filename="checkpoint_final.pth", format="nnssl",
                                revision_note="Hub revision not recorded ('main' is used until pinned)"),
        license=OPENMIND_LICENSE,
        input=_input((160, 160, 160)),
        pretraining=Pretraining(data=_DATA, method=f"{method} (nnssl {trainer})", datasets=("OpenMind",)),
        paper=OPENMIND_PAPER,
        first_conv=_FIRST_CONV,
        classifier=("decoder.seg_layers",),
        num_classes=classes,
        tags=("self-supervised", "nnunet", "resenc-l", "mri", "brain", *tags),
        weights_note=(note + " " if note else "") + _NOT_CONFIRMED,
        output=output,
    )


def _encoder(name: str, repo: str, method: str, trainer: str, patch: tuple[int, int, int], heads: str,
             description: str, tags: tuple[str, ...]) -> ModelEntry:
    return ModelEntry(
        name=name,
        architecture="nnunet_encoder",
        arch_kwargs={"unet": "residual_encoder_unet", **RESENC_L_ARCH_KWARGS},
        description=description,
        source=CheckpointSource(repo_id=repo, filename="checkpoint_final.pth", format="nnssl",
                                revision_note="Hub revision not recorded ('main' is used until pinned)"),
        license=OPENMIND_LICENSE,
        input=_input(patch),
        pretraining=Pretraining(data=_DATA, method=f"{method} (nnssl {trainer})", datasets=("OpenMind",)),
        paper=OPENMIND_PAPER,
        first_conv=_FIRST_CONV,
        classifier=("head",),
        num_classes=None,
        tags=("self-supervised", "nnunet", "resenc-l", "mri", "brain", "encoder", *tags),
        weights_note=(f"Encoder only: the upstream file holds the ResEnc-L encoder and the pretraining heads "
                      f"({heads}), which are dropped. " + _NOT_CONFIRMED),
        output=OutputContract(
            kind="features",
            channels=320,
            target="the bottleneck feature map of the ResEnc-L encoder (features_only=True: all six stages)",
            resolution="1/32 of the input per axis (five stride-2 stages)",
        ),
    )


_MAE_DESCRIPTION = (
    "OpenMind ResEnc-L, masked-autoencoder pretrained: nnU-Net's ResEnc-L U-Net (ResidualEncoderUNet, 102.3M "
    "parameters) trained to reconstruct 75 % masked 16^3 blocks of 160^3 brain MRI patches. The whole U-Net, "
    "decoder included; fine-tune it in nnU-Net v2 with `zoo plan --adaptation-plan` (the authors' recipe)."
)
_MAE_OUTPUT = OutputContract(
    kind="logits",
    activation="identity",  # a regression: the values are the reconstruction
    channels=1,
    target="the reconstructed input (MSE on the masked voxels during pretraining)",
    scale="the z-scored intensity of the input",
    resolution="input size",
)

OPENMIND_RESENCL_MAE = _full(
    "openmind-resencl-mae", "AnonRes/ResEncL-OpenMind-MAE", "masked image modelling (MAE-style, 75 % of 16^3 "
    "blocks masked, MSE on masked voxels)", "BaseMAETrainer", 1, _MAE_OUTPUT, _MAE_DESCRIPTION, ("mae",))

OPENMIND_RESENCL_MAE_DKFZ = _full(
    "openmind-resencl-mae-dkfz", "MIC-DKFZ/ResEncL-OpenMind-MAE", "masked image modelling (MAE-style, 75 % of "
    "16^3 blocks masked, MSE on masked voxels)", "BaseMAETrainer", 1, _MAE_OUTPUT,
    _MAE_DESCRIPTION + " The copy in the MIC-DKFZ organisation's OpenMind collection.", ("mae",),
    note="Whether this file is byte-identical to AnonRes/ResEncL-OpenMind-MAE is not confirmed.")

OPENMIND_RESENCL_VF = _full(
    "openmind-resencl-vf", "AnonRes/ResEncL-OpenMind-VF", "Volume Fusion: per-voxel classification of the "
    "mixing coefficient of two fused volumes (5 classes)", "VolumeFusionTrainer", 5,
    OutputContract(kind="logits", activation="softmax", channels=5,
                   target="the per-voxel mixing-coefficient class (0, 0.25, 0.5, 0.75, 1) of two fused volumes",
                   resolution="input size"),
    "OpenMind ResEnc-L, Volume Fusion pretrained: the ResEnc-L U-Net trained to segment which of five mixing "
    "coefficients fused two brain MRI volumes at each voxel. The whole U-Net, decoder included.",
    ("volume-fusion",), note="5 output channels is the trainer's default foreground_classes.")

OPENMIND_RESENCL_VOCO = _encoder(
    "openmind-resencl-voco", "AnonRes/ResEncL-OpenMind-VoCo", "VoCo volume contrast: predict the overlap of "
    "64^3 crops with 4x4x1 base crops of a 256x256x64 patch", "VoCoTrainer", (64, 64, 64), "projector.*",
    "OpenMind ResEnc-L encoder, VoCo pretrained (volume contrast on brain MRI crops). Encoder only: transfers "
    "into the encoder of any nnU-Net ResEnc plan, the decoder starts fresh.", ("voco", "contrastive"))

OPENMIND_RESENCL_SIMCLR = _encoder(
    "openmind-resencl-simclr", "AnonRes/ResEncL-OpenMind-SimCLR", "SimCLR contrastive learning on 64^3 crops "
    "of 192x192x64 patches", "SimCLRTrainer", (64, 64, 64), "projector.*",
    "OpenMind ResEnc-L encoder, SimCLR pretrained (contrastive learning on brain MRI crops). Encoder only.",
    ("simclr", "contrastive"))

OPENMIND_RESENCL_SWINUNETR = _encoder(
    "openmind-resencl-swinunetr", "AnonRes/ResEncL-OpenMind-SwinUNETR", "SwinUNETR-style pretraining "
    "(rotation, contrastive and masked-reconstruction heads) on 160^3 patches", "SwinUNETRTrainer",
    (160, 160, 160), "rotation_proj_head.*, contrast_proj_head.*, recon_proj_head.*",
    "OpenMind ResEnc-L encoder pretrained with the Swin UNETR recipe (rotation, contrast, inpainting) applied "
    "to the ResEnc-L. Encoder only.", ("swinunetr",))


def _adaptation_plan(pretrain_patch: tuple[int, int, int]) -> Mapping[str, Any]:
    """The adaptation plan an nnssl trainer writes for a ResEnc-L (``AdaptationPlan.serialize``), reconstructed
    from the trainer code: what ``zoo plan --adaptation-plan`` uses when no upstream file is given."""
    return MappingProxyType({
        "architecture_plans": {"arch_class_name": "ResEncL", "arch_kwargs": None,
                               "arch_kwargs_requiring_import": None},
        "pretrain_plan": {"configurations": {"onemmiso": {
            "spacing_style": "onemmiso", "spacing": [1, 1, 1], "normalization_schemes": ["ZScoreNormalization"],
            "use_mask_for_norm": [False], "patch_size": list(pretrain_patch)}}},
        "pretrain_num_input_channels": 1,
        "recommended_downstream_patchsize": list(RECOMMENDED_DOWNSTREAM_PATCH),
        "key_to_encoder": "encoder.stages",
        "key_to_stem": "encoder.stem",
        "keys_to_in_proj": ["encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"],
        "key_to_lpe": None,
    })


ENTRIES: tuple[ModelEntry, ...] = (
    OPENMIND_RESENCL_MAE,
    OPENMIND_RESENCL_MAE_DKFZ,
    OPENMIND_RESENCL_VF,
    OPENMIND_RESENCL_VOCO,
    OPENMIND_RESENCL_SIMCLR,
    OPENMIND_RESENCL_SWINUNETR,
)

#: entry name -> the registry's record of its nnssl adaptation plan (upstream's serialized form)
ADAPTATION_PLANS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {e.name: _adaptation_plan(e.input.patch_size) for e in ENTRIES})
