"""``zoo list``, ``zoo info NAME``, ``zoo download NAME...``, ``zoo convert FILE -o OUT``: the registry and its
weights, wired into ``zoo`` by :func:`add_subcommands`::

    zoo list [PATTERN] [--modality CT|MR] [--arch ARCH] [--pretrained] [--json]
    zoo info NAME [--json] [--bibtex] [--revision REV] [--cache-dir DIR]     (NAME: an entry, a model folder, or
                                                                             hf-hub:ORG/NAME[@REVISION])
    zoo download NAMES... [--checkpoint FILE] [--cache-dir DIR] [--force]
    zoo convert FILE -o OUT.safetensors [--model NAME] [--format FORMAT] [--force]

Each command is ``cmd_<name>(args) -> int``; one that writes calls :func:`zoo.cli.outputs.guard_outputs` first.
"""

from __future__ import annotations

import argparse
import json
import os
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


def format_info(entry: registry.ModelEntry, hosted_lines: bool = True, cache_dir: str | None = None) -> str:
    """Human-readable summary of an entry (``zoo info``); ``hosted_lines``: say where its hosted copy is."""
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
    if hosted_lines:
        lines += _hosted_lines(entry, cache_dir)
    lines += [f"paper          {entry.paper.title}", f"               {entry.paper.url}"]
    return "\n".join(lines)


def _hosted_lines(entry: registry.ModelEntry, cache_dir: str | None = None) -> list[str]:
    """The ``hosted copy`` lines of ``zoo info``: the medzoo copy of the converted weights, if any, and which
    copies are converted in the cache now (what the next ``zoo.load`` uses without network access)."""
    from ..weights import cached_origins

    hosted = entry.hosted
    if hosted is not None:
        lines = [
            f"hosted copy    {hosted.repo_id}/{hosted.filename} (safetensors, no pickle), revision "
            f"{hosted.revision or 'main (not pinned yet)'}",
            f"               sha256 {hosted.sha256 or 'not recorded: the Hub LFS hash is checked'}; zoo.load uses "
            "it first, the upstream file when it cannot be downloaded",
        ]
    elif not entry.license.redistributable:
        lines = ["hosted copy    none: the licence forbids re-hosting (converted only in your cache)"]
    else:
        lines = ["hosted copy    not published yet (zoo build-hosted, then zoo publish)"]
    cached = cached_origins(entry, cache_dir)
    if cached:
        names = {"hosted": "the hosted copy", "upstream": "the upstream file"}
        lines.append(f"in cache       converted from {' and '.join(names[c] for c in cached)}")
    return lines


def format_hub_info(entry: registry.ModelEntry, folder: Any) -> str:
    """``zoo info hf-hub:ORG/NAME``: the facts of the repo's config.json, as for an entry, and the repo's files."""
    readme = f"README.md ({folder.readme.stat().st_size:,} bytes)" if folder.readme else "no README.md (no card)"
    return "\n".join([
        format_info(entry, hosted_lines=False),
        f"hub repo       {folder.ref.repo_id} at commit {folder.commit}",
        f"files          config.json, model.safetensors, {readme}",
        f"load           zoo.load(\"hf-hub:{folder.ref.repo_id}@{folder.commit}\")",
    ])


def cmd_info(args: argparse.Namespace) -> int:
    from ..hub.repo import fetch_hub_model, hub_entry, is_hub_name, parse_hub_name
    from ..loading import entry_for_name

    folder = None
    if is_hub_name(args.name):  # config.json and README.md only: the weights are not downloaded
        folder = fetch_hub_model(parse_hub_name(args.name, args.revision), weights=False, cache_dir=args.cache_dir)
        entry = hub_entry(folder)
    else:
        entry = entry_for_name(args.name, args.revision, None, weights=False, cache_dir=args.cache_dir,
                               force_download=False, progress=False)[0]
    if args.json:
        info = entry.to_dict()
        if folder is not None:
            info["hub"] = {"repo_id": folder.ref.repo_id, "commit": folder.commit,
                           "readme": folder.readme is not None}
        print(json.dumps(info, indent=2))
    else:
        registered = folder is None and not os.path.isdir(args.name)
        print(format_info(entry, hosted_lines=registered, cache_dir=args.cache_dir) if folder is None
              else format_hub_info(entry, folder))
        if args.bibtex:
            print("\n" + entry.paper.bibtex)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from ..weights import locate_weights

    guard_outputs(args, cache_targets(args.cache_dir), inputs=[args.checkpoint])
    for name in args.names:
        entry = registry.get_entry(name)
        found = locate_weights(entry, checkpoint=args.checkpoint, cache_dir=args.cache_dir,
                               force_download=args.force, verify=True, progress=True)
        print(f"{name}: {found.path} ({found.verified_by}; {found.describe})")
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
    p.add_argument("name", help="registry name, model folder, or hf-hub:ORG/NAME[@REVISION] (reads only its "
                                "config.json and README.md)")
    p.add_argument("--revision", help="for hf-hub: names, a branch, tag or commit")
    p.add_argument("--cache-dir", help="the medzoo cache to look in (hf-hub: downloads go to CACHE_DIR/hub)")
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
