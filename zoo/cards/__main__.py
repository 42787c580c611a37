"""``python -m zoo.cards --write | --check [--dir DIR] [--force]``: the ``zoo cards`` command.

One implementation (:func:`zoo.cli.cards.cmd_cards`), run through :func:`zoo.cli.main` so that the options, the
messages and the exit statuses are those of ``zoo cards``.
"""

from __future__ import annotations

import sys
from typing import Sequence

from ..cli import main as run_zoo


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``zoo cards ARGV`` (default: this process's arguments); return its exit status."""
    return run_zoo(["cards", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
