"""The converted-checkpoint cache: one verified safetensors file per (model, upstream file).

Layout under :func:`zoo.hub.paths.zoo_cache_dir`::

    converted/<model name>/<source key>/model.safetensors   canonical keys, float tensors, mmap-able
    converted/<model name>/<source key>/meta.json           provenance + the file's sha256, size, mtime
    converted/<model name>/<source key>.lock                 inter-process lock

``<source key>`` is ``sha256-<16 hex>`` of the upstream file when known in advance, else
``rev-<12 hex>-<file name>`` for a pinned Hub revision. Files are written to a temporary name and moved in
place, ``meta.json`` last, so an interrupted conversion leaves nothing that looks complete.

Verification of a cached file (``verify=``): ``"auto"`` hashes it again only when its size or mtime differ
from ``meta.json`` (a file modified in place, truncated, or replaced); ``True`` always hashes; ``False`` never
does. A mismatch removes the cached conversion and raises :class:`ChecksumError`; the next load converts again.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from .._version import __version__
from ..errors import CheckpointFormatError, ChecksumError
from ..hub.integrity import atomic_path, file_lock, sha256_file
from ..hub.paths import zoo_cache_dir
from ..registry import ModelEntry
from ..state_dict import alias_groups, canonicalize
from .formats import Unwrapped, unwrap_checkpoint

VerifyMode = Any  # "auto" | True | False


@dataclass(frozen=True)
class ConvertedCheckpoint:
    """A verified converted file and its provenance record (``meta.json`` contents)."""

    path: Path
    meta: Mapping[str, Any]


def converted_dir(name: str, source_key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    return zoo_cache_dir(cache_dir) / "converted" / name / source_key


def source_key_for(entry: ModelEntry) -> str | None:
    """Cache key of the registry source, known before downloading (None for a package file)."""
    src = entry.source
    if src is None or src.package_file:
        return None
    if src.sha256:
        return f"sha256-{src.sha256[:16]}"
    return f"rev-{(src.revision or 'main')[:12]}-{src.filename}"


def _read_meta(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def check_cached(directory: Path, verify: VerifyMode = "auto") -> ConvertedCheckpoint | None:
    """Return the cached conversion in ``directory`` if complete and intact; None if absent.

    Raises :class:`ChecksumError` (after removing the directory) when the file is damaged.
    """
    path = directory / "model.safetensors"
    meta = _read_meta(directory)
    if meta is None or not path.is_file():
        if directory.exists():
            _remove(directory)  # leftovers of an interrupted conversion: nothing complete to keep
        return None
    if verify is False:
        return ConvertedCheckpoint(path, meta)
    stat = path.stat()
    unchanged = stat.st_size == meta.get("file_size") and stat.st_mtime_ns == meta.get("file_mtime_ns")
    if verify == "auto" and unchanged:
        return ConvertedCheckpoint(path, meta)
    actual = sha256_file(path)
    if actual != meta.get("file_sha256") or stat.st_size != meta.get("file_size"):
        _remove(directory)
        raise ChecksumError(
            f"the cached conversion {path} is damaged (sha256 {actual[:16]}…, {stat.st_size:,} bytes; "
            f"expected {str(meta.get('file_sha256'))[:16]}…, {meta.get('file_size'):,} bytes). It has been "
            "removed; load again to convert the upstream file anew."
        )
    if not unchanged:  # same bytes, new mtime (copied or touched): remember the new stat
        meta.update(file_mtime_ns=stat.st_mtime_ns)
        _write_meta(directory, meta)
    return ConvertedCheckpoint(path, meta)


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
            + ". Is it the right file for this model?"
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
    stat = final.stat()
    meta.update(
        file_sha256=sha256_file(final),
        file_size=stat.st_size,
        file_mtime_ns=stat.st_mtime_ns,
        tensors=len(tensors),
        parameters=sum(t.numel() for t in tensors.values() if t.is_floating_point()),
        dropped_entries=unwrapped.dropped_entries,
        dropped_keys=unwrapped.dropped_keys,
        medzoo_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    _write_meta(directory, meta)
    return ConvertedCheckpoint(final, meta)


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
) -> ConvertedCheckpoint:
    """Convert ``upstream`` (format ``fmt``) into ``directory`` under a lock, unless already there.

    ``reference`` is the target network (meta device is fine) or a callable building it; a callable is only
    called when a conversion actually happens.
    """
    with file_lock(directory):
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


def remembered_sha256(path: Path, cache_dir: str | os.PathLike | None = None, progress: bool = False) -> str:
    """sha256 of a user-supplied file, re-hashed only when its path, size or mtime changed since last time."""
    import hashlib

    resolved = path.resolve()
    stat = resolved.stat()
    index = zoo_cache_dir(cache_dir) / "file-hashes" / (hashlib.sha1(str(resolved).encode()).hexdigest() + ".json")
    try:
        record = json.loads(index.read_text())
        if record["size"] == stat.st_size and record["mtime_ns"] == stat.st_mtime_ns:
            return record["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = sha256_file(resolved, progress=progress)
    with atomic_path(index) as tmp:
        tmp.write_text(json.dumps({"path": str(resolved), "size": stat.st_size,
                                   "mtime_ns": stat.st_mtime_ns, "sha256": digest}))
    return digest


def load_converted(path: Path) -> "dict[str, Tensor]":
    """Memory-map a converted file; a damaged file raises :class:`ChecksumError`."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as err:
        raise ChecksumError(f"{path} is not a readable safetensors file ({err}); delete it and load again") from None


def meta_device_model(build: Callable[[], nn.Module]) -> nn.Module:
    """Build a model with every parameter on the meta device (no memory, no random init)."""
    with torch.device("meta"):
        return build()
