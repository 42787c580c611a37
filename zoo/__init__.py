"""medzoo: pretrained 3D medical imaging models.

Where things live:

* registered: ``zoo/entries/<family>.py`` (facts: :mod:`zoo.registry`);
* built: ``zoo/archs/`` (:func:`zoo.archs.build_architecture`);
* downloaded and verified: ``zoo/hub/``; converted: ``zoo/convert/``;
* loaded: :func:`zoo.load` (``zoo/loading.py``); adapted: ``zoo/adapt/``.

``import zoo`` is cheap: huggingface_hub, timm and nnunetv2 are imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    AdaptationError,
    CheckpointFormatError,
    ChecksumError,
    UnknownModelError,
    UnsafeCheckpointError,
    WeightsNotAvailableError,
    ZooError,
)
from .registry import ModelEntry, get_entry, info, list_models

if TYPE_CHECKING:  # pragma: no cover
    from .loading import LicenseWarning, LoadReport, build_model, load, resolve_weights

_LAZY = {
    "load": ("zoo.loading", "load"),
    "build_model": ("zoo.loading", "build_model"),
    "resolve_weights": ("zoo.loading", "resolve_weights"),
    "LoadReport": ("zoo.loading", "LoadReport"),
    "LicenseWarning": ("zoo.loading", "LicenseWarning"),
}

__all__ = [
    "__version__",
    "list_models",
    "info",
    "get_entry",
    "ModelEntry",
    "ZooError",
    "UnknownModelError",
    "WeightsNotAvailableError",
    "ChecksumError",
    "UnsafeCheckpointError",
    "CheckpointFormatError",
    "AdaptationError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
