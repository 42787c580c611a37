"""medzoo's quick nnU-Net trainer and the documented fine-tuning recipe, against nnunetv2 (PyPI 2.8.1).

* ``nnUNetTrainerQuick`` end to end on CPU: real chest CT volumes (test_unetpp's harness: pyradiomics lung1/lung2,
  skipped when the volumes cannot be fetched), nnunetv2's fingerprint + plan + preprocess (PlainConvUNet plan),
  ``zoo export-nnunet`` of the (fake, offline) Genesis nnU-Net weights, then nnunetv2's ``-tr`` /
  ``-pretrained_weights`` code path: the class is found by name through ``nnUNet_extTrainer``, the weights are
  loaded, one loss line per iteration is printed, the final checkpoint is written.
* Fine-tuning: ``nnUNetTrainerFinetune`` (the default in the README and the CLI hints), nnunetv2's own
  ``nnUNetTrainer_warmup`` schedule: the learning rate per epoch of both against the formula (linear warm-up over
  50 epochs, then poly 0.9 over the remaining 950); ``nnUNetTrainerFinetune`` resumes from an nnU-Net checkpoint,
  which 2.8.1's ``nnUNetTrainer_warmup.load_checkpoint`` (``torch.load`` with ``weights_only=True``) cannot read.
* ``train_hint`` (printed by ``zoo plan`` / ``zoo export-nnunet``) names the right ``-tr``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nnunetv2")

from data_fixtures import pyradiomics_dir  # noqa: E402,F401  (session fixture)
from test_unetpp import NAME, SMALL, _cli, _crop_case, lung_cache, nnunet_env, plans_for  # noqa: E402,F401

from zoo.archs.nested_unet import NNUNET_CLASS_PATH  # noqa: E402
from zoo.cli.adapt import train_hint  # noqa: E402
from zoo.nnunet.trainers import EXT_DIR  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::zoo.LicenseWarning"),
              pytest.mark.filterwarnings("ignore:Detected old nnU-Net plans format")]

DATASET_ID, DATASET_NAME = 988, "Dataset988_QuickLung"
DS_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "tumour": 1}, "numTraining": 2,
           "file_ending": ".nii.gz"}
LOSS_LINE = re.compile(r"epoch (\d+) iteration (\d+)/(\d+) train_loss (-?\d+\.\d+)")


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    torch.set_num_threads(before)


def test_medzoo_trainer_names_are_unique_and_found_through_ext_trainer(monkeypatch):
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    monkeypatch.setenv("nnUNet_extTrainer", EXT_DIR)
    for name in ("nnUNetTrainerQuick", "nnUNetTrainerUNetPlusPlusQuick", "nnUNetTrainerFinetune"):
        # not shadowed by a class of nnunetv2's own (nnU-Net searches its package first)
        assert recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"), name,
                                           "nnunetv2.training.nnUNetTrainer", nnunetv2.__path__[0]) is None
        assert recursive_find_trainer_class_by_name(name).__name__ == name
    # the schedule's model is nnunetv2's own
    warmup = recursive_find_trainer_class_by_name("nnUNetTrainer_warmup")
    assert warmup.__module__.startswith("nnunetv2.training.nnUNetTrainer.variants.lr_schedule")


def _trainer(cls, tmp_path, monkeypatch, plans=None):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / var).mkdir(exist_ok=True)
        monkeypatch.setenv(var, str(tmp_path / var))
    plans = dict(plans or plans_for(SMALL, (8, 16, 16)), continue_training=False)
    return cls(plans, "3d_fullres", 0, DS_JSON, torch.device("cpu"))


def test_quick_trainer_iterations_and_epochs_from_the_environment(tmp_path, monkeypatch):
    from zoo.nnunet.trainers import nnUNetTrainerQuick, nnUNetTrainerUNetPlusPlusQuick

    t = _trainer(nnUNetTrainerQuick, tmp_path, monkeypatch)
    assert (t.num_epochs, t.num_iterations_per_epoch, t.num_val_iterations_per_epoch) == (1, 5, 1)
    monkeypatch.setenv("ZOO_QUICK_ITERS", "7")
    monkeypatch.setenv("ZOO_QUICK_EPOCHS", "3")
    t = _trainer(nnUNetTrainerUNetPlusPlusQuick, tmp_path, monkeypatch)
    assert (t.num_epochs, t.num_iterations_per_epoch) == (3, 7)
    for bad in ("0", "251", "five"):
        monkeypatch.setenv("ZOO_QUICK_ITERS", bad)
        with pytest.raises(ValueError, match="ZOO_QUICK_ITERS"):
            _trainer(nnUNetTrainerQuick, tmp_path, monkeypatch)


@pytest.mark.parametrize("name", ["nnUNetTrainerFinetune", "nnUNetTrainer_warmup"])
def test_fine_tuning_learning_rate_follows_the_documented_schedule(name, tmp_path, monkeypatch, capsys):
    from nnunetv2.training.nnUNetTrainer.variants.lr_schedule.nnUNetTrainer_warmup import nnUNetTrainer_warmup

    from zoo.nnunet.trainers import nnUNetTrainerFinetune

    cls = nnUNetTrainerFinetune if name == "nnUNetTrainerFinetune" else nnUNetTrainer_warmup
    t = _trainer(cls, tmp_path, monkeypatch)
    warmup = t.warmup_epochs if cls is nnUNetTrainerFinetune else t.warmup_duration_whole_net
    assert (t.initial_lr, warmup, t.num_epochs) == (1e-2, 50, 1000)
    # what initialize() does for the schedule (it also needs the preprocessed data): SGD and the warm-up scheduler
    t.network = torch.nn.Conv3d(1, 2, 3)
    t.optimizer, t.lr_scheduler = t.configure_optimizers()
    Path(t.output_folder).mkdir(parents=True, exist_ok=True)
    warmup_optimizer = t.optimizer
    lrs = []
    for epoch in range(t.num_epochs):
        t.current_epoch = epoch
        t.on_train_epoch_start()
        lrs.append(t.optimizer.param_groups[0]["lr"])
    capsys.readouterr()
    epochs = np.arange(1000)
    expected = np.where(epochs < 50, 1e-2 * (epochs + 1) / 50,
                        1e-2 * np.clip(1 - (epochs - 50) / 950, 0, None) ** 0.9)
    np.testing.assert_allclose(lrs, expected, rtol=1e-12, atol=1e-15)
    assert lrs[0] == pytest.approx(2e-4) and lrs[49] == lrs[50] == pytest.approx(1e-2)
    assert t.optimizer is warmup_optimizer  # the switch to poly keeps SGD's momentum buffers
    assert t.optimizer.param_groups[0]["momentum"] == 0.99 and t.optimizer.param_groups[0]["nesterov"]


def test_train_hint_names_the_fine_tuning_and_quick_trainers():
    unet = plans_for(SMALL, (8, 16, 16))
    hint = train_hint(unet, "3d_fullres", "w.pth")
    assert ("  nnUNetv2_train Dataset901_T 3d_fullres FOLD -p nnUNetPlans -tr nnUNetTrainerFinetune "
            "-pretrained_weights w.pth\n") in hint
    assert hint.endswith("-tr nnUNetTrainerQuick") and f"  export nnUNet_extTrainer={EXT_DIR}\n" in hint
    unetpp = train_hint(plans_for(SMALL, (8, 16, 16), cls=NNUNET_CLASS_PATH), "3d_fullres")
    assert "-tr nnUNetTrainerUNetPlusPlus [-pretrained_weights" in unetpp
    assert unetpp.endswith("-tr nnUNetTrainerUNetPlusPlusQuick") and "Finetune" not in unetpp


def test_quick_trainer_end_to_end_from_a_zoo_export(pyradiomics_dir, nnunet_env, lung_cache,  # noqa: F811
                                                   monkeypatch, capsys):
    import SimpleITK as sitk
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

    root = nnunet_env
    raw = root / "nnUNet_raw" / DATASET_NAME
    for sub in ("imagesTr", "labelsTr"):
        (raw / sub).mkdir(parents=True)
    for case in ("lung1", "lung2"):
        image, label = _crop_case(pyradiomics_dir, case)
        sitk.WriteImage(image, str(raw / "imagesTr" / f"{case}_0000.nii.gz"))
        sitk.WriteImage(label, str(raw / "labelsTr" / f"{case}.nii.gz"))
    (raw / "dataset.json").write_text(json.dumps(DS_JSON))

    # nnUNetv2_plan_and_preprocess -d 988 -c 3d_fullres (its Python API; one worker)
    extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=False, verbose=False,
                         show_progress_bar=False)
    plan_experiments([DATASET_ID])
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    preprocess([DATASET_ID], configurations=("3d_fullres",), num_processes=(1,), show_progress_bar=False)
    pre = root / "nnUNet_preprocessed" / DATASET_NAME
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"].endswith(".PlainConvUNet")

    weights = root / "pretrained.pth"
    assert _cli(["export-nnunet", NAME, "--plans", str(pre / "nnUNetPlans.json"), "--dataset-json",
                 str(pre / "dataset.json"), "--cache-dir", str(lung_cache), "-o", str(weights)]) == 0
    printed = capsys.readouterr().out
    assert "-tr nnUNetTrainerFinetune" in printed and "-tr nnUNetTrainerQuick" in printed
    saved = torch.load(weights, weights_only=True)

    # ZOO_QUICK_ITERS=3 nnUNetv2_train 988 3d_fullres all -tr nnUNetTrainerQuick -pretrained_weights pretrained.pth
    #     -device cpu   (run_training's own steps, without the final full validation)
    monkeypatch.setenv("ZOO_QUICK_ITERS", "3")
    trainer = get_trainer_from_args(str(DATASET_ID), "3d_fullres", "all", "nnUNetTrainerQuick", "nnUNetPlans",
                                    device=torch.device("cpu"))
    assert type(trainer).__name__ == "nnUNetTrainerQuick"
    maybe_load_checkpoint(trainer, False, False, str(weights))
    out = capsys.readouterr().out
    assert f"Loading pretrained weights from file  {weights}" in out and "Trainer 'nnUNetTrainerQuick'" in out
    start = {k: v.clone() for k, v in trainer.network.state_dict().items()}
    loaded = [k for k in start if ".seg_layers." not in k and k in saved["network_weights"]]
    assert any(k.startswith("encoder.") for k in loaded)
    for key in loaded:
        assert torch.equal(start[key], saved["network_weights"][key]), key

    trainer.run_training()
    out = capsys.readouterr().out
    lines = [LOSS_LINE.search(line) for line in out.splitlines()]
    steps = [(int(m[1]), int(m[2]), int(m[3])) for m in lines if m]
    assert steps == [(0, 1, 3), (0, 2, 3), (0, 3, 3)]
    assert all(np.isfinite(float(m[4])) for m in lines if m)
    log = next(Path(trainer.output_folder).glob("training_log_*.txt")).read_text()
    assert len(LOSS_LINE.findall(log)) == 3  # also in nnU-Net's log file
    ckpt = torch.load(Path(trainer.output_folder) / "checkpoint_final.pth", weights_only=False)
    assert ckpt["trainer_name"] == "nnUNetTrainerQuick" and ckpt["current_epoch"] == 1
    moved = [k for k, v in ckpt["network_weights"].items() if not torch.equal(v, start[k])]
    assert any(k.startswith("encoder.") for k in moved)

    # resuming (--c): nnUNetTrainerFinetune reads nnU-Net's checkpoint; nnUNetTrainer_warmup's torch.load cannot
    with pytest.raises(pickle.UnpicklingError, match="[Ww]eights only"):
        torch.load(Path(trainer.output_folder) / "checkpoint_final.pth", map_location="cpu")
    finetune = get_trainer_from_args(str(DATASET_ID), "3d_fullres", "all", "nnUNetTrainerFinetune", "nnUNetPlans",
                                     device=torch.device("cpu"))
    finetune.load_checkpoint(str(Path(trainer.output_folder) / "checkpoint_final.pth"))
    assert finetune.current_epoch == 1
    finetune.on_train_epoch_start()
    assert finetune.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 2 / 50)
    capsys.readouterr()
