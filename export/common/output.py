"""The result of a pretraining run: a model folder ``zoo.load(path)`` accepts, with its provenance.

``OUT/model/`` holds ``model.safetensors``, ``config.json`` (the registry facts of the weights: architecture,
input contract, licence, pretraining) with a ``provenance`` block (git commit, exact command, data files with
sha256, hyper-parameters, curves and baselines), and a ``README.md`` model-card draft.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import Tensor

from zoo.model_dir import entry_config, write_model_dir
from zoo.registry import ModelEntry


def git_commit() -> str:
    """``HEAD`` of the checkout this file lives in (``+uncommitted`` when tracked files changed)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
    """The command that reproduces this run: ``python -m MODULE ARGS`` (shell-quoted)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, "-m", module, *args])


def provenance(module: str, *, config: Mapping[str, Any], history: Mapping[str, Any], data_files: list[dict[str, str]],
               best_epoch: int, stopped_because: str, device: str, world_size: int, minutes: float,
               argv: Sequence[str] | None = None, **extra: Any) -> dict[str, Any]:
    """The ``provenance`` block of ``config.json``."""
    return {
        "command": command_line(module, argv),
        "git_commit": git_commit(),
        "data_files": data_files,
        "config": dict(config),
        "history": dict(history),
        "best_epoch": best_epoch,
        "stopped_because": stopped_because,
        "device": device,
        "world_size": world_size,
        "minutes": minutes,
        **extra,
    }


def write_run_output(out_dir: str | Path, entry: ModelEntry, state: Mapping[str, Tensor],
                     prov: Mapping[str, Any], readme: str | None) -> Path:
    """Write ``out_dir/model`` (weights, config.json with provenance, README.md); returns the folder."""
    config = {**entry_config(entry), "provenance": dict(prov)}
    return write_model_dir(Path(out_dir) / "model", state, config, readme=readme)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def curve_table(history: Mapping[str, Any], keys: Sequence[str] = ()) -> str:
    """A markdown table of the per-epoch curves: train/val loss and the named validation metrics."""
    keys = [k for k in keys if k in history.get("val_metrics", {})]
    head = "| epoch | train loss | val loss | " + " | ".join(f"val {k}" for k in keys) + " |"
    sep = "|---" * (3 + len(keys)) + "|"
    rows = []
    for i, (tl, vl) in enumerate(zip(history.get("train_loss", []), history.get("val_loss", []))):
        extra = " | ".join(_fmt(history["val_metrics"][k][i]) for k in keys)
        rows.append(f"| {i + 1} | {_fmt(tl)} | {_fmt(vl)} | {extra} |")
    return "\n".join([head, sep, *rows])


def provenance_md(prov: Mapping[str, Any]) -> str:
    """The ``## Provenance`` section of a card draft: command, commit, why and when the run stopped."""
    h = prov["history"]
    return f"""## Provenance

- command: `{prov['command']}`
- git commit: `{prov['git_commit']}`
- stopped: {prov['stopped_because']} after {len(h['val_loss'])} epochs ({prov['minutes']:.1f} min on {prov['device']}, {prov['world_size']} process(es))
- best epoch: {prov['best_epoch']}"""


def hyperparameters_md(config: Mapping[str, Any]) -> str:
    """The ``## Hyper-parameters`` section of a card draft: the run's configuration as JSON."""
    return f"""## Hyper-parameters

```json
{json.dumps(config, indent=2, default=list)}
```
"""


def generic_card(entry: ModelEntry, prov: Mapping[str, Any], *, script: str, metric_keys: Sequence[str] = (),
                 baseline_notes: Mapping[str, str] | None = None) -> str:
    """A model-card draft for a run of ``script``: provenance, baselines, curves, data, hyper-parameters."""
    h = prov["history"]
    notes = baseline_notes or {}
    baselines = "\n".join(f"| {k} | {_fmt(v)} | {notes.get(k, '')} |" for k, v in sorted(h.get("baselines", {}).items()))
    rows = "\n".join(f"| {f['path']} | {f.get('role', '')} | {f['sha256']} |" for f in prov["data_files"])
    tags = ", ".join(["medzoo", "medical-imaging", "3d", *entry.tags])
    return f"""---
license: {entry.license.spdx}
library_name: medzoo
tags: [{tags}]
pipeline_tag: image-feature-extraction
---
# {entry.name} (draft card written by {script})

{entry.description}

{provenance_md(prov)}

## Baselines (measured in this run, before training)

| baseline | value | meaning |
|---|---|---|
{baselines}

## Curves

{curve_table(h, metric_keys)}

## Data

| file | role | sha256 |
|---|---|---|
{rows}

{hyperparameters_md(prov['config'])}"""
