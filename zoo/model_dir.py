"""A model folder: ``model.safetensors`` + ``config.json`` (+ ``README.md``), the Hub repo layout.

``config.json`` describes the weights in the folder (as timm does for its Hub repos)::

    {"architecture": "plain_conv_unet", "arch_kwargs": {...}, "in_channels": 1, "num_classes": 2,
     "first_conv": [...], "classifier": [...], "name": "...", "input": {...}, "license": {...}, ...}

``zoo.load(path)`` accepts such a folder; pretraining scripts and ``zoo publish`` write them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from torch import Tensor

from .errors import CheckpointFormatError
from .hub.integrity import atomic_path, default_file_mode
from .model_config import MAX_CONFIG_BYTES, check_config, read_config
from .registry import UNSPECIFIED_OUTPUT, InputContract, License, ModelEntry, OutputContract, Paper, Pretraining

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


def is_model_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / CONFIG).is_file() and (p / WEIGHTS).is_file()


def entry_config(entry: ModelEntry) -> dict[str, Any]:
    """The ``config.json`` content describing weights laid out as ``entry`` describes."""
    info = entry.to_dict()
    return {
        "name": entry.name,
        "architecture": entry.architecture,
        "arch_kwargs": info["arch_kwargs"],
        "in_channels": entry.input.in_channels,
        "num_classes": entry.num_classes,
        "first_conv": list(entry.first_conv),
        "classifier": list(entry.classifier),
        "input": info["input"],
        "license": info["license"],
        "pretraining": info["pretraining"],
        "paper": info["paper"],
        "description": entry.description,
        "tags": list(entry.tags),
        "base_model": entry.base_model,
        "output": info["output"],
    }


def entry_from_config(config: Mapping[str, Any], where: str = "config.json") -> ModelEntry:
    """Rebuild a :class:`ModelEntry` from a ``config.json`` mapping (missing descriptive fields get defaults).

    Every field is type-checked first and the architecture spec checked by arithmetic
    (:func:`zoo.model_config.check_config`: op classes from an allow-list, size limits), so nothing from the
    file selects code or allocates beyond the limits. Raises :class:`CheckpointFormatError` naming the key.
    """
    check_config(config, where)
    try:
        inp = dict(config.get("input") or {})
        inp.setdefault("in_channels", config["in_channels"])
        inp.setdefault("modality", "unknown")
        inp.setdefault("axis_order", "zyx")
        inp.setdefault("intensity", "unspecified")
        inp.setdefault("patch_size", [])
        for key in ("patch_size", "spacing_mm", "channel_names"):
            if inp.get(key) is not None:
                inp[key] = tuple(inp[key])
        lic = dict(config.get("license") or {"spdx": "other", "name": "unspecified", "link": where})
        paper = dict(config.get("paper") or {"title": "", "url": "", "bibtex": ""})
        pre = dict(config.get("pretraining") or {"data": "unspecified", "method": "unspecified"})
        pre["datasets"] = tuple(pre.get("datasets") or ())
        output = config.get("output")
        if output:  # older files have no output contract: unspecified
            out = dict(output)
            out.setdefault("kind", "unspecified")
            out.setdefault("target", "unspecified")
            out.setdefault("new_head", "")
            output = OutputContract(**out)
        return ModelEntry(
            name=str(config.get("name") or "local-model"),
            architecture=config["architecture"],
            arch_kwargs=dict(config.get("arch_kwargs") or {}),
            license=License(**lic),
            input=InputContract(**inp),
            pretraining=Pretraining(**pre),
            paper=Paper(**paper),
            description=str(config.get("description", "")),
            first_conv=tuple(config.get("first_conv") or ()),
            classifier=tuple(config.get("classifier") or ()),
            num_classes=config.get("num_classes"),
            tags=tuple(config.get("tags") or ()),
            base_model=config.get("base_model"),
            output=output or UNSPECIFIED_OUTPUT,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointFormatError(f"{where} does not describe a medzoo model: {err}", path=where,
                                    key=err.args[0] if isinstance(err, KeyError) and err.args else None) from None


def read_model_dir(path: str | os.PathLike) -> tuple[ModelEntry, Path]:
    """The entry described by ``path/config.json`` and the path of its ``model.safetensors``."""
    p = Path(path)
    if not is_model_dir(p):
        raise CheckpointFormatError(f"{p} is not a model folder: it needs {CONFIG} and {WEIGHTS}", path=p)
    config = read_config(p / CONFIG)  # at most MAX_CONFIG_BYTES, a JSON object
    return entry_from_config(config, str(p / CONFIG)), p / WEIGHTS


def write_model_dir(
    out_dir: str | os.PathLike,
    state_dict: Mapping[str, Tensor],
    config: Mapping[str, Any],
    readme: str | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` atomically.

    Tensors are stored as contiguous CPU copies; a tensor listed under several names (nnU-Net's aliases) is
    stored once, under its first name, and ``zoo.load`` restores the aliases.
    """
    from safetensors.torch import save_file

    entry_from_config(config)  # refuse to write a config that cannot be loaded back
    text = json.dumps(dict(config), indent=2, sort_keys=True, default=list)
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise CheckpointFormatError(f"the config is {len(text.encode()):,} bytes, above the {MAX_CONFIG_BYTES:,} bytes "
                                    "zoo.load reads; shorten its descriptive fields")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    for key, value in state_dict.items():  # store aliases (the same tensor under several names) once
        ident = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
        if value.numel() and ident in seen:
            continue
        seen.add(ident)
        tensors[key] = value.detach().to("cpu").contiguous().clone()
    with atomic_path(out / WEIGHTS) as tmp:
        # one metadata key: safetensors writes several in a random order, and the same tensors must give the
        # same bytes (config.json names the model)
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.chmod(tmp, default_file_mode())  # safetensors writes a new 0600 file: give it the user's umask
    with atomic_path(out / CONFIG) as tmp:
        tmp.write_text(text)
    if readme is not None:
        with atomic_path(out / "README.md") as tmp:
            tmp.write_text(readme)
    return out
