"""Real CT cubes for the Genesis corruption benchmark: pyradiomics' two public chest CT volumes (``lung1``,
``lung2``; BSD-3, fetched once by :mod:`export.data.fetch` into the test-data cache, as the tests do), read,
resampled to the Genesis spacing (1.5, 1, 1) mm (z, y, x), scaled with the Genesis CT scheme (HU clipped to
[-1000, 1000] -> [0, 1]) and cut into 32 x 64 x 64 (z, y, x) cubes with the ``demo`` preset's acceptance rule
(at least 30 % of voxels at or above -150 HU; the upstream lung rule accepts no cube of these two small
volumes after resampling). About 5 s on 2 cores.

    from genesis_ct_cubes import ct_cubes
    cubes = ct_cubes()          # (128, 1, 32, 64, 64) float32 in [0, 1]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VOLUMES = ("lung1_image.nrrd", "lung2_image.nrrd")
SPACING_ZYX = (1.5, 1.0, 1.0)
CUBE_ZYX = (32, 64, 64)
MIN_FOREGROUND = 0.3


def data_dir() -> Path:
    """The test-data cache of ``tests/data_fixtures.py``: ``$ZOO_TEST_DATA``, else ``~/.cache/medzoo-test-data``."""
    return Path(os.environ.get("ZOO_TEST_DATA") or Path.home() / ".cache" / "medzoo-test-data").expanduser()


def ct_cubes(per_volume: int = 64, seed: int = 0, resample_volumes: bool = True) -> np.ndarray:
    """``(k, 1, 32, 64, 64)`` float32 Genesis cubes in [0, 1] from the two pyradiomics chest CTs
    (``per_volume`` tried per volume)."""
    from export.data.fetch import fetch

    from zoo.io import normalize, read_volume, resample, sample_cubes

    root = data_dir()
    fetch(root, what="pyradiomics", quiet=True)
    cubes = []
    for i, name in enumerate(VOLUMES):
        volume = read_volume(root / "pyradiomics" / name)
        if resample_volumes:
            volume = resample(volume, SPACING_ZYX)
        volume = normalize(volume, "genesis_ct")
        cubes.append(sample_cubes(volume, CUBE_ZYX, per_volume, np.random.default_rng(seed + i),
                                  max_tissue=None, min_foreground=MIN_FOREGROUND))
    return np.ascontiguousarray(np.concatenate(cubes)[:, None], dtype=np.float32)
