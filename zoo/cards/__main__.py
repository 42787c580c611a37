"""``python -m zoo.cards --write | --check [--dir DIR]``: regenerate or check ``model_cards/``."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import check_cards, default_cards_dir, write_cards


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.cards", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate every card and the index")
    mode.add_argument("--check", action="store_true", help="exit 1 if any card is stale")
    parser.add_argument("--dir", default=None, help=f"cards folder (default {default_cards_dir()})")
    args = parser.parse_args(argv)
    if args.write:
        changed = write_cards(args.dir)
        for path in changed:
            print(f"updated {path}")
        print(f"{len(changed)} file(s) changed")
        return 0
    problems = check_cards(args.dir)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} card file(s) out of date: run `python -m zoo.cards --write`", file=sys.stderr)
        return 1
    print("model cards are up to date")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
