"""Unpickling of legacy torch checkpoints without code execution.

``torch.load(weights_only=True)`` only rebuilds tensors, plain containers and primitive values; anything
else (a class, a function, ``os.system`` ...) is refused before it can run. NumPy scalars and dtypes, which
some old checkpoints store in their metadata, are allowed explicitly: rebuilding them runs no user code.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any

import torch

from ..errors import CheckpointFormatError, UnsafeCheckpointError


def _numpy_safe_globals() -> list[Any]:
    import numpy as np

    allowed: list[Any] = [np.dtype, np.ndarray]
    for module_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            module = __import__(module_name, fromlist=["scalar", "_reconstruct"])
        except ImportError:
            continue
        allowed += [module.scalar, module._reconstruct]
        break
    allowed += [type(np.dtype(t)) for t in ("float32", "float64", "int64", "int32", "bool")]
    return allowed


def load_legacy_checkpoint(path: str | os.PathLike) -> Any:
    """Load a ``torch.save`` file (zip or legacy format) on the CPU with ``weights_only=True``.

    Raises :class:`UnsafeCheckpointError` when the pickle references anything beyond tensors, containers and
    numpy scalars: nothing in it is executed.
    """
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"refused to unpickle {path}: it references objects other than tensors and plain containers, "
            f"which could execute code ({str(err).splitlines()[0] if str(err) else 'unsafe global'}). "
            "Nothing in it was run. If the file is from a source you trust, load it in an isolated "
            "environment and re-save only its tensors with safetensors, then pass that file instead."
        ) from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointFormatError(
            f"{path} is not a readable torch checkpoint ({type(err).__name__}: {err}); "
            "it may be truncated: delete it and download it again"
        ) from None
