"""The five 3D self-supervised tasks of Taleb et al. (NeurIPS 2020): ``ssl3d-rotation``, ``ssl3d-jigsaw``,
``ssl3d-rpl``, ``ssl3d-cpc``, ``ssl3d-exemplar``.

The authors published no weights (HealthML/self-supervised-3d-tasks issue #18). Each entry is the authors'
3D U-Net encoder (``ssl3d_unet_encoder``: 16/32/64/128/256 filters, :mod:`zoo.archs.ssl3d_encoder`) as the
paper pretrained it; ``zoo.load(name, pretrained=False)`` builds it, ``checkpoint=`` loads weights trained with
``python -m export.ssl3d --task TASK``. No full-scale run exists yet, so ``source`` stays None until one is
published. Facts: the paper (arXiv:2006.03829) and the authors' repository
(https://github.com/HealthML/self-supervised-3d-tasks, ``self_supervised_3d_tasks/configs/train/*_3d.json``),
summarised in docs/pretraining-recipes.md section 4.
"""

from ..entry import InputContract, License, ModelEntry, OutputContract, Paper, Pretraining

TALEB_PAPER = Paper(
    title="3D Self-Supervised Methods for Medical Imaging (NeurIPS 2020)",
    url="https://arxiv.org/abs/2006.03829",
    bibtex="""@inproceedings{taleb2020selfsupervised,
  title     = {3D Self-Supervised Methods for Medical Imaging},
  author    = {Taleb, Aiham and Loetzsch, Winfried and Danz, Noel and Severin, Julius and Gaertner, Thomas and
               Bergner, Benjamin and Lippert, Christoph},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  volume    = {33},
  pages     = {18158--18172},
  year      = {2020}
}""",
)

#: the authors' encoder as the registry builds it (zoo.archs.ssl3d_encoder)
TALEB_ENCODER_KWARGS = {"features_per_stage": [16, 32, 64, 128, 256], "dropout": 0.5}

_TASKS = {
    "rotation": ("3D rotation prediction", "the whole 128^3 volume rotated by one of 10 rotations (identity, 90/180/270 "
                 "degrees about each axis); cross-entropy; batch 4"),
    "jigsaw": ("3D jigsaw puzzles", "27 patches of 39^3 from a 3x3x3 grid of 42-voxel cells (jitter 3) shuffled by one "
               "of 100 permutations chosen for maximal Hamming distance; cross-entropy over the permutations; batch 8"),
    "rpl": ("3D relative patch location", "the centre patch and one of its 26 neighbours (3x3x3 grid, 39^3 patches, "
            "jitter 3); cross-entropy over the 26 locations; batch 32"),
    "cpc": ("3D contrastive predictive coding", "a 4x4x4 grid of half-overlapping patches (50^3, stride 25); a GRU "
            "summarises the rows above each column and linear predictors predict the codes (1024) of the next "
            "patches; InfoNCE against the other patches of the batch; batch 32"),
    "exemplar": ("3D exemplar networks", "triplets of a volume, an augmented copy (flips, 90-degree or arbitrary "
                 "rotations, intensity distortion, zoom-crop) and another volume; sigmoid codes of 1024; triplet loss "
                 "with margin 1; batch 2"),
}

_DATA = ("the paper pretrained on UK Biobank brain MRI (T1 and T2-FLAIR) and, for the pancreas experiments, on "
         "MSD Task07 Pancreas CT, resized to 128^3")

_LICENSE = License(
    spdx="apache-2.0",
    notice="No published weights. The authors' code (HealthML/self-supervised-3d-tasks) is Apache-2.0; weights you "
           "train with export/ssl3d carry the licences of the volumes you train on. Not for diagnostic use.",
)


def _entry(task: str) -> ModelEntry:
    title, recipe = _TASKS[task]
    return ModelEntry(
        name=f"ssl3d-{task}",
        architecture="ssl3d_unet_encoder",
        arch_kwargs=TALEB_ENCODER_KWARGS,
        description=(
            f"The 3D U-Net encoder of Taleb et al. (4 levels of 16/32/64/128 filters and a 256-filter bottleneck, "
            f"conv-ReLU-BatchNorm blocks with dropout 0.5, max-pooling) pretrained by {title}: {recipe}. "
            "Head-less: forward returns the bottleneck features; num_classes adds a pooled linear head."
        ),
        license=_LICENSE,
        input=InputContract(
            in_channels=1,
            modality="MR+CT",
            axis_order="zyx",
            intensity="per volume: clip to its own 0.5 / 99.5 percentiles, then z-score (medzoo's export/ssl3d)",
            patch_size=(128, 128, 128),
            spacing_mm=None,
            channel_names=("image",),
            divisible_by=16,
        ),
        pretraining=Pretraining(
            data=_DATA,
            method=f"{title} (Taleb et al. 2020): {recipe}; Adam lr 1e-4",
            datasets=("UK Biobank brain MRI", "MSD Task07 Pancreas"),
            recipe=f"python -m export.ssl3d --task {task}",
        ),
        paper=TALEB_PAPER,
        first_conv=("encoder.stages.0.0.convs.0.conv.weight",),
        classifier=("head",),
        num_classes=None,
        tags=("self-supervised", "encoder", "mr", "ct", f"ssl3d-{task}"),
        weights_note=(
            "The authors published no weights, and no full-scale medzoo run exists yet (only demo-scale runs "
            f"on public volumes). Train them with `python -m export.ssl3d --task {task} --data VOLUMES --out "
            "RUN`, then `zoo.load(\"RUN/model\")`."
        ),
        output=OutputContract(
            kind="features",
            activation=None,
            channels=TALEB_ENCODER_KWARGS["features_per_stage"][-1],
            target="the bottleneck feature map of the encoder (no head)",
            resolution="1/16 of the input per axis (four 2x max-poolings)",
            new_head="a new head (num_classes=n) is global average pooling + a linear layer: (N, n) logits, "
                     "no activation",
        ),
    )


ENTRIES: tuple[ModelEntry, ...] = tuple(_entry(task) for task in _TASKS)
