"""``zoo.data_config(model)``: the input a model expects, as one call (timm's ``resolve_data_config``).

Takes a registry name, a :class:`~zoo.entry.ModelEntry`, or a model returned by ``zoo.load`` (its
``pretrained_cfg``) and returns the :class:`~zoo.io.model_input.DataConfig` that
:func:`zoo.io.model_input.model_input` turns a volume into a model-ready tensor with::

    config = zoo.data_config("genesis-chest-ct")
    x = zoo.io.model_input.model_input(volume_zyx, spacing_zyx, config)   # (1, C, *spatial), model axis order
"""

from __future__ import annotations

from typing import Any

from .io.model_input import DataConfig, resolve_data_config
from .registry import get_entry


def data_config(model: Any, *, intensity: str | None = None, **intensity_params: Any) -> DataConfig:
    """The :class:`DataConfig` of ``model`` (a registry name, an entry, or a loaded model); ``intensity`` and its
    parameters override the entry's own scheme."""
    entry = get_entry(model) if isinstance(model, str) else model
    return resolve_data_config(entry, intensity=intensity, intensity_params=intensity_params or None)
