"""Model cards: every card parses with huggingface_hub's ModelCard and carries the Hub metadata; licences are
stated correctly; the committed model_cards/ are up to date (the CI check); staleness is detected."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # conftest sets it too; no check below needs the network

import pytest
from huggingface_hub import ModelCard

import zoo.registry as registry
from zoo.cards import (
    GENERATED_MARKER,
    check_cards,
    default_cards_dir,
    generate_cards,
    parameter_count,
    render_card,
    write_cards,
)
from zoo.cards.hub_ids import HUB_DATASETS, HUB_LICENSES, HUB_PIPELINE_TAGS, OTHER_LICENSES
from zoo.cards.prose import results_for
from zoo.cli.cards import add_subcommands
from zoo.registry import CheckpointSource, License

PIPELINE_TAGS = HUB_PIPELINE_TAGS
SLUG = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


def _parse(text: str) -> ModelCard:
    card = ModelCard(text, ignore_metadata_errors=False)
    assert text.startswith("---\n") and GENERATED_MARKER in text
    return card


@pytest.fixture(scope="module")
def cards() -> dict[str, str]:
    return generate_cards()


@pytest.mark.parametrize("name", registry.list_models())
def test_every_card_parses_and_has_required_metadata(name, cards):
    entry = registry.get_entry(name)
    card = _parse(cards[f"{name}.md"])
    data = card.data
    assert data.library_name == "medzoo"
    assert data.pipeline_tag in PIPELINE_TAGS
    assert "medzoo" in data.tags and "3d" in data.tags and all(SLUG.match(t) for t in data.tags)
    assert all(d in HUB_DATASETS.values() for d in data.datasets or ())  # Hub ids only; the rest in the text
    assert all(d in card.text for d in entry.pretraining.datasets)
    assert data.license in HUB_LICENSES
    if entry.license.spdx == "other":
        assert data.license == "other"
        assert data.license_name == OTHER_LICENSES[entry.license.link] and SLUG.match(data.license_name)
        assert data.license_link == entry.license.link
    else:
        assert data.license == entry.license.spdx and data.license_name is None
    if entry.source is not None and not entry.source.package_file:
        assert entry.source.repo_id in data.base_model
    published = results_for(entry)
    if published:
        assert len(data.eval_results) == len(published)
        assert all(r.source_name and r.source_url and r.metric_value is not None for r in data.eval_results)
    else:
        assert not data.eval_results and "model-index" not in data.to_dict()
    text = card.text
    for section in ("## Input", "## Weights", "## How to use", "### Fine-tuning in nnU-Net v2", "## Pretraining",
                    "## Results reported by the original authors", "## Limitations", "## Licence", "## Citation"):
        assert section in text, section
    assert f'zoo.load("{name}"' in text and "nnUNetv2_train" in text and "-pretrained_weights" in text
    assert entry.input.intensity in text and "```bibtex" in text and entry.paper.bibtex.strip() in text
    assert "not validated for diagnosis" in text
    if entry.license.notice:
        assert entry.license.notice in text


def test_licences_and_notices_of_each_family(cards):
    genesis = ModelCard(cards["genesis-chest-ct.md"])
    assert genesis.data.license == "other"
    assert genesis.data.license_link == "https://github.com/MrGiovanni/ModelsGenesis/blob/master/LICENSE"
    assert "non-commercial research" in genesis.text and "`apache-2.0`, which conflicts" in genesis.text
    suprem = ModelCard(cards["suprem-unet.md"])
    assert suprem.data.license == "cc-by-nc-nd-4.0" and "CC BY-NC-ND 4.0" in suprem.text
    assert "NoDerivatives" in suprem.text and "MrGiovanni/ModelsGenesis" in suprem.data.base_model
    med3d = ModelCard(cards["med3d-resnet50.md"])
    assert med3d.data.license == "mit" and "permission notice" in med3d.text


def test_published_results_carry_their_source(cards):
    nnunet = ModelCard(cards["genesis-chest-ct-nnunet-lung.md"])
    values = {(r.dataset_name, r.dataset_split, r.metric_name): r.metric_value for r in nnunet.data.eval_results}
    assert values[("MSD Task03 Liver", "test (MSD leaderboard)", "Dice liver tumour (%)")] == 77.50
    assert values[("MSD Task06 Lung", "test (MSD leaderboard)", "Dice lung tumour (%)")] == 74.54
    assert "Bajpai" in nnunet.text and "63.37" in nnunet.text  # scratch baseline quoted alongside
    r50 = ModelCard(cards["med3d-resnet50.md"])
    assert {r.metric_value for r in r50.data.eval_results} == {93.31, 89.90}
    assert "arXiv:1904.00625" in r50.text and "ResNet-152 | 73.29" in r50.text
    # the 23-dataset weights have no published numbers of their own: the table is shown, not claimed
    r50_23 = ModelCard(cards["med3d-resnet50-23datasets.md"])
    assert not r50_23.data.eval_results and "released later without published results" in r50_23.text


def test_index_lists_every_entry_with_parameters(cards):
    index = cards["README.md"]
    for name in registry.list_models():
        row = next(line for line in index.splitlines() if line.startswith(f"| [{name}]("))
        entry = registry.get_entry(name)
        assert f"| {entry.input.in_channels} |" in row
    assert parameter_count(registry.get_entry("genesis-chest-ct")) == 19_073_665  # documented UNet3D count
    assert "| 19.07M |" in next(line for line in index.splitlines() if "[genesis-chest-ct](" in line)
    assert "not published" in index or all(registry.get_entry(n).has_weights for n in registry.list_models())


def test_committed_cards_are_up_to_date():
    """The CI check: `zoo cards --check` on the repository's model_cards/."""
    problems = check_cards(default_cards_dir())
    assert problems == [], "model_cards/ is stale; run `python -m zoo.cards --write`:\n" + "\n".join(problems)


def _tiny_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(argv: list[str]) -> int:
    args = _tiny_parser().parse_args(argv)
    return args.func(args)


def test_stale_cards_are_detected_and_rewritten(tmp_path, monkeypatch, capsys):
    out = tmp_path / "model_cards"
    write_cards(out)
    assert check_cards(out) == [] and _run(["cards", "--check", "--dir", str(out)]) == 0

    # a registry fact changes: that card and the index go stale
    entry = registry.get_entry("med3d-resnet10")
    changed = dataclasses.replace(entry, input=dataclasses.replace(entry.input, in_channels=2))
    monkeypatch.setitem(registry._REGISTRY, entry.name, changed)
    problems = check_cards(out)
    assert f"stale: {out / 'med3d-resnet10.md'}" in problems and f"stale: {out / 'README.md'}" in problems
    assert len(problems) == 2
    assert _run(["cards", "--check", "--dir", str(out)]) == 1
    assert "out of date" in capsys.readouterr().err

    # a new entry (weights shipped in the package, no paper results) is missing until written
    demo = dataclasses.replace(
        registry.get_entry("genesis-chest-ct"), name="genesis-ct-demo-2", base_model=None,
        license=License(spdx="apache-2.0"),
        source=CheckpointSource(repo_id="medzoo/genesis-ct-demo-2", filename="model.safetensors",
                                format="safetensors", package_file="genesis_ct_demo_2/model.safetensors"),
    )
    monkeypatch.setitem(registry._REGISTRY, demo.name, demo)
    assert f"missing: {out / 'genesis-ct-demo-2.md'}" in check_cards(out)
    assert _run(["cards", "--write", "--dir", str(out)]) == 0
    assert check_cards(out) == []
    card = ModelCard((out / "genesis-ct-demo-2.md").read_text())
    assert card.data.license == "apache-2.0" and not card.data.eval_results and card.data.base_model is None
    assert "ship inside the package" in card.text and "zoo mirror" not in card.text

    # a hand edit is stale; a removed entry leaves an orphan that --write deletes
    path = out / "med3d-resnet18.md"
    path.write_text(path.read_text().replace("MedicalNet", "MedNet"))
    assert check_cards(out) == [f"stale: {path}"]
    monkeypatch.delitem(registry._REGISTRY, "genesis-ct-demo")
    assert f"orphaned (no registry entry): {out / 'genesis-ct-demo.md'}" in check_cards(out)
    (out / "notes.md").write_text("hand-written, not generated")
    write_cards(out)
    assert check_cards(out) == [] and not (out / "genesis-ct-demo.md").exists() and (out / "notes.md").exists()


def test_generic_entries_get_a_valid_card_without_model_index(monkeypatch):
    # an entry of a family with results that are not its own (Taleb et al. published no weights)
    ssl = dataclasses.replace(registry.get_entry("genesis-chest-ct"), name="ssl3d-rotation", source=None,
                              weights_note="trained at demo scale; full-scale weights not published yet")
    monkeypatch.setitem(registry._REGISTRY, ssl.name, ssl)
    card = _parse(render_card(ssl))
    assert not card.data.eval_results and "3D-Rotation | 80.21" in card.text
    assert "Not published yet" in card.text and 'pretrained=False' in card.text
    # an entry no prose family knows
    other = dataclasses.replace(registry.get_entry("med3d-resnet10"), name="zz-unknown-family")
    card = _parse(render_card(other))
    assert not card.data.eval_results and "No published results" in card.text


def test_cli_card_prints_the_card(capsys):
    assert _run(["card", "suprem-unet"]) == 0
    out = capsys.readouterr().out
    assert out == render_card(registry.get_entry("suprem-unet"))


# ------------------------------------------------------------------------------------------------------------
# what the Hub checks: huggingface_hub's ModelCard, the Hub's ids (zoo/cards/hub_ids.py), and the demo's facts
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", registry.list_models())
def test_committed_card_passes_model_card_validation_offline(name):
    """``ModelCard.load`` of the committed file with metadata errors raised (``ModelCard.validate`` posts to the
    Hub, so it is not used): the front matter round-trips through ``ModelCardData`` and every id is one the Hub
    knows (the lists in zoo/cards/hub_ids.py)."""
    path = default_cards_dir() / f"{name}.md"
    card = ModelCard.load(path, ignore_metadata_errors=False)
    data = card.data
    again = type(data)(**data.to_dict())
    assert again.to_dict() == data.to_dict()
    assert data.license in HUB_LICENSES and data.pipeline_tag in HUB_PIPELINE_TAGS
    if data.license == "other":
        assert data.license_name and data.license_link
        assert OTHER_LICENSES.get(data.license_link) == data.license_name
    for dataset in data.datasets or ():
        assert dataset in HUB_DATASETS.values(), dataset
    for field_name in ("license", "library_name", "pipeline_tag", "tags"):
        assert getattr(data, field_name), field_name


def test_registry_licences_and_datasets_are_in_the_lists():
    for name in registry.list_models():
        entry = registry.get_entry(name)
        assert entry.license.spdx in HUB_LICENSES, (name, entry.license.spdx)
        if entry.license.spdx == "other":
            assert entry.license.link in OTHER_LICENSES, (name, entry.license.link)
    # one slug per licence: every entry under the Models Genesis licence gets the same license_name
    slugs = {registry.get_entry(n).license.link: ModelCard(render_card(registry.get_entry(n))).data.license_name
             for n in ("genesis-chest-ct", "genesis-chest-ct-nnunet-lung", "unetpp-liver")}
    assert len(set(slugs.values())) == 1
    assert all("/" in hub_id for hub_id in HUB_DATASETS.values())
    i3d = ModelCard(render_card(registry.get_entry("i3d-resnet50-imagenet")))
    assert i3d.data.datasets == ["ILSVRC/imagenet-1k"]
    med3d = ModelCard(render_card(registry.get_entry("med3d-resnet50")))
    assert med3d.data.datasets is None and "3DSeg-8" in med3d.text


def test_pipeline_tags_fit_the_models(cards):
    tags = {n: ModelCard(cards[f"{n}.md"]).data.pipeline_tag for n in registry.list_models()}
    for name in ("genesis-chest-ct", "genesis-chest-ct-nnunet-lung", "genesis-ct-demo"):
        assert tags[name] == "image-to-image", name  # restoration, not segmentation
    for name in registry.list_models():
        if name.startswith(("ssl3d-", "med3d-", "i3d-")):
            assert tags[name] == "image-feature-extraction", name
    assert tags["unetpp-liver"] == "image-segmentation"


def test_demo_card_states_its_run_and_the_gpl_volume(cards):
    from zoo.entries.demo import GENESIS_CT_DEMO

    config = json.loads((default_cards_dir().parent / "zoo" / "assets" / "genesis-ct-demo" / "config.json")
                        .read_text(encoding="utf-8"))
    prov = config["provenance"]
    text = ModelCard(cards["genesis-ct-demo.md"]).text
    epochs = len(prov["history"]["val_loss"])
    assert f"for {epochs} epochs" in text and f"{epochs} epochs of" in text
    assert f"{prov['minutes']:.1f} minutes" in text
    assert f"{prov['config']['max_minutes']:g}-minute budget" in text
    for f in prov["data_files"]:
        assert f["path"].rsplit("/", 1)[-1] in GENESIS_CT_DEMO.pretraining.data
    train = [f for f in prov["data_files"] if f["role"] == "train"]
    assert f"on {len(train)} public CT volumes" in text
    assert "Cranium.inv3" in text and "GPL-2.0" in text
    assert re.search(r"Cranium\.inv3[^.]*GPL-2\.0", text)


def test_shipped_demo_folder_card_names_its_tag_and_the_gpl_volume():
    """``zoo publish`` uploads a folder's own README.md: the shipped demo folder's must be right too."""
    import json as _json
    from pathlib import Path

    from export.demo_assets import with_data_licences

    folder = Path(__file__).resolve().parents[1] / "zoo" / "assets" / "genesis-ct-demo"
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert "pipeline_tag: image-to-image" in text
    assert "- `Cranium.inv3` (train): GPL-2.0, from Debian package invesalius-examples" in text
    files = _json.loads((folder / "config.json").read_text(encoding="utf-8"))["provenance"]["data_files"]
    assert with_data_licences("x\n## Hyper-parameters", files).count("BSD-3-Clause") == 2
