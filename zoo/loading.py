"""``zoo.load``: one name, one call, the upstream network with its verified weights.

First use downloads the upstream file (pinned revision, sha256 checked), converts it once into a
safetensors file in the local cache (atomically, under a lock); every later load builds the network on
the meta device (no random initialisation) and assigns tensors memory-mapped from that file.

:func:`load` composes the steps, which live elsewhere: building (:mod:`zoo.archs.build`), weights
(:mod:`zoo.weights`), fitting them to the network (:mod:`zoo.adapt.fit`), real storage for new layers
(:mod:`zoo.adapt.materialise`), and ``init=`` (:mod:`zoo.adapt.initialise`). :class:`LoadReport` says what
was done.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .adapt.fit import fit_state_dict
from .adapt.materialise import materialise_meta_tensors
from .archs.build import build_model, meta_device_model
from .convert.cache import load_converted
from .errors import AdaptationError
from .model_dir import read_model_dir
from .options import ChannelMode, InvalidAdaptationOption, VerifyMode, check_option
from .registry import get_entry
from .weights import resolve_weights, show_license_notice


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


def _check_positive(value: int | None, what: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AdaptationError(f"{what} must be a positive integer, got {value!r}")


def load(
    name: str,
    pretrained: bool = True,
    in_channels: int | None = None,
    num_classes: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    channel_mode: ChannelMode = "repeat_scale",
    checkpoint_format: str | None = None,
    mirror: str | os.PathLike | None = None,
    force_download: bool = False,
    verify: VerifyMode = "auto",
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
        verify: re-hash the cached conversion (and a ``checkpoint=`` file): ``"auto"`` when its size, mtime,
            ctime or inode changed since it was verified, ``True`` always, ``False`` never.
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
    check_option("channel_mode", channel_mode, ChannelMode, error=InvalidAdaptationOption)
    check_option("verify", verify, VerifyMode)
    weights_path: Path | None = None
    if os.path.isdir(name):
        entry, weights_path = read_model_dir(name)
    else:
        entry = get_entry(name)
    in_ch = in_channels or entry.input.in_channels
    classes = num_classes if num_classes is not None else entry.num_classes

    if init is not None:
        from .adapt.initialise import initialise_from

        done = initialise_from(
            entry, init, in_channels=in_ch, num_classes=classes, checkpoint=checkpoint, cache_dir=cache_dir,
            progress=progress, channel_mode=channel_mode, arch_overrides=arch_overrides,
        )
        model = done.model
        report = LoadReport(entry.name, str(done.weights), f"initialised from {done.source.name} by zoo.adapt",
                            adaptations=[done.report.summary()])
    elif not pretrained and checkpoint is None:
        model = build_model(entry, in_ch, classes, **arch_overrides)
        report = LoadReport(entry.name, None, "no weights requested")
    else:
        show_license_notice(entry)
        if weights_path is not None and checkpoint is None:
            verified_by = "local model folder"
        else:
            weights_path, verified_by = resolve_weights(
                entry, checkpoint=checkpoint, checkpoint_format=checkpoint_format, cache_dir=cache_dir,
                mirror=mirror, force_download=force_download, verify=verify, progress=progress,
            )
        report = LoadReport(entry.name, str(weights_path), verified_by)
        model = meta_device_model(lambda: build_model(entry, in_ch, classes, **arch_overrides))
        fitted = fit_state_dict(OrderedDict(load_converted(weights_path)), model, entry, in_ch, classes, channel_mode)
        report.adaptations.extend(fitted.adaptations)
        model.load_state_dict(fitted.tensors, strict=False, assign=True)
        report.new_modules.extend(materialise_meta_tensors(model))
    model.pretrained_cfg = entry
    model.load_report = report
    if device is not None:
        model = model.to(device)
    return model
