"""A published medzoo model folder on the Hugging Face Hub: ``zoo.load("hf-hub:ORG/NAME")`` (timm's prefix).

A medzoo repo holds what :func:`zoo.save` writes and ``zoo publish`` uploads: ``config.json`` (the network and the
entry's facts), ``model.safetensors`` (the weights in medzoo's layout) and ``README.md`` (the card).

* :func:`parse_hub_name` reads ``"hf-hub:ORG/NAME"`` or ``"hf-hub:ORG/NAME@REVISION"`` (a branch, tag or commit);
  a name without the prefix is never a Hub repo.
* :func:`fetch_hub_model` downloads the files through huggingface_hub into the HF cache (``<cache_dir>/hub``),
  all at one commit: ``config.json`` first, at the requested revision, and the others at the commit it resolved
  to, so a push in between cannot mix two versions. ``model.safetensors`` is verified against a sha256 the caller
  pins (``sha256=``) or the Hub's LFS sha256 (the blob name in the cache); ``config.json`` and ``README.md``
  against their git blob ids. A pinned 40-hex commit is served from the cache without any request.
* :func:`hub_entry` builds the :class:`~zoo.entry.ModelEntry` from ``config.json`` under the same checks as a local
  model folder (:func:`zoo.model_dir.entry_from_config`: field types, op classes from an allow-list, size limits),
  so nothing in a downloaded config selects code.

Every failure is one :class:`~zoo.errors.ZooError` naming the repo, the file and the fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import CheckpointFormatError, WeightsNotAvailableError, ZooError
from ..registry import CheckpointSource, ModelEntry
from .download import FetchedFile, HubFile, download_hub_file

#: the prefix of a Hub repo id in ``zoo.load`` / ``zoo info`` (as in timm)
HUB_PREFIX = "hf-hub:"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
README = "README.md"

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FOLDER_FIX = ("a medzoo model repo holds config.json, model.safetensors and README.md (what zoo.save writes and "
               "`zoo publish` uploads); check the repo id and revision")


class HubRepoError(ZooError, ValueError):
    """A Hub name or option that cannot name a medzoo model repo (``hf-hub:ORG/NAME[@REVISION]``)."""

    repo_id: str | None = None


@dataclass(frozen=True)
class HubRef:
    """A Hub model repo and the revision asked for (None: ``main``)."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{HUB_PREFIX}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class HubModelFolder:
    """The downloaded files of a medzoo repo at one ``commit`` (``weights`` None when not asked for)."""

    ref: HubRef
    commit: str
    config: Path
    readme: Path | None
    weights: FetchedFile | None = None

    @property
    def label(self) -> str:
        """``hf-hub:ORG/NAME@<commit>``: exactly what was loaded."""
        return f"{HUB_PREFIX}{self.ref.repo_id}@{self.commit}"


def is_hub_name(name: object) -> bool:
    """True when ``name`` is a string starting with ``hf-hub:``."""
    return isinstance(name, str) and name.startswith(HUB_PREFIX)


def parse_hub_name(name: str, revision: str | None = None) -> HubRef:
    """``"hf-hub:ORG/NAME"`` or ``"hf-hub:ORG/NAME@REVISION"`` -> :class:`HubRef`; ``revision`` (``zoo.load``'s
    argument) must agree with an ``@REVISION`` in the name. Raises :class:`HubRepoError`."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not is_hub_name(name):
        raise HubRepoError(f"{name!r} is not a Hub name: write hf-hub:ORG/NAME (or hf-hub:ORG/NAME@REVISION)")
    body = name[len(HUB_PREFIX):]
    repo_id, at, in_name = body.partition("@")
    if at and not in_name:
        raise HubRepoError(f"{name!r} ends with '@' but names no revision: write hf-hub:{repo_id}@REVISION (a "
                           "branch, tag or commit), or leave out the '@'", repo_id=repo_id)
    try:
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1:
            raise HFValidationError("it must be ORG/NAME (or USER/NAME)")
    except HFValidationError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "invalid"
        raise HubRepoError(f"{name!r} does not name a Hub model repo ({first}); write hf-hub:ORG/NAME or "
                           "hf-hub:ORG/NAME@REVISION, as on https://huggingface.co/ORG/NAME", repo_id=repo_id) from None
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise HubRepoError(f"revision must be a branch, tag or commit of {repo_id}, got {revision!r}", repo_id=repo_id)
    if in_name and revision is not None and in_name != revision:
        raise HubRepoError(f"{name!r} names revision {in_name!r} but revision={revision!r} was given too; give one",
                           repo_id=repo_id)
    return HubRef(repo_id, in_name or revision)


def _fix_for(reason: str, ref: HubRef, filename: str) -> str:
    if reason.startswith("the Hub has no repository"):
        return (f"check the repo id (https://huggingface.co/{ref.repo_id}); for a private repo log in first "
                "(`huggingface-cli login` or $HF_TOKEN)")
    if reason.startswith("the Hub has no revision"):
        return f"check the revision: a branch, tag or 40-hex commit of {ref.repo_id}"
    if reason.startswith("the Hub has no file"):
        return _FOLDER_FIX
    return (f"connect to the Hub (or unset HF_HUB_OFFLINE), or on a machine with access run `huggingface-cli "
            f"download {ref.repo_id}` and pass the folder it prints to zoo.load")


def _download(ref: HubRef, filename: str, revision: str | None, *, sha256: str | None = None,
              cache_dir: str | os.PathLike | None = None, force_download: bool = False,
              progress: bool = False) -> FetchedFile:
    def miss(reason: str, offline_hint: bool, url: str) -> WeightsNotAvailableError:
        return WeightsNotAvailableError(
            f"{ref}: {filename} (revision {revision or 'main'}) could not be downloaded: {reason}; "
            f"{_fix_for(reason, ref, filename)}",
            name=str(ref), url=url, reason=reason,
        )

    file = HubFile(ref.repo_id, filename, revision=revision, sha256=sha256)
    return download_hub_file(file, label=f"{filename} of {ref}", miss=miss, cache_dir=cache_dir,
                             force_download=force_download, progress=progress)


def fetch_hub_model(
    ref: HubRef,
    *,
    sha256: str | None = None,
    weights: bool = True,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    progress: bool = True,
) -> HubModelFolder:
    """Download (or find in the HF cache) ``config.json``, ``README.md`` and, with ``weights``,
    ``model.safetensors`` of ``ref``, all at the commit the revision resolves to; verify each file.

    ``sha256`` pins ``model.safetensors`` (64 lowercase hex digits); without it the Hub's LFS sha256 is checked.
    A missing ``README.md`` is allowed (the model loads without it); a missing ``config.json`` or
    ``model.safetensors`` raises :class:`~zoo.errors.WeightsNotAvailableError` naming the repo and the fix. A
    ``config.json`` that does not pass :func:`hub_entry`'s checks is refused before the weights are downloaded.
    """
    if sha256 is not None and (not isinstance(sha256, str) or not _HEX64.match(sha256)):
        raise HubRepoError(f"sha256 must be 64 lowercase hex digits (the sha256 of {WEIGHTS} of {ref.repo_id}), "
                           f"got {sha256!r}", repo_id=ref.repo_id)
    config = _download(ref, CONFIG, ref.revision, cache_dir=cache_dir, force_download=force_download)
    snapshot = config.path.parent.name  # .../snapshots/<commit>/config.json
    commit = snapshot if _HEX40.match(snapshot) else (ref.revision or "main")
    try:
        readme: Path | None = _download(ref, README, commit, cache_dir=cache_dir, force_download=force_download).path
    except WeightsNotAvailableError as err:
        if not (err.reason or "").startswith("the Hub has no file"):
            raise
        readme = None
    hub_entry(HubModelFolder(ref, commit, config.path, readme))  # refuse a bad config before the weights come
    fetched = None
    if weights:
        fetched = _download(ref, WEIGHTS, commit, sha256=sha256, cache_dir=cache_dir,
                            force_download=force_download, progress=progress)
    return HubModelFolder(ref, commit, config.path, readme, fetched)


def hub_entry(folder: HubModelFolder) -> ModelEntry:
    """The :class:`ModelEntry` described by the repo's ``config.json`` (checked as a local model folder's), with
    ``source`` naming the repo's ``model.safetensors`` at the commit (and its sha256 once downloaded)."""
    from ..model_config import read_config
    from ..model_dir import entry_from_config

    where = f"{CONFIG} of {folder.label}"
    try:
        entry = entry_from_config(read_config(folder.config), where)
    except CheckpointFormatError as err:
        raise CheckpointFormatError(
            f"refused to load {folder.ref}: {err}. Nothing from that repo was used; its publisher can re-save the "
            "model with zoo.save and publish it again", path=where, key=err.key,
        ) from None
    got = folder.weights
    source = CheckpointSource(
        repo_id=folder.ref.repo_id, filename=WEIGHTS, format="safetensors",
        revision=folder.commit if _HEX40.match(folder.commit) else None,
        sha256=got.sha256 if got is not None else None,
        size=got.path.stat().st_size if got is not None else None,
        revision_note="" if _HEX40.match(folder.commit) else f"asked for {folder.ref.revision or 'main'}",
    )
    return replace(entry, source=source)


__all__ = ["HUB_PREFIX", "HubModelFolder", "HubRef", "HubRepoError", "fetch_hub_model", "hub_entry", "is_hub_name",
           "parse_hub_name"]
