"""The converted-checkpoint cache: one verified safetensors file per (model, upstream file).

Layout under :func:`zoo.hub.paths.zoo_cache_dir`::

    converted/<model name>/<source key>/model.safetensors   canonical keys, float tensors, mmap-able
    converted/<model name>/<source key>/meta.json           provenance + the file's sha256, size, mtime
    converted/<model name>/<source key>.lock                 inter-process lock

``<source key>`` is ``sha256-<16 hex>`` of the upstream file when known in advance, else
``rev-<12 hex>-<file name>`` for a pinned Hub revision. Files are written to a temporary name and moved in
place, ``meta.json`` last, so an interrupted conversion leaves nothing that looks complete.

Verification of a cached file (``verify=``): ``"auto"`` hashes it again only when its stamp differs from
``meta.json`` (size, mtime, ctime, inode and device: a file modified in place, truncated, or replaced, even with
its mtime restored, since no user can set a ctime); ``True`` always hashes; ``False`` never does. A mismatch
removes the cached conversion and raises :class:`ChecksumError`; the next load converts again. A ``meta.json``
that is missing, unreadable or malformed marks an incomplete conversion: it is removed and converted again.

Concurrency: a lock-free look (:func:`find_cached`) only ever reads; everything that removes or writes
(:func:`check_cached`, :func:`convert_into_cache`) runs under the directory's lock, so a process never deletes
another one's conversion in progress.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from torch import Tensor, nn

from .._version import __version__
from ..errors import CheckpointFormatError, ChecksumError
from ..hub.integrity import atomic_path, default_file_mode, file_lock, sha256_file
from ..hub.paths import zoo_cache_dir
from ..registry import ModelEntry
from ..state_dict import alias_groups, canonicalize
from ..options import VerifyMode  # noqa: F401  (re-exported: "auto" | True | False)
from .formats import Unwrapped, unwrap_checkpoint


@dataclass(frozen=True)
class ConvertedCheckpoint:
    """A verified converted file and its provenance record (``meta.json`` contents); ``fresh`` when this call
    converted it (rather than finding it done, possibly by another process)."""

    path: Path
    meta: Mapping[str, Any]
    fresh: bool = False


_PATH_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")


def converted_dir(name: str, source_key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/converted/<name>/<source_key>``; both parts must be plain names (a model folder's
    ``config.json`` names its model, so a name such as ``../x`` must never choose a path outside the cache)."""
    for what, part in (("model name", name), ("source key", source_key)):
        if not isinstance(part, str) or not _PATH_PART.match(part) or ".." in part:
            raise CheckpointFormatError(
                f"{what} {part!r} cannot name a cache folder: use letters, digits, '.', '_', '+' and '-' only "
                "(no path separators, no '..')"
            )
    return zoo_cache_dir(cache_dir) / "converted" / name / source_key


def source_key_for(entry: ModelEntry) -> str | None:
    """Cache key of the registry source, known before downloading (None for a package file)."""
    src = entry.source
    if src is None or src.package_file:
        return None
    if src.sha256:
        return f"sha256-{src.sha256[:16]}"
    return f"rev-{(src.revision or 'main')[:12]}-{src.filename.replace('/', '--')}"


#: ``meta.json`` is a few hundred bytes; anything larger is not ours and is never read into memory
META_MAX_BYTES = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def file_stamp(path: Path) -> dict[str, int]:
    """What "unchanged since verified" means for a file: size, mtime, ctime, inode and device.

    A file replaced by another of the same size and mtime has a new inode or ctime; the ctime cannot be set by
    any user, so restoring the mtime after an edit in place does not hide it either.
    """
    st = path.stat()
    return {"file_size": st.st_size, "file_mtime_ns": st.st_mtime_ns, "file_ctime_ns": st.st_ctime_ns,
            "file_ino": st.st_ino, "file_dev": st.st_dev}


def read_meta(directory: Path) -> dict[str, Any] | None:
    """The ``meta.json`` of a conversion when it is a well-formed record, else None (never raises).

    Well-formed: a JSON object of at most :data:`META_MAX_BYTES` with a 64-hex ``file_sha256`` and integer
    ``file_size`` and ``file_mtime_ns``.
    """
    path = directory / "meta.json"
    try:
        if path.stat().st_size > META_MAX_BYTES:
            return None
        meta = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("file_sha256"), str) \
            or not _HEX64.match(meta["file_sha256"]):
        return None
    if not _is_count(meta.get("file_size")) or not _is_count(meta.get("file_mtime_ns")):
        return None
    return meta


def _stamp_matches(meta: Mapping[str, Any], stamp: Mapping[str, int]) -> bool:
    return all(meta.get(k) == v for k, v in stamp.items())


def _remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def find_cached(directory: Path, verify: VerifyMode = "auto") -> ConvertedCheckpoint | None:
    """The conversion in ``directory`` when it is complete and passes ``verify`` without any repair; else None.

    Lock-free and read-only: safe while another process converts into ``directory``. Anything short of a clean
    result (absent, incomplete, damaged, or a new stamp to record) returns None, and the caller takes the lock
    and calls :func:`check_cached`.
    """
    path = directory / "model.safetensors"
    meta = read_meta(directory)
    if meta is None or not path.is_file():
        return None
    if verify is False:
        return ConvertedCheckpoint(path, meta)
    if verify == "auto" and _stamp_matches(meta, file_stamp(path)):
        return ConvertedCheckpoint(path, meta)
    return None


def check_cached(directory: Path, verify: VerifyMode = "auto") -> ConvertedCheckpoint | None:
    """Return the cached conversion in ``directory`` if complete and intact; None if absent or incomplete.

    Call it holding ``file_lock(directory)``: it removes an incomplete conversion (no well-formed ``meta.json``),
    and raises :class:`ChecksumError` after removing a damaged one.
    """
    path = directory / "model.safetensors"
    meta = read_meta(directory)
    if meta is None or not path.is_file():
        if directory.exists():
            _remove(directory)  # leftovers of an interrupted conversion or a damaged record: convert anew
        return None
    if verify is False:
        return ConvertedCheckpoint(path, meta)
    stamp = file_stamp(path)
    unchanged = _stamp_matches(meta, stamp)
    if verify == "auto" and unchanged:
        return ConvertedCheckpoint(path, meta)
    actual = sha256_file(path)
    if actual != meta["file_sha256"] or stamp["file_size"] != meta["file_size"]:
        _remove(directory)
        raise ChecksumError(
            f"the cached conversion {path} is damaged (sha256 {actual[:16]}…, {stamp['file_size']:,} bytes; "
            f"expected {meta['file_sha256'][:16]}…, {meta['file_size']:,} bytes). It has been "
            "removed; load again to convert the upstream file anew.",
            path=path, expected_sha256=meta["file_sha256"], actual_sha256=actual,
            expected_size=meta["file_size"], actual_size=stamp["file_size"],
        )
    if not unchanged:  # same bytes, new stamp (copied, touched or restored from a backup): remember it
        meta.update(stamp)
        _write_meta(directory, meta)
    return ConvertedCheckpoint(path, meta)


def cached_conversion(directory: Path, verify: VerifyMode = "auto") -> ConvertedCheckpoint | None:
    """:func:`find_cached`, falling back to :func:`check_cached` under the directory's lock."""
    found = find_cached(directory, verify)
    if found is not None or not directory.exists():
        return found
    with file_lock(directory):
        return check_cached(directory, verify)


def _write_meta(directory: Path, meta: Mapping[str, Any]) -> None:
    with atomic_path(directory / "meta.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))


def validate_against(
    state_dict: Mapping[str, Tensor], model: nn.Module, entry: ModelEntry
) -> "dict[str, Tensor]":
    """Check that ``state_dict`` fits ``model`` exactly (canonical keys and shapes); return it canonicalized.

    Model tensors missing from the checkpoint are allowed only under the entry's classifier prefixes and only
    for head-less pretrained weights (``entry.num_classes is None``). Anything else raises.
    """
    sd = canonicalize(state_dict, model)
    expected = {g[0]: g for g in alias_groups(model)}
    shapes = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k}: {tuple(sd[k].shape)} vs {shapes[k]}" for k in sd if k in expected and tuple(sd[k].shape) != shapes[k]]
    missing = [k for k in expected if k not in sd]
    if entry.num_classes is None:
        missing = [k for k in missing if not any(k.startswith(p + ".") for p in entry.classifier)]
    if unexpected or wrong or missing:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:4]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:4]})")
        if wrong:
            parts.append(f"{len(wrong)} with other shapes (e.g. {wrong[:3]})")
        raise CheckpointFormatError(
            f"checkpoint does not match the {entry.architecture} layout of {entry.name!r}: " + "; ".join(parts)
            + ". Is it the right file for this model?",
            key=(missing or unexpected or [k for k in sd if k in expected and tuple(sd[k].shape) != shapes[k]])[0],
        )
    return sd


def _save_converted(directory: Path, unwrapped: Unwrapped, sd: Mapping[str, Tensor], meta: dict[str, Any]) -> ConvertedCheckpoint:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    final = directory / "model.safetensors"
    tensors = {k: v.detach().clone().contiguous() for k, v in sd.items()}  # no shared storage for safetensors
    with atomic_path(final) as tmp:
        save_file(tensors, str(tmp), metadata={"medzoo_name": meta["name"], "format": meta["format"],
                                               "source_sha256": meta["source_sha256"], "medzoo_version": __version__})
        os.chmod(tmp, default_file_mode())  # safetensors writes a new 0600 file: give it the user's umask
    meta.update(file_stamp(final))
    meta.update(
        file_sha256=sha256_file(final),
        tensors=len(tensors),
        parameters=sum(t.numel() for t in tensors.values() if t.is_floating_point()),
        dropped_entries=unwrapped.dropped_entries,
        dropped_keys=unwrapped.dropped_keys,
        medzoo_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    _write_meta(directory, meta)
    return ConvertedCheckpoint(final, meta, fresh=True)


def convert_into_cache(
    directory: Path,
    upstream: Path,
    *,
    entry: ModelEntry,
    fmt: str,
    reference: nn.Module | Callable[[], nn.Module],
    provenance: Mapping[str, Any],
    verify: VerifyMode = "auto",
    progress: bool = True,
    replace: bool = False,
    check: Callable[[Mapping[str, Tensor]], None] | None = None,
) -> ConvertedCheckpoint:
    """Convert ``upstream`` (format ``fmt``) into ``directory`` under a lock, unless already there.

    The one writer of the converted layout: ``zoo.load`` and ``zoo mirror import`` both install through it.
    ``reference`` is the target network (meta device is fine) or a callable building it; a callable is only
    called when a conversion actually happens. ``replace`` converts again even when a conversion exists
    (``force_download``). ``check`` sees the canonical state dict before anything is written and may raise to
    refuse it (the mirror compares it with the conversion it shipped); nothing is left behind then.
    """
    with file_lock(directory):
        if replace:
            _remove(directory)
        cached = check_cached(directory, verify)
        if cached is not None:
            return cached
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=3, desc=f"converting {upstream.name}", unit="step", leave=False)

        def step(label: str) -> None:
            if bar is not None:
                bar.set_postfix_str(label)
                bar.update(1)

        try:
            unwrapped = unwrap_checkpoint(upstream, fmt)
            step("unpickled")
            if not isinstance(reference, nn.Module):
                reference = reference()
            sd = validate_against(unwrapped.state_dict, reference, entry)
            sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
            if check is not None:
                check(sd)
            step("validated")
            meta = {"name": entry.name, "format": fmt, **provenance}
            result = _save_converted(directory, unwrapped, sd, meta)
            step("written")
        except BaseException:
            _remove(directory)
            raise
        finally:
            if bar is not None:
                bar.close()
        return result


def remembered_sha256(
    path: Path, cache_dir: str | os.PathLike | None = None, progress: bool = False, verify: VerifyMode = "auto"
) -> str:
    """sha256 of a user-supplied file, re-hashed unless the same file (path and :func:`file_stamp`) was hashed
    before; ``verify=True`` always hashes. The record lives in ``<cache>/file-hashes/`` and a malformed one is
    ignored (hashed anew)."""
    import hashlib

    resolved = path.resolve()
    stamp = file_stamp(resolved)
    index = zoo_cache_dir(cache_dir) / "file-hashes" / (hashlib.sha1(str(resolved).encode()).hexdigest() + ".json")
    if verify is not True:
        try:
            if index.stat().st_size <= META_MAX_BYTES:
                record = json.loads(index.read_text())
                if isinstance(record, dict) and record.get("path") == str(resolved) \
                        and all(record.get(k) == v for k, v in stamp.items()) \
                        and isinstance(record.get("sha256"), str) and _HEX64.match(record["sha256"]):
                    return record["sha256"]
        except (OSError, ValueError, UnicodeDecodeError):
            pass
    digest = sha256_file(resolved, progress=progress)
    with atomic_path(index) as tmp:
        tmp.write_text(json.dumps({"path": str(resolved), "sha256": digest, **stamp}))
    return digest


def load_converted(path: Path) -> "dict[str, Tensor]":
    """Memory-map a converted file; a damaged file raises :class:`ChecksumError`."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as err:
        raise ChecksumError(f"{path} is not a readable safetensors file ({err}); delete it and load again",
                            path=path) from None
