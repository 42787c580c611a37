"""``zoo publish DIR --repo ORG/NAME``: upload a model folder to the Hugging Face Hub.

A model folder (:mod:`zoo.model_dir`) holds ``config.json`` and ``model.safetensors``, optionally ``README.md``.
Exactly these three files are uploaded in one commit: ``HfApi.create_repo(exist_ok=True)`` then
``HfApi.create_commit`` with one ``CommitOperationAdd`` per file, so what is sent is known (and testable)
before any network call. A missing ``README.md`` is generated from the registry card of the same name (or from
``config.json``), describing the hosted copy; an existing one must carry the same licence as ``config.json``.

Licences: weights whose licence forbids redistribution (``License.redistributable`` false: Models Genesis'
ASU licence, SuPreM's CC BY-NC-ND), weights derived from such a registry entry (``base_model`` chain), and
weights without a recorded licence are refused unless the caller states that they hold the rights
(``i_hold_the_rights=True``, ``--i-hold-the-rights``).

Record: the registry is code, so a publication cannot rewrite it. After a successful upload the published
commit and every file's sha256 and size are appended to ``DIR/published.json`` (never uploaded itself), and
:meth:`PublishResult.registry_snippet` prints the ``CheckpointSource(...)`` to paste into ``zoo/entries/`` so
that the registry pins that revision and sha256.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import CheckpointFormatError, ZooError
from .hub.integrity import atomic_path, sha256_file
from .model_dir import CONFIG, WEIGHTS, read_model_dir
from .registry import CheckpointSource, ModelEntry

README = "README.md"
RECORD = "published.json"
UPLOAD_FILES = (README, CONFIG, WEIGHTS)


class PublishError(ZooError):
    """The folder cannot be published as it is (bad repo id, card and config disagree, ...)."""


class PublishRefusedError(PublishError, PermissionError):
    """The licence of the weights forbids redistribution and the caller did not state they hold the rights."""


@dataclass(frozen=True)
class PlannedFile:
    """One file of the commit: where it goes, its size and sha256 (as huggingface_hub computed them)."""

    path_in_repo: str
    size: int
    sha256: str
    source: str  # local path, or "generated" for a README made from the registry


@dataclass
class PublishResult:
    repo_id: str
    files: list[PlannedFile]
    operations: list[Any]  # huggingface_hub.CommitOperationAdd
    licence: str
    dry_run: bool
    rights_asserted: bool = False
    licence_problems: list[str] = field(default_factory=list)
    repo_url: str | None = None
    revision: str | None = None
    commit_url: str | None = None
    record_path: Path | None = None

    @property
    def weights(self) -> PlannedFile:
        return next(f for f in self.files if f.path_in_repo == WEIGHTS)

    def registry_source(self) -> CheckpointSource:
        """The registry's :class:`CheckpointSource` for the published weights (pinned once uploaded)."""
        return CheckpointSource(repo_id=self.repo_id, filename=WEIGHTS, format="safetensors",
                                revision=self.revision, sha256=self.weights.sha256, size=self.weights.size)

    def registry_snippet(self) -> str:
        w = self.weights
        return (
            "source=CheckpointSource(\n"
            f"    repo_id={self.repo_id!r},\n"
            f"    filename={WEIGHTS!r},\n"
            "    format='safetensors',\n"
            f"    revision={self.revision!r},\n"
            f"    sha256={w.sha256!r},\n"
            f"    size={w.size},\n"
            ")"
        )

    def __str__(self) -> str:
        lines = [f"{'dry run: would upload' if self.dry_run else 'uploaded'} to {self.repo_id} ({self.licence})"]
        for f in self.files:
            lines.append(f"  {f.path_in_repo:<18} {f.size:>14,} bytes  sha256 {f.sha256}  ({f.source})")
        if self.rights_asserted and self.licence_problems:
            lines.append("  published under the caller's statement that they hold the rights:")
            lines += [f"    - {p}" for p in self.licence_problems]
        if self.revision:
            lines.append(f"  revision {self.revision}  {self.commit_url or ''}".rstrip())
        if self.record_path:
            lines.append(f"  recorded in {self.record_path}")
        return "\n".join(lines)


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise PublishError(f"invalid Hub repo id {repo_id!r}: {err}") from None
    if repo_id.count("/") != 1:
        raise PublishError(f"give the repo as ORG/NAME (or USER/NAME), got {repo_id!r}")


def _registry_entry(name: str) -> ModelEntry | None:
    from .registry import get_entry

    try:
        return get_entry(name)
    except KeyError:
        return None


def licence_problems(entry: ModelEntry) -> list[str]:
    """Why the weights described by ``entry`` (a folder's config) may not be redistributed; empty if they may."""
    problems = []
    lic = entry.license
    if lic.spdx == "other" and (lic.name or "").strip().lower() in {"", "unspecified"}:
        problems.append("config.json records no licence for these weights")
    elif not lic.redistributable:
        problems.append(f"the licence of the weights ({lic.display}) forbids redistribution")
    seen = {entry.name}
    chain = []
    registered = _registry_entry(entry.name)
    if registered is not None:
        chain.append((registered, "registry entry of the same name"))
    parent = entry.base_model
    while parent and parent not in seen and "/" not in parent:
        seen.add(parent)
        found = _registry_entry(parent)
        if found is None:
            break
        chain.append((found, "derived from registry entry"))
        parent = found.base_model
    for found, why in chain:
        if not found.license.redistributable:
            problems.append(f"{why} {found.name!r} is licensed {found.license.display}, which forbids "
                            "redistribution")
    return list(dict.fromkeys(problems))


def _readme_for(directory: Path, entry: ModelEntry, repo_id: str, weights_sha: str, weights_size: int) -> tuple[bytes, str]:
    """The README to upload and where it comes from (the folder's, or generated)."""
    path = directory / README
    if path.is_file():
        return path.read_bytes(), str(path)
    base = _registry_entry(entry.name) or entry
    if base.license != entry.license:
        raise PublishError(
            f"config.json records the licence {entry.license.display!r}, but the registry entry {base.name!r} has "
            f"{base.license.display!r}; fix config.json (or write your own README.md)"
        )
    return folder_card(base, repo_id, weights_sha, weights_size).encode("utf-8"), "generated"


def folder_card(entry: ModelEntry, repo_id: str | None, weights_sha256: str, weights_size: int) -> str:
    """The ``README.md`` of a model folder holding ``entry``'s weights: the registry's card renderer
    (:func:`zoo.cards.render.render_card`); with ``repo_id`` it describes the copy hosted there (its sha256 and
    size), else the entry's own source. ``zoo publish`` generates it for a folder without one; ``zoo.save`` writes
    it."""
    from .cards.render import render_card

    hosted = None
    if repo_id is not None:
        hosted = CheckpointSource(repo_id=repo_id, filename=WEIGHTS, format="safetensors", sha256=weights_sha256,
                                  size=weights_size)
    return render_card(entry, hosted=hosted)


def _check_readme(readme: bytes, entry: ModelEntry) -> None:
    from huggingface_hub import ModelCard

    try:
        card = ModelCard(readme.decode("utf-8"))
    except Exception as err:  # YAML or model-index errors
        raise PublishError(f"README.md does not parse as a Hugging Face model card: {err}") from None
    lic = entry.license
    if card.data.license != lic.spdx:
        raise PublishError(
            f"README.md declares license {card.data.license!r} but config.json records {lic.spdx!r} "
            f"({lic.display}); fix the card (or delete it to have one generated)"
        )
    if lic.spdx == "other" and not (card.data.license_name and card.data.license_link):
        raise PublishError("README.md declares license: other without license_name and license_link")


def plan_upload(directory: Path, entry: ModelEntry, repo_id: str) -> tuple[list[PlannedFile], list[Any]]:
    """The ``CommitOperationAdd`` objects of the commit, with each file's size and sha256."""
    from huggingface_hub import CommitOperationAdd

    weights_sha = sha256_file(directory / WEIGHTS)
    weights_size = (directory / WEIGHTS).stat().st_size
    readme, readme_source = _readme_for(directory, entry, repo_id, weights_sha, weights_size)
    _check_readme(readme, entry)
    contents: list[tuple[str, Any, str]] = [
        (README, readme, readme_source),
        (CONFIG, str(directory / CONFIG), str(directory / CONFIG)),
        (WEIGHTS, str(directory / WEIGHTS), str(directory / WEIGHTS)),
    ]
    files, operations = [], []
    for path_in_repo, payload, source in contents:
        op = CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=payload)
        info = op.upload_info
        files.append(PlannedFile(path_in_repo, info.size, info.sha256.hex(), source))
        operations.append(op)
    if files[2].sha256 != weights_sha:
        raise PublishError(f"{directory / WEIGHTS} changed while it was being prepared; try again")
    return files, operations


def _check_weights(path: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            if not list(fh.keys()):
                raise PublishError(f"{path} holds no tensors")
    except PublishError:
        raise
    except Exception as err:
        raise CheckpointFormatError(f"{path} is not a readable safetensors file: {err}") from None


def _append_record(directory: Path, result: PublishResult) -> Path:
    path = directory / RECORD
    try:
        history = json.loads(path.read_text())
        if not isinstance(history, list):
            history = [history]
    except (OSError, ValueError):
        history = []
    history.append({
        "repo_id": result.repo_id,
        "revision": result.revision,
        "commit_url": result.commit_url,
        "published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "medzoo_version": __version__,
        "licence": result.licence,
        "rights_asserted": result.rights_asserted,
        "files": {f.path_in_repo: {"sha256": f.sha256, "size": f.size} for f in result.files},
    })
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(history, indent=2))
    return path


def publish(
    directory: str | os.PathLike,
    repo_id: str,
    *,
    i_hold_the_rights: bool = False,
    token: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    commit_message: str | None = None,
    api: Any = None,
) -> PublishResult:
    """Upload ``README.md``, ``config.json`` and ``model.safetensors`` of ``directory`` to ``repo_id``.

    Checks run first and never touch the network: the folder must load (:func:`zoo.model_dir.read_model_dir`),
    the weights must be a readable safetensors file, the licence must allow redistribution (or
    ``i_hold_the_rights``), and the card must agree with the config's licence. ``dry_run`` stops there and
    returns the planned commit. Otherwise the repo is created if needed and the three files are committed;
    the result carries the commit (``revision``) and is appended to ``DIR/published.json``.
    ``api`` is an ``HfApi``-like object (default ``HfApi(token=token)``).
    """
    directory = Path(directory)
    _check_repo_id(repo_id)
    entry, weights = read_model_dir(directory)
    _check_weights(weights)
    problems = licence_problems(entry)
    if problems and not i_hold_the_rights:
        raise PublishRefusedError(
            f"refusing to publish {directory}: " + "; ".join(problems)
            + ". If you hold the rights to redistribute these weights (for example you trained them yourself "
              "on data you may share), pass --i-hold-the-rights (i_hold_the_rights=True)."
        )
    files, operations = plan_upload(directory, entry, repo_id)
    result = PublishResult(repo_id=repo_id, files=files, operations=operations, licence=entry.license.display,
                           dry_run=dry_run, rights_asserted=i_hold_the_rights and bool(problems),
                           licence_problems=problems)
    if dry_run:
        return result

    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token, library_name="medzoo", library_version=__version__)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.create_commit(
        repo_id=getattr(repo_url, "repo_id", None) or repo_id,
        operations=operations,
        commit_message=commit_message or f"Upload {entry.name} with medzoo {__version__}",
        repo_type="model",
    )
    result.repo_url = str(repo_url)
    result.revision = getattr(commit, "oid", None)
    result.commit_url = getattr(commit, "commit_url", None)
    result.record_path = _append_record(directory, result)
    return result


__all__ = ["PlannedFile", "PublishError", "PublishRefusedError", "PublishResult", "licence_problems",
           "plan_upload", "publish", "RECORD", "UPLOAD_FILES"]
