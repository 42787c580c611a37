"""Pretrained weights into the network of any nnU-Net v2 plan, and a file for ``nnUNetv2_train -pretrained_weights``.

:func:`adapt_to_plan` builds the network a plan configuration describes (exactly the network nnU-Net builds,
with medzoo's DNA-identical classes), fills it from a registry checkpoint through the transfer engine
(:mod:`zoo.adapt.engine`) and returns it with its :class:`~zoo.adapt.report.TransferReport`.

:func:`export_nnunet` writes ``{'network_weights': state_dict, 'medzoo': metadata}`` with every key nnU-Net's
loader demands (``all_modules.*`` and ``decoder.encoder.*`` aliases included, transposed-conv biases, the
segmentation heads at their initialisation), CPU float32 tensors, plain metadata (safe under
``torch.load(weights_only=True)``), written atomically: on any error nothing is written.
Tensors with no counterpart in the checkpoint carry nnU-Net's own initialisation (He normal, zero bias;
residual blocks start as identity), so the file is a complete starting point.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..adapt.engine import adapt_state_dict, load_into
from ..adapt.report import TransferReport
from ..errors import AdaptationError
from ..registry import ModelEntry
from .plans import (
    arch_for_configuration,
    build_from_plan,
    load_dataset_json,
    load_plans,
    plan_axis_order,
)

#: architectures whose state_dict keys follow nnU-Net's (U-Nets, and the self-supervised encoders that store
#: their weights under nnU-Net encoder keys)
UNET_ARCHS = ("plain_conv_unet", "residual_encoder_unet", "nested_unet", "ssl3d_unet_encoder", "nnunet_encoder")


def resolve_entry(model: str | os.PathLike | ModelEntry) -> tuple[ModelEntry, Path | None]:
    """The registry entry of ``model`` (a name, a medzoo model folder, or an entry) and a local weights file."""
    if isinstance(model, ModelEntry):
        return model, None
    from ..model_dir import is_model_dir, read_model_dir
    from ..registry import get_entry

    if is_model_dir(model):
        return read_model_dir(model)
    return get_entry(str(model)), None


def source_state_dict(
    entry: ModelEntry,
    local: Path | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> dict[str, Tensor]:
    """The entry's converted weights (downloaded, verified and converted on first use)."""
    from ..convert.cache import load_converted
    from ..loading import _license_notice, resolve_weights

    _license_notice(entry)
    if local is not None and checkpoint is None:
        return load_converted(local)
    path, _ = resolve_weights(entry, checkpoint=checkpoint, cache_dir=cache_dir, progress=progress)
    return load_converted(path)


def _check_source(entry: ModelEntry) -> None:
    if entry.architecture not in UNET_ARCHS:
        raise AdaptationError(
            f"{entry.name!r} is a {entry.architecture}; transfer into nnU-Net plans needs a checkpoint with nnU-Net "
            f"state_dict keys ({', '.join(UNET_ARCHS)}), e.g. 'genesis-chest-ct-nnunet-lung'"
        )


def adapt_to_plan(
    model: str | os.PathLike | ModelEntry,
    plans: Any,
    configuration: str = "3d_fullres",
    dataset_json: Any = None,
    *,
    in_channels: int | None = None,
    num_classes: int | None = None,
    state_dict: Mapping[str, Tensor] | None = None,
    checkpoint: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    deep_supervision: bool = False,
    seed: int | None = None,
    source_axis_order: str | None = None,
    target_axis_order: str | None = None,
    progress: bool = False,
    **options: Any,
) -> tuple[nn.Module, TransferReport]:
    """The network of ``plans`` / ``configuration`` initialised from ``model``'s pretrained weights.

    Args:
        model: registry name (``'genesis-chest-ct-nnunet-lung'``), model folder, or entry.
        plans, dataset_json: paths or dicts. dataset.json gives the input channels (+ foreground labels for a
            cascade stage) and the output channels; ``in_channels`` / ``num_classes`` override it.
        state_dict: use these weights instead of the registry's (canonical medzoo/nnU-Net keys).
        source_axis_order / target_axis_order: default to the registry's ``InputContract.axis_order`` and the
            plan's axis order (``transpose_forward`` applied to z, y, x).
        seed: seed of the fresh initialisation of the tensors the checkpoint cannot fill.
        options: engine options of :func:`zoo.adapt.adapt_state_dict` (``channel_mode``, ``kernel_collapse``,
            ``kernel_inflate``, ``widths``, ``heads``, ``cross_architecture``, ``strict``, ``min_share``).

    Returns:
        ``(network, report)``; the network (training mode, CPU) also carries ``network.transfer_report``.
    """
    plans_dict = load_plans(plans)
    spec = arch_for_configuration(plans_dict, configuration, dataset_json,
                                  in_channels=in_channels, num_classes=num_classes)
    entry, local = resolve_entry(model)
    _check_source(entry)
    dims = 3 if str(spec.arch_kwargs["conv_op"]).endswith("3d") else 2
    src_order = source_axis_order if source_axis_order is not None else entry.input.axis_order
    tgt_order = target_axis_order if target_axis_order is not None else plan_axis_order(plans_dict, dims)
    widths = options.get("widths", "skip")
    target = build_from_plan(spec, device=None if widths == "slice" else "meta", deep_supervision=deep_supervision)
    if state_dict is None:
        state_dict = source_state_dict(entry, local, checkpoint=checkpoint, cache_dir=cache_dir, progress=progress)
    target_name = " ".join(str(x) for x in (plans_dict.get("dataset_name"), plans_dict.get("plans_name"),
                                           configuration) if x)
    tensors, report = adapt_state_dict(
        state_dict, target, source_axis_order=src_order, target_axis_order=tgt_order,
        source_name=entry.name, target_name=target_name, **options,
    )
    report.options.update(configuration=configuration, in_channels=spec.in_channels, num_classes=spec.num_classes,
                          architecture=spec.arch)
    load_into(target, tensors, seed=seed)
    target.transfer_report = report
    target.pretrained_cfg = entry
    return target, report


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_nnunet` wrote."""

    path: Path
    report: TransferReport
    keys: int
    bytes: int


def nnunet_state_dict(network: nn.Module) -> "dict[str, Tensor]":
    """Every state-dict key of ``network`` (aliases included, sharing one tensor each), CPU float32,
    contiguous, each tensor owning exactly its storage."""
    from ..state_dict import alias_groups

    sd = network.state_dict()
    prepared: dict[str, Tensor] = {}
    for group in alias_groups(network):
        t = sd[group[0]].detach().to("cpu")
        if t.is_floating_point():
            t = t.to(torch.float32)
        if not t.is_contiguous() or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone(memory_format=torch.contiguous_format)
        for name in group:
            prepared[name] = t
    return {k: prepared[k] for k in sd}


def export_nnunet(
    model: str | os.PathLike | ModelEntry,
    plans: Any,
    dataset_json: Any,
    configuration: str = "3d_fullres",
    output: str | os.PathLike = "pretrained.pth",
    *,
    report_path: str | os.PathLike | None = None,
    seed: int | None = 0,
    **kwargs: Any,
) -> ExportResult:
    """Write ``output`` for ``nnUNetv2_train DATASET CONFIG FOLD -p PLANS -pretrained_weights output``.

    ``kwargs`` go to :func:`adapt_to_plan` (``state_dict``, ``checkpoint``, ``cache_dir``, engine options,
    ``strict``, ``min_share``...). Plans, dataset.json and the transfer are all checked before anything is
    written; the file appears atomically. ``report_path`` also writes the transfer report as JSON.
    """
    plans_dict = load_plans(plans)
    ds = load_dataset_json(dataset_json) if dataset_json is not None else None
    network, report = adapt_to_plan(model, plans_dict, configuration, ds, seed=seed, **kwargs)
    weights = nnunet_state_dict(network)
    entry = network.pretrained_cfg
    from .._version import __version__

    meta = {
        "model": entry.name,
        "medzoo_version": __version__,
        "license": entry.license.display,
        "dataset_name": str(plans_dict.get("dataset_name", "")),
        "plans_name": str(plans_dict.get("plans_name", "")),
        "configuration": configuration,
        "in_channels": int(report.options["in_channels"]),
        "num_classes": int(report.options["num_classes"]),
        "source_axis_order": report.options.get("source_axis_order"),
        "target_axis_order": report.options.get("target_axis_order"),
        "share_initialised": float(report.share_initialised),
        "share_used": float(report.share_used),
    }
    from ..hub.integrity import atomic_path

    output = Path(output)
    with atomic_path(output) as tmp:
        torch.save({"network_weights": weights, "medzoo": meta}, tmp)
    if report_path is not None:
        report.to_json(report_path)
    n_bytes = sum(t.numel() * t.element_size() for t in {id(t): t for t in weights.values()}.values())
    return ExportResult(output, report, len(weights), n_bytes)


def resolve_init(entry: ModelEntry, init: str) -> ModelEntry:
    """The registry entry ``init`` names: a registry name, or an abbreviation of ``entry.base_model`` (its
    leading ``-``-separated words: ``'genesis'`` for ``'genesis-chest-ct-nnunet-lung'``)."""
    from ..errors import UnknownModelError
    from ..registry import get_entry

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
) -> tuple[nn.Module, TransferReport, ModelEntry, Path]:
    """``entry``'s network (its registry architecture) with every tensor that has a counterpart filled from
    ``init``'s checkpoint by the transfer engine, the rest with the network's own initialisation.

    Used by ``zoo.load(name, init=...)``. Axis orders come from both entries' input contracts; ``options`` are
    engine options (``channel_mode``, ``kernel_collapse``, ``heads``, ``strict``, ``min_share``...). Returns
    ``(network, report, source entry, converted weights file)``.
    """
    from ..convert.cache import load_converted
    from ..loading import _license_notice, build_model, resolve_weights

    source = resolve_init(entry, init)
    _check_source(source)
    _license_notice(source)
    path, _ = resolve_weights(source, checkpoint=checkpoint, cache_dir=cache_dir, progress=progress)
    in_ch = in_channels or entry.input.in_channels
    classes = num_classes if num_classes is not None else entry.num_classes
    with torch.device("meta"):
        target = build_model(entry, in_ch, classes, **dict(arch_overrides or {}))
    tensors, report = adapt_state_dict(
        load_converted(path), target, source_axis_order=source.input.axis_order,
        target_axis_order=entry.input.axis_order, source_name=source.name, target_name=entry.name, **options,
    )
    load_into(target, tensors, seed=seed)
    target.transfer_report = report
    return target, report, source, path
