"""``zoo.load("hf-hub:ORG/NAME")`` and ``zoo info hf-hub:ORG/NAME`` through the real huggingface_hub client against
the local Hub-protocol server (tests/hub_server.py): a folder written by ``zoo.save`` is committed as the Hub stores
it (``model.safetensors`` in LFS, the text files in git), downloaded into ``<cache_dir>/hub``, verified and loaded
with identical outputs; revisions, pins, and every way it can fail."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import zoo
import zoo.registry as registry
from zoo.cli import main
from zoo.entries._licenses import MIT
from zoo.entries.genesis import LUNG_PLAN_ARCH_KWARGS
from zoo.errors import ChecksumError, CheckpointFormatError, UnknownModelError, WeightsNotAvailableError
from zoo.hub.repo import HubRepoError
from zoo.hub.integrity import sha256_file

from hub_server import HubServer

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")

REPO = "medzoo-test/tiny-unet"
FILES = ("README.md", "config.json", "model.safetensors")


def tiny_entry(name: str = "tiny-unet-mit") -> registry.ModelEntry:
    """A 2-stage plain nnU-Net (a few hundred parameters) with the Genesis entry's facts and an MIT licence."""
    base = registry.get_entry("genesis-chest-ct-nnunet-lung")
    kwargs = dict(LUNG_PLAN_ARCH_KWARGS)
    kwargs.update(n_stages=2, features_per_stage=[2, 4], kernel_sizes=[[3, 3, 3]] * 2,
                  strides=[[1, 1, 1], [2, 2, 2]], n_conv_per_stage=[1, 1], n_conv_per_stage_decoder=[1])
    return dataclasses.replace(base, name=name, arch_kwargs=kwargs, license=MIT, base_model=None, source=None)


def saved_tiny(tmp_path: Path, seed: int = 0) -> tuple[torch.nn.Module, Path]:
    """A tiny model with seeded random weights and the folder zoo.save wrote for it."""
    torch.manual_seed(seed)
    model = zoo.build_model(tiny_entry())
    model.pretrained_cfg = tiny_entry()
    return model.eval(), zoo.save(model, tmp_path / f"tiny-{seed}", entry=tiny_entry()).path


def commit_folder(hub: HubServer, folder: Path, repo: str = REPO, skip: tuple[str, ...] = ()) -> str:
    """Commit the folder's files as the Hub stores them: model.safetensors in LFS, text files in git."""
    files = {name: (folder / name).read_bytes() for name in FILES if name not in skip}
    return hub.commit(repo, files, lfs=["model.safetensors"])


def outputs(model: torch.nn.Module, channels: int = 1) -> torch.Tensor:
    x = torch.linspace(-1, 1, channels * 8 * 8 * 8).reshape(1, channels, 8, 8, 8)
    with torch.no_grad():
        out = model.eval()(x)
    return out[0] if isinstance(out, (list, tuple)) else out


def test_round_trip_through_the_hub_gives_identical_outputs(hub, tmp_path):
    model, folder = saved_tiny(tmp_path)
    commit = commit_folder(hub, folder)
    cache = tmp_path / "cache"
    loaded = zoo.load(f"hf-hub:{REPO}", cache_dir=cache, progress=False, device="cpu")
    assert torch.equal(outputs(loaded), outputs(model))
    report = loaded.load_report
    assert report.source == f"hf-hub:{REPO}@{commit}" and report.verified_by == "Hub LFS sha256 (blob name)"
    assert Path(report.weights).is_relative_to(cache / "hub")  # the HF cache under cache_dir
    assert loaded.pretrained_cfg.source.revision == commit
    assert loaded.pretrained_cfg.source.sha256 == sha256_file(folder / "model.safetensors")
    downloaded = sorted(r.path.rsplit("/", 1)[-1] for r in hub.requests if r.method == "GET" and r.origin == "hub")
    assert downloaded == ["README.md", "config.json"]  # the weights came from the CDN (LFS)
    # the zoo.load options apply as for a registry name; a pinned commit is served from the cache, no request
    hub.reset_requests()
    adapted = zoo.load(f"hf-hub:{REPO}@{commit}", in_channels=2, num_classes=3, cache_dir=cache, progress=False)
    assert hub.requests == []
    assert outputs(adapted, channels=2).shape[1] == 3
    assert adapted.load_report.new_modules  # the new head
    bare = zoo.load(f"hf-hub:{REPO}", pretrained=False, cache_dir=cache, force_download=True)  # config only
    assert bare.load_report.weights is None and bare.pretrained_cfg.name == "tiny-unet-mit"
    assert [r.path.rsplit("/", 1)[-1] for r in hub.requests if r.method == "GET"] == ["config.json", "README.md"]


def test_revision_and_sha256_pins(hub, tmp_path):
    first, folder = saved_tiny(tmp_path, seed=1)
    old = commit_folder(hub, folder)
    second, newer = saved_tiny(tmp_path, seed=2)
    commit_folder(hub, newer)
    assert torch.equal(outputs(zoo.load(f"hf-hub:{REPO}", progress=False)), outputs(second))  # main
    by_name = zoo.load(f"hf-hub:{REPO}@{old}", progress=False)
    by_arg = zoo.load(f"hf-hub:{REPO}", revision=old, progress=False)
    assert torch.equal(outputs(by_name), outputs(first)) and torch.equal(outputs(by_arg), outputs(first))
    with pytest.raises(HubRepoError, match="give one"):
        zoo.load(f"hf-hub:{REPO}@{old}", revision="main")
    digest = sha256_file(folder / "model.safetensors")
    pinned = zoo.load(f"hf-hub:{REPO}", revision=old, sha256=digest, progress=False)
    assert pinned.load_report.verified_by == "sha256 pinned by the caller"
    with pytest.raises(ChecksumError, match="model.safetensors of hf-hub:") as err:
        zoo.load(f"hf-hub:{REPO}", sha256="0" * 64, progress=False)
    assert err.value.expected_sha256 == "0" * 64
    with pytest.raises(HubRepoError, match="64 lowercase hex"):
        zoo.load(f"hf-hub:{REPO}", sha256="abc")
    with pytest.raises(zoo.ZooError, match="apply to hf-hub:ORG/NAME names only"):
        zoo.load("genesis-ct-demo", revision=old)


def test_bytes_that_differ_from_the_lfs_sha256_or_the_git_blob_id_are_refused(hub, tmp_path):
    _, folder = saved_tiny(tmp_path)
    commit_folder(hub, folder)
    hub.inject(origin="cdn", corrupt=True, times=None)
    with pytest.raises(ChecksumError, match="model.safetensors of hf-hub:medzoo-test/tiny-unet"):
        zoo.load(f"hf-hub:{REPO}", progress=False)
    hub.clear_faults()
    hub.inject(origin="hub", method="GET", corrupt=True, times=None)  # config.json is a regular git file
    with pytest.raises(ChecksumError, match="config.json of hf-hub:medzoo-test/tiny-unet .* git blob id"):
        zoo.load(f"hf-hub:{REPO}", progress=False, force_download=True)


@pytest.mark.parametrize("name, error, fragments", [
    ("hf-hub:not a repo", HubRepoError, ["does not name a Hub model repo", "hf-hub:ORG/NAME"]),
    ("hf-hub:just-a-name", HubRepoError, ["ORG/NAME"]),
    ("hf-hub:medzoo-test/nothing-here", WeightsNotAvailableError,
     ["hf-hub:medzoo-test/nothing-here: config.json", "no repository", "check the repo id"]),
    ("hf-hub:medzoo-test/tiny-unet@v9", WeightsNotAvailableError, ["no revision v9", "check the revision"]),
    ("medzoo-test/tiny-unet", UnknownModelError, ["neither a registry name nor a model folder",
                                                  "write hf-hub:medzoo-test/tiny-unet"]),
])
def test_bad_names_are_one_clear_error(hub, tmp_path, name, error, fragments):
    _, folder = saved_tiny(tmp_path)
    commit_folder(hub, folder)
    hub.reset_requests()
    with pytest.raises(error) as err:
        zoo.load(name, progress=False)
    assert isinstance(err.value, zoo.ZooError)
    for fragment in fragments:
        assert fragment in str(err.value), (fragment, str(err.value))
    if error is not WeightsNotAvailableError:
        assert hub.requests == []  # refused before any request: an unprefixed name never becomes a Hub load


def test_missing_weights_and_hostile_config_name_the_repo_and_the_fix(hub, tmp_path):
    _, folder = saved_tiny(tmp_path)
    commit_folder(hub, folder, skip=("model.safetensors",))
    with pytest.raises(WeightsNotAvailableError) as err:
        zoo.load(f"hf-hub:{REPO}", progress=False)
    assert "model.safetensors" in str(err.value) and "what zoo.save writes" in str(err.value)
    # a config that names a callable outside the allow-list: refused before the weights are downloaded
    config = (folder / "config.json").read_text().replace('"torch.nn.LeakyReLU"', '"os.system"')
    hub.commit("medzoo-test/hostile", {"config.json": config.encode(),
                                        "model.safetensors": (folder / "model.safetensors").read_bytes()},
               lfs=["model.safetensors"])
    hub.reset_requests()
    with pytest.raises(CheckpointFormatError) as err:
        zoo.load("hf-hub:medzoo-test/hostile", progress=False)
    msg = str(err.value)
    assert "refused to load hf-hub:medzoo-test/hostile" in msg and "nonlin" in msg and "zoo.save" in msg
    assert err.value.key and "nonlin" in err.value.key
    assert not any(r.path.endswith("model.safetensors") for r in hub.requests)


def test_zoo_info_reads_only_config_and_card(hub, tmp_path, capsys):
    _, folder = saved_tiny(tmp_path)
    commit = commit_folder(hub, folder)
    assert main(["info", f"hf-hub:{REPO}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny-unet-mit\n") and "plain_conv_unet" in out and "licence        mit" in out
    assert f"hub repo       {REPO} at commit {commit}" in out and "README.md (" in out
    assert f"{REPO}/model.safetensors (safetensors)" in out and f"revision       {commit}" in out
    assert not any(r.path.endswith("model.safetensors") for r in hub.requests)
    assert main(["info", "hf-hub:medzoo-test/absent"]) == 2
    assert "hf-hub:medzoo-test/absent" in capsys.readouterr().err
