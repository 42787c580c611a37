"""MedicalNet / Med3D 3D ResNets (Chen, Ma, Zheng 2019), Tencent's weights on the Hub (MIT).

Facts (repos, files, sizes, sha256, revisions): the Hugging Face Hub repos
https://huggingface.co/TencentMedicalNet/MedicalNet-Resnet{10,18,34,50,101,152,200} (sha256 = the Git LFS oid
shown on each file's page), tabulated in docs/upstream-checkpoints.md section 3.5. Files whose sha256 is not
yet recorded are verified against the Hub's LFS hash on download.
"""

from ..entry import CheckpointSource, InputContract, ModelEntry, Normalization, OutputContract, Paper, Pretraining
from ._licenses import MIT

MED3D_PAPER = Paper(
    title="Med3D: Transfer Learning for 3D Medical Image Analysis",
    url="https://arxiv.org/abs/1904.00625",
    bibtex="""@article{chen2019med3d,
  title   = {Med3D: Transfer Learning for 3D Medical Image Analysis},
  author  = {Chen, Sihong and Ma, Kai and Zheng, Yefeng},
  journal = {arXiv preprint arXiv:1904.00625},
  year    = {2019}
}""",
)

#: depth -> (revision, plain file (size, sha256), 23-dataset file (size, sha256) or None)
_FILES: dict[int, tuple[str, tuple[int | None, str | None], tuple[int, str] | None]] = {
    10: (
        "4a4b0ef72be0ddf85a2c0720e0a4855c8ac0f0a8",
        (57_456_599, "2824951eaef30e115929b89bec72342380b08d14792bda1449974ac849e497c0"),
        (57_456_599, "afa8055f3e47f4a18239495d92a7abc587902c69c31c743de2b2784653b72605"),
    ),
    18: (
        "ee59c99e39a995fb8c20f2a2650a66161e2df584",
        (131_992_196, "38b3a17444c5c18a795355a868e6a2d9ce9318054067f5373d337f55c0f61da3"),
        (131_992_196, "61224f9317fcce873366deb3703183e92cc47325b726b69691b33536244e10f4"),
    ),
    34: (
        "38043c1af39ac39e70de7c92a4af8013eb275b31",
        (None, None),
        (253_276_232, "3ea7188e396774e4ef95b66e5e90a78273bb33f6e58d3d717bf24f5f1aaeaa28"),
    ),
    50: (
        "8d924de10880fc392b71cbf61804e880aeb74e53",
        (None, None),
        (184_885_051, "ff48a62219073fb977fd3f4ddfb8dc1367f0ec156c8d6f6c37e205bd683a246e"),
    ),
    101: (
        "2ea2545f9c234bfcff474b593df819e000c438c8",
        (341_330_267, "a26bbcf9b2ad35f048b0fa317234c003f171a4d719760e5c4aff9f793654ebcf"),
        None,
    ),
    152: ("ee78d896acdd5dbbd3cb6402a9a72e1f69a41188", (None, None), None),
    200: ("564abfd761968bff3cec61bdbc05cc75c33ec5d3", (None, None), None),
}

_PARAMS_M = {10: 14.36, 18: 32.99, 34: 63.30, 50: 46.16, 101: 85.20, 152: 117.36, 200: 126.56}

_INPUT = InputContract(
    in_channels=1,
    modality="CT+MR",
    axis_order="zyx",
    intensity=(
        "per volume: z-score over non-zero voxels, zero voxels filled with N(0, 1) noise (MedicalNet code); "
        "the paper describes clipping to the 0.5-99.5 percentiles then z-scoring"
    ),
    patch_size=(56, 448, 448),
    spacing_mm=None,
    channel_names=("image",),
    divisible_by=8,
    normalization=Normalization(scheme="zscore", foreground=True),
)


#: what zoo.load(name, num_classes=n) adds to a head-less ResNet backbone
RESNET_NEW_HEAD = "a new head (num_classes=n) is global average pooling + a linear layer: (N, n) logits, no activation"


def resnet_features(depth: int, output_stride: int, layout: str) -> OutputContract:
    """The layer4 feature map of a head-less Med3DResNet of ``depth``."""
    return OutputContract(
        kind="features",
        activation=None,
        channels=512 if depth in (10, 18, 34) else 2048,
        target=f"the layer4 feature map of the ResNet-{depth} backbone (no head)",
        resolution=f"1/{output_stride} of the input per axis (output stride {output_stride}, {layout})",
        new_head=RESNET_NEW_HEAD,
    )


def _entry(depth: int, datasets23: bool) -> ModelEntry:
    revision, plain, extra = _FILES[depth]
    size, sha = extra if datasets23 else plain
    suffix = "_23dataset" if datasets23 else ""
    data = (
        "23 public 3D segmentation data sets (list never published by the authors)"
        if datasets23
        else "3DSeg-8: MSD brain tumour, hippocampus, prostate, liver, heart, pancreas, hepatic vessel, spleen"
    )
    return ModelEntry(
        name=f"med3d-resnet{depth}" + ("-23datasets" if datasets23 else ""),
        architecture="med3d_resnet",
        arch_kwargs={"depth": depth, "shortcut_type": "A" if depth in (18, 34) else "B"},
        description=(
            f"MedicalNet 3D ResNet-{depth} backbone ({_PARAMS_M[depth]:.2f}M parameters), dilated layer3/4 "
            f"(output stride 8), pretrained by multi-domain supervised segmentation (Med3D) on {data}."
        ),
        source=CheckpointSource(
            repo_id=f"TencentMedicalNet/MedicalNet-Resnet{depth}",
            filename=f"resnet_{depth}{suffix}.pth",
            format="medicalnet",
            revision=revision,
            sha256=sha,
            size=size,
            revision_note=(
                "revision of the upload of the plain file; check that it also holds the 23-dataset file"
                if depth == 18 and datasets23
                else ""
            ),
        ),
        license=MIT,
        input=_INPUT,
        pretraining=Pretraining(
            data=data,
            method=(
                "Med3D co-training: one shared encoder, one light segmentation branch per data set; "
                "SGD lr 0.1, momentum 0.9, weight decay 1e-3"
            ),
            datasets=("3DSeg-8",) if not datasets23 else ("23 undisclosed data sets",),
            recipe="export/med3d",
        ),
        paper=MED3D_PAPER,
        first_conv=("conv1.weight",),
        classifier=("fc", "conv_seg"),
        num_classes=None,
        tags=("supervised", "resnet", "backbone", "ct", "mr"),
        output=resnet_features(depth, 8, "dilated layer3/4"),
    )


#: the 3DSeg-8 weights of every depth, then the 23-dataset weights (ResNet-10 to -50)
ENTRIES: tuple[ModelEntry, ...] = (
    *(_entry(depth, datasets23=False) for depth in _FILES),
    *(_entry(depth, datasets23=True) for depth, files in _FILES.items() if files[2] is not None),
)
