"""export/med3d on the shared preprocessing stage (issue 14): the prepared folder resumes, is deterministic and
independent of the worker count, refuses other parameters, names bad cases (or stops with --strict); crops
stream from memory maps identically with 0 and 2 loader workers; --dry-run reads headers only and names the
files that will fail; --prepare-only then training from --prepared alone; a resumed run equals an
uninterrupted one.

The data sets are the three small domains of tests/test_med3d_export.py (cut from the CT crop shipped in the
package), so everything runs offline in seconds.
"""

from __future__ import annotations

import json
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from export.common.prepare import PreparedMismatchError, VolumeFailedError, open_prepared
from export.common.streaming import StepLoader
from export.med3d.__main__ import main
from export.med3d.data import Med3DCrops, Med3DValCrops, case_arrays, med3d_recipe
from export.med3d.make_demo_datasets import write_nifti
from export.med3d.train import train
from export.common.distributed import DistInfo
from zoo.hub.integrity import sha256_file
from zoo.io import read_volume

from test_med3d_export import CT, domains, prepare, tiny_config, write_dataset  # noqa: F401  (domains: a fixture)

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")


@pytest.fixture(scope="module")
def blob(tmp_path_factory) -> Path:
    """A domain whose targets are small boxes (so crops vary in size and place), 2 cases from the CT crop."""
    vol = read_volume(CT)
    hu = vol.array[:, ::4, ::4].astype(np.int16)
    like = vol.with_array(hu, spacing_zyx=(vol.spacing_zyx[0], vol.spacing_zyx[1] * 4, vol.spacing_zyx[2] * 4))
    cases = {}
    for case, (image, z, y, x) in {"p": (hu[:32], 10, 12, 20), "q": (hu[29:], 4, 30, 8)}.items():
        label = np.zeros(image.shape, np.uint8)
        label[z:z + 5, y:y + 6, x:x + 7] = 1
        cases[case] = (image, label, like)
    return write_dataset(tmp_path_factory.mktemp("blob"), "Dataset004_Blob", "CT", {"background": 0, "box": 1}, cases)


@pytest.fixture(scope="module")
def sources(domains, blob) -> list[Path]:  # noqa: F811
    """Bone (2 cases), Blob (2 cases, small targets), MR (1 case, 3 classes)."""
    return [domains[0], blob, domains[2]]


@pytest.fixture(scope="module")
def prepared(sources, tmp_path_factory):
    """(folder, manifest, data sets) of :func:`sources` prepared once with :func:`tiny_config`."""
    folder = tmp_path_factory.mktemp("prepared")
    manifest, datasets = prepare(sources, tiny_config(), folder)
    return folder, manifest, datasets


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_facts_and_resume_skip_every_case(prepared, sources):
    folder, manifest, datasets = prepared
    assert len(manifest.volumes) == 5 and not manifest.failed
    v = manifest.volumes[0]
    facts = v["facts"]
    assert {"shape_zyx", "spacing_zyx", "source_shape_zyx", "source_spacing_zyx", "source_intensity", "bbox",
            "foreground_voxels"} <= set(facts)
    src = read_volume(v["sources"][0]["path"])
    assert facts["source_shape_zyx"] == list(src.shape_zyx)
    assert facts["source_intensity"]["mean"] == pytest.approx(float(src.array.mean()), rel=1e-5)
    assert facts["source_intensity"]["p99.5"] == pytest.approx(float(np.percentile(src.array, 99.5)), rel=1e-5)
    assert [s["sha256"] for s in v["sources"]] == [sha256_file(s["path"]) for s in v["sources"]]
    label = np.load(manifest.path(v, "label"))
    assert facts["foreground_voxels"] == int((label > 0).sum()) > 0
    # the data set's median spacing was computed from the headers and travels with every case
    assert datasets[1].spacing_zyx == tuple(manifest.role("train")[2]["settings"]["spacing_zyx"])
    blob_case = datasets[1].train[0]
    assert blob_case.bbox is not None and all(hi - lo < n for (lo, hi), n in zip(blob_case.bbox, blob_case.shape))

    before = {p: p.stat().st_mtime_ns for p in (folder / "volumes").iterdir()}
    manifest_bytes = (folder / "manifest.json").read_bytes()
    logs: list[str] = []
    again, _ = prepare(sources, tiny_config(), folder, log=logs.append)
    assert any("5 of 5 volumes already prepared" in line for line in logs)
    assert {p: p.stat().st_mtime_ns for p in (folder / "volumes").iterdir()} == before       # nothing rewritten
    assert (folder / "manifest.json").read_bytes() == manifest_bytes
    assert again.volumes == manifest.volumes
    # reopened without the raw data (python -m export.med3d --prepared DIR)
    assert open_prepared(folder, med3d_recipe(tiny_config())).volumes == manifest.volumes


def test_two_workers_write_the_same_folder_as_one(prepared, sources, tmp_path):
    folder, _, _ = prepared
    prepare(sources, tiny_config(), tmp_path / "two", workers=2)
    one, two = _files(folder), _files(tmp_path / "two")
    assert sorted(one) == sorted(two)
    assert [k for k in one if one[k] != two[k]] == []                  # manifest, records and arrays, byte for byte


def test_loader_batches_do_not_depend_on_the_worker_count(prepared):
    _, _, datasets = prepared
    cfg = tiny_config()
    plan = Med3DCrops(datasets, cfg, DistInfo())
    assert len(pickle.dumps(plan)) < 20_000           # paths and boxes only: no voxel travels to the workers

    def epochs(workers: int, p=plan) -> list:
        loader = StepLoader(p, workers=workers)
        return [b for e in (0, 1) for b in loader.epoch(e)]

    serial, parallel = epochs(0), epochs(2)
    assert len(serial) == 2 * len(plan) == 12
    for a, b in zip(serial, parallel):
        assert a[0] == b[0] and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
        assert a[1].dtype == torch.float32 and a[2].dtype == torch.uint8
    # crops hold their target (the bbox lies inside every box); the Blob set's crops vary from epoch to epoch
    assert all(int(b[2][i].sum()) > 0 for b in serial for i in range(b[2].shape[0]))
    blob = [b for b in serial if b[0] == 1]
    assert len(blob) == 4 and not torch.equal(blob[0][1], blob[2][1])
    # two ranks: the same data set at every step, disjoint slices of its case sequence, other crops
    plans = [Med3DCrops(datasets, cfg, DistInfo(r, 2)) for r in (0, 1)]
    s0, s1 = plans[0].schedule(0), plans[1].schedule(0)
    assert [b[0] for b in s0] == [b[0] for b in s1]
    for j in (0, 1):                                     # together the ranks take each case equally often
        taken = np.concatenate([b[1] for b in s0 + s1 if b[0] == j])
        assert np.bincount(taken).tolist() == [2, 2]
    pairs = list(zip(StepLoader(plans[0]).epoch(0), StepLoader(plans[1]).epoch(0)))
    assert any(not torch.equal(a[1], b[1]) for a, b in pairs if a[0] == 1)
    # validation crops: fixed, and the same for any worker count
    val = Med3DValCrops(datasets, cfg)
    v0 = list(StepLoader(val, workers=0).epoch(0))
    v2 = list(StepLoader(val, workers=2).epoch(5))
    assert len(v0) == 5                                  # 2 crops of each of the 5 cases, batches of 2
    assert all(a[0] == b[0] and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2]) for a, b in zip(v0, v2))


def _copy_with_a_bad_case(source: Path, root: Path, name: str) -> tuple[Path, Path]:
    """A copy of the 2-case lung domain whose case ``b`` has a label map of the wrong shape."""
    folder = root / name
    shutil.copytree(source, folder)
    label = folder / "labelsTr" / "b.nii.gz"
    lab = read_volume(label)
    write_nifti(label, lab.array[:, :-3].astype(np.uint8), lab)
    return folder, label


def test_a_bad_case_is_named_and_left_out_or_stops_with_strict(domains, tmp_path):  # noqa: F811
    lung, label = _copy_with_a_bad_case(domains[1], tmp_path, "Dataset002_Lung")
    logs: list[str] = []
    manifest, datasets = prepare([domains[0], lung], tiny_config(), tmp_path / "p", log=logs.append)
    assert [len(d.train) for d in datasets] == [2, 1]
    assert manifest.failed[0]["sources"][1]["path"] == str(label)
    reason = manifest.failed[0]["reason"]
    assert reason.startswith(f"{label}: label map of shape") and "does not match its image" in reason
    assert datasets[1].left_out == [{"path": manifest.failed[0]["sources"][0]["path"], "reason": reason}]
    assert any(str(label) in line and "does not match its image" in line for line in logs)      # named

    with pytest.raises(VolumeFailedError, match="does not match its image") as err:
        prepare([domains[0], lung], tiny_config(), tmp_path / "strict", strict=True)
    assert "--strict" in str(err.value)
    records = sorted(p.name for p in (tmp_path / "strict" / "records").iterdir())
    assert len(records) == 4                             # the cases finished before the bad one are kept
    # the CLI: the same error, exit status 2
    assert main(["--data", str(lung), "--out", str(tmp_path / "o"), "--strict", "--prepare-only",
                 "--no-progress", "--workers", "1"]) == 2


def test_dry_run_reads_headers_and_names_the_files_that_will_fail(domains, tmp_path, capsys):  # noqa: F811
    lung, label = _copy_with_a_bad_case(domains[1], tmp_path, "Dataset002_Lung")
    junk = tmp_path / "Dataset001_Bone"
    shutil.copytree(domains[0], junk)
    broken = junk / "imagesTr" / "top_0000.nii.gz"
    broken.write_bytes(b"not a volume at all")
    out = tmp_path / "run"
    started = time.perf_counter()
    assert main(["--data", str(junk), str(lung), str(domains[2]), "--out", str(out), "--dry-run",
                 "--patch", "16", "32", "32", "--batch-size", "2", "--samples-per-volume", "2",
                 "--loader-workers", "0", "--workers", "2"]) == 0
    assert time.perf_counter() - started < 20
    text = capsys.readouterr().out
    assert "5 volumes" in text and "2 will fail" in text
    assert f"will fail: {label}: label map of shape" in text
    assert f"will fail: {broken}: " in text
    # one usable training case per data set: 2 crops each (samples_per_volume), 3 steps of 2
    assert "crops per epoch: 6 for training" in text and "optimiser steps per epoch: 3" in text
    assert "estimated preparation" in text and "disk for the prepared folder" in text
    assert "Dataset002_Lung: 2 case(s), 1 usable (none held out: validated on 4 fixed crops" in text
    assert not out.exists()                              # nothing prepared, nothing written


def test_a_folder_prepared_with_other_parameters_is_refused(prepared, sources, tmp_path, capsys):
    folder, _, _ = prepared
    with pytest.raises(PreparedMismatchError, match="percentiles"):
        prepare(sources, tiny_config(percentiles=(1.0, 99.0)), folder)
    copy = tmp_path / "other"
    shutil.copytree(folder, copy)
    assert main(["--data", *map(str, sources), "--out", str(tmp_path), "--prepared", str(copy),
                 "--channel", "0", "--prepare-only", "--no-progress"]) == 0      # the same parameters: reused
    assert "5 of 5 volumes already prepared" in capsys.readouterr().out
    prep = json.loads((copy / "prep.json").read_text(encoding="utf-8"))
    prep["params"]["channel"], prep["digest"] = 1, "0" * 64
    (copy / "prep.json").write_text(json.dumps(prep), encoding="utf-8")
    assert main(["--out", str(tmp_path), "--prepared", str(copy), "--prepare-only"]) == 2
    assert "prepared with other parameters (channel: 1 there, 0 now)" in capsys.readouterr().err


def test_cli_prepare_only_then_train_from_the_prepared_folder(domains, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    data = [domains[0], domains[2]]                      # Bone (2 cases) and MR (1 case)
    small = ["--preset", "demo", "--patch", "8", "16", "16", "--batch-size", "2", "--samples-per-volume", "1",
             "--no-progress", "--device", "cpu"]
    assert main(["--data", *map(str, data), "--out", str(out), "--prepare-only", "--workers", "1", *small]) == 0
    assert (out / "prepared" / "manifest.json").is_file() and not (out / "checkpoint.pt").exists()
    assert main(["--out", str(tmp_path / "nothing"), *small]) == 2                         # no --data, no --prepared
    assert main(["--out", str(out), "--prepared", str(out / "prepared"), "--epochs", "1", "--max-steps", "2",
                 "--loader-workers", "1", *small]) == 0
    config = json.loads((out / "model" / "config.json").read_text(encoding="utf-8"))
    prov = config["provenance"]
    files = {f["path"]: f["sha256"] for f in prov["data_files"]}
    assert len(files) == 6 and all(sha256_file(p) == h for p, h in files.items())    # images and labels
    assert prov["prepared_data"]["digest"] == med3d_recipe(tiny_config()).digest
    assert [d["name"] for d in prov["datasets"]] == [d.name for d in data]


def test_resume_equals_an_uninterrupted_run(prepared, tmp_path):
    _, _, datasets = prepared
    datasets = datasets[1:2]                             # Blob: random crops, 1 step an epoch, 2 validation crops
    small = dict(panel_every=0, samples_per_volume=1, val_crops_per_volume=1, patch_zyx=(8, 16, 16))
    cfg = tiny_config(max_epochs=2, **small)
    full = train(cfg, datasets, tmp_path / "full", device="cpu", progress=False, loader_workers=0)
    first = train(tiny_config(max_epochs=1, **small), datasets, tmp_path / "cut", device="cpu",
                  progress=False, loader_workers=1)
    assert len(first.history.val_loss) == 1
    resumed = train(cfg, datasets, tmp_path / "cut", device="cpu", progress=False, loader_workers=2)
    assert resumed.history.train_loss == full.history.train_loss
    assert resumed.history.val_loss == full.history.val_loss
    assert resumed.history.baselines == full.history.baselines
    for k, v in full.best_state.items():
        assert torch.equal(v, resumed.best_state[k]), k


def test_case_arrays_are_memory_maps(prepared):
    _, _, datasets = prepared
    image, label = case_arrays(datasets[0].train[0])
    assert isinstance(image, np.memmap) and isinstance(label, np.memmap)
