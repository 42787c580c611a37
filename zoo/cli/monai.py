"""``zoo export-monai NAME -o DIR``: a medzoo model as a MONAI bundle (:mod:`zoo.monai_bundle`), wired into ``zoo``
by :func:`add_subcommands`::

    zoo export-monai NAME_OR_FOLDER -o DIR [--network auto|monai|medzoo] [--random-init] [--checkpoint FILE]
                     [--cache-dir DIR] [--i-hold-the-rights] [--force]

An existing non-empty ``DIR`` is replaced only with ``--force`` (the new bundle is complete before it replaces the
old one); ``DIR`` may not be the model folder it exports. Weights whose licence forbids redistribution are refused
unless ``--i-hold-the-rights``.
"""

from __future__ import annotations

import argparse
from typing import Any, get_args

from ..monai_bundle import BundleNetwork
from .commands import add_command
from .outputs import Target, add_force_option, cache_targets, existing_path, guard_outputs


def cmd_export_monai(args: argparse.Namespace) -> int:
    from ..monai_bundle import export_monai_bundle

    targets = [Target.of(args.output, "-o", "folder")]
    if not args.random_init:
        targets += cache_targets(args.cache_dir)
    guard_outputs(args, targets, inputs=[existing_path(args.name), args.checkpoint])
    result = export_monai_bundle(
        args.name, args.output, network=args.network, pretrained=not args.random_init, checkpoint=args.checkpoint,
        cache_dir=args.cache_dir, i_hold_the_rights=args.i_hold_the_rights, overwrite=args.force,
    )
    print(result)
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Register ``export-monai`` on ``subparsers`` (from ``add_subparsers``)."""
    p = add_command(subparsers, "export-monai", cmd_export_monai,
                    "write a MONAI bundle (configs/metadata.json, configs/inference.json, models/model.pt, LICENSE) "
                    "that MONAI's ConfigParser and monai.bundle.load read")
    p.add_argument("name", help="registry name (e.g. med3d-resnet10) or model folder")
    p.add_argument("-o", "--output", required=True, help="bundle folder to write")
    p.add_argument("--network", choices=list(get_args(BundleNetwork)), default="auto",
                   help="network_def: monai = MONAI's own network (med3d-* only: monai.networks.nets.ResNet, "
                        "not dilated), medzoo = medzoo's builder (medzoo needed where the bundle runs; outputs equal "
                        "zoo.load's), auto (default) = monai where MONAI has the network")
    p.add_argument("--random-init", action="store_true",
                   help="export the architecture with a random initialisation instead of the pretrained weights")
    p.add_argument("--checkpoint", help="local upstream file to use instead of the registry download")
    p.add_argument("--cache-dir", help="one folder for downloads and conversions (default $ZOO_CACHE)")
    p.add_argument("--i-hold-the-rights", action="store_true",
                   help="export even though the recorded licence forbids redistribution: you hold the rights")
    add_force_option(p, "the bundle folder")
