"""Unwrap each upstream checkpoint format into a flat state dict in medzoo's key layout.

:data:`CONVERTERS` is the one table of converters: one row per name of :data:`zoo.entry.CheckpointFormat` (the
formats registry entries may name), each with its unwrap function and the facts of the table below.

| format            | wrapper key                | prefix stripped         | key mapping                 |
|-------------------|----------------------------|-------------------------|-----------------------------|
| ``genesis-unet3d``| ``state_dict``             | ``module.``             | none                        |
| ``nnunet-v1``     | ``state_dict``             | ``module.`` if present  | v1 -> v2 (:mod:`.nnunet_v1`)|
| ``medicalnet``    | ``state_dict``             | ``module.``             | none                        |
| ``suprem-unet``   | ``net``                    | ``module.backbone.``    | other keys and ``out_tr`` dropped |
| ``safetensors``   | none                       | ``module.``/``_orig_mod.``| none                      |
| ``timm``          | none (``.bin``: as timm)   | ``module.``/``_orig_mod.``| 2D ResNet -> 3D Med3D, ``fc`` dropped (:mod:`.inflate2d`) |

Optimizer state, epochs and any other non-weight entries are dropped; what was dropped is returned so that
the conversion metadata can list it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from torch import Tensor

from ..entry import CheckpointFormat
from ..errors import CheckpointFormatError
from ..state_dict import strip_prefix, strip_wrappers
from .nnunet_v1 import convert_nnunet_v1, is_nnunet_v1
from .safe_load import load_legacy_checkpoint
from .safetensors_check import check_safetensors_file

_WRAPPER_KEYS = ("state_dict", "net", "model", "network_weights", "model_state_dict", "state_dict_ema")


@dataclass
class Unwrapped:
    """A flat state dict plus what the conversion left out (top-level entries and dropped keys)."""

    state_dict: "OrderedDict[str, Tensor]"
    dropped_entries: list[str] = field(default_factory=list)
    dropped_keys: list[str] = field(default_factory=list)


def _tensor_dict(obj: Mapping[str, Any], where: str) -> "OrderedDict[str, Tensor]":
    from torch import Tensor as _T

    bad = [k for k, v in obj.items() if not isinstance(v, _T)]
    if bad:
        raise CheckpointFormatError(f"{where}: entries that are not tensors: {bad[:5]}", path=where, key=str(bad[0]))
    return OrderedDict(obj)


def _unwrap(obj: Any, preferred: str, path: str) -> tuple["OrderedDict[str, Tensor]", list[str]]:
    if not isinstance(obj, Mapping):
        raise CheckpointFormatError(f"{path}: expected a dict, found {type(obj).__name__}", path=path)
    if preferred in obj and isinstance(obj[preferred], Mapping):
        dropped = [k for k in obj if k != preferred]
        return _tensor_dict(obj[preferred], f"{path}['{preferred}']"), dropped
    for key in _WRAPPER_KEYS:
        if key in obj and isinstance(obj[key], Mapping):
            dropped = [k for k in obj if k != key]
            return _tensor_dict(obj[key], f"{path}['{key}']"), dropped
    return _tensor_dict(obj, path), []


def unwrap_checkpoint(path: str | os.PathLike, fmt: str) -> Unwrapped:
    """Read ``path`` (legacy pickle or safetensors) and return its weights in medzoo's layout for ``fmt``.

    The converter is the row of :data:`CONVERTERS` named ``fmt``. A name outside the table is refused, after the
    same safe read as a pickle format (a ``.safetensors`` file needs no conversion and is read flat).
    """
    path = Path(path)
    converter = CONVERTERS.get(fmt)
    if converter is None:
        return _pickled(_no_converter(fmt))(path)
    return converter.unwrap(path)


def load_safetensors(path: Path) -> "dict[str, Tensor]":
    """Read a safetensors file after checking its header; every failure is a :class:`CheckpointFormatError`."""
    from safetensors.torch import load_file

    check_safetensors_file(path)
    try:
        return load_file(str(path))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # noqa: BLE001 -- SafetensorError, and a Rust panic (a BaseException)
        raise CheckpointFormatError(f"{path} is not a valid safetensors file: {err}", path=path) from None


def _unwrap_timm(path: Path) -> Unwrapped:
    """A timm Hub file (``model.safetensors`` or legacy ``pytorch_model.bin``) of a 2D ResNet, inflated to 3D."""
    from .inflate2d import inflate_timm_resnet

    if path.suffix == ".safetensors":
        sd, dropped_entries = load_safetensors(path), []
    else:
        sd, dropped_entries = _unwrap(load_legacy_checkpoint(path), "state_dict", str(path))
    inflated, dropped_keys = inflate_timm_resnet(strip_wrappers(sd), where=str(path))
    return Unwrapped(inflated, dropped_entries, dropped_keys)


# --------------------------------------------------------------------------------------------------------------
# one converter per format
# --------------------------------------------------------------------------------------------------------------


def _unwrap_flat_safetensors(path: Path) -> Unwrapped:
    """A safetensors file: flat weights already, only ``module.`` / ``_orig_mod.`` wrappers stripped."""
    return Unwrapped(strip_wrappers(load_safetensors(path)))


def _pickled(unwrap_object: Callable[[Any, Path], Unwrapped]) -> Callable[[Path], Unwrapped]:
    """The converter of a pickle format: the file is unpickled without code execution, then ``unwrap_object``
    maps it. A ``.safetensors`` file given for that format holds flat weights already and is read as such."""

    def unwrap(path: Path) -> Unwrapped:
        if path.suffix == ".safetensors":
            return _unwrap_flat_safetensors(path)
        return unwrap_object(load_legacy_checkpoint(path), path)

    unwrap.__name__ = unwrap.__qualname__ = unwrap_object.__name__
    unwrap.__doc__ = unwrap_object.__doc__
    return unwrap


def _no_converter(fmt: str) -> Callable[[Any, Path], Unwrapped]:
    def refuse(obj: Any, path: Path) -> Unwrapped:
        raise CheckpointFormatError(f"no converter for checkpoint format {fmt!r}")

    return refuse


def _unwrap_state_dict(obj: Any, path: Path) -> Unwrapped:
    """Models Genesis UNet3D and MedicalNet: the ``state_dict`` of a training checkpoint, ``module.`` stripped."""
    sd, dropped = _unwrap(obj, "state_dict", str(path))
    return Unwrapped(strip_wrappers(sd), dropped)


def _unwrap_nnunet_v1(obj: Any, path: Path) -> Unwrapped:
    """An nnU-Net v1 ``Generic_UNet`` checkpoint, keys mapped to the v2 ``PlainConvUNet`` layout."""
    sd, dropped = _unwrap(obj, "state_dict", str(path))
    sd = strip_wrappers(sd)
    if not is_nnunet_v1(sd):
        raise CheckpointFormatError(f"{path} has no nnU-Net v1 keys (conv_blocks_context.*)", path=path)
    return Unwrapped(convert_nnunet_v1(sd), dropped)


def _unwrap_suprem(obj: Any, path: Path) -> Unwrapped:
    """A SuPreM universal-model checkpoint: its ``module.backbone.`` U-Net, without the ``out_tr`` head."""
    sd, dropped = _unwrap(obj, "net", str(path))
    prefix = "module.backbone."
    # the universal model's own head replaces the UNet3D head: drop out_tr like SuPreM's loader does
    keep = [k for k in sd if k.startswith(prefix) and not k.startswith(prefix + "out_tr.")]
    if not keep:
        raise CheckpointFormatError(f"{path} has no '{prefix}*' keys; is it a SuPreM U-Net checkpoint?", path=path)
    backbone = OrderedDict((k, sd[k]) for k in keep)
    others = [k for k in sd if k not in backbone]
    return Unwrapped(strip_prefix(backbone, prefix), dropped, others)


@dataclass(frozen=True)
class Converter:
    """One upstream checkpoint format: the function that turns its file into medzoo's layout, and its row of
    the module's table (wrapper key read, prefix stripped, key mapping)."""

    unwrap: Callable[[Path], Unwrapped]
    wrapper_key: str
    prefix_stripped: str
    key_mapping: str


#: format name -> converter; exactly the names of :data:`zoo.entry.CheckpointFormat`, in that order
CONVERTERS: Mapping[CheckpointFormat, Converter] = MappingProxyType({
    "genesis-unet3d": Converter(_pickled(_unwrap_state_dict), "``state_dict``", "``module.``", "none"),
    "nnunet-v1": Converter(_pickled(_unwrap_nnunet_v1), "``state_dict``", "``module.`` if present",
                           "v1 -> v2 (:mod:`.nnunet_v1`)"),
    "medicalnet": Converter(_pickled(_unwrap_state_dict), "``state_dict``", "``module.``", "none"),
    "suprem-unet": Converter(_pickled(_unwrap_suprem), "``net``", "``module.backbone.``",
                             "other keys and ``out_tr`` dropped"),
    "safetensors": Converter(_unwrap_flat_safetensors, "none", "``module.``/``_orig_mod.``", "none"),
    "timm": Converter(_unwrap_timm, "none (``.bin``: as timm)", "``module.``/``_orig_mod.``",
                      "2D ResNet -> 3D Med3D, ``fc`` dropped (:mod:`.inflate2d`)"),
})


__all__ = ["CONVERTERS", "Converter", "Unwrapped", "load_safetensors", "unwrap_checkpoint"]
