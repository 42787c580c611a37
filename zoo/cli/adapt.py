"""``zoo adapt``, ``zoo export-nnunet`` and ``zoo plan``: pretrained weights and nnU-Net plans.

Wired into ``zoo`` by :func:`add_subcommands` (called from :func:`zoo.cli.build_parser`)::

    zoo adapt NAME --plans nnUNetPlans.json [--dataset-json dataset.json] [-c 3d_fullres] [--report report.json]
              [--report-png transfer.png]
    zoo export-nnunet NAME --plans nnUNetPlans.json --dataset-json dataset.json -c 3d_fullres -o pretrained.pth
    zoo plan NAME --plans nnUNetPlans.json -o nnUNetPlans_NAME.json [-c 3d_fullres]
    zoo plan --plans nnUNetPlans.json --arch unetpp -o nnUNetPlans_unetpp.json [-c 3d_fullres]
    zoo plan NAME --plans nnUNetPlans.json --arch unetpp -o nnUNetPlans_NAME_unetpp.json
    zoo plan NAME --plans nnUNetPlans.json -o nnUNetPlans_NAME.json --match-input [--match-spacing]
    zoo plan [NAME] --plans nnUNetPlans.json -o nnUNetPlans_NAME.json --adaptation-plan [adaptation_plan.json]

Errors are :class:`zoo.errors.ZooError` subclasses (``zoo`` prints them and exits with status 2); nothing is
written when a command fails. No output may be one of the inputs (plans, dataset.json, checkpoint, model folder);
an existing output is replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
from typing import Any, get_args

from ..nnunet.plan_rewrite import PLAN_ARCHS
from ..options import ChannelMode, KernelCollapse, KernelInflate, WidthMode
from .commands import add_command
from .outputs import Target, add_force_option, cache_targets, existing_path, guard_outputs


def _inputs(args: argparse.Namespace) -> list[str | None]:
    """What a plan command reads: the model folder (when NAME is a path), plans, dataset.json, checkpoint."""
    recipe = getattr(args, "adaptation_plan", None)
    return [existing_path(args.name), args.plans, getattr(args, "dataset_json", None),
            getattr(args, "checkpoint", None), recipe if isinstance(recipe, str) else None]


def _report_target(args: argparse.Namespace) -> Target | None:
    return Target.of(args.report, "--report") if args.report else None


def _png_target(args: argparse.Namespace) -> Target | None:
    return Target.of(args.report_png, "--report-png") if args.report_png else None


def _write_png(args: argparse.Namespace, report: Any) -> None:
    """``--report-png``: the report drawn by :func:`zoo.viz.transfer_png.save_transfer_png` (atomic; an existing
    file was already refused by :func:`guard_outputs` unless ``--force``)."""
    if args.report_png:
        from ..viz.transfer_png import save_transfer_png

        save_transfer_png(report, args.report_png, overwrite=True)
        print(f"picture of the transfer written to {args.report_png}")


def _engine_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("transfer options")
    g.add_argument("--checkpoint", help="local upstream file to use instead of the registry download")
    g.add_argument("--cache-dir", help="one folder for downloads and conversions (default $ZOO_CACHE)")
    g.add_argument("--channel-mode", default="repeat_scale", choices=list(get_args(ChannelMode)),
                   help="input-channel inflation/reduction (default repeat_scale: k copies reproduce the 1-channel "
                        "response)")
    g.add_argument("--kernel-collapse", default="sum", choices=list(get_args(KernelCollapse)),
                   help="kernel axis 3 -> 1 (default sum)")
    g.add_argument("--kernel-inflate", default="center", choices=list(get_args(KernelInflate)), help="kernel axis 1 -> 3")
    g.add_argument("--widths", default="skip", choices=list(get_args(WidthMode)),
                   help="tensors whose widths differ: skip (default) or copy the leading channels")
    g.add_argument("--heads", action="store_true", help="also transfer segmentation heads when the class count agrees")
    g.add_argument("--no-permute", action="store_true",
                   help="ignore the checkpoint's axis order (registry) and take kernels in the plan's order as is")
    g.add_argument("--strict", action="store_true",
                   help="fail if any checkpoint tensor outside the segmentation heads would go unused")
    g.add_argument("--min-share", type=float, help="fail if less than this share (0..1) of the target's parameters "
                                                   "would be initialised from the checkpoint")
    g.add_argument("--in-channels", type=int, help="override the input channels (default: dataset.json)")
    g.add_argument("--num-classes", type=int, help="override the output channels (default: dataset.json)")
    g.add_argument("--seed", type=int, default=0, help="seed of the fresh initialisation (default 0)")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = dict(
        checkpoint=args.checkpoint, cache_dir=args.cache_dir, channel_mode=args.channel_mode,
        kernel_collapse=args.kernel_collapse, kernel_inflate=args.kernel_inflate, widths=args.widths,
        heads=args.heads, strict=args.strict, min_share=args.min_share, in_channels=args.in_channels,
        num_classes=args.num_classes, progress=True,
    )
    if args.no_permute:
        opts.update(source_axis_order="zyx", target_axis_order="zyx")
    return opts


def _default_classes(args: argparse.Namespace) -> None:
    """``zoo adapt`` without dataset.json: keep the checkpoint's head size unless told otherwise."""
    if args.dataset_json is None and args.num_classes is None:
        from ..weights import resolve_entry

        entry, _ = resolve_entry(args.name)
        args.num_classes = entry.num_classes or 2


def _input_contract(args: argparse.Namespace, report: Any) -> None:
    """Print the checkpoint's input contract beside the plan's (after the transfer headline) and keep it in the
    report's options (``input_contract`` in the JSON report)."""
    from ..nnunet.input_contract import compare_input

    comparison = compare_input(args.name, args.plans, args.configuration)
    report.options["input_contract"] = comparison.to_dict()
    print(comparison.text)


def cmd_adapt(args: argparse.Namespace) -> int:
    from ..nnunet.export import adapt_to_plan

    guard_outputs(args, [_report_target(args), _png_target(args), *cache_targets(args.cache_dir)],
                  inputs=_inputs(args))
    _default_classes(args)
    _, report = adapt_to_plan(args.name, args.plans, args.configuration, args.dataset_json, seed=args.seed,
                              **_options(args))
    print(report if args.verbose else report.summary(args.plans))
    _input_contract(args, report)
    if not args.verbose:
        print("(--verbose prints the table of every tensor)")
    if args.report:
        report.to_json(args.report)
        print(f"report written to {args.report}")
    _write_png(args, report)
    return 0


def cmd_export_nnunet(args: argparse.Namespace) -> int:
    from ..nnunet.export import export_nnunet

    guard_outputs(args, [Target.of(args.output, "-o"), _report_target(args), _png_target(args),
                         *cache_targets(args.cache_dir)], inputs=_inputs(args))
    result = export_nnunet(args.name, args.plans, args.dataset_json, args.configuration, args.output,
                           report_path=args.report, seed=args.seed, **_options(args))
    print(result.report if args.verbose else result.report.summary(args.plans))
    _input_contract(args, result.report)
    if args.report:  # again, with the input contract
        result.report.to_json(args.report)
    _write_png(args, result.report)
    print(f"wrote {result.path} ({result.keys} keys, {result.bytes / 2**20:.1f} MiB of weights)")
    from ..nnunet.plans import load_plans

    print(train_hint(load_plans(args.plans), args.configuration, result.path))
    return 0


def train_hint(plans: dict, configuration: str, pretrained: Any = None) -> str:
    """The ``nnUNetv2_train`` commands for ``plans`` / ``configuration``, printed by ``zoo export-nnunet`` and
    ``zoo plan``: fine-tuning with ``-tr nnUNetTrainerFinetune`` (nnunetv2's ``nnUNetTrainer_warmup`` schedule:
    linear warm-up of the whole network, then poly; resumable), for a UNet++ configuration with
    ``-tr nnUNetTrainerUNetPlusPlus``, and the ``nnUNet_extTrainer`` export that lets nnU-Net find medzoo's
    trainers; then the quick smoke run (``nnUNetTrainerQuick`` /
    ``nnUNetTrainerUNetPlusPlusQuick``). ``pretrained``: the ``-pretrained_weights`` file (``None``: a
    placeholder to fill from ``zoo export-nnunet``)."""
    from ..archs.nested_unet import NNUNET_CLASS_PATH
    from ..nnunet.plans import configuration_architecture
    from ..nnunet.trainers import EXT_DIR

    unetpp = configuration_architecture(plans, configuration).get("network_class_name") == NNUNET_CLASS_PATH
    weights = (f"-pretrained_weights {pretrained}" if pretrained is not None
               else "[-pretrained_weights FILE from zoo export-nnunet on these plans]")
    command = (f"nnUNetv2_train {plans.get('dataset_name', 'DATASET')} {configuration} FOLD "
               f"-p {plans.get('plans_name', 'nnUNetPlans')}")
    trainer = "nnUNetTrainerUNetPlusPlus" if unetpp else "nnUNetTrainerFinetune"
    what = ("UNet++ deep supervision" if unetpp
            else "fine-tuning: linear warm-up of the whole network for 50 epochs, then poly")
    return (f"train ({what}; medzoo must be installed where nnU-Net runs):\n"
            f"  export nnUNet_extTrainer={EXT_DIR}\n"
            f"  {command} -tr {trainer} {weights}\n"
            f"quick smoke run first (a few iterations, loss per iteration; ZOO_QUICK_ITERS / ZOO_QUICK_EPOCHS): "
            f"-tr {trainer.replace('Finetune', '')}Quick")


def cmd_plan(args: argparse.Namespace) -> int:
    from ..nnunet.plan_rewrite import rewrite_plan
    from ..nnunet.plans import PlanError

    guard_outputs(args, [Target.of(args.output, "-o")], inputs=_inputs(args))
    if args.adaptation_plan is not None:
        return _plan_from_adaptation_plan(args)
    if args.name is None and args.arch is None:
        raise PlanError("give a model NAME (its topology replaces the plan's) or --arch unetpp (keeps the plan's "
                        "topology, makes the network a UNet++)")
    order = {"source_axis_order": "zyx", "target_axis_order": "zyx"} if args.no_permute else {}
    new = rewrite_plan(args.name, args.plans, args.configuration, output=args.output, plans_name=args.plans_name,
                       arch=args.arch, match_input=args.match_input, match_spacing=args.match_spacing,
                       keep_topology=args.keep_topology, **order)
    conf = new["configurations"][args.configuration]
    architecture = conf["architecture"]
    arch = architecture["arch_kwargs"]
    topology = (f"{arch['n_stages']} stages, features {arch['features_per_stage']}, strides {arch['strides']}"
                if "n_stages" in arch else f"MONAI arguments {arch}")
    if args.keep_topology:
        print(f"wrote {args.output}: configuration {args.configuration!r} keeps its network "
              f"({architecture['network_class_name']}, {topology}); plans name {new.get('plans_name')!r}")
    elif args.name is not None:
        print(f"wrote {args.output}: configuration {args.configuration!r} now has {args.name}'s topology "
              f"({topology}) as {architecture['network_class_name']}, patch size "
              f"{new['medzoo_pretrained']['patch_size_before']} -> {conf['patch_size']}; plans name "
              f"{new.get('plans_name')!r}")
    else:
        print(f"wrote {args.output}: configuration {args.configuration!r} now builds "
              f"{architecture['network_class_name']} ({topology}, unchanged); preprocessed data reused; plans name "
              f"{new.get('plans_name')!r}")
    if args.match_input or args.arch == "monai":
        from ..nnunet.input_contract import compare_input

        record = new["medzoo_input"]
        for change in record["changed"]:
            print(f"  {change['key']}: {change['before']} -> {change['after']}")
        print(f"  {record['note']}")
        if "preprocess" in record:
            print(f"  data_identifier {record['data_identifier']!r}: {record['preprocess']}")
        print(compare_input(args.name, new, args.configuration).text)
    print(train_hint(new, args.configuration))
    return 0


def _plan_from_adaptation_plan(args: argparse.Namespace) -> int:
    """``zoo plan [NAME] --adaptation-plan [FILE]``: nnssl's fine-tuning recipe written into the plan."""
    from ..nnunet.plan_rewrite import rewrite_plan

    source = True if args.adaptation_plan == _REGISTRY_RECIPE else args.adaptation_plan
    new = rewrite_plan(args.name, args.plans, args.configuration, output=args.output, plans_name=args.plans_name,
                       arch=args.arch, keep_topology=args.keep_topology, adaptation_plan=source)
    record = new["medzoo_adaptation_plan"]
    print(f"wrote {args.output}: configuration {args.configuration!r} follows the adaptation plan of "
          f"{record['source']}; plans name {new.get('plans_name')!r}")
    for change in record["changed"]:
        print(f"  {change['key']}: {change['before']} -> {change['after']}")
    print(f"  {record['note']}")
    print(train_hint(new, args.configuration))
    return 0


#: ``--adaptation-plan`` without a file: the registry's record of NAME's adaptation plan
_REGISTRY_RECIPE = "<registry>"


def add_subcommands(subparsers: Any) -> None:
    """Register ``adapt``, ``export-nnunet`` and ``plan`` on an argparse ``add_subparsers()`` object."""

    def add(name: str, func: Any, help: str, optional_name: bool = False) -> argparse.ArgumentParser:
        p = add_command(subparsers, name, func, help)
        if optional_name:
            p.add_argument("name", nargs="?", help="registry name or model folder whose topology replaces the "
                                                   "plan's (optional with --arch: keep the plan's topology)")
        else:
            p.add_argument("name", help="registry name (e.g. genesis-chest-ct-nnunet-lung) or model folder")
        p.add_argument("--plans", required=True, help="nnU-Net plans file (nnUNetPlans.json)")
        p.add_argument("-c", "--configuration", default="3d_fullres", help="plan configuration (default 3d_fullres)")
        return p

    p = add("adapt", cmd_adapt, "fit pretrained weights to an nnU-Net plan and report every tensor's fate")
    p.add_argument("--dataset-json", help="the dataset's dataset.json (channels and labels)")
    p.add_argument("--report", help="write the transfer report as JSON here")
    p.add_argument("--report-png", metavar="PATH", help="also draw the report as a PNG here: the target's stages "
                                                        "and blocks coloured by what happened to their tensors")
    p.add_argument("-v", "--verbose", action="store_true", help="print the per-tensor table")
    add_force_option(p, "the report files")
    _engine_options(p)

    p = add("export-nnunet", cmd_export_nnunet,
            "write pretrained weights for nnUNetv2_train -pretrained_weights, fitted to a plan")
    p.add_argument("--dataset-json", required=True, help="the dataset's dataset.json (channels and labels)")
    p.add_argument("-o", "--output", required=True, help="output file (e.g. pretrained.pth)")
    p.add_argument("--report", help="also write the transfer report as JSON here")
    p.add_argument("--report-png", metavar="PATH", help="also draw the transfer report as a PNG here")
    p.add_argument("-v", "--verbose", action="store_true", help="print the per-tensor table")
    add_force_option(p, "the output and report files")
    _engine_options(p)

    p = add("plan", cmd_plan, "rewrite a plan configuration to the checkpoint's topology (transfer is then complete) "
                              "and/or to another network class (--arch unetpp: UNet++)", optional_name=True)
    p.add_argument("-o", "--output", required=True, help="output plans file (e.g. nnUNetPlans_genesis.json)")
    p.add_argument("--arch", choices=PLAN_ARCHS,
                   help="network class of the configuration: unetpp = UNet++ (zoo.archs.nested_unet.NestedUNet), "
                        "unet = nnU-Net's PlainConvUNet; without NAME the plan's own topology is kept; stunet = "
                        "STU-Net with the checkpoint NAME's published topology and input (stunet-small ... "
                        "stunet-huge); monai = the "
                        "MONAI checkpoint NAME's own network with its input (suprem-segresnet, suprem-swinunetr, "
                        "monai-wholebody-ct)")
    p.add_argument("--plans-name", help="plans_name to record (default: the output file's stem)")
    p.add_argument("--no-permute", action="store_true", help="ignore the checkpoint's axis order")
    p.add_argument("--match-input", action="store_true",
                   help="also rewrite the normalisation (schemes, intensity properties) so that nnU-Net's "
                        "preprocessing reproduces the checkpoint's pretraining input (new data_identifier)")
    p.add_argument("--match-spacing", action="store_true",
                   help="with --match-input: also set the configuration's spacing to the checkpoint's")
    p.add_argument("--keep-topology", action="store_true",
                   help="with --match-input: keep the plan's own network, rewrite only its input side")
    p.add_argument("--adaptation-plan", nargs="?", const=_REGISTRY_RECIPE, metavar="FILE",
                   help="apply an nnssl checkpoint's fine-tuning recipe (network, spacing, z-score for every "
                        "channel, recommended patch): FILE = its adaptation_plan.json or checkpoint_final.pth "
                        "(read as data); without FILE the registry's record of NAME's")
    add_force_option(p, "the output plans file")
