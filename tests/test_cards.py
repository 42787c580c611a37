"""Model cards: every card parses with huggingface_hub's ModelCard and carries the Hub metadata; licences are
stated correctly; the committed model_cards/ are up to date (the CI check); staleness is detected."""

from __future__ import annotations

import argparse
import dataclasses
import re

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
from zoo.cards.prose import results_for
from zoo.cli.cards import add_subcommands
from zoo.registry import CheckpointSource, License

PIPELINE_TAGS = {"image-segmentation", "image-classification", "image-feature-extraction"}
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
    assert data.datasets and all(re.match(r"^[\w.-]+(/[\w.-]+)?$", d) for d in data.datasets)
    if entry.license.spdx == "other":
        assert data.license == "other"
        assert SLUG.match(data.license_name) and data.license_link == entry.license.link
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
