"""``zoo card NAME [-o FILE]`` and ``zoo cards --check | --write [--dir DIR]``: model cards, wired into ``zoo`` by
:func:`add_subcommands` (``python -m zoo.cards`` runs ``zoo cards`` too).

Each command is ``cmd_<name>(args) -> int`` (errors derive from ``ZooError``). Outputs are checked first by
:func:`zoo.cli.outputs.guard_outputs`: ``card -o`` replaces an existing file only with ``--force``; ``cards
--write`` rewrites generated cards but a hand-written file in the way only with ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .commands import add_command
from .outputs import OutputError, Target, add_force_option, guard_outputs


def cmd_card(args: argparse.Namespace) -> int:
    from ..cards import render_card
    from ..registry import get_entry

    if args.output:
        guard_outputs(args, [Target.of(args.output, "-o")])
    text = render_card(get_entry(args.name))
    if args.output:
        from ..hub.integrity import atomic_path

        with atomic_path(Path(args.output).expanduser()) as tmp:
            tmp.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_cards(args: argparse.Namespace) -> int:
    from ..cards import check_cards, write_cards

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
    from ..cards import default_cards_dir

    return Path(value).expanduser() if value is not None else default_cards_dir()


def _refuse_hand_written_cards(directory: Path, *, force: bool) -> None:
    """``cards --write`` replaces files it generated; one without the generated marker (a hand-written README.md
    in a folder that is not ``model_cards/``) only with ``--force``."""
    from ..cards import GENERATED_MARKER, INDEX
    from ..registry import all_entries

    if force or not directory.is_dir():
        return
    for name in [INDEX, *(f"{entry.name}.md" for entry in all_entries())]:
        path = directory / name
        if path.is_file() and GENERATED_MARKER not in path.read_text(encoding="utf-8", errors="replace"):
            raise OutputError(f"refusing to overwrite {path}: `zoo cards` did not generate it; pass --force to "
                              f"replace it, or choose another --dir")


def add_subcommands(subparsers: Any) -> None:
    """Register ``card`` and ``cards`` on ``subparsers`` (from ``add_subparsers``)."""


    p = add_command(subparsers, "card", cmd_card, "print the model card of a registry entry")
    p.add_argument("name")
    p.add_argument("-o", "--output", help="write the card to this file instead of printing it")
    add_force_option(p, "the output file")

    p = add_command(subparsers, "cards", cmd_cards, "check or regenerate model_cards/ against the registry")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if any card is stale (for CI)")
    mode.add_argument("--write", action="store_true", help="regenerate every card and the index")
    p.add_argument("--dir", help="cards folder (default: model_cards/ of the source checkout)")
    add_force_option(p, "hand-written files in the way of --write")
