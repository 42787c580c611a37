"""``zoo.save(model, folder)``: exactly the files ``zoo publish`` uploads and ``zoo.load(folder)`` reads back, the
entry's facts adjusted to the model, provenance, the card; atomic, never over an input or (without force) an
output. Uses the shipped demo (weights in the package, no network)."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub import ModelCard

import zoo
from zoo.hub.integrity import sha256_file
from zoo.publish import UPLOAD_FILES, publish
from zoo.saving import SaveError

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")

DEMO = "genesis-ct-demo"


def outputs(model: torch.nn.Module, channels: int = 1) -> torch.Tensor:
    """The full-resolution output for a fixed input (N, C, z, y, x) = (1, channels, 8, 16, 16)."""
    x = torch.linspace(-2, 2, channels * 8 * 16 * 16).reshape(1, channels, 8, 16, 16)
    with torch.no_grad():
        out = model.eval()(x)
    return out[0] if isinstance(out, (list, tuple)) else out


def test_saved_folder_is_what_publish_uploads_and_loads_back_identically(tmp_path):
    model = zoo.load(DEMO, progress=False)
    saved = zoo.save(model, tmp_path / "demo")
    folder = saved.path
    assert sorted(p.name for p in folder.iterdir()) == sorted(UPLOAD_FILES)
    plan = publish(folder, "medzoo/genesis-ct-demo", dry_run=True)
    assert [f.source for f in plan.files] == [str(folder / name) for name in ("README.md", "config.json",
                                                                             "model.safetensors")]
    config = json.loads((folder / "config.json").read_text())
    prov = config["provenance"]
    assert prov["weights_sha256"] == sha256_file(folder / "model.safetensors") == saved.weights_sha256
    assert prov["medzoo_version"] == zoo.__version__ and prov["entry"] == DEMO
    assert prov["source"]["sha256"] == model.pretrained_cfg.source.sha256  # the upstream file it came from
    assert prov["loaded_from"].startswith("shipped in the package")
    assert config["name"] == DEMO and config["output"]["channels"] == 1
    card = ModelCard((folder / "README.md").read_text())
    assert card.data.license == "apache-2.0" and card.data.library_name == "medzoo"
    again = zoo.load(str(folder))
    assert again.load_report.verified_by == "local model folder"
    assert torch.equal(outputs(again), outputs(model))
    assert again.pretrained_cfg.input == model.pretrained_cfg.input
    assert not list(tmp_path.glob(".demo.*"))  # no temporary folder left


def test_an_adapted_model_is_saved_with_its_channels_and_head(tmp_path):
    model = zoo.load(DEMO, in_channels=2, num_classes=3, progress=False)
    torch.manual_seed(1)
    with torch.no_grad():  # "fine-tuning": the saved values are the model's, not the checkpoint's
        model.decoder.seg_layers[0].weight.normal_()
    first = zoo.save(model, tmp_path / "a")
    config = json.loads((first.path / "config.json").read_text())
    assert config["in_channels"] == config["input"]["in_channels"] == 2 and config["num_classes"] == 3
    assert config["output"]["channels"] == 3 and config["output"]["activation"] is None
    assert "adapted by zoo.load: 2 input channels" in config["description"]
    assert any("repeat_scale" in a for a in config["provenance"]["adaptations"])
    back = zoo.load(str(first.path))
    assert back.pretrained_cfg.num_classes == 3 and back.load_report.adaptations == []
    assert torch.equal(outputs(back, channels=2), outputs(model, channels=2))
    # nothing machine- or time-specific: the same model gives the same bytes
    second = zoo.save(model, tmp_path / "b")
    for name in UPLOAD_FILES:
        assert (first.path / name).read_bytes() == (second.path / name).read_bytes(), name


def test_existing_folders_inputs_and_failures(tmp_path, monkeypatch):
    model = zoo.load(DEMO, progress=False)
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(SaveError, match="not empty; pass force=True"):
        zoo.save(model, target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    zoo.save(model, target, force=True)
    assert sorted(p.name for p in target.iterdir()) == sorted(UPLOAD_FILES)
    loaded = zoo.load(str(target))
    with pytest.raises(SaveError, match="weights were read from"):  # never over an input, even with force
        zoo.save(loaded, target, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SaveError, match="is a file"):
        zoo.save(model, tmp_path / "file")
    with pytest.raises(SaveError, match="pretrained_cfg"):
        zoo.save(torch.nn.Conv3d(1, 1, 1), tmp_path / "plain")
    # a failure while writing leaves the old folder as it was and no partial folder
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("zoo.saving.folder_card", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        zoo.save(model, target, force=True)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "out"]
