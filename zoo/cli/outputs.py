"""What every ``zoo`` command checks before it writes, and how its errors read.

A command names the paths it will write (:class:`Target`: a file or a folder, and the option that named it) and
the paths it reads; :func:`guard_outputs` refuses, before any work is done,

* an output that is one of the inputs (same path, a symlink to it, or a hard link: same ``st_dev``/``st_ino``);
* two outputs that are the same file;
* a file output that is a folder, a folder output that is a file, an output below a regular file;
* an existing output without ``--force`` (a folder output: an existing non-empty one), unless the target
  is meant to be extended (caches, mirrors).

Refusals are :class:`OutputError` (a :class:`~zoo.errors.ZooError`: ``zoo`` prints one line and exits 2).
:func:`describe_os_error` turns an ``OSError`` that still happens into one line naming the path and the cause.
"""

from __future__ import annotations

import argparse
import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

from ..errors import ZooError

Kind = Literal["file", "folder"]
Existing = Literal["force", "extend"]

_OUTPUTS_ATTR = "_zoo_outputs"


class OutputError(ZooError):
    """An output the command must not write: one of its inputs, already there, or the wrong kind of path."""


@dataclass(frozen=True)
class Target:
    """A path a command writes: ``kind`` file or folder; ``option`` is how the user named it (``-o``, ``DIR``).

    ``existing="force"``: an existing file (or non-empty folder) is replaced only with ``--force``;
    ``existing="extend"``: the folder is meant to be added to (a cache, a mirror).
    """

    path: Path
    option: str
    kind: Kind = "file"
    existing: Existing = "force"

    @classmethod
    def of(cls, path: str | os.PathLike, option: str, kind: Kind = "file", existing: Existing = "force") -> "Target":
        return cls(Path(os.fspath(path)).expanduser(), option, kind, existing)


def add_force_option(parser: argparse.ArgumentParser, what: str = "the output") -> None:
    """``--force`` on a writing command: replace an existing output (never one of the command's inputs)."""
    parser.add_argument("--force", action="store_true", help=f"replace {what} if it exists (never an input)")


# ----------------------------------------------------------------------------------------------- the checks
def guard_outputs(args: argparse.Namespace, targets: Iterable[Target | None],
                  inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Refuse ``targets`` (``None`` entries are skipped) that would clobber ``inputs``, each other, or an existing
    path without ``args.force``; remember them on ``args`` so that an ``OSError`` can be phrased as a write."""
    chosen = [t for t in targets if t is not None]
    _remember_outputs(args, chosen)
    force = bool(getattr(args, "force", False))
    readable = _input_paths(inputs)
    for target in chosen:
        check_kind(target)
        check_not_an_input(target, readable)
    check_distinct(chosen)
    for target in chosen:
        check_existing(target, force)


def cache_targets(cache_dir: str | os.PathLike | None) -> list[Target]:
    """The folders a command with ``--cache-dir`` writes to: medzoo's cache and the Hugging Face cache."""
    from ..hub.paths import hf_cache_dir, zoo_cache_dir

    if cache_dir is not None:
        return [Target.of(zoo_cache_dir(cache_dir), "--cache-dir", "folder", "extend"),
                Target.of(hf_cache_dir(cache_dir), "--cache-dir (its hub/ folder)", "folder", "extend")]
    return [Target.of(zoo_cache_dir(), "the medzoo cache ($ZOO_CACHE)", "folder", "extend"),
            Target.of(hf_cache_dir(), "the Hugging Face cache ($HF_HUB_CACHE)", "folder", "extend")]


def check_kind(target: Target) -> None:
    """The target and its parents must be what they will be: folders above, a file or a folder at the end."""
    path = target.path
    _check_parents(target)
    if not _exists(path):
        return
    if target.kind == "file" and path.is_dir():
        raise OutputError(f"cannot write {path}: Is a directory ({target.option} takes a file path, not a folder; "
                          f"name a file inside it)")
    if target.kind == "file" and not path.is_file():
        raise OutputError(f"cannot write {path}: not a regular file (a device, pipe or socket); choose another "
                          f"{target.option}")
    if target.kind == "folder" and not path.is_dir():
        raise OutputError(f"cannot write into {path}: Not a directory ({target.option} takes a folder and {path} is "
                          f"a file; choose a folder path, or move the file away)")


def check_not_an_input(target: Target, inputs: Sequence[Path]) -> None:
    """Refuse a target that is one of ``inputs`` (compared through symlinks and hard links)."""
    for source in inputs:
        if same_path(target.path, source):
            via = "" if _absolute(target.path) == _absolute(source) else " (the same file through a link)"
            raise OutputError(f"refusing to write {target.path}: it is the input {source}{via}, which would be "
                              f"destroyed; choose another {target.option}")


def check_distinct(targets: Sequence[Target]) -> None:
    """Refuse two targets that name the same path (``-o X --report X``)."""
    for i, first in enumerate(targets):
        for second in targets[i + 1:]:
            if same_path(first.path, second.path):
                raise OutputError(f"{first.option} and {second.option} both name {first.path}; give them "
                                  f"different paths")


def check_existing(target: Target, force: bool) -> None:
    """Refuse an existing output (a folder: a non-empty one) unless ``force`` or the target is to be extended."""
    path = target.path
    if force or target.existing == "extend" or not _exists(path):
        return
    if target.kind == "file":
        raise OutputError(f"{path} already exists; pass --force to replace it, or choose another {target.option}")
    if path.is_dir() and any(path.iterdir()):
        raise OutputError(f"{path} is a folder that is not empty; pass --force to write into it (files of the same "
                          f"name are replaced), or choose another {target.option}")


def _check_parents(target: Target) -> None:
    blocker = first_non_folder_ancestor(target.path)
    if blocker is not None:
        raise OutputError(f"cannot write {target.path}: Not a directory (its parent {blocker} is a file); choose "
                          f"another {target.option}, or move {blocker} away")


# ----------------------------------------------------------------------------------------------- path helpers
def same_path(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` are the same file or folder: equal resolved paths, or (both existing) equal
    ``st_dev`` and ``st_ino`` (symlinks, hard links, bind mounts)."""
    if _absolute(a) == _absolute(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def first_non_folder_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is not a folder (a file in the way), else ``None``."""
    for parent in _absolute(path).parents:
        if _exists(parent):
            return None if parent.is_dir() else parent
    return None


def _input_paths(inputs: Iterable[str | os.PathLike | None]) -> list[Path]:
    """Existing inputs, and for a folder input also the files directly in it (a model folder's weights)."""
    paths: list[Path] = []
    for item in inputs:
        if item is None:
            continue
        path = Path(os.fspath(item)).expanduser()
        if not _exists(path):
            continue
        paths.append(path)
        if path.is_dir():
            paths.extend(_files_in(path))
    return paths


def _files_in(folder: Path, limit: int = 1000) -> list[Path]:
    files = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if len(files) >= limit:
                    break
                if entry.is_file():
                    files.append(Path(entry.path))
    except OSError:
        pass
    return files


def existing_path(name: str | None) -> str | None:
    """``name`` when it is an existing path (a model folder given in place of a registry name), else ``None``."""
    return name if name is not None and _exists(Path(name).expanduser()) else None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _absolute(path: Path) -> Path:
    try:
        return path.expanduser().resolve(strict=False)
    except (OSError, RuntimeError, ValueError):
        return Path(os.path.abspath(path))


# ----------------------------------------------------------------------------------------------- OSError text
def _remember_outputs(args: argparse.Namespace, targets: Sequence[Target]) -> None:
    setattr(args, _OUTPUTS_ATTR, [*getattr(args, _OUTPUTS_ATTR, []), *(t.path for t in targets)])


def remembered_outputs(args: argparse.Namespace | None) -> list[Path]:
    """The outputs :func:`guard_outputs` recorded on ``args``."""
    return list(getattr(args, _OUTPUTS_ATTR, [])) if args is not None else []


def describe_os_error(err: OSError, outputs: Sequence[Path] = ()) -> str:
    """One line for ``err``: what could not be done to which path, the system's reason and, where it helps,
    the cause (``cannot write /x/y: Not a directory (its parent /x is a file)``)."""
    reason = err.strerror or (os.strerror(err.errno) if err.errno else str(err) or type(err).__name__)
    if not isinstance(err.filename, (str, bytes, os.PathLike)):  # none, or a file descriptor
        return f"{type(err).__name__}: {reason}"
    path = Path(os.fsdecode(err.filename))
    verb = "cannot write" if _is_output_related(path, outputs) else "cannot read"
    second = err.filename2
    where = f"{path} -> {os.fsdecode(second)}" if isinstance(second, (str, bytes, os.PathLike)) else str(path)
    cause = _os_error_cause(err.errno, path)
    return f"{verb} {where}: {reason}{f' ({cause})' if cause else ''}"


def _is_output_related(path: Path, outputs: Sequence[Path]) -> bool:
    """``path`` is an output, a folder above one (being created), something inside an output folder, or the
    temporary file an output is written through (``.NAME.*.partial`` beside it)."""
    target = _absolute(path)
    for out in outputs:
        out = _absolute(out)
        if target == out or target in out.parents or out in target.parents or _is_temporary_of(target, out):
            return True
    return False


def _is_temporary_of(path: Path, output: Path) -> bool:
    return path.parent == output.parent and path.name.startswith(f".{output.name}.") and path.name.endswith(".partial")


def _os_error_cause(code: int | None, path: Path) -> str:
    if code == errno.ENOTDIR:
        blocker = path if _exists(path) and not path.is_dir() else first_non_folder_ancestor(path)
        if blocker == path:
            return "it is a file, not a folder"
        return f"its parent {blocker} is a file" if blocker is not None else ""
    if code == errno.EISDIR:
        return "it is a folder; give a file path"
    if code == errno.EEXIST and _exists(path) and not path.is_dir():
        return "a file is in the way of a folder"
    if code in (errno.EACCES, errno.EPERM):
        return "check the owner and mode of the path and its folder"
    if code == errno.ENOENT and not _exists(path.parent):
        return f"the folder {path.parent} does not exist"
    return ""
