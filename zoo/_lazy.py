"""One helper for the packages whose names load on first use (``import zoo`` stays cheap).

A package lists ``{name: "dotted.module"}`` and sets ``__getattr__ = lazy_attributes(__name__, table)``: the first
access to ``package.name`` imports that module, reads the attribute of the same name, and caches it in the
package's globals. The table is written in the source, never read from a file.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping


def lazy_attributes(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that resolves ``table``'s names on first use."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
