"""Hosted copies of registry weights, against the local Hub-protocol server (tests/hub_server.py).

The full loop: ``zoo build-hosted`` builds the demo's folder (and refuses / skips the entries it must) -> ``zoo
publish`` sends its own commit operations, which the server stores -> the registry source it prints becomes the
entry's ``hosted=`` -> ``zoo.load(name)`` and ``zoo.load("hf-hub:...")`` download that copy and give the original
model's outputs. A hosted load runs no pickle code (every pickle path is made to raise); when the hosted copy is
not there the upstream file is used and the report says why."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import zoo
import zoo.registry as registry
from zoo.cli import main
from zoo.errors import ChecksumError
from zoo.hosted import build_hosted
from zoo.hub.integrity import sha256_file
from zoo.publish import publish
from zoo.registry import CheckpointSource

from hub_server import CommitApi
from test_save import outputs

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")

DEMO = "genesis-ct-demo"
REPO = f"medzoo-test/{DEMO}"


def no_pickle_code(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every pickle path raise (medzoo's safe loader, its static scanners, torch.load); return the calls."""
    import zoo.convert.formats as formats
    import zoo.convert.pickle_scan as pickle_scan
    import zoo.convert.safe_load as safe_load
    import zoo.convert.torch_file_scan as torch_file_scan

    calls: list[str] = []

    def refuse(what: str):
        def raising(*args, **kwargs):
            calls.append(what)
            raise AssertionError(f"pickle code path used: {what}")
        return raising

    for module, name in [(safe_load, "load_legacy_checkpoint"), (formats, "load_legacy_checkpoint"),
                         (safe_load, "check_torch_file"), (safe_load, "scan_torch_file"),
                         (torch_file_scan, "scan_torch_file")]:
        monkeypatch.setattr(module, name, refuse(f"{module.__name__}.{name}"))
    monkeypatch.setattr(pickle_scan.PickleScanner, "__init__", refuse("PickleScanner"))
    monkeypatch.setattr(torch, "load", refuse("torch.load"))
    return calls


def with_hosted(monkeypatch: pytest.MonkeyPatch, hosted: CheckpointSource, **changes) -> registry.ModelEntry:
    """Register the demo entry with a hosted copy (and ``changes``) for this test."""
    entry = dataclasses.replace(registry.get_entry(DEMO), hosted=hosted, **changes)
    monkeypatch.setitem(registry._REGISTRY, DEMO, entry)
    return entry


def test_build_publish_then_load_the_hosted_copy_and_the_hub_repo(hub, tmp_path, monkeypatch, capsys):
    original = zoo.load(DEMO, progress=False)
    # 1. build: the demo is built, ASU-licensed weights refused, an entry without weights skipped
    results = {r.name: r for r in build_hosted(tmp_path / "out", [DEMO, "genesis-chest-ct", "ssl3d-cpc"],
                                               org="medzoo-test", progress=False)}
    assert [r.status for r in results.values()] == ["built", "refused", "skipped"]
    assert "forbids redistribution" in results["genesis-chest-ct"].reason
    assert "no published weights" in results["ssl3d-cpc"].reason
    built = results[DEMO]
    assert built.folder == tmp_path / "out" / DEMO and built.repo_id == REPO
    assert built.sha256 == sha256_file(built.folder / "model.safetensors")
    config = json.loads((built.folder / "config.json").read_text())
    assert config["provenance"]["weights_sha256"] == built.sha256
    assert f'snapshot_download("{REPO}"' in (built.folder / "README.md").read_text()  # the card of the copy

    # 2. publish: zoo publish's own commit operations, stored by the server
    api = CommitApi(hub)
    result = publish(built.folder, REPO, api=api)
    assert [c[0] for c in api.calls] == ["create_repo", "create_commit"]
    hosted = result.registry_source()
    assert hosted.revision and hosted.sha256 == built.sha256

    # 3. the registry entry with that hosted copy loads it, running no pickle code
    with_hosted(monkeypatch, hosted)
    calls = no_pickle_code(monkeypatch)
    model = zoo.load(DEMO, progress=False)
    assert calls == []
    report = model.load_report
    assert report.source == f"hosted medzoo copy {REPO}/model.safetensors@{hosted.revision}"
    assert report.verified_by == "registry sha256" and report.fallback is None
    assert torch.equal(outputs(model), outputs(original))
    assert main(["info", DEMO]) == 0
    out = capsys.readouterr().out
    assert f"hosted copy    {REPO}/model.safetensors" in out and "in cache       converted from the hosted copy" in out

    # 4. the published repo by id
    hub.reset_requests()
    by_id = zoo.load(f"hf-hub:{REPO}@{hosted.revision}", sha256=hosted.sha256, progress=False)
    assert torch.equal(outputs(by_id), outputs(original)) and calls == []


def test_hosted_copy_unavailable_falls_back_to_upstream_and_says_why(hub, tmp_path, monkeypatch, capsys):
    original = zoo.load(DEMO, progress=False)
    package = registry.get_entry(DEMO).source
    weights = Path(original.load_report.weights).read_bytes()  # the demo's own safetensors file
    absent = CheckpointSource(repo_id="medzoo-test/absent", filename="model.safetensors", format="safetensors",
                              sha256=package.sha256)
    with_hosted(monkeypatch, absent)
    model = zoo.load(DEMO, progress=False)
    report = model.load_report
    assert report.source.startswith("shipped in the package") and "the Hub has no repository" in report.fallback
    assert "hosted copy not used" in str(report)
    assert torch.equal(outputs(model), outputs(original))
    assert main(["info", DEMO]) == 0
    assert "medzoo-test/absent/model.safetensors" in capsys.readouterr().out
    # prefer="upstream" never asks for the hosted copy
    hub.reset_requests()
    assert zoo.load(DEMO, prefer="upstream", progress=False).load_report.fallback is None and hub.requests == []
    # a hosted file whose bytes differ from the pinned sha256 is refused, not silently replaced
    commit = hub.commit("medzoo-test/tampered", {"model.safetensors": weights[:-1] + b" "})
    with_hosted(monkeypatch, dataclasses.replace(absent, repo_id="medzoo-test/tampered", revision=commit))
    with pytest.raises(ChecksumError, match="hosted copy"):
        zoo.load(DEMO, progress=False)


def test_real_entries_publish_no_hosted_copy_yet(capsys):
    assert all(registry.get_entry(name).hosted is None for name in zoo.list_models())
    assert main(["info", DEMO]) == 0
    assert "hosted copy    not published yet" in capsys.readouterr().out
    with pytest.raises(ValueError, match="hosted copy"):
        dataclasses.replace(registry.get_entry(DEMO), hosted=CheckpointSource("a/b", "x.pth", "nnunet-v1"))


def test_cli_build_hosted_prints_each_outcome_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "hosted"
    assert main(["build-hosted", str(out), DEMO, "suprem-unet"]) == 0
    text = capsys.readouterr().out
    assert f"{DEMO}: built {out / DEMO}" in text and f"zoo publish {out / DEMO} --repo medzoo/{DEMO}" in text
    assert "suprem-unet: refused: the licence of the weights (cc-by-nc-nd-4.0) forbids redistribution" in text
    assert "1 built, 1 refused, 0 skipped, 0 failed" in text
    assert main(["build-hosted", str(out), DEMO]) == 1  # exists: replaced only with --force
    assert "not empty; pass force=True" in capsys.readouterr().out
    assert main(["build-hosted", str(out), DEMO, "--force"]) == 0
