"""``python -m zoo.cli ARGS``: the ``zoo`` command line (:func:`zoo.cli.main`), as ``python -m zoo``."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
