"""Air-gapped mirrors: a full offline round trip (convert, export, import into an empty cache with the network
disabled, load) and tampered mirrors that must be refused, through the real huggingface_hub client and the
real download/conversion code. A tiny nnU-Net v1 checkpoint stands in for the real Genesis nnU-Net file."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import socket
from pathlib import Path

import pytest
import torch

import zoo
import zoo.registry as registry
from zoo.cli.mirror import add_subcommands
from zoo.entries.genesis import LUNG_PLAN_ARCH_KWARGS
from zoo.errors import ChecksumError, WeightsNotAvailableError
from zoo.hub.paths import hf_cache_dir, zoo_cache_dir
from zoo.mirror import export_mirror, import_mirror, read_manifest, verify_mirror
from zoo.registry import CheckpointSource

from upstream import FAKE_COMMIT, nnunet_v1_lung_state_dict, put_in_hf_cache, sha256

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")

NAME = "tiny-genesis-nnunet"
FEATURES = (4, 8, 16)
REPO, FILENAME = "medzoo-test/TinyGenesis", "tiny_nnunet_006.model"
UPSTREAM_REL = f"{REPO}/{FILENAME}"


def _tiny_entry(**source_changes) -> registry.ModelEntry:
    base = registry.get_entry("genesis-chest-ct-nnunet-lung")
    kwargs = dict(LUNG_PLAN_ARCH_KWARGS)
    kwargs.update(
        n_stages=3, features_per_stage=list(FEATURES), kernel_sizes=[[3, 3, 3]] * 3,
        strides=[[1, 1, 1], [2, 2, 2], [1, 2, 2]], n_conv_per_stage=[2] * 3, n_conv_per_stage_decoder=[2] * 2,
    )
    source = CheckpointSource(repo_id=REPO, filename=FILENAME, format="nnunet-v1", **source_changes)
    return dataclasses.replace(base, name=NAME, arch_kwargs=kwargs, source=source)


@pytest.fixture
def upstream_file(tmp_path) -> tuple[Path, dict]:
    """A tiny ``genesis_nnunet_luna16_006.model``-style file (nnU-Net v1 keys, wrapped, with optimizer state)."""
    sd = nnunet_v1_lung_state_dict(seed=3, features=FEATURES)
    path = tmp_path / "upstream" / FILENAME
    path.parent.mkdir()
    torch.save({"epoch": 3, "state_dict": sd, "optimizer_state_dict": {}}, path)
    return path, sd


@pytest.fixture
def tiny(monkeypatch, upstream_file) -> registry.ModelEntry:
    """Register the tiny entry (unpinned, like the real Genesis files) with its file in this machine's HF cache."""
    entry = _tiny_entry()
    monkeypatch.setitem(registry._REGISTRY, NAME, entry)
    put_in_hf_cache(hf_cache_dir(), REPO, FILENAME, upstream_file[0], revision=None)
    return entry


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket connection fails (HF_HUB_OFFLINE is set as well, by conftest)."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="zoo")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def test_round_trip_convert_export_import_offline_load(tiny, tmp_path, no_network, capsys):
    # machine A: load once (download from the HF cache, convert), then export through the CLI
    original = _tensors(zoo.load(NAME, progress=False))
    mirror = tmp_path / "usb" / "zoo-mirror"
    assert _cli(["mirror", "export", NAME, str(mirror)]) == 0
    manifest = read_manifest(mirror)
    upstream = manifest["files"][UPSTREAM_REL]
    assert upstream["sha256"] == sha256(mirror / UPSTREAM_REL)
    assert upstream["commit"] == FAKE_COMMIT and upstream["kind"] == "upstream"
    conv = manifest["models"][NAME]["converted"]
    assert manifest["files"][f"{conv}/model.safetensors"]["kind"] == "converted"
    assert "non-commercial" in (mirror / "NOTICE.md").read_text()

    # machine A disappears: only the mirror survives
    shutil.rmtree(hf_cache_dir())
    shutil.rmtree(zoo_cache_dir())

    # machine B: an empty cache, no network; import through the CLI, then unplug the mirror
    machine_b = tmp_path / "machine-b"
    assert _cli(["mirror", "verify", str(mirror)]) == 0
    assert _cli(["mirror", "import", str(mirror), "--cache-dir", str(machine_b)]) == 0
    out = capsys.readouterr().out
    assert "installed" in out
    moved = tmp_path / "unplugged"
    mirror.rename(moved)
    model = zoo.load(NAME, cache_dir=machine_b, progress=False)
    assert model.load_report.verified_by.startswith("cached conversion")
    loaded = _tensors(model)
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[k], original[k]) for k in original)
    # the installed upstream file follows the HF cache layout (blob named by its sha256, refs/main, snapshot)
    repo_dir = machine_b / "hub" / f"models--{REPO.replace('/', '--')}"
    assert (repo_dir / "refs" / "main").read_text() == FAKE_COMMIT
    assert (repo_dir / "blobs" / upstream["sha256"]).is_file()
    assert (repo_dir / "snapshots" / FAKE_COMMIT / FILENAME).resolve().name == upstream["sha256"]
    from huggingface_hub import scan_cache_dir

    scanned = scan_cache_dir(machine_b / "hub")  # huggingface_hub's own reading of the imported cache
    assert not scanned.warnings
    (repo,) = [r for r in scanned.repos if r.repo_id == REPO]
    (revision,) = repo.revisions
    assert revision.commit_hash == FAKE_COMMIT and "main" in revision.refs
    assert [f.file_name for f in revision.files] == [FILENAME]

    # machine C imports the upstream file only: the real huggingface_hub client serves it offline and
    # medzoo converts it, verified against the blob's sha256
    mirror = moved
    machine_c = tmp_path / "machine-c"
    import_mirror(mirror, cache_dir=machine_c, converted=False)
    again = zoo.load(NAME, cache_dir=machine_c, progress=False)
    assert again.load_report.verified_by == "Hub LFS sha256 (blob name)"
    assert all(torch.equal(again.state_dict()[k], original[k]) for k in original)


def test_zoo_mirror_env_is_enough(tiny, tmp_path, no_network, monkeypatch):
    zoo.load(NAME, progress=False)
    mirror = tmp_path / "mirror"
    export_mirror([NAME], mirror, converted=False)
    assert not (mirror / "_converted").exists()
    shutil.rmtree(hf_cache_dir())
    shutil.rmtree(zoo_cache_dir())
    monkeypatch.setenv("ZOO_MIRROR", str(mirror))
    model = zoo.load(NAME, cache_dir=tmp_path / "fresh", progress=False)
    assert model.load_report.verified_by == "mirror manifest sha256"


def _flip_byte(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_upstream_file_is_detected_and_never_loaded(tiny, tmp_path, no_network, monkeypatch):
    zoo.load(NAME, progress=False)
    mirror = tmp_path / "mirror"
    export_mirror([NAME], mirror)
    shutil.rmtree(hf_cache_dir())
    shutil.rmtree(zoo_cache_dir())
    recorded = read_manifest(mirror)["files"][UPSTREAM_REL]["sha256"]
    _flip_byte(mirror / UPSTREAM_REL)
    flipped = sha256(mirror / UPSTREAM_REL)

    target = tmp_path / "target"
    with pytest.raises(ChecksumError) as err:
        import_mirror(mirror, cache_dir=target)
    assert (err.value.path, err.value.expected_sha256, err.value.actual_sha256) == (
        str(mirror / UPSTREAM_REL), recorded, flipped)
    assert _files_under(target) == []  # verified first: nothing was installed
    with pytest.raises(ChecksumError) as err:
        verify_mirror(mirror)
    assert err.value.path == str(mirror / UPSTREAM_REL)

    monkeypatch.setenv("ZOO_MIRROR", str(mirror))
    other = tmp_path / "other"
    with pytest.raises(ChecksumError) as err:
        zoo.load(NAME, cache_dir=other, progress=False)
    assert (err.value.path, err.value.actual_sha256) == (str(mirror / UPSTREAM_REL), flipped)
    assert not (other / "converted" / NAME).exists() or _files_under(other / "converted" / NAME) == []


def test_tampered_conversion_and_manifest_are_refused(tiny, tmp_path, no_network):
    zoo.load(NAME, progress=False)
    mirror = tmp_path / "mirror"
    export_mirror([NAME], mirror)
    conv = read_manifest(mirror)["models"][NAME]["converted"]

    _flip_byte(mirror / conv / "model.safetensors")
    with pytest.raises(ChecksumError) as err:
        import_mirror(mirror, cache_dir=tmp_path / "a")
    assert err.value.path == str(mirror / conv / "model.safetensors")
    assert err.value.actual_sha256 == sha256(mirror / conv / "model.safetensors")
    assert _files_under(tmp_path / "a") == []

    # a manifest rewritten to match a swapped conversion still fails: meta.json records the real file
    manifest = json.loads((mirror / "manifest.json").read_text())
    manifest["files"][f"{conv}/model.safetensors"]["sha256"] = sha256(mirror / conv / "model.safetensors")
    (mirror / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ChecksumError) as err:
        import_mirror(mirror, cache_dir=tmp_path / "b")
    assert err.value.path == str(mirror / conv / "meta.json")
    assert err.value.expected_sha256 == sha256(mirror / conv / "model.safetensors") != err.value.actual_sha256

    # a manifest that points outside the mirror is refused before anything is read
    manifest["files"]["../../etc/passwd"] = {"sha256": "0" * 64, "size": 1}
    (mirror / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ChecksumError, match="unsafe path") as err:
        verify_mirror(mirror)
    assert err.value.path == "../../etc/passwd"


def test_registry_pin_beats_a_rewritten_manifest(monkeypatch, upstream_file, tmp_path, no_network):
    path, _ = upstream_file
    entry = _tiny_entry(sha256=sha256(path), size=path.stat().st_size,
                        revision="a" * 40)
    monkeypatch.setitem(registry._REGISTRY, NAME, entry)
    put_in_hf_cache(hf_cache_dir(), REPO, FILENAME, path, revision=entry.source.revision)
    mirror = tmp_path / "mirror"
    export_mirror([NAME], mirror, converted=False)
    manifest = read_manifest(mirror)
    assert manifest["files"][UPSTREAM_REL]["revision"] == "a" * 40

    # pinned revision: imported under snapshots/<revision>, no refs needed, loads offline
    import_mirror(mirror, cache_dir=tmp_path / "ok")
    assert zoo.load(NAME, cache_dir=tmp_path / "ok", progress=False).load_report.verified_by == "registry sha256"

    # an attacker swaps the file and rewrites the manifest consistently: the registry pin refuses it
    _flip_byte(mirror / UPSTREAM_REL)
    manifest["files"][UPSTREAM_REL]["sha256"] = sha256(mirror / UPSTREAM_REL)
    (mirror / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ChecksumError) as err:
        import_mirror(mirror, cache_dir=tmp_path / "bad")
    assert (err.value.expected_sha256, err.value.actual_sha256) == (sha256(path), sha256(mirror / UPSTREAM_REL))
    assert err.value.path == str(mirror / UPSTREAM_REL)
    assert _files_under(tmp_path / "bad") == []


def test_export_refuses_models_without_weights_and_skips_package_files(monkeypatch, tmp_path):
    base = registry.get_entry("genesis-chest-ct")
    monkeypatch.setitem(registry._REGISTRY, "no-weights-yet", dataclasses.replace(base, name="no-weights-yet", source=None))
    with pytest.raises(WeightsNotAvailableError) as err:
        export_mirror(["no-weights-yet"], tmp_path / "m")
    assert (err.value.name, err.value.reason) == ("no-weights-yet", "no published weights")
    shipped = dataclasses.replace(base, name="shipped-demo", source=CheckpointSource(
        repo_id="medzoo/demo", filename="demo.safetensors", format="safetensors", package_file="demo.safetensors"))
    monkeypatch.setitem(registry._REGISTRY, "shipped-demo", shipped)
    report = export_mirror(["shipped-demo"], tmp_path / "m")
    assert report.models == [] and "ship inside the package" in report.skipped[0]
    with pytest.raises(ChecksumError) as err:
        import_mirror(tmp_path / "empty")
    assert err.value.path == str(tmp_path / "empty" / "manifest.json")


def test_manifest_commit_or_revision_cannot_choose_a_path(tiny, tmp_path, no_network):
    """The manifest supplies bytes and their sha256; repo, file and revision come from the registry and a commit
    must be 40 hex digits, so ``../`` in either can never make the import write outside the cache."""
    zoo.load(NAME, progress=False)
    mirror = tmp_path / "mirror"
    export_mirror([NAME], mirror, converted=False)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    manifest = json.loads((mirror / "manifest.json").read_text())

    manifest["files"][UPSTREAM_REL]["commit"] = "../../../../../victim.txt"
    (mirror / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ChecksumError) as err:
        import_mirror(mirror, cache_dir=tmp_path / "a")
    assert "40-hex commit" in str(err.value)
    assert victim.read_text() == "precious" and not victim.is_symlink()

    manifest["files"][UPSTREAM_REL]["commit"] = FAKE_COMMIT
    manifest["files"][UPSTREAM_REL]["revision"] = "../../../../../victim.txt"
    manifest["files"][UPSTREAM_REL]["repo_id"] = "../../.."
    (mirror / "manifest.json").write_text(json.dumps(manifest))
    report = import_mirror(mirror, cache_dir=tmp_path / "b")
    assert victim.read_text() == "precious" and not victim.is_symlink()
    (snapshot,) = report.installed
    assert snapshot == tmp_path / "b" / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / FAKE_COMMIT / FILENAME
    every = [p for p in (tmp_path / "b").rglob("*")]
    assert all((tmp_path / "b") in p.resolve().parents for p in every)


def test_rewritten_conversion_with_consistent_manifest_and_meta_is_refused(tiny, tmp_path, no_network):
    """Negated weights shipped as the conversion, with meta.json and the manifest rewritten to match and the
    genuine upstream file beside them: import converts the upstream file itself and refuses the difference."""
    from safetensors.torch import load_file, save_file

    original = _tensors(zoo.load(NAME, progress=False))
    mirror = tmp_path / "mirror"
    export_mirror([NAME], mirror)
    conv = read_manifest(mirror)["models"][NAME]["converted"]
    weights = mirror / conv / "model.safetensors"
    save_file({k: -v for k, v in load_file(str(weights)).items()}, str(weights))
    meta = json.loads((mirror / conv / "meta.json").read_text())
    meta.update(file_sha256=sha256(weights), file_size=weights.stat().st_size)
    (mirror / conv / "meta.json").write_text(json.dumps(meta))
    manifest = json.loads((mirror / "manifest.json").read_text())
    for fname in ("model.safetensors", "meta.json"):
        path = mirror / conv / fname
        manifest["files"][f"{conv}/{fname}"].update(sha256=sha256(path), size=path.stat().st_size)
    (mirror / "manifest.json").write_text(json.dumps(manifest))
    verify_mirror(mirror)  # every hash in the mirror is consistent

    target = tmp_path / "target"
    with pytest.raises(ChecksumError, match="differs from the conversion of its verified upstream") as err:
        import_mirror(mirror, cache_dir=target)
    assert err.value.path == str(weights)
    assert [p for p in _files_under(target) if not p.name.endswith(".lock")] == []
    # the same mirror without its conversions installs the genuine weights
    import_mirror(mirror, cache_dir=target, converted=False)
    loaded = _tensors(zoo.load(NAME, cache_dir=target, progress=False))
    assert all(torch.equal(loaded[k], original[k]) for k in original)
