"""``zoo publish DIR --repo ORG/NAME``: upload a model folder to the Hugging Face Hub (:mod:`zoo.publish`), wired
into ``zoo`` by :func:`add_subcommands`::

    zoo publish DIR --repo ORG/NAME [--i-hold-the-rights] [--dry-run] [--private] [--token TOKEN] [-m MESSAGE]
"""

from __future__ import annotations

import argparse
from typing import Any

from .commands import add_command


def cmd_publish(args: argparse.Namespace) -> int:
    from ..publish import publish

    result = publish(args.dir, args.repo, i_hold_the_rights=args.i_hold_the_rights, token=args.token,
                     private=args.private, dry_run=args.dry_run, commit_message=args.message)
    print(result)
    if not result.dry_run:
        print("\nTo pin this upload in the registry, use in zoo/entries/<family>.py:\n" + result.registry_snippet())
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Register ``publish`` on ``subparsers`` (from ``add_subparsers``)."""


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
