"""Where a model's weights come from: a verified safetensors file in medzoo's layout for a registry entry.

:func:`resolve_weights` downloads the upstream file on first use (pinned revision, sha256 checked) or takes a
local one (``checkpoint=``), converts it once into the cache (:mod:`zoo.convert.cache`) and returns the file
and how it was verified; later calls find the conversion without network access. :func:`source_state_dict`
reads those weights; :func:`resolve_entry` names the entry (and a local weights file) for a registry name or a
model folder. Weights that come with restrictive terms show their notice once per model and process
(:class:`LicenseWarning`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

from torch import Tensor, nn

from .archs.build import build_model, meta_device_model
from .convert.cache import (
    ConvertedCheckpoint,
    cached_conversion,
    convert_into_cache,
    converted_dir,
    load_converted,
    remembered_sha256,
    source_key_for,
)
from .errors import WeightsNotAvailableError
from .hub.download import fetch_checkpoint
from .hub.integrity import verify_file
from .model_dir import is_model_dir, read_model_dir
from .options import VerifyMode, check_option
from .registry import ModelEntry, get_entry


class LicenseWarning(UserWarning):
    """Shown once per model and process when weights come with restrictive terms."""


_WARNED: set[str] = set()


def show_license_notice(entry: ModelEntry) -> None:
    """Warn (:class:`LicenseWarning`) with the entry's licence notice, once per model and process.

    The warning is attributed to ``medzoo`` rather than to a source line, so Python prints it as one line
    (``medzoo:0: LicenseWarning: NAME: notice``) with no line of medzoo's code under it; warning filters on the
    category (``-W ignore::zoo.LicenseWarning``) work as usual."""
    if entry.license.notice and entry.name not in _WARNED:
        _WARNED.add(entry.name)
        warnings.warn_explicit(f"{entry.name}: {entry.license.notice}", LicenseWarning, filename="medzoo", lineno=0,
                               module="zoo")


def resolve_entry(model: str | os.PathLike | ModelEntry) -> tuple[ModelEntry, Path | None]:
    """The registry entry of ``model`` (a name, a medzoo model folder, or an entry) and a local weights file."""
    if isinstance(model, ModelEntry):
        return model, None
    if is_model_dir(model):
        return read_model_dir(model)
    return get_entry(str(model)), None


def resolve_weights(
    entry: ModelEntry,
    *,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_format: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    force_download: bool = False,
    verify: VerifyMode = "auto",
    progress: bool = True,
) -> tuple[Path, str]:
    """Path of a verified safetensors file with ``entry``'s weights in medzoo's layout, and how it was checked.

    Downloads and converts on first use; later calls return the cached conversion without network access.
    """
    check_option("verify", verify, VerifyMode)
    def reference() -> nn.Module:
        return meta_device_model(lambda: build_model(entry))

    if checkpoint is not None:
        return _user_checkpoint(entry, Path(checkpoint), checkpoint_format, reference, cache_dir, verify, progress)
    src = entry.source
    if src is None:
        raise WeightsNotAvailableError(
            f"{entry.name!r} has no published weights"
            f"{': ' + entry.weights_note.rstrip('.') if entry.weights_note else ''}. "
            "Use pretrained=False, or pass checkpoint='/path/to/weights' if you trained them yourself."
        )
    if src.package_file:
        fetched = fetch_checkpoint(src, name=entry.name)
        return fetched.path, fetched.verified_by
    key = source_key_for(entry)
    directory = converted_dir(entry.name, key, cache_dir)
    if not force_download:
        cached = cached_conversion(directory, verify)
        if cached is not None:
            return cached.path, _verified_by(cached)
    fetched = fetch_checkpoint(
        src, name=entry.name, cache_dir=cache_dir, mirror=mirror, force_download=force_download, progress=progress
    )
    provenance = {
        "source": {"repo_id": src.repo_id, "filename": src.filename, "revision": src.revision, "origin": fetched.origin},
        "source_sha256": fetched.sha256,
        "verified_by": fetched.verified_by,
    }
    converted = convert_into_cache(
        directory, fetched.path, entry=entry, fmt=src.format, reference=reference,
        provenance=provenance, verify=verify, progress=progress, replace=force_download,
    )
    return converted.path, _verified_by(converted)


def source_state_dict(
    entry: ModelEntry,
    local: Path | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> dict[str, Tensor]:
    """The entry's converted weights (downloaded, verified and converted on first use), or those of the model
    folder's weights file ``local`` when no ``checkpoint`` is given; shows the licence notice."""
    show_license_notice(entry)
    if local is not None and checkpoint is None:
        return load_converted(local)
    path, _ = resolve_weights(entry, checkpoint=checkpoint, cache_dir=cache_dir, progress=progress)
    return load_converted(path)


def _verified_by(converted: ConvertedCheckpoint) -> str:
    """How the weights were checked: the source's verification when converted now, else the cache's record."""
    how = str(converted.meta.get("verified_by", "verified source"))
    return how if converted.fresh else f"cached conversion of {how}"


def _user_checkpoint(
    entry: ModelEntry,
    path: Path,
    fmt: str | None,
    reference: Callable[[], nn.Module],
    cache_dir: str | os.PathLike | None,
    verify: VerifyMode,
    progress: bool,
) -> tuple[Path, str]:
    if not path.is_file():
        raise WeightsNotAvailableError(f"checkpoint file {path} does not exist")
    if path.suffix == ".safetensors" and fmt is None:
        fmt = _safetensors_format(entry, path)
    fmt = fmt or (entry.source.format if entry.source else "safetensors")
    digest = remembered_sha256(path, cache_dir, progress=progress, verify=verify)
    src = entry.source
    if src is not None and src.sha256 and src.filename == path.name and digest != src.sha256:
        verify_file(path, sha256=src.sha256, what=f"checkpoint {path.name} of {entry.name!r}")
    verified = "registry sha256" if src is not None and digest == src.sha256 else "user-supplied file (sha256 recorded)"
    directory = converted_dir(entry.name, f"file-{digest[:16]}", cache_dir)
    provenance = {"source": {"path": str(path.resolve())}, "source_sha256": digest, "verified_by": verified}
    converted = convert_into_cache(
        directory, path, entry=entry, fmt=fmt, reference=reference, provenance=provenance,
        verify=verify, progress=progress,
    )
    return converted.path, verified


def _safetensors_format(entry: ModelEntry, path: Path) -> str:
    """``'timm'`` for a 2D timm file given to an entry converted from timm (its stem kernel is 4-D), else
    ``'safetensors'`` (medzoo's own layout: a converted file, or weights trained with ``export/``)."""
    if entry.source is None or entry.source.format != "timm":
        return "safetensors"
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            stem = f.get_slice("conv1.weight").get_shape() if "conv1.weight" in f.keys() else None
    except Exception:  # not readable: let the converter name the problem
        return "safetensors"
    return "timm" if stem is not None and len(stem) == 4 else "safetensors"


__all__ = ["LicenseWarning", "resolve_entry", "resolve_weights", "show_license_notice", "source_state_dict"]
