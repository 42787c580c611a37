"""Every registry entry declares an output contract (:class:`zoo.entry.OutputContract`) that its network keeps;
``zoo info``, the cards and config.json show it; ``make_demo_datasets`` prints the next nnU-Net commands with a
fold that the data set can train."""

from __future__ import annotations

import json

import pytest
import torch

from zoo import registry
from zoo.archs.build import build_model, meta_device_model
from zoo.archs.size_estimate import estimate_architecture
from zoo.entry import OUTPUT_KINDS, OutputContract

NAMES = registry.list_models()


def _input(entry, size: int = 32) -> torch.Tensor:
    side = max(size, 2 * entry.input.divisible_by)  # instance norm needs more than one voxel at the bottom
    return torch.randn(1, entry.input.in_channels, side, side, side)


def _output_size(resolution: str, side: int) -> int:
    if resolution.startswith("input size"):
        return side
    stride = int(resolution.split("/", 1)[1].split()[0])  # "1/8 of the input ..."
    return -(-side // stride)


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_declares_an_output_contract(name):
    out = registry.get_entry(name).output
    assert out.kind in OUTPUT_KINDS and out.kind != "unspecified", name
    assert out.target and out.target != "unspecified" and out.new_head and out.resolution
    assert (out.activation is None) == (out.kind == "features")
    if out.kind != "features":
        assert out.activation in ("sigmoid", "softmax", "identity")  # identity: a regression (reconstruction)


@pytest.mark.parametrize("name", [n for n in NAMES if registry.get_entry(n).output.kind == "features"])
def test_feature_channels_and_size_on_the_meta_device(name):
    entry = registry.get_entry(name)
    net = meta_device_model(lambda: build_model(entry)).eval()
    x = _input(entry, 64).to("meta")
    with torch.no_grad():
        y = net(x)
    side = x.shape[-1]
    assert tuple(y.shape) == (1, entry.output.channels, *[_output_size(entry.output.resolution, side)] * 3), name


#: networks above this many parameters run forward on the meta device only (STU-Net-H's real forward takes 50 s on
#: 2 cores); the smaller sizes of the same class check the values
REAL_FORWARD_UP_TO = 200_000_000


def _parameters(entry) -> int:
    spec = {**entry.build_kwargs(), "in_channels": entry.input.in_channels, "num_classes": entry.num_classes}
    return estimate_architecture(entry.architecture, spec).parameters


@pytest.mark.parametrize("name", [n for n in NAMES if registry.get_entry(n).output.kind != "features"])
def test_head_output_matches_the_declared_activation(name):
    entry = registry.get_entry(name)
    out = entry.output
    if _parameters(entry) > REAL_FORWARD_UP_TO:  # STU-Net L/H: the shape on the meta device; S/B check the values
        net = meta_device_model(lambda: build_model(entry)).eval()
        with torch.no_grad():
            y = net(_input(entry).to("meta"))
        assert tuple(y.shape) == (1, out.channels, *_input(entry).shape[2:]), name
        return
    torch.manual_seed(0)
    net = build_model(entry).eval()
    x = _input(entry) * 3
    with torch.no_grad():
        y = net(x)
    assert tuple(y.shape) == (1, out.channels, *x.shape[2:]), name
    if out.kind == "probabilities":
        assert 0 <= float(y.min()) and float(y.max()) <= 1
        logits_net = build_model(entry, out_activation=None).eval()
        logits_net.load_state_dict(net.state_dict())
        with torch.no_grad():
            logits = logits_net(x)
        assert float(logits.min()) < 0 or float(logits.max()) > 1
        applied = torch.sigmoid(logits) if out.activation == "sigmoid" else torch.softmax(logits, 1)
        torch.testing.assert_close(y, applied)
    else:  # logits: forward applies no activation
        assert float(y.min()) < 0 or float(y.max()) > 1, name
        if out.activation == "softmax":
            assert not torch.allclose(y.sum(1), torch.ones_like(y[:, 0]))


@pytest.mark.parametrize("name", ["genesis-chest-ct", "genesis-ct-demo"])
def test_a_new_head_returns_logits(name):
    entry = registry.get_entry(name)
    assert "logits" in entry.output.new_head
    net = build_model(entry, num_classes=5).eval()
    x = _input(entry) * 3
    with torch.no_grad():
        y = net(x)
    assert y.shape[1] == 5 and (float(y.min()) < 0 or float(y.max()) > 1)


def test_genesis_restoration_scale_is_stated():
    for name in ("genesis-chest-ct", "genesis-chest-ct-nnunet-lung", "genesis-ct-demo"):
        out = registry.get_entry(name).output
        assert out.activation == "sigmoid" and "(HU + 1000) / 2000" in out.scale
    assert registry.get_entry("genesis-chest-ct").output.kind == "probabilities"
    assert registry.get_entry("genesis-ct-demo").output.kind == "logits"


def test_contract_validation():
    with pytest.raises(ValueError, match="output kind"):
        OutputContract(kind="scores", target="x")
    with pytest.raises(ValueError, match="no activation"):
        OutputContract(kind="features", target="x", activation="relu")


def test_zoo_info_and_card_show_the_output():
    from zoo.cards.render import render_card
    from zoo.cli.models import format_info

    entry = registry.get_entry("genesis-ct-demo")
    info = format_info(entry)
    assert "output         logits (apply sigmoid), 1 channel(s)" in info
    assert "(HU + 1000) / 2000" in info and "returns n channels of logits" in info
    card = render_card(entry)
    assert "## Output" in card and "apply `sigmoid`" in card and "(HU + 1000) / 2000" in card
    assert "features (no activation)" in format_info(registry.get_entry("med3d-resnet50"))


@pytest.mark.parametrize("name", ["genesis-chest-ct", "med3d-resnet18", "unetpp-liver"])
def test_config_json_round_trips_the_output(name):
    from zoo.model_dir import entry_config, entry_from_config

    entry = registry.get_entry(name)
    config = json.loads(json.dumps(entry_config(entry), default=list))
    assert entry_from_config(config).output == entry.output


def test_old_config_without_output_loads_as_unspecified():
    from zoo.errors import CheckpointFormatError
    from zoo.model_dir import entry_config, entry_from_config

    config = json.loads(json.dumps(entry_config(registry.get_entry("genesis-chest-ct")), default=list))
    del config["output"]
    out = entry_from_config(config).output
    assert out.kind == "unspecified" and "unspecified" in out.summary
    config["output"] = {"target": "something"}
    assert entry_from_config(config).output.kind == "unspecified"
    for bad in ({"kind": "scores"}, {"kind": "logits", "channels": 0}, {"kind": "features", "activation": "relu"},
                {"kind": "logits", "colour": "red"}, "logits"):
        config["output"] = bad
        with pytest.raises(CheckpointFormatError, match="output"):
            entry_from_config(config)


def _fake_dataset(root, name, n_cases):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"name": name, "numTraining": n_cases}))
    return folder


def test_demo_datasets_print_a_fold_they_can_train(tmp_path, capsys, monkeypatch):
    from export.med3d import make_demo_datasets as mdd

    assert mdd.training_fold(2) == "all" and mdd.training_fold(4) == "all"
    assert mdd.training_fold(5) == "0" and mdd.training_fold(131) == "0"
    big = mdd.next_commands(_fake_dataset(tmp_path, "Dataset905_Big", 7))
    assert big[0] == "nnUNetv2_plan_and_preprocess -d 905 --verify_dataset_integrity"
    assert big[1].startswith("zoo export-nnunet genesis-chest-ct-nnunet-lung --plans ")
    assert big[2] == "nnUNetv2_train 905 3d_fullres 0 -pretrained_weights Dataset905_Big_genesis-chest-ct-nnunet-lung.pth"

    sizes = {"chest": ("Dataset901_ChestCTTumour", 2), "head": ("Dataset903_HeadCTBone", 1)}
    monkeypatch.setattr(mdd, "make_dataset", lambda d, data, out, log=print: _fake_dataset(out, *sizes[d]))
    assert mdd.main(["--data", str(tmp_path), "--out", str(tmp_path / "raw"), "--domains", "chest,head"]) == 0
    printed = capsys.readouterr().out
    assert "nnUNetv2_train 901 3d_fullres all -pretrained_weights" in printed
    assert "nnUNetv2_train 903 3d_fullres all -pretrained_weights" in printed
    assert "nnUNetv2_plan_and_preprocess -d 903 --verify_dataset_integrity" in printed
    assert " 3d_fullres 0 " not in printed
