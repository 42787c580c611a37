"""export/common/prepare.py and streaming.py: the one preprocessing stage and the streaming loader.

Real CT: the chest CT crop shipped in the package, prepared with the Models Genesis recipe. Covers: a second
run skips every finished volume; two workers write byte-identical manifest and arrays to one; a folder
prepared with other parameters is refused with the differences named; ``strict`` stops at a bad volume and
keeps what was finished; a full disk leaves nothing half-written that a later run would trust; a new split
only rewrites roles; the loader gives the same batches with 0 and 2 workers, disjoint across ranks and
different per epoch; the dry run reads headers only and names the files that will fail.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from export.common import prepare as prep
from export.common.cubes import CubeBatches
from export.common.distributed import DistInfo
from export.common.prepare import (
    PreparationWriteError,
    PreparedMismatchError,
    VolumeFailedError,
    open_prepared,
    prepare_folder,
)
from export.common.streaming import StepLoader, VolumeArrays
from export.genesis.config import TrainConfig
from export.genesis.data import genesis_jobs, genesis_recipe

from data_fixtures import copies

REPO = Path(__file__).resolve().parents[1]
CT = REPO / "zoo" / "assets" / "demo" / "chest_ct_lung2_crop.nrrd"


def config(**changes) -> TrainConfig:
    base = dict(cube_zyx=(16, 32, 32), spacing_zyx=(2.5, 1.5, 1.5), cubes_per_volume=8, batch_size=4,
                max_tissue=None, min_foreground=0.2, val_fraction=0.25)
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> list[Path]:
    """Four copies of the real CT crop (distinct paths, so distinct keys and cube draws)."""
    return copies(CT, tmp_path_factory.mktemp("ct"), 4)


def run(cfg: TrainConfig, paths, folder: Path, **kwargs):
    jobs = genesis_jobs([str(p) for p in paths], None, cfg)
    return prepare_folder(genesis_recipe(cfg), jobs, folder, progress=False, log=lambda *_: None, **kwargs)


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_second_run_skips_finished_volumes(volumes, tmp_path, monkeypatch):
    cfg = config()
    first = run(cfg, volumes, tmp_path / "data")
    assert len(first.volumes) == 4 and not first.failed
    assert [v["role"] for v in first.volumes] == ["train"] * 3 + ["val"]
    calls = []
    real = prep.prepare_volume
    monkeypatch.setattr(prep, "prepare_volume", lambda *a: calls.append(a) or real(*a))
    again = run(cfg, volumes, tmp_path / "data")
    assert calls == [] and again.to_dict() == first.to_dict()
    # a changed source is prepared again, the others are not
    volumes[1].write_bytes(volumes[1].read_bytes() + b"")  # same bytes, new date: sha256 decides
    changed = tmp_path / "changed.nrrd"
    shutil.copyfile(CT, changed)
    run(cfg, [*volumes, changed], tmp_path / "data")
    assert sorted(Path(c[2].sources[0]).name for c in calls) == ["changed.nrrd", "chest.nrrd"]


def test_two_workers_write_the_same_bytes_as_one(volumes, tmp_path):
    cfg = config()
    run(cfg, volumes, tmp_path / "one", workers=1)
    run(cfg, volumes, tmp_path / "two", workers=2)
    one, two = tree_digest(tmp_path / "one"), tree_digest(tmp_path / "two")
    assert one == two and "manifest.json" in one and len([k for k in one if k.endswith(".npy")]) == 4
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text(encoding="utf-8"))
    v = manifest["volumes"][0]
    assert v["facts"]["spacing_zyx"] == [2.5, 1.5, 1.5] and len(v["facts"]["boxes"]) == 8
    assert v["sources"][0]["sha256"] == hashlib.sha256(CT.read_bytes()).hexdigest()
    assert set(v["facts"]["stats"]) == {"mean", "std", "min", "max", "p005", "p995"}
    assert "mtime_ns" not in json.dumps(manifest)      # no file dates: the same inputs give the same manifest


def test_other_parameters_are_refused_with_the_differences(volumes, tmp_path):
    run(config(), volumes[:2], tmp_path / "data")
    with pytest.raises(PreparedMismatchError) as err:
        run(config(spacing_zyx=(2.0, 1.5, 1.5)), volumes[:2], tmp_path / "data")
    assert "spacing_zyx: [2.5, 1.5, 1.5] there, [2.0, 1.5, 1.5] now" in str(err.value)
    assert "--prepared" in str(err.value) and set(err.value.differences) == {"spacing_zyx"}
    with pytest.raises(PreparedMismatchError):
        open_prepared(tmp_path / "data", genesis_recipe(config(cubes_per_volume=9)))
    assert len(open_prepared(tmp_path / "data", genesis_recipe(config())).volumes) == 2


def test_strict_stops_at_a_bad_volume_and_keeps_what_was_done(volumes, tmp_path):
    junk = tmp_path / "junk.nrrd"
    junk.write_bytes(b"NRRD0004\nthis is not a volume\n")
    paths = [volumes[0], junk, volumes[1]]
    with pytest.raises(VolumeFailedError) as err:
        run(config(), paths, tmp_path / "data", strict=True)
    assert err.value.path == str(junk) and "junk.nrrd" in str(err.value)
    records = sorted(p.name for p in (tmp_path / "data" / "records").iterdir())
    assert len(records) == 2 and any(r.startswith("chest") for r in records)   # the first volume is kept
    lenient = run(config(), paths, tmp_path / "data")
    assert len(lenient.volumes) == 2 and lenient.failed[0]["sources"][0]["path"] == str(junk)


def test_a_full_disk_leaves_nothing_a_later_run_would_trust(volumes, tmp_path, monkeypatch):
    real_save = np.save
    state = {"n": 0}

    def filling_disk(fh, array, **kwargs):
        state["n"] += 1
        if state["n"] == 2:                            # the second volume: half the bytes, then ENOSPC
            fh.write(b"\x93NUMPY" + b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(fh, array, **kwargs)

    monkeypatch.setattr(prep.np, "save", filling_disk)
    with pytest.raises(PreparationWriteError) as err:
        run(config(), volumes[:3], tmp_path / "data")
    assert "disk is full" in str(err.value) and "kept" in str(err.value)
    leftovers = [p.name for p in (tmp_path / "data").rglob("*") if p.name.endswith(".partial")]
    assert leftovers == []
    assert len(list((tmp_path / "data" / "records").iterdir())) == 1
    assert len(list((tmp_path / "data" / "volumes").iterdir())) == 1
    monkeypatch.setattr(prep.np, "save", real_save)
    calls = []
    real = prep.prepare_volume
    monkeypatch.setattr(prep, "prepare_volume", lambda *a: calls.append(a) or real(*a))
    done = run(config(), volumes[:3], tmp_path / "data")
    assert len(done.volumes) == 3 and len(calls) == 2


def test_a_damaged_array_is_prepared_again(volumes, tmp_path, monkeypatch):
    first = run(config(), volumes[:2], tmp_path / "data")
    path = first.path(first.volumes[0])
    path.write_bytes(path.read_bytes()[:-100])          # truncated behind our back
    calls = []
    real = prep.prepare_volume
    monkeypatch.setattr(prep, "prepare_volume", lambda *a: calls.append(a) or real(*a))
    run(config(), volumes[:2], tmp_path / "data")
    assert [c[2].key for c in calls] == [first.volumes[0]["key"]]


def test_a_new_split_rewrites_roles_only(volumes, tmp_path, monkeypatch):
    run(config(), volumes, tmp_path / "data")
    calls = []
    real = prep.prepare_volume
    monkeypatch.setattr(prep, "prepare_volume", lambda *a: calls.append(a) or real(*a))
    cfg = config()
    jobs = genesis_jobs([str(p) for p in volumes[:2]], [str(p) for p in volumes[2:]], cfg)
    m = prepare_folder(genesis_recipe(cfg), jobs, tmp_path / "data", progress=False, log=lambda *_: None)
    assert calls == [] and [v["role"] for v in m.volumes] == ["train", "train", "val", "val"]


def test_loader_batches_do_not_depend_on_workers_and_shard_ranks(volumes, tmp_path):
    m = run(config(), volumes, tmp_path / "data")
    batches = {}
    for workers in (0, 2):
        plan = CubeBatches(m, "train", (16, 32, 32), 2, seed=3)
        loader = StepLoader(plan, workers=workers)
        batches[workers] = [[b.clone() for b in loader.epoch(e)] for e in (0, 1)]
    assert len(batches[0][0]) == 24 // 2
    for e in (0, 1):
        for a, b in zip(batches[0][e], batches[2][e]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(batches[0][0][0], batches[0][1][0])          # reshuffled per epoch
    # two ranks: disjoint shards of the same permutation, together the whole pool
    rows = []
    for rank in (0, 1):
        plan = CubeBatches(m, "train", (16, 32, 32), 2, seed=3, info=DistInfo(rank, 2))
        rows.append({int(i) for s in range(len(plan)) for i in plan.indices(5, s)})
    assert not rows[0] & rows[1] and len(rows[0] | rows[1]) == 24
    # validation: the whole pool in order, the same for every rank
    val = CubeBatches(m, "val", (16, 32, 32), 3, seed=3, shuffle=False, info=DistInfo(1, 2))
    assert len(val) == 3 and val.load(0, 2).shape == (2, 1, 16, 32, 32)


def test_open_maps_are_bounded(volumes, tmp_path):
    m = run(config(), volumes, tmp_path / "data")
    arrays = VolumeArrays(max_open=2)
    for v in m.volumes:
        arrays(m.path(v))
    assert len(arrays._open) == 2
    clone = __import__("pickle").loads(__import__("pickle").dumps(arrays))
    assert len(clone._open) == 0 and clone.max_open == 2


def test_dry_run_reads_headers_and_names_failing_files(volumes, tmp_path, capsys):
    from export.genesis.__main__ import main

    junk = tmp_path / "junk.nrrd"
    junk.write_bytes(b"NRRD0004\ntype: short\n")
    out = tmp_path / "run"
    code = main(["--data", str(junk), *map(str, volumes), "--out", str(out), "--preset", "demo", "--dry-run"])
    text = capsys.readouterr().out
    assert code == 0 and not out.exists()                       # nothing written
    assert "dry run: 5 volumes (3 train, 1 val), 1 will fail" in text
    assert f"will fail: {junk}: NRRD header is cut off" in text
    assert "steps per epoch: 24" in text                       # 3 x 64 cubes / batch 8
