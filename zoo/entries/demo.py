"""``genesis-ct-demo``: a small Models Genesis nnU-Net trained here, on CPU, and shipped inside the package.

It exists so that ``zoo demo`` and the tests run the whole pipeline (load, adapt to a plan, export for
nnU-Net, restore a real CT cube) with no network. It is demo scale: three public CT volumes, minutes of CPU.
The facts of the run (command, commit, data sha256, losses) are in ``zoo/assets/genesis-ct-demo/config.json``
and ``README.md``; ``python -m export.demo_assets`` rebuilds the files from an ``export.genesis`` run.
"""

from ..entry import CheckpointSource, InputContract, License, ModelEntry, OutputContract, Pretraining
from .genesis import (
    GENESIS_NNUNET_CT_MEAN,
    GENESIS_NNUNET_CT_STD,
    GENESIS_NNUNET_NORMALIZATION,
    GENESIS_PAPER,
    GENESIS_RESTORED,
    GENESIS_RESTORATION,
    GENESIS_TARGET_SCALE,
    LUNG_PLAN_ARCH_KWARGS,
)

#: arch_kwargs of the demo network: the first three stages of a default nnU-Net 3d_fullres plan
DEMO_ARCH_KWARGS = {
    **LUNG_PLAN_ARCH_KWARGS,
    "n_stages": 3,
    "features_per_stage": [32, 64, 128],
    "kernel_sizes": [[3, 3, 3]] * 3,
    "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
    "n_conv_per_stage": [2] * 3,
    "n_conv_per_stage_decoder": [2] * 2,
}

#: the run's facts as recorded in ``zoo/assets/genesis-ct-demo/config.json`` (epochs, minutes, volumes and
#: their licences, losses); tests/test_cards.py checks that these texts agree with that file
DEMO_RUN_DESCRIPTION = (
    'Demo-scale Models Genesis nnU-Net (1.4M parameters, 3 stages of 32/64/128 features) restoration-'
    "pretrained by medzoo's export/genesis for 4 epochs (13.5 minutes on CPU; the 10-minute budget is "
    'checked after each epoch) on 2 public CT volumes (pyradiomics lung1_image.nrrd chest CT, '
    'BSD-3-Clause; InVesalius Cranium.inv3 head CT, GPL-2.0), validated on 1 more (pyradiomics '
    'lung2_image.nrrd chest CT, BSD-3-Clause): validation MSE 0.0302, against 0.1165 for the identity '
    '(the damaged input) and 0.1201 for the untrained network. Shipped in the package so that zoo demo '
    'and the tests run offline; not a research model.'
)
DEMO_RUN_DATA = (
    'training: pyradiomics lung1_image.nrrd chest CT, BSD-3-Clause; InVesalius Cranium.inv3 head CT, '
    'GPL-2.0; validation: pyradiomics lung2_image.nrrd chest CT, BSD-3-Clause'
)
DEMO_RUN_METHOD = (
    'SGD lr 0.1, momentum 0.9, batch 8, 4 epochs of 16 steps (128 training cubes; 13.5 minutes against a '
    '10-minute budget) on CPU'
)

DEMO_WEIGHTS_SHA256 = "287ddcd8a8db936b6afd5efaab3cf20b1049e2e91958ba6954a29ce0f1f583c1"
DEMO_WEIGHTS_SIZE = 5431752

GENESIS_CT_DEMO = ModelEntry(
    name="genesis-ct-demo",
    architecture="plain_conv_unet",
    arch_kwargs=DEMO_ARCH_KWARGS,
    description=DEMO_RUN_DESCRIPTION,
    source=CheckpointSource(
        repo_id="medzoo/genesis-ct-demo",
        filename="model.safetensors",
        format="safetensors",
        sha256=DEMO_WEIGHTS_SHA256,
        size=DEMO_WEIGHTS_SIZE,
        package_file="genesis-ct-demo/model.safetensors",
    ),
    license=License(
        spdx="apache-2.0",
        notice="Demo weights: trained for minutes on three CT volumes. Not for research or diagnostic use.",
    ),
    input=InputContract(
        in_channels=1,
        modality="CT",
        axis_order="zyx",
        intensity=(
            f"HU clipped to [-1000, 1000], then (HU - ({GENESIS_NNUNET_CT_MEAN})) / {GENESIS_NNUNET_CT_STD} "
            "(the Models Genesis nnU-Net's CT z-score)"
        ),
        patch_size=(32, 64, 64),
        spacing_mm=(1.5, 1.0, 1.0),
        channel_names=("CT",),
        divisible_by=4,
        normalization=GENESIS_NNUNET_NORMALIZATION,
    ),
    pretraining=Pretraining(
        data=DEMO_RUN_DATA,
        method=GENESIS_RESTORATION + "; " + DEMO_RUN_METHOD,
        datasets=("pyradiomics lung1", "InVesalius Cranium", "pyradiomics lung2"),
        recipe="python -m export.genesis --preset demo (then python -m export.demo_assets)",
    ),
    paper=GENESIS_PAPER,
    first_conv=("encoder.stages.0.0.convs.0.conv.weight",),
    classifier=("decoder.seg_layers",),
    num_classes=1,
    tags=("self-supervised", "restoration", "nnunet", "ct", "demo"),
    output=OutputContract(
        kind="logits",
        activation="sigmoid",
        channels=1,
        target=GENESIS_RESTORED + " (zoo demo: sigmoid(model(x)))",
        scale=GENESIS_TARGET_SCALE,
        resolution="input size (deep_supervision=True: a list of logits, full resolution first)",
    ),
)

ENTRIES: tuple[ModelEntry, ...] = (GENESIS_CT_DEMO,)
