"""The ``zoo`` command line, run in-process through ``zoo.cli.main`` and once as a real console script."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
import sys
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from zoo.cli import main

from upstream import genesis_unet3d_file, medicalnet_file, put_in_hf_cache

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")


def test_list_filters_and_json(capsys):
    assert main(["list", "med3d-resnet1*", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        "med3d-resnet10", "med3d-resnet10-23datasets", "med3d-resnet18", "med3d-resnet18-23datasets",
        "med3d-resnet101", "med3d-resnet152"]
    assert main(["list", "--modality", "CT"]) == 0
    out = capsys.readouterr().out
    assert "genesis-chest-ct-nnunet-lung" in out and "models" in out


def test_info_shows_verification_and_licence(capsys):
    assert main(["info", "med3d-resnet152"]) == 0
    out = capsys.readouterr().out
    assert "ee78d896acdd5dbbd3cb6402a9a72e1f69a41188" in out
    assert "verified against the Hub's LFS hash" in out
    assert main(["info", "med3d-resnet10"]) == 0
    assert "sha256 pinned in the registry" in capsys.readouterr().out
    assert main(["info", "genesis-chest-ct", "--bibtex"]) == 0
    out = capsys.readouterr().out
    assert "non-commercial" in out and "@article{zhou2021models" in out and "apache-2.0" in out
    assert main(["info", "suprem-unet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["license"]["spdx"] == "cc-by-nc-nd-4.0"


def test_unknown_name_exits_2_with_suggestion(capsys):
    assert main(["info", "med3d-resnet51"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_download_from_local_hf_cache_then_offline_reuse(tmp_path, capsys):
    from zoo.hub.paths import hf_cache_dir
    from zoo.registry import get_entry

    entry = get_entry("genesis-chest-ct")
    file = tmp_path / entry.source.filename
    genesis_unet3d_file(file)
    put_in_hf_cache(hf_cache_dir(), entry.source.repo_id, entry.source.filename, file, entry.source.revision)
    assert main(["download", "genesis-chest-ct"]) == 0
    assert "Hub LFS sha256" in capsys.readouterr().out
    shutil.rmtree(hf_cache_dir())
    assert main(["download", "genesis-chest-ct"]) == 0
    assert "cached conversion" in capsys.readouterr().out


def test_download_miss_exits_2_naming_the_url(capsys):
    assert main(["download", "med3d-resnet50"]) == 2
    err = capsys.readouterr().err
    assert "https://huggingface.co/TencentMedicalNet/MedicalNet-Resnet50/resolve/" in err


def test_convert_detects_the_model_from_its_keys(tmp_path, capsys):
    file = tmp_path / "resnet_18.pth"
    sd = medicalnet_file(file, 18)
    out = tmp_path / "r18.safetensors"
    assert main(["convert", str(file), "-o", str(out)]) == 0
    assert "med3d-resnet18" in capsys.readouterr().out
    converted = load_file(str(out))
    assert set(converted) == set(sd)
    assert torch.equal(converted["layer4.1.conv2.weight"], sd["layer4.1.conv2.weight"])


def test_convert_rejects_foreign_file_and_writes_nothing(tmp_path, capsys):
    file = tmp_path / "other.pt"
    torch.save({"state_dict": {"foo.weight": torch.zeros(3)}}, file)
    out = tmp_path / "x.safetensors"
    assert main(["convert", str(file), "-o", str(out)]) == 2
    assert "no registry model has this file's key layout" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.glob(".x.safetensors*")) == []


def test_console_script_is_installed():
    beside = Path(sys.executable).with_name("zoo")
    exe = str(beside) if beside.exists() else shutil.which("zoo")
    if exe is None:
        pytest.skip("the zoo console script is not on PATH (package not installed)")
    out = subprocess.run([exe, "info", "med3d-resnet34"], capture_output=True, text=True)
    assert out.returncode == 0 and "TencentMedicalNet/MedicalNet-Resnet34" in out.stdout


def test_list_matches_words_anywhere_and_fits_100_columns(capsys):
    assert main(["list", "resnet", "--json"]) == 0
    names = json.loads(capsys.readouterr().out)
    assert "med3d-resnet10" in names and "i3d-resnet50-imagenet" in names and "genesis-chest-ct" not in names
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and max(len(line) for line in lines) <= 100
    assert all(line == line.rstrip() for line in lines)


def test_licence_warning_is_one_line_without_a_source_line():
    import warnings

    import zoo
    from zoo.weights import _WARNED, show_license_notice

    entry = zoo.get_entry("genesis-chest-ct")
    _WARNED.discard(entry.name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        show_license_notice(entry)
    (w,) = caught
    assert issubclass(w.category, zoo.LicenseWarning)
    text = warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
    assert text.count("\n") == 1 and text.startswith("medzoo:0: LicenseWarning: genesis-chest-ct: ")
