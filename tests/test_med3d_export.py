"""export/med3d: data sets in nnU-Net's raw layout are checked and preprocessed (into a prepared folder) as the
Med3D paper says, sampling is balanced and each batch trains only its data set's branch, the backbone is
exported in the ``med3d-*`` layout that ``zoo.load`` reads, 2-process torchrun works, and bad input gives clear
errors. The prepared folder itself (resume, determinism, streaming, dry run) is tested in
tests/test_med3d_prepared.py.

The three small domains are cut from the real CT crop shipped in the package (bone, lung air, and a synthetic
"MR" contrast with three classes), so the tests run offline; the public demo domains are checked when the
pyradiomics volumes can be fetched.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from export.med3d.config import Med3DConfig
from export.common.prepare import VolumeFailedError
from export.med3d.data import (
    DatasetLayoutError,
    LabelSetError,
    Med3DCrops,
    NoUsableCaseError,
    case_arrays,
    crop_box,
    prepare_datasets,
    scan_datasets,
    scan_raw_dataset,
)
from export.med3d.make_demo_datasets import write_nifti
from export.med3d.output import write_output
from export.med3d.train import Med3DTask, train
from export.common.distributed import DistInfo
from zoo.io import read_volume

from torchrun_ranks import torchrun_two_cpu_ranks

REPO = Path(__file__).resolve().parents[1]
CT = REPO / "zoo" / "assets" / "demo" / "chest_ct_lung2_crop.nrrd"

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")


def write_dataset(root: Path, name: str, channel: str, labels: dict[str, int], cases: dict[str, tuple]) -> Path:
    """cases: id -> (image array (z, y, x), label array, Volume giving the geometry)."""
    folder = root / name
    for case, (image, label, like) in cases.items():
        write_nifti(folder / "imagesTr" / f"{case}_0000.nii.gz", image, like)
        write_nifti(folder / "labelsTr" / f"{case}.nii.gz", label.astype(np.uint8), like)
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": channel}, "labels": labels, "numTraining": len(cases), "file_ending": ".nii.gz"}))
    return folder


@pytest.fixture(scope="module")
def domains(tmp_path_factory) -> list[Path]:
    """Three domains from the shipped CT crop, 4x smaller in-plane: bone (2 cases), lung air (2 cases, other
    spacing for one), synthetic MR with fat / soft tissue (1 case, 3 classes)."""
    root = tmp_path_factory.mktemp("raw")
    vol = read_volume(CT)
    hu = vol.array[:, ::4, ::4].astype(np.int16)
    small = vol.with_array(hu, spacing_zyx=(vol.spacing_zyx[0], vol.spacing_zyx[1] * 4, vol.spacing_zyx[2] * 4))
    halves = {"top": (hu[:32], small), "bottom": (hu[29:], small)}
    bone = write_dataset(root, "Dataset001_Bone", "CT", {"background": 0, "bone": 1},
                         {k: (a, a > 250, like) for k, (a, like) in halves.items()})
    other = small.with_array(hu[29:], spacing_zyx=(small.spacing_zyx[0] * 0.8, *small.spacing_zyx[1:]))
    lung = write_dataset(root, "Dataset002_Lung", "CT", {"background": 0, "air": 1},
                         {"a": (hu[:32], hu[:32] < -500, small), "b": (hu[29:], hu[29:] < -500, other)})
    mr = (2000 - np.clip(hu, -1000, 1000)).astype(np.int16)           # an inverted contrast, as "MR"
    seg = np.where((hu > -200) & (hu < -30), 1, 0) + np.where((hu >= -30) & (hu < 150), 2, 0)
    mrs = write_dataset(root, "Dataset003_MR", "MR", {"background": 0, "fat": 1, "soft": 2}, {"m": (mr, seg, small)})
    return [bone, lung, mrs]


def tiny_config(**changes) -> Med3DConfig:
    base = dict(depth=10, patch_zyx=(16, 32, 32), batch_size=2, samples_per_volume=2, max_epochs=1,
                val_crops_per_volume=2, amp=False, panel_every=1, lr=0.01)
    base.update(changes)
    return Med3DConfig(**base)


def prepare(folders, cfg: Med3DConfig, prepared: Path, **kwargs):
    """(manifest, data sets) of ``folders`` prepared into ``prepared``, quietly."""
    kwargs.setdefault("log", lambda *_: None)
    return prepare_datasets(folders, cfg, prepared, progress=False, **kwargs)


@pytest.fixture(scope="module")
def datasets(domains, tmp_path_factory):
    return prepare(domains, tiny_config(), tmp_path_factory.mktemp("prepared"))[1]


def test_preprocessing_follows_the_paper(datasets, domains):
    bone, lung, mr = datasets
    assert [d.num_classes for d in datasets] == [2, 2, 3] and [d.modality for d in datasets] == ["CT", "CT", "MR"]
    src = read_volume(domains[1] / "imagesTr" / "a_0000.nii.gz").spacing_zyx
    other = read_volume(domains[1] / "imagesTr" / "b_0000.nii.gz").spacing_zyx
    np.testing.assert_allclose(lung.spacing_zyx, np.median([src, other], axis=0), rtol=1e-6)  # domain median
    for d in datasets:
        for case in d.train + d.val:
            image, label = case_arrays(case)                                 # memory-mapped .npy files
            assert isinstance(image, np.memmap) and isinstance(label, np.memmap)
            assert image.dtype == np.float32 and label.dtype == np.uint8
            assert abs(float(image.mean())) < 1e-3 and abs(float(image.std()) - 1) < 1e-3   # z-scored
            assert set(np.unique(label)) <= set(d.labels.values())
            assert image.shape == label.shape == case.shape
            fg = np.argwhere(label > 0)
            assert case.bbox == tuple((int(lo), int(hi) + 1) for lo, hi in zip(fg.min(0), fg.max(0)))
    assert all(d.val_from_training for d in datasets)          # 10 % of 1-2 cases rounds to none held out
    assert bone.files[0]["sha256"] and {f["role"] for f in bone.files} == {"Dataset001_Bone train"}


def test_crops_contain_the_target_and_span_up_to_the_volume():
    rng = np.random.default_rng(0)
    shape, bbox = (40, 60, 80), ((10, 14), (20, 30), (5, 9))
    sizes = []
    for _ in range(300):
        start, size = crop_box(shape, bbox, rng, 2.0)
        for (lo, hi), a, n, s in zip(bbox, start, size, shape):
            assert a <= lo and hi <= a + n <= s and n >= min(s, 2 * (hi - lo))
        sizes.append(size)
    sizes = np.array(sizes)
    assert (sizes.max(0) == shape).all() and (sizes.min(0) <= np.array([10, 22, 10])).all()


def test_balanced_sampling_and_one_branch_per_batch(datasets):
    cfg = tiny_config()
    task = Med3DTask(cfg, datasets)
    info = DistInfo()
    plan = Med3DCrops(datasets, cfg, info)
    batches = plan.schedule(0)
    assert len(batches) == len(plan) == task.steps_per_epoch(info) == 3 * 2   # 2 cases x 2 samples / batch 2, x 3 sets
    per_set = {j: [int(i) for b in batches if b[0] == j for i in b[1]] for j in range(3)}
    assert [len(v) for v in per_set.values()] == [4, 4, 4]              # the same count for every data set
    assert sorted(set(per_set[2])) == [0] and sorted(set(per_set[0])) == [0, 1]
    # two ranks: the same data set at each step, different cases
    r0, r1 = Med3DCrops(datasets, cfg, DistInfo(0, 2)).schedule(3), Med3DCrops(datasets, cfg, DistInfo(1, 2)).schedule(3)
    assert [b[0] for b in r0] == [b[0] for b in r1]

    torch.manual_seed(0)
    net = task.build_model()
    task.setup(torch.device("cpu"), info)
    loaded = list(task.epoch_batches(0, info))
    assert [b[0] for b in loaded] == [b[0] for b in batches]
    assert all(b[1].shape == (2, 1, 16, 32, 32) and b[2].shape == (2, 16, 32, 32) for b in loaded)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batch = next(b for b in loaded if b[0] == 1)
    loss, metrics = task.loss(net, batch, torch.Generator().manual_seed(0), lambda: torch.autocast("cpu", enabled=False))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    after = net.state_dict()
    changed = {k.split(".")[1] for k in before if k.startswith("branches.") and not torch.equal(before[k], after[k])}
    assert changed == {"1"}                                              # only the batch's own branch moved
    assert not torch.equal(before["backbone.conv1.weight"], after["backbone.conv1.weight"])
    assert "loss_Dataset002_Lung" in metrics and torch.isfinite(loss)
    out = net(torch.randn(1, 1, 16, 32, 32), 2)
    assert out.shape == (1, 3, 16, 32, 32)


def test_training_exports_the_med3d_layout(datasets, tmp_path):
    cfg = tiny_config(max_epochs=2)
    result = train(cfg, datasets, tmp_path, device="cpu", progress=False, max_steps=4)
    h = result.history
    assert {"prior_ce", "untrained_val_loss", "untrained_dice", "prior_ce_Dataset003_MR"} <= set(h.baselines)
    assert all(np.isfinite(h.val_loss)) and "dice_Dataset001_Bone" in h.val_metrics
    assert (tmp_path / "panels" / "epoch_0001.png").read_bytes()[:4] == b"\x89PNG"
    folder = write_output(tmp_path, "tiny-med3d", cfg, result.best_state, h, datasets, best_epoch=result.best_epoch,
                          stopped_because=result.stopped_because, device="cpu", world_size=1, minutes=0.1)
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "med3d_resnet" and config["arch_kwargs"] == {"depth": 10, "shortcut_type": "B"}
    assert [d["name"] for d in config["provenance"]["datasets"]] == [d.name for d in datasets]
    assert config["pretraining"]["datasets"] == [d.name for d in datasets]
    model = zoo.load(str(folder))
    reference = zoo.load("med3d-resnet10", pretrained=False)
    assert set(model.state_dict()) == set(reference.state_dict())          # exactly MedicalNet's keys
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, result.best_state[f"backbone.{k}"])
    adapted = zoo.load(str(folder), in_channels=2, num_classes=4)          # like the MedicalNet weights
    assert adapted(torch.randn(1, 2, 16, 32, 32)).shape == (1, 4)
    torch.testing.assert_close(adapted.state_dict()["conv1.weight"][:, 0] * 2, model.state_dict()["conv1.weight"][:, 0])
    feats = zoo.load(str(folder), features_only=True)(torch.randn(1, 1, 16, 32, 32))
    assert [f.shape[1] for f in feats] == [64, 64, 128, 256, 512]


def test_bad_inputs_give_clear_errors(domains, tmp_path):
    import shutil

    from export.med3d.__main__ import main

    # not in nnU-Net's raw layout
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(domains[0] / "imagesTr" / "top_0000.nii.gz", flat / "top.nii.gz")
    with pytest.raises(DatasetLayoutError, match="no dataset.json"):
        scan_raw_dataset(flat)
    no_images = tmp_path / "Dataset009_NoImages"
    shutil.copytree(domains[0], no_images)
    shutil.rmtree(no_images / "imagesTr")
    with pytest.raises(DatasetLayoutError, match="no imagesTr/ folder"):
        scan_raw_dataset(no_images)
    renamed = tmp_path / "Dataset010_Renamed"
    shutil.copytree(domains[0], renamed)
    (renamed / "imagesTr" / "top_0000.nii.gz").rename(renamed / "imagesTr" / "top.nii.gz")
    with pytest.raises(DatasetLayoutError, match="CASE_XXXX"):
        scan_raw_dataset(renamed)
    orphan = tmp_path / "Dataset011_Orphan"
    shutil.copytree(domains[0], orphan)
    (orphan / "imagesTr" / "top_0000.nii.gz").unlink()
    with pytest.raises(DatasetLayoutError, match="no image imagesTr/top_0000.nii.gz"):
        scan_raw_dataset(orphan)
    assert main(["--data", str(flat), "--out", str(tmp_path / "o1")]) == 2

    # label maps and dataset.json disagree: the MR set's labels (0, 1, 2) against a declared (0, 1)
    mismatch = tmp_path / "Dataset012_Mismatch"
    shutil.copytree(domains[2], mismatch)
    meta = json.loads((mismatch / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "fat": 1}
    (mismatch / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(VolumeFailedError, match=r"m\.nii\.gz: label values \[2\] are not declared"):
        prepare([mismatch], tiny_config(), tmp_path / "p1", strict=True)
    with pytest.raises(NoUsableCaseError, match=r"m\.nii\.gz: label values \[2\] are not declared"):
        prepare([mismatch], tiny_config(), tmp_path / "p2")                # the data set's only case is left out
    meta["labels"] = {"background": 0, "fat": 1, "soft": 3}
    (mismatch / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(LabelSetError, match="without gaps"):
        scan_raw_dataset(mismatch)
    meta["labels"] = {"background": 0, "tissue": [1, 2]}
    (mismatch / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(LabelSetError, match="region"):
        scan_raw_dataset(mismatch)
    with pytest.raises(DatasetLayoutError, match="distinct names"):
        scan_datasets([domains[0], domains[0]], tiny_config())
    with pytest.raises(DatasetLayoutError, match="channel 1 asked for"):
        scan_datasets([domains[0]], tiny_config(channel=1))


def test_demo_domains_from_public_volumes(tmp_path):
    from data_fixtures import test_data_dir

    from export.data.fetch import FetchError, fetch
    from export.med3d.make_demo_datasets import main

    try:
        fetch(test_data_dir(), what="pyradiomics", quiet=True)
    except (FetchError, OSError) as exc:
        pytest.skip(f"pyradiomics volumes unavailable: {exc}")
    assert main(["--data", str(test_data_dir()), "--out", str(tmp_path), "--domains", "brain"]) == 0
    raw = scan_raw_dataset(tmp_path / "Dataset902_BrainMRTumour")
    assert [c.case_id for c in raw.cases] == ["brain1", "brain2"] and raw.labels == {"background": 0, "tumour": 1}
    img = read_volume(raw.cases[0].images[0])
    src = read_volume(test_data_dir() / "pyradiomics" / "brain1_image.nrrd")
    assert np.array_equal(img.array, src.array) and np.allclose(img.spacing_zyx, src.spacing_zyx)
    lab = read_volume(raw.cases[0].label)
    assert int(lab.array.sum()) == 4137                                  # brain1's tumour voxels
    assert main(["--data", str(tmp_path), "--out", str(tmp_path), "--domains", "nowhere"]) == 2


def test_torchrun_two_cpu_processes_med3d(domains, tmp_path):
    ranks = torchrun_two_cpu_ranks(tmp_path, f"""
        from pathlib import Path
        from test_med3d_export import prepare, tiny_config
        from export.common.distributed import init_distributed
        from export.med3d.train import train
        cfg = tiny_config()
        info, _ = init_distributed("cpu")
        _, datasets = prepare({[str(d) for d in domains]!r}, cfg, Path(RUN) / "prepared", info=info)
        result = train(cfg, datasets, RUN, device="cpu", progress=False, max_steps=3, loader_workers=1)
    """)
    assert ranks[0]["digest"] == ranks[1]["digest"]            # DDP kept the replicas identical
    assert ranks[0]["train_loss"] == ranks[1]["train_loss"]    # all-reduced loss
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.suffix == ".pt") == ["checkpoint.pt"]
