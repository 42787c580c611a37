"""Reading a JSON object from a file that came from outside: bounded in size, one clear error for every failure.

Every JSON file medzoo reads (a model folder's ``config.json``, nnU-Net's ``plans.json`` and ``dataset.json``, a
mirror's ``manifest.json``) goes through :func:`read_json_object`: at most ``max_bytes`` are read (nothing larger
is allocated), and a missing, unreadable, oversized, malformed, too deeply nested or non-object file raises the
caller's error class with the path in the message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from .errors import ZooError


def _with_path(error: type[Exception], path: Path) -> Callable[[str], Exception]:
    """``error(message)``, with ``path=`` set when ``error`` is a :class:`ZooError` that declares a path field."""
    if issubclass(error, ZooError) and "path" in error.fields:
        return lambda message: error(message, path=path)
    return error


def read_json_object(path: str | os.PathLike, *, what: str, max_bytes: int, error: type[Exception],
                     fix: str = "") -> dict[str, Any]:
    """The JSON object in ``path``; ``error(message)`` for anything else (``what`` names the file's role)."""
    path = Path(path)
    suffix = f"; {fix}" if fix else ""
    error = _with_path(error, path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist{suffix}") from None
    except OSError as err:
        raise error(f"{what} {path} cannot be read: {err.strerror or err}{suffix}") from None
    if len(data) > max_bytes:
        raise error(f"{what} {path} is larger than {max_bytes:,} bytes, more than any such file needs{suffix}")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise error(f"{what} {path} is not valid JSON: {str(err)[:200]}{suffix}") from None
    if not isinstance(value, dict):
        raise error(f"{what} {path} must hold a JSON object, got {type(value).__name__}{suffix}")
    return value
