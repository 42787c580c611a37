"""The ``zoo`` command line: ``zoo list``, ``zoo info NAME``, ``zoo download NAME``, ``zoo convert FILE``.

Each subcommand is one function ``cmd_<name>(args) -> int``; :func:`build_parser` wires them up.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from . import registry
from ._version import __version__
from .errors import ZooError


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

    for name in args.names:
        entry = registry.get_entry(name)
        path, verified = resolve_weights(entry, checkpoint=args.checkpoint, cache_dir=args.cache_dir,
                                         force_download=args.force, verify=True, progress=True)
        print(f"{name}: {path} ({verified})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert.standalone import convert_file

    result = convert_file(args.file, args.output, model=args.model, fmt=args.format, progress=True)
    print(f"{result.model}: wrote {result.path} ({result.tensors} tensors, sha256 {result.sha256})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.output, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="medzoo: pretrained 3D medical imaging models")
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

    p = add("demo", cmd_demo, "offline demo: load genesis-ct-demo, adapt it to a 4-channel MRI nnU-Net plan, "
            "export nnU-Net pretrained weights, restore a damaged cube of a real CT")
    p.add_argument("-o", "--output", default="medzoo-demo", help="output folder (default: ./medzoo-demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruption of the CT cube")

    from .cli_adapt import add_subcommands as add_adapt_commands
    from .cli_cards import add_subcommands as add_card_commands

    add_adapt_commands(sub)
    add_card_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ZooError as err:
        print(f"zoo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
