"""The checkpoint's input contract against a plan's (zoo.nnunet.input_contract), checked with nnunetv2's own
normalisation classes: a plan rewritten by ``zoo plan --match-input`` makes nnU-Net's CTNormalization (and its
DefaultPreprocessor) reproduce the checkpoint's pretraining normalisation; the comparison warns for the plan as
planned and not for the rewritten one; ``zoo adapt`` / ``zoo export-nnunet`` print it, ``zoo plan`` writes it."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import zoo.registry as registry
from zoo.entries.genesis import GENESIS_NNUNET_CT_MEAN, GENESIS_NNUNET_CT_STD
from zoo.entry import InputContract, Normalization
from zoo.nnunet.input_contract import DATA_SUFFIX, compare_input, match_input
from zoo.nnunet.plan_rewrite import rewrite_plan
from zoo.nnunet.plans import PlanError

from test_nnunet_export import F6, OPS, _cli, dataset, lung_cache, plans_for  # noqa: F401  (module fixture)

pytest.importorskip("nnunetv2")
from nnunetv2.preprocessing.normalization.default_normalization_schemes import (  # noqa: E402
    CTNormalization,
    ZScoreNormalization,
)
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor  # noqa: E402
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")]

NAME = "genesis-chest-ct-nnunet-lung"
SMALL = {"n_stages": 4, "features_per_stage": F6[:4], "kernel_sizes": [[3, 3, 3]] * 4,
         "strides": [[1, 1, 1]] + [[2, 2, 2]] * 3, "n_conv_per_stage": [2] * 4,
         "n_conv_per_stage_decoder": [2] * 3, **OPS}
#: a CT data set's statistics as nnUNetv2_plan_and_preprocess records them (soft-tissue foreground)
CT_PROPS = {"max": 3071.0, "mean": -28.0, "median": -20.0, "min": -1024.0, "percentile_00_5": -968.0,
            "percentile_99_5": 295.0, "std": 117.0}


def ct_plans(spacing=(5.0, 0.6, 0.6)) -> dict:
    plans = plans_for(SMALL, [40, 56, 40], spacing=spacing)
    plans["configurations"]["3d_fullres"]["normalization_schemes"] = ["CTNormalization"]
    plans["foreground_intensity_properties_per_channel"] = {"0": dict(CT_PROPS)}
    return plans


def ct_volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-1400.0, 2000.0, size=(12, 20, 16)).astype(np.float32)  # HU, beyond both clip ends


def checkpoint_normalisation(hu: np.ndarray, norm: Normalization) -> np.ndarray:
    lo, hi = norm.clip
    return ((np.clip(hu.astype(np.float64), lo, hi) - norm.mean) / norm.std).astype(np.float32)


def test_rewritten_plan_makes_nnunets_ct_normalization_reproduce_the_checkpoints():
    plans = ct_plans()
    before = copy.deepcopy(plans)
    new = rewrite_plan(NAME, plans, "3d_fullres", match_input=True)
    assert plans == before  # the input is not modified
    norm = registry.get_entry(NAME).input.normalization
    assert (norm.scheme, norm.mean, norm.std, norm.clip) == ("ct_zscore", GENESIS_NNUNET_CT_MEAN, GENESIS_NNUNET_CT_STD,
                                                             (-1000.0, 1000.0))
    pm = PlansManager(new)
    cm = pm.get_configuration("3d_fullres")
    props = pm.foreground_intensity_properties_per_channel["0"]
    hu = ct_volume()
    expected = checkpoint_normalisation(hu, norm)
    # nnU-Net's class with the rewritten properties
    out = CTNormalization(use_mask_for_norm=cm.use_mask_for_norm[0], intensityproperties=props).run(hu.copy())
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    # and its preprocessor's normalisation step, which picks the class from the plan
    data = DefaultPreprocessor(verbose=False)._normalize(hu[None].copy(), np.zeros((1, *hu.shape), np.int8), cm,
                                                         pm.foreground_intensity_properties_per_channel)
    np.testing.assert_allclose(data[0], expected, rtol=1e-6, atol=1e-6)
    # the plan as planned does something else
    planned = CTNormalization(use_mask_for_norm=False, intensityproperties=CT_PROPS).run(hu.copy())
    assert np.abs(planned - expected).max() > 1.0
    # recorded, with new preprocessed data; the other statistics and the spacing stay
    record = new["medzoo_input"]
    assert record["model"] == NAME and record["changed"][0]["before"] == CT_PROPS
    assert props["median"] == CT_PROPS["median"] and props["max"] == CT_PROPS["max"]
    assert cm.data_identifier == "nnUNetPlans_3d_fullres" + DATA_SUFFIX
    assert cm.spacing == [5.0, 0.6, 0.6]


def test_warning_for_the_mismatched_plan_and_not_for_the_rewritten_one():
    plans = ct_plans()
    cmp = compare_input(NAME, plans)
    assert cmp.differs and cmp.intensity_differs and cmp.channels[0].differs
    assert cmp.spacing_differs is None  # the checkpoint was pretrained at native spacing
    assert "WARNING" in cmp.text and "--match-input" in cmp.text
    assert "clip [-1000, 1000], then (x - (-775.846)) / 251.933" in cmp.text
    assert "CTNormalization: clip [-968, 295], then (x - (-28)) / 117" in cmp.text
    assert "5 x 0.6 x 0.6" in cmp.text
    json.dumps(cmp.to_dict())  # goes into the JSON report
    new = rewrite_plan(NAME, plans, "3d_fullres", match_input=True)
    after = compare_input(NAME, new)
    assert not after.differs and "WARNING" not in after.text
    assert "reproduces the checkpoint's intensity normalisation" in after.text
    # a ZScoreNormalization plan differs from a fixed CT map, and is switched to CTNormalization
    z = plans_for(SMALL, [40, 56, 40])
    assert compare_input(NAME, z).channels[0].differs
    z_new = rewrite_plan(NAME, z, "3d_fullres", match_input=True)
    assert z_new["configurations"]["3d_fullres"]["normalization_schemes"] == ["CTNormalization"]
    assert not compare_input(NAME, z_new).differs


@pytest.mark.parametrize("model", ["genesis-chest-ct", "suprem-unet"])
def test_clip_and_scale_checkpoints_are_reproduced_by_ct_normalization(model):
    """(HU + 1000) / 2000 on [-1000, 1000] (Models Genesis) and [-175, 250] -> [0, 1] (SuPreM) are CTNormalization
    with mean = low, std = high - low."""
    entry = registry.get_entry(model)
    plans = ct_plans()
    match_input(entry, plans, "3d_fullres")
    hu = ct_volume()
    out = CTNormalization(use_mask_for_norm=False,
                          intensityproperties=plans["foreground_intensity_properties_per_channel"]["0"]).run(hu.copy())
    lo, hi = entry.input.normalization.clip
    np.testing.assert_allclose(out, (np.clip(hu, lo, hi) - lo) / (hi - lo), rtol=1e-6, atol=1e-6)
    assert out.min() == 0.0 and out.max() == 1.0
    assert not compare_input(entry, plans).intensity_differs


def test_per_volume_zscore_checkpoint_maps_to_zscore_normalization():
    entry = registry.get_entry("med3d-resnet10")
    plans = ct_plans()
    assert compare_input(entry, plans).channels[0].differs
    record = match_input(entry, plans, "3d_fullres")
    conf = plans["configurations"]["3d_fullres"]
    assert conf["normalization_schemes"] == ["ZScoreNormalization"] and conf["use_mask_for_norm"] == [True]
    assert plans["foreground_intensity_properties_per_channel"]["0"] == CT_PROPS  # unused by ZScoreNormalization
    assert record["changed"] and not compare_input(entry, plans).differs
    image = np.zeros((8, 8, 8), np.float32)
    image[2:6, 2:6, 2:6] = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    seg = np.where(image != 0, 0, -1)  # nnU-Net's nonzero mask: -1 outside
    out = ZScoreNormalization(use_mask_for_norm=True, intensityproperties={}).run(image.copy(), seg)
    fg = image[seg >= 0]
    np.testing.assert_allclose(out[seg >= 0], (fg - fg.mean()) / fg.std(), rtol=1e-5, atol=1e-5)


def test_match_spacing_in_the_plans_axis_order_and_refusals():
    demo = registry.get_entry("genesis-ct-demo")  # zyx, 1.5 x 1 x 1 mm
    plans = ct_plans()
    plans["transpose_forward"], plans["transpose_backward"] = [2, 1, 0], [2, 1, 0]  # the plan works in x, y, z
    cmp = compare_input(demo, plans)
    assert cmp.axis_order == "xyz" and cmp.checkpoint_spacing == (1.0, 1.0, 1.5) and cmp.spacing_differs
    assert "--match-spacing" in cmp.text
    new = rewrite_plan("genesis-ct-demo", plans, "3d_fullres", match_input=True, match_spacing=True)
    assert new["configurations"]["3d_fullres"]["spacing"] == [1.0, 1.0, 1.5]
    assert not compare_input(demo, new).differs
    with pytest.raises(PlanError, match="native spacing"):
        rewrite_plan(NAME, ct_plans(), "3d_fullres", match_input=True, match_spacing=True)
    with pytest.raises(PlanError, match="match_input"):
        rewrite_plan(NAME, ct_plans(), "3d_fullres", match_spacing=True)
    with pytest.raises(PlanError, match="no machine-readable"):
        match_input(registry.get_entry("unetpp-liver"), ct_plans(), "3d_fullres")


def test_normalization_reads_back_from_a_config_dict():
    contract = InputContract(in_channels=1, modality="CT", axis_order="zyx", intensity="", patch_size=(8, 8, 8),
                             normalization={"scheme": "ct_zscore", "mean": -1.0, "std": 2.0, "clip": [-5, 5]})
    assert contract.normalization == Normalization("ct_zscore", -1.0, 2.0, (-5.0, 5.0))
    with pytest.raises(ValueError):
        Normalization("ct_zscore", mean=0.0)
    with pytest.raises(ValueError):
        Normalization("zscore", mean=0.0)


def test_cli_prints_the_comparison_and_zoo_plan_match_input(lung_cache, tmp_path, capsys):  # noqa: F811
    cache, _ = lung_cache
    p, d = tmp_path / "plans.json", tmp_path / "dataset.json"
    p.write_text(json.dumps(ct_plans()))
    d.write_text(json.dumps(dataset(["CT"], {"background": 0, "nodule": 1})))
    common = ["--plans", str(p), "--dataset-json", str(d), "--cache-dir", str(cache)]
    assert _cli(["adapt", NAME, *common, "--report", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "input contract (pretraining vs plan):" in out and "WARNING: the plan normalises channel(s) 0" in out
    assert out.index("input contract") < out.index("(--verbose")  # after the transfer headline
    saved = json.loads((tmp_path / "r.json").read_text())["options"]["input_contract"]
    assert saved["differs"] and saved["channels"][0]["plan_scheme"] == "CTNormalization"
    assert _cli(["export-nnunet", NAME, *common, "-o", str(tmp_path / "w.pth"),
                 "--report", str(tmp_path / "r2.json")]) == 0
    assert "WARNING: the plan normalises" in capsys.readouterr().out
    assert json.loads((tmp_path / "r2.json").read_text())["options"]["input_contract"]["differs"]
    out_plans = tmp_path / "nnUNetPlans_genesis.json"
    assert _cli(["plan", NAME, "--plans", str(p), "-o", str(out_plans), "--match-input"]) == 0
    out = capsys.readouterr().out
    assert "foreground_intensity_properties_per_channel.0" in out and "WARNING" not in out
    written = json.loads(out_plans.read_text())
    assert written["foreground_intensity_properties_per_channel"]["0"]["mean"] == GENESIS_NNUNET_CT_MEAN
    assert written["medzoo_input"]["data_identifier"].endswith(DATA_SUFFIX)
    PlansManager(str(out_plans)).get_configuration("3d_fullres")
    assert _cli(["plan", NAME, "--plans", str(p), "-o", str(tmp_path / "x.json"), "--match-input",
                 "--match-spacing"]) == 2
    assert "native spacing" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def test_keep_topology_rewrites_only_the_input_side():
    """``--match-input --keep-topology``: the plan's own network stays; its normalisation becomes the checkpoint's."""
    plans = ct_plans()
    topology = copy.deepcopy(plans["configurations"]["3d_fullres"]["architecture"])
    patch = plans["configurations"]["3d_fullres"]["patch_size"]
    new = rewrite_plan(NAME, plans, "3d_fullres", match_input=True, keep_topology=True)
    assert new["configurations"]["3d_fullres"]["architecture"] == topology
    assert new["configurations"]["3d_fullres"]["patch_size"] == patch
    assert "medzoo_pretrained" not in new
    norm = registry.get_entry(NAME).input.normalization
    pm = PlansManager(new)
    props = pm.foreground_intensity_properties_per_channel["0"]
    out = CTNormalization(use_mask_for_norm=False, intensityproperties=props).run(ct_volume())
    np.testing.assert_allclose(out, checkpoint_normalisation(ct_volume(), norm), rtol=1e-6, atol=1e-6)
    assert not compare_input(NAME, new, "3d_fullres").differs
    with pytest.raises(PlanError):
        rewrite_plan(NAME, ct_plans(), "3d_fullres", keep_topology=True)
