"""``zoo list``, ``zoo info NAME``, ``zoo download NAME...``, ``zoo convert FILE -o OUT``: the registry and its
weights, wired into ``zoo`` by :func:`add_subcommands`::

    zoo list [PATTERN] [--modality CT|MR] [--arch ARCH] [--pretrained] [--json]
    zoo info NAME [--json] [--bibtex]
    zoo download NAMES... [--checkpoint FILE] [--cache-dir DIR] [--force]
    zoo convert FILE -o OUT.safetensors [--model NAME] [--format FORMAT] [--force]

Each command is ``cmd_<name>(args) -> int``; one that writes calls :func:`zoo.cli.outputs.guard_outputs` first.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import registry
from .commands import add_command
from .outputs import Target, add_force_option, cache_targets, guard_outputs


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header).rstrip())
    print(fmt.format(*["-" * w for w in widths]).rstrip())
    for row in rows:
        print(fmt.format(*row).rstrip())


def list_pattern(pattern: str | None) -> str:
    """``zoo list``'s pattern: shell wildcards as given; a plain word matches anywhere in the name
    (``zoo list resnet`` is ``zoo list '*resnet*'``)."""
    if not pattern:
        return "*"
    return pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"


def _licence_label(lic: registry.License) -> str:
    """The licence's Hub id; ``other`` licences say where their terms are (``zoo info NAME``)."""
    return lic.spdx if lic.spdx != "other" else "other (zoo info)"


def cmd_list(args: argparse.Namespace) -> int:
    names = registry.list_models(list_pattern(args.pattern), modality=args.modality, architecture=args.arch,
                                 pretrained=True if args.pretrained else None)
    if args.json:
        print(json.dumps(names))
        return 0
    rows = []
    for name in names:
        e = registry.get_entry(name)
        rows.append([name, e.architecture, e.input.modality, str(e.input.in_channels), _licence_label(e.license),
                     "yes" if e.has_weights else "no"])
    _print_table(rows, ["name", "architecture", "modality", "channels", "licence", "weights"])
    print(f"\n{len(rows)} models")
    return 0


def format_output(entry: registry.ModelEntry) -> list[str]:
    """The ``output`` lines of ``zoo info``: what forward returns, how to read it, and what a new head returns."""
    out = entry.output
    lines = [f"output         {out.summary}"]
    if out.scale:
        lines.append(f"               scale: {out.scale}")
    if out.resolution:
        lines.append(f"               size: {out.resolution}")
    if out.new_head:
        lines.append(f"               {out.new_head}")
    return lines


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
        *format_output(entry),
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
    from ..weights import resolve_weights

    guard_outputs(args, cache_targets(args.cache_dir), inputs=[args.checkpoint])
    for name in args.names:
        entry = registry.get_entry(name)
        path, verified = resolve_weights(entry, checkpoint=args.checkpoint, cache_dir=args.cache_dir,
                                         force_download=args.force, verify=True, progress=True)
        print(f"{name}: {path} ({verified})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ..convert.standalone import convert_file

    guard_outputs(args, [Target.of(args.output, "-o")], inputs=[args.file])
    result = convert_file(args.file, args.output, model=args.model, fmt=args.format, progress=True)
    print(f"{result.model}: wrote {result.path} ({result.tensors} tensors, sha256 {result.sha256})")
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Register ``list``, ``info``, ``download`` and ``convert`` on ``subparsers`` (from ``add_subparsers``)."""


    p = add_command(subparsers, "list", cmd_list, "list registered models")
    p.add_argument("pattern", nargs="?", help="shell wildcard ('med3d-*') or a word matched anywhere in the name ('resnet')")
    p.add_argument("--modality", help="CT or MR")
    p.add_argument("--arch", help="architecture name (wildcards allowed)")
    p.add_argument("--pretrained", action="store_true", help="only models with downloadable weights")
    p.add_argument("--json", action="store_true")

    p = add_command(subparsers, "info", cmd_info, "show everything the registry knows about a model")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.add_argument("--bibtex", action="store_true", help="also print the citation")

    p = add_command(subparsers, "download", cmd_download,
                    "download, verify and convert weights into the local cache")
    p.add_argument("names", nargs="+")
    p.add_argument("--checkpoint", help="use this local upstream file instead of downloading")
    p.add_argument("--cache-dir")
    p.add_argument("--force", action="store_true", help="download again even if cached")

    p = add_command(subparsers, "convert", cmd_convert, "convert an upstream checkpoint file into safetensors")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True, help="output .safetensors path")
    p.add_argument("--model", help="registry name the file belongs to (detected from its keys if omitted)")
    p.add_argument("--format", help="upstream format (default: the model's)")
    add_force_option(p, "the output file")
