"""``zoo publish``: everything up to the network call, with huggingface_hub's own objects.

The commit is checked as huggingface_hub would send it (``CommitOperationAdd`` objects with their
``upload_info`` sizes and sha256) through an ``HfApi`` stand-in that records calls instead of making them; the
real ``HfApi`` is shown to stop at the network (offline mode) without recording anything. Only the final HTTP
calls themselves (``create_repo`` / ``create_commit`` against huggingface.co) are not exercised here.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, ModelCard
from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.hf_api import CommitInfo, RepoUrl

import zoo.registry as registry
from zoo.cli.publish import add_subcommands
from zoo.entries._licenses import ASU_NONCOMMERCIAL, MIT
from zoo.entries.genesis import LUNG_PLAN_ARCH_KWARGS
from zoo.archs.build import build_model
from zoo.model_dir import entry_config, write_model_dir
from zoo.publish import RECORD, PublishError, PublishRefusedError, publish
from zoo.registry import CheckpointSource

COMMIT = "f" * 40


def _tiny(name: str = "tiny-unet-mit", **changes) -> registry.ModelEntry:
    base = registry.get_entry("genesis-chest-ct-nnunet-lung")
    kwargs = dict(LUNG_PLAN_ARCH_KWARGS)
    kwargs.update(n_stages=2, features_per_stage=[2, 4], kernel_sizes=[[3, 3, 3]] * 2,
                  strides=[[1, 1, 1], [2, 2, 2]], n_conv_per_stage=[1, 1], n_conv_per_stage_decoder=[1])
    fields = dict(name=name, arch_kwargs=kwargs, license=MIT, base_model=None, source=None)
    fields.update(changes)
    return dataclasses.replace(base, **fields)


def _folder(tmp_path: Path, entry: registry.ModelEntry, readme: str | None = None) -> Path:
    model = build_model(entry)
    return write_model_dir(tmp_path / entry.name, model.state_dict(), entry_config(entry), readme=readme)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class RecordingApi:
    """Stands in for HfApi: records what would be sent and answers like the Hub would."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, repo_id, operations, **kwargs):
        self.calls.append(("create_commit", repo_id, list(operations), kwargs))
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{COMMIT}", commit_message="",
                          commit_description="", oid=COMMIT)


def test_dry_run_plans_the_exact_commit(tmp_path):
    folder = _folder(tmp_path, _tiny())
    result = publish(folder, "medzoo/tiny-unet", dry_run=True)
    assert result.dry_run and result.revision is None
    assert [op.path_in_repo for op in result.operations] == ["README.md", "config.json", "model.safetensors"]
    assert all(isinstance(op, CommitOperationAdd) for op in result.operations)
    for planned, op in zip(result.files, result.operations):
        assert planned.sha256 == op.upload_info.sha256.hex() and planned.size == op.upload_info.size
    for name in ("config.json", "model.safetensors"):
        planned = next(f for f in result.files if f.path_in_repo == name)
        assert planned.sha256 == _sha(folder / name) and planned.size == (folder / name).stat().st_size
    # README generated from the entry: a valid card with the folder's licence, describing the hosted copy
    readme = result.operations[0].path_or_fileobj
    assert isinstance(readme, bytes) and result.files[0].source == "generated"
    card = ModelCard(readme.decode())
    assert card.data.license == "mit" and card.data.library_name == "medzoo"
    assert "medzoo/tiny-unet" not in (card.data.base_model or [])
    assert 'snapshot_download("medzoo/tiny-unet"' in card.text
    assert result.files[0].sha256 == hashlib.sha256(readme).hexdigest()
    assert not (folder / RECORD).exists()  # nothing published, nothing recorded


def test_publish_sends_three_files_and_records_revision(tmp_path):
    folder = _folder(tmp_path, _tiny())
    (folder / "notes.txt").write_text("local only")
    api = RecordingApi()
    result = publish(folder, "medzoo/tiny-unet", api=api, private=True, commit_message="first")
    (op, repo_id, kwargs), (commit, repo_id2, operations, commit_kwargs) = api.calls
    assert (op, repo_id, commit, repo_id2) == ("create_repo", "medzoo/tiny-unet", "create_commit", "medzoo/tiny-unet")
    assert kwargs["exist_ok"] is True and kwargs["private"] is True and kwargs["repo_type"] == "model"
    assert commit_kwargs["commit_message"] == "first"
    assert sorted(o.path_in_repo for o in operations) == ["README.md", "config.json", "model.safetensors"]
    assert result.revision == COMMIT
    record = json.loads((folder / RECORD).read_text())
    assert record[-1]["revision"] == COMMIT and record[-1]["repo_id"] == "medzoo/tiny-unet"
    assert record[-1]["files"]["model.safetensors"]["sha256"] == _sha(folder / "model.safetensors")
    src = result.registry_source()
    assert isinstance(src, CheckpointSource) and src.revision == COMMIT and src.format == "safetensors"
    assert src.sha256 == _sha(folder / "model.safetensors") and src.size == (folder / "model.safetensors").stat().st_size
    assert eval(result.registry_snippet().split("=", 1)[1], {"CheckpointSource": CheckpointSource}) == src
    # publishing again appends to the record; published.json itself is never uploaded
    publish(folder, "medzoo/tiny-unet", api=api)
    assert len(json.loads((folder / RECORD).read_text())) == 2
    assert all(o.path_in_repo != RECORD for o in api.calls[-1][2])


def test_refuses_weights_whose_licence_forbids_redistribution(tmp_path):
    folder = _folder(tmp_path, _tiny("tiny-unet-asu", license=ASU_NONCOMMERCIAL))
    api = RecordingApi()
    with pytest.raises(PublishRefusedError, match="forbids redistribution"):
        publish(folder, "medzoo/tiny-unet-asu", api=api)
    with pytest.raises(PublishRefusedError):
        publish(folder, "medzoo/tiny-unet-asu", dry_run=True)
    assert api.calls == []
    result = publish(folder, "medzoo/tiny-unet-asu", api=api, i_hold_the_rights=True)
    assert result.rights_asserted and len(api.calls) == 2
    card = ModelCard(result.operations[0].path_or_fileobj.decode())
    assert card.data.license == "other" and card.data.license_link == ASU_NONCOMMERCIAL.link
    assert json.loads((folder / RECORD).read_text())[-1]["rights_asserted"] is True


@pytest.mark.parametrize("changes, why", [
    ({"base_model": "suprem-unet"}, "derived from registry entry 'suprem-unet'"),
    ({"name": "genesis-chest-ct"}, "registry entry of the same name"),
])
def test_refuses_weights_derived_from_non_redistributable_entries(tmp_path, changes, why):
    folder = _folder(tmp_path, _tiny(**changes))  # the config itself claims MIT
    with pytest.raises(PublishRefusedError, match=why):
        publish(folder, "medzoo/x", dry_run=True)


def test_refuses_folder_without_licence_and_bad_input(tmp_path):
    folder = _folder(tmp_path, _tiny())
    config = json.loads((folder / "config.json").read_text())
    del config["license"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PublishRefusedError, match="no licence"):
        publish(folder, "medzoo/x", dry_run=True)
    with pytest.raises(PublishError, match="invalid Hub repo id"):
        publish(folder, "not a repo", dry_run=True)
    with pytest.raises(PublishError, match="ORG/NAME"):
        publish(folder, "just-a-name", dry_run=True)


def test_readme_must_agree_with_the_config_licence(tmp_path):
    folder = _folder(tmp_path, _tiny("tiny-unet-asu", license=ASU_NONCOMMERCIAL),
                     readme="---\nlicense: apache-2.0\n---\n# a card that claims the wrong licence\n")
    with pytest.raises(PublishError, match="apache-2.0"):
        publish(folder, "medzoo/x", dry_run=True, i_hold_the_rights=True)


def test_real_hfapi_stops_at_the_network(tmp_path):
    folder = _folder(tmp_path, _tiny())
    with pytest.raises(OfflineModeIsEnabled):  # HF_HUB_OFFLINE=1: the first HTTP request is refused
        publish(folder, "medzoo/tiny-unet", token="hf_not_a_real_token")
    assert not (folder / RECORD).exists()


def test_cli_publish(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="zoo")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    folder = _folder(tmp_path, _tiny())
    args = parser.parse_args(["publish", str(folder), "--repo", "medzoo/tiny-unet", "--dry-run"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "model.safetensors" in out and _sha(folder / "model.safetensors") in out
    asu = _folder(tmp_path, _tiny("tiny-unet-asu", license=ASU_NONCOMMERCIAL))
    args = parser.parse_args(["publish", str(asu), "--repo", "medzoo/x", "--dry-run"])
    with pytest.raises(PublishRefusedError):
        args.func(args)
    args = parser.parse_args(["publish", str(asu), "--repo", "medzoo/x", "--dry-run", "--i-hold-the-rights"])
    assert args.func(args) == 0
