"""The ``zoo`` command line: :func:`main` parses the arguments and runs one command of a command group.

Command groups, one module each, every one registering its subcommands through ``add_subcommands(subparsers)``:
:mod:`~zoo.cli.models` (``list``, ``info``, ``download``, ``convert``), :mod:`~zoo.cli.demo` (``demo``),
:mod:`~zoo.cli.adapt` (``adapt``, ``export-nnunet``, ``plan``), :mod:`~zoo.cli.cards` (``card``, ``cards``),
:mod:`~zoo.cli.publish` (``publish``), :mod:`~zoo.cli.monai` (``export-monai``) and :mod:`~zoo.cli.mirror`
(``mirror export|import|verify``). Each subcommand
is one function ``cmd_<name>(args) -> int``; a command that writes calls :func:`zoo.cli.outputs.guard_outputs`
before any work (no output may be an input; an existing one is replaced only with ``--force``).

Errors end in one line on stderr, ``zoo: error: <message>``, and exit status 2 (usage errors and refused
requests: every :class:`~zoo.errors.ZooError`) or 1 (anything else); ``--debug`` (before or after the
subcommand) also prints the traceback. Ctrl-C exits 130 without a message.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from typing import Any, Callable, NoReturn, Sequence

from .._version import __version__
from ..errors import ZooError
from . import adapt, cards, demo, mirror, models, monai, publish
from .outputs import describe_os_error, remembered_outputs

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: the command groups in the order ``zoo --help`` lists their subcommands
COMMAND_GROUPS: tuple[Callable[[Any], None], ...] = (
    models.add_subcommands, demo.add_subcommands, adapt.add_subcommands, cards.add_subcommands,
    publish.add_subcommands, monai.add_subcommands, mirror.add_subcommands,
)


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line: ``zoo: error: <message>; see `zoo CMD --help```."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"zoo: error: {message}; see `{self.prog} --help`\n")


def _subparsers_of(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every subcommand parser below ``parser`` (nested ones too), each once."""
    found: dict[int, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if id(child) not in found:
                    found[id(child)] = child
                    found.update((id(p), p) for p in _subparsers_of(child))
    return list(found.values())


def _add_debug_option(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on ``zoo`` and on every subcommand, so it may come before or after the subcommand."""
    help = "on errors, also print the traceback"
    parser.add_argument("--debug", action="store_true", help=help)
    for child in _subparsers_of(parser):
        # SUPPRESS: a subcommand that was not given --debug must not reset the value `zoo --debug` set
        child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=help)


def build_parser() -> argparse.ArgumentParser:
    """The ``zoo`` parser: ``--version``, every command group's subcommands and ``--debug`` on each."""
    parser = OneLineParser(prog="zoo", description="medzoo: pretrained 3D medical imaging models")
    parser.add_argument("--version", action="version", version=f"medzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_subcommands in COMMAND_GROUPS:
        add_subcommands(sub)
    _add_debug_option(parser)
    return parser


def one_line(text: str) -> str:
    """``text`` with its lines joined, so that an error is exactly one line on stderr."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def error_message(err: BaseException, args: argparse.Namespace | None = None) -> str:
    """What ``zoo: error:`` says about ``err``: a ``ZooError``'s own message; for an ``OSError`` the path, the
    system's reason and its cause; otherwise the exception's type and message."""
    if isinstance(err, ZooError):
        text = str(err) or type(err).__name__
    elif isinstance(err, OSError):
        text = describe_os_error(err, remembered_outputs(args))
    else:
        text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        if not getattr(args, "debug", False):
            text += " (run with --debug for the traceback)"
    return one_line(text)


def report_error(err: BaseException, args: argparse.Namespace | None) -> int:
    """Print ``err`` as one line (after its traceback with ``--debug``); return the exit status."""
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    if getattr(args, "debug", False):
        traceback.print_exception(err)
    print(f"zoo: error: {error_message(err, args)}", file=sys.stderr)
    return EXIT_USAGE if isinstance(err, ZooError) else EXIT_FAILURE


def _stdout_reader_gone() -> bool:
    """True when stdout is a pipe whose reader has exited (``zoo list | head``): poll reports an error on it."""
    import select

    if not hasattr(select, "poll"):
        return False
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush into the closed pipe is quiet."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    """The parsed arguments, or the exit status when argparse stops (``--help``, ``--version``, a usage error)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``zoo``; return the exit status: 0, 1 (failure), 2 (usage error or refused request), 130 (Ctrl-C)."""
    args = _parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError as err:
        if not _stdout_reader_gone():
            return report_error(err, args)
        _silence_stdout()  # the reader of our output has gone: nothing to say, and nobody to say it to
        return EXIT_FAILURE
    except Exception as err:  # noqa: BLE001 - every error ends in one line (the traceback only with --debug)
        return report_error(err, args)
