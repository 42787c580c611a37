"""Build a declared architecture by name: the builder of :data:`zoo.archs.declarations.ARCHITECTURES`, after the
spec check of :mod:`zoo.archs.size_estimate`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable

from .declarations import ARCHITECTURES

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


def get_builder(name: str) -> Callable[..., nn.Module]:
    """The builder of architecture ``name``: only the modules of the fixed table :data:`ARCHITECTURES` are
    imported, whatever ``name`` is (a name read from a file selects a row of the table, nothing else).

    Raises:
        ArchitectureSpecError: (a ``ValueError``) for a name outside the table.
    """
    target = ARCHITECTURES.get(name) if isinstance(name, str) else None
    if target is None:
        from .limits import ArchitectureSpecError
        from .ops import shown

        raise ArchitectureSpecError("architecture", f"unknown architecture {shown(name)}; known: "
                                                    f"{', '.join(sorted(ARCHITECTURES))}")
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


def build_architecture(name: str, **kwargs: Any) -> nn.Module:
    """Build architecture ``name`` with ``kwargs`` (must include whatever the builder requires).

    The spec is checked first by arithmetic (:func:`zoo.archs.size_estimate.check_architecture`): class names
    only from the table of :mod:`zoo.archs.ops`, and the size limits of :mod:`zoo.archs.limits`, so nothing is
    allocated for a spec that would be refused.

    Raises:
        ArchitectureSpecError: (a ``ValueError``) naming the offending key, its value and the rule or limit.
    """
    from .size_estimate import check_architecture

    builder = get_builder(name)
    check_architecture(name, kwargs)
    return builder(**kwargs)


__all__ = ["build_architecture", "get_builder"]
