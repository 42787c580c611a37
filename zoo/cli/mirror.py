"""``zoo mirror export | import | verify``: air-gapped mirrors (:mod:`zoo.mirror`), wired into ``zoo`` by
:func:`add_subcommands`::

    zoo mirror export NAMES... DIR [--no-converted] [--cache-dir DIR]
    zoo mirror import DIR [--no-converted] [--cache-dir DIR] [--only NAME ...]
    zoo mirror verify DIR

A mirror folder may be extended but is never a cache the command reads or writes
(:func:`zoo.cli.outputs.guard_outputs` checks that first).
"""

from __future__ import annotations

import argparse
from typing import Any

from .commands import add_command
from .outputs import Target, cache_targets, guard_outputs


def cmd_mirror_export(args: argparse.Namespace) -> int:
    from ..mirror import export_mirror

    guard_outputs(args, [Target.of(args.dir, "DIR", "folder", "extend"), *cache_targets(args.cache_dir)])
    report = export_mirror(args.names, args.dir, cache_dir=args.cache_dir, converted=not args.no_converted,
                           progress=True)
    print(report)
    print(f"\nOn the offline machine: zoo mirror import {args.dir}   (or: export ZOO_MIRROR={args.dir})")
    return 0


def cmd_mirror_import(args: argparse.Namespace) -> int:
    from ..mirror import import_mirror

    guard_outputs(args, cache_targets(args.cache_dir), inputs=[args.dir])
    report = import_mirror(args.dir, cache_dir=args.cache_dir, converted=not args.no_converted, names=args.only,
                           progress=True)
    print(report)
    return 0


def cmd_mirror_verify(args: argparse.Namespace) -> int:
    from ..mirror import verify_mirror

    manifest = verify_mirror(args.dir, progress=True)
    print(f"{args.dir}: {len(manifest['files'])} file(s) of {len(manifest['models'])} model(s) verified")
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Register ``mirror`` and its ``export``, ``import`` and ``verify`` on ``subparsers`` (from ``add_subparsers``)."""


    p = add_command(subparsers, "mirror", lambda a: (p.print_help(), 2)[1],
                    "air-gapped mirrors: export, import, verify")
    mirror_sub = p.add_subparsers(dest="mirror_command", required=True)
    q = add_command(mirror_sub, "export", cmd_mirror_export,
                    "pack verified checkpoints of NAMES into DIR with a sha256 manifest")
    q.add_argument("names", nargs="+", help="registry names or wildcards ('med3d-*')")
    q.add_argument("dir", help="mirror folder (created or extended)")
    q.add_argument("--no-converted", action="store_true", help="upstream files only, no converted safetensors")
    q.add_argument("--cache-dir", help="medzoo cache to read from (as zoo.load's cache_dir)")
    q = add_command(mirror_sub, "import", cmd_mirror_import, "verify a mirror and install it into the local caches")
    q.add_argument("dir")
    q.add_argument("--no-converted", action="store_true", help="install upstream files only (convert on first load)")
    q.add_argument("--cache-dir", help="install into this cache (as zoo.load's cache_dir)")
    q.add_argument("--only", nargs="+", metavar="NAME", help="import only these models (wildcards allowed)")
    q = add_command(mirror_sub, "verify", cmd_mirror_verify, "check every file of a mirror against its manifest")
    q.add_argument("dir")
