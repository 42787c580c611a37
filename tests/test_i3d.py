"""2D ImageNet ResNets inflated to 3D (``i3d-*`` entries): timm's own networks (the real peer, random weights)
saved as timm saves a Hub repo, served offline by the real huggingface_hub client from a local cache, loaded
with ``zoo.load``, and compared with timm's 2D features on volumes constant along z."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import zoo
from zoo.archs.med3d_resnet import build_med3d_resnet
from zoo.errors import CheckpointFormatError
from zoo.hub.paths import hf_cache_dir, zoo_cache_dir
from zoo.registry import get_entry

from upstream import put_folder_in_hf_cache, timm_hub_folder, timm_resnet

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")

#: z extent of the test volumes: larger than the z receptive field of layer4 (435 voxels for ResNet-18, 427 for
#: ResNet-50), so the central z slice of every stage is computed without touching the zero-padded z borders
DEPTH_Z = 448


@pytest.fixture(scope="module")
def timm_repos(tmp_path_factory):
    """depth -> (timm model in eval mode, folder written by timm.models.save_for_hf)."""
    repos = {}

    def get(depth: int):
        if depth not in repos:
            model = timm_resnet(depth, seed=depth)
            repos[depth] = (model, timm_hub_folder(model, tmp_path_factory.mktemp(f"timm-resnet{depth}")))
        return repos[depth]

    return get


def _serve(name: str, folder: Path) -> Path:
    """Put a timm Hub folder where the huggingface_hub client of ``name``'s entry looks for it (offline)."""
    return put_folder_in_hf_cache(hf_cache_dir(), get_entry(name).source.repo_id, folder)


def _converted_dirs(name: str) -> list[Path]:
    root = zoo_cache_dir() / "converted" / name
    return [p for p in root.iterdir() if p.is_dir()] if root.exists() else []


def _inflated(w2d: torch.Tensor) -> torch.Tensor:
    """The I3D kernel written out independently of the converter: k copies along z, each w / k."""
    k = w2d.shape[-1]
    return torch.stack([w2d / k] * k, dim=2)


def test_load_from_timm_hub_repo_converts_once_verifies_and_reuses(timm_repos):
    timm_model, folder = timm_repos(18)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["architecture"] == "resnet18"
    _serve("i3d-resnet18-imagenet", folder)

    model = zoo.load("i3d-resnet18-imagenet", progress=False)
    assert model.load_report.verified_by == "Hub LFS sha256 (blob name)"
    assert model.dilated is False and model.feature_strides == (2, 4, 8, 16, 32)
    sd, ref = model.state_dict(), timm_model.state_dict()
    assert sd["conv1.weight"].shape == (64, 1, 7, 7, 7)
    torch.testing.assert_close(sd["conv1.weight"], _inflated(ref["conv1.weight"].sum(1, keepdim=True)))
    assert sd["layer3.1.conv2.weight"].shape == (256, 256, 3, 3, 3)
    torch.testing.assert_close(sd["layer3.1.conv2.weight"], _inflated(ref["layer3.1.conv2.weight"]))
    assert torch.equal(sd["layer4.0.downsample.0.weight"], ref["layer4.0.downsample.0.weight"][:, :, None])
    for key in ("bn1.running_var", "layer2.0.downsample.1.running_mean", "layer4.1.bn2.weight"):
        assert torch.equal(sd[key], ref[key]), key
    assert set(sd) == set(ref) - {"fc.weight", "fc.bias"}

    (directory,) = _converted_dirs("i3d-resnet18-imagenet")
    assert directory.name == "rev-main-model.safetensors"
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["format"] == "timm" and meta["tensors"] == 120 and sorted(meta["dropped_keys"]) == ["fc.bias", "fc.weight"]
    assert meta["source"]["repo_id"] == "timm/resnet18.a1_in1k"

    shutil.rmtree(hf_cache_dir())  # later loads need only the conversion
    again = zoo.load("i3d-resnet18-imagenet", progress=False)
    assert "cached conversion" in again.load_report.verified_by
    assert torch.equal(again.state_dict()["layer1.0.conv1.weight"], sd["layer1.0.conv1.weight"])


@pytest.mark.parametrize("depth", [18, 50])
def test_volume_constant_along_z_gives_timm_2d_features_exactly(timm_repos, depth):
    """timm on a grey image replicated to RGB == the inflated network on that image replicated along z, at the
    central z slice of every stage (stem, layer1..layer4), in eval mode."""
    timm_model, folder = timm_repos(depth)
    name = f"i3d-resnet{depth}-imagenet"
    _serve(name, folder)
    model = zoo.load(name, progress=False, features_only=True).eval()
    image = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = timm_model.forward_intermediates(image.expand(-1, 3, -1, -1), intermediates_only=True)
        feats = model(image[:, :, None].expand(-1, -1, DEPTH_Z, -1, -1).contiguous())
    assert len(ref) == len(feats) == 5
    for stage, (r, f) in enumerate(zip(ref, feats)):
        assert f.shape[2] == DEPTH_Z // model.feature_strides[stage] and f.shape[3:] == r.shape[2:]
        scale = r.abs().max().item()
        assert scale > 1.0 and r.std() > 0.1  # a non-trivial response
        centre = f[:, :, f.shape[2] // 2]
        diff = (centre - r).abs().max().item()
        assert diff <= 1e-5 * scale, f"stage {stage}: max |3D - 2D| = {diff:.3g} (scale {scale:.3g})"
        if stage == 4:  # the zero-padded z border is seen: the comparison is not vacuous
            assert (f[:, :, 0] - r).abs().max().item() > 1e-3 * scale


def test_resnet50_with_channels_and_new_head_and_listing(timm_repos):
    timm_model, folder = timm_repos(50)
    _serve("i3d-resnet50-imagenet", folder)
    model = zoo.load("i3d-resnet50-imagenet", in_channels=4, num_classes=3, progress=False)
    w = model.conv1.weight
    grey = _inflated(timm_model.state_dict()["conv1.weight"].sum(1, keepdim=True))
    assert w.shape == (64, 4, 7, 7, 7)
    for c in range(4):
        torch.testing.assert_close(w[:, c:c + 1], grey / 4)
    assert model.load_report.new_modules == ["fc"] and model.fc.out_features == 3
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 4, 32, 64, 64)).shape == (2, 3)
    assert zoo.list_models("i3d-*") == ["i3d-resnet18-imagenet", "i3d-resnet50-imagenet"]
    assert "i3d-resnet50-imagenet" in zoo.list_models(modality="MR", tag="imagenet")
    entry = zoo.info("i3d-resnet50-imagenet")
    assert entry.source.revision is None and entry.source.sha256 is None and "unpinned" in entry.source.revision_note
    assert entry.license.spdx == "apache-2.0" and "ImageNet" in entry.license.notice


def _bad_repo(timm_model, folder: Path, drop=(), add=None, replace=None) -> Path:
    from safetensors.torch import save_file

    sd = {k: v.clone() for k, v in timm_model.state_dict().items() if k not in drop}
    sd.update(add or {})
    sd.update(replace or {})
    folder.mkdir()
    save_file(sd, str(folder / "model.safetensors"))
    return folder


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing", r"1 missing \(e\.g\. \['layer2\.0\.downsample\.1\.running_var'\]\)"),
        ("extra", r"1 unexpected \(e\.g\. \['layer1\.0\.se\.fc1\.weight'\]\)"),
        ("3d", r"not a 2D timm ResNet checkpoint \(conv1\.weight of shape \(64, 1, 7, 7, 7\)"),
    ],
)
def test_bad_timm_checkpoint_names_the_key_and_leaves_no_conversion(timm_repos, tmp_path, case, match):
    timm_model, _ = timm_repos(18)
    edits = {
        "missing": {"drop": ("layer2.0.downsample.1.running_var",)},
        "extra": {"add": {"layer1.0.se.fc1.weight": torch.randn(4, 64, 1, 1)}},
        "3d": {"replace": {"conv1.weight": torch.randn(64, 1, 7, 7, 7)}},
    }[case]
    _serve("i3d-resnet18-imagenet", _bad_repo(timm_model, tmp_path / case, **edits))
    with pytest.raises(CheckpointFormatError, match=match):
        zoo.load("i3d-resnet18-imagenet", progress=False)
    assert _converted_dirs("i3d-resnet18-imagenet") == []


def test_checkpoint_without_bn_counters_loads(timm_repos, tmp_path):
    timm_model, _ = timm_repos(18)
    counters = tuple(k for k in timm_model.state_dict() if k.endswith("num_batches_tracked"))
    _serve("i3d-resnet18-imagenet", _bad_repo(timm_model, tmp_path / "no-counters", drop=counters))
    model = zoo.load("i3d-resnet18-imagenet", progress=False)
    assert int(model.state_dict()["layer4.1.bn2.num_batches_tracked"]) == 0


def test_classic_layout_option_of_the_med3d_builder():
    classic = build_med3d_resnet(depth=18, shortcut_type="B", dilated=False, features_only=True)
    dilated = build_med3d_resnet(depth=18, shortcut_type="B", features_only=True)
    assert {k: v.shape for k, v in classic.state_dict().items()} == {k: v.shape for k, v in dilated.state_dict().items()}
    x = torch.randn(1, 1, 32, 32, 32)
    classic.eval(), dilated.eval()
    with torch.no_grad():
        assert [f.shape[2] for f in classic(x)] == [16, 8, 4, 2, 1] and classic.feature_strides == (2, 4, 8, 16, 32)
        assert [f.shape[2] for f in dilated(x)] == [16, 8, 4, 4, 4] and dilated.feature_strides == (2, 4, 8, 8, 8)
    assert classic.layer3[0].conv1.dilation == (1, 1, 1) and dilated.layer4[1].conv2.dilation == (4, 4, 4)
    with pytest.raises(ValueError, match="dilated"):
        build_med3d_resnet(depth=18, dilated="no")


def test_checkpoint_argument_takes_a_timm_file_or_a_converted_one(timm_repos, tmp_path):
    """A timm ``model.safetensors`` downloaded by hand is inflated; medzoo's own (3-D) safetensors is not."""
    from safetensors.torch import save_file

    timm_model, folder = timm_repos(18)
    model = zoo.load("i3d-resnet18-imagenet", checkpoint=folder / "model.safetensors", progress=False)
    sd = model.state_dict()
    torch.testing.assert_close(sd["layer1.0.conv1.weight"], _inflated(timm_model.state_dict()["layer1.0.conv1.weight"]))
    converted = tmp_path / "converted.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(converted))
    again = zoo.load("i3d-resnet18-imagenet", checkpoint=converted, progress=False)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in sd.items())
