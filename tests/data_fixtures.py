"""Real volumes for tests, fetched once per machine by :mod:`export.data.fetch` (not a conftest: import the
fixtures you need, ``from data_fixtures import pyradiomics_dir``).

Cache folder: ``$ZOO_TEST_DATA``, else ``~/.cache/medzoo-test-data``. Only the pyradiomics sdist is fetched
automatically (about 1-3 s with pip's cache; 34 MB download otherwise); the Debian volumes (InVesalius head
CT, mricron Colin27) are used when already present there (``python -m export.data.fetch --out <cache>``)
and their tests skip otherwise. A failed fetch skips the tests that need the data, with the reason.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:           # export/ is a repository folder, not an installed package
    sys.path.insert(0, str(REPO))


def test_data_dir() -> Path:
    return Path(os.environ.get("ZOO_TEST_DATA") or Path.home() / ".cache" / "medzoo-test-data").expanduser()


test_data_dir.__test__ = False          # not a test, despite the name


@pytest.fixture(scope="session")
def pyradiomics_dir() -> Path:
    """Folder with the 10 pyradiomics NRRD volumes (chest CT, brain MR, breast MR) and their labels."""
    from export.data.fetch import FetchError, fetch

    from zoo.errors import ChecksumError

    try:
        fetch(test_data_dir(), what="pyradiomics", quiet=True)
    except (FetchError, ChecksumError, OSError) as exc:
        pytest.skip(f"pyradiomics test volumes unavailable (fetch into {test_data_dir()} failed): {exc}")
    return test_data_dir() / "pyradiomics"


def _present(source: str, name: str) -> Path:
    path = test_data_dir() / source / name
    if not path.is_file():
        pytest.skip(f"{path} not present; run: python -m export.data.fetch --out {test_data_dir()} "
                    f"--what {source}")
    return path


@pytest.fixture(scope="session")
def cranium_inv3() -> Path:
    """InVesalius ``Cranium.inv3`` head CT, when already fetched."""
    return _present("invesalius", "Cranium.inv3")


@pytest.fixture(scope="session")
def colin_nifti() -> Path:
    """mricron ``ch2.nii.gz`` (Colin27 T1), when already fetched."""
    return _present("mricron", "ch2.nii.gz")


def copies(source: Path, root: Path, n: int, name: str = "chest.nrrd") -> list[Path]:
    """``n`` copies of ``source`` at ``root/case{i}/name``: distinct paths (so distinct keys and random draws
    in a prepared folder), the same bytes."""
    import shutil

    out = []
    for i in range(n):
        p = root / f"case{i}" / name
        p.parent.mkdir(parents=True)
        shutil.copyfile(source, p)
        out.append(p)
    return out
