"""UNet++ planned as nnU-Net plans its variants (zoo/nnunet/planner.py) and ``zoo plan --arch unetpp``'s
patch / batch re-sizing (zoo/nnunet/plan_rewrite.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo.nnunet.plan_rewrite import rewrite_plan
from zoo.nnunet.planner import (fit_patch_and_batch, nested_unet_feature_map_size,
                                plain_conv_unet_feature_map_size)

DEMO = Path(__file__).resolve().parent.parent / "zoo" / "assets" / "demo" / "nnUNetPlans.json"
CONF = "3d_fullres"

pytestmark = [pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")]


def _demo():
    plans = json.loads(DEMO.read_text())
    return plans, plans["configurations"][CONF]


def test_import_zoo_and_planner_module_do_not_import_nnunetv2():
    code = ("import sys, zoo, zoo.nnunet.planner, zoo.nnunet.plan_rewrite; "
            "assert 'nnunetv2' not in sys.modules, 'nnunetv2 imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("patch", [[128, 128, 128], [64, 96, 64], [32, 64, 64]])
@pytest.mark.parametrize("deep_supervision", [False, True])
def test_estimates_match_the_networks_and_unetpp_is_about_3x(patch, deep_supervision):
    pytest.importorskip("dynamic_network_architectures")
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    _, conf = _demo()
    arch = conf["architecture"]
    plain = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                   4, 3, allow_init=False, deep_supervision=deep_supervision)
    nested = get_network_from_plans("zoo.archs.nested_unet.NestedUNet", arch["arch_kwargs"],
                                    arch["_kw_requires_import"], 4, 3, allow_init=False,
                                    deep_supervision=deep_supervision)
    p = plain.compute_conv_feature_map_size(patch)
    n = nested.compute_conv_feature_map_size(patch)
    assert plain_conv_unet_feature_map_size(arch["arch_kwargs"], patch, 3, deep_supervision) == p
    assert nested_unet_feature_map_size(arch["arch_kwargs"], patch, 4, 3, deep_supervision) == n
    assert n > p
    assert 2.8 < n / p < 3.6, n / p


def test_nested_estimate_counts_every_node():
    from zoo.archs.nested_unet import build_nested_unet

    _, conf = _demo()
    kw = conf["architecture"]["arch_kwargs"]
    net = build_nested_unet(in_channels=1, num_classes=2, **kw)
    full = net.compute_conv_feature_map_size([64, 64, 64])
    # one more decoder conv per node adds exactly F_i x voxels per node
    kw2 = dict(kw, n_conv_per_stage_decoder=[3] * (kw["n_stages"] - 1))
    more = build_nested_unet(in_channels=1, num_classes=2, **kw2).compute_conv_feature_map_size([64, 64, 64])
    L = kw["n_stages"] - 1
    extra = sum(kw["features_per_stage"][i] * (64 // 2 ** i) ** 3 for j in range(1, L + 1) for i in range(L - j + 1))
    assert more - full == extra


def test_fit_shrinks_patch_to_the_plain_budget():
    _, conf = _demo()
    kw = conf["architecture"]["arch_kwargs"]
    fit = fit_patch_and_batch(kw, conf["patch_size"], conf["batch_size"], conf["median_image_size_in_voxels"], 4, 2)
    assert fit["fits"]
    assert fit["estimate_unetpp_step"] <= fit["estimate_plain_step"]
    assert np.prod(fit["patch_size"]) < np.prod(conf["patch_size"])
    assert all(p % 32 == 0 for p in fit["patch_size"])          # the topology's total strides
    # nnU-Net's rule would have kept shrinking if one more step were needed: the step before did not fit
    assert fit["batch_size"] >= 2


def test_fit_lowers_batch_when_patch_is_at_its_minimum():
    _, conf = _demo()
    kw = conf["architecture"]["arch_kwargs"]
    fit = fit_patch_and_batch(kw, [64, 64, 64], 8, None, 1, 2)
    assert fit["patch_size"] == [64, 64, 64]                     # 2 x total stride: the smallest allowed
    assert fit["batch_size"] < 8
    assert fit["estimate_unetpp_step"] <= fit["estimate_plain_step"]


def test_zoo_plan_unetpp_output_fits_and_nnunet_reads_it(tmp_path):
    plans, conf = _demo()
    out = tmp_path / "nnUNetPlans_unetpp.json"
    new = rewrite_plan(None, DEMO, CONF, arch="unetpp", output=out)
    c = new["configurations"][CONF]
    rec = new["medzoo_unetpp_plan"]
    assert rec["patch_size_before"] == conf["patch_size"] and rec["batch_size_before"] == conf["batch_size"]
    assert c["patch_size"] == rec["patch_size"] and c["batch_size"] == rec["batch_size"]
    assert (np.prod(c["patch_size"]) < np.prod(conf["patch_size"])) or c["batch_size"] < conf["batch_size"]
    kw = c["architecture"]["arch_kwargs"]
    plain_step = plain_conv_unet_feature_map_size(kw, conf["patch_size"], 2) * conf["batch_size"]
    nested_step = nested_unet_feature_map_size(kw, c["patch_size"], 1, 2) * c["batch_size"]
    assert nested_step <= plain_step
    assert c["data_identifier"] == conf["data_identifier"]       # same preprocessed data

    pytest.importorskip("nnunetv2")
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    cm = PlansManager(str(out)).get_configuration(CONF)
    assert list(cm.patch_size) == c["patch_size"] and cm.batch_size == c["batch_size"]
    assert cm.network_arch_class_name == "zoo.archs.nested_unet.NestedUNet"

    # already a UNet++ plan: not shrunk twice; back to the U-Net keeps the arch swap only
    again = rewrite_plan(None, out, CONF, arch="unetpp")
    assert again["configurations"][CONF]["patch_size"] == c["patch_size"]


def _write_tiny_dataset(raw: Path, n: int = 4) -> None:
    import SimpleITK as sitk

    ds = raw / "Dataset987_UnetppPlan"
    (ds / "imagesTr").mkdir(parents=True)
    (ds / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for k in range(n):
        img = rng.normal(size=(48, 64, 64)).astype(np.float32)
        seg = np.zeros((48, 64, 64), np.uint8)
        seg[10:30, 20:40, 20:44] = 1
        for arr, path in ((img, ds / "imagesTr" / f"case{k}_0000.nii.gz"), (seg, ds / "labelsTr" / f"case{k}.nii.gz")):
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing((1.0, 1.0, 1.0))
            sitk.WriteImage(im, str(path))
    (ds / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MRI"}, "labels": {"background": 0, "tumour": 1}, "numTraining": n,
        "file_ending": ".nii.gz"}))


def test_nnunet_plan_experiment_with_nested_unet_planner(tmp_path, monkeypatch):
    pytest.importorskip("nnunetv2")
    pytest.importorskip("SimpleITK")
    raw, pre, res = tmp_path / "raw", tmp_path / "pre", tmp_path / "res"
    for d in (raw, pre, res):
        d.mkdir()
    _write_tiny_dataset(raw)
    env = {"nnUNet_raw": str(raw), "nnUNet_preprocessed": str(pre), "nnUNet_results": str(res)}
    code = (
        "from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints\n"
        "extract_fingerprints([987], num_processes=1, check_dataset_integrity=True)\n"
        "from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner\n"
        "ExperimentPlanner(987).plan_experiment()\n"
        "from zoo.nnunet.planner import main\n"
        "main(['-d', '987'])\n"
    )
    import os

    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env, "PYTHONIOENCODING": "utf-8"},
                          capture_output=True, encoding="utf-8", errors="replace",
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = pre / "Dataset987_UnetppPlan"
    plain = json.loads((folder / "nnUNetPlans.json").read_text())
    unetpp = json.loads((folder / "nnUNetPlans_unetpp.json").read_text())
    assert unetpp["experiment_planner_used"] == "NestedUNetPlanner"
    for name in ("2d", "3d_fullres"):
        p, u = plain["configurations"][name], unetpp["configurations"][name]
        assert u["architecture"]["network_class_name"] == "zoo.archs.nested_unet.NestedUNet"
        assert u["data_identifier"] == p["data_identifier"]
        assert np.prod(u["patch_size"]) * u["batch_size"] <= np.prod(p["patch_size"]) * p["batch_size"]
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    assert PlansManager(str(folder / "nnUNetPlans_unetpp.json")).get_configuration("3d_fullres").batch_size >= 2
