"""File integrity: sha256 with progress, atomic writes, and per-file locks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from ..errors import ChecksumError

_CHUNK = 8 << 20


def sha256_file(path: str | os.PathLike, progress: bool = False, desc: str | None = None) -> str:
    """Hex sha256 of a file, read in 8 MiB chunks (a tqdm bar when ``progress``)."""
    path = Path(path)
    digest = hashlib.sha256()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=desc or f"sha256 {path.name}")
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            digest.update(view[:n])
            if bar is not None:
                bar.update(n)
    if bar is not None:
        bar.close()
    return digest.hexdigest()


def verify_file(
    path: str | os.PathLike,
    *,
    sha256: str | None,
    size: int | None = None,
    what: str = "file",
    progress: bool = False,
) -> str:
    """Check size (cheap, first) and sha256 of ``path``; return the sha256. Raise :class:`ChecksumError`."""
    path = Path(path)
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(
            f"{what} {path} has {actual_size:,} bytes, expected {size:,} (truncated or wrong file)",
            path=path, expected_sha256=sha256, expected_size=size, actual_size=actual_size,
        )
    actual = sha256_file(path, progress=progress)
    if sha256 is not None and actual != sha256:
        raise ChecksumError(f"{what} {path} has sha256 {actual}, expected {sha256} (corrupt or tampered)",
                            path=path, expected_sha256=sha256, actual_sha256=actual,
                            expected_size=size, actual_size=actual_size)
    return actual


_umask_lock = threading.Lock()
_umask: int | None = None


def _forget_umask() -> None:
    """After ``fork``: the child reads its own umask, with a fresh lock (the parent's may be held)."""
    global _umask_lock, _umask
    _umask_lock = threading.Lock()
    _umask = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_umask)


def _read_umask() -> int:
    """The umask, read without loosening it even for an instant.

    Linux has it in ``/proc/self/status`` (reading changes nothing). Elsewhere ``os.umask`` can only be read by
    setting it: the tightest mask is set and the old one put back, so a file another thread creates in between
    gets a stricter mode, never a looser one.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o077)
    os.umask(old)
    return old


def process_umask() -> int:
    """This process's umask, read once per process (thread-safe; a forked child reads its own)."""
    global _umask
    with _umask_lock:
        if _umask is None:
            _umask = _read_umask()
        return _umask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~process_umask()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success it is moved onto ``final`` atomically.

    On any exception the temporary file is removed, so ``final`` is either absent, its old version, or
    complete: never half-written. The file gets ``mode`` (default ``0o666 & ~umask``, the mode a plain
    ``open(final, "w")`` would give, not the 0600 of :func:`tempfile.mkstemp`); a caller that changes the
    temporary file's mode inside the block keeps its own.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, default_file_mode() if mode is None else mode)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, timeout: float = 600) -> Iterator[None]:
    """Inter-process lock on ``<path>.lock`` (filelock), so two processes never convert the same file twice."""
    from filelock import FileLock

    lock_path = Path(f"{os.fspath(path)}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path), timeout=timeout):
        yield
