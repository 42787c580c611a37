"""export/genesis: the pretraining loop on real CT cubes (the chest CT crop shipped in the package).

Covers: 2-process torchrun (gloo, CPU) keeps parameters identical across ranks and writes one checkpoint;
resuming continues the loss curve exactly; an interrupted checkpoint write leaves the previous one intact;
bad input gives errors naming the file; the output folder loads with ``zoo.load`` and adapts like any entry.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.hub.integrity import sha256_file
from export.genesis.checkpoint import load_checkpoint
from export.genesis.config import TrainConfig
from export.genesis.data import prepare_cubes
from export.genesis.output import write_output
from export.genesis.train import CHECKPOINT, train

from torchrun_ranks import torchrun_two_cpu_ranks

REPO = Path(__file__).resolve().parents[1]
CT = REPO / "zoo" / "assets" / "demo" / "chest_ct_lung2_crop.nrrd"
TINY_PLAN = {
    "n_stages": 2, "features_per_stage": [4, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[3, 3, 3]] * 2, "strides": [[1, 1, 1], [2, 2, 2]], "n_conv_per_stage": [1, 1],
    "n_conv_per_stage_decoder": [1], "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
}


def tiny_config(**changes) -> TrainConfig:
    base = dict(architecture="plain_conv_unet", arch_kwargs=TINY_PLAN, num_classes=1, input_norm="ct-zscore",
                cube_zyx=(16, 32, 32), spacing_zyx=(2.5, 1.5, 1.5), cubes_per_volume=24, batch_size=4, lr=0.05,
                patience=50, max_epochs=3, panel_every=1, amp=False, max_tissue=None, min_foreground=0.2)
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def cubes():
    if not CT.exists():
        pytest.fail(f"{CT} is missing: it ships with the package (python -m export.demo_assets rebuilds it)")
    return prepare_cubes([CT], None, tiny_config(), log=lambda *_: None)


def test_data_comes_from_the_real_volume(cubes):
    assert cubes.train.shape[1:] == (1, 16, 32, 32) and cubes.val.shape[1:] == (1, 16, 32, 32)
    assert len(cubes.train) + len(cubes.val) == 24
    assert 0.0 <= cubes.train.min() and cubes.train.max() <= 1.0 and cubes.train.std() > 0.05
    assert cubes.files[0]["sha256"] == sha256_file(CT)


def test_training_beats_identity_and_writes_a_loadable_model(cubes, tmp_path):
    cfg = tiny_config(max_epochs=4)
    result = train(cfg, cubes.train, cubes.val, tmp_path, device="cpu", progress=False)
    h = result.history
    assert len(h.val_loss) == 4 and min(h.val_loss) < h.untrained_val_loss
    assert (tmp_path / "panels" / "epoch_0001.png").read_bytes()[:4] == b"\x89PNG"
    folder = write_output(tmp_path, "tiny-genesis", cfg, result.best_state, h, best_epoch=result.best_epoch,
                          stopped_because=result.stopped_because, data_files=cubes.files, data_summary=cubes.summary,
                          datasets=cubes.datasets, device="cpu", world_size=1, minutes=0.1)
    config = json.loads((folder / "config.json").read_text())
    assert config["provenance"]["data_files"][0]["path"] == str(CT)
    assert "identity (damaged input as the answer)" in (folder / "README.md").read_text()
    model = zoo.load(str(folder), in_channels=3)
    sd = model.state_dict()
    w = sd["encoder.stages.0.0.convs.0.conv.weight"]
    assert w.shape[1] == 3
    torch.testing.assert_close(w[:, 0] * 3, result.best_state["encoder.stages.0.0.convs.0.conv.weight"][:, 0])


def test_resume_continues_the_loss_curve_exactly(cubes, tmp_path):
    cfg = tiny_config(max_epochs=3)
    full = train(cfg, cubes.train, cubes.val, tmp_path / "full", device="cpu", progress=False)
    first = train(tiny_config(max_epochs=2), cubes.train, cubes.val, tmp_path / "cut", device="cpu", progress=False)
    assert len(first.history.val_loss) == 2
    resumed = train(cfg, cubes.train, cubes.val, tmp_path / "cut", device="cpu", progress=False)
    assert len(resumed.history.val_loss) == 3
    np.testing.assert_allclose(resumed.history.train_loss, full.history.train_loss, rtol=1e-5)
    np.testing.assert_allclose(resumed.history.val_loss, full.history.val_loss, rtol=1e-5)


def test_interrupted_checkpoint_write_keeps_the_previous_one(cubes, tmp_path, monkeypatch):
    train(tiny_config(max_epochs=1), cubes.train, cubes.val, tmp_path, device="cpu", progress=False)
    before = (tmp_path / CHECKPOINT).read_bytes()
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(max_epochs=2), cubes.train, cubes.val, tmp_path, device="cpu", progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert (tmp_path / CHECKPOINT).read_bytes() == before
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_torchrun_two_cpu_processes_stay_identical(tmp_path):
    ranks = torchrun_two_cpu_ranks(tmp_path, """
        from test_genesis_training import tiny_config, CT
        from export.genesis.data import prepare_cubes
        from export.genesis.train import train
        cfg = tiny_config(max_epochs=1, batch_size=2)
        data = prepare_cubes([CT], None, cfg, log=lambda *_: None)
        result = train(cfg, data.train, data.val, RUN, device="cpu", progress=False, max_steps=3)
    """)
    assert ranks[0]["digest"] == ranks[1]["digest"]            # DDP kept the replicas identical
    assert ranks[0]["train_loss"] == ranks[1]["train_loss"]    # all-reduced loss
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.suffix == ".pt") == [CHECKPOINT]


def test_bad_inputs_name_the_file(tmp_path, monkeypatch):
    from export.genesis.__main__ import main

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--data", str(empty), "--out", str(tmp_path / "o1")]) == 2
    junk = tmp_path / "junk.nrrd"
    junk.write_bytes(b"not a volume at all")
    with pytest.raises(Exception, match="junk.nrrd"):
        prepare_cubes([junk], None, tiny_config())
    with pytest.raises(Exception, match="smaller than the cube"):
        prepare_cubes([CT], None, tiny_config(cube_zyx=(200, 32, 32), spacing_zyx=None))
    # a volume known to be MR (NRRD records no modality, so the reader is told, as a DICOM header would)
    from export.genesis import data as data_module

    mr = tmp_path / "brain_mr.nrrd"
    mr.write_bytes(CT.read_bytes())
    real = data_module.read_volume
    monkeypatch.setattr(data_module, "read_volume", lambda p: real(p, modality="MR"))
    with pytest.raises(ValueError, match="brain_mr.nrrd: modality MR"):
        prepare_cubes([mr], None, tiny_config())


def test_cli_pretrains_the_network_of_an_nnunet_plan(tmp_path):
    """``--plans``: the configuration's network is pretrained and the output loads as that architecture."""
    from export.genesis.__main__ import main

    plans = json.loads((REPO / "zoo" / "assets" / "demo" / "nnUNetPlans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"] = TINY_PLAN
    plans["configurations"]["3d_fullres"]["normalization_schemes"] = ["CTNormalization"]
    (tmp_path / "plans.json").write_text(json.dumps(plans))
    args = ["--data", str(CT), "--out", str(tmp_path / "run"), "--plans", str(tmp_path / "plans.json"),
            "--preset", "demo", "--cube", "16", "32", "32", "--cubes-per-volume", "12", "--batch-size", "2",
            "--max-steps", "2", "--no-progress", "--name", "tiny-plan-genesis"]
    assert main(args) == 0
    model = zoo.load(str(tmp_path / "run" / "model"))
    assert model.pretrained_cfg.name == "tiny-plan-genesis"
    assert model.state_dict()["encoder.stages.1.0.convs.0.conv.weight"].shape == (8, 4, 3, 3, 3)
