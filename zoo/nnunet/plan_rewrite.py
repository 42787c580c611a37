"""The reverse of adaptation: rewrite a plan configuration to the checkpoint's topology.

``rewrite_plan(model, plans)`` replaces the ``architecture`` of one configuration with the checkpoint's
(network class, stages, widths, kernel sizes, strides, convolutions per stage), expressed in the plan's axis
order (a Models Genesis ``xyz`` checkpoint's ``[1, 2, 2]`` stride becomes ``[2, 2, 1]`` in nnU-Net's ``zyx``),
and rounds the patch size to the nearest multiple of the new total strides per axis. Everything that concerns
the data stays: spacing, normalisation, resampling, batch size, ``data_identifier`` (so the preprocessed data
is reused) and the other configurations. nnU-Net loads the result with ``-p <plans name>``, and transfer from
the checkpoint is then complete (every tensor but the segmentation heads copied).
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

from .plans import (
    DNA_CLASSES,
    LEGACY_KEYS,
    PlanError,
    arch_for_configuration,
    load_plans,
    plan_axis_order,
    resolve_configuration,
)


def _permute(values: list, perm: list[int]) -> list:
    return [[int(v[p]) for p in perm] if isinstance(v, list) else v for v in values]


def _round_to_multiple(size: int, step: int) -> int:
    return max(step, math.floor(size / step + 0.5) * step)  # nearest multiple, ties up


def rewrite_plan(
    model: Any,
    plans: Any,
    configuration: str = "3d_fullres",
    *,
    output: str | os.PathLike | None = None,
    plans_name: str | None = None,
    source_axis_order: str | None = None,
    target_axis_order: str | None = None,
) -> dict:
    """Plans with ``configuration``'s architecture replaced by ``model``'s topology (see module docstring).

    ``plans_name`` sets the plans' ``plans_name`` (default: the stem of ``output``, else unchanged). The result
    is validated before ``output`` is written (atomically). Returns the new plans dict.
    """
    from .export import _check_source, resolve_entry

    entry, _ = resolve_entry(model)
    _check_source(entry)
    new = load_plans(plans)
    conf = resolve_configuration(new, configuration)
    patch = conf.get("patch_size")
    if not isinstance(patch, list) or not all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in patch):
        raise PlanError(f"configuration {configuration!r}: patch_size must be a list of positive integers, got {patch!r}")
    kwargs = entry.build_kwargs()
    dims = 3 if str(kwargs.get("conv_op", "")).endswith("3d") else 2
    if len(patch) != dims:
        raise PlanError(f"configuration {configuration!r} is {len(patch)}D (patch_size {patch}) but {entry.name!r} is a "
                        f"{dims}D network; choose a {dims}D configuration (e.g. 3d_fullres)")
    src = source_axis_order or entry.input.axis_order
    tgt = target_axis_order or plan_axis_order(new, dims)
    if sorted(src) != sorted(tgt):
        raise PlanError(f"axis orders {src!r} (checkpoint) and {tgt!r} (plan) do not name the same axes")
    perm = [src.index(letter) for letter in tgt]
    n = int(kwargs["n_stages"])
    kernels = kwargs["kernel_sizes"] if isinstance(kwargs["kernel_sizes"], list) else [kwargs["kernel_sizes"]] * n
    strides = kwargs["strides"] if isinstance(kwargs["strides"], list) else [kwargs["strides"]] * n
    kernels = [[k] * dims if isinstance(k, int) else list(k) for k in kernels]
    strides = [[s] * dims if isinstance(s, int) else list(s) for s in strides]
    kwargs["kernel_sizes"] = _permute(kernels, perm)
    kwargs["strides"] = _permute(strides, perm)
    total = [1] * dims
    for s in kwargs["strides"]:
        total = [t * v for t, v in zip(total, s)]
    new_patch = [_round_to_multiple(p, t) for p, t in zip(patch, total)]

    target_conf = new["configurations"][configuration]
    for key in LEGACY_KEYS:
        target_conf.pop(key, None)
    target_conf["patch_size"] = new_patch
    target_conf["architecture"] = {
        "network_class_name": DNA_CLASSES[entry.architecture],
        "arch_kwargs": kwargs,
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    if plans_name is None and output is not None:
        plans_name = Path(output).stem
    if plans_name:
        new["plans_name"] = plans_name
    new["medzoo_pretrained"] = {
        "model": entry.name,
        "configuration": configuration,
        "checkpoint_axis_order": src,
        "plan_axis_order": tgt,
        "patch_size_before": list(patch),
        "note": ("architecture replaced by the checkpoint's topology; spacing, normalisation and preprocessed data "
                 "unchanged; train with -pretrained_weights from `zoo export-nnunet` on these plans"),
    }
    arch_for_configuration(new, configuration, in_channels=1, num_classes=2)  # validate what we would write
    if output is not None:
        from ..hub.integrity import atomic_path

        with atomic_path(output) as tmp:
            tmp.write_text(json.dumps(new, indent=4, sort_keys=False) + "\n")
    return copy.deepcopy(new)
