"""The transfer report's headline: the share of the *target* initialised from the checkpoint leads (overall and per
part), the share of the checkpoint used comes second, and a low target share is warned about with its cause and
fix. On real networks: the shipped ``genesis-ct-demo`` weights into the demo's 6-stage nnU-Net plan, into that plan
with other widths, and into the plan rewritten to the checkpoint's topology by ``zoo plan``. Also: ``zoo plan`` and
``zoo export-nnunet`` print the same training command for a UNet++ plan."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from zoo.adapt.report import LOW_SHARE
from zoo.cli import main
from zoo.demo import DEMO_DATASET, DEMO_PLANS
from zoo.nnunet.export import adapt_to_plan
from zoo.nnunet.plan_rewrite import rewrite_plan
from zoo.nnunet.plans import load_plans

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")

DEMO = "genesis-ct-demo"


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def independent_shares(net: torch.nn.Module, report) -> tuple[float, dict[str, float]]:
    """The initialised share of the target computed from the network's own tensors (numel from the network, the
    fate of each tensor from the report's rows): overall and per encoder stage."""
    sd = net.state_dict()
    params = list(net.parameters())  # parameters() deduplicates the alias names
    assert sum(p.numel() for p in params) == sum(sd[r.target_key].numel() for r in report.rows)
    assert len({sd[r.target_key].data_ptr() for r in report.rows}) == len(params)  # one row per distinct tensor
    total = sum(sd[r.target_key].numel() for r in report.rows)
    done = sum(sd[r.target_key].numel() for r in report.rows if r.action not in ("new", "skip"))
    stages = {}
    for i, stage in enumerate(net.encoder.stages):
        names = {f"encoder.stages.{i}.{k}" for k, _ in stage.named_parameters()}
        rows = [r for r in report.rows if r.target_key in names]
        assert len(rows) == len(names)
        stages[f"encoder stage {i}"] = (sum(sd[r.target_key].numel() for r in rows if r.action not in ("new", "skip"))
                                        / sum(sd[r.target_key].numel() for r in rows))
    return done / total, stages


def test_small_transfer_leads_with_the_target_share_and_warns():
    net, report = adapt_to_plan(DEMO, str(DEMO_PLANS), "3d_fullres", str(DEMO_DATASET))
    share, stages = independent_shares(net, report)
    assert report.share_initialised == pytest.approx(share) and share < 0.1 < report.share_used
    parts = {d["part"]: d for d in report.shares_by_part()}
    for name, s in stages.items():
        assert parts[name]["share"] == pytest.approx(s)
    assert [stages[f"encoder stage {i}"] for i in range(6)] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert report.initialised_tensors == sum(1 for r in report.rows if r.action not in ("new", "skip"))

    text = report.summary()
    lines = text.splitlines()
    assert lines[1].startswith(f"target initialised from the checkpoint: {share:.2%} of parameters "
                               f"({report.initialised_tensors} of {len(report.rows)} tensors")
    assert "encoder stages: 0 100%, 1 100%, 2 100%, 3 0%, 4 0%, 5 0%" in text
    assert text.index("target initialised") < text.index("decoder:") < text.index("checkpoint used:")
    warning = [line for line in lines if line.startswith("WARNING")]
    assert len(warning) == 1
    assert "target stages with no counterpart" in warning[0] and "encoder stages 3-5 are all new" in warning[0]
    assert f"zoo plan {DEMO} --plans {DEMO_PLANS}" in warning[0]
    assert "widths differ" not in warning[0] and "--widths slice" not in warning[0]  # the widths agree here
    # the verbose report leads with the same headline
    assert str(report).startswith(text)

    data = json.loads(report.to_json())["totals"]
    assert data["share_initialised"] == pytest.approx(share) and "share_used" in data and "actions" in data
    assert data["low_share"] is True and data["low_share_threshold"] == LOW_SHARE
    assert data["low_share_warning"] == warning[0]
    assert set(data["low_share_causes"]) == {"missing_stages"}
    assert {d["part"]: d["share"] for d in data["share_initialised_by_part"]}["encoder stage 4"] == 0.0


def test_width_mismatch_is_named_with_both_fixes():
    plans = rewrite_plan(DEMO, str(DEMO_PLANS))  # the checkpoint's stages, then other widths
    arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [48, 96, 192]
    net, report = adapt_to_plan(DEMO, copy.deepcopy(plans), "3d_fullres", str(DEMO_DATASET))
    share, _ = independent_shares(net, report)
    assert report.share_initialised == pytest.approx(share) and share < LOW_SHARE
    causes = report.low_share_causes()
    assert set(causes) == {"width_mismatch"}
    assert causes["width_mismatch"]["tensors"] == len([r for r in report.rows if r.detail.startswith("width mismatch")])
    warning = report.low_share_warning("plans.json")
    assert "skipped because the widths differ" in warning and "--widths slice" in warning
    assert f"zoo plan {DEMO} --plans plans.json" in warning
    # the suggested fix raises the share
    _, sliced = adapt_to_plan(DEMO, copy.deepcopy(plans), "3d_fullres", str(DEMO_DATASET), widths="slice")
    assert sliced.share_initialised > report.share_initialised and "--widths slice" not in sliced.summary()


def test_full_transfer_after_zoo_plan_has_no_warning():
    plans = rewrite_plan(DEMO, str(DEMO_PLANS))
    net, report = adapt_to_plan(DEMO, plans, "3d_fullres", str(DEMO_DATASET))
    share, stages = independent_shares(net, report)
    assert report.share_initialised == pytest.approx(share) and share > 0.99 and set(stages.values()) == {1.0}
    assert not report.low_share and report.low_share_warning() is None and report.low_share_causes() == {}
    assert "WARNING" not in report.summary() and "WARNING" not in str(report)
    assert json.loads(report.to_json())["totals"]["low_share_warning"] is None


def test_cli_prints_the_headline_first(tmp_path, capsys):
    report = tmp_path / "report.json"
    assert main(["export-nnunet", DEMO, "--plans", str(DEMO_PLANS), "--dataset-json", str(DEMO_DATASET),
                 "-o", str(tmp_path / "w.pth"), "--report", str(report)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{DEMO} -> Dataset001_BrainTumourDemo nnUNetPlans 3d_fullres"
    assert out[1].startswith("target initialised from the checkpoint: ")
    assert any(line.startswith("checkpoint used: ") for line in out[2:])
    assert any(line.startswith("WARNING") and f"--plans {DEMO_PLANS}" in line for line in out)
    assert json.loads(report.read_text())["totals"]["low_share"] is True

    assert main(["adapt", DEMO, "--plans", str(DEMO_PLANS), "--dataset-json", str(DEMO_DATASET), "-v"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("target initialised from the checkpoint: ")


def test_unetpp_training_hint_is_the_same_from_plan_and_export(tmp_path, capsys):
    from zoo.nnunet.trainers import EXT_DIR

    unetpp = tmp_path / "nnUNetPlans_unetpp.json"
    assert main(["plan", DEMO, "--plans", str(DEMO_PLANS), "--arch", "unetpp", "-o", str(unetpp)]) == 0
    planned = capsys.readouterr().out
    weights = tmp_path / "w.pth"
    assert main(["export-nnunet", DEMO, "--plans", str(unetpp), "--dataset-json", str(DEMO_DATASET),
                 "-o", str(weights)]) == 0
    exported = capsys.readouterr().out
    dataset = load_plans(str(unetpp))["dataset_name"]
    for out, weights_arg in ((planned, "[-pretrained_weights FILE from zoo export-nnunet on these plans]"),
                             (exported, f"-pretrained_weights {weights}")):
        assert f"  export nnUNet_extTrainer={EXT_DIR}\n" in out
        assert (f"  nnUNetv2_train {dataset} 3d_fullres FOLD -p nnUNetPlans_unetpp -tr nnUNetTrainerUNetPlusPlus "
                f"{weights_arg}\n") in out
