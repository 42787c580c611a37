"""zoo.load end to end: upstream-format files served by the real huggingface_hub client from a local
cache or by a local mirror, converted once into safetensors, verified, reused, and refused when bad."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
import zoo.registry as registry
from zoo.errors import (
    AdaptationError,
    CheckpointFormatError,
    ChecksumError,
    UnknownModelError,
    UnsafeCheckpointError,
    WeightsNotAvailableError,
)
from zoo.hub.paths import hf_cache_dir, zoo_cache_dir

from upstream import (
    genesis_unet3d_file,
    medicalnet_file,
    nnunet_v1_file,
    put_in_hf_cache,
    put_in_mirror,
    sha256,
)

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")


def _pin(monkeypatch, name: str, file: Path) -> registry.ModelEntry:
    """Point registry entry ``name`` at the sha256/size of a test file (the real pins are for the real files)."""
    entry = registry.get_entry(name)
    source = dataclasses.replace(entry.source, sha256=sha256(file), size=file.stat().st_size)
    patched = dataclasses.replace(entry, source=source)
    monkeypatch.setitem(registry._REGISTRY, name, patched)
    return patched


def _converted_dirs(name: str) -> list[Path]:
    root = zoo_cache_dir() / "converted" / name
    return [p for p in root.iterdir() if p.is_dir()] if root.exists() else []


@pytest.fixture
def genesis_in_hf_cache(tmp_path):
    entry = registry.get_entry("genesis-chest-ct")
    file = tmp_path / entry.source.filename
    sd = genesis_unet3d_file(file)
    put_in_hf_cache(hf_cache_dir(), entry.source.repo_id, entry.source.filename, file, entry.source.revision)
    return sd


def test_genesis_from_hf_cache_converts_once_and_reuses(genesis_in_hf_cache):
    model = zoo.load("genesis-chest-ct", progress=False)
    loaded = model.state_dict()
    assert set(loaded) == set(genesis_in_hf_cache)
    for key, value in genesis_in_hf_cache.items():
        assert torch.equal(loaded[key], value), key
    assert model.load_report.verified_by == "Hub LFS sha256 (blob name)"
    (directory,) = _converted_dirs("genesis-chest-ct")
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["dropped_entries"] == ["epoch", "optimizer_state_dict"]
    assert meta["tensors"] == 106
    # the upstream download is no longer needed: later loads read the conversion only
    import shutil

    shutil.rmtree(hf_cache_dir())
    again = zoo.load("genesis-chest-ct", progress=False)
    assert torch.equal(again.state_dict()["out_tr.final_conv.weight"], genesis_in_hf_cache["out_tr.final_conv.weight"])
    assert "cached conversion" in again.load_report.verified_by


def test_loaded_model_trains_and_leaves_cache_file_untouched(genesis_in_hf_cache):
    model = zoo.load("genesis-chest-ct", progress=False)
    (directory,) = _converted_dirs("genesis-chest-ct")
    before = sha256(directory / "model.safetensors")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.rand(1, 1, 16, 16, 8)
    loss = model(x).mean()
    loss.backward()
    w0 = model.down_tr64.ops[0].conv1.weight.detach().clone()
    opt.step()
    assert not torch.equal(w0, model.down_tr64.ops[0].conv1.weight)
    assert sha256(directory / "model.safetensors") == before
    assert zoo.load("genesis-chest-ct", progress=False, verify=True) is not None


def test_med3d_from_mirror_with_channels_and_head(monkeypatch, tmp_path):
    entry = registry.get_entry("med3d-resnet10")
    file = tmp_path / entry.source.filename
    sd = medicalnet_file(file, 10)
    _pin(monkeypatch, "med3d-resnet10", file)
    mirror = tmp_path / "mirror"
    put_in_mirror(mirror, entry.source.repo_id, entry.source.filename, file)
    monkeypatch.setenv("ZOO_MIRROR", str(mirror))

    model = zoo.load("med3d-resnet10", in_channels=4, num_classes=3, progress=False)
    w = model.conv1.weight
    assert w.shape == (64, 4, 7, 7, 7)
    for c in range(4):
        assert torch.allclose(w[:, c], sd["conv1.weight"][:, 0] / 4)
    x = torch.randn(1, 1, 16, 32, 32)
    backbone = zoo.load("med3d-resnet10", progress=False)
    backbone.eval()
    model.eval()
    # four identical channels reproduce the one-channel response of the backbone
    feats4 = model.forward_features(x.repeat(1, 4, 1, 1, 1)) if hasattr(model, "forward_features") else None
    if feats4 is not None:
        torch.testing.assert_close(feats4, backbone(x), rtol=1e-4, atol=1e-4)
    assert model(x.repeat(1, 4, 1, 1, 1)).shape == (1, 3)
    assert any("conv1.weight" in a for a in model.load_report.adaptations)
    assert model.load_report.new_modules == ["fc"]
    assert model.load_report.verified_by.startswith("registry sha256") or "cached" in model.load_report.verified_by


def test_genesis_nnunet_v1_is_converted_to_v2_layout(tmp_path):
    entry = registry.get_entry("genesis-chest-ct-nnunet-lung")
    file = tmp_path / entry.source.filename
    v1 = nnunet_v1_file(file)
    assert len(v1) == 98
    put_in_hf_cache(hf_cache_dir(), entry.source.repo_id, entry.source.filename, file, entry.source.revision)
    model = zoo.load("genesis-chest-ct-nnunet-lung", progress=False)
    sd = model.state_dict()
    assert len(sd) == 292
    assert torch.equal(sd["encoder.stages.5.0.convs.1.conv.weight"], v1["conv_blocks_context.5.1.blocks.0.conv.weight"])
    assert torch.equal(sd["decoder.encoder.stages.0.0.convs.0.all_modules.0.weight"], v1["conv_blocks_context.0.blocks.0.conv.weight"])
    assert torch.equal(sd["decoder.stages.4.convs.1.norm.weight"], v1["conv_blocks_localization.4.1.blocks.0.instnorm.weight"])
    assert torch.equal(sd["decoder.transpconvs.0.weight"], v1["tu.0.weight"])
    assert sd["decoder.transpconvs.0.weight"].shape == (320, 320, 1, 2, 2)
    assert torch.count_nonzero(sd["decoder.transpconvs.0.bias"]) == 0
    assert torch.equal(sd["decoder.seg_layers.2.weight"], v1["seg_outputs.2.weight"])

    # the real dynamic-network-architectures network accepts the converted weights, strictly
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from zoo.archs.nnunet_unet import resolve_arch_kwargs

    dna = PlainConvUNet(input_channels=1, num_classes=2, deep_supervision=False,
                        **resolve_arch_kwargs(entry.build_kwargs()))
    dna.load_state_dict(sd, strict=True)
    x = torch.randn(1, 1, 32, 64, 64)  # total strides (16, 32, 32): bottleneck 2x2x2
    model.eval(), dna.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), dna(x))


def test_user_checkpoint_is_converted_keyed_by_content(tmp_path):
    file = tmp_path / "my_genesis.pt"
    sd = genesis_unet3d_file(file, seed=3)
    model = zoo.load("genesis-chest-ct", checkpoint=file, progress=False)
    assert torch.equal(model.state_dict()["down_tr512.ops.1.conv1.weight"], sd["down_tr512.ops.1.conv1.weight"])
    (directory,) = _converted_dirs("genesis-chest-ct")
    assert directory.name == f"file-{sha256(file)[:16]}"
    assert zoo.load("genesis-chest-ct", checkpoint=str(file), progress=False).load_report.weights == str(directory / "model.safetensors")


def test_offline_miss_names_url_and_mirror_path_and_leaves_cache_clean(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(WeightsNotAvailableError) as err:
        zoo.load("med3d-resnet18", progress=False)
    assert err.value.url == "https://huggingface.co/TencentMedicalNet/MedicalNet-Resnet18/resolve/ee59c99e39a995fb8c20f2a2650a66161e2df584/resnet_18.pth"
    assert err.value.mirror_path == str(tmp_path / "mirror" / "TencentMedicalNet/MedicalNet-Resnet18/resnet_18.pth")
    assert err.value.name == "med3d-resnet18" and "HF_HUB_OFFLINE" in err.value.reason
    msg = str(err.value)  # the message names them too, and the fix
    assert "https://huggingface.co/TencentMedicalNet/MedicalNet-Resnet18/resolve/ee59c99e39a995fb8c20f2a2650a66161e2df584/resnet_18.pth" in msg
    assert str(tmp_path / "mirror" / "TencentMedicalNet/MedicalNet-Resnet18/resnet_18.pth") in msg
    assert "HF_HUB_OFFLINE" in msg and "checkpoint=" in msg
    assert _converted_dirs("med3d-resnet18") == []


def test_sha256_mismatch_against_pinned_hash_is_refused_and_removed(tmp_path):
    entry = registry.get_entry("med3d-resnet10")  # real pinned sha256: a test file can never match it
    file = tmp_path / entry.source.filename
    medicalnet_file(file, 10)
    snap = put_in_hf_cache(hf_cache_dir(), entry.source.repo_id, entry.source.filename, file, entry.source.revision)
    blob = snap.resolve()
    with pytest.raises(ChecksumError) as err:
        zoo.load("med3d-resnet10", progress=False)
    assert err.value.expected_sha256 == entry.source.sha256 and err.value.expected_size == entry.source.size
    assert err.value.actual_size == file.stat().st_size and err.value.path == str(snap)
    assert not blob.exists() and not snap.is_symlink()
    assert _converted_dirs("med3d-resnet10") == []


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_damaged_cached_conversion_is_detected_removed_and_rebuilt(genesis_in_hf_cache, damage):
    zoo.load("genesis-chest-ct", progress=False)
    (directory,) = _converted_dirs("genesis-chest-ct")
    path = directory / "model.safetensors"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        data[len(data) // 2] ^= 0x10
        path.write_bytes(data)
    with pytest.raises(ChecksumError) as err:
        zoo.load("genesis-chest-ct", progress=False)
    assert err.value.path == str(path) and err.value.actual_sha256 != err.value.expected_sha256
    assert err.value.actual_size == (len(data) // 2 if damage == "truncate" else len(data))
    assert not directory.exists()
    model = zoo.load("genesis-chest-ct", progress=False)  # converted again from the upstream file
    assert torch.equal(model.state_dict()["out_tr.final_conv.bias"], genesis_in_hf_cache["out_tr.final_conv.bias"])


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    file = tmp_path / "evil.pt"
    sd = genesis_unet3d_file(tmp_path / "ok.pt")
    torch.save({"state_dict": sd, "payload": _Exploit(str(marker))}, file)
    with pytest.raises(UnsafeCheckpointError, match="Nothing in it was run") as err:  # the message says so
        zoo.load("genesis-chest-ct", checkpoint=file, progress=False)
    assert err.value.path == str(file) and err.value.global_name in ("posix.system", "os.system", "nt.system")
    assert not marker.exists()
    assert _converted_dirs("genesis-chest-ct") == []
    # a raw pickle (not a torch file) with the same payload
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises((UnsafeCheckpointError, CheckpointFormatError)):
        zoo.load("genesis-chest-ct", checkpoint=raw, progress=False)
    assert not marker.exists()


def test_wrong_file_for_model_is_refused_cleanly(tmp_path):
    file = tmp_path / "resnet_10.pth"
    medicalnet_file(file, 10)
    with pytest.raises(CheckpointFormatError) as err:
        zoo.load("genesis-chest-ct", checkpoint=file, checkpoint_format="genesis-unet3d", progress=False)
    assert err.value.key is not None and "does not match" in str(err.value)
    assert _converted_dirs("genesis-chest-ct") == []


def test_tampered_mirror_file_is_refused(tmp_path, monkeypatch):
    entry = registry.get_entry("genesis-chest-ct")
    file = tmp_path / entry.source.filename
    genesis_unet3d_file(file)
    mirror = tmp_path / "mirror"
    dest = put_in_mirror(mirror, entry.source.repo_id, entry.source.filename, file)
    (mirror / "manifest.json").write_text(json.dumps(
        {"files": {f"{entry.source.repo_id}/{entry.source.filename}": {"sha256": sha256(file)}}}))
    monkeypatch.setenv("ZOO_MIRROR", str(mirror))
    assert zoo.load("genesis-chest-ct", progress=False).load_report.verified_by == "mirror manifest sha256"
    import shutil

    shutil.rmtree(zoo_cache_dir())
    data = bytearray(dest.read_bytes())
    data[-100] ^= 1
    dest.write_bytes(data)
    with pytest.raises(ChecksumError) as err:
        zoo.load("genesis-chest-ct", progress=False)
    assert err.value.path == str(dest) and err.value.expected_sha256 == sha256(file)
    assert err.value.actual_sha256 == sha256(dest)
    assert _converted_dirs("genesis-chest-ct") == []


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownModelError) as err:
        zoo.load("med3d-resnet15")
    assert err.value.name == "med3d-resnet15" and "med3d-resnet152" in err.value.suggestions
    with pytest.raises(UnknownModelError) as err:
        zoo.info("genesis_chest")
    assert err.value.name == "genesis_chest" and "genesis-chest-ct" in err.value.suggestions


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_impossible_in_channels_are_refused(bad):
    with pytest.raises(AdaptationError, match="in_channels"):
        zoo.load("genesis-chest-ct", in_channels=bad)


def test_pretrained_false_builds_without_any_file():
    model = zoo.load("med3d-resnet18", pretrained=False, in_channels=2, num_classes=5)
    assert model.conv1.weight.shape[1] == 2
    assert not any(t.is_meta for t in model.state_dict().values())
    assert not (zoo_cache_dir() / "converted").exists()


def test_registry_listing_and_filters():
    names = zoo.list_models()
    assert names.index("med3d-resnet10") < names.index("med3d-resnet18") < names.index("med3d-resnet101")
    assert zoo.list_models("med3d-resnet*-23datasets") == [
        "med3d-resnet10-23datasets", "med3d-resnet18-23datasets", "med3d-resnet34-23datasets", "med3d-resnet50-23datasets"]
    assert "genesis-chest-ct" in zoo.list_models(modality="CT")
    assert "genesis-chest-ct" not in zoo.list_models(modality="MR")
    assert "med3d-resnet50" in zoo.list_models(modality="MR")
    assert zoo.list_models(architecture="plain_conv_unet") == ["genesis-chest-ct-nnunet-lung", "genesis-ct-demo",
                                                               "voco-omni-nnunet"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        zoo.info("genesis-chest-ct").name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        zoo.info("genesis-chest-ct").arch_kwargs["x"] = 1  # type: ignore[index]


def test_import_zoo_is_light():
    code = (
        "import sys, zoo, zoo.convert.formats, zoo.convert.inflate2d; zoo.list_models(); zoo.info('med3d-resnet10');"
        "zoo.load('i3d-resnet18-imagenet', pretrained=False);"
        "bad=[m for m in ('timm','huggingface_hub','nnunetv2','monai','torchvision') if m in sys.modules];"
        "print(bad); assert not bad"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
