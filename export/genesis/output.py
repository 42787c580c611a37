"""The result of a pretraining run: a model folder ``zoo.load(path)`` accepts, with its provenance.

``OUT/model/`` holds ``model.safetensors``, ``config.json`` (architecture, input contract, licence) and a
``README.md`` model-card draft carrying the provenance: git commit, exact command, data files with sha256,
hyper-parameters, final and best losses against the identity and untrained baselines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from torch import Tensor

from zoo.entries.genesis import GENESIS_PAPER, GENESIS_RESTORATION
from zoo.registry import InputContract, License, ModelEntry, Pretraining

from ..common.output import hyperparameters_md, provenance as run_provenance, provenance_md, write_run_output
from .config import TrainConfig
from .train import History


def run_entry(name: str, cfg: TrainConfig, data_summary: str, datasets: tuple[str, ...]) -> ModelEntry:
    """The :class:`ModelEntry` describing weights produced by this run."""
    intensity = (
        "HU clipped to [-1000, 1000] and scaled to [0, 1]" if cfg.input_norm == "unit" else
        f"HU clipped to [-1000, 1000], then (HU - ({cfg.ct_mean})) / {cfg.ct_std} (nnU-Net CT z-score of the "
        "Models Genesis nnU-Net)"
    )
    first_conv = ("down_tr64.ops.0.conv1.weight",) if cfg.architecture == "genesis_unet3d" else (
        "encoder.stages.0.0.convs.0.conv.weight",)
    classifier = ("out_tr",) if cfg.architecture == "genesis_unet3d" else ("decoder.seg_layers",)
    return ModelEntry(
        name=name,
        architecture=cfg.architecture,
        arch_kwargs=cfg.arch_kwargs,
        license=License(spdx="apache-2.0"),
        input=InputContract(
            in_channels=1, modality="CT", axis_order="zyx", intensity=intensity, patch_size=tuple(cfg.cube_zyx),
            spacing_mm=tuple(cfg.spacing_zyx) if cfg.spacing_zyx else None,
            divisible_by=8 if cfg.architecture == "genesis_unet3d" else 1,
        ),
        pretraining=Pretraining(data=data_summary, method=GENESIS_RESTORATION, datasets=datasets,
                                recipe="python -m export.genesis"),
        paper=GENESIS_PAPER,
        description=f"Models Genesis restoration pretraining of a {cfg.architecture} on {data_summary}.",
        first_conv=first_conv,
        classifier=classifier,
        num_classes=cfg.num_classes,
        tags=("ct", "self-supervised", "restoration", "models-genesis"),
    )


def card_draft(entry: ModelEntry, provenance: Mapping[str, Any]) -> str:
    h = provenance["history"]
    rows = "\n".join(f"| {f['path']} | {f['sha256']} |" for f in provenance["data_files"])
    return f"""---
license: {entry.license.spdx}
library_name: medzoo
tags: [medzoo, medical-imaging, 3d, ct, self-supervised, models-genesis]
pipeline_tag: image-to-image
---
# {entry.name} (draft card written by export/genesis)

{entry.description}

{provenance_md(provenance)}

| validation MSE (fixed corruption of held-out cubes) | value |
|---|---|
| identity (damaged input as the answer) | {h['identity_val_loss']:.5f} |
| untrained network | {h['untrained_val_loss']:.5f} |
| best epoch | {min(h['val_loss']) if h['val_loss'] else float('nan'):.5f} |
| final epoch | {h['val_loss'][-1] if h['val_loss'] else float('nan'):.5f} |
| final training loss | {h['train_loss'][-1] if h['train_loss'] else float('nan'):.5f} |

## Data

| file | sha256 |
|---|---|
{rows}

{hyperparameters_md(provenance['config'])}"""


def write_output(
    out_dir: str | Path,
    name: str,
    cfg: TrainConfig,
    best_state: Mapping[str, Tensor],
    history: History,
    *,
    best_epoch: int,
    stopped_because: str,
    data_files: list[dict[str, str]],
    data_summary: str,
    datasets: tuple[str, ...],
    device: str,
    world_size: int,
    minutes: float,
) -> Path:
    """Write ``out_dir/model`` (weights, config.json with provenance, README.md draft); returns the folder."""
    entry = run_entry(name, cfg, data_summary, datasets)
    prov = run_provenance(
        "export.genesis", config=cfg.to_dict(), history=history.to_dict(), data_files=data_files,
        best_epoch=best_epoch, stopped_because=stopped_because, device=device, world_size=world_size, minutes=minutes,
    )
    return write_run_output(out_dir, entry, best_state, prov, card_draft(entry, prov))
