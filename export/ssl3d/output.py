"""The model folder of a 3D self-supervised run: the encoder alone (``backbone.*`` of the task network), under
the registry architecture of its kind (``ssl3d_unet_encoder``, ``nnunet_encoder`` or ``med3d_resnet``), so
``zoo.load(OUT/model)`` rebuilds it and :func:`zoo.adapt.adapt_state_dict` transfers it into nnU-Net plans
(``encoder.stages.*`` keys). The task head stays in ``OUT/checkpoint.pt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from torch import Tensor

from zoo.registry import InputContract, License, ModelEntry, Pretraining

from ..common.output import generic_card, provenance, write_run_output
from .config import SSLConfig
from .data import SSLData
from .encoders import EncoderSpec

TASK_NAMES = {
    "rotation": "3D rotation prediction (10 classes)",
    "jigsaw": "3D jigsaw puzzles (3x3x3 grid, 100 permutations of maximal Hamming distance)",
    "rpl": "3D relative patch location (3x3x3 grid, 26 classes, jitter)",
    "cpc": "3D contrastive predictive coding (4x4x4 half-overlapping patches, InfoNCE)",
    "exemplar": "3D exemplar networks (triplet loss, 3D augmentations)",
}
INTENSITY = "per volume: clip to its own 0.5 / 99.5 percentiles, then z-score with its own mean and standard deviation"


def method(cfg: SSLConfig) -> str:
    return (f"{TASK_NAMES[cfg.task]} after Taleb et al. (NeurIPS 2020), re-implemented by medzoo's export/ssl3d; "
            f"{cfg.optimizer} lr {cfg.lr}, batch {cfg.batch_size}")


def run_entry(name: str, cfg: SSLConfig, spec: EncoderSpec, data: SSLData) -> ModelEntry:
    from zoo.entries.ssl3d import TALEB_PAPER

    modalities = [m for m in data.modalities if m != "unknown"] or ["unknown"]
    return ModelEntry(
        name=name,
        architecture=spec.architecture,
        arch_kwargs=spec.arch_kwargs,
        license=License(spdx="apache-2.0", notice="Trained by medzoo's export/ssl3d; check the licences of the "
                        "volumes it was trained on."),
        input=InputContract(in_channels=spec.in_channels, modality="+".join(modalities), axis_order="zyx",
                            intensity=INTENSITY, patch_size=(cfg.size,) * 3,
                            spacing_mm=tuple(cfg.spacing_zyx) if cfg.spacing_zyx else None,
                            divisible_by=spec.min_patch),
        pretraining=Pretraining(data=data.summary, method=method(cfg), datasets=data.datasets,
                                recipe=f"python -m export.ssl3d --task {cfg.task}"),
        paper=TALEB_PAPER,
        description=f"{spec.architecture} encoder pretrained by {TASK_NAMES[cfg.task]} on {data.summary}.",
        first_conv=spec.first_conv,
        classifier=("head", "fc", "conv_seg"),
        num_classes=None,
        tags=("self-supervised", "encoder", f"ssl3d-{cfg.task}"),
    )


def encoder_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The exported tensors: the task network's ``backbone.*``, prefix removed."""
    return {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}


BASELINE_NOTES = {
    "chance_loss": "loss of a chance-level predictor (ln classes; ln candidates for CPC; the margin for exemplar)",
    "chance_accuracy": "accuracy of guessing (1 / classes; 0.5 for exemplar triplets)",
    "untrained_val_loss": "validation loss of the untrained network",
    "untrained_accuracy": "validation accuracy of the untrained network",
}


def write_output(out_dir: str | Path, name: str, cfg: SSLConfig, spec: EncoderSpec, best_state: Mapping[str, Tensor],
                 history: Any, data: SSLData, *, best_epoch: int, stopped_because: str, device: str,
                 world_size: int, minutes: float) -> Path:
    entry = run_entry(name, cfg, spec, data)
    prov = provenance("export.ssl3d", config=cfg.to_dict(), history=history.to_dict(), data_files=data.files,
                      best_epoch=best_epoch, stopped_because=stopped_because, device=device, world_size=world_size,
                      minutes=minutes, encoder=spec.kind, prepared_data=data.prepared)
    readme = generic_card(entry, prov, script=f"export/ssl3d --task {cfg.task}", metric_keys=["accuracy"],
                          baseline_notes=BASELINE_NOTES)
    return write_run_output(out_dir, entry, encoder_state(best_state), prov, readme)
