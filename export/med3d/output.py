"""The model folder of a Med3D run: the backbone in MedicalNet's layout (what the ``med3d-*`` entries hold), so
``zoo.load(OUT/model)`` builds ``med3d_resnet`` and loads it strictly, and ``in_channels`` / ``num_classes`` /
``features_only`` adapt it like the MedicalNet weights. The branches stay in ``OUT/checkpoint.pt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from torch import Tensor

from zoo.archs.med3d_resnet import DEPTHS
from zoo.entries.med3d import MED3D_PAPER
from zoo.registry import InputContract, License, ModelEntry, Pretraining

from ..common.output import generic_card, provenance, write_run_output
from .config import Med3DConfig
from .data import Med3DDataset
from .train import backbone_state

METHOD = ("Med3D co-training (Chen, Ma, Zheng 2019): one shared MedicalNet ResNet encoder, one 1x1x1 branch "
          "per data set (a batch from data set j trains only branch j), cross-entropy, balanced sampling, SGD "
          "lr 0.1, momentum 0.9, weight decay 1e-3")
INTENSITY = ("per volume: clip to its own 0.5 / 99.5 percentiles, then z-score with its own mean and standard "
             "deviation (Med3D paper); volumes resampled to the median spacing of their data set")


def data_summary(datasets: list[Med3DDataset]) -> str:
    parts = []
    for d in datasets:
        fg = ", ".join(k for k, v in sorted(d.labels.items(), key=lambda kv: kv[1]) if v > 0)
        parts.append(f"{d.name} ({d.modality}, {len(d.train)} training / {len(d.val)} held-out cases, {fg}, "
                     f"{tuple(round(s, 3) for s in d.spacing_zyx)} mm)")
    return f"{len(datasets)} labelled data sets: " + "; ".join(parts)


def run_entry(name: str, cfg: Med3DConfig, datasets: list[Med3DDataset]) -> ModelEntry:
    shortcut = cfg.shortcut_type or DEPTHS[cfg.depth][2]
    modalities = sorted({d.modality.upper() for d in datasets})
    summary = data_summary(datasets)
    return ModelEntry(
        name=name,
        architecture="med3d_resnet",
        arch_kwargs={"depth": cfg.depth, "shortcut_type": shortcut},
        license=License(spdx="apache-2.0", notice="Trained by medzoo's export/med3d; check the licences of the "
                        "data sets it was trained on."),
        input=InputContract(in_channels=1, modality="+".join(modalities), axis_order="zyx", intensity=INTENSITY,
                            patch_size=tuple(cfg.patch_zyx), spacing_mm=None, channel_names=("image",),
                            divisible_by=8),
        pretraining=Pretraining(data=summary, method=METHOD, datasets=tuple(d.name for d in datasets),
                                recipe="python -m export.med3d"),
        paper=MED3D_PAPER,
        description=f"MedicalNet 3D ResNet-{cfg.depth} backbone co-trained by export/med3d on {summary}.",
        first_conv=("conv1.weight",),
        classifier=("fc", "conv_seg"),
        num_classes=None,
        tags=("supervised", "resnet", "backbone", "med3d"),
    )


BASELINE_NOTES = {
    "prior_ce": "cross-entropy of the best constant prediction (label entropy of the validation crops), mean over data sets",
    "untrained_val_loss": "validation cross-entropy of the untrained network",
    "untrained_dice": "validation foreground Dice of the untrained network",
}


def write_output(out_dir: str | Path, name: str, cfg: Med3DConfig, best_state: Mapping[str, Tensor],
                 history: Any, datasets: list[Med3DDataset], *, best_epoch: int, stopped_because: str,
                 device: str, world_size: int, minutes: float, prepared: Mapping[str, Any] | None = None) -> Path:
    """Write ``out_dir/model``. ``prepared``: the prepared-data folder's description for the provenance
    (folder, recipe parameters and digest, cases left out)."""
    entry = run_entry(name, cfg, datasets)
    files = [f for d in datasets for f in d.files]
    extra = {"prepared_data": dict(prepared)} if prepared is not None else {}
    prov = provenance(
        "export.med3d", config=cfg.to_dict(), history=history.to_dict(), data_files=files, best_epoch=best_epoch,
        stopped_because=stopped_because, device=device, world_size=world_size, minutes=minutes,
        datasets=[{"name": d.name, "labels": d.labels, "modality": d.modality, "spacing_zyx": list(d.spacing_zyx),
                   "train_cases": [c.case_id for c in d.train], "val_cases": [c.case_id for c in d.val],
                   "validated_on_training_volumes": d.val_from_training, "left_out": list(d.left_out)}
                  for d in datasets],
        **extra,
    )
    keys = ["dice"] + [f"dice_{d.name}" for d in datasets]
    readme = generic_card(entry, prov, script="export/med3d", metric_keys=keys, baseline_notes=BASELINE_NOTES)
    return write_run_output(out_dir, entry, backbone_state(dict(best_state)), prov, readme)
