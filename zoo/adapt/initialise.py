"""``zoo.load(name, init=...)``: an entry's network initialised from another entry's checkpoint.

:func:`resolve_init` names the source entry (a registry name, or an abbreviation of the entry's ``base_model``);
:func:`initialise_from` builds the entry's network on the meta device, fills every tensor that has a
counterpart in the source's converted weights through the transfer engine (:func:`zoo.adapt.engine.adapt_model`,
kernels put in the entry's axis order) and gives the rest the network's own initialisation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from torch import nn

from ..archs.build import build_model, meta_device_model
from ..archs.declarations import names_where
from ..convert.cache import load_converted
from ..errors import AdaptationError, UnknownModelError
from ..registry import ModelEntry, get_entry
from ..weights import resolve_weights, show_license_notice
from .engine import adapt_model
from .report import TransferReport


class Initialisation(NamedTuple):
    """What :func:`initialise_from` made: the ``model`` (CPU, training mode, also carrying
    ``model.transfer_report``), the transfer ``report``, the ``source`` entry and its converted ``weights`` file."""

    model: nn.Module
    report: TransferReport
    source: ModelEntry
    weights: Path


def resolve_init(entry: ModelEntry, init: str) -> ModelEntry:
    """The registry entry ``init`` names: a registry name, or an abbreviation of ``entry.base_model`` (its
    leading ``-``-separated words: ``'genesis'`` for ``'genesis-chest-ct-nnunet-lung'``)."""
    if not isinstance(init, str) or not init.strip():
        raise AdaptationError(f"init must be a registry name or an abbreviation of the base model, got {init!r}")
    base = entry.base_model
    if base and (base == init or base.startswith(init.strip().lower() + "-")):
        return get_entry(base)
    try:
        return get_entry(init)
    except UnknownModelError:
        hint = f" (e.g. init={base.split('-')[0]!r} for its base model {base!r})" if base else ""
        raise AdaptationError(
            f"init={init!r} names no registry model and does not abbreviate {entry.name!r}'s base model; give a "
            f"registry name of the nnU-Net U-Net family{hint}"
        ) from None


def check_nnunet_keys(source: ModelEntry) -> None:
    """Refuse a source whose architecture does not store its weights under nnU-Net's state_dict keys (the
    architecture declarations' ``nnunet_keys``), before any weights are fetched."""
    nnunet_archs = names_where(nnunet_keys=True) + names_where(family="stunet")  # STU-Net: into STU-Net plans
    if source.architecture not in nnunet_archs:
        raise AdaptationError(
            f"{source.name!r} is a {source.architecture}; transfer into nnU-Net plans needs a checkpoint with nnU-Net "
            f"state_dict keys ({', '.join(nnunet_archs)}), e.g. 'genesis-chest-ct-nnunet-lung'"
        )


def initialise_from(
    entry: ModelEntry,
    init: str,
    *,
    in_channels: int | None = None,
    num_classes: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    seed: int | None = 0,
    progress: bool = False,
    arch_overrides: Mapping[str, Any] | None = None,
    **options: Any,
) -> Initialisation:
    """``entry``'s network (its registry architecture) with every tensor that has a counterpart filled from
    ``init``'s checkpoint by the transfer engine, the rest with the network's own initialisation.

    Used by ``zoo.load(name, init=...)``. Axis orders come from both entries' input contracts; ``options`` are
    engine options (``channel_mode``, ``kernel_collapse``, ``heads``, ``strict``, ``min_share``...);
    ``checkpoint`` names a local copy of the source's upstream file.
    """
    source = resolve_init(entry, init)
    check_nnunet_keys(source)
    show_license_notice(source)
    path, _ = resolve_weights(source, checkpoint=checkpoint, cache_dir=cache_dir, progress=progress)
    in_ch = in_channels or entry.input.in_channels
    classes = num_classes if num_classes is not None else entry.num_classes
    target = meta_device_model(lambda: build_model(entry, in_ch, classes, **dict(arch_overrides or {})))
    report = adapt_model(
        load_converted(path), target, seed=seed, source_axis_order=source.input.axis_order,
        target_axis_order=entry.input.axis_order, source_name=source.name, target_name=entry.name, **options,
    )
    target.transfer_report = report
    return Initialisation(target, report, source, path)


__all__ = ["Initialisation", "check_nnunet_keys", "initialise_from", "resolve_init"]
