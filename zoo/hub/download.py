"""Obtain the upstream checkpoint file of a registry entry, verified.

Sources, in order:

1. a file shipped inside the package (``CheckpointSource.package_file``);
2. a local mirror (``mirror=`` or ``$ZOO_MIRROR``) laid out as ``<mirror>/<repo_id>/<filename>``;
3. the Hugging Face Hub through ``huggingface_hub.hf_hub_download`` at the pinned revision (which serves a
   pinned commit from the local HF cache with no network call; respects ``HF_HUB_OFFLINE``).

huggingface_hub checks only the size of what it downloads, so the bytes are hashed here: against the
registry's sha256 when it is pinned, otherwise against the Hub's own LFS hash (the blob's name in the HF
cache). A mismatching Hub file is deleted and downloaded once more; a second mismatch raises.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .._version import __version__
from ..errors import ChecksumError, WeightsNotAvailableError
from ..registry import CheckpointSource
from .integrity import sha256_file, verify_file
from .paths import hf_cache_dir, hf_offline, mirror_dir

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
ASSETS = Path(__file__).resolve().parent.parent / "assets"


@dataclass(frozen=True)
class FetchedFile:
    """A verified upstream file. ``origin`` is ``package``, ``mirror`` or ``hub``; ``verified_by`` says how."""

    path: Path
    sha256: str
    origin: str
    verified_by: str


def fetch_checkpoint(
    source: CheckpointSource,
    *,
    name: str = "",
    cache_dir: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    force_download: bool = False,
    progress: bool = True,
) -> FetchedFile:
    """Return the verified local path of ``source``'s file, downloading it if needed."""
    label = f"checkpoint of {name!r}" if name else f"{source.repo_id}/{source.filename}"
    if source.package_file:
        path = ASSETS / source.package_file
        if not path.is_file():
            raise WeightsNotAvailableError(
                f"{label} should ship with the package at {path} but is missing; reinstall medzoo"
            )
        digest = verify_file(path, sha256=source.sha256, size=source.size, what=label)
        return FetchedFile(path, digest, "package", "registry sha256")

    root = mirror_dir(mirror)
    if root is not None:
        fetched = _from_mirror(source, root, label, progress)
        if fetched is not None:
            return fetched
    return _from_hub(source, label, root, cache_dir, force_download, progress)


def mirror_manifest_sha256(root: Path, source: CheckpointSource) -> str | None:
    """The sha256 that ``<mirror>/manifest.json`` (written by ``zoo mirror export``) records, if any."""
    manifest = root / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        files = json.loads(manifest.read_text()).get("files", {})
    except (OSError, ValueError) as err:
        raise ChecksumError(f"mirror manifest {manifest} is unreadable: {err}") from err
    record = files.get(f"{source.repo_id}/{source.filename}")
    return record.get("sha256") if isinstance(record, dict) else None


def _from_mirror(source: CheckpointSource, root: Path, label: str, progress: bool) -> FetchedFile | None:
    path = root / source.repo_id / source.filename
    if not path.is_file():
        return None
    expected = source.sha256 or mirror_manifest_sha256(root, source)
    if expected is None:
        raise ChecksumError(
            f"{label} found in the mirror at {path}, but neither the registry nor {root / 'manifest.json'} "
            "records its sha256, so it cannot be verified; re-create the mirror with `zoo mirror export`"
        )
    digest = verify_file(path, sha256=expected, size=source.size, what=f"mirrored {label}", progress=progress)
    how = "registry sha256" if source.sha256 else "mirror manifest sha256"
    return FetchedFile(path, digest, "mirror", how)


def _miss_message(source: CheckpointSource, label: str, root: Path | None, reason: str) -> str:
    target = (root or Path("$ZOO_MIRROR")) / source.repo_id / source.filename
    return (
        f"{label} is not cached and could not be downloaded ({reason}).\n"
        f"Fetch it on a machine with internet access:\n    {source.url}\n"
        f"then either put it at\n    {target}\n"
        f"(and set ZOO_MIRROR={root or '/path/to/mirror'}), or pass checkpoint='/path/to/{source.filename}' "
        "to zoo.load / --checkpoint to the CLI."
    )


def _from_hub(
    source: CheckpointSource,
    label: str,
    mirror_root: Path | None,
    cache_dir: str | os.PathLike | None,
    force_download: bool,
    progress: bool,
) -> FetchedFile:
    import huggingface_hub
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    hub_cache = hf_cache_dir(cache_dir)

    def download(force: bool) -> Path:
        try:
            return Path(
                huggingface_hub.hf_hub_download(
                    source.repo_id,
                    source.filename,
                    revision=source.revision,
                    cache_dir=str(hub_cache),
                    force_download=force,
                    library_name="medzoo",
                    library_version=__version__,
                )
            )
        except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
            reason = "HF_HUB_OFFLINE is set" if hf_offline() else f"no connection to the Hub: {type(err).__name__}"
            raise WeightsNotAvailableError(_miss_message(source, label, mirror_root, reason)) from err
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as err:
            raise WeightsNotAvailableError(
                _miss_message(source, label, mirror_root, f"the Hub says {type(err).__name__}: {err}")
            ) from err

    path = download(force_download)
    try:
        return _verify_hub_file(source, path, label, progress)
    except ChecksumError:
        _remove_cached(path)
        if hf_offline():
            raise
    path = download(True)
    try:
        return _verify_hub_file(source, path, label, progress)
    except ChecksumError:
        _remove_cached(path)
        raise


def _verify_hub_file(source: CheckpointSource, path: Path, label: str, progress: bool) -> FetchedFile:
    blob = path.resolve()
    if source.sha256:
        digest = verify_file(path, sha256=source.sha256, size=source.size, what=label, progress=progress)
        return FetchedFile(path, digest, "hub", "registry sha256")
    etag = blob.name
    if _SHA256.match(etag):
        digest = verify_file(path, sha256=etag, size=source.size, what=label, progress=progress)
        return FetchedFile(path, digest, "hub", "Hub LFS sha256 (blob name)")
    if source.size is not None and path.stat().st_size != source.size:
        raise ChecksumError(f"{label} at {path} has {path.stat().st_size:,} bytes, expected {source.size:,}")
    return FetchedFile(path, sha256_file(path), "hub", "unverified: no sha256 known and not an LFS file")


def _remove_cached(path: Path) -> None:
    """Delete a bad download from the HF cache: the blob and the snapshot link pointing to it."""
    blob = path.resolve()
    for p in (path, blob):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
