"""export/genesis: the pretraining loop on real CT cubes (the chest CT crop shipped in the package).

Covers: the prepared folder (cubes within [0, 1] from the real volume, sha256 provenance); 2-process torchrun (gloo, CPU) keeps parameters identical across ranks and writes one checkpoint;
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
from export.common.cubes import CubeBatches
from export.common.prepare import prepare_folder, source_summary
from export.genesis.data import cube_counts, data_summary, genesis_jobs, genesis_recipe
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


def prepare(cfg: TrainConfig, folder: Path, paths=(CT,), **kwargs):
    jobs = genesis_jobs(list(paths), None, cfg)
    return prepare_folder(genesis_recipe(cfg), jobs, folder, progress=False, log=lambda *_: None, **kwargs)


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    """The shipped CT crop prepared once with :func:`tiny_config`'s parameters."""
    if not CT.exists():
        pytest.fail(f"{CT} is missing: it ships with the package (python -m export.demo_assets rebuilds it)")
    return prepare(tiny_config(), tmp_path_factory.mktemp("prepared"))


def test_data_comes_from_the_real_volume(cubes):
    cfg = tiny_config()
    assert cube_counts(cubes, cfg) == (24 - 4, 4)          # one volume: a share of its cubes validates
    every = CubeBatches(cubes, "train", cfg.cube_zyx, 4, seed=1, shuffle=False).all()
    assert every.shape == (24, 1, 16, 32, 32)
    assert 0.0 <= every.min() and every.max() <= 1.0 and every.std() > 0.05
    assert source_summary(cubes)[0]["sha256"] == sha256_file(CT)


def test_training_beats_identity_and_writes_a_loadable_model(cubes, tmp_path):
    cfg = tiny_config(max_epochs=4)
    result = train(cfg, cubes, tmp_path, device="cpu", progress=False)
    h = result.history
    assert len(h.val_loss) == 4 and min(h.val_loss) < h.untrained_val_loss
    assert (tmp_path / "panels" / "epoch_0001.png").read_bytes()[:4] == b"\x89PNG"
    folder = write_output(tmp_path, "tiny-genesis", cfg, result.best_state, h, best_epoch=result.best_epoch,
                          stopped_because=result.stopped_because, data_files=source_summary(cubes),
                          data_summary=data_summary(cubes, cfg, *cube_counts(cubes, cfg))[0], datasets=("demo",),
                          device="cpu", world_size=1, minutes=0.1)
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
    full = train(cfg, cubes, tmp_path / "full", device="cpu", progress=False)
    first = train(tiny_config(max_epochs=2), cubes, tmp_path / "cut", device="cpu", progress=False)
    assert len(first.history.val_loss) == 2
    resumed = train(cfg, cubes, tmp_path / "cut", device="cpu", progress=False)
    assert len(resumed.history.val_loss) == 3
    np.testing.assert_allclose(resumed.history.train_loss, full.history.train_loss, rtol=1e-5)
    np.testing.assert_allclose(resumed.history.val_loss, full.history.val_loss, rtol=1e-5)


def test_interrupted_checkpoint_write_keeps_the_previous_one(cubes, tmp_path, monkeypatch):
    train(tiny_config(max_epochs=1), cubes, tmp_path, device="cpu", progress=False)
    before = (tmp_path / CHECKPOINT).read_bytes()
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(max_epochs=2), cubes, tmp_path, device="cpu", progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert (tmp_path / CHECKPOINT).read_bytes() == before
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_torchrun_two_cpu_processes_stay_identical(tmp_path):
    ranks = torchrun_two_cpu_ranks(tmp_path, """
        from pathlib import Path
        from test_genesis_training import tiny_config, prepare
        from export.common.distributed import init_distributed
        from export.genesis.train import train
        cfg = tiny_config(max_epochs=1, batch_size=2)
        info, _ = init_distributed("cpu")
        data = prepare(cfg, Path(RUN) / "prepared", info=info)
        result = train(cfg, data, RUN, device="cpu", progress=False, max_steps=3)
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
    manifest = prepare(tiny_config(), tmp_path / "p1", paths=[junk, CT])
    assert [v["sources"][0]["path"] for v in manifest.volumes] == [str(CT)]
    assert "junk.nrrd" in manifest.failed[0]["reason"]
    manifest = prepare(tiny_config(cube_zyx=(200, 32, 32), spacing_zyx=None), tmp_path / "p2")
    assert "smaller than the cube" in manifest.failed[0]["reason"]
    # a volume known to be MR (NRRD records no modality, so the reader is told, as a DICOM header would)
    from export.genesis import data as data_module

    mr = tmp_path / "brain_mr.nrrd"
    mr.write_bytes(CT.read_bytes())
    real = data_module.read_volume
    monkeypatch.setattr(data_module, "read_volume", lambda p: real(p, modality="MR"))
    manifest = prepare(tiny_config(), tmp_path / "p3", paths=[mr])
    assert manifest.failed[0]["reason"].endswith("brain_mr.nrrd: modality MR, but Models Genesis CT pretraining "
                                                 "needs CT in HU")
    assert manifest.volumes == []


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


def test_resume_when_only_rank_0_sees_the_checkpoint(tmp_path):
    """OUT on node-local disks: rank 0 alone holds checkpoint.pt, and a restarted job must still resume the same
    epoch and weights on every rank (rank 0 reads the checkpoint and hands it over)."""
    setup = """
        import os
        from pathlib import Path
        from test_genesis_training import tiny_config, prepare
        from export.common.distributed import init_distributed
        from export.genesis.train import train
        info, _ = init_distributed("cpu")
        data = prepare(tiny_config(), Path(RUN).parent / "prepared", info=info)
        RUN = RUN if info.rank == 0 else RUN + "-rank1"               # a folder only this rank sees
        result = train(tiny_config(max_epochs=EPOCHS, batch_size=2), data, RUN, device="cpu", progress=False,
                       max_steps=4 * EPOCHS)
    """
    torchrun_two_cpu_ranks(tmp_path, setup.replace("EPOCHS", "1"))
    assert not (tmp_path / "run-rank1" / CHECKPOINT).exists()
    ranks = torchrun_two_cpu_ranks(tmp_path, setup.replace("EPOCHS", "2"))
    assert len(ranks[0]["train_loss"]) == len(ranks[1]["train_loss"]) == 2
    assert ranks[0]["train_loss"] == ranks[1]["train_loss"] and ranks[0]["digest"] == ranks[1]["digest"]
