"""Unpickling of legacy torch checkpoints without code execution and without unbounded allocation.

``torch.load(weights_only=True)`` only rebuilds tensors, plain containers and primitive values; anything
else (a class, a function, ``os.system`` ...) is refused before it can run. NumPy scalars, arrays and dtypes,
which old checkpoints store in their metadata (nnU-Net v1's ``plot_stuff``), are allowed explicitly under both
module spellings (``numpy.core.multiarray`` of numpy 1.x, ``numpy._core.multiarray`` of numpy 2.x).

Some allowed calls still allocate what the pickle claims, so before :func:`torch.load` runs, the file is
checked statically (:mod:`.torch_file_scan`, :mod:`.pickle_scan`): no call, shape or storage may claim more
bytes than the file holds. NumPy's rebuild functions are registered as bounded wrappers as a second line of
defence. Whatever still goes wrong inside the unpickler becomes one :class:`CheckpointFormatError` naming the
file; a global outside the allow-list stays an :class:`UnsafeCheckpointError`.
"""

from __future__ import annotations

import contextvars
import functools
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import CheckpointFormatError, UnsafeCheckpointError
from .pickle_scan import MalformedPickle, OversizedClaim, UnsafePickle, bounded_product
from .torch_file_scan import scan_torch_file

_MULTIARRAY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")


@dataclass(frozen=True)
class _Budget:
    """The file being unpickled and the most bytes one numpy rebuild may allocate."""

    path: str
    limit: int


_BUDGET: contextvars.ContextVar[_Budget] = contextvars.ContextVar("medzoo_unpickle_budget", default=_Budget("?", 0))


def _refuse_numpy(what: str, nbytes: int) -> None:
    budget = _BUDGET.get()
    if nbytes > budget.limit:
        raise CheckpointFormatError(
            f"refused {budget.path}: {what} claims {nbytes:,} bytes but the file is only {budget.limit:,} bytes; "
            "it is corrupt or crafted. Delete it and download it again.",
            path=budget.path,
        )


def _bounded_reconstruct(original: Callable[..., Any]) -> Callable[..., Any]:
    """numpy's ``_reconstruct(ndarray, shape, dtype)``, refusing other classes and shapes larger than the file."""
    import numpy as np

    def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
        if subtype is not np.ndarray:
            raise CheckpointFormatError(f"refused {_BUDGET.get().path}: it rebuilds a numpy {subtype!r}, not an ndarray",
                                        path=_BUDGET.get().path)
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        limit = _BUDGET.get().limit
        _refuse_numpy(f"a numpy array of shape {dims}", bounded_product(dims, limit) * np.dtype(dtype).itemsize)
        return original(subtype, shape, dtype)

    return _reconstruct


def _bounded_scalar(original: Callable[..., Any]) -> Callable[..., Any]:
    """numpy's ``scalar(dtype, data)``, refusing dtypes larger than the file."""
    import numpy as np

    def scalar(dtype: Any, *args: Any) -> Any:
        if not isinstance(dtype, np.dtype):
            raise CheckpointFormatError(f"refused {_BUDGET.get().path}: a numpy scalar without a dtype",
                                        path=_BUDGET.get().path)
        _refuse_numpy(f"a numpy scalar of dtype {dtype}", dtype.itemsize)
        return original(dtype, *args)

    return scalar


def _numpy_multiarray() -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray


@functools.lru_cache(maxsize=1)
def _numpy_safe_globals() -> list[Any]:
    """numpy's dtype classes, ``ndarray``, and bounded ``_reconstruct``/``scalar`` under both module spellings."""
    import numpy as np

    multiarray = _numpy_multiarray()
    reconstruct, scalar = _bounded_reconstruct(multiarray._reconstruct), _bounded_scalar(multiarray.scalar)
    allowed: list[Any] = [np.dtype, np.ndarray]
    for module in _MULTIARRAY_MODULES:
        allowed += [(reconstruct, f"{module}._reconstruct"), (scalar, f"{module}.scalar")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: the class of each dtype instance (BUILD checks it)
    classes = {type(np.dtype(c)) for c in "?bhilqBHILQefdgFDGOSUV"}
    if dtypes is not None:
        classes |= {v for v in vars(dtypes).values() if isinstance(v, type) and issubclass(v, np.dtype)}
    return allowed + sorted(classes - {np.dtype}, key=lambda c: c.__name__)


@functools.lru_cache(maxsize=1)
def _allowed_by_name() -> dict[str, Any]:
    """Every global the weights-only unpickler will accept here, by ``module.name``."""
    from torch._weights_only_unpickler import _get_allowed_globals

    allowed = dict(_get_allowed_globals())
    for entry in _numpy_safe_globals():
        obj, name = entry if isinstance(entry, tuple) else (entry, f"{entry.__module__}.{entry.__qualname__}")
        allowed[name] = obj
    return allowed


def _file_size(path: Path) -> int:
    """Size of a regular file; anything else gets a clear error."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise CheckpointFormatError(f"{path} does not exist", path=path) from None
    except OSError as err:
        raise CheckpointFormatError(f"{path} cannot be read ({err.strerror or err})", path=path) from None
    if path.is_dir():
        raise CheckpointFormatError(f"{path} is a directory, not a checkpoint file; pass the file inside it", path=path)
    if stat.st_size == 0:
        raise CheckpointFormatError(f"{path} is empty (0 bytes), not a checkpoint; delete it and download it again",
                                    path=path)
    return stat.st_size


def _unsafe(path: str, reason: str) -> UnsafeCheckpointError:
    named = _GLOBAL_IN_REASON.search(reason)  # "GLOBAL os.system" (the scanner's and torch's wording)
    return UnsafeCheckpointError(
        f"refused to unpickle {path}: it references objects other than tensors and plain containers, "
        f"which could execute code ({reason}). "
        "Nothing in it was run. If the file is from a source you trust, load it in an isolated "
        "environment and re-save only its tensors with safetensors, then pass that file instead.",
        path=path, global_name=named.group(1) if named else None,
    )


_GLOBAL_IN_REASON = re.compile(r"\b(?:STACK_GLOBAL|GLOBAL|INST) ([A-Za-z_][\w.]*[\w])")


def _malformed(path: str, reason: str) -> CheckpointFormatError:
    return CheckpointFormatError(
        f"{path} is not a readable torch checkpoint: {reason}. Nothing in it was loaded or run. "
        "If it was downloaded it may be truncated or damaged: delete it and download it again.",
        path=path,
    )


def _oversized(path: str, reason: str, size: int) -> CheckpointFormatError:
    return CheckpointFormatError(
        f"refused {path}: {reason} but the file is only {size:,} bytes. It is corrupt or crafted; nothing in it "
        "was allocated or run. Delete it and download it again from its source.",
        path=path,
    )


def check_torch_file(path: str | os.PathLike) -> int:
    """Statically check a ``torch.save`` file without unpickling it; return its size.

    Raises :class:`UnsafeCheckpointError` for code references and :class:`CheckpointFormatError` for
    anything else :func:`load_legacy_checkpoint` would refuse before unpickling.
    """
    file = Path(os.fspath(path))
    size = _file_size(file)
    try:
        scan_torch_file(file, _allowed_by_name())
    except UnsafePickle as err:
        raise _unsafe(str(file), str(err)) from None
    except OversizedClaim as err:
        raise _oversized(str(file), str(err), size) from None
    except MalformedPickle as err:
        raise _malformed(str(file), str(err)) from None
    except OSError as err:
        raise CheckpointFormatError(f"{file} cannot be read ({err.strerror or err})", path=file) from None
    return size


def load_legacy_checkpoint(path: str | os.PathLike) -> Any:
    """Load a ``torch.save`` file (zip or legacy format) on the CPU with ``weights_only=True``.

    Raises :class:`UnsafeCheckpointError` when the pickle references anything beyond tensors, containers and
    numpy scalars/arrays, and :class:`CheckpointFormatError` for every other reason it cannot be loaded
    (not a checkpoint, truncated, or claiming more memory than the file holds). Nothing in a refused file is
    executed, and nothing larger than the file is allocated for it.
    """
    name = os.fspath(path)
    size = check_torch_file(name)
    token = _BUDGET.set(_Budget(name, size))
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(name, map_location="cpu", weights_only=True)
    except (CheckpointFormatError, UnsafeCheckpointError):
        raise
    except pickle.UnpicklingError as err:
        raise _unsafe(name, str(err).splitlines()[0] if str(err) else "unsafe global") from None
    except Exception as err:  # noqa: BLE001 -- every failure inside the unpickler is a format error
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else "no message"
        raise _malformed(name, f"{type(err).__name__} while unpickling: {first}") from None
    finally:
        _BUDGET.reset(token)
