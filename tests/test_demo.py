"""``zoo demo`` and the genesis-ct-demo entry: the offline main job on what ships in the package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from zoo.hub.integrity import sha256_file
from zoo.demo import ASSETS, DEMO_DATASET, DEMO_PLANS, run_demo


def test_shipped_demo_checkpoint_is_verified_small_and_beat_its_baselines():
    entry = zoo.get_entry("genesis-ct-demo")
    weights = ASSETS / entry.source.package_file
    assert weights.stat().st_size == entry.source.size <= 10 * 2**20
    assert sha256_file(weights) == entry.source.sha256
    provenance = json.loads((weights.parent / "config.json").read_text())["provenance"]
    h = provenance["history"]
    best = min(h["val_loss"])
    # "well below" the identity (damaged input as the answer) and the untrained network, measured in that run
    assert best < 0.5 * h["identity_val_loss"] and best < 0.5 * h["untrained_val_loss"]
    assert provenance["minutes"] <= 15.5 and provenance["git_commit"] != "unknown (not a git checkout)"
    assert {f["role"] for f in provenance["data_files"]} == {"train", "val"}


def test_demo_runs_offline_and_nnunet_accepts_its_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "empty-cache"))  # nothing downloaded, nothing cached
    lines: list[str] = []
    result = run_demo(tmp_path / "out", log=lines.append, progress=False)
    assert len(lines) >= 3 and lines[0].startswith("1. loaded genesis-ct-demo")
    assert result.share_used > 0.9999                 # only the 1-class segmentation heads stay unused
    assert 0.0 < result.share_initialised < 1.0       # the plan is deeper than the checkpoint
    assert result.mse_restored < result.mse_damaged
    assert (tmp_path / "out" / "restoration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(result.transfer_report_png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / "out" / "transfer_report.json").read_text())
    assert report["totals"]["share_used"] == pytest.approx(result.share_used)
    assert report["unused"] and all(u["head"] for u in report["unused"])

    nnunet = pytest.importorskip("nnunetv2")
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    assert nnunet
    dataset = json.loads(DEMO_DATASET.read_text())
    pm = PlansManager(str(DEMO_PLANS))
    cm = pm.get_configuration("3d_fullres")
    n_in = determine_num_input_channels(pm, cm, dataset)
    assert n_in == 4
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, n_in,
                                 pm.get_label_manager(dataset).num_segmentation_heads, deep_supervision=True)
    load_pretrained_weights(net, result.pretrained_weights)
    demo_sd = zoo.load("genesis-ct-demo", progress=False).state_dict()
    first = net.state_dict()["encoder.stages.0.0.convs.0.conv.weight"]
    torch.testing.assert_close(first.sum(dim=1), demo_sd["encoder.stages.0.0.convs.0.conv.weight"][:, 0])
    torch.testing.assert_close(net.state_dict()["encoder.stages.2.0.convs.1.conv.weight"],
                               demo_sd["encoder.stages.2.0.convs.1.conv.weight"])


def test_demo_cli(tmp_path, capsys):
    from zoo.cli import main

    assert main(["demo", "-o", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "nnUNetv2_train -pretrained_weights" in out and (tmp_path / "cli" / "summary.json").exists()
