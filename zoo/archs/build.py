"""A registry entry's network, built: the entry's builder arguments (plus the caller's channel, class and
architecture overrides) given to :func:`zoo.archs.build_architecture`, on the CPU with random initialisation
(:func:`build_model`) or on the meta device, with no memory and no initialisation (:func:`meta_device_model`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn

from ..registry import ModelEntry
from .factory import build_architecture, get_builder


def _builder_kwargs(entry: ModelEntry, in_channels: int, num_classes: int | None, overrides: dict) -> dict:
    """The builder arguments of ``entry`` with ``overrides``, ``in_channels`` and ``num_classes`` (None: a
    head-less backbone). A new class count drops the entry's output activation (the new head gives logits) unless
    ``overrides`` set it."""
    kwargs = entry.build_kwargs()
    kwargs.update(overrides)
    kwargs["in_channels"] = in_channels
    kwargs["num_classes"] = num_classes  # None: a head-less backbone
    if num_classes is not None and num_classes != entry.num_classes and "out_activation" not in overrides \
            and "out_activation" in inspect.signature(get_builder(entry.architecture)).parameters:
        kwargs["out_activation"] = None  # a new task head gives logits: the fine-tuning loss applies the activation
    return kwargs


def build_model(entry: ModelEntry, in_channels: int | None = None, num_classes: int | None = None,
                **overrides: Any) -> nn.Module:
    """Build ``entry``'s architecture with ordinary random initialisation (no weights)."""
    in_ch = in_channels or entry.input.in_channels
    classes = num_classes if num_classes is not None else entry.num_classes
    return build_architecture(entry.architecture, **_builder_kwargs(entry, in_ch, classes, overrides))


def meta_device_model(build: Callable[[], nn.Module]) -> nn.Module:
    """Build a model with every parameter on the meta device (no memory, no random init)."""
    with torch.device("meta"):
        return build()


__all__ = ["build_model", "meta_device_model"]
