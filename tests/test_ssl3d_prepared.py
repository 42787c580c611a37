"""export/ssl3d on the shared preprocessing stage: the prepared folder holds the clipped, z-scored volume and the
boxes chosen by today's rules; a second run skips prepared volumes; two preparing workers write the same bytes as
one; the loader gives the same batches with 0 and 2 workers; a resumed run continues exactly; exemplar negatives
come from the batch; the dry run names the files that will fail from headers alone; the command line prepares
once (--prepare-only) and trains from the folder without --data.

Real CT: copies of the chest CT crop shipped in the package.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from export.common.distributed import DistInfo
from export.common.prepare import PreparedMismatchError, prepare_folder
from export.common.streaming import StepLoader
from export.ssl3d.config import preset
from export.ssl3d.data import (
    ArrayCubes,
    clip_zscore_with_stats,
    ssl_data,
    ssl_recipe,
    volume_jobs,
)
from export.ssl3d.encoders import encoder_spec

from test_ssl3d import CT, TINY_FEATURES, tiny

from data_fixtures import copies

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")
QUIET = dict(progress=False, log=lambda *_: None)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> list[Path]:
    """Three copies of the real CT crop (distinct paths: distinct keys and box draws)."""
    return copies(CT, tmp_path_factory.mktemp("ct"), 3)


def test_prepared_volume_is_the_normalised_image_with_todays_boxes(volumes, tmp_path):
    from export.common.data import clip_zscore
    from zoo.io import read_volume, resample

    cfg = tiny("rotation", val_fraction=0.34)
    manifest = prepare_folder(ssl_recipe(cfg), volume_jobs(volumes, None, cfg), tmp_path, **QUIET)
    assert [v["role"] for v in manifest.volumes] == ["train", "train", "val"]
    record = manifest.volumes[0]
    facts = record["facts"]
    image = np.load(manifest.path(record))
    expected = clip_zscore(resample(read_volume(volumes[0]), cfg.spacing_zyx).array)
    assert image.dtype == np.float32 and np.array_equal(image, expected)
    assert facts["shape_zyx"] == list(image.shape) == [61, 48, 48] and facts["spacing_zyx"] == [5.0, 2.5, 2.5]
    assert facts["source_shape_zyx"] == [61, 192, 192] and facts["modality"] == "unknown"
    assert facts["stats"]["p005"] < facts["stats"]["mean"] < facts["stats"]["p995"] and record["sources"][0]["sha256"]
    boxes = np.array(facts["boxes"])
    assert boxes.shape == (12, 6) and (boxes[:, 3:] == 16).all()
    assert (boxes[:, :3] >= 0).all() and (boxes[:, :3] + 16 <= np.array(image.shape)).all()
    for z, y, x, *_ in boxes:                                   # min_foreground: voxels above the volume mean
        assert (image[z:z + 16, y:y + 16, x:x + 16] >= 0).mean() >= cfg.min_foreground
    # the boxes are seeded by the volume's path: the copies differ, a second preparation repeats them
    assert facts["boxes"] != manifest.volumes[1]["facts"]["boxes"]
    a = np.random.default_rng(3).standard_normal((9, 10, 11)).astype(np.float32) * 50
    assert np.array_equal(clip_zscore_with_stats(a)[0], clip_zscore(a))


def test_second_run_skips_prepared_volumes_and_other_parameters_are_refused(volumes, tmp_path):
    cfg = tiny("rotation")
    jobs = volume_jobs(volumes, None, cfg)
    prepare_folder(ssl_recipe(cfg), jobs, tmp_path, **QUIET)
    arrays = sorted((tmp_path / "volumes").glob("*.npy"))
    stamps = [p.stat().st_mtime_ns for p in arrays]
    lines: list[str] = []
    again = prepare_folder(ssl_recipe(cfg), jobs, tmp_path, progress=False, log=lines.append)
    assert any("3 of 3 volumes already prepared" in x for x in lines)
    assert [p.stat().st_mtime_ns for p in arrays] == stamps and len(again.volumes) == 3
    # a training-only change (another task with the same cube, the learning rate) reuses the folder
    assert ssl_recipe(tiny("exemplar", lr=0.5)).digest == ssl_recipe(cfg).digest
    with pytest.raises(PreparedMismatchError, match="cubes_per_volume"):
        prepare_folder(ssl_recipe(tiny("rotation", cubes_per_volume=5)), jobs, tmp_path, **QUIET)


def test_two_workers_write_the_same_manifest_and_arrays_as_one(volumes, tmp_path):
    cfg = tiny("jigsaw", sampling="resized", crop_fraction=(0.6, 1.0), cubes_per_volume=4)
    jobs = volume_jobs(volumes, None, cfg)
    prepare_folder(ssl_recipe(cfg), jobs, tmp_path / "one", workers=1, **QUIET)
    prepare_folder(ssl_recipe(cfg), jobs, tmp_path / "two", workers=2, **QUIET)
    assert (tmp_path / "one" / "manifest.json").read_bytes() == (tmp_path / "two" / "manifest.json").read_bytes()
    for p in sorted((tmp_path / "one" / "volumes").glob("*.npy")):
        assert p.read_bytes() == (tmp_path / "two" / "volumes" / p.name).read_bytes()
    boxes = json.loads((tmp_path / "one" / "manifest.json").read_text())["volumes"][0]["facts"]["boxes"]
    assert len(boxes) == 4 and all(0.6 * 48 - 1 <= min(b[3:]) for b in boxes)


def test_loader_gives_the_same_batches_with_0_and_2_workers(volumes, tmp_path):
    cfg = tiny("rotation", batch_size=3)
    data = ssl_data(prepare_folder(ssl_recipe(cfg), volume_jobs(volumes, None, cfg), tmp_path, **QUIET), cfg)
    assert (data.n_train, data.n_val) == (24, 12)
    plan = data.train_plan(cfg.batch_size, cfg.seed, DistInfo())
    seen = {}
    for workers in (0, 2):
        loader = StepLoader(plan, workers=workers)
        seen[workers] = [torch.stack(list(loader.epoch(e))) for e in (0, 1)]
    assert seen[0][0].shape == (8, 3, 1, 16, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(seen[0], seen[2]))
    assert not torch.equal(seen[0][0], seen[0][1])                      # a new permutation every epoch
    # two ranks: disjoint halves of the pool; validation cubes are the same for everyone
    halves = [data.train_plan(3, cfg.seed, DistInfo(rank=r, world=2)) for r in (0, 1)]
    rows = [set(np.concatenate([h.indices(0, s) for s in range(len(h))]).tolist()) for h in halves]
    assert len(halves[0]) == 4 and not rows[0] & rows[1]
    assert torch.equal(data.val_cubes(5), data.val_cubes(5)) and data.val_cubes(5).shape == (5, 1, 16, 16, 16)
    # in-memory cubes (tests, benchmarks) follow the same plan interface
    arrays = ArrayCubes(np.zeros((7, 1, 16, 16, 16), np.float32), np.ones((2, 1, 16, 16, 16), np.float32))
    assert len(arrays.train_plan(3, 1, DistInfo())) == 2 and arrays.val_cubes(4).shape == (4, 1, 16, 16, 16)


def test_resume_continues_exactly_with_or_without_loader_workers(tmp_path):
    from export.common.prepare import prepare_folder as prep
    from export.ssl3d.train import train

    cfg = tiny("rotation", max_epochs=2, steps_per_epoch=2)
    data = ssl_data(prep(ssl_recipe(cfg), volume_jobs([CT], None, cfg), tmp_path / "prepared", **QUIET), cfg)
    spec = encoder_spec("unet", features=TINY_FEATURES, dropout=0.0, norm_momentum=0.1)
    full = train(cfg, spec, data, tmp_path / "full", device="cpu", progress=False, loader_workers=2)
    train(tiny("rotation", max_epochs=1, steps_per_epoch=2), spec, data, tmp_path / "cut", device="cpu",
          progress=False)
    resumed = train(cfg, spec, data, tmp_path / "cut", device="cpu", progress=False, log=lambda *_: None)
    assert len(resumed.history.val_loss) == 2
    assert resumed.history.train_loss == full.history.train_loss and resumed.history.val_loss == full.history.val_loss
    for k, v in full.best_state.items():
        assert torch.equal(v, resumed.best_state[k]), k


def test_exemplar_negatives_come_from_the_other_cubes_of_the_batch(monkeypatch):
    from export.ssl3d import tasks as T

    monkeypatch.setattr(T, "exemplar_augment", lambda cube, g: cube)
    task = T.make_task(tiny("exemplar", batch_size=4), encoder_spec("unet", features=TINY_FEATURES))
    cubes = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1, 1).expand(6, 1, 16, 16, 16).contiguous()
    triplets, _ = task.make(cubes, torch.Generator().manual_seed(0))
    assert triplets.shape == (6, 3, 1, 16, 16, 16)
    others = triplets[:, 2, 0, 0, 0, 0].long().tolist()
    assert all(j != i for i, j in enumerate(others)) and len(set(others)) > 1
    assert torch.equal(triplets[:, 0], cubes) and torch.equal(triplets[:, 1], cubes)
    with pytest.raises(ValueError, match="batch-size 2 or more"):
        T.make_task(tiny("exemplar", batch_size=1), encoder_spec("unet", features=TINY_FEATURES))


def test_dry_run_reads_headers_and_names_the_files_that_will_fail(volumes, tmp_path, capsys):
    from export.demo_assets import write_nrrd
    from export.ssl3d.__main__ import main

    small = tmp_path / "data" / "small_mr.nrrd"
    small.parent.mkdir()
    write_nrrd(small, np.zeros((20, 40, 40), np.int16), (2.0, 2.0, 2.0), (0, 0, 0), None)
    out = tmp_path / "run"
    started = time.perf_counter()
    assert main(["--task", "rpl", "--preset", "demo", "--spacing", "5", "1", "1", "--data", str(small),
                 *map(str, volumes), "--out", str(out), "--dry-run"]) == 0
    assert time.perf_counter() - started < 15
    text = capsys.readouterr().out
    assert "dry run: 4 volumes (2 train, 1 val), 1 will fail" in text                 # the last copy validates
    assert f"will fail: {small}: volume of shape (z, y, x) = (8, 79, 79) after resampling to (5.0, 1.0, 1.0)" in text
    assert "smaller than the 3x3x3 grid" in text and "cubes per epoch: 128" in text
    assert "optimiser steps per epoch: 8 (batch 16" in text
    assert not out.exists()                                             # headers only: nothing written


def test_cli_prepares_once_then_trains_from_the_prepared_folder(tmp_path, capsys):
    from export.ssl3d.__main__ import main

    out = tmp_path / "run"
    common = ["--task", "rotation", "--preset", "demo", "--size", "16", "--spacing", "3", "3", "3",
              "--cubes-per-volume", "8", "--batch-size", "2", "--val-samples", "2", "--out", str(out), "--no-progress",
              "--loader-workers", "0", "--workers", "1"]
    assert main([*common, "--data", str(CT), "--prepare-only"]) == 0
    assert (out / "prepared" / "manifest.json").is_file() and not (out / "model").exists()
    capsys.readouterr()
    assert main([*common, "--max-steps", "1", "--epochs", "1"]) == 0              # no --data: OUT/prepared
    assert "1 of 1 volumes" not in capsys.readouterr().out                          # nothing prepared again
    prov = json.loads((out / "model" / "config.json").read_text())["provenance"]
    assert prov["data_files"][0]["path"] == str(CT) and len(prov["data_files"][0]["sha256"]) == 64
    recipe = ssl_recipe(preset("rotation", "demo", size=16, spacing_zyx=(3.0, 3.0, 3.0), cubes_per_volume=8))
    assert prov["prepared_data"]["digest"] == recipe.digest and prov["prepared_data"]["folder"] == str(out / "prepared")
    # another cube size with this folder is refused, naming the difference
    assert main([*common[:5], "20", *common[6:], "--max-steps", "1"]) == 2
    assert "size: 16 there, 20 now" in capsys.readouterr().err
