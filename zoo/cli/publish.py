"""``zoo publish DIR --repo ORG/NAME``: upload a model folder to the Hugging Face Hub (:mod:`zoo.publish`);
``zoo build-hosted OUT [NAMES...]``: build the publishable folder of every entry whose licence allows re-hosting
(:mod:`zoo.hosted`). Wired into ``zoo`` by :func:`add_subcommands`::

    zoo publish DIR --repo ORG/NAME [--i-hold-the-rights] [--dry-run] [--private] [--token TOKEN] [-m MESSAGE]
    zoo build-hosted OUT [NAMES...] [--org ORG] [--cache-dir DIR] [--force]
"""

from __future__ import annotations

import argparse
from typing import Any

from .commands import add_command
from .outputs import Target, add_force_option, cache_targets, guard_outputs


def cmd_publish(args: argparse.Namespace) -> int:
    from ..publish import publish

    result = publish(args.dir, args.repo, i_hold_the_rights=args.i_hold_the_rights, token=args.token,
                     private=args.private, dry_run=args.dry_run, commit_message=args.message)
    print(result)
    if not result.dry_run:
        print("\nTo pin this upload in the registry, use in zoo/entries/<family>.py:\n" + result.registry_snippet())
    return 0


def cmd_build_hosted(args: argparse.Namespace) -> int:
    from ..hosted import build_hosted

    guard_outputs(args, [Target.of(args.out, "OUT", kind="folder", existing="extend"), *cache_targets(args.cache_dir)])
    results = build_hosted(args.out, args.names or None, org=args.org, force=args.force, cache_dir=args.cache_dir)
    for result in results:
        print(result)
    counts = {status: sum(r.status == status for r in results) for status in ("built", "refused", "skipped", "failed")}
    print("\n" + ", ".join(f"{n} {status}" for status, n in counts.items()))
    return 1 if counts["failed"] else 0


_BUILD_HOSTED_HELP = """\
For each entry (default: all), in registry order:
  refused  its licence (or that of an entry it derives from) forbids redistribution: the reason is printed;
  skipped  it has no published weights;
  built    OUT/NAME holds model.safetensors (the upstream weights, downloaded, verified and converted),
           config.json (the entry's facts, sha256 and provenance) and README.md (the card of the copy at
           ORG/NAME), checked by `zoo publish --dry-run`; upload it with `zoo publish OUT/NAME --repo ORG/NAME`
           and record the printed CheckpointSource as the entry's hosted= source;
  failed   the weights could not be obtained or written (the error is printed; exit status 1).
An existing OUT/NAME is replaced only with --force."""


def add_subcommands(subparsers: Any) -> None:
    """Register ``publish`` and ``build-hosted`` on ``subparsers`` (from ``add_subparsers``)."""


    p = add_command(subparsers, "publish", cmd_publish,
                    "upload a model folder (config.json + model.safetensors) to the Hub")
    p.add_argument("dir", help="model folder")
    p.add_argument("--repo", required=True, help="ORG/NAME on the Hugging Face Hub")
    p.add_argument("--i-hold-the-rights", action="store_true",
                   help="publish even though the recorded licence forbids redistribution: you hold the rights")
    p.add_argument("--dry-run", action="store_true", help="show the commit (files, sizes, sha256) without uploading")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--token", help="Hub token (default: the logged-in token / $HF_TOKEN)")
    p.add_argument("-m", "--message", help="commit message")

    p = add_command(subparsers, "build-hosted", cmd_build_hosted,
                    "build the publishable folder of every entry whose licence allows re-hosting")
    p.epilog, p.formatter_class = _BUILD_HOSTED_HELP, argparse.RawDescriptionHelpFormatter
    p.add_argument("out", metavar="OUT", help="folder that receives one model folder per entry (OUT/NAME)")
    p.add_argument("names", metavar="NAMES", nargs="*", help="registry names (default: every entry)")
    p.add_argument("--org", default="medzoo", help="Hub organisation of the hosted repos ORG/NAME (default: medzoo)")
    p.add_argument("--cache-dir", help="medzoo cache for the upstream downloads and conversions")
    add_force_option(p, "an existing OUT/NAME")
