"""MONAI model-zoo bundles on the Hugging Face Hub (Apache-2.0 bundles; data terms per bundle).

Facts: Project-MONAI/model-zoo ``models/wholeBody_ct_segmentation/configs/inference.json`` (``network_def``:
``SegResNet(spatial_dims=3, in_channels=1, out_channels=105, init_filters=32, blocks_down=[1,2,2,4],
blocks_up=[1,1,1], dropout_prob=0.2)``; preprocessing; ``CheckpointLoader`` with ``load_dict={'model': network}``,
which reads a raw state dict), ``configs/metadata.json`` (version 0.2.5, MONAI 1.4.0), ``LICENSE`` (Apache-2.0),
``docs/data_license.txt`` (TotalSegmentator data, zenodo record 6802614). File: https://huggingface.co/MONAI/
wholeBody_ct_segmentation ``models/model.pt``; revision and sha256 not recorded (None: verified against the Hub's
LFS hash on download; the bundle's ``large_files.yml`` gives md5 aded45dea52f9c00b37922bcd0a98502 for the NVIDIA
download of the same name, not checked to be the Hub file).
"""

from ..entry import CheckpointSource, InputContract, License, ModelEntry, OutputContract, Paper, Pretraining

MONAI_BUNDLE_APACHE = License(
    spdx="apache-2.0",
    link="https://github.com/Project-MONAI/model-zoo/blob/dev/models/wholeBody_ct_segmentation/LICENSE",
    notice=(
        "The bundle (code and weights) is Apache-2.0. Its training data is TotalSegmentator's (zenodo record "
        "6802614; the bundle's docs/data_license.txt): check those terms for your use. The bundle's metadata: "
        "'This is an example, not to be used for diagnostic purposes'."
    ),
)

MONAI_WHOLEBODY_CT = ModelEntry(
    name="monai-wholebody-ct",
    architecture="monai_segresnet",
    arch_kwargs={"blocks_down": (1, 2, 2, 4), "blocks_up": (1, 1, 1), "init_filters": 32, "dropout_prob": 0.2},
    description=(
        "MONAI whole-body CT segmentation bundle (high-resolution model): MONAI's SegResNet(init_filters=32; 18.80M "
        "parameters) segmenting the 104 TotalSegmentator structures plus background (105 output channels) at "
        "1.5 mm. Not confirmed from the file itself: the revision and sha256 (None), and whether the Hub's "
        "models/model.pt is the raw state dict (MONAI's CheckpointLoader also accepts {'model': ...}; both are read)."
    ),
    source=CheckpointSource(
        repo_id="MONAI/wholeBody_ct_segmentation",
        filename="models/model.pt",
        format="monai-bundle",
        revision_note="revision not yet recorded; 'main' is used until pinned",
    ),
    license=MONAI_BUNDLE_APACHE,
    input=InputContract(
        in_channels=1,
        modality="CT",
        axis_order="xyz",
        intensity=(
            "orientation RAS, spacing 1.5 mm (bilinear); NormalizeIntensity over non-zero voxels (z-score), then "
            "ScaleIntensity to [-1, 1] per volume"
        ),
        patch_size=(96, 96, 96),
        spacing_mm=(1.5, 1.5, 1.5),
        channel_names=("CT",),
        divisible_by=8,
        normalization=None,  # z-score then min-max to [-1, 1]: no Normalization scheme reproduces it
    ),
    pretraining=Pretraining(
        data="TotalSegmentator (1,204 CT scans, 104 structures)",
        method="supervised segmentation (the bundle's configs/train.json)",
        datasets=("TotalSegmentator",),
        recipe="",
    ),
    paper=Paper(
        title="TotalSegmentator: robust segmentation of 104 anatomical structures in CT images",
        url="https://arxiv.org/abs/2208.05868",
        bibtex="""@article{wasserthal2023totalsegmentator,
  title   = {TotalSegmentator: Robust Segmentation of 104 Anatomic Structures in CT Images},
  author  = {Wasserthal, Jakob and Breit, Hanns-Christian and Meyer, Manfred T. and Pradella, Maurice and
             Hinck, Daniel and Sauter, Alexander W. and Heye, Tobias and Boll, Daniel T. and Cyriac, Joshy and
             Yang, Shan and Bach, Michael and Segeroth, Martin},
  journal = {Radiology: Artificial Intelligence},
  year    = {2023}
}""",
    ),
    first_conv=("convInit.conv.weight",),
    classifier=("conv_final.2", "decoder.seg_layers"),
    num_classes=105,
    tags=("supervised", "segresnet", "monai", "ct", "whole-body", "totalsegmentator"),
    output=OutputContract(
        kind="logits",
        activation="softmax",
        channels=105,
        target="background + 104 TotalSegmentator structures (softmax, argmax in the bundle's postprocessing)",
        resolution="input size",
    ),
)

ENTRIES: tuple[ModelEntry, ...] = (MONAI_WHOLEBODY_CT,)
