"""Model cards generated from the registry: ``model_cards/<name>.md`` and the index ``model_cards/README.md``.

    python -m zoo.cards --write     # regenerate every card and the index (removes cards of deleted entries)
    python -m zoo.cards --check     # exit 1 and list what is stale (CI); same as ``zoo cards --check``

Facts come from the registry (:mod:`zoo.registry`, ``zoo/entries/``); prose, published results and licence notes
from :mod:`zoo.cards.prose`; the text from :func:`zoo.cards.render.render_card`. A generated file carries
:data:`GENERATED_MARKER`; only files with it are ever deleted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .index import GENERATED_MARKER, parameter_count, render_index
from .render import card_data, card_metadata, render_card

INDEX = "README.md"

__all__ = [
    "GENERATED_MARKER",
    "INDEX",
    "card_data",
    "card_metadata",
    "check_cards",
    "default_cards_dir",
    "generate_cards",
    "parameter_count",
    "render_card",
    "render_index",
    "write_cards",
]


def default_cards_dir() -> Path:
    """``model_cards/`` of the source checkout (next to the ``zoo`` package), else ``./model_cards``."""
    here = Path(__file__).resolve().parent.parent.parent / "model_cards"
    if here.is_dir():
        return here
    return Path.cwd() / "model_cards"


def generate_cards(names: Iterable[str] | None = None) -> dict[str, str]:
    """File name -> content for every registry entry (or ``names``) plus the index."""
    from ..registry import all_entries, get_entry

    entries = all_entries() if names is None else [get_entry(n) for n in names]
    files = {f"{e.name}.md": render_card(e) for e in entries}
    if names is None:
        files[INDEX] = render_index(entries)
    return files


def _generated_orphans(directory: Path, expected: Iterable[str]) -> list[Path]:
    expected = set(expected)
    orphans = []
    for path in sorted(directory.glob("*.md")):
        if path.name in expected:
            continue
        try:
            if GENERATED_MARKER in path.read_text(encoding="utf-8"):
                orphans.append(path)
        except OSError:
            continue
    return orphans


def check_cards(directory: str | os.PathLike | None = None) -> list[str]:
    """What is stale in ``directory`` against the registry: one line per missing, outdated or orphaned file.

    An empty list means every card and the index are exactly what ``--write`` would produce.
    """
    directory = Path(directory) if directory is not None else default_cards_dir()
    expected = generate_cards()
    problems = []
    for name, text in expected.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"missing: {path}")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"stale: {path}")
    for path in _generated_orphans(directory, expected):
        problems.append(f"orphaned (no registry entry): {path}")
    return problems


def write_cards(directory: str | os.PathLike | None = None) -> list[Path]:
    """Write every card and the index into ``directory``; delete generated cards of removed entries.

    Returns the files written or deleted (unchanged files are not rewritten).
    """
    from ..hub.integrity import atomic_path

    directory = Path(directory) if directory is not None else default_cards_dir()
    directory.mkdir(parents=True, exist_ok=True)
    expected = generate_cards()
    changed = []
    for name, text in expected.items():
        path = directory / name
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        changed.append(path)
    for path in _generated_orphans(directory, expected):
        path.unlink()
        changed.append(path)
    return changed
