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

from ..adapt.engine import adapt_state_dict
from ..adapt.initialise import check_nnunet_keys
from ..adapt.materialise import load_into
from ..adapt.report import TransferReport
from ..archs.declarations import names_where
from ..registry import ModelEntry
from ..weights import resolve_entry, source_state_dict
from .plans import (
    arch_for_configuration,
    build_from_plan,
    load_dataset_json,
    load_plans,
    plan_axis_order,
)

#: architectures whose state_dict keys follow nnU-Net's (U-Nets, and the self-supervised encoders that store
#: their weights under nnU-Net encoder keys)
UNET_ARCHS = names_where(nnunet_keys=True)


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
    check_nnunet_keys(entry)
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
    if isinstance(plans, (str, os.PathLike)):
        report.options["plans_file"] = os.fspath(plans)  # named in the low-share warning's `zoo plan` command
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
