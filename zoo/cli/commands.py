"""The one way a command group registers a subcommand: a parser whose help is also its description and whose
``func`` default is the handler ``main`` calls with the parsed arguments (it returns the exit status)."""

from __future__ import annotations

import argparse
from typing import Any, Callable

Handler = Callable[[argparse.Namespace], int]


def add_command(subparsers: Any, name: str, func: Handler, help: str) -> argparse.ArgumentParser:
    """Add subcommand ``name`` to ``subparsers`` (from ``add_subparsers``) with handler ``func``."""
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.set_defaults(func=func)
    return parser
