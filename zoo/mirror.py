"""Air-gapped mirrors: ``zoo mirror export NAMES... DIR`` and ``zoo mirror import DIR``.

A mirror is a plain folder that can travel on a USB disk::

    DIR/manifest.json                                   sha256 + size of every file below (written last, atomically)
    DIR/NOTICE.md                                       licence and notices of every model in the mirror
    DIR/<repo_id>/<filename>                            the verified upstream checkpoint files
    DIR/_converted/<name>/<key>/model.safetensors       medzoo's conversion of them (optional, ``--no-converted``)
    DIR/_converted/<name>/<key>/meta.json               its provenance record

Two ways to use it on the offline machine:

* ``ZOO_MIRROR=DIR``: :func:`zoo.hub.download.fetch_checkpoint` reads ``DIR/<repo_id>/<filename>`` and checks it
  against the registry's sha256, or the manifest's where the registry has none; the file is converted locally
  on first load. Nothing is copied, so the mirror must stay mounted.
* ``zoo mirror import DIR``: verifies **every** file of the manifest first (nothing is installed if one fails),
  then installs the upstream files into the Hugging Face cache layout (``blobs/<sha256>``,
  ``snapshots/<commit>/<file>``, ``refs/main`` for unpinned entries) and the conversions into medzoo's
  converted cache. Later loads need neither the mirror nor the network, and re-verify as they always do
  (the blob name is the sha256; the conversion's ``meta.json`` records its own).

Trust: a file is checked against the registry's pinned sha256 where there is one, so a tampered mirror cannot
pass for a pinned entry even with a rewritten manifest. For entries whose sha256 is not yet pinned the manifest
is the only reference: keep the mirror on a medium you trust.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from ._version import __version__
from .errors import ChecksumError, WeightsNotAvailableError
from .hub.integrity import atomic_path, file_lock, sha256_file, verify_file
from .hub.paths import hf_cache_dir
from .json_file import read_json_object
from .registry import CheckpointSource, ModelEntry, get_entry, list_models

MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 16 << 20  # a few hundred bytes per file; far more than any mirror needs
NOTICE = "NOTICE.md"
CONVERTED = "_converted"
FORMAT = "medzoo-mirror"
VERSION = 1

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class MirrorReport:
    """What an export or import did. ``files`` are mirror-relative paths; ``skipped`` says why with each name."""

    directory: Path
    models: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    installed: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"mirror {self.directory}: {len(self.models)} model(s), {len(self.files)} file(s)"]
        lines += [f"  installed {p}" for p in self.installed]
        lines += [f"  skipped {s}" for s in self.skipped]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# manifest
# ----------------------------------------------------------------------------------------------------------------


def _safe_relpath(rel: str) -> PurePosixPath:
    """Refuse manifest paths that could escape the mirror (absolute, ``..``, backslashes, empty parts)."""
    p = PurePosixPath(rel)
    if (not rel or "\\" in rel or p.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/"))):
        raise ChecksumError(f"mirror manifest lists an unsafe path {rel!r}; refusing the mirror", path=rel)
    return p


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a mirror, structurally checked. Raises :class:`ChecksumError`."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ChecksumError(f"{directory} has no {MANIFEST}: not a mirror written by `zoo mirror export`", path=path)
    manifest = read_json_object(path, what="mirror manifest", max_bytes=MANIFEST_MAX_BYTES, error=ChecksumError)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ChecksumError(f"mirror manifest {path} has no 'files' table", path=path)
    for rel, record in files.items():
        _safe_relpath(rel)
        if not isinstance(record, dict) or not _HEX64.match(str(record.get("sha256", ""))) \
                or not isinstance(record.get("size"), int):
            raise ChecksumError(f"mirror manifest {path}: entry {rel!r} lacks a valid sha256 and size", path=path)
    models = manifest.setdefault("models", {})
    if not isinstance(models, dict) or not all(isinstance(m, dict) for m in models.values()):
        raise ChecksumError(f"mirror manifest {path} has a malformed 'models' table", path=path)
    return manifest


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    _write_text(directory / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))


def _notice_text(models: dict[str, Any]) -> str:
    lines = ["# Licences of the weights in this mirror", "",
             "Copying these files between your own machines is not a licence to redistribute them. "
             "Non-redistributable weights must not leave the institution that downloaded them.", ""]
    for name in sorted(models):
        m = models[name]
        lines.append(f"## {name}")
        lines.append("")
        lines.append(f"- licence: {m.get('license')}" + (f" ({m['license_link']})" if m.get("license_link") else ""))
        lines.append(f"- redistributable: {'yes' if m.get('redistributable') else 'no'}; "
                     f"commercial use: {'yes' if m.get('commercial_use') else 'no'}")
        if m.get("notice"):
            lines.append(f"- notice: {m['notice']}")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------------------------


def _expand(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        if any(ch in name for ch in "*?["):
            matched = list_models(name)
            if not matched:
                raise WeightsNotAvailableError(f"no registry model matches {name!r}", name=name,
                                               reason="no registry model matches")
            out.extend(matched)
        else:
            out.append(get_entry(name).name)
    return list(dict.fromkeys(out))


def _copy_verified(src: Path, dest: Path, sha256: str) -> None:
    """Copy ``src`` to ``dest`` atomically unless ``dest`` already has ``sha256``; verify the copy."""
    if dest.is_file() and dest.stat().st_size == src.stat().st_size and sha256_file(dest) == sha256:
        return
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
        verify_file(tmp, sha256=sha256, what=f"copy of {src}")


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _snapshot_commit(path: Path) -> str | None:
    """The commit of a file served from the HF cache (``.../snapshots/<commit>/<file>``), if it is one."""
    parent = path.parent
    if parent.parent.name == "snapshots" and _HEX40.match(parent.name):
        return parent.name
    return None


def _licence_record(entry: ModelEntry) -> dict[str, Any]:
    lic = entry.license
    return {"license": lic.display, "license_link": lic.link, "redistributable": lic.redistributable,
            "commercial_use": lic.commercial_use, "notice": lic.notice}


def export_mirror(
    names: Iterable[str],
    directory: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    source_mirror: str | os.PathLike | None = None,
    converted: bool = True,
    progress: bool = False,
) -> MirrorReport:
    """Pack the verified upstream files (and, with ``converted``, medzoo's conversions) of ``names`` into
    ``directory`` with a sha256 manifest.

    ``names`` are registry names or wildcards (``'med3d-*'``). Files come from wherever ``zoo.load`` gets them
    (HF cache, ``source_mirror``/``$ZOO_MIRROR``, or a download), verified the same way. An existing mirror in
    ``directory`` is extended. Entries whose weights ship inside the package are skipped (nothing to carry);
    entries without published weights raise :class:`WeightsNotAvailableError`.
    """
    from .convert.cache import check_cached, converted_dir, source_key_for
    from .hub.download import fetch_checkpoint
    from .weights import resolve_weights

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    try:
        manifest = read_manifest(out)
    except ChecksumError:
        if (out / MANIFEST).exists():
            raise
        manifest = {"files": {}, "models": {}}
    report = MirrorReport(out)
    for name in _expand(names):
        entry = get_entry(name)
        src = entry.source
        if src is None:
            raise WeightsNotAvailableError(f"{name!r} has no published weights to mirror", name=name,
                                           reason="no published weights")
        if src.package_file:
            report.skipped.append(f"{name}: weights ship inside the package, nothing to mirror")
            continue
        fetched = fetch_checkpoint(src, name=name, cache_dir=cache_dir, mirror=source_mirror, progress=progress)
        rel = f"{src.repo_id}/{src.filename}"
        _safe_relpath(rel)
        _copy_verified(fetched.path, out / rel, fetched.sha256)
        previous = manifest["files"].get(rel, {})
        manifest["files"][rel] = {
            "sha256": fetched.sha256,
            "size": (out / rel).stat().st_size,
            "kind": "upstream",
            "repo_id": src.repo_id,
            "filename": src.filename,
            "revision": src.revision,
            "commit": _snapshot_commit(fetched.path) or previous.get("commit"),
            "format": src.format,
            "verified_by": fetched.verified_by,
        }
        report.files.append(rel)
        model = {"upstream": rel, **_licence_record(entry)}
        if converted:
            key = source_key_for(entry)
            try:
                cached = check_cached(converted_dir(name, key, cache_dir), verify=True)
            except ChecksumError:  # a damaged conversion was removed: convert again below
                cached = None
            if cached is None:
                path, _ = resolve_weights(entry, cache_dir=cache_dir, mirror=source_mirror, verify=True,
                                          progress=progress)
                cached = check_cached(path.parent, verify=True)
            if cached is None or cached.meta.get("source_sha256") != fetched.sha256:
                raise ChecksumError(f"the cached conversion of {name!r} does not come from the mirrored file",
                                    path=cached.path if cached is not None else None, expected_sha256=fetched.sha256,
                                    actual_sha256=cached.meta.get("source_sha256") if cached is not None else None)
            conv_rel = f"{CONVERTED}/{name}/{key}"
            for fname, digest in (("model.safetensors", cached.meta["file_sha256"]), ("meta.json", None)):
                source_file = cached.path.parent / fname
                digest = digest or sha256_file(source_file)
                _copy_verified(source_file, out / conv_rel / fname, digest)
                manifest["files"][f"{conv_rel}/{fname}"] = {
                    "sha256": digest,
                    "size": (out / conv_rel / fname).stat().st_size,
                    "kind": "converted" if fname == "model.safetensors" else "converted-meta",
                    "model": name,
                }
                report.files.append(f"{conv_rel}/{fname}")
            model["converted"] = conv_rel
            model["converted_key"] = key
        manifest["models"][name] = model
        report.models.append(name)
    manifest.update(format=FORMAT, version=VERSION, medzoo_version=__version__,
                    updated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    _write_text(out / NOTICE, _notice_text(manifest["models"]))
    _write_manifest(out, manifest)
    return report


# ----------------------------------------------------------------------------------------------------------------
# verify and import
# ----------------------------------------------------------------------------------------------------------------


def _registry_sha256(manifest: dict[str, Any], rel: str) -> str | None:
    """The registry's pinned sha256 for upstream file ``rel``, if any model of this installation pins one."""
    record = manifest["files"][rel]
    if record.get("kind") != "upstream":
        return None
    for name, model in manifest["models"].items():
        if model.get("upstream") != rel:
            continue
        try:
            src = get_entry(name).source
        except KeyError:
            continue
        if src is not None and src.sha256 and f"{src.repo_id}/{src.filename}" == rel:
            return src.sha256
    return None


def verify_mirror(directory: str | os.PathLike, *, progress: bool = False) -> dict[str, Any]:
    """Check every file of the manifest (size, sha256, and the registry pin where there is one).

    Returns the manifest; raises :class:`ChecksumError` naming the first bad or missing file.
    """
    root = Path(directory)
    manifest = read_manifest(root)
    for rel, record in sorted(manifest["files"].items()):
        path = root / _safe_relpath(rel)
        if not path.is_file() or path.is_symlink():
            raise ChecksumError(f"mirror file {path} listed in the manifest is missing (or is a link)", path=path,
                                expected_sha256=record["sha256"], expected_size=record["size"])
        pinned = _registry_sha256(manifest, rel)
        if pinned and pinned != record["sha256"]:
            raise ChecksumError(
                f"mirror manifest records sha256 {record['sha256']} for {rel}, but the registry pins {pinned}: "
                "the mirror was altered or made from another file; refusing it",
                path=path, expected_sha256=pinned, actual_sha256=record["sha256"],
            )
        verify_file(path, sha256=record["sha256"], size=record["size"], what=f"mirror file {rel}",
                    progress=progress)
    for name, model in manifest["models"].items():
        conv = model.get("converted")
        if conv:
            if f"{conv}/model.safetensors" not in manifest["files"] or f"{conv}/meta.json" not in manifest["files"]:
                raise ChecksumError(f"mirror conversion of {name!r} at {conv!r} is not covered by the manifest",
                                    path=conv)
            try:
                meta = json.loads((root / _safe_relpath(conv) / "meta.json").read_text())
            except ValueError as err:
                raise ChecksumError(f"mirror conversion of {name!r}: unreadable meta.json ({err})",
                                    path=root / _safe_relpath(conv) / "meta.json") from None
            if meta.get("file_sha256") != manifest["files"].get(f"{conv}/model.safetensors", {}).get("sha256"):
                raise ChecksumError(f"mirror conversion of {name!r}: meta.json does not describe its model.safetensors",
                                    path=root / _safe_relpath(conv) / "meta.json",
                                    expected_sha256=manifest["files"].get(f"{conv}/model.safetensors", {}).get("sha256"),
                                    actual_sha256=meta.get("file_sha256"))
        if model.get("upstream") and model["upstream"] not in manifest["files"]:
            raise ChecksumError(f"mirror model {name!r}: upstream file {model['upstream']!r} is not in the manifest",
                                path=model["upstream"])
        if conv:
            upstream = manifest["files"].get(model.get("upstream", ""), {})
            if upstream and meta.get("source_sha256") != upstream.get("sha256"):
                raise ChecksumError(f"mirror conversion of {name!r} does not come from the mirrored upstream file",
                                    path=root / _safe_relpath(conv) / "meta.json",
                                    expected_sha256=upstream.get("sha256"), actual_sha256=meta.get("source_sha256"))
    return manifest


def _inside(root: Path, path: Path) -> Path:
    """``path`` when it lies under ``root`` once both are resolved; anything else is refused."""
    resolved_root, resolved = root.resolve(), path.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise ChecksumError(f"mirror import would write {path}, outside the cache {root}; refusing the mirror",
                            path=path)
    return path


def _registry_source(name: str, model: dict[str, Any]) -> CheckpointSource | None:
    """The registry's source of mirror model ``name``: repo, file and revision always come from the registry,
    never from the manifest (which only supplies bytes, their sha256 and, checked, the commit they came from)."""
    try:
        src = get_entry(name).source
    except KeyError:
        return None
    if src is None or src.package_file or model.get("upstream") != f"{src.repo_id}/{src.filename}":
        return None
    return src


def _install_upstream(
    root: Path, src: CheckpointSource, record: dict[str, Any], hub: Path, report: MirrorReport
) -> None:
    """Install a verified mirror file into huggingface_hub's cache layout, with huggingface_hub's own helpers:
    ``blobs/<sha256>``, ``snapshots/<commit>/<file>`` and, for an unpinned source, ``refs/main``."""
    from huggingface_hub.file_download import (
        _cache_commit_hash_for_specific_revision,
        _create_symlink,
        _get_pointer_path,
        repo_folder_name,
    )

    rel = f"{src.repo_id}/{src.filename}"
    commit = record.get("commit")
    if commit is not None and not (isinstance(commit, str) and _HEX40.match(commit)):
        raise ChecksumError(f"mirror manifest entry {rel!r} has commit {commit!r}, which is not a 40-hex commit id")
    if src.revision and not _HEX40.match(src.revision):
        raise ChecksumError(f"{rel}: the registry pins revision {src.revision!r}, not a commit id; cannot install it")
    snapshot_commit = src.revision or commit or hashlib.sha1(f"medzoo-mirror:{src.repo_id}".encode()).hexdigest()
    folder = repo_folder_name(repo_id=src.repo_id, repo_type="model")
    repo_dir = _inside(hub, hub / folder)
    blob = _inside(hub, repo_dir / "blobs" / record["sha256"])
    snapshot = _inside(hub, Path(_get_pointer_path(str(repo_dir), snapshot_commit, src.filename)))
    with file_lock(hub / ".locks" / folder / record["sha256"]):  # huggingface_hub's own lock file for the blob
        if not (blob.is_file() and blob.stat().st_size == record["size"] and sha256_file(blob) == record["sha256"]):
            _copy_verified(root / rel, blob, record["sha256"])
        if not src.revision:
            ref = repo_dir / "refs" / "main"
            current = ref.read_text().strip() if ref.is_file() else None
            if current is not None and current != snapshot_commit:
                if (repo_dir / "snapshots" / current / src.filename).exists():
                    report.skipped.append(f"{rel}: the HF cache's refs/main already serves another copy; kept it")
                    return
                report.skipped.append(
                    f"{rel}: refs/main of {src.repo_id} points to {current}, which lacks this file; installed under "
                    f"{snapshot_commit} (loads use the imported conversion, or ZOO_MIRROR)"
                )
            elif current is None:
                _cache_commit_hash_for_specific_revision(str(repo_dir), "main", snapshot_commit)
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        _create_symlink(str(blob), str(snapshot))
    report.installed.append(snapshot)


def _mirror_conversion_check(root: Path, name: str, conv: str) -> Any:
    """A check for :func:`zoo.convert.cache.convert_into_cache`: the conversion medzoo makes from the verified
    upstream file must equal, tensor for tensor, the one the mirror ships; a rewritten conversion (negated
    weights, say) is refused even when its manifest entry and ``meta.json`` were rewritten to match."""
    from .convert.cache import load_converted

    shipped = load_converted(root / _safe_relpath(conv) / "model.safetensors")

    def check(converted: Any) -> None:
        import torch

        differ = sorted(set(shipped) ^ set(converted))
        differ += [k for k in converted if k in shipped and not (
            shipped[k].dtype == converted[k].dtype and shipped[k].shape == converted[k].shape
            and torch.equal(shipped[k], converted[k]))]
        if differ:
            raise ChecksumError(
                f"the mirror's conversion of {name!r} ({conv}) differs from the conversion of its verified upstream "
                f"file in {len(differ)} tensors (e.g. {differ[:3]}): the mirror was altered; refusing it",
                path=root / _safe_relpath(conv) / "model.safetensors",
            )

    return check


def _install_converted(
    root: Path, name: str, model: dict[str, Any], src: CheckpointSource, record: dict[str, Any],
    cache_dir: str | os.PathLike | None, report: MirrorReport, progress: bool,
) -> None:
    """Convert the verified upstream file with the loader's own routine and check it against the mirror's."""
    from .archs.build import build_model, meta_device_model
    from .convert.cache import convert_into_cache, converted_dir, source_key_for

    entry = get_entry(name)
    key = source_key_for(entry)
    if key != model.get("converted_key"):
        report.skipped.append(f"{name}: the registry changed since export; the upstream file will be converted anew")
        return
    directory = converted_dir(name, key, cache_dir)
    converted = convert_into_cache(
        directory, root / _safe_relpath(model["upstream"]), entry=entry, fmt=src.format,
        reference=lambda: meta_device_model(lambda: build_model(entry)),
        provenance={"source": {"repo_id": src.repo_id, "filename": src.filename, "revision": src.revision,
                               "origin": "mirror"},
                    "source_sha256": record["sha256"], "verified_by": "mirror manifest sha256"
                    if not src.sha256 else "registry sha256", "imported_from_mirror": str(root)},
        verify=True, progress=progress, replace=True, check=_mirror_conversion_check(root, name, model["converted"]),
    )
    report.installed.append(converted.path)


def import_mirror(
    directory: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    converted: bool = True,
    names: Iterable[str] | None = None,
    progress: bool = False,
) -> MirrorReport:
    """Verify every file of the mirror, then install it into the local caches (see the module docstring).

    ``cache_dir`` is the same argument as ``zoo.load``'s (upstream files under ``<cache_dir>/hub``, conversions
    under ``<cache_dir>/converted``); by default ``$HF_HUB_CACHE`` and ``$ZOO_CACHE``. ``names`` restricts the
    import to those models (wildcards allowed). Nothing is installed when any file fails verification.
    """
    root = Path(directory)
    manifest = verify_mirror(root, progress=progress)
    report = MirrorReport(root)
    wanted = [n for n in manifest["models"]
              if names is None or any(fnmatch.fnmatchcase(n, p) for p in names)]
    hub = hf_cache_dir(cache_dir)
    sources = {}
    for name in sorted(wanted):
        src = _registry_source(name, manifest["models"][name])
        if src is None:
            report.skipped.append(f"{name}: not in this installation's registry with this upstream file; not installed")
        else:
            sources[name] = src
    # conversions first: each is made from the verified upstream file and compared with the mirror's, so a
    # tampered mirror is refused before any of its upstream files reaches the Hugging Face cache
    for name, src in sources.items():
        model = manifest["models"][name]
        if converted and model.get("converted"):
            _install_converted(root, name, model, src, manifest["files"][model["upstream"]], cache_dir, report,
                               progress)
            report.files.append(f"{model['converted']}/model.safetensors")
    done: set[str] = set()
    for name, src in sources.items():
        rel = manifest["models"][name]["upstream"]
        if rel not in done:
            _install_upstream(root, src, manifest["files"][rel], hub, report)
            done.add(rel)
            report.files.append(rel)
        report.models.append(name)
    return report


__all__ = ["MANIFEST", "MirrorReport", "export_mirror", "import_mirror", "read_manifest", "verify_mirror"]
