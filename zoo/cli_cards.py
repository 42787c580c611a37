"""Subcommands for model cards, publishing and mirrors, added to ``zoo``'s parser by :func:`add_subcommands`::

    zoo card NAME [-o FILE]
    zoo cards --check | --write [--dir DIR]
    zoo publish DIR --repo ORG/NAME [--i-hold-the-rights] [--dry-run] [--private] [--token TOKEN] [-m MESSAGE]
    zoo mirror export NAMES... DIR [--no-converted] [--cache-dir DIR]
    zoo mirror import DIR [--no-converted] [--cache-dir DIR] [--only NAME ...]
    zoo mirror verify DIR

Each command is ``cmd_<name>(args) -> int`` like those of :mod:`zoo.cli` (errors derive from ``ZooError``).
Outputs are checked first by :func:`zoo.cli_outputs.guard_outputs`: ``card -o`` replaces an existing file only
with ``--force``; ``cards --write`` rewrites generated cards but a hand-written file in the way only with
``--force``; a mirror folder may be extended but is never a cache the command reads or writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .cli_outputs import OutputError, Target, add_force_option, cache_targets, guard_outputs


def cmd_card(args: argparse.Namespace) -> int:
    from .cards import render_card
    from .registry import get_entry

    if args.output:
        guard_outputs(args, [Target.of(args.output, "-o")])
    text = render_card(get_entry(args.name))
    if args.output:
        from .hub.integrity import atomic_path

        with atomic_path(Path(args.output).expanduser()) as tmp:
            tmp.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_cards(args: argparse.Namespace) -> int:
    from .cards import check_cards, write_cards

    if args.write:
        directory = _cards_dir(args.dir)
        guard_outputs(args, [Target.of(directory, "--dir", "folder", "extend")])
        _refuse_hand_written_cards(directory, force=args.force)
        changed = write_cards(directory)
        for path in changed:
            print(f"updated {path}")
        print(f"{len(changed)} card file(s) changed")
        return 0
    problems = check_cards(args.dir)
    for line in problems:
        print(line)
    if problems:
        print(f"zoo cards: {len(problems)} file(s) out of date with the registry; run `zoo cards --write`",
              file=sys.stderr)
        return 1
    print("model cards are up to date")
    return 0


def _cards_dir(value: str | None) -> Path:
    from .cards import default_cards_dir

    return Path(value).expanduser() if value is not None else default_cards_dir()


def _refuse_hand_written_cards(directory: Path, *, force: bool) -> None:
    """``cards --write`` replaces files it generated; one without the generated marker (a hand-written README.md
    in a folder that is not ``model_cards/``) only with ``--force``."""
    from .cards import GENERATED_MARKER, INDEX
    from .registry import all_entries

    if force or not directory.is_dir():
        return
    for name in [INDEX, *(f"{entry.name}.md" for entry in all_entries())]:
        path = directory / name
        if path.is_file() and GENERATED_MARKER not in path.read_text(encoding="utf-8", errors="replace"):
            raise OutputError(f"refusing to overwrite {path}: `zoo cards` did not generate it; pass --force to "
                              f"replace it, or choose another --dir")


def cmd_publish(args: argparse.Namespace) -> int:
    from .publish import publish

    result = publish(args.dir, args.repo, i_hold_the_rights=args.i_hold_the_rights, token=args.token,
                     private=args.private, dry_run=args.dry_run, commit_message=args.message)
    print(result)
    if not result.dry_run:
        print("\nTo pin this upload in the registry, use in zoo/entries/<family>.py:\n" + result.registry_snippet())
    return 0


def cmd_mirror_export(args: argparse.Namespace) -> int:
    from .mirror import export_mirror

    guard_outputs(args, [Target.of(args.dir, "DIR", "folder", "extend"), *cache_targets(args.cache_dir)])
    report = export_mirror(args.names, args.dir, cache_dir=args.cache_dir, converted=not args.no_converted,
                           progress=True)
    print(report)
    print(f"\nOn the offline machine: zoo mirror import {args.dir}   (or: export ZOO_MIRROR={args.dir})")
    return 0


def cmd_mirror_import(args: argparse.Namespace) -> int:
    from .mirror import import_mirror

    guard_outputs(args, cache_targets(args.cache_dir), inputs=[args.dir])
    report = import_mirror(args.dir, cache_dir=args.cache_dir, converted=not args.no_converted, names=args.only,
                           progress=True)
    print(report)
    return 0


def cmd_mirror_verify(args: argparse.Namespace) -> int:
    from .mirror import verify_mirror

    manifest = verify_mirror(args.dir, progress=True)
    print(f"{args.dir}: {len(manifest['files'])} file(s) of {len(manifest['models'])} model(s) verified")
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Register ``card``, ``cards``, ``publish`` and ``mirror`` on ``subparsers`` (from ``add_subparsers``)."""

    def add(name: str, func, help: str, target: Any = subparsers) -> argparse.ArgumentParser:
        p = target.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("card", cmd_card, "print the model card of a registry entry")
    p.add_argument("name")
    p.add_argument("-o", "--output", help="write the card to this file instead of printing it")
    add_force_option(p, "the output file")

    p = add("cards", cmd_cards, "check or regenerate model_cards/ against the registry")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if any card is stale (for CI)")
    mode.add_argument("--write", action="store_true", help="regenerate every card and the index")
    p.add_argument("--dir", help="cards folder (default: model_cards/ of the source checkout)")
    add_force_option(p, "hand-written files in the way of --write")

    p = add("publish", cmd_publish, "upload a model folder (config.json + model.safetensors) to the Hub")
    p.add_argument("dir", help="model folder")
    p.add_argument("--repo", required=True, help="ORG/NAME on the Hugging Face Hub")
    p.add_argument("--i-hold-the-rights", action="store_true",
                   help="publish even though the recorded licence forbids redistribution: you hold the rights")
    p.add_argument("--dry-run", action="store_true", help="show the commit (files, sizes, sha256) without uploading")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--token", help="Hub token (default: the logged-in token / $HF_TOKEN)")
    p.add_argument("-m", "--message", help="commit message")

    p = add("mirror", lambda a: (p.print_help(), 2)[1], "air-gapped mirrors: export, import, verify")
    mirror_sub = p.add_subparsers(dest="mirror_command", required=True)
    q = add("export", cmd_mirror_export, "pack verified checkpoints of NAMES into DIR with a sha256 manifest",
            mirror_sub)
    q.add_argument("names", nargs="+", help="registry names or wildcards ('med3d-*')")
    q.add_argument("dir", help="mirror folder (created or extended)")
    q.add_argument("--no-converted", action="store_true", help="upstream files only, no converted safetensors")
    q.add_argument("--cache-dir", help="medzoo cache to read from (as zoo.load's cache_dir)")
    q = add("import", cmd_mirror_import, "verify a mirror and install it into the local caches", mirror_sub)
    q.add_argument("dir")
    q.add_argument("--no-converted", action="store_true", help="install upstream files only (convert on first load)")
    q.add_argument("--cache-dir", help="install into this cache (as zoo.load's cache_dir)")
    q.add_argument("--only", nargs="+", metavar="NAME", help="import only these models (wildcards allowed)")
    q = add("verify", cmd_mirror_verify, "check every file of a mirror against its manifest", mirror_sub)
    q.add_argument("dir")
