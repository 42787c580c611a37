"""torch.hub entry points, loaded with source='local' from the repository itself: one per registry entry, each
the same as ``zoo.load`` of that entry, plus ``load`` and the shorthand aliases."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest
import torch

import zoo
from zoo.registry import get_entry, list_models

REPO = Path(__file__).resolve().parents[1]
#: the entry points hubconf.py had when it was written by hand; every one of them stays
HAND_WRITTEN = ({"load", "genesis_chest_ct", "genesis_nnunet", "i3d_resnet18_imagenet", "i3d_resnet50_imagenet",
                 "unetpp_liver"} | {f"med3d_resnet{d}" for d in (10, 18, 34, 50, 101, 152, 200)})
#: entry point -> registry name: one per entry ('-' -> '_'), plus the shorthand aliases
ENTRY_POINTS = {name.replace("-", "_").replace(".", "_"): name for name in list_models()}
ALIASES = {"genesis_nnunet": "genesis-chest-ct-nnunet-lung"}
EXPECTED = {"load"} | set(ENTRY_POINTS) | set(ALIASES)


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


#: networks above this many parameters are built on the meta device here: a random init of STU-Net-H (1.46B
#: parameters, 5.8 GB) takes 20 s on 2 cores, and the meta device goes through the same construction path
META_ABOVE = 30_000_000


def _parameters(registry_name: str) -> int:
    from zoo.archs.size_estimate import estimate_architecture

    entry = get_entry(registry_name)
    spec = {**entry.build_kwargs(), "in_channels": entry.input.in_channels, "num_classes": entry.num_classes}
    return estimate_architecture(entry.architecture, spec).parameters


@pytest.mark.parametrize("name", sorted(EXPECTED - {"load"}))
def test_torch_hub_load_local_builds_every_entry(name):
    registry_name = ENTRY_POINTS.get(name) or ALIASES[name]
    big = _parameters(registry_name) > META_ABOVE
    with torch.device("meta" if big else "cpu"):
        model = torch.hub.load(str(REPO), name, source="local", pretrained=False, verbose=False)
    assert isinstance(model, torch.nn.Module)
    assert all(p.is_meta == big for p in model.parameters())
    assert model.pretrained_cfg.name.replace("-", "_").startswith(name.replace("genesis_nnunet", "genesis_chest_ct_nnunet"))


def test_torch_hub_generic_load_passes_arguments():
    model = torch.hub.load(str(REPO), "load", "med3d-resnet10", source="local", pretrained=False,
                           in_channels=2, verbose=False)
    assert model.conv1.weight.shape[1] == 2


@pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")
def test_torch_hub_unetpp_liver_starts_from_the_genesis_nnunet(tmp_path_factory):
    from upstream import genesis_lung_cache

    cache = genesis_lung_cache(tmp_path_factory)
    model = torch.hub.load(str(REPO), "unetpp_liver", source="local", init="genesis", cache_dir=cache, progress=False,
                           verbose=False)
    assert "initialised from genesis-chest-ct-nnunet-lung" in str(model.load_report)
    assert model.transfer_report.share_initialised_body > 0.7


def test_every_hand_written_entry_point_is_still_there():
    assert HAND_WRITTEN <= EXPECTED and set(ALIASES) <= HAND_WRITTEN


def test_docstrings_are_built_from_the_registry():
    hub = _hubconf()
    for fn_name, name in {**ENTRY_POINTS, **ALIASES}.items():
        entry, fn = get_entry(name), getattr(hub, fn_name)
        doc = " ".join(inspect.getdoc(fn).split())
        assert fn.__name__ == fn_name and callable(fn)
        assert " ".join(entry.description.split()) in doc, fn_name
        assert f"Licence: {entry.license.display}" in doc and entry.input.modality in doc, fn_name
        assert "Parameters: " in doc and f'zoo.load("{name}", ...)' in doc, fn_name
        assert list(inspect.signature(fn).parameters)[:2] == ["pretrained", "in_channels"], fn_name


@pytest.mark.parametrize("fn_name", sorted({**ENTRY_POINTS, **ALIASES}))
def test_torch_hub_load_builds_what_zoo_load_builds(fn_name):
    """Same class, same state_dict keys and shapes as zoo.load (built on the meta device: no initialisation)."""
    name = {**ENTRY_POINTS, **ALIASES}[fn_name]
    with torch.device("meta"):
        hub_model = torch.hub.load(str(REPO), fn_name, source="local", pretrained=False, verbose=False)
        zoo_model = zoo.load(name, pretrained=False)
    assert type(hub_model) is type(zoo_model)
    assert hub_model.pretrained_cfg == zoo_model.pretrained_cfg == get_entry(name)
    hub_sd, zoo_sd = hub_model.state_dict(), zoo_model.state_dict()
    assert list(hub_sd) == list(zoo_sd)
    assert all(hub_sd[k].shape == zoo_sd[k].shape and hub_sd[k].dtype == zoo_sd[k].dtype for k in zoo_sd)


def test_torch_hub_passes_arguments_like_zoo_load():
    with torch.device("meta"):
        hub_model = torch.hub.load(str(REPO), "med3d_resnet10", False, 2, 3, source="local", verbose=False)
        zoo_model = zoo.load("med3d-resnet10", False, 2, 3)
    assert hub_model.conv1.weight.shape == zoo_model.conv1.weight.shape and hub_model.conv1.weight.shape[1] == 2
    assert hub_model.state_dict().keys() == zoo_model.state_dict().keys()


@pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")
def test_torch_hub_refuses_missing_weights_like_zoo_load():
    with pytest.raises(zoo.WeightsNotAvailableError) as from_zoo:
        zoo.load("unetpp-liver")
    with pytest.raises(zoo.WeightsNotAvailableError) as from_hub:
        torch.hub.load(str(REPO), "unetpp_liver", source="local", verbose=False)
    assert str(from_hub.value) == str(from_zoo.value)


@pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")
def test_torch_hub_loads_the_shipped_demo_weights_like_zoo_load():
    hub_model = torch.hub.load(str(REPO), "genesis_ct_demo", source="local", verbose=False)
    zoo_model = zoo.load("genesis-ct-demo")
    assert type(hub_model) is type(zoo_model)
    hub_sd, zoo_sd = hub_model.state_dict(), zoo_model.state_dict()
    assert list(hub_sd) == list(zoo_sd)
    for key, tensor in zoo_sd.items():
        assert torch.equal(hub_sd[key], tensor), key
    assert str(hub_model.load_report) == str(zoo_model.load_report)
