"""medzoo: pretrained 3D medical imaging models.

Where things live:

* registered: ``zoo/entries/<family>.py`` (facts: :mod:`zoo.registry`);
* built: ``zoo/archs/`` (:func:`zoo.archs.build_architecture`);
* downloaded and verified: ``zoo/hub/``; converted: ``zoo/convert/``;
* loaded: :func:`zoo.load` (``zoo/loading.py``; a registry name, a model folder or ``"hf-hub:ORG/NAME"``);
  adapted: ``zoo/adapt/``; saved as a publishable model folder: :func:`zoo.save` (``zoo/saving.py``).

``import zoo`` is cheap: huggingface_hub, timm and nnunetv2 are imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._lazy import lazy_attributes
from ._version import __version__
from .errors import (
    AdaptationError,
    ArchitectureSpecError,
    CheckpointFormatError,
    ChecksumError,
    PlanError,
    UnknownModelError,
    UnsafeCheckpointError,
    WeightsNotAvailableError,
    ZooError,
)
from .registry import ModelEntry, get_entry, info, list_models

if TYPE_CHECKING:  # pragma: no cover
    from .archs.build import build_model
    from .loading import LoadReport, load
    from .weights import LicenseWarning, resolve_weights

_LAZY = {
    "load": "zoo.loading",
    "save": "zoo.saving",  # an app (it renders the card): not imported here even for type checkers
    "data_config": "zoo.data_config",
    "build_model": "zoo.archs.build",
    "resolve_weights": "zoo.weights",
    "LoadReport": "zoo.loading",
    "LicenseWarning": "zoo.weights",
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
    "ArchitectureSpecError",
    "PlanError",
    *_LAZY,
]


__getattr__ = lazy_attributes(__name__, _LAZY)
