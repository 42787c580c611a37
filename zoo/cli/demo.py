"""``zoo demo [-o DIR] [--seed N]``: the command-line side of :mod:`zoo.demo`, wired into ``zoo`` by
:func:`add_subcommands`. The output folder is checked first (never one of the demo's inputs; a non-empty one is
written into only with ``--force``)."""

from __future__ import annotations

import argparse
from typing import Any

from .outputs import Target, add_force_option, cache_targets, guard_outputs


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import demo_inputs, run_demo

    guard_outputs(args, [Target.of(args.output, "-o", "folder"), *cache_targets(None)], inputs=demo_inputs())
    run_demo(args.output, seed=args.seed)
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Register ``demo`` on ``subparsers`` (from ``add_subparsers``)."""
    help = ("offline demo: load genesis-ct-demo, adapt it to a 4-channel MRI nnU-Net plan, export nnU-Net pretrained "
            "weights, restore a damaged cube of a real CT")
    p = subparsers.add_parser("demo", help=help, description=help)
    p.set_defaults(func=cmd_demo)
    p.add_argument("-o", "--output", default="medzoo-demo", help="output folder (default: ./medzoo-demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruption of the CT cube")
    add_force_option(p, "files in a non-empty output folder")
