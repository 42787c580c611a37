"""``zoo.load``: one name, one call, the upstream network with its verified weights.

First use downloads the upstream file (pinned revision, sha256 checked), converts it once into a
safetensors file in the local cache (atomically, under a lock); every later load builds the network on
the meta device (no random initialisation) and assigns tensors memory-mapped from that file. An entry with a
hosted medzoo copy loads that safetensors file instead (no pickle code), and the upstream file when the copy
cannot be downloaded.

Names: a registry name, a model folder (``config.json`` + ``model.safetensors``), or ``"hf-hub:ORG/NAME"`` /
``"hf-hub:ORG/NAME@REVISION"``: a medzoo model folder published on the Hugging Face Hub (:mod:`zoo.hub.repo`).
Anything else with a ``/`` is refused: a path that is not a folder never silently becomes a Hub download.

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
from .errors import AdaptationError, UnknownModelError, ZooError
from .hub.repo import HUB_PREFIX, fetch_hub_model, hub_entry, is_hub_name, parse_hub_name
from .model_dir import read_model_dir
from .options import ChannelMode, InvalidAdaptationOption, VerifyMode, check_option
from . import registry
from .registry import ModelEntry
from .weights import WeightsPreference, locate_weights, show_license_notice


@dataclass
class LoadReport:
    """What ``zoo.load`` did: where the weights came from and every change made to fit the request."""

    name: str
    weights: str | None
    verified_by: str
    adaptations: list[str] = field(default_factory=list)
    new_modules: list[str] = field(default_factory=list)
    #: which copy the weights came from: "hosted medzoo copy ORG/NAME/model.safetensors@REV", "upstream file
    #: ...", "hf-hub:ORG/NAME@COMMIT", "model folder PATH", "local checkpoint file", ... ("" without weights)
    source: str = ""
    #: why the entry's hosted copy was not used (it could not be downloaded), else None
    fallback: str | None = None
    #: the builder arguments given to zoo.load beyond the entry's (``features_only=True``, ...)
    arch_overrides: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.name}: weights {self.weights or 'none (random init)'} ({self.verified_by})"]
        if self.source:
            lines.append(f"  from: {self.source}")
        lines += [f"  adapted: {a}" for a in self.adaptations]
        lines += [f"  newly initialised: {m}" for m in self.new_modules]
        return "\n".join(lines)


def _check_positive(value: int | None, what: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AdaptationError(f"{what} must be a positive integer, got {value!r}")


def entry_for_name(
    name: str,
    revision: str | None,
    sha256: str | None,
    *,
    weights: bool,
    cache_dir: str | os.PathLike | None,
    force_download: bool,
    progress: bool,
) -> tuple[ModelEntry, Path | None, str, str]:
    """The entry for ``name`` (a registry name, a model folder or ``hf-hub:ORG/NAME[@REV]``), and a weights file
    the name brings: its path, where it came from and how it was verified (None and empty strings for a registry
    name, or without ``weights``). A name with ``/`` that is not a folder raises :class:`UnknownModelError`."""
    if is_hub_name(name):
        ref = parse_hub_name(name, revision)
        folder = fetch_hub_model(ref, sha256=sha256, weights=weights, cache_dir=cache_dir,
                                 force_download=force_download, progress=progress)
        got = folder.weights
        return (hub_entry(folder), got.path if got is not None else None, folder.label,
                got.verified_by if got is not None else "")
    if revision is not None or sha256 is not None:
        raise ZooError(f"revision= and sha256= pin a Hub repo's files: they apply to {HUB_PREFIX}ORG/NAME names "
                       f"only, not to {name!r} (a registry entry pins its own revision and sha256)")
    if os.path.isdir(name):
        entry, path = read_model_dir(name)
        return entry, path, f"model folder {Path(name).resolve()}", "local model folder"
    if "/" in name or os.sep in name:
        raise UnknownModelError(
            f"{name!r} is neither a registry name nor a model folder (no such folder). For a model published on "
            f"the Hugging Face Hub write {HUB_PREFIX}{name}; for a local folder give its path",
            name=name,
        )
    return registry.get_entry(name), None, "", ""  # through the module: `zoo info` tests replace it there


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
    revision: str | None = None,
    sha256: str | None = None,
    prefer: WeightsPreference = "hosted",
    **arch_overrides: Any,
) -> nn.Module:
    """Build registry model ``name`` (or a model folder, or a Hub repo) and load its pretrained weights.

    Args:
        name: a registry name (``zoo.list_models()``), a folder with ``config.json`` + ``model.safetensors``
            (what :func:`zoo.save` writes), or ``"hf-hub:ORG/NAME"`` / ``"hf-hub:ORG/NAME@REVISION"``: such a
            folder published on the Hugging Face Hub, downloaded into ``<cache_dir>/hub`` and verified
            (``model.safetensors`` against ``sha256`` or the Hub's LFS sha256). Its ``config.json`` is checked as
            a local folder's: only allow-listed classes, bounded sizes.
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
        revision: for ``hf-hub:`` names, a branch, tag or commit of the repo (or ``@REVISION`` in the name).
        sha256: for ``hf-hub:`` names, the sha256 that ``model.safetensors`` must have (64 hex digits).
        prefer: ``"hosted"`` (default) loads an entry's hosted medzoo copy when it has one, and the upstream file
            when that copy cannot be downloaded; ``"upstream"`` always converts the upstream file.
        arch_overrides: extra builder arguments (for example ``features_only=True`` for ResNets).

    Returns:
        The ``nn.Module`` in training mode, with ``model.pretrained_cfg`` (the registry entry) and
        ``model.load_report`` (a :class:`LoadReport`; ``source`` says which copy of the weights was used).
        Inputs are ``(N, C, a0, a1, a2)`` in the entry's axis order (``pretrained_cfg.input.axis_order``).
    """
    _check_positive(in_channels, "in_channels")
    _check_positive(num_classes, "num_classes")
    check_option("channel_mode", channel_mode, ChannelMode, error=InvalidAdaptationOption)
    check_option("verify", verify, VerifyMode)
    check_option("prefer", prefer, WeightsPreference)
    want_weights = pretrained and init is None and checkpoint is None
    entry, weights_path, origin, verified_by = entry_for_name(
        os.fspath(name), revision, sha256, weights=want_weights, cache_dir=cache_dir, force_download=force_download,
        progress=progress,
    )
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
        fallback = None
        if weights_path is None or checkpoint is not None:
            found = locate_weights(
                entry, checkpoint=checkpoint, checkpoint_format=checkpoint_format, cache_dir=cache_dir,
                mirror=mirror, force_download=force_download, verify=verify, progress=progress, prefer=prefer,
            )
            weights_path, verified_by, origin, fallback = found.path, found.verified_by, found.describe, found.fallback
        report = LoadReport(entry.name, str(weights_path), verified_by, source=origin, fallback=fallback)
        model = meta_device_model(lambda: build_model(entry, in_ch, classes, **arch_overrides))
        fitted = fit_state_dict(OrderedDict(_read_weights(weights_path, os.fspath(name))), model, entry, in_ch, classes,
                                channel_mode)
        report.adaptations.extend(fitted.adaptations)
        model.load_state_dict(fitted.tensors, strict=False, assign=True)
        report.new_modules.extend(materialise_meta_tensors(model))
    report.arch_overrides = dict(arch_overrides)
    model.pretrained_cfg = entry
    model.load_report = report
    if device is not None:
        model = model.to(device)
    return model


def _read_weights(path: Path, name: str) -> "dict[str, torch.Tensor]":
    """The tensors of a safetensors file; a downloaded one (``hf-hub:``) has its header checked first."""
    if is_hub_name(name):
        from .convert.formats import load_safetensors

        return load_safetensors(path)
    return load_converted(path)
