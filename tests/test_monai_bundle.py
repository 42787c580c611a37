"""MONAI bundles written by ``zoo export-monai`` (:mod:`zoo.monai_bundle`), read by MONAI's own loaders.

* ``med3d-resnet10`` (random initialisation, no download) as ``monai.networks.nets.ResNet``: MONAI's ConfigParser
  instantiates ``network_def``, ``models/model.pt`` loads with ``strict=True``; the output equals medzoo's classic
  (``dilated=False``) ResNet-10 pooled globally, and the stem/layer1/layer2 maps equal MedicalNet's dilated
  network's, whose layer4 differs (the topology difference docs/monai.md states).
* ``genesis-ct-demo`` (the shipped weights) with medzoo's builder as ``network_def``: ``monai.bundle.load`` (offline,
  the bundle is on disk) and ConfigParser both return a network whose outputs equal ``zoo.load``'s exactly.
* metadata: the required fields of MONAI's meta_schema_20240725, and MONAI's ``verify_metadata`` against a verbatim
  copy of that schema (``tests/monai_meta_schema_20240725.json``, from Project-MONAI/project-monai.github.io
  ``public/schema/meta_schema_20240725.json``, itself copied from the MONAI-extra-test-data 0.8.1 release that
  ``verify_metadata`` would download; it needs ``jsonschema``).
* refusals: a non-redistributable licence, a MONAI network MONAI does not have, an existing bundle folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import zoo
from zoo.cli import main
from zoo.monai_bundle import (INFERENCE, METADATA, METADATA_REQUIRED, MODEL, MonaiBundleError, MonaiBundleRefusedError,
                              check_metadata, export_monai_bundle)

monai_bundle = pytest.importorskip("monai.bundle")
pytestmark = [pytest.mark.filterwarnings("ignore::zoo.LicenseWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

SCHEMA = Path(__file__).with_name("monai_meta_schema_20240725.json")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        med3d = export_monai_bundle("med3d-resnet10", root / "med3d", pretrained=False, progress=False)
        demo = export_monai_bundle("genesis-ct-demo", root / "demo", progress=False)
        yield root, med3d, demo
    finally:
        torch.set_num_threads(threads)


def _parse(bundle: Path):
    """network_def instantiated by MONAI's ConfigParser from configs/inference.json, weights loaded strictly."""
    parser = monai_bundle.ConfigParser()
    parser.read_config(str(bundle / INFERENCE))
    parser["bundle_root"] = str(bundle)
    net = parser.get_parsed_content("network_def")
    state = torch.load(parser.get_parsed_content("ckpt_path"), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval(), state


def test_med3d_bundle_is_monai_resnet_loading_strictly(bundles):
    root, med3d, _ = bundles
    assert med3d.network == "monai" and not med3d.pretrained
    from monai.networks.nets import ResNet

    net, state = _parse(root / "med3d")
    assert type(net) is ResNet and net.fc is None and not net.no_max_pool
    classic = zoo.load("med3d-resnet10", pretrained=False, dilated=False)
    classic.load_state_dict(state, strict=True)
    dilated = zoo.load("med3d-resnet10", pretrained=False)
    dilated.load_state_dict(state, strict=True)
    with torch.no_grad():  # non-trivial batch-norm statistics so that eval mode uses them
        for model in (net, classic, dilated):
            for name, buf in model.named_buffers():
                if name.endswith("running_var"):
                    torch.manual_seed(len(name))
                    buf.uniform_(0.5, 1.5)
    classic.eval(), dilated.eval()
    x = torch.randn(2, 1, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = classic(x)
        out = net(x)
        torch.testing.assert_close(out, ours.mean(dim=(2, 3, 4)), rtol=1e-5, atol=1e-5)
        y = net.maxpool(net.act(net.bn1(net.conv1(x))))
        torch.testing.assert_close(net.layer2(net.layer1(y)), dilated._features(x, 2)[-1])
        assert dilated(x).shape[2:] == (4, 4, 4) and ours.shape[2:] == (1, 1, 1)   # output stride 8 vs 32
    meta = json.loads((root / "med3d" / METADATA).read_text())
    assert check_metadata(meta) == []
    pred = meta["network_data_format"]["outputs"]["pred"]
    assert pred["num_channels"] == out.shape[1] == 512 and meta["required_packages_version"] == {}
    assert "RANDOMLY INITIALISED" in meta["description"] and "no dilation" in meta["description"]
    assert "random initialisation" in (root / "med3d" / "LICENSE").read_text()


def test_demo_bundle_with_medzoo_builder_gives_identical_outputs(bundles):
    root, _, demo = bundles
    assert demo.network == "medzoo" and demo.pretrained
    ours = zoo.load("genesis-ct-demo").eval()
    x = torch.randn(1, 1, 16, 32, 32, generator=torch.Generator().manual_seed(1))
    net, state = _parse(root / "demo")
    loaded = monai_bundle.load(name="demo", bundle_dir=str(root), workflow_type="inference", device="cpu").eval()
    with torch.no_grad():
        expected = ours(x)
        assert torch.equal(net(x), expected) and torch.equal(loaded(x), expected)
    assert set(state) == set(ours.state_dict())
    config = json.loads((root / "demo" / INFERENCE).read_text())
    assert config["network_def"]["_target_"] == "zoo.archs.build_architecture"
    meta = json.loads((root / "demo" / METADATA).read_text())
    assert meta["required_packages_version"] == {"medzoo": zoo.__version__}
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == expected.shape[1]
    licence = (root / "demo" / "LICENSE").read_text()
    assert "apache-2.0" in licence and "GPL-2.0" in licence  # the weights' licence and the data note


def test_metadata_passes_monai_verify_metadata_offline(bundles, tmp_path):
    pytest.importorskip("jsonschema")
    root, _, _ = bundles
    schema = tmp_path / "schema.json"
    shutil.copyfile(SCHEMA, schema)  # present: verify_metadata does not download it
    for name in ("med3d", "demo"):
        monai_bundle.verify_metadata(meta_file=str(root / name / METADATA), filepath=str(schema))
    meta = json.loads((root / "demo" / METADATA).read_text())
    assert tuple(json.loads(SCHEMA.read_text())["required"]) == METADATA_REQUIRED
    del meta["authors"]
    meta["network_data_format"]["inputs"]["image"].pop("value_range")
    assert check_metadata(meta) == ["missing required field 'authors'",
                                    "network_data_format.inputs.image lacks 'value_range'"]
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="Failed validating"):
        monai_bundle.verify_metadata(meta_file=str(broken), filepath=str(schema))


def test_refusals_write_nothing(bundles, tmp_path):
    with pytest.raises(MonaiBundleRefusedError, match="forbids redistribution.*--i-hold-the-rights"):
        export_monai_bundle("genesis-chest-ct", tmp_path / "a")
    with pytest.raises(MonaiBundleError, match="MONAI has no network .*--network medzoo"):
        export_monai_bundle("genesis-ct-demo", tmp_path / "b", network="monai")
    root, _, _ = bundles
    with pytest.raises(MonaiBundleError, match="not empty; pass overwrite=True"):
        export_monai_bundle("genesis-ct-demo", root / "demo")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cli_export_monai(tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main(["export-monai", "genesis-ct-demo", "-o", str(out)]) == 0
    assert "zoo.archs.build_architecture" in capsys.readouterr().out
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == {
        METADATA, INFERENCE, MODEL, "LICENSE", "docs/README.md"}
    first = (out / MODEL).read_bytes()
    assert main(["export-monai", "genesis-ct-demo", "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export-monai", "genesis-ct-demo", "-o", str(out), "--force"]) == 0
    assert (out / MODEL).read_bytes() == first and not list(tmp_path.glob(".*"))
    assert main(["export-monai", "genesis-chest-ct", "-o", str(tmp_path / "x")]) == 2
    assert "--i-hold-the-rights" in capsys.readouterr().err and not (tmp_path / "x").exists()
