"""Build the publishable folder of every registry entry whose licence allows re-hosting (``zoo build-hosted``).

For each entry, in registry order:

* **refused** when its weights may not be redistributed (:func:`zoo.publish.licence_problems`: its own licence,
  or that of a registry entry it derives from), with the reason;
* **skipped** when it has no published weights to convert, with the reason;
* **built** otherwise: the upstream weights are loaded (``zoo.load(name, prefer="upstream")``: downloaded,
  verified, converted; never an earlier hosted copy), written by :func:`zoo.save` to ``OUT/<name>`` with the card
  describing the copy at ``ORG/<name>``, and checked by ``zoo publish``'s dry run (the exact commit it would
  send), so the folder is ready for ``zoo publish OUT/<name> --repo ORG/<name>``;
* **failed** when that could not be done (no network, a checksum mismatch, ...), with the error.

After publishing, :meth:`zoo.publish.PublishResult.registry_snippet` prints the ``CheckpointSource`` to record as
the entry's ``hosted=`` in ``zoo/entries/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

from .errors import ZooError
from .publish import licence_problems, publish
from .registry import get_entry, list_models

#: what happened to one entry
BuildStatus = Literal["built", "refused", "skipped", "failed"]


@dataclass(frozen=True)
class HostedBuild:
    """One entry's outcome: ``folder``, ``repo_id`` and ``sha256`` when built, ``reason`` otherwise."""

    name: str
    status: BuildStatus
    reason: str = ""
    folder: Path | None = None
    repo_id: str | None = None
    sha256: str | None = None

    def __str__(self) -> str:
        if self.status == "built":
            return (f"{self.name}: built {self.folder} (model.safetensors sha256 {self.sha256}); publish with "
                    f"`zoo publish {self.folder} --repo {self.repo_id}`")
        return f"{self.name}: {self.status}: {self.reason}"


def build_hosted(
    out_dir: str | os.PathLike,
    names: Iterable[str] | None = None,
    *,
    org: str = "medzoo",
    force: bool = False,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> list[HostedBuild]:
    """Build ``OUT/<name>`` for each of ``names`` (default: every registry entry); see the module docstring.

    Unknown names raise :class:`~zoo.errors.UnknownModelError` before anything is built.
    """
    from .loading import load
    from .saving import save

    entries = [get_entry(n) for n in (list(names) if names else list_models())]
    out = Path(out_dir).expanduser()
    results = []
    for entry in entries:
        problems = licence_problems(entry)
        if problems:
            results.append(HostedBuild(entry.name, "refused", "; ".join(problems) + " (converted only in each "
                                       "user's cache, never re-hosted)"))
            continue
        if entry.source is None:
            results.append(HostedBuild(entry.name, "skipped", "no published weights"
                                       + (f": {entry.weights_note}" if entry.weights_note else "")))
            continue
        repo_id = f"{org}/{entry.name}"
        try:
            model = load(entry.name, cache_dir=cache_dir, progress=progress, prefer="upstream")
            saved = save(model, out / entry.name, force=force, repo_id=repo_id)
            publish(saved.path, repo_id, dry_run=True)  # what `zoo publish` would send: refused here, not later
        except ZooError as err:
            results.append(HostedBuild(entry.name, "failed", str(err).splitlines()[0]))
            continue
        results.append(HostedBuild(entry.name, "built", folder=saved.path, repo_id=repo_id,
                                   sha256=saved.weights_sha256))
    return results


__all__ = ["BuildStatus", "HostedBuild", "build_hosted"]
