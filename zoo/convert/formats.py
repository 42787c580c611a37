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
| ``nnssl``         | ``network_weights``        | ``module.``/``_orig_mod.``| keys outside ``encoder.``/``decoder.`` (SSL heads) dropped |
| ``stunet-v1``     | ``state_dict``             | ``module.`` if present  | none; refused when an encoder key is missing |
| ``suprem-segresnet`` | ``net``                 | ``module.``             | ``conv_final.2`` head dropped; refused when an encoder key is missing |
| ``suprem-swinunetr`` | ``net``                 | ``module.backbone.``    | universal-model keys (organ embedding, controller) dropped; refused when an encoder key is missing |
| ``monai-bundle``  | none (or ``model``)        | ``module.``/``_orig_mod.``| none                      |
| ``voco``          | none or ``state_dict``/``network_weights``/``net``/``student`` | ``module.``, ``backbone.`` | ``student.``/``teacher.`` dropped; refused when an encoder key is missing |

Optimizer state, epochs and any other non-weight entries are dropped; what was dropped is returned so that
the conversion metadata can list it.
"""

from __future__ import annotations

import os
import re
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


#: the wrappers the authors' loader accepts, in its order (Luffy03/Large-Scale-Medical,
#: Downstream/nnUNet/nnunetv2/training/nnUNetTrainer/nnUNetTrainer_pretrain.py ``load``); else a raw state dict
_VOCO_WRAPPERS = ("state_dict", "network_weights", "net", "student")
#: VoCoHead's contrastive projection heads (``student`` / ``teacher``): used in pretraining only
_VOCO_PROJECTION_PREFIXES = ("student.", "teacher.")


def _voco_encoder_gaps(sd: Mapping[str, Tensor]) -> list[str]:
    """Encoder tensors a VoCo file must have whatever the entry: the first convolution of every encoder stage
    up to the deepest one present (PlainConvUNet), or the patch embedding and the four Swin stages (SwinUNETR)."""
    if any(k.startswith("encoder.stages.") for k in sd):
        stages = {int(k.split(".")[2]) for k in sd if k.startswith("encoder.stages.") and k.split(".")[2].isdigit()}
        gaps = []
        for s in range(max(stages, default=-1) + 1):
            names = (f"encoder.stages.{s}.0.convs.0.conv.weight", f"encoder.stages.{s}.0.convs.0.all_modules.0.weight")
            if not any(n in sd for n in names):
                gaps.append(names[0])
        return gaps
    need = ["swinViT.patch_embed.proj.weight"] + [f"swinViT.layers{i}.0.blocks.0.attn.qkv.weight" for i in range(1, 5)]
    return [k for k in need if k not in sd]


def _unwrap_voco(obj: Any, path: Path) -> Unwrapped:
    """A VoCo file (``Luffy503/VoCo``): a raw state dict or one wrapped as the authors' loader accepts, ``module.``
    and ``backbone.`` stripped, VoCoHead's projection heads dropped. Two layouts: ``VoComni_nnunet``
    (dynamic-network-architectures PlainConvUNet, ``encoder.stages.*``) and the Swin files (MONAI SwinUNETR v2,
    ``swinViT.*``). Unlike the authors' loader, which keeps what matches by name and shape and skips the rest
    silently, a file without its encoder is refused here (and the strict layout check follows)."""
    if not isinstance(obj, Mapping):
        raise CheckpointFormatError(f"{path}: expected a dict, found {type(obj).__name__}", path=str(path))
    wrapper = next((k for k in _VOCO_WRAPPERS if k in obj and isinstance(obj[k], Mapping)), None)
    if wrapper is not None:
        sd = _tensor_dict(obj[wrapper], f"{path}['{wrapper}']")
        dropped = [k for k in obj if k != wrapper]
    elif all(isinstance(v, Tensor) for v in obj.values()):
        sd, dropped = OrderedDict(obj), []
    else:
        raise CheckpointFormatError(
            f"{path} is neither a raw state dict nor one wrapped in {', '.join(map(repr, _VOCO_WRAPPERS))} (the "
            f"containers the authors' loader reads); top-level keys: {list(obj)[:6]}", path=str(path))
    sd = strip_wrappers(sd)
    stripped = strip_prefix(sd, "backbone.")
    if len(stripped) != len(sd):
        clash = next(k for k in sd if k.startswith("backbone.") and k[len("backbone."):] in sd)
        raise CheckpointFormatError(
            f"{path} has both {clash!r} and {clash[len('backbone.'):]!r}: which one is the network is ambiguous",
            path=str(path), key=clash)
    heads = [k for k in stripped if k.startswith(_VOCO_PROJECTION_PREFIXES)]
    kept = OrderedDict((k, v) for k, v in stripped.items() if not k.startswith(_VOCO_PROJECTION_PREFIXES))
    if not any(k.startswith(("encoder.stages.", "swinViT.")) for k in kept):
        raise CheckpointFormatError(
            f"{path} has no 'encoder.stages.*' (VoComni_nnunet) or 'swinViT.*' (VoCo Swin) keys after stripping "
            f"'module.' and 'backbone.' (first keys: {list(kept)[:4]}); is it a VoCo checkpoint?", path=str(path))
    gaps = _voco_encoder_gaps(kept)
    if gaps:
        raise CheckpointFormatError(
            f"{path} lacks encoder tensors {gaps[:4]} ({len(gaps)} in all); the authors' loader would skip them "
            "silently and leave them random. Download the file again or use a complete checkpoint.",
            path=str(path), key=gaps[0])
    return Unwrapped(kept, dropped, heads)


def _unwrap_nnssl(obj: Any, path: Path) -> Unwrapped:
    """An nnssl ``checkpoint_final.pth`` (MIC-DKFZ/nnssl ``AbstractTrainer.save_checkpoint``): the U-Net or encoder
    under ``network_weights``; the pretraining heads of SSL wrappers (``projector``, ``*_proj_head``) dropped."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("network_weights"), Mapping):
        raise CheckpointFormatError(
            f"{path} has no 'network_weights' dict; is it an nnssl checkpoint_final.pth?", path=path,
            key="network_weights")
    sd = strip_wrappers(_tensor_dict(obj["network_weights"], f"{path}['network_weights']"))
    keep = OrderedDict((k, v) for k, v in sd.items() if k.startswith(("encoder.", "decoder.")))
    if not any(k.startswith("encoder.") for k in keep):
        raise CheckpointFormatError(f"{path}['network_weights'] has no 'encoder.*' keys; is it an nnssl ResEnc "
                                    "checkpoint?", path=path, key="network_weights")
    return Unwrapped(keep, [k for k in obj if k != "network_weights"], [k for k in sd if k not in keep])


_STUNET_ENC = re.compile(r"^conv_blocks_context\.(\d+)\.(\d+)\.(conv[123]|norm[12])\.(weight|bias)$")


def _unwrap_stunet_v1(obj: Any, path: Path) -> Unwrapped:
    """An STU-Net nnU-Net v1 trainer checkpoint (uni-medical/STU-Net ``*_ep4k.model``): the network's
    ``state_dict`` kept key for key (STU-Net's own layout); the optimizer state, training curves and the rest of the
    trainer's pickle dropped and listed. Refused when an encoder tensor STU-Net's layout implies is missing: every
    stage ``0..S`` with blocks ``0..B``, each block ``conv1``/``norm1``/``conv2``/``norm2`` (weight and bias), the
    first block of each stage also its shortcut ``conv3``."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        raise CheckpointFormatError(f"{path} has no 'state_dict' dict; is it an nnU-Net v1 trainer checkpoint "
                                    "(*.model)?", path=path, key="state_dict")
    sd = strip_wrappers(_tensor_dict(obj["state_dict"], f"{path}['state_dict']"))
    blocks: dict[int, set[int]] = {}
    for key in sd:
        if m := _STUNET_ENC.match(key):
            blocks.setdefault(int(m[1]), set()).add(int(m[2]))
    if not blocks:
        hint = " (it looks like an nnU-Net v1 Generic_UNet: use format 'nnunet-v1')" if is_nnunet_v1(sd) else ""
        raise CheckpointFormatError(f"{path}['state_dict'] has no STU-Net encoder keys "
                                    f"(conv_blocks_context.S.B.conv1.weight){hint}", path=path,
                                    key="conv_blocks_context.0.0.conv1.weight")
    for stage in range(max(blocks) + 1):
        for block in range(max(blocks.get(stage, {0})) + 1):
            parts = ("conv1", "norm1", "conv2", "norm2") + (("conv3",) if block == 0 else ())
            for part in parts:
                for leaf in ("weight", "bias"):
                    key = f"conv_blocks_context.{stage}.{block}.{part}.{leaf}"
                    if key not in sd:
                        raise CheckpointFormatError(
                            f"{path}['state_dict'] lacks the encoder tensor {key!r} that STU-Net's layout needs "
                            f"(encoder stages 0..{max(blocks)}); the file is incomplete or not an STU-Net checkpoint",
                            path=path, key=key)
    return Unwrapped(OrderedDict(sd), [k for k in obj if k != "state_dict"])


def _prefixed(obj: Any, path: Path, prefix: str, head: str, what: str, anchor: str) -> Unwrapped:
    """The ``net`` entry of a SuPreM training checkpoint: the keys under ``prefix``, without the ``head`` keys
    (SuPreM's fine-tuning loaders skip the head too); refused when ``anchor`` (an encoder key) is absent."""
    sd, dropped = _unwrap(obj, "net", str(path))
    keep = [k for k in sd if k.startswith(prefix) and not k.startswith(prefix + head)]
    if prefix + anchor not in sd:
        raise CheckpointFormatError(
            f"{path} has no '{prefix}{anchor}' key (the first encoder layer of a {what}); is it the right file? "
            f"Keys found start with: {sorted({k.split('.')[0] for k in sd})[:5]}", path=path, key=prefix + anchor)
    network = OrderedDict((k, sd[k]) for k in keep)
    return Unwrapped(strip_prefix(network, prefix), dropped, [k for k in sd if k not in network])


def _unwrap_suprem_segresnet(obj: Any, path: Path) -> Unwrapped:
    """SuPreM's SegResNet (``train.py``: MONAI ``SegResNet`` in DistributedDataParallel): ``net`` entry,
    ``module.`` stripped, the pretraining head ``conv_final.2`` dropped."""
    return _prefixed(obj, path, "module.", "conv_final.2.", "SuPreM SegResNet", "convInit.conv.weight")


def _unwrap_suprem_swinunetr(obj: Any, path: Path) -> Unwrapped:
    """SuPreM's Swin UNETR universal model: ``net`` entry, its ``module.backbone.`` SwinUNETR (which has no ``out``
    head upstream; one would be dropped); the universal model's other keys (organ embedding, controller) dropped."""
    return _prefixed(obj, path, "module.backbone.", "out.", "SuPreM Swin UNETR",
                     "swinViT.patch_embed.proj.weight")


def _unwrap_monai_bundle(obj: Any, path: Path) -> Unwrapped:
    """A MONAI bundle's ``models/model.pt``: the network's raw state dict (or ``{'model': state_dict}``, which
    MONAI's ``CheckpointLoader`` also reads), ``module.`` / ``_orig_mod.`` stripped."""
    sd, dropped = _unwrap(obj, "model", str(path))
    return Unwrapped(strip_wrappers(sd), dropped)


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
    "nnssl": Converter(_pickled(_unwrap_nnssl), "``network_weights``", "``module.``/``_orig_mod.``",
                       "keys outside ``encoder.``/``decoder.`` (SSL heads) dropped"),
    "stunet-v1": Converter(_pickled(_unwrap_stunet_v1), "``state_dict``", "``module.`` if present",
                           "none; refused when an encoder key is missing"),
    "suprem-segresnet": Converter(_pickled(_unwrap_suprem_segresnet), "``net``", "``module.``",
                                  "``conv_final.2`` head dropped; refused when an encoder key is missing"),
    "suprem-swinunetr": Converter(_pickled(_unwrap_suprem_swinunetr), "``net``", "``module.backbone.``",
                                  "universal-model keys (organ embedding, controller) dropped; refused when an "
                                  "encoder key is missing"),
    "monai-bundle": Converter(_pickled(_unwrap_monai_bundle), "none (or ``model``)", "``module.``/``_orig_mod.``",
                              "none"),
    "voco": Converter(_pickled(_unwrap_voco), "none or ``state_dict``/``network_weights``/``net``/``student``",
                      "``module.``, ``backbone.``",
                      "``student.``/``teacher.`` dropped; refused when an encoder key is missing"),
})


__all__ = ["CONVERTERS", "Converter", "Unwrapped", "load_safetensors", "unwrap_checkpoint"]
