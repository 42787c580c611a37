"""``zoo convert FILE -o OUT.safetensors``: convert an upstream file outside the cache.

When no model name is given, the file is matched against every registry entry whose format can read it;
the first entry whose layout fits exactly is used (entries with identical layouts, such as
``med3d-resnet10`` and ``med3d-resnet10-23datasets``, are reported together).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointFormatError
from ..hub.integrity import atomic_path, default_file_mode, sha256_file
from ..archs.build import build_model, meta_device_model
from ..registry import get_entry, list_models
from .cache import validate_against
from .formats import unwrap_checkpoint


@dataclass(frozen=True)
class ConvertResult:
    model: str
    path: Path
    tensors: int
    sha256: str


def _candidates(model: str | None) -> list[str]:
    if model is not None:
        return [get_entry(model).name]
    return [n for n in list_models() if get_entry(n).source is not None]


def convert_file(
    file: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model: str | None = None,
    fmt: str | None = None,
    progress: bool = True,
) -> ConvertResult:
    """Convert ``file`` to safetensors at ``output`` (atomically); return what was written."""
    from safetensors.torch import save_file

    file, output = Path(file), Path(output)
    if not file.is_file():
        raise CheckpointFormatError(f"{file} does not exist")
    unwrapped_by_format: dict[str, object] = {}
    errors: list[str] = []
    for name in _candidates(model):
        entry = get_entry(name)
        entry_fmt = fmt or entry.source.format  # type: ignore[union-attr]
        if entry_fmt not in unwrapped_by_format:
            try:
                unwrapped_by_format[entry_fmt] = unwrap_checkpoint(file, entry_fmt)
            except CheckpointFormatError as err:
                unwrapped_by_format[entry_fmt] = err
        unwrapped = unwrapped_by_format[entry_fmt]
        if isinstance(unwrapped, Exception):
            errors.append(f"{name}: {unwrapped}")
            continue
        reference = meta_device_model(lambda: build_model(entry))
        try:
            sd = validate_against(unwrapped.state_dict, reference, entry)  # type: ignore[attr-defined]
        except CheckpointFormatError as err:
            errors.append(f"{name}: {err}")
            continue
        tensors = {k: (v.float() if v.is_floating_point() else v).contiguous().clone() for k, v in sd.items()}
        with atomic_path(output) as tmp:
            save_file(tensors, str(tmp), metadata={"medzoo_name": name, "format": entry_fmt,
                                                   "source_sha256": sha256_file(file)})
            os.chmod(tmp, default_file_mode())  # safetensors writes a new 0600 file: give it the user's umask
        return ConvertResult(name, output, len(tensors), sha256_file(output, progress=progress))
    hint = "; ".join(errors[:3]) if model else "no registry model has this file's key layout"
    raise CheckpointFormatError(f"cannot convert {file}: {hint}")
