"""``zoo.save(model, folder)``: the model folder that ``zoo publish`` uploads and ``zoo.load`` reads back.

The folder holds exactly the three files of a medzoo Hub repo:

* ``model.safetensors``: the model's ``state_dict`` (contiguous CPU copies; a tensor under several names, as
  nnU-Net's aliases, stored once);
* ``config.json``: the entry's facts (:func:`zoo.model_dir.entry_config` of ``model.pretrained_cfg``), adjusted to
  the input channels and head the model has now, plus ``provenance``: where the weights came from (the upstream
  source, which copy ``zoo.load`` used, the adaptations), the sha256 and size of ``model.safetensors`` and the
  medzoo version. Nothing machine-specific (no local paths, no dates), so saving the same model twice gives the
  same bytes;
* ``README.md``: the model card (:func:`zoo.publish.folder_card`, the card ``zoo publish`` would generate).

The folder is written next to its destination and moved into place in one rename, so it is either absent, its
old version, or complete. An existing non-empty folder is replaced only with ``force=True``, and never the
folder the model's weights were read from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from torch import Tensor, nn

from ._version import __version__
from .errors import ZooError
from .hub.integrity import atomic_path, process_umask, sha256_file
from .model_dir import CONFIG, WEIGHTS, entry_config, write_model_dir
from .publish import README, folder_card
from .registry import ModelEntry, OutputContract


class SaveError(ZooError):
    """``zoo.save`` cannot write that folder (it exists, it is a file, it is the model's own input, ...)."""

    path: str | None = None


@dataclass(frozen=True)
class SavedModel:
    """What :func:`save` wrote: the folder, the entry its ``config.json`` describes, and the weights' sha256."""

    path: Path
    entry: ModelEntry
    weights_sha256: str
    weights_size: int


def _first_dim(state: Mapping[str, Tensor], key: str, dim: int) -> int | None:
    value = state.get(key)
    return int(value.shape[dim]) if value is not None and value.dim() > dim else None


def _head_size(state: Mapping[str, Tensor], classifier: tuple[str, ...]) -> int | None:
    """Output channels of the task head: dimension 0 of the first weight under a classifier prefix."""
    for key, value in state.items():
        if key.endswith(".weight") and value.dim() >= 2 and any(key.startswith(p + ".") for p in classifier):
            return int(value.shape[0])
    return None


def adjusted_entry(model: nn.Module, entry: ModelEntry, state: Mapping[str, Tensor]) -> ModelEntry:
    """``entry`` with the input channels, head size and builder arguments ``model`` has now."""
    report = getattr(model, "load_report", None)
    overrides = dict(getattr(report, "arch_overrides", None) or {})
    in_ch = next((n for n in (_first_dim(state, k, 1) for k in entry.first_conv) if n is not None),
                 entry.input.in_channels)
    classes = _head_size(state, entry.classifier) if entry.classifier else entry.num_classes
    changes: dict[str, Any] = {}
    notes = []
    if in_ch != entry.input.in_channels:
        names = entry.input.channel_names if len(entry.input.channel_names) == in_ch else ()
        changes["input"] = dataclasses.replace(entry.input, in_channels=in_ch, channel_names=names)
        notes.append(f"{in_ch} input channels (pretrained with {entry.input.in_channels})")
    if classes != entry.num_classes:
        changes["num_classes"] = classes
        if classes is not None:
            changes["output"] = OutputContract(
                kind="logits", activation=None, channels=classes,
                target=f"the {classes} classes of the task this head was trained for (a head added by zoo.load; "
                       "its meaning is set by whoever trained it)",
                resolution=entry.output.resolution,
            )
            notes.append(f"a new {classes}-class head (pretrained head: {entry.num_classes})")
    if overrides:
        changes["arch_kwargs"] = {**entry.arch_kwargs, **overrides}
        notes.append("builder arguments " + ", ".join(f"{k}={v!r}" for k, v in sorted(overrides.items())))
    if notes:
        changes["description"] = (f"{entry.name} adapted by zoo.load: {'; '.join(notes)}. " + entry.description)
    return dataclasses.replace(entry, **changes) if changes else entry


def _provenance(model: nn.Module, entry: ModelEntry) -> dict[str, Any]:
    report = getattr(model, "load_report", None)
    src = entry.source
    source = None
    if src is not None:
        source = {k: v for k, v in dataclasses.asdict(src).items() if v not in (None, "")}
    loaded = str(getattr(report, "source", "") or "")
    if loaded.startswith("model folder "):
        loaded = "a local model folder"
    return {
        "medzoo_version": __version__,
        "entry": entry.name,
        "source": source,
        "loaded_from": loaded or None,
        "verified_by": getattr(report, "verified_by", None),
        "adaptations": list(getattr(report, "adaptations", None) or []),
        "new_modules": list(getattr(report, "new_modules", None) or []),
    }


def _check_destination(out: Path, model: nn.Module, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SaveError(f"{out} is a file; zoo.save writes a folder (give a folder path)", path=str(out))
    report = getattr(model, "load_report", None)
    weights = getattr(report, "weights", None)
    if weights and out.is_dir() and Path(weights).resolve().parent == out.resolve():
        raise SaveError(f"{out} is the folder this model's weights were read from; save to another folder "
                        "(never over an input)", path=str(out))
    if out.is_dir() and any(out.iterdir()) and not force:
        raise SaveError(f"{out} exists and is not empty; pass force=True to replace it, or choose another folder",
                        path=str(out))


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` folder onto ``out`` (an old ``out`` is moved aside first, then removed)."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save(
    model: nn.Module,
    folder: str | os.PathLike,
    *,
    force: bool = False,
    entry: ModelEntry | None = None,
    repo_id: str | None = None,
) -> SavedModel:
    """Write ``model`` as a medzoo model folder: ``model.safetensors``, ``config.json``, ``README.md``.

    Args:
        model: a network from :func:`zoo.load` (its ``pretrained_cfg`` names the entry; its ``load_report`` the
            provenance), possibly adapted (``in_channels``, ``num_classes``) or fine-tuned since.
        folder: the folder to create. An existing non-empty one is replaced only with ``force``.
        entry: the registry entry, for a model without ``pretrained_cfg`` (built with :func:`zoo.build_model`).
        repo_id: the Hub repo (``ORG/NAME``) the folder will be published to; its card then describes that copy.

    ``zoo.load(folder)`` (and ``zoo.load("hf-hub:ORG/NAME")`` once published) returns a network with the same
    tensors, so the same outputs for the same input ``(N, C, a0, a1, a2)``.
    """
    entry = entry if entry is not None else getattr(model, "pretrained_cfg", None)
    if not isinstance(entry, ModelEntry):
        raise SaveError("the model has no pretrained_cfg (a zoo.ModelEntry): load it with zoo.load, or pass "
                        "entry=zoo.get_entry(NAME) for a network built otherwise")
    out = Path(folder).expanduser()
    _check_destination(out, model, force)
    state = model.state_dict()
    if any(t.is_meta for t in state.values()):
        raise SaveError("the model still has tensors on the meta device (no values); load or initialise them first")
    saved = adjusted_entry(model, entry, state)
    config: dict[str, Any] = {**entry_config(saved), "provenance": _provenance(model, entry)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~process_umask())
        write_model_dir(tmp, state, config)
        digest, size = sha256_file(tmp / WEIGHTS), (tmp / WEIGHTS).stat().st_size
        config["provenance"].update(weights_sha256=digest, weights_size=size)
        with atomic_path(tmp / CONFIG) as part:
            part.write_text(json.dumps(config, indent=2, sort_keys=True, default=list))
        with atomic_path(tmp / README) as part:
            part.write_text(folder_card(saved, repo_id, digest, size))
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SavedModel(out, saved, digest, size)


__all__ = ["SaveError", "SavedModel", "adjusted_entry", "save"]
