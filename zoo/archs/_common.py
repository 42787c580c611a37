"""Helpers shared by the architecture modules (kept out of the package ``__init__``, which only re-exports)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


def on_meta_device(module: nn.Module) -> bool:
    """True when ``module`` was built under ``torch.device('meta')`` (weights will be assigned, not drawn).

    Builders skip their weight initialisation then: random init on the meta device is pure overhead (and
    kaiming_normal_ there costs about 0.8 s on first use through torch's reference decompositions).
    """
    first = next(iter(module.parameters()), None)
    return first is not None and first.is_meta


__all__ = ["on_meta_device"]
