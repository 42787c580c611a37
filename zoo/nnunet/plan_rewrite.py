"""The reverse of adaptation: rewrite a plan configuration to the checkpoint's topology.

``rewrite_plan(model, plans)`` replaces the ``architecture`` of one configuration with the checkpoint's
(network class, stages, widths, kernel sizes, strides, convolutions per stage), expressed in the plan's axis
order (a Models Genesis ``xyz`` checkpoint's ``[1, 2, 2]`` stride becomes ``[2, 2, 1]`` in nnU-Net's ``zyx``),
and rounds the patch size to the nearest multiple of the new total strides per axis. Everything that concerns
the data stays: spacing, normalisation, resampling, batch size, ``data_identifier`` (so the preprocessed data
is reused) and the other configurations. nnU-Net loads the result with ``-p <plans name>``, and transfer from
the checkpoint is then complete (every tensor but the segmentation heads copied).

``arch='unetpp'`` makes the configuration a UNet++ (:class:`zoo.archs.nested_unet.NestedUNet`): with a model,
the checkpoint's topology under the NestedUNet class; without one (``model=None``), the plan's own
``arch_kwargs`` kept as they are and only ``network_class_name`` replaced (a PlainConvUNet or NestedUNet plan:
NestedUNet's encoder is PlainConvUNet's). ``arch='unet'`` goes back to PlainConvUNet. The preprocessed data
(``data_identifier``) stays the same, so one ``nnUNetv2_plan_and_preprocess`` serves both networks::

    zoo plan --plans nnUNetPlans.json --arch unetpp -o nnUNetPlans_unetpp.json
    nnUNetv2_train DATASET 3d_fullres FOLD -p nnUNetPlans_unetpp -tr nnUNetTrainerUNetPlusPlus

``arch='stunet'`` (with an STU-Net model, ``stunet-small`` ... ``stunet-huge``) makes the configuration an STU-Net
(:class:`zoo.archs.stunet.STUNet`) with the checkpoint's published topology and preprocessing: its widths and
blocks, the pretraining plan's strides and kernels, patch 128^3, batch size 2, 1.5 mm spacing and a per-image
z-score (``--match-input --match-spacing`` are implied; new ``data_identifier``: run ``nnUNetv2_preprocess``)::

    zoo plan stunet-base --plans nnUNetPlans.json --arch stunet -o nnUNetPlans_stunet.json
    zoo export-nnunet stunet-base --plans nnUNetPlans_stunet.json ... ; nnUNetv2_train ... -p nnUNetPlans_stunet

``arch='monai'`` (with a MONAI checkpoint: ``suprem-segresnet``, ``suprem-swinunetr``, ``monai-wholebody-ct``) makes
the configuration that checkpoint's MONAI network, unchanged (:class:`zoo.archs.monai_nets.MonaiSegResNet` /
``MonaiSwinUNETR``), with its pretraining patch, spacing and normalisation (where nnU-Net has the scheme). MONAI's
weights do not transfer into PlainConvUNet / ResidualEncoderUNet plans (refused): nnU-Net trains MONAI's network.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from ..archs.declarations import NNUNET_CLASSES
from ..errors import InvalidOptionError
from ..options import check_option
from .plans import (
    DNA_CLASSES,
    LEGACY_KEYS,
    PlanError,
    arch_for_configuration,
    configuration_architecture,
    load_plans,
    plan_axis_order,
    resolve_configuration,
)

#: ``arch`` choices of :func:`rewrite_plan` -> medzoo architecture (each declaration's ``nnunet.plan_choice``)
ARCH_CHOICES = {a.nnunet.plan_choice: a.name for a in NNUNET_CLASSES if a.nnunet.plan_choice is not None}

#: ``arch='monai'``: the checkpoint's own MONAI network (SegResNet / SwinUNETR, family ``monai``) trained by nnU-Net
#: unchanged; its plan ``arch_kwargs`` are MONAI's, not a U-Net's, so it is not one of :data:`ARCH_CHOICES`
MONAI_CHOICE = "monai"

#: every ``arch`` :func:`rewrite_plan` (``zoo plan --arch``) accepts
PLAN_ARCHS: tuple[str, ...] = (*sorted(ARCH_CHOICES), MONAI_CHOICE)


class InvalidPlanOption(InvalidOptionError, PlanError):
    """An ``arch`` outside :data:`PLAN_ARCHS`: an :class:`InvalidOptionError` that is also a :class:`PlanError`."""


#: arch_kwargs only NestedUNet takes (dropped when going back to PlainConvUNet)
_NESTED_ONLY = ("branch", "deep_supervision_mode")


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
    arch: str | None = None,
    match_input: bool = False,
    match_spacing: bool = False,
    keep_topology: bool = False,
    adaptation_plan: str | os.PathLike | Mapping[str, Any] | bool | None = None,
) -> dict:
    """Plans with ``configuration``'s architecture replaced by ``model``'s topology (see module docstring),
    under the network class of ``arch`` (``'unetpp'``, ``'unet'``; default: the checkpoint's class). With
    ``model=None``, ``arch`` is required and the plan's own topology is kept.

    ``match_input`` also rewrites the normalisation (schemes and intensity properties) so that nnU-Net's
    preprocessing reproduces the checkpoint's pretraining input, and ``match_spacing`` the configuration's
    spacing to the checkpoint's (:func:`zoo.nnunet.input_contract.match_input`; recorded under ``medzoo_input``).
    ``keep_topology`` (with ``match_input``) keeps the plan's own network and rewrites only its input side.

    ``adaptation_plan`` applies an nnssl checkpoint's fine-tuning recipe instead (network, spacing, z-score for
    every channel, recommended patch; :mod:`zoo.nnunet.adaptation_plan`): upstream's ``adaptation_plan.json``, its
    ``checkpoint_final.pth``, the serialized dict, or ``True`` for the registry's record of ``model``'s.

    ``plans_name`` sets the plans' ``plans_name`` (default: the stem of ``output``, else unchanged). The result
    is validated before ``output`` is written (atomically). Returns the new plans dict.
    """
    from ..adapt.initialise import check_nnunet_keys
    from ..weights import resolve_entry

    if arch is not None:
        check_option("arch", arch, PLAN_ARCHS, error=InvalidPlanOption)
    if adaptation_plan is not None and adaptation_plan is not False:
        if arch is not None or keep_topology:
            raise PlanError("an adaptation plan sets the network, spacing, normalisation and patch itself: give it "
                            "without --arch / --keep-topology")
        return _apply_adaptation_plan(model, plans, configuration, adaptation_plan, output=output,
                                      plans_name=plans_name)
    if match_spacing and not match_input:
        raise PlanError("match_spacing goes with match_input (--match-input --match-spacing)")
    if model is None:
        if match_input:
            raise PlanError("match_input needs a model: its pretraining input is written into the plan")
        if arch == MONAI_CHOICE:
            raise PlanError("the MONAI network comes from its checkpoint: give the model NAME (suprem-segresnet, "
                            "suprem-swinunetr or monai-wholebody-ct) with --arch monai")
        if arch == "stunet":
            raise PlanError("STU-Net's topology comes from its checkpoint: give the model NAME (stunet-small, "
                            "stunet-base, stunet-large or stunet-huge) with --arch stunet")
        if arch is None:
            raise PlanError("give a model (its topology replaces the plan's) or arch='unetpp' / 'unet' (keeps the "
                            "plan's topology, changes the network class)")
        return _swap_class(plans, configuration, ARCH_CHOICES[arch], output=output, plans_name=plans_name)
    entry, _ = resolve_entry(model)
    if keep_topology:
        if not match_input or arch is not None:
            raise PlanError("keep_topology goes with match_input and no arch (--match-input --keep-topology): "
                            "the plan keeps its network and gets the checkpoint's input")
        return _match_input_only(entry, plans, configuration, output=output, plans_name=plans_name,
                                 spacing=match_spacing)
    if arch == MONAI_CHOICE or _is_monai(entry):
        if arch != MONAI_CHOICE or _is_monai(entry) is False or match_input or match_spacing:
            raise PlanError(f"{entry.name!r} is a {entry.architecture}: --arch monai goes with a MONAI checkpoint "
                            "(suprem-segresnet, suprem-swinunetr, monai-wholebody-ct) and sets its input itself (no "
                            "--match-input / --match-spacing); MONAI's networks have no tensor-for-tensor counterpart "
                            "in PlainConvUNet, ResidualEncoderUNet or UNet++ plans")
        return _monai_plan(entry, plans, configuration, output=output, plans_name=plans_name,
                           target_axis_order=target_axis_order)
    check_nnunet_keys(entry)
    new = load_plans(plans)
    conf = resolve_configuration(new, configuration)
    patch = conf.get("patch_size")
    if not isinstance(patch, list) or not all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in patch):
        raise PlanError(f"configuration {configuration!r}: patch_size must be a list of positive integers, got {patch!r}")
    kwargs = entry.build_kwargs()
    source_arch = entry.architecture
    if source_arch == "nnunet_encoder":  # an encoder-only checkpoint: the U-Net its encoder belongs to
        source_arch = kwargs.pop("unet", "plain_conv_unet")
        kwargs.pop("features_only", None)
    target_arch = ARCH_CHOICES[arch] if arch is not None else source_arch
    if (target_arch == "stunet") != (source_arch == "stunet"):
        raise PlanError(f"{entry.name!r} is a {source_arch}: --arch {arch or 'stunet'} needs a checkpoint of that "
                        "network (STU-Net's weights fit STU-Net only: stunet-small ... stunet-huge with --arch stunet)")
    if target_arch == "stunet":  # the published preprocessing goes with the published topology
        match_input = match_spacing = True
    if target_arch != source_arch:
        if "nested_unet" in (target_arch, source_arch) and "residual_encoder_unet" in (
                target_arch, source_arch):
            raise PlanError(f"{entry.name!r} is a {source_arch}: its topology cannot become a {target_arch} "
                            "(UNet++ uses PlainConvUNet's encoder)")
        for key in _NESTED_ONLY:
            kwargs.pop(key, None)
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
    if target_arch == "stunet":  # the pretraining patch (128^3) and batch size (2) of the published plan
        new_patch = [int(entry.input.patch_size[src.index(letter)]) for letter in tgt]
        new["configurations"][configuration]["batch_size"] = 2

    before = configuration_architecture(new, configuration)["network_class_name"]
    _set_architecture(new, configuration, target_arch, kwargs, output=output, plans_name=plans_name)
    new["configurations"][configuration]["patch_size"] = new_patch
    if target_arch == "nested_unet" and before != DNA_CLASSES["nested_unet"]:
        _fit_unetpp(new, configuration)
    new["medzoo_pretrained"] = {
        "model": entry.name,
        "configuration": configuration,
        "checkpoint_axis_order": src,
        "plan_axis_order": tgt,
        "patch_size_before": list(patch),
        "note": ("architecture replaced by the checkpoint's topology; spacing, normalisation and preprocessed data "
                 "unchanged; train with -pretrained_weights from `zoo export-nnunet` on these plans"),
    }
    if arch is not None:
        new["medzoo_architecture"] = _architecture_note(configuration, target_arch, None)
    if match_input:
        from .input_contract import match_input as _match_input

        new["medzoo_input"] = _match_input(entry, new, configuration, spacing=match_spacing)
    arch_for_configuration(new, configuration, in_channels=1, num_classes=2)  # validate what we would write
    _write(new, output)
    return copy.deepcopy(new)


def _is_monai(entry: Any) -> bool:
    from ..archs.declarations import BY_NAME

    decl = BY_NAME.get(entry.architecture)
    return decl is not None and decl.family == "monai"


def _monai_plan(entry: Any, plans: Any, configuration: str, *, output: str | os.PathLike | None,
                plans_name: str | None, target_axis_order: str | None) -> dict:
    """``configuration`` trains ``entry``'s MONAI network unchanged (``arch='monai'``): ``network_class_name``
    :class:`zoo.archs.monai_nets.MonaiSegResNet` / ``MonaiSwinUNETR`` with the checkpoint's arguments
    (:func:`zoo.archs.monai_nets.nnunet_architecture`), the pretraining patch (permuted to the plan's axis order),
    spacing and, where nnU-Net has the scheme, normalisation (:func:`zoo.nnunet.input_contract.match_input`);
    batch size 2. New ``data_identifier``: run ``nnUNetv2_preprocess`` with these plans."""
    from ..archs.monai_nets import nnunet_architecture
    from .input_contract import match_input, suffix_data_identifier

    new = load_plans(plans)
    resolved = resolve_configuration(new, configuration)
    before = configuration_architecture(new, configuration)["network_class_name"]
    patch_before = resolved.get("patch_size")
    src = entry.input.axis_order
    tgt = target_axis_order or plan_axis_order(new, 3)
    if sorted(src) != sorted(tgt) or entry.input.patch_size is None or entry.input.spacing_mm is None:
        raise PlanError(f"{entry.name!r}: its input contract (axes {src!r}, patch {entry.input.patch_size}, spacing "
                        f"{entry.input.spacing_mm}) cannot be written into a 3D plan with axes {tgt!r}")
    conf = new["configurations"][configuration]
    for key in LEGACY_KEYS:
        conf.pop(key, None)
    conf["architecture"] = nnunet_architecture(entry.architecture, entry.build_kwargs())
    conf["patch_size"] = [int(entry.input.patch_size[src.index(letter)]) for letter in tgt]
    conf["batch_size"] = 2
    if entry.input.normalization is not None:
        record = match_input(entry, new, configuration, spacing=True)
    else:  # no nnU-Net scheme reproduces the checkpoint's normalisation: spacing only, said so
        if "data_identifier" not in conf:
            conf["data_identifier"] = resolved.get("data_identifier")
        spacing = [float(entry.input.spacing_mm[src.index(letter)]) for letter in tgt]
        record = {"model": entry.name, "configuration": configuration, "checkpoint_normalization": None,
                  "changed": [{"key": f"configurations.{configuration}.spacing", "before": resolved.get("spacing"),
                               "after": spacing}],
                  "note": (f"no nnU-Net normalisation scheme reproduces {entry.name}'s ({entry.input.intensity}); "
                           "the plan's normalisation is kept: expect a domain shift at the start of fine-tuning")}
        conf["spacing"] = spacing
        suffix_data_identifier(conf)
        record["data_identifier"] = conf["data_identifier"]
        record["preprocess"] = "the preprocessed data change: run nnUNetv2_preprocess with these plans"
    new["medzoo_input"] = record
    if plans_name is None and output is not None:
        plans_name = Path(output).stem
    if plans_name:
        new["plans_name"] = plans_name
    new["medzoo_pretrained"] = {
        "model": entry.name, "configuration": configuration, "checkpoint_axis_order": src, "plan_axis_order": tgt,
        "patch_size_before": patch_before,
        "note": ("architecture replaced by the checkpoint's MONAI network, patch, spacing and (where nnU-Net has the "
                 "scheme) normalisation by its pretraining input; train with -pretrained_weights holding "
                 "{'network_weights': zoo.load(NAME, num_classes=n).state_dict()}")}
    new["medzoo_architecture"] = {
        "configuration": configuration, "network_class_name": conf["architecture"]["network_class_name"],
        "network_class_name_before": before,
        "note": ("MONAI's network (needs medzoo and MONAI installed where nnU-Net runs: pip install "
                 "\"medzoo[monai]\"); run nnUNetv2_preprocess with these plans, then nnUNetv2_train with the stock "
                 "nnUNetTrainer")}
    _write(new, output)
    return copy.deepcopy(new)


def _apply_adaptation_plan(model: Any, plans: Any, configuration: str, source: Any, *,
                           output: str | os.PathLike | None, plans_name: str | None) -> dict:
    """``configuration`` rewritten to an nnssl adaptation plan's fine-tuning recipe (``rewrite_plan``'s
    ``adaptation_plan``), checked against ``model``'s registry entry when one is given."""
    from .adaptation_plan import apply_adaptation_plan, check_against_entry, read_adaptation_plan, \
        registry_adaptation_plan

    entry = None
    if model is not None:
        from ..weights import resolve_entry

        entry, _ = resolve_entry(model)
    if source is True:
        if entry is None:
            raise PlanError("adaptation_plan=True uses the registry's record of a model's adaptation plan: give the "
                            "model, or the adaptation_plan.json / checkpoint_final.pth file")
        recipe = registry_adaptation_plan(entry.name)
    else:
        recipe = read_adaptation_plan(source)
    if entry is not None:
        check_against_entry(recipe, entry)
    new = load_plans(plans)
    resolve_configuration(new, configuration)
    new["medzoo_adaptation_plan"] = apply_adaptation_plan(new, recipe, configuration)
    if entry is not None:
        new["medzoo_pretrained"] = {
            "model": entry.name, "configuration": configuration,
            "note": "network, spacing, normalisation and patch from the checkpoint's nnssl adaptation plan; train "
                    "with -pretrained_weights from `zoo export-nnunet` on these plans"}
    if plans_name or output is not None:
        new["plans_name"] = plans_name or Path(output).stem
    arch_for_configuration(new, configuration, in_channels=1, num_classes=2)  # validate what we would write
    _write(new, output)
    return copy.deepcopy(new)


def _match_input_only(entry: Any, plans: Any, configuration: str, *, output: str | os.PathLike | None,
                      plans_name: str | None, spacing: bool) -> dict:
    """The plan with its own network, its normalisation (and with ``spacing`` its spacing) rewritten to the
    checkpoint's pretraining input."""
    from .input_contract import match_input as _match_input

    new = load_plans(plans)
    resolve_configuration(new, configuration)
    new["medzoo_input"] = _match_input(entry, new, configuration, spacing=spacing)
    if plans_name or output is not None:
        new["plans_name"] = plans_name or Path(output).stem
    arch_for_configuration(new, configuration, in_channels=1, num_classes=2)  # validate what we would write
    _write(new, output)
    return copy.deepcopy(new)


def _set_architecture(plans: dict, configuration: str, target_arch: str, kwargs: dict, *,
                      output: str | os.PathLike | None, plans_name: str | None) -> None:
    """Write ``configuration``'s architecture block (modern format, legacy keys dropped) and the plans name
    (default: the output file's stem) into ``plans`` in place."""
    conf = plans["configurations"][configuration]
    for key in LEGACY_KEYS:
        conf.pop(key, None)
    conf["architecture"] = {
        "network_class_name": DNA_CLASSES[target_arch],
        "arch_kwargs": kwargs,
        "_kw_requires_import": [k for k in ("conv_op", "norm_op", "dropout_op", "nonlin") if k in kwargs],
    }
    if plans_name is None and output is not None:
        plans_name = Path(output).stem
    if plans_name:
        plans["plans_name"] = plans_name


def _write(plans: dict, output: str | os.PathLike | None) -> None:
    if output is not None:
        from ..hub.integrity import atomic_path

        with atomic_path(output) as tmp:
            tmp.write_text(json.dumps(plans, indent=4, sort_keys=False) + "\n")


def _architecture_note(configuration: str, target_arch: str, before: str | None) -> dict:
    note = {"configuration": configuration, "network_class_name": DNA_CLASSES[target_arch]}
    if before is not None:
        note["network_class_name_before"] = before
    if target_arch == "nested_unet":
        note["note"] = (
            "UNet++ (zoo.archs.nested_unet.NestedUNet, needs medzoo installed where nnU-Net runs); preprocessed data "
            "unchanged. Train with -tr nnUNetTrainerUNetPlusPlus (export nnUNet_extTrainer=$(python -c \"import "
            "zoo.nnunet.trainers as t; print(t.EXT_DIR)\")) for UNet++ deep supervision, or the stock nnUNetTrainer")
    if target_arch == "stunet":
        note["note"] = (
            "STU-Net (zoo.archs.stunet.STUNet, needs medzoo installed where nnU-Net runs) with the checkpoint's "
            "published topology, patch 128^3, 1.5 mm and per-image z-score: run nnUNetv2_preprocess with these plans, "
            "then nnUNetv2_train with the stock nnUNetTrainer (or nnUNetTrainerFinetune) and -pretrained_weights from "
            "`zoo export-nnunet`")
    return note


def _swap_class(plans: Any, configuration: str, target_arch: str, *, output: str | os.PathLike | None,
                plans_name: str | None) -> dict:
    """``configuration`` with its own arch_kwargs under the class of ``target_arch`` (PlainConvUNet <-> NestedUNet)."""
    new = load_plans(plans)
    spec = arch_for_configuration(new, configuration, in_channels=1, num_classes=2)  # also converts legacy plans
    if spec.arch == "residual_encoder_unet":
        raise PlanError(
            f"configuration {configuration!r} is a ResidualEncoderUNet plan; UNet++ (and this rewrite) keeps "
            "PlainConvUNet's encoder (n_conv_per_stage). Plan with nnU-Net's default planner (nnUNetPlans), or give "
            "a PlainConvUNet checkpoint as model"
        )
    before = configuration_architecture(new, configuration)["network_class_name"]
    kwargs = copy.deepcopy(spec.arch_kwargs)
    if target_arch != "nested_unet":
        for key in _NESTED_ONLY:
            kwargs.pop(key, None)
    _set_architecture(new, configuration, target_arch, kwargs, output=output, plans_name=plans_name)
    new["medzoo_architecture"] = _architecture_note(configuration, target_arch, before)
    if target_arch == "nested_unet" and before != DNA_CLASSES["nested_unet"]:
        _fit_unetpp(new, configuration)
    arch_for_configuration(new, configuration, in_channels=1, num_classes=2)
    _write(new, output)
    return copy.deepcopy(new)


def _fit_unetpp(plans: dict, configuration: str) -> None:
    """Shrink ``configuration``'s patch / batch in place so that UNet++ fits where the plain U-Net plan fits
    (:func:`zoo.nnunet.planner.fit_patch_and_batch`: nnU-Net's patch search with the NestedUNet's estimate, the
    topology kept) and record before / after under ``medzoo_unetpp_plan``."""
    from .planner import fit_patch_and_batch

    conf = resolve_configuration(plans, configuration)
    arch_kwargs = conf["architecture"]["arch_kwargs"]
    patch, batch = list(conf["patch_size"]), int(conf.get("batch_size", 2))
    median = conf.get("median_image_size_in_voxels")
    channels = len(conf.get("normalization_schemes") or [0])
    fit = fit_patch_and_batch(arch_kwargs, patch, batch, median, channels, 2)
    plans["configurations"][configuration]["patch_size"] = fit["patch_size"]
    plans["configurations"][configuration]["batch_size"] = fit["batch_size"]
    plans["medzoo_unetpp_plan"] = {
        "configuration": configuration,
        "patch_size_before": patch,
        "batch_size_before": batch,
        **fit,
        "note": ("patch / batch re-sized for UNet++ by nnU-Net's search (shrink the axis with the largest "
                 "patch / median shape ratio by its total stride) until the NestedUNet's "
                 "compute_conv_feature_map_size x batch is at most the plain U-Net's of the original plan; "
                 "estimates in feature-map voxels, as nnU-Net's ExperimentPlanner. For a full nnU-Net plan: "
                 "python -m zoo.nnunet.planner -d DATASET_ID (plans nnUNetPlans_unetpp)"),
    }
