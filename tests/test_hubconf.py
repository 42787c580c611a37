"""torch.hub entry points, loaded with source='local' from the repository itself."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXPECTED = ({"load", "genesis_chest_ct", "genesis_nnunet", "i3d_resnet18_imagenet", "i3d_resnet50_imagenet", "unetpp_liver"}
            | {f"med3d_resnet{d}" for d in (10, 18, 34, 50, 101, 152, 200)})


def _hubconf():
    spec = importlib.util.spec_from_file_location("medzoo_hubconf", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_entry_points_are_exactly_the_documented_ones_with_docstrings():
    hub = _hubconf()
    public = {n for n, v in vars(hub).items() if callable(v) and not n.startswith("_")}
    assert public == EXPECTED
    for name in public:
        assert inspect.getdoc(getattr(hub, name)), name
    for dep in hub.dependencies:
        assert importlib.util.find_spec(dep) is not None, dep


@pytest.mark.parametrize("name", sorted(EXPECTED - {"load"}))
def test_torch_hub_load_local_builds_every_entry(name, monkeypatch):
    if name in {"med3d_resnet101", "med3d_resnet152", "med3d_resnet200"}:
        # big random inits are slow on 2 cores; the meta device proves the construction path all the same
        monkeypatch.setattr(torch.nn.init, "kaiming_normal_", lambda t, *a, **k: t)
    model = torch.hub.load(str(REPO), name, source="local", pretrained=False, verbose=False)
    assert isinstance(model, torch.nn.Module)
    assert model.pretrained_cfg.name.replace("-", "_").startswith(name.replace("genesis_nnunet", "genesis_chest_ct_nnunet"))


def test_torch_hub_generic_load_passes_arguments():
    model = torch.hub.load(str(REPO), "load", "med3d-resnet10", source="local", pretrained=False,
                           in_channels=2, verbose=False)
    assert model.conv1.weight.shape[1] == 2


@pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")
def test_torch_hub_unetpp_liver_starts_from_the_genesis_nnunet(tmp_path_factory):
    from upstream import genesis_lung_cache

    cache = genesis_lung_cache(tmp_path_factory)
    model = torch.hub.load(str(REPO), "unetpp_liver", source="local", cache_dir=cache, progress=False, verbose=False)
    assert "initialised from genesis-chest-ct-nnunet-lung" in str(model.load_report)
    assert model.transfer_report.share_initialised_body > 0.7
