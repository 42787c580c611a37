"""Where medzoo keeps files.

* ``zoo_cache_dir()``: converted safetensors and their metadata. ``cache_dir=`` argument, else
  ``$ZOO_CACHE``, else ``$XDG_CACHE_HOME/medzoo`` (``~/.cache/medzoo``).
* ``hf_cache_dir()``: upstream downloads go through the standard Hugging Face cache
  (``$HF_HUB_CACHE``, ``$HF_HOME/hub``, ``~/.cache/huggingface/hub``), shared with other tools; with an explicit
  ``cache_dir=`` they go to ``<cache_dir>/hub`` instead so one folder holds everything.
* ``mirror_dir()``: ``$ZOO_MIRROR``, a local folder laid out as ``<repo_id>/<filename>``.

Environment variables are read at call time, not at import.
"""

from __future__ import annotations

import os
from pathlib import Path


def zoo_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("ZOO_CACHE"):
        return Path(os.environ["ZOO_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "medzoo"


def hf_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser() / "hub"
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "hub"


def mirror_dir(mirror: str | os.PathLike | None = None) -> Path | None:
    if mirror is not None:
        return Path(mirror).expanduser()
    value = os.environ.get("ZOO_MIRROR")
    return Path(value).expanduser() if value else None


def hf_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks for no network."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return True
    return False
