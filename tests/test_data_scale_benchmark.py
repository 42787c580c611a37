"""benchmarks/data_scale.py: its verdicts, table, data layouts and the child bootstrap that measures a CLI.

A whole ``--quick --family genesis`` run takes minutes on 2 cores (one demo-network step alone is 15-60 s
there), so it is not run here; the pieces its numbers depend on are.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ds():
    spec = importlib.util.spec_from_file_location("data_scale_benchmark", REPO / "benchmarks" / "data_scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module            # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _row(first_step: float, rss: float, prep: dict, loader2: float = 300.0) -> dict:
    return {"prep_s": {str(k): v for k, v in prep.items()}, "prep_wall_s": {str(k): v + 5 for k, v in prep.items()},
            "first_forward_s": first_step - 1.0, "first_step_s": first_step, "peak_rss_mb": rss,
            "workers_peak_mb": 400.0, "loader": {"0": 100.0, "1": 200.0, "2": loader2},
            "prep_idle": {str(k): 0.5 / k for k in prep}, "start_idle": 0.25}


def _result(rows: dict, step_items_per_s: float = 10.0) -> dict:
    return {"family": "genesis", "command": "python -m export.genesis --preset demo", "source": "lung2_image.nrrd",
            "what": "cubes", "sizes": rows, "default_loader_workers": 1, "load_before": 1.0, "load_after": 1.5,
            "step": {"items_per_s": step_items_per_s, "step_s": 0.8, "batch": 8, "threads": 2}}


def test_all_targets_met(ds):
    result = _result({"4": _row(8.0, 1000.0, {1: 10.0, 2: 5.0}), "16": _row(9.0, 1100.0, {1: 40.0, 2: 21.0}),
                      "64": _row(10.0, 1200.0, {2: 80.0})})
    verdicts = {c.name: c for c in ds.checks(result)}
    assert [c.met for c in verdicts.values()] == [True] * 5
    assert "warm first step N=64 / N=4" in verdicts and verdicts["warm first step N=64 / N=4"].value == "1.25x"
    # the worker speed-up is judged at the largest N prepared both ways (64 was prepared with 2 workers only)
    assert "preparation 1 / 2 workers at N=16" in verdicts
    assert verdicts["preparation 1 / 2 workers at N=16"].value == "1.90x"


def test_each_target_can_fail(ds):
    rows = {"4": _row(8.0, 1000.0, {1: 10.0, 2: 8.0}), "64": _row(16.0, 1300.0, {1: 160.0, 2: 100.0}, loader2=20.0)}
    checks = ds.checks(_result(rows, step_items_per_s=10.0))
    assert [c.met for c in checks] == [False, False, False, False, False]
    assert all(c.verdict == "NOT MET" for c in checks)
    # exactly at the bounds: met
    rows = {"4": _row(8.0, 1000.0, {1: 17.0, 2: 10.0}), "64": _row(12.0, 1250.0, {1: 17.0, 2: 10.0}, loader2=30.0)}
    assert [c.met for c in ds.checks(_result(rows, step_items_per_s=10.0))] == [True] * 5


def test_busy_machine_is_named_beside_the_speed_up(ds):
    quiet = _row(8.0, 1000.0, {1: 10.0, 2: 8.0})                 # 1 worker left 50% of 2 cores idle
    busy = {**quiet, "prep_idle": {"1": 0.02, "2": 0.0}}
    result = {**_result({"4": quiet}), "cpus": 2}
    assert ds.checks(result)[3].note == ""
    check = ds.checks({**result, "sizes": {"4": busy}})[3]
    assert check.met is False and "machine busy: 2% idle" in check.note and "50% expected" in check.note
    assert "machine busy" in ds.table({**result, "sizes": {"4": busy}})
    assert ds.busy_note(busy, None) == "" and ds.busy_note(busy, 1) == ""


def test_single_size_leaves_ratios_unjudged(ds):
    checks = ds.checks(_result({"8": _row(20.0, 900.0, {2: 4.0})}))
    by_name = {c.name.split(" N=")[0].split(" at ")[0]: c for c in checks}
    assert by_name["warm first step"].met is None and by_name["warm first step"].verdict == "n/a"
    assert by_name["peak training RSS"].met is None
    assert by_name["preparation 1 / 2 workers"].met is None
    assert checks[1].met is False            # 20 s is over 15 s whatever the ratio


def test_table_lists_sizes_numbers_and_verdicts(ds):
    result = _result({"4": _row(8.0, 1000.0, {1: 10.0, 2: 5.0}), "64": _row(30.0, 2000.0, {2: 80.0})})
    text = ds.table(result)
    lines = text.splitlines()
    assert lines[0].startswith("genesis: python -m export.genesis --preset demo, copies of lung2_image.nrrd")
    size_rows = [ln for ln in lines if ln.split() and ln.split()[0] in ("4", "64")]
    assert len(size_rows) == 2
    assert "2.00x" in size_rows[0] and "30.0" in size_rows[1] and " - " in size_rows[1]   # no 1-worker run at 64
    assert "NOT MET" in text and " met" in text
    assert "0.80 s per batch of 8 = 10.00 cubes/s" in text
    assert "50%/25%" in size_rows[0] and "-/25%" in size_rows[1]      # machine idle during the preparations


def test_copies_are_separate_paths_with_the_same_bytes(ds, tmp_path):
    src = tmp_path / "vol.nii.gz"
    src.write_bytes(b"volume bytes")
    made = ds.copies(src, tmp_path / "out", 3)
    assert [p.name for p in made] == ["ct_000.nii.gz", "ct_001.nii.gz", "ct_002.nii.gz"]
    assert all(p.read_bytes() == b"volume bytes" for p in made)
    assert ds.place(src, tmp_path / "elsewhere" / "x.nii.gz") in ("link", "copy")


def test_nnunet_layout_is_what_med3d_scans(ds, tmp_path):
    image, label = tmp_path / "img.nrrd", tmp_path / "lab.nrrd"
    image.write_bytes(b"i")
    label.write_bytes(b"l")
    folder = ds.nnunet_raw(image, label, tmp_path / "Dataset950_Copies", 3)
    data = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    assert data["file_ending"] == ".nrrd" and data["numTraining"] == 3
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [f"case_{i:03d}_0000.nrrd" for i in range(3)]
    med3d = pytest.importorskip("export.med3d.data")
    raw = med3d.scan_raw_dataset(folder)      # layout only, no voxel read
    assert [c.case_id for c in raw.cases] == ["case_000", "case_001", "case_002"]


def test_arguments(ds):
    args = ds.parse_args(["--quick"])
    assert args.sizes == [2, 8] and args.one_worker_max == 8 and args.loader_batches == 10 and args.steps == 1
    assert args.repeats == 1
    args = ds.parse_args([])
    assert args.sizes == [4, 16, 64] and args.one_worker_max == 64 and args.repeats == 2
    assert args.family == ["genesis", "med3d", "ssl3d"]
    assert ds.parse_args(["--sizes", "16", "4", "4"]).sizes == [4, 16]
    with pytest.raises(SystemExit):
        ds.parse_args(["--sizes", "1", "4"])


def test_cli_json_and_porting_probe(ds):
    out = 'prepared data: x\n{\n  "model": "m",\n  "first_step_time": 1700000000.5\n}\n'
    assert ds._cli_json(out) == {"first_step_time": 1700000000.5}
    assert ds._cli_json("no json here") == {}
    assert "defines no Recipe" in ds._not_ported("no_such_family", [])
    assert ds._not_ported("genesis", ["genesis_recipe", "genesis_jobs"]) is None


FAKE_CLI = '''
import sys
from pathlib import Path

import numpy as np
import torch

from export.common.prepare import PreparedVolume, Recipe, VolumeJob, prepare_folder


def prep(job, params):
    return PreparedVolume({"image": np.zeros((2, 2, 2), np.float32)}, {})


if __name__ == "__main__":
    folder, done = Path(sys.argv[1]), Path(sys.argv[2])
    src = folder.parent / "src.bin"
    src.write_bytes(b"x")
    prepare_folder(Recipe("fake", 1, {}, prep), [VolumeJob("a", (str(src),), "train")], folder, workers=1,
                   progress=False, log=lambda *_: None)
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):
        net(torch.ones(1, 2)).sum().backward()
        opt.step()
    done.write_text("finished", encoding="utf-8")
'''


@pytest.mark.slow
def test_child_times_preparation_and_the_first_step(ds, tmp_path, monkeypatch):
    (tmp_path / "fake_cli.py").write_text(FAKE_CLI, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    done = tmp_path / "done.txt"
    r = ds.run_child("fake_cli", [tmp_path / "prep", done], tmp_path / "report.json", stop_at_first_step=True,
                     timeout=300)
    assert r["rc"] == 0 and r["stopped_at_first_step"] and not done.exists()   # stopped right after step 1
    assert r["volumes"] == 1 and r["failed"] == [] and r["prepare_s"] > 0
    assert r["launch_time"] < r["first_forward_time"] <= r["first_step_time"] < r["launch_time"] + r["wall_s"]
    assert r["peak_rss_mb"] >= r["peak_rss_mb_first_step"] > 50      # torch is imported: well above 50 MB
    assert 0 <= r["prepare_machine_idle"] <= 1 and 0 <= r["start_machine_idle"] <= 1
    assert (tmp_path / "prep" / "manifest.json").is_file()

    r = ds.run_child("fake_cli", [tmp_path / "prep2", done], tmp_path / "report.json", timeout=300)
    assert r["rc"] == 0 and "stopped_at_first_step" not in r and done.read_text(encoding="utf-8") == "finished"
    assert os.path.isfile(tmp_path / "prep2" / "manifest.json")
