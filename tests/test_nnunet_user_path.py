"""The nnU-Net user's path end to end, with nnunetv2's (PyPI 2.8.1) real planner, preprocessing, trainer and
predictor on the public chest CT data set (pyradiomics lung1/lung2, test_unetpp's crops; skipped when the volumes
cannot be fetched), CPU only:

1. raw layout -> ``nnUNetv2_plan_and_preprocess`` (its Python API);
2. ``zoo export-nnunet genesis-chest-ct-nnunet-lung`` into the plan as planned: the input-contract WARNING (the
   planned CTNormalization statistics are not the checkpoint's); a partial transfer: every tensor that nnU-Net's
   ``load_pretrained_weights`` puts into the network nnU-Net builds with a value only the checkpoint can have
   given is one the report says was initialised (the others it says so of are zero biases, which nnU-Net v1
   lacks), and the report's share is that of its rows;
3. ``zoo plan NAME --plans P --match-input -o P2`` -> ``nnUNetv2_preprocess -p P2``: nnU-Net's own preprocessed
   case (read with its dataset class) equals the checkpoint's normalisation, clip(HU, -1000, 1000) then
   (x + 775.8457) / 251.9326 (from the registry), of the raw CT cropped and resampled as nnU-Net does; the plan
   as planned gives other data, and its preprocessed folder is left as it was;
4. ``zoo export-nnunet NAME --plans P2``: no input warning; ``nnUNetv2_train ... -tr nnUNetTrainerQuick
   -pretrained_weights`` (ZOO_QUICK_ITERS=2, fold ``all``): what ``load_pretrained_weights`` loaded (a spy on
   nnU-Net's function) against the export file, and the report's target share against the tensors the
   trainer's network received;
5. ``nnUNetv2_predict`` (``nnUNetPredictor``) on one case: a segmentation with the input's geometry.

"Checkpoint-derived" is decided without the report: in step 4, a tensor counts when the trainer's network holds
the checkpoint's own tensor of that name (as converted from nnU-Net v1, kernels permuted to the plan's axis order)
after ``load_pretrained_weights``; cross-checked (steps 2 and 4) with a seed test: the network holds the export
file's value, the same in an export with another ``--seed`` (fresh initialisation depends on it), and not
constant (fresh norms and biases are 1 / 0; the test checkpoint's tensors are random).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nnunetv2")
pytest.importorskip("SimpleITK")

import zoo.registry as registry  # noqa: E402
from zoo.nnunet.input_contract import DATA_SUFFIX  # noqa: E402

from data_fixtures import pyradiomics_dir  # noqa: E402,F401  (session fixture)
from test_unetpp import _crop_case, nnunet_env  # noqa: E402,F401  (function fixture)
from upstream import genesis_lung_cache  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::zoo.LicenseWarning"),
              pytest.mark.filterwarnings("ignore:Detected old nnU-Net plans format")]

NAME = "genesis-chest-ct-nnunet-lung"
DATASET_ID, DATASET_NAME = 989, "Dataset989_UserPathLung"
DS_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "tumour": 1}, "numTraining": 2,
           "file_ending": ".nii.gz"}
INPUT_WARNING = "WARNING: the plan normalises channel(s) 0 differently"


@pytest.fixture(scope="module")
def lung_cache(tmp_path_factory):
    """A cache folder whose hub/ holds the fake upstream Genesis nnU-Net file (real client, offline)."""
    return genesis_lung_cache(tmp_path_factory)


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    torch.set_num_threads(before)


def _cli(argv) -> int:
    from zoo import cli

    return cli.main(argv)


def _export(pre: Path, plans: str, out: Path, cache: Path, capsys, seed: int = 0, report: Path | None = None) -> str:
    argv = ["export-nnunet", NAME, "--plans", str(pre / f"{plans}.json"), "--dataset-json", str(pre / "dataset.json"),
            "--cache-dir", str(cache), "-o", str(out), "--seed", str(seed)]
    if report is not None:
        argv += ["--report", str(report)]
    assert _cli(argv) == 0
    return capsys.readouterr().out


def _seed_stable(network: torch.nn.Module, received: dict, export: dict, other_seed: dict) -> set:
    """Parameters (aliases counted once) that hold the export file's value, the same in an export with another
    seed, and not constant: values that cannot be a fresh initialisation."""
    params = dict(network.named_parameters())  # de-duplicated: decoder.encoder.* is encoder.*
    return {k for k in params
            if k in export and torch.equal(received[k], export[k]) and torch.equal(export[k], other_seed[k])
            and export[k].numel() > 1 and not torch.all(export[k] == export[k].flatten()[0])}


def _from_checkpoint(network: torch.nn.Module, received: dict, converted: dict, plans: dict) -> set:
    """Parameters that hold the checkpoint's own tensor of the same name (as converted from nnU-Net v1, where
    biases v1 lacks are zeros), kernels permuted from the checkpoint's axis order to the plan's: a network with
    the checkpoint's topology."""
    from zoo.nnunet.plans import plan_axis_order

    src, tgt = registry.get_entry(NAME).input.axis_order, plan_axis_order(plans, 3)
    perm = [2 + src.index(letter) for letter in tgt]
    out = set()
    for k, _ in network.named_parameters():
        c = converted.get(k)
        if c is None:
            continue
        c = c.permute(0, 1, *perm) if c.dim() == 5 else c
        if c.shape == received[k].shape and torch.equal(received[k], c.to(received[k].dtype)):
            out.add(k)
    return out


def _share(network: torch.nn.Module, keys: set) -> float:
    params = dict(network.named_parameters())
    return sum(params[k].numel() for k in keys) / sum(p.numel() for p in params.values())


def _check_rows(report: dict, network: torch.nn.Module) -> dict:
    rows = {r["target_key"]: r for r in report["rows"]}
    params = dict(network.named_parameters())
    assert set(rows) == set(params)  # the report's target is the network nnU-Net builds
    assert report["totals"]["target_params"] == sum(p.numel() for p in params.values())
    return rows


def _checkpoint_input(raw_image: Path, props: dict, plans: dict, conf: dict, shape) -> np.ndarray:
    """The registry's normalisation of the raw CT, transposed, cropped and resampled as nnU-Net's
    DefaultPreprocessor does (normalisation before resampling, with the configuration's resampling function)."""
    import SimpleITK as sitk
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    norm = registry.get_entry(NAME).input.normalization
    assert norm.scheme == "ct_zscore" and norm.clip == (-1000.0, 1000.0)
    assert (norm.mean, norm.std) == (-775.8457, 251.9326)
    image = sitk.ReadImage(str(raw_image))
    hu = sitk.GetArrayFromImage(image).astype(np.float64)[None]  # c, z, y, x
    spacing = list(image.GetSpacing())[::-1]
    tf = plans["transpose_forward"]
    hu = hu.transpose([0, *[i + 1 for i in tf]])
    spacing = [spacing[i] for i in tf]
    bbox = props["bbox_used_for_cropping"]
    hu = hu[(slice(None), *[slice(a, b) for a, b in bbox])]
    x = ((np.clip(hu, *norm.clip) - norm.mean) / norm.std).astype(np.float32)
    cm = PlansManager(plans).get_configuration("3d_fullres")
    assert list(conf["spacing"]) == list(cm.spacing)
    return cm.resampling_fn_data(x, tuple(shape), spacing, cm.spacing)


def _load_case(folder: Path, case: str):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    ds = infer_dataset_class(str(folder))(str(folder))
    data, _seg, _prev, props = ds.load_case(case)
    return np.asarray(data[:]), props


def test_nnunet_users_path_end_to_end(pyradiomics_dir, nnunet_env, lung_cache, monkeypatch,  # noqa: F811
                                      capsys):
    import SimpleITK as sitk
    import nnunetv2.run.run_training as run_training
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    root = nnunet_env
    raw = root / "nnUNet_raw" / DATASET_NAME
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (raw / sub).mkdir(parents=True)
    for case in ("lung1", "lung2"):
        image, label = _crop_case(pyradiomics_dir, case)
        sitk.WriteImage(image, str(raw / "imagesTr" / f"{case}_0000.nii.gz"))
        sitk.WriteImage(label, str(raw / "labelsTr" / f"{case}.nii.gz"))
    test_image = _crop_case(pyradiomics_dir, "lung2", nz=12, nxy=96)[0]  # smaller than the patch: padded
    sitk.WriteImage(test_image, str(raw / "imagesTs" / "lung2s_0000.nii.gz"))
    (raw / "dataset.json").write_text(json.dumps(DS_JSON))

    # 1. nnUNetv2_plan_and_preprocess -d 989 -c 3d_fullres (its Python API; one worker)
    extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=False, verbose=False,
                         show_progress_bar=False)
    plan_experiments([DATASET_ID])
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")  # no augmentation workers (set after planning, which reads it)
    preprocess([DATASET_ID], configurations=("3d_fullres",), num_processes=(1,), show_progress_bar=False)
    pre = root / "nnUNet_preprocessed" / DATASET_NAME
    planned = json.loads((pre / "nnUNetPlans.json").read_text())
    conf = planned["configurations"]["3d_fullres"]
    assert conf["normalization_schemes"] == ["CTNormalization"]
    planned_props = planned["foreground_intensity_properties_per_channel"]["0"]
    planned_folder = pre / conf["data_identifier"]
    planned_files = {p.name: p.stat().st_mtime_ns for p in planned_folder.iterdir()}

    # 2. zoo export-nnunet into the plan as planned: the input contract differs
    w1, w1b, r1 = root / "planned.pth", root / "planned_seed1.pth", root / "planned_report.json"
    out = _export(pre, "nnUNetPlans", w1, lung_cache, capsys, report=r1)
    assert "input contract (pretraining vs plan):" in out and INPUT_WARNING in out
    assert "clip [-1000, 1000], then (x - (-775.846)) / 251.933" in out
    assert (f"CTNormalization: clip [{planned_props['percentile_00_5']:g}, {planned_props['percentile_99_5']:g}], "
            f"then (x - ({planned_props['mean']:g})) / {planned_props['std']:g}") in out
    assert "--match-input" in out
    report1 = json.loads(r1.read_text())
    assert report1["options"]["input_contract"]["intensity_differs"]
    _export(pre, "nnUNetPlans", w1b, lung_cache, capsys, seed=1)
    # the planned network as nnU-Net builds it, loaded with nnU-Net's own function: a partial transfer
    pm = PlansManager(planned)
    cm = pm.get_configuration("3d_fullres")
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, 1, 2, deep_supervision=True)
    load_pretrained_weights(net, str(w1))
    capsys.readouterr()
    rows1 = _check_rows(report1, net)
    stable1 = _seed_stable(net, net.state_dict(), torch.load(w1, weights_only=True)["network_weights"],
                           torch.load(w1b, weights_only=True)["network_weights"])
    init1 = {k for k, r in rows1.items() if r["initialised"]}
    assert stable1 <= init1  # what only the checkpoint can have given, the report says it gave
    constant = {k for k in init1 - stable1 if torch.all(net.state_dict()[k] == 0)}  # v1's missing biases: zeros
    assert init1 - stable1 == constant and all(k.endswith(".bias") for k in constant)
    share1 = report1["totals"]["share_initialised"]
    assert 0.0 < share1 and abs(share1 - _share(net, init1)) < 1e-6

    # 3. zoo plan NAME --plans nnUNetPlans.json --match-input -o nnUNetPlans_genesis.json; nnUNetv2_preprocess
    p2 = pre / "nnUNetPlans_genesis.json"
    assert _cli(["plan", NAME, "--plans", str(pre / "nnUNetPlans.json"), "--match-input", "-o", str(p2)]) == 0
    out = capsys.readouterr().out
    assert "foreground_intensity_properties_per_channel.0" in out and "WARNING" not in out
    assert "reproduces the checkpoint's intensity normalisation" in out
    new = json.loads(p2.read_text())
    new_conf = new["configurations"]["3d_fullres"]
    props = new["foreground_intensity_properties_per_channel"]["0"]
    assert (props["mean"], props["std"], props["percentile_00_5"], props["percentile_99_5"]) == (
        -775.8457, 251.9326, -1000.0, 1000.0)
    assert new_conf["normalization_schemes"] == ["CTNormalization"]
    assert new_conf["data_identifier"] == conf["data_identifier"] + DATA_SUFFIX
    assert new_conf["spacing"] == conf["spacing"] and new["plans_name"] == "nnUNetPlans_genesis"
    preprocess([DATASET_ID], plans_identifier="nnUNetPlans_genesis", configurations=("3d_fullres",),
               num_processes=(1,), show_progress_bar=False)
    capsys.readouterr()
    assert {p.name: p.stat().st_mtime_ns for p in planned_folder.iterdir()} == planned_files  # not overwritten
    for case in ("lung1", "lung2"):
        data, case_props = _load_case(pre / new_conf["data_identifier"], case)
        expected = _checkpoint_input(raw / "imagesTr" / f"{case}_0000.nii.gz", case_props, new, new_conf,
                                     data.shape[1:])
        assert data.shape == expected.shape and data.dtype == np.float32
        np.testing.assert_allclose(data, expected, rtol=1e-5, atol=1e-4)
        assert data.min() >= (-1000 + 775.8457) / 251.9326 - 0.5  # clipped at -1000 HU (spline overshoot aside)
        planned_data, planned_case_props = _load_case(planned_folder, case)
        assert planned_case_props["bbox_used_for_cropping"] == case_props["bbox_used_for_cropping"]
        assert planned_data.shape == data.shape and np.abs(planned_data - data).max() > 1.0

    # 4. zoo export-nnunet on the rewritten plan: no input warning
    w2, w2b, r2 = root / "pretrained.pth", root / "pretrained_seed1.pth", root / "report.json"
    out = _export(pre, "nnUNetPlans_genesis", w2, lung_cache, capsys, report=r2)
    assert "input contract (pretraining vs plan):" in out and INPUT_WARNING not in out
    assert "the plan reproduces the checkpoint's intensity normalisation" in out
    assert "-tr nnUNetTrainerQuick" in out
    _export(pre, "nnUNetPlans_genesis", w2b, lung_cache, capsys, seed=1)
    report2 = json.loads(r2.read_text())
    assert not report2["options"]["input_contract"]["differs"]
    saved = torch.load(w2, weights_only=True)["network_weights"]
    saved_b = torch.load(w2b, weights_only=True)["network_weights"]

    # ZOO_QUICK_ITERS=2 nnUNetv2_train 989 3d_fullres all -p nnUNetPlans_genesis -tr nnUNetTrainerQuick
    #     -pretrained_weights pretrained.pth -device cpu   (run_training's own steps, without the final validation)
    calls = []

    def spy(network, fname, verbose=False):
        before = {k: v.detach().clone() for k, v in network.state_dict().items()}
        load_pretrained_weights(network, fname, verbose=verbose)
        calls.append((fname, before, {k: v.detach().clone() for k, v in network.state_dict().items()}))

    monkeypatch.setattr(run_training, "load_pretrained_weights", spy)
    monkeypatch.setenv("ZOO_QUICK_ITERS", "2")
    trainer = run_training.get_trainer_from_args(str(DATASET_ID), "3d_fullres", "all", "nnUNetTrainerQuick",
                                                 "nnUNetPlans_genesis", device=torch.device("cpu"))
    run_training.maybe_load_checkpoint(trainer, False, False, str(w2))
    assert len(calls) == 1 and calls[0][0] == str(w2)
    _, before, received = calls[0]
    network = trainer.network
    assert {k: v for k, v in network.state_dict().items()}.keys() == received.keys()
    heads = {k for k in received if ".seg_layers." in k}
    loaded = {k for k, v in received.items() if k not in heads and k in saved and torch.equal(v, saved[k])}
    assert loaded == set(received) - heads  # everything but the heads, as the export file holds it
    assert all(torch.equal(received[k], before[k]) for k in heads)  # the heads keep nnU-Net's initialisation
    from zoo.convert.cache import load_converted
    from zoo.weights import resolve_weights

    converted = load_converted(resolve_weights(registry.get_entry(NAME), cache_dir=lung_cache, progress=False)[0])
    # the heads were not loaded (above; their zero biases equal v1's converted zeros by coincidence)
    derived = _from_checkpoint(network, received, converted, new) - heads
    assert _seed_stable(network, received, saved, saved_b) <= derived  # the two criteria agree
    assert {k for k in dict(network.named_parameters()) if k not in heads} == derived  # complete transfer
    rows2 = _check_rows(report2, network)
    assert {k for k, r in rows2.items() if r["initialised"]} == derived
    share2 = _share(network, derived)
    assert abs(report2["totals"]["share_initialised"] - share2) < 1e-6
    assert report2["totals"]["share_initialised_without_heads"] == pytest.approx(1.0)  # the checkpoint's topology

    trainer.run_training()
    capsys.readouterr()
    ckpt_file = Path(trainer.output_folder) / "checkpoint_final.pth"
    ckpt = torch.load(ckpt_file, weights_only=False)
    assert ckpt["trainer_name"] == "nnUNetTrainerQuick" and ckpt["current_epoch"] == 1
    assert any(not torch.equal(v, received[k]) for k, v in ckpt["network_weights"].items() if k.startswith("encoder."))
    # the trained model's plans normalise as the checkpoint did (nnU-Net's predictor preprocesses with them)
    results_plans = json.loads((Path(trainer.output_folder_base) / "plans.json").read_text())
    key = "foreground_intensity_properties_per_channel"
    assert results_plans[key] == new[key]

    # 5. nnUNetv2_predict -i imagesTs -o pred -d 989 -c 3d_fullres -f all -p nnUNetPlans_genesis -tr nnUNetTrainerQuick
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False, device=torch.device("cpu"),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(trainer.output_folder_base), use_folds=("all",),
                                                   checkpoint_name="checkpoint_final.pth")
    (root / "pred").mkdir()
    predictor.predict_from_files_sequential(str(raw / "imagesTs"), str(root / "pred"), save_probabilities=False,
                                            overwrite=True)
    capsys.readouterr()
    image = sitk.ReadImage(str(raw / "imagesTs" / "lung2s_0000.nii.gz"))
    seg = sitk.ReadImage(str(root / "pred" / "lung2s.nii.gz"))
    assert seg.GetSize() == image.GetSize()
    np.testing.assert_allclose(seg.GetSpacing(), image.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(seg.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(seg.GetDirection(), image.GetDirection(), atol=1e-6)
    assert set(np.unique(sitk.GetArrayFromImage(seg))) <= {0, 1}
