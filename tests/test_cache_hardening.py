"""The converted cache and user checkpoints under attack and under load: concurrent first loads, files swapped
behind medzoo's back (same size, same mtime), damaged cache records, weights of another dtype, and the output
contract of a new task head."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

import zoo
import zoo.registry as registry
from zoo.errors import CheckpointFormatError, ChecksumError
from zoo.hub.paths import hf_cache_dir, zoo_cache_dir
from zoo.model_dir import entry_config, write_model_dir

from upstream import genesis_unet3d_file, medicalnet_file, put_in_hf_cache

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")

GENESIS = "genesis-chest-ct"


def _converted_dirs(name: str) -> list[Path]:
    root = zoo_cache_dir() / "converted" / name
    return [p for p in root.iterdir() if p.is_dir()] if root.exists() else []


@pytest.fixture
def genesis_in_hf_cache(tmp_path) -> OrderedDict:
    entry = registry.get_entry(GENESIS)
    file = tmp_path / entry.source.filename
    sd = genesis_unet3d_file(file)
    put_in_hf_cache(hf_cache_dir(), entry.source.repo_id, entry.source.filename, file, entry.source.revision)
    return sd


# ----------------------------------------------------------------------------------------------------------------
# concurrent first loads
# ----------------------------------------------------------------------------------------------------------------

_RACER = """
import pathlib, sys, time
import zoo
ready, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
ready.write_text("ready")
while not go.exists():
    time.sleep(0.002)
model = zoo.load("genesis-chest-ct", progress=False)
print("VERIFIED_BY", model.load_report.verified_by)
print("BIAS", float(model.out_tr.final_conv.bias.sum()))
"""


@pytest.mark.slow
def test_concurrent_first_loads_all_succeed_with_one_conversion(genesis_in_hf_cache, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    procs, readies = [], []
    go = tmp_path / "go"
    for i in range(4):
        ready = tmp_path / f"ready-{i}"
        readies.append(ready)
        procs.append(subprocess.Popen([sys.executable, "-c", _RACER, str(ready), str(go)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in readies):  # every process has imported zoo: start them together
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.write_text("go")
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err[-2000:]
    verified = [line.split(" ", 1)[1] for out, _ in results for line in out.splitlines() if line.startswith("VERIFIED_BY")]
    biases = {line for out, _ in results for line in out.splitlines() if line.startswith("BIAS")}
    assert len(verified) == 4
    assert sum(not v.startswith("cached conversion") for v in verified) == 1  # exactly one process converted
    assert biases == {f"BIAS {float(genesis_in_hf_cache['out_tr.final_conv.bias'].sum())}"}
    (directory,) = _converted_dirs(GENESIS)
    assert sorted(p.name for p in directory.iterdir()) == ["meta.json", "model.safetensors"]  # no leftovers
    assert not list(zoo_cache_dir().rglob("*.partial"))


# ----------------------------------------------------------------------------------------------------------------
# files swapped or altered with their size and mtime preserved
# ----------------------------------------------------------------------------------------------------------------


def _swap_keeping_stat(path: Path, new_bytes: bytes) -> None:
    """Replace ``path`` by other bytes of the same size and give it back its old mtime (and atime)."""
    st = path.stat()
    assert len(new_bytes) == st.st_size
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(new_bytes)
    os.replace(tmp, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("verify", ["auto", True])
def test_user_checkpoint_swapped_with_same_size_and_mtime_loads_the_new_weights(tmp_path, verify):
    first, second = tmp_path / "a.pth", tmp_path / "b.pth"
    sd_first = medicalnet_file(first, 10, seed=1)
    sd_second = medicalnet_file(second, 10, seed=2)
    user = tmp_path / "my_resnet10.pth"
    user.write_bytes(first.read_bytes())
    loaded = zoo.load("med3d-resnet10", checkpoint=user, progress=False, verify=verify)
    assert torch.equal(loaded.conv1.weight, sd_first["conv1.weight"])

    _swap_keeping_stat(user, second.read_bytes())
    again = zoo.load("med3d-resnet10", checkpoint=user, progress=False, verify=verify)
    assert torch.equal(again.conv1.weight, sd_second["conv1.weight"])


@pytest.mark.parametrize("verify", ["auto", True])
def test_cached_conversion_altered_with_mtime_restored_is_refused(genesis_in_hf_cache, verify):
    zoo.load(GENESIS, progress=False)
    (directory,) = _converted_dirs(GENESIS)
    path = directory / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-64] ^= 0x01
    _swap_keeping_stat(path, bytes(data))
    with pytest.raises(ChecksumError) as err:
        zoo.load(GENESIS, progress=False, verify=verify)
    assert err.value.path == str(path) and err.value.actual_sha256 != err.value.expected_sha256
    assert not directory.exists()
    model = zoo.load(GENESIS, progress=False)  # converted again from the verified upstream file
    assert torch.equal(model.out_tr.final_conv.weight, genesis_in_hf_cache["out_tr.final_conv.weight"])


# ----------------------------------------------------------------------------------------------------------------
# damaged cache records
# ----------------------------------------------------------------------------------------------------------------

_BAD_META = {
    "list": b"[]",
    "empty object": b"{}",
    "string size": None,  # filled in the test: the real record with file_size as a string
    "not json": b"\x00\xff not json",
    "bad utf-8": b'{"file_sha256": "\xff"}',
    "huge": b"{" + b" " * (2 << 20) + b"}",
    "null sha": None,
}


@pytest.mark.parametrize("damage", sorted(_BAD_META))
def test_damaged_meta_json_is_reconverted_and_never_fatal(genesis_in_hf_cache, damage):
    zoo.load(GENESIS, progress=False)
    (directory,) = _converted_dirs(GENESIS)
    meta_path = directory / "meta.json"
    if damage == "string size":
        meta = json.loads(meta_path.read_text())
        meta["file_size"] = str(meta["file_size"])
        content = json.dumps(meta).encode()
    elif damage == "null sha":
        meta = json.loads(meta_path.read_text())
        meta["file_sha256"] = None
        content = json.dumps(meta).encode()
    else:
        content = _BAD_META[damage]
    meta_path.write_bytes(content)
    for _ in range(2):  # the first load converts anew; the second reads the repaired entry
        model = zoo.load(GENESIS, progress=False)
        assert torch.equal(model.out_tr.final_conv.bias, genesis_in_hf_cache["out_tr.final_conv.bias"])
    assert json.loads(meta_path.read_text())["file_sha256"] != content


def test_damaged_file_hash_record_is_ignored(tmp_path):
    user = tmp_path / "my_resnet10.pth"
    sd = medicalnet_file(user, 10, seed=4)
    zoo.load("med3d-resnet10", checkpoint=user, progress=False)
    (record,) = (zoo_cache_dir() / "file-hashes").iterdir()
    for content in (b"[]", b'{"sha256": 5}', b"\xff", json.dumps({"path": str(user.resolve()), "sha256": "0" * 64}).encode()):
        record.write_bytes(content)
        model = zoo.load("med3d-resnet10", checkpoint=user, progress=False)
        assert torch.equal(model.conv1.weight, sd["conv1.weight"])


def test_model_name_from_a_folder_config_cannot_choose_a_cache_path(tmp_path):
    entry = registry.get_entry("med3d-resnet10")
    model = zoo.load("med3d-resnet10", pretrained=False)
    config = entry_config(entry)
    config["name"] = "../../../../escaped"
    folder = write_model_dir(tmp_path / "folder", model.state_dict(), config)
    user = tmp_path / "my_resnet10.pth"
    medicalnet_file(user, 10)
    with pytest.raises(CheckpointFormatError, match="cannot name a cache folder"):
        zoo.load(str(folder), checkpoint=user, progress=False)
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.rglob("escaped"))


# ----------------------------------------------------------------------------------------------------------------
# dtypes
# ----------------------------------------------------------------------------------------------------------------


def _folder_with(tmp_path: Path, convert) -> tuple[Path, dict]:
    entry = registry.get_entry("med3d-resnet10")
    sd = zoo.load("med3d-resnet10", pretrained=False).state_dict()
    stored = {k: convert(k, v) for k, v in sd.items()}
    return write_model_dir(tmp_path / "folder", stored, entry_config(entry)), sd


def test_float16_folder_is_cast_to_the_network_dtype_with_a_report_line(tmp_path):
    folder, sd = _folder_with(tmp_path, lambda k, v: v.half() if v.is_floating_point() else v)
    model = zoo.load(str(folder), progress=False)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert torch.equal(model.conv1.weight, sd["conv1.weight"].half().float())
    (line,) = [a for a in model.load_report.adaptations if "cast" in a]
    floats = sum(1 for v in sd.values() if v.is_floating_point())
    assert line == f"{floats} tensors cast torch.float16 -> torch.float32"
    assert model(torch.randn(1, 1, 16, 16, 16)).dtype == torch.float32


def test_integer_weights_for_a_floating_tensor_are_refused(tmp_path):
    folder, _ = _folder_with(tmp_path, lambda k, v: v.long() if k == "conv1.weight" else v)
    with pytest.raises(CheckpointFormatError) as err:
        zoo.load(str(folder), progress=False)
    assert "'conv1.weight'" in str(err.value) and "torch.int64" in str(err.value)


def test_int32_batch_counters_are_cast_to_int64(tmp_path):
    folder, _ = _folder_with(tmp_path, lambda k, v: v.int() if k.endswith("num_batches_tracked") else v)
    model = zoo.load(str(folder), progress=False)
    assert model.bn1.num_batches_tracked.dtype == torch.int64
    assert any("torch.int32 -> torch.int64" in a for a in model.load_report.adaptations)


# ----------------------------------------------------------------------------------------------------------------
# output contract of a new head
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["suprem-unet", "genesis-chest-ct"])
def test_a_new_task_head_returns_logits(name):
    """SuPreM's and Models Genesis' fine-tuning networks return logits (their losses apply the activation);
    only the pretrained restoration head of Models Genesis keeps its sigmoid."""
    torch.manual_seed(0)
    model = zoo.load(name, pretrained=False, num_classes=3).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 1, 32, 32, 32) * 3)
    assert y.shape[1] == 3
    assert y.min() < 0 or y.max() > 1  # not probabilities
    assert model.out_activation is None
    if name == "genesis-chest-ct":
        assert zoo.load(name, pretrained=False).out_activation == "sigmoid"
