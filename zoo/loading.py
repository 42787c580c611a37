"""``zoo.load``: one name, one call, the upstream network with its verified weights.

First use downloads the upstream file (pinned revision, sha256 checked), converts it once into a
safetensors file in the local cache (atomically, under a lock); every later load builds the network on
the meta device (no random initialisation) and assigns tensors memory-mapped from that file.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .adapt.channels import CHANNEL_MODES, adapt_input_channels
from .archs import build_architecture, get_builder
from .convert.cache import (
    ConvertedCheckpoint,
    cached_conversion,
    convert_into_cache,
    converted_dir,
    load_converted,
    meta_device_model,
    remembered_sha256,
    source_key_for,
)
from .errors import AdaptationError, CheckpointFormatError, WeightsNotAvailableError
from .hub.download import fetch_checkpoint
from .hub.integrity import verify_file
from .model_dir import read_model_dir
from .registry import ModelEntry, get_entry
from .state_dict import expand_aliases


class LicenseWarning(UserWarning):
    """Shown once per model and process when weights come with restrictive terms."""


@dataclass
class LoadReport:
    """What ``zoo.load`` did: where the weights came from and every change made to fit the request."""

    name: str
    weights: str | None
    verified_by: str
    adaptations: list[str] = field(default_factory=list)
    new_modules: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.name}: weights {self.weights or 'none (random init)'} ({self.verified_by})"]
        lines += [f"  adapted: {a}" for a in self.adaptations]
        lines += [f"  newly initialised: {m}" for m in self.new_modules]
        return "\n".join(lines)


_WARNED: set[str] = set()


def _license_notice(entry: ModelEntry) -> None:
    if entry.license.notice and entry.name not in _WARNED:
        _WARNED.add(entry.name)
        warnings.warn(f"{entry.name}: {entry.license.notice}", LicenseWarning, stacklevel=3)


def _check_positive(value: int | None, what: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AdaptationError(f"{what} must be a positive integer, got {value!r}")


def _builder_kwargs(entry: ModelEntry, in_channels: int, num_classes: int | None, overrides: dict) -> dict:
    kwargs = entry.build_kwargs()
    kwargs.update(overrides)
    kwargs["in_channels"] = in_channels
    kwargs["num_classes"] = num_classes  # None: a head-less backbone
    if num_classes is not None and num_classes != entry.num_classes and "out_activation" not in overrides \
            and "out_activation" in inspect.signature(get_builder(entry.architecture)).parameters:
        kwargs["out_activation"] = None  # a new task head gives logits: the fine-tuning loss applies the activation
    return kwargs


def build_model(entry: ModelEntry, in_channels: int | None = None, num_classes: int | None = None, **overrides: Any) -> nn.Module:
    """Build ``entry``'s architecture with ordinary random initialisation (no weights)."""
    in_ch = in_channels or entry.input.in_channels
    classes = num_classes if num_classes is not None else entry.num_classes
    return build_architecture(entry.architecture, **_builder_kwargs(entry, in_ch, classes, overrides))


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def resolve_weights(
    entry: ModelEntry,
    *,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_format: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    force_download: bool = False,
    verify: Any = "auto",
    progress: bool = True,
) -> tuple[Path, str]:
    """Path of a verified safetensors file with ``entry``'s weights in medzoo's layout, and how it was checked.

    Downloads and converts on first use; later calls return the cached conversion without network access.
    """
    def reference() -> nn.Module:
        return meta_device_model(lambda: build_model(entry))

    if checkpoint is not None:
        return _user_checkpoint(entry, Path(checkpoint), checkpoint_format, reference, cache_dir, verify, progress)
    src = entry.source
    if src is None:
        raise WeightsNotAvailableError(
            f"{entry.name!r} has no published weights"
            f"{': ' + entry.weights_note.rstrip('.') if entry.weights_note else ''}. "
            "Use pretrained=False, or pass checkpoint='/path/to/weights' if you trained them yourself."
        )
    if src.package_file:
        fetched = fetch_checkpoint(src, name=entry.name)
        return fetched.path, fetched.verified_by
    key = source_key_for(entry)
    directory = converted_dir(entry.name, key, cache_dir)
    if not force_download:
        cached = cached_conversion(directory, verify)
        if cached is not None:
            return cached.path, _verified_by(cached)
    fetched = fetch_checkpoint(
        src, name=entry.name, cache_dir=cache_dir, mirror=mirror, force_download=force_download, progress=progress
    )
    provenance = {
        "source": {"repo_id": src.repo_id, "filename": src.filename, "revision": src.revision, "origin": fetched.origin},
        "source_sha256": fetched.sha256,
        "verified_by": fetched.verified_by,
    }
    converted = convert_into_cache(
        directory, fetched.path, entry=entry, fmt=src.format, reference=reference,
        provenance=provenance, verify=verify, progress=progress, replace=force_download,
    )
    return converted.path, _verified_by(converted)


def _verified_by(converted: ConvertedCheckpoint) -> str:
    """How the weights were checked: the source's verification when converted now, else the cache's record."""
    how = str(converted.meta.get("verified_by", "verified source"))
    return how if converted.fresh else f"cached conversion of {how}"


def _user_checkpoint(
    entry: ModelEntry,
    path: Path,
    fmt: str | None,
    reference: Callable[[], nn.Module],
    cache_dir: str | os.PathLike | None,
    verify: Any,
    progress: bool,
) -> tuple[Path, str]:
    if not path.is_file():
        raise WeightsNotAvailableError(f"checkpoint file {path} does not exist")
    if path.suffix == ".safetensors" and fmt is None:
        fmt = _safetensors_format(entry, path)
    fmt = fmt or (entry.source.format if entry.source else "safetensors")
    digest = remembered_sha256(path, cache_dir, progress=progress, verify=verify)
    src = entry.source
    if src is not None and src.sha256 and src.filename == path.name and digest != src.sha256:
        verify_file(path, sha256=src.sha256, what=f"checkpoint {path.name} of {entry.name!r}")
    verified = "registry sha256" if src is not None and digest == src.sha256 else "user-supplied file (sha256 recorded)"
    directory = converted_dir(entry.name, f"file-{digest[:16]}", cache_dir)
    provenance = {"source": {"path": str(path.resolve())}, "source_sha256": digest, "verified_by": verified}
    converted = convert_into_cache(
        directory, path, entry=entry, fmt=fmt, reference=reference, provenance=provenance,
        verify=verify, progress=progress,
    )
    return converted.path, verified


def _safetensors_format(entry: ModelEntry, path: Path) -> str:
    """``'timm'`` for a 2D timm file given to an entry converted from timm (its stem kernel is 4-D), else
    ``'safetensors'`` (medzoo's own layout: a converted file, or weights trained with ``export/``)."""
    if entry.source is None or entry.source.format != "timm":
        return "safetensors"
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            stem = f.get_slice("conv1.weight").get_shape() if "conv1.weight" in f.keys() else None
    except Exception:  # not readable: let the converter name the problem
        return "safetensors"
    return "timm" if stem is not None and len(stem) == 4 else "safetensors"


def _fit_state_dict(
    sd: "OrderedDict[str, Tensor]",
    model: nn.Module,
    entry: ModelEntry,
    in_channels: int,
    num_classes: int | None,
    channel_mode: str,
    report: LoadReport,
) -> "OrderedDict[str, Tensor]":
    """Adapt first-conv channels and drop a replaced head; everything else must fit exactly."""
    for key in entry.first_conv:
        if key in sd and sd[key].dim() >= 3 and sd[key].shape[1] != in_channels:
            before = tuple(sd[key].shape)
            sd[key] = adapt_input_channels(sd[key], in_channels, channel_mode)
            report.adaptations.append(f"{key}: {before} -> {tuple(sd[key].shape)} ({channel_mode})")
    if num_classes != entry.num_classes:
        dropped = [k for k in sd if _under(k, entry.classifier)]
        for k in dropped:
            del sd[k]
        if dropped:
            report.adaptations.append(
                f"pretrained head dropped ({len(dropped)} tensors under {', '.join(entry.classifier)}): "
                f"{entry.num_classes} -> {num_classes} classes"
            )
    full = expand_aliases(sd, model)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    unexpected = [k for k in full if k not in shapes]
    if unexpected:
        raise AdaptationError(
            f"{entry.name}: the weights have tensors the built network lacks (e.g. {unexpected[:4]}); "
            "an architecture override removed layers the checkpoint has"
        )
    mismatched = [(k, tuple(full[k].shape), shapes[k]) for k in full if tuple(full[k].shape) != shapes[k]]
    if mismatched:
        k, got, want = mismatched[0]
        raise AdaptationError(
            f"{entry.name}: {len(mismatched)} tensors do not fit, e.g. {k} is {got} in the weights but {want} in the "
            "network built with these arguments; only in_channels and num_classes are adapted by zoo.load. "
            "Use zoo.adapt for other changes, or pretrained=False."
        )
    missing = [k for k in shapes if k not in full]
    outside_head = [k for k in missing if not _under(k, entry.classifier)]
    if outside_head:
        raise AdaptationError(
            f"{entry.name}: {len(outside_head)} network tensors have no pretrained value (e.g. {outside_head[:4]}); "
            "refusing a partial load. Use zoo.adapt for a reported partial transfer."
        )
    return _match_dtypes(full, model, entry, report)


def _match_dtypes(
    sd: "OrderedDict[str, Tensor]", model: nn.Module, entry: ModelEntry, report: LoadReport
) -> "OrderedDict[str, Tensor]":
    """Check dtypes like shapes: floating weights are cast to the network's floating dtype (one report line per
    dtype pair), integer buffers to the network's integer dtype; a floating tensor given as integers (or the
    reverse, or a bool/complex tensor) is refused, since a cast would silently change its values."""
    wanted = {k: v.dtype for k, v in model.state_dict(keep_vars=True).items()}
    casts: dict[tuple[torch.dtype, torch.dtype], int] = {}
    for key, value in sd.items():
        want = wanted[key]
        if value.dtype == want:
            continue
        same_kind = (value.is_floating_point() and want.is_floating_point) or (
            _is_integer(value.dtype) and _is_integer(want)
        )
        if not same_kind:
            raise CheckpointFormatError(
                f"{entry.name}: tensor {key!r} is {value.dtype} in the weights but the network expects {want}; "
                "the file does not hold this model's weights (re-export them from the model that trained them)"
            )
        sd[key] = value.to(want)
        casts[(value.dtype, want)] = casts.get((value.dtype, want), 0) + 1
    for (src, dst), count in casts.items():
        report.adaptations.append(f"{count} tensors cast {src} -> {dst}")
    return sd


def _is_integer(dtype: torch.dtype) -> bool:
    return not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool


def _materialize_new_modules(model: nn.Module, report: LoadReport) -> None:
    """Give modules whose tensors are still on the meta device (a new head) real storage and fresh init."""
    initialize = getattr(model, "initialize", None)
    for name, module in model.named_modules():
        tensors = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
        if not any(t.is_meta for t in tensors):
            continue
        module.to_empty(device="cpu", recurse=False)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if callable(initialize):
            initialize(module)
        report.new_modules.append(name)


def load(
    name: str,
    pretrained: bool = True,
    in_channels: int | None = None,
    num_classes: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    channel_mode: str = "repeat_scale",
    checkpoint_format: str | None = None,
    mirror: str | os.PathLike | None = None,
    force_download: bool = False,
    verify: Any = "auto",
    progress: bool = True,
    device: str | torch.device | None = None,
    init: str | None = None,
    **arch_overrides: Any,
) -> nn.Module:
    """Build registry model ``name`` (or a model folder path) and load its pretrained weights.

    Args:
        name: a registry name (``zoo.list_models()``) or a folder with ``config.json`` + ``model.safetensors``.
        pretrained: load the weights (default); ``False`` returns the randomly initialised network.
        in_channels: input channels; the first convolution is adapted with ``channel_mode``
            (default ``repeat_scale``: k identical channels reproduce the 1-channel response).
        num_classes: size of a new task head (the pretrained head is dropped and re-initialised).
        checkpoint: a local upstream file (legacy pickle or safetensors) to use instead of downloading.
        cache_dir: one folder for downloads (``<cache_dir>/hub``) and conversions (default ``$ZOO_CACHE``).
        verify: re-hash the cached conversion ``"auto"`` (when its size/mtime changed), ``True``, ``False``.
        device: move the model there after loading.
        init: initialise from another checkpoint instead of ``name``'s own weights: a registry name of the nnU-Net
            U-Net family, or an abbreviation of the entry's ``base_model`` (``zoo.load("unetpp-liver",
            init="genesis")``). Every tensor with a counterpart is transferred by :mod:`zoo.adapt` (kernels put in
            this entry's axis order); the rest keeps the network's own initialisation. ``checkpoint`` then
            names a local copy of that source's upstream file; ``model.transfer_report`` lists every tensor.
        arch_overrides: extra builder arguments (for example ``features_only=True`` for ResNets).

    Returns:
        The ``nn.Module`` in training mode, with ``model.pretrained_cfg`` (the registry entry) and
        ``model.load_report`` (a :class:`LoadReport`).
    """
    _check_positive(in_channels, "in_channels")
    _check_positive(num_classes, "num_classes")
    if channel_mode not in CHANNEL_MODES:
        raise AdaptationError(f"unknown channel_mode {channel_mode!r}; choose one of {CHANNEL_MODES}")
    weights_path: Path | None = None
    if os.path.isdir(name):
        entry, weights_path = read_model_dir(name)
    else:
        entry = get_entry(name)
    in_ch = in_channels or entry.input.in_channels
    classes = num_classes if num_classes is not None else entry.num_classes

    if init is not None:
        from .nnunet.export import initialise_from

        model, transfer, source, path = initialise_from(
            entry, init, in_channels=in_ch, num_classes=classes, checkpoint=checkpoint, cache_dir=cache_dir,
            progress=progress, channel_mode=channel_mode, arch_overrides=arch_overrides,
        )
        report = LoadReport(entry.name, str(path), f"initialised from {source.name} by zoo.adapt",
                            adaptations=[transfer.summary()])
    elif not pretrained and checkpoint is None:
        model = build_model(entry, in_ch, classes, **arch_overrides)
        report = LoadReport(entry.name, None, "no weights requested")
    else:
        _license_notice(entry)
        if weights_path is not None and checkpoint is None:
            verified_by = "local model folder"
        else:
            weights_path, verified_by = resolve_weights(
                entry, checkpoint=checkpoint, checkpoint_format=checkpoint_format, cache_dir=cache_dir,
                mirror=mirror, force_download=force_download, verify=verify, progress=progress,
            )
        report = LoadReport(entry.name, str(weights_path), verified_by)
        model = meta_device_model(lambda: build_model(entry, in_ch, classes, **arch_overrides))
        sd = OrderedDict(load_converted(weights_path))
        full = _fit_state_dict(sd, model, entry, in_ch, classes, channel_mode, report)
        model.load_state_dict(full, strict=False, assign=True)
        _materialize_new_modules(model, report)
    model.pretrained_cfg = entry
    model.load_report = report
    if device is not None:
        model = model.to(device)
    return model
