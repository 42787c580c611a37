"""Adaptation of pretrained weights to other networks.

* :func:`adapt_state_dict`: the transfer engine (:mod:`zoo.adapt.engine`): fit a U-Net checkpoint to another
  U-Net, tensor by tensor (copy, channel inflation, kernel collapse/inflation, transposed-conv strides, stage
  alignment, axis permutation), with a :class:`TransferReport`;
* :func:`adapt_model`: the same, loaded into a (meta or real) network;
* :func:`adapt_to_plan`: a registry checkpoint into the network of an nnU-Net plan configuration;
* :func:`adapt_input_channels`: first-conv channel inflation/reduction (:mod:`zoo.adapt.channels`).

Names load on first use, so ``import zoo.adapt`` costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "adapt_state_dict": "zoo.adapt.engine",
    "adapt_model": "zoo.adapt.engine",
    "load_into": "zoo.adapt.engine",
    "TransferReport": "zoo.adapt.report",
    "TransferRow": "zoo.adapt.report",
    "UnusedRow": "zoo.adapt.report",
    "adapt_to_plan": "zoo.nnunet.export",
    "adapt_input_channels": "zoo.adapt.channels",
    "CHANNEL_MODES": "zoo.adapt.channels",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo.adapt' has no attribute {name!r}")
