"""Obtain the upstream checkpoint file of a registry entry, verified.

Sources, in order:

1. a file shipped inside the package (``CheckpointSource.package_file``);
2. a local mirror (``mirror=`` or ``$ZOO_MIRROR``) laid out as ``<mirror>/<repo_id>/<filename>``;
3. the Hugging Face Hub through ``huggingface_hub.hf_hub_download`` at the pinned revision (which serves a
   pinned commit from the local HF cache with no network call; respects ``HF_HUB_OFFLINE``).

Before a file that is not cached is downloaded, one HEAD request without retries checks that the Hub answers:
huggingface_hub retries a failed metadata request with exponential back-off when nothing is cached (about 23 s
when the connection is refused, minutes when packets are dropped), so an offline miss fails at once instead,
with medzoo's message only.

huggingface_hub checks only the size of what it downloads, so the bytes are hashed here: against the
registry's sha256 when it is pinned, otherwise against the Hub's own LFS hash (the blob's name in the HF
cache), or for a regular (non-LFS) git file against its git blob id (the blob's name too). A mismatching Hub file
is deleted and downloaded once more; a second mismatch raises.

:func:`download_hub_file` is that path for any Hub file (:class:`HubFile`), with the caller's words for a miss;
:mod:`zoo.hub.repo` uses it for the files of a published medzoo model folder (``zoo.load("hf-hub:ORG/NAME")``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .._version import __version__
from ..errors import ChecksumError, WeightsNotAvailableError
from ..registry import CheckpointSource
from .integrity import sha256_file, verify_file
from .paths import hf_cache_dir, hf_offline, mirror_dir

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
ASSETS = Path(__file__).resolve().parent.parent / "assets"


@dataclass(frozen=True)
class FetchedFile:
    """A verified upstream file. ``origin`` is ``package``, ``mirror`` or ``hub``; ``verified_by`` says how."""

    path: Path
    sha256: str
    origin: str
    verified_by: str


@dataclass(frozen=True)
class HubFile:
    """One file of a Hub repo: ``revision`` a branch, tag or commit (None: ``main``); ``sha256`` / ``size`` pins the
    caller holds, if any (without a sha256 the Hub's own LFS hash or git blob id is checked)."""

    repo_id: str
    filename: str
    revision: str | None = None
    sha256: str | None = None
    size: int | None = None
    pinned_by: str = "sha256 pinned by the caller"


#: builds the error of a Hub miss from (reason, offline_hint, url)
MissError = Callable[[str, bool, str], Exception]


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
                f"{label} should ship with the package at {path} but is missing; reinstall medzoo",
                name=name or source.filename, reason="missing from the package",
            )
        digest = verify_file(path, sha256=source.sha256, size=source.size, what=label)
        return FetchedFile(path, digest, "package", "registry sha256")

    root = mirror_dir(mirror)
    if root is not None:
        fetched = _from_mirror(source, root, label, progress)
        if fetched is not None:
            return fetched
    return _from_hub(source, label, root, cache_dir, force_download, progress, name=name)


def mirror_manifest_sha256(root: Path, source: CheckpointSource) -> str | None:
    """The sha256 that ``<mirror>/manifest.json`` (written by ``zoo mirror export``) records, if any."""
    manifest = root / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        files = json.loads(manifest.read_text()).get("files", {})
    except (OSError, ValueError) as err:
        raise ChecksumError(f"mirror manifest {manifest} is unreadable: {err}", path=manifest) from err
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
            "records its sha256, so it cannot be verified; re-create the mirror with `zoo mirror export`",
            path=path, expected_size=source.size,
        )
    digest = verify_file(path, sha256=expected, size=source.size, what=f"mirrored {label}", progress=progress)
    how = "registry sha256" if source.sha256 else "mirror manifest sha256"
    return FetchedFile(path, digest, "mirror", how)


def _miss_message(
    source: CheckpointSource, label: str, root: Path | None, reason: str, url: str, offline_hint: bool = False
) -> str:
    """The message of a Hub miss: what is missing, why, the URL to fetch by hand, and where to put the file."""
    target = (root or Path("$ZOO_MIRROR")) / source.repo_id / source.filename
    hint = (
        "No network here? Set HF_HUB_OFFLINE=1 to skip the Hub and fail at once.\n" if offline_hint else ""
    )
    return (
        f"{label} is not cached and could not be downloaded ({reason}).\n"
        f"{hint}"
        f"Fetch it on a machine with internet access:\n    {url}\n"
        f"then either put it at\n    {target}\n"
        f"(and set ZOO_MIRROR={root or '/path/to/mirror'}), or pass checkpoint='/path/to/{source.filename}' "
        "to zoo.load / --checkpoint to the CLI."
    )


def _hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set now, or was set when huggingface_hub was imported."""
    from huggingface_hub import constants

    return hf_offline() or bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Exceptions of huggingface_hub's HTTP layer that mean "no usable connection" (refused, unreachable,
    timed out, cut): httpx2 (huggingface_hub 2.x), httpx (1.x) or requests (0.x)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                          ("requests", ("ConnectionError", "Timeout"))):
        mod = sys.modules.get(module)  # a library that was never imported raised nothing
        errors.extend(getattr(mod, name) for name in names if hasattr(mod, name))
    return tuple(errors)


def _hub_failure(err: BaseException, source: HubFile | CheckpointSource) -> tuple[str, bool] | None:
    """``(reason, offline_hint)`` for a failure of the Hub client that means "cannot get this file", else None."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = constants.ENDPOINT
    if isinstance(err, (OfflineModeIsEnabled, LocalEntryNotFoundError)) and _hub_offline():
        return "HF_HUB_OFFLINE is set", False
    if isinstance(err, LocalEntryNotFoundError):
        cause = err.__cause__ or err.__context__
        detail = f"{type(cause).__name__}: {_first_line(cause)}" if cause is not None else _first_line(err)
        return f"no usable answer from {endpoint}: {detail}", True
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, GatedRepoError):
        return f"{source.repo_id} is a gated repository (HTTP {status}): accept its terms on the Hub and log in", False
    if isinstance(err, RepositoryNotFoundError):
        return f"the Hub has no repository {source.repo_id} or it needs a login (HTTP {status})", False
    if isinstance(err, RevisionNotFoundError):
        return f"the Hub has no revision {source.revision or 'main'} of {source.repo_id} (HTTP {status})", False
    if isinstance(err, EntryNotFoundError):
        return f"the Hub has no file {source.filename} at that revision (HTTP {status})", False
    if isinstance(err, HfHubHTTPError):
        if status == 429:
            return "the Hub is rate-limiting requests (HTTP 429); try again later", True
        if status is not None and status >= 500:
            return f"the Hub answered with a server error (HTTP {status}); try again later", True
        return f"the Hub refused the request (HTTP {status}): {_first_line(err)}", False
    if isinstance(err, _transport_errors()):
        return f"cannot connect to {endpoint}: {type(err).__name__}: {_first_line(err)}", True
    return None


def _first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def _in_hf_cache(source: HubFile | CheckpointSource, hub_cache: Path) -> bool:
    """True when the HF cache already holds ``source``'s file at its revision (``main``'s cached commit if unpinned)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source.repo_id, source.filename, cache_dir=str(hub_cache), revision=source.revision)
    return isinstance(found, str)


def _probe_hub(url: str) -> None:
    """One HEAD request for ``url``'s metadata, without retries; raises what huggingface_hub raises.

    ``hf_hub_download`` falls back to the cache quickly when its first metadata request fails, but when nothing is
    cached it repeats the request with back-off (five retries, 1+2+4+8+8 s of sleep, 60 s timeouts). This probe
    runs only when nothing is cached, so a miss fails on its first connection error instead.
    """
    from huggingface_hub import constants, get_hf_file_metadata

    timeout = getattr(constants, "HF_HUB_ETAG_TIMEOUT", 10)
    get_hf_file_metadata(url, timeout=timeout, library_name="medzoo", library_version=__version__)


def _from_hub(
    source: CheckpointSource,
    label: str,
    mirror_root: Path | None,
    cache_dir: str | os.PathLike | None,
    force_download: bool,
    progress: bool,
    name: str = "",
) -> FetchedFile:
    def miss(reason: str, offline_hint: bool, url: str) -> WeightsNotAvailableError:
        return WeightsNotAvailableError(
            _miss_message(source, label, mirror_root, reason, url, offline_hint),
            name=name or source.filename, url=url, reason=reason,
            mirror_path=(mirror_root or Path("$ZOO_MIRROR")) / source.repo_id / source.filename,
        )

    return download_hub_file(source, label=label, cache_dir=cache_dir, force_download=force_download,
                             progress=progress, miss=miss)


def download_hub_file(
    file: HubFile | CheckpointSource,
    *,
    label: str,
    miss: MissError,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    progress: bool = True,
) -> FetchedFile:
    """The verified local path of a Hub file, downloaded into the HF cache (``<cache_dir>/hub``) if needed.

    A failure of the Hub client that means "cannot get this file" (no repo, revision or file, offline, no
    connection, HTTP errors) raises ``miss(reason, offline_hint, url)``; a file whose bytes do not match its
    sha256 (pinned, or the Hub's) is removed from the cache and downloaded once more, then raises
    :class:`ChecksumError`.
    """
    import huggingface_hub

    hub_cache = hf_cache_dir(cache_dir)
    url = huggingface_hub.hf_hub_url(file.repo_id, file.filename, revision=file.revision)

    def download(force: bool) -> Path:
        offline = _hub_offline()
        if force and offline:
            raise miss("force_download=True needs the Hub, but HF_HUB_OFFLINE is set", False, url)
        try:
            if not offline and (force or not _in_hf_cache(file, hub_cache)):
                _probe_hub(url)
            return Path(
                huggingface_hub.hf_hub_download(
                    file.repo_id,
                    file.filename,
                    revision=file.revision,
                    cache_dir=str(hub_cache),
                    force_download=force,
                    local_files_only=offline,
                    library_name="medzoo",
                    library_version=__version__,
                )
            )
        except Exception as err:
            failure = _hub_failure(err, file)
            if failure is None:
                raise
            # ``from None``: only medzoo's message prints; the client's error stays in ``__context__``
            raise miss(*failure, url) from None

    path = download(force_download)
    try:
        return _verify_hub_file(file, path, label, progress)
    except ChecksumError:
        _remove_cached(path)
        if _hub_offline():
            raise
    path = download(True)
    try:
        return _verify_hub_file(file, path, label, progress)
    except ChecksumError:
        _remove_cached(path)
        raise


def git_blob_id(path: Path) -> str:
    """The git object id of a blob holding the file's bytes (the Hub's ETag, and blob name, of a regular file)."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_hub_file(source: HubFile | CheckpointSource, path: Path, label: str, progress: bool) -> FetchedFile:
    blob = path.resolve()
    if source.sha256:
        digest = verify_file(path, sha256=source.sha256, size=source.size, what=label, progress=progress)
        return FetchedFile(path, digest, "hub", getattr(source, "pinned_by", "registry sha256"))
    etag = blob.name
    if _SHA256.match(etag):
        digest = verify_file(path, sha256=etag, size=source.size, what=label, progress=progress)
        return FetchedFile(path, digest, "hub", "Hub LFS sha256 (blob name)")
    if source.size is not None and path.stat().st_size != source.size:
        raise ChecksumError(f"{label} at {path} has {path.stat().st_size:,} bytes, expected {source.size:,}",
                            path=path, expected_size=source.size, actual_size=path.stat().st_size)
    if _SHA1.match(etag):  # a regular git file: its blob name is its git blob id
        actual = git_blob_id(path)
        if actual != etag:
            raise ChecksumError(f"{label} {path} has git blob id {actual}, expected {etag} (corrupt or tampered)",
                                path=path, actual_size=path.stat().st_size)
        return FetchedFile(path, sha256_file(path), "hub", "Hub git blob id (sha1)")
    return FetchedFile(path, sha256_file(path), "hub", "unverified: no sha256 known and not an LFS file")


def _remove_cached(path: Path) -> None:
    """Delete a bad download from the HF cache: the blob and the snapshot link pointing to it."""
    blob = path.resolve()
    for p in (path, blob):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
