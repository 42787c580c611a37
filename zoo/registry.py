"""The model registry: one immutable :class:`ModelEntry` per model name.

Entries are declared as data in ``zoo/entries/<family>.py`` (a module-level ``ENTRIES`` tuple each, collected by
:data:`zoo.entries.ENTRIES`) and registered here on first use of the registry, so ``import zoo`` stays cheap.
The data model (:class:`ModelEntry`, :class:`CheckpointSource`, :class:`License`, ...) lives in :mod:`zoo.entry`
and is re-exported here. The registry is the single source of truth for every fact the model cards,
the CLI and the loader show: architecture, pinned checkpoint source, licence, input contract, paper.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import threading
from typing import Any, Iterable

from . import entry as _entry
from .entry import (
    CHECKPOINT_FORMATS,
    CheckpointFormat,
    CheckpointSource,
    InputContract,
    License,
    ModelEntry,
    NEW_HEAD_LOGITS,
    NORMALIZATION_SCHEMES,
    Normalization,
    NormalizationScheme,
    OUTPUT_KINDS,
    OutputContract,
    OutputKind,
    Paper,
    Pretraining,
    UNSPECIFIED_OUTPUT,
)
from .errors import UnknownModelError

#: the checkpoint formats an entry may name (:data:`zoo.entry.CHECKPOINT_FORMATS`, one converter each)
FORMATS = CHECKPOINT_FORMATS


_REGISTRY: dict[str, ModelEntry] = {}
_LOADED = False
_LOCK = threading.RLock()


def register(entry: ModelEntry) -> ModelEntry:
    """Add an entry. Names are unique, lower case, with ``-`` separators."""
    if not re.match(r"^[a-z0-9][a-z0-9.-]*$", entry.name):
        raise ValueError(f"model names are lower case with '-' separators, got {entry.name!r}")
    with _LOCK:
        if entry.name in _REGISTRY:
            raise ValueError(f"model {entry.name!r} is registered twice")
        _REGISTRY[entry.name] = entry
    return entry


def _ensure_loaded() -> None:
    global _LOADED
    if _LOADED:
        return
    with _LOCK:
        if not _LOADED:
            from .entries import ENTRIES

            for entry in ENTRIES:
                register(entry)
            _LOADED = True


def _natural_key(name: str) -> list[Any]:
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name)]


def list_models(
    pattern: str | Iterable[str] = "*",
    *,
    modality: str | None = None,
    architecture: str | None = None,
    pretrained: bool | None = None,
    tag: str | None = None,
) -> list[str]:
    """Names of registered models, naturally sorted (``resnet10`` before ``resnet101``).

    ``pattern`` takes shell wildcards (``'med3d-*'``) or a list of them. ``modality`` ('CT', 'MR'; an entry
    pretrained on both, 'CT+MR', matches either),
    ``architecture`` (builder name, wildcards allowed) and ``tag`` filter; ``pretrained=True`` keeps only
    entries whose weights can be downloaded, ``False`` only those without.
    """
    _ensure_loaded()
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    names = []
    for name, entry in _REGISTRY.items():
        if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        if modality is not None and modality.lower() not in entry.input.modality.lower().split("+"):
            continue
        if architecture is not None and not fnmatch.fnmatchcase(entry.architecture, architecture):
            continue
        if pretrained is not None and entry.has_weights != pretrained:
            continue
        if tag is not None and tag not in entry.tags:
            continue
        names.append(name)
    return sorted(names, key=_natural_key)


def get_entry(name: str) -> ModelEntry:
    """The entry registered under ``name``; an unknown name fails with the closest registered names."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        pass
    normalised = name.strip().lower().replace("_", "-")
    if normalised in _REGISTRY:
        return _REGISTRY[normalised]
    close = difflib.get_close_matches(normalised, list(_REGISTRY), n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}; {hint}`zoo list` (or zoo.list_models()) shows all {len(_REGISTRY)} names",
        name=name, suggestions=list(close),
    )


def info(name: str) -> ModelEntry:
    """Everything the registry knows about ``name`` (an immutable :class:`ModelEntry`)."""
    return get_entry(name)


def all_entries() -> list[ModelEntry]:
    return [_REGISTRY[n] for n in list_models()]


__all__ = [*_entry.__all__, "FORMATS", "all_entries", "get_entry", "info", "list_models", "register"]
