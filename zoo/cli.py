"""The ``zoo`` command line: ``zoo list``, ``zoo info NAME``, ``zoo download NAME``, ``zoo convert FILE``.

Each subcommand is one function ``cmd_<name>(args) -> int``; :func:`build_parser` wires them up. A command that
writes calls :func:`zoo.cli_outputs.guard_outputs` before any work (no output may be an input; an existing one is
replaced only with ``--force``).

Errors end in one line on stderr, ``zoo: error: <message>``, and exit status 2 (usage errors and refused
requests: every :class:`~zoo.errors.ZooError`) or 1 (anything else); ``--debug`` (before or after the
subcommand) also prints the traceback. Ctrl-C exits 130 without a message.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from typing import Callable, NoReturn, Sequence

from . import registry
from ._version import __version__
from .cli_outputs import (Target, add_force_option, cache_targets, describe_os_error, guard_outputs,
                          remembered_outputs)
from .errors import ZooError

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header))
    print(fmt.format(*["-" * w for w in widths]))
    for row in rows:
        print(fmt.format(*row))


def cmd_list(args: argparse.Namespace) -> int:
    names = registry.list_models(args.pattern or "*", modality=args.modality, architecture=args.arch,
                                 pretrained=True if args.pretrained else None)
    if args.json:
        print(json.dumps(names))
        return 0
    rows = []
    for name in names:
        e = registry.get_entry(name)
        rows.append([name, e.architecture, e.input.modality, str(e.input.in_channels), e.license.display,
                     "yes" if e.has_weights else "not published"])
    _print_table(rows, ["name", "architecture", "modality", "channels", "licence", "weights"])
    print(f"\n{len(rows)} models")
    return 0


def format_info(entry: registry.ModelEntry) -> str:
    """Human-readable summary of an entry (``zoo info``)."""
    src, inp, lic = entry.source, entry.input, entry.license
    lines = [
        entry.name,
        "=" * len(entry.name),
        entry.description,
        "",
        f"architecture   {entry.architecture} {dict(entry.arch_kwargs) if entry.arch_kwargs else ''}".rstrip(),
        f"input          {inp.in_channels} channel(s) {inp.modality}, axes (N, C, {', '.join(inp.axis_order)}), "
        f"patch {tuple(inp.patch_size)}, divisible by {inp.divisible_by}",
        f"spacing        {'native (no resampling)' if inp.spacing_mm is None else inp.spacing_mm}",
        f"intensity      {inp.intensity}",
        f"head           {entry.num_classes if entry.num_classes is not None else 'none (backbone)'}; "
        f"first conv {', '.join(entry.first_conv)}",
        f"pretraining    {entry.pretraining.data}",
        f"               {entry.pretraining.method}",
        f"licence        {lic.display}" + (f" ({lic.link})" if lic.link else "")
        + ("" if lic.redistributable else "; converted locally, never re-hosted"),
    ]
    if lic.card_license:
        lines.append(f"               upstream Hub card says {lic.card_license!r} (conflicts with the licence of record)")
    if lic.notice:
        lines.append(f"notice         {lic.notice}")
    if src is None:
        lines.append(f"weights        not published{': ' + entry.weights_note if entry.weights_note else ''}")
    else:
        where = f"zoo/assets/{src.package_file}" if src.package_file else f"{src.repo_id}/{src.filename}"
        lines += [
            f"weights        {where} ({src.format})",
            f"revision       {src.revision or 'main (not pinned yet)'}" + (f"; {src.revision_note}" if src.revision_note else ""),
            f"sha256         {src.sha256 or 'not recorded'}" + (f", {src.size:,} bytes" if src.size else ""),
            f"verification   {src.verification}",
        ]
        if not src.package_file:
            lines.append(f"url            {src.url}")
    lines += [f"paper          {entry.paper.title}", f"               {entry.paper.url}"]
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    entry = registry.get_entry(args.name)
    if args.json:
        print(json.dumps(entry.to_dict(), indent=2))
    else:
        print(format_info(entry))
        if args.bibtex:
            print("\n" + entry.paper.bibtex)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .loading import resolve_weights

    guard_outputs(args, cache_targets(args.cache_dir), inputs=[args.checkpoint])
    for name in args.names:
        entry = registry.get_entry(name)
        path, verified = resolve_weights(entry, checkpoint=args.checkpoint, cache_dir=args.cache_dir,
                                         force_download=args.force, verify=True, progress=True)
        print(f"{name}: {path} ({verified})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert.standalone import convert_file

    guard_outputs(args, [Target.of(args.output, "-o")], inputs=[args.file])
    result = convert_file(args.file, args.output, model=args.model, fmt=args.format, progress=True)
    print(f"{result.model}: wrote {result.path} ({result.tensors} tensors, sha256 {result.sha256})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo_inputs, run_demo

    guard_outputs(args, [Target.of(args.output, "-o", "folder"), *cache_targets(None)], inputs=demo_inputs())
    run_demo(args.output, seed=args.seed)
    return 0


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
    parser = OneLineParser(prog="zoo", description="medzoo: pretrained 3D medical imaging models")
    parser.add_argument("--version", action="version", version=f"medzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("list", cmd_list, "list registered models")
    p.add_argument("pattern", nargs="?", help="shell wildcard, e.g. 'med3d-*'")
    p.add_argument("--modality", help="CT or MR")
    p.add_argument("--arch", help="architecture name (wildcards allowed)")
    p.add_argument("--pretrained", action="store_true", help="only models with downloadable weights")
    p.add_argument("--json", action="store_true")

    p = add("info", cmd_info, "show everything the registry knows about a model")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.add_argument("--bibtex", action="store_true", help="also print the citation")

    p = add("download", cmd_download, "download, verify and convert weights into the local cache")
    p.add_argument("names", nargs="+")
    p.add_argument("--checkpoint", help="use this local upstream file instead of downloading")
    p.add_argument("--cache-dir")
    p.add_argument("--force", action="store_true", help="download again even if cached")

    p = add("convert", cmd_convert, "convert an upstream checkpoint file into safetensors")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True, help="output .safetensors path")
    p.add_argument("--model", help="registry name the file belongs to (detected from its keys if omitted)")
    p.add_argument("--format", help="upstream format (default: the model's)")
    add_force_option(p, "the output file")

    p = add("demo", cmd_demo, "offline demo: load genesis-ct-demo, adapt it to a 4-channel MRI nnU-Net plan, "
            "export nnU-Net pretrained weights, restore a damaged cube of a real CT")
    p.add_argument("-o", "--output", default="medzoo-demo", help="output folder (default: ./medzoo-demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruption of the CT cube")
    add_force_option(p, "files in a non-empty output folder")

    from .cli_adapt import add_subcommands as add_adapt_commands
    from .cli_cards import add_subcommands as add_card_commands

    add_adapt_commands(sub)
    add_card_commands(sub)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
