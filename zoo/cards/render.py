"""Model card text (Hugging Face ``README.md`` with YAML front matter) from a :class:`ModelEntry` plus prose.

Metadata (``huggingface_hub.ModelCardData`` serialises it, so the YAML is what the Hub client writes):

* ``license``: the Hub licence id (:data:`.hub_ids.HUB_LICENSES`), or ``other`` with ``license_name`` (one slug
  per licence, :data:`.hub_ids.OTHER_LICENSES`) and ``license_link``;
* ``library_name: medzoo``; ``tags``; ``datasets`` (only data sets on the Hub, :data:`.hub_ids.HUB_DATASETS`;
  the others are named in the text); ``pipeline_tag`` (one of :data:`.hub_ids.HUB_PIPELINE_TAGS`);
* ``base_model``: the upstream Hub repo the weights were converted from, plus the repo of the registry's
  ``base_model`` entry, where either exists;
* ``model-index``: only the published numbers measured with this entry's own weights (:mod:`.prose`).

Everything is deterministic (no dates, no versions), so ``zoo cards --check`` can compare texts.
"""

from __future__ import annotations

import dataclasses
import json
import re

from ..archs.declarations import BY_NAME, DECLARATIONS, Task
from ..registry import CheckpointSource, ModelEntry, get_entry
from ..errors import UnknownModelError
from .hub_ids import HUB_DATASETS, hub_dataset_ids, other_license_name
from .index import GENERATED_MARKER, format_params, parameter_count
from .prose import COMMON_LIMITATIONS, family_for, results_for

LIBRARY_NAME = "medzoo"

#: architectures whose output is a dense segmentation map
SEGMENTATION_ARCHS = {a.name for a in DECLARATIONS if a.task == "segmentation"}
#: architectures that are nnU-Net v2 networks (fully transferable into an identical plan): nnU-Net's own classes
NNUNET_ARCHS = {a.name for a in DECLARATIONS if a.nnunet is not None and a.nnunet.stock}
#: the Hub ``pipeline_tag`` of each architecture task; a backbone's depends on its head (see :func:`pipeline_tag`)
TASK_PIPELINE_TAGS: dict[Task, str] = {
    "segmentation": "image-segmentation",
    "segmentation-encoder": "image-feature-extraction",  # the encoder of a segmentation U-Net: it returns features
}

SPDX_LINKS = {
    "mit": "https://opensource.org/license/mit",
    "apache-2.0": "https://www.apache.org/licenses/LICENSE-2.0",
    "cc-by-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "cc-by-sa-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "cc-by-nc-4.0": "https://creativecommons.org/licenses/by-nc/4.0/",
    "cc-by-nc-sa-4.0": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
    "cc-by-nc-nd-4.0": "https://creativecommons.org/licenses/by-nc-nd/4.0/",
    "bsd-3-clause": "https://opensource.org/license/bsd-3-clause",
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def slug(text: str) -> str:
    """Lower-case id made of ``[a-z0-9.-]`` (Hub ``license_name`` / dataset-id style)."""
    out = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")
    return re.sub(r"-{2,}", "-", out) or "unnamed"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------------------------------------------
# metadata
# --------------------------------------------------------------------------------------------------------------


def pipeline_tag(entry: ModelEntry) -> str:
    """The Hub ``pipeline_tag``: the prose family's (restoration is image-to-image), else feature extraction
    when the weights return features, else the architecture task's (:data:`TASK_PIPELINE_TAGS`); a backbone
    extracts features, or classifies when its entry has a head (``num_classes``)."""
    family = family_for(entry)
    if family.pipeline_tag:
        return family.pipeline_tag
    if entry.output.kind == "features":
        return "image-feature-extraction"
    declared = BY_NAME.get(entry.architecture)
    if declared is not None and declared.task in TASK_PIPELINE_TAGS:
        return TASK_PIPELINE_TAGS[declared.task]
    return "image-feature-extraction" if entry.num_classes is None else "image-classification"


def base_models(entry: ModelEntry) -> list[str]:
    """Hub repos these weights derive from: the upstream repo they were converted from, and the registry
    ``base_model`` (a Hub id itself, or a registry name whose weights live in a Hub repo)."""
    repos: list[str] = []
    if entry.source is not None and not entry.source.package_file:
        repos.append(entry.source.repo_id)
    if entry.base_model:
        if "/" in entry.base_model:
            repos.append(entry.base_model)
        else:
            try:
                parent = get_entry(entry.base_model)
            except UnknownModelError:
                parent = None
            if parent is not None and parent.source is not None and not parent.source.package_file:
                repos.append(parent.source.repo_id)
    return list(dict.fromkeys(r for r in repos if _HUB_ID.match(r)))


def dataset_ids(entry: ModelEntry) -> list[str]:
    """The card's ``datasets:``: the pretraining data sets that are Hub datasets (the rest are named in the text)."""
    return hub_dataset_ids(entry.pretraining.datasets)


def tags(entry: ModelEntry) -> list[str]:
    modality = [slug(m) for m in entry.input.modality.split("+") if m.strip()]
    family = family_for(entry)
    out = [LIBRARY_NAME, "medical-imaging", "3d", "pytorch", "safetensors", *modality, *entry.tags,
           *family.extra_tags]
    return list(dict.fromkeys(slug(t) for t in out))


def card_data(entry: ModelEntry, hosted: CheckpointSource | None = None):
    """The card's metadata as a ``huggingface_hub.ModelCardData`` (``hosted``: see :func:`render_card`)."""
    from huggingface_hub import EvalResult, ModelCardData

    lic = entry.license
    licence = {"license": lic.spdx}
    if lic.spdx == "other":
        licence.update(license_name=other_license_name(lic.link, lic.name), license_link=lic.link)
    results = [
        EvalResult(
            task_type=r.task_type, task_name=r.task_name, dataset_name=r.dataset_name, dataset_type=r.dataset_type,
            dataset_split=r.split, metric_type=r.metric_type, metric_name=r.metric_name, metric_value=r.value,
            source_name=r.source.name, source_url=r.source.url,
        )
        for r in results_for(entry)
    ]
    bases = [b for b in base_models(entry) if hosted is None or b != hosted.repo_id]
    return ModelCardData(
        **licence,
        library_name=LIBRARY_NAME,
        tags=tags(entry),
        datasets=dataset_ids(entry) or None,
        base_model=bases or None,
        pipeline_tag=pipeline_tag(entry),
        model_name=entry.name if results else None,
        eval_results=results or None,
    )


def card_metadata(entry: ModelEntry, hosted: CheckpointSource | None = None) -> dict:
    return card_data(entry, hosted).to_dict()


# --------------------------------------------------------------------------------------------------------------
# body
# --------------------------------------------------------------------------------------------------------------


def _table(rows: list[tuple[str, str]]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows]
    return "\n".join(lines)


def _licence_line(entry: ModelEntry) -> str:
    lic = entry.license
    link = lic.link or SPDX_LINKS.get(lic.spdx)
    name = lic.name if lic.spdx == "other" else f"`{lic.spdx}`"
    return f"[{name}]({link})" if link else name


def _details(entry: ModelEntry) -> str:
    count = parameter_count(entry)
    params = "not computed (architecture unavailable)" if count is None else f"{count:,} ({format_params(count)})"
    head = ("none: backbone weights only" if entry.num_classes is None
            else f"{entry.num_classes} output channel(s)")
    rows = [
        ("Architecture", f"`{entry.architecture}`"),
        ("Parameters", params + " as built by `zoo.load`"),
        ("Pretrained head", head),
        ("First convolution", ", ".join(f"`{k}`" for k in entry.first_conv) or "n/a"),
        ("Head modules (replaced when `num_classes` changes)", ", ".join(f"`{k}`" for k in entry.classifier) or "n/a"),
    ]
    if entry.base_model:
        rows.append(("Initialised from", f"`{entry.base_model}`"))
    text = _table(rows)
    kwargs = entry.build_kwargs()
    if kwargs:
        body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, default=list)}" for k, v in sorted(kwargs.items()))
        text += ("\n\n<details><summary>Builder arguments (<code>arch_kwargs</code>)</summary>\n\n```json\n{\n"
                 + body + "\n}\n```\n\n</details>")
    return text


def _input(entry: ModelEntry) -> str:
    inp = entry.input
    axes = ", ".join(inp.axis_order)
    spacing = ("native spacing, no resampling" if inp.spacing_mm is None
               else " x ".join(f"{s:g}" for s in inp.spacing_mm) + f" mm (in ({axes}) order)")
    channels = str(inp.in_channels)
    if inp.channel_names:
        channels += " (" + ", ".join(f"`{c}`" for c in inp.channel_names) + ")"
    rows = [
        ("Channels", channels + "; other counts are adapted by `zoo.load(..., in_channels=k)`"),
        ("Modality", inp.modality),
        ("Tensor layout", f"(N, C, {axes})"),
        ("Voxel spacing", spacing),
        ("Intensity normalisation", inp.intensity),
        ("Pretraining patch", " x ".join(str(p) for p in inp.patch_size) or "n/a"),
        ("Spatial size", f"each spatial dimension divisible by {inp.divisible_by}" if inp.divisible_by > 1
         else "any"),
    ]
    return _table(rows)


def _output(entry: ModelEntry) -> str:
    out = entry.output
    if out.kind == "unspecified":
        return "Not recorded: the configuration of these weights predates output contracts."
    channels = "depends on the builder arguments" if out.channels is None else str(out.channels)
    if out.kind == "logits":
        kind = ("values: a regression of the target, no activation" if out.activation == "identity" else
                f"logits: apply `{out.activation}` to get the meaning" if out.activation else "logits")
    elif out.kind == "probabilities":
        kind = f"probabilities: `{out.activation}` is applied inside `forward`"
    else:
        kind = "features: no activation, no task meaning (a backbone)"
    rows = [
        ("Returns", kind),
        ("Channels", channels),
        ("Meaning", out.target),
    ]
    if out.scale:
        rows.append(("Scale", out.scale))
    if out.resolution:
        rows.append(("Spatial size", out.resolution))
    if out.new_head:
        rows.append(("With `num_classes=n`", out.new_head))
    return _table(rows)


def _weights(entry: ModelEntry) -> str:
    src = entry.source
    if src is None:
        note = f" {entry.weights_note}" if entry.weights_note else ""
        return (f"Not published yet.{note} `zoo.load(\"{entry.name}\", pretrained=False)` builds the network; "
                "`checkpoint=` loads weights you trained yourself.")
    if src.package_file:
        rows = [("Location", f"shipped in the package: `zoo/assets/{src.package_file}`")]
    else:
        rows = [
            ("Hub repository", f"[`{src.repo_id}`](https://huggingface.co/{src.repo_id})"),
            ("File", f"`{src.filename}`"),
            ("Revision", f"`{src.revision}`" if src.revision else "`main` (not pinned yet)"),
        ]
        if src.revision_note:
            rows.append(("Revision note", src.revision_note))
    rows += [
        ("Upstream format", f"`{src.format}`" + ("" if src.format == "safetensors" else
                                                 ", converted once to safetensors in your cache (no pickle code runs)")),
        ("sha256", f"`{src.sha256}`" if src.sha256 else "not recorded yet"),
        ("Size", f"{src.size:,} bytes" if src.size else "not recorded yet"),
        ("Verification", src.verification),
    ]
    if not src.package_file:
        rows.append(("Download URL", src.url))
    return _table(rows)


def _usage(entry: ModelEntry, hosted: CheckpointSource | None = None) -> str:
    name = entry.name
    k = 4 if entry.input.in_channels != 4 else 1
    if hosted is not None:
        return (
            "```python\nfrom huggingface_hub import snapshot_download\nimport zoo\n\n"
            f'folder = snapshot_download("{hosted.repo_id}", allow_patterns=["config.json", "model.safetensors"])\n'
            "model = zoo.load(folder)  # config.json describes the network, model.safetensors holds the weights\n"
            f"model = zoo.load(folder, in_channels={k}, num_classes=3)  # {k} input channels, new 3-class head\n```"
        )
    if entry.has_weights:
        py = (
            "```python\nimport zoo\n\n"
            f'model = zoo.load("{name}")  # verified download and conversion on first use, cached afterwards\n'
            f'model = zoo.load("{name}", in_channels={k}, num_classes=3)  # {k} input channels, new 3-class head\n'
            "print(model.load_report)  # where the weights came from and what was adapted\n```"
        )
    else:
        py = (
            "```python\nimport zoo\n\n"
            f'model = zoo.load("{name}", pretrained=False)  # the architecture, randomly initialised\n'
            f'model = zoo.load("{name}", checkpoint="path/to/model.safetensors")  # weights you trained\n```'
        )
    parts = [py]
    cli = [f"zoo info {name}            # every registry fact, --bibtex for the citation"]
    if entry.has_weights and not entry.source.package_file:
        cli.append(f"zoo download {name}        # fetch, verify and convert into the cache")
    parts.append("```bash\n" + "\n".join(cli) + "\n```")
    if entry.has_weights and not entry.source.package_file:
        parts.append(
            "Air-gapped machines: on a machine with internet, `zoo mirror export " + name + " /media/usb/zoo-mirror`; "
            "on the offline machine, `zoo mirror import /media/usb/zoo-mirror` (or `export "
            "ZOO_MIRROR=/media/usb/zoo-mirror`). Every file is checked against its sha256 before use."
        )
    elif entry.has_weights:
        parts.append("The weights ship inside the package: no download, works offline.")
    return "\n\n".join(parts)


def _nnunet(entry: ModelEntry) -> str:
    name = entry.name
    if not entry.has_weights and family_for(entry).nnunet_note:
        return family_for(entry).nnunet_note.replace("NAME", name)
    if not entry.has_weights:
        recipe = f" (`{entry.pretraining.recipe}`)" if entry.pretraining.recipe else ""
        return (
            f"No pretrained weights to transfer yet. Once you have trained them{recipe}, the model folder the "
            "script writes (`RUN/model`: config.json + model.safetensors) goes into your plan the same way:\n\n"
            "```bash\n"
            "zoo export-nnunet RUN/model --plans $nnUNet_preprocessed/DatasetXXX_Name/nnUNetPlans.json \\\n"
            "    --dataset-json $nnUNet_preprocessed/DatasetXXX_Name/dataset.json -c 3d_fullres -o pretrained.pth\n"
            "nnUNetv2_train DatasetXXX_Name 3d_fullres 0 -pretrained_weights pretrained.pth\n"
            "```"
        )
    family = family_for(entry)
    text = (
        "```bash\n"
        f"zoo export-nnunet {name} --plans $nnUNet_preprocessed/DatasetXXX_Name/nnUNetPlans.json \\\n"
        f"    --dataset-json $nnUNet_preprocessed/DatasetXXX_Name/dataset.json -c 3d_fullres -o {name}.pth\n"
        f"nnUNetv2_train DatasetXXX_Name 3d_fullres 0 -pretrained_weights {name}.pth\n"
        "```\n\n"
    )
    if family.nnunet_note:
        note = family.nnunet_note.replace("NAME", name)
    elif entry.architecture in NNUNET_ARCHS:
        note = ("This is an nnU-Net v2 network: into a plan identical to its own every tensor transfers; into "
                "other plans the export transfers stage by stage and its report lists what starts from random.")
    else:
        note = ("This is not an nnU-Net network: the export transfers the layers that have a counterpart in the "
                "target plan and reports every tensor; check that report before training.")
    if entry.input.axis_order != "zyx":
        note += (f" The registry records this model's axis order ({', '.join(entry.input.axis_order)}); nnU-Net "
                 "data are (z, y, x).")
    return text + note


def _pretraining(entry: ModelEntry) -> str:
    pre = entry.pretraining
    lines = [f"- **Data:** {pre.data}", f"- **Method:** {pre.method}"]
    if pre.datasets:
        known = {k.lower(): v for k, v in HUB_DATASETS.items()}
        named = [f"{d} ([`{known[d.lower()]}`](https://huggingface.co/datasets/{known[d.lower()]}) on the Hub)"
                 if d.lower() in known else d for d in pre.datasets]
        lines.append("- **Data sets:** " + ", ".join(named))
    lines.append(f"- **Reproduce:** `{pre.recipe}`" if pre.recipe
                 else "- **Reproduce:** no medzoo recipe; see the authors' code and paper")
    return "\n".join(lines)


def _licence(entry: ModelEntry) -> str:
    lic = entry.license
    family = family_for(entry)
    lines = [
        f"- **Licence of record of the weights:** {_licence_line(entry)}",
        "- **Commercial use:** " + ("allowed by the licence" if lic.commercial_use else "**not allowed**"),
        "- **Redistribution of converted weights:** " + (
            "allowed (keep the licence notice)" if lic.redistributable
            else "**not allowed**: medzoo downloads the official file and converts it only in your local cache; "
                 "`zoo publish` refuses these weights"),
    ]
    if lic.card_license:
        lines.append(f"- The upstream Hub card states `{lic.card_license}`, which conflicts with the licence of "
                     "record above; the licence of record applies.")
    lines += [f"- {note}" for note in family.licence_notes]
    lines.append("- medzoo's code is Apache-2.0; that licence does not extend to the weights.")
    text = "\n".join(lines)
    if lic.notice:
        text += f"\n\n> **Notice:** {lic.notice}"
    return text


def render_card(entry: ModelEntry, hosted: CheckpointSource | None = None) -> str:
    """The complete card (``README.md`` of a Hub repo, ``model_cards/<name>.md`` here) for ``entry``.

    ``hosted`` describes a copy of the weights published as ``model.safetensors`` in another Hub repo
    (``zoo publish``): the *Weights* and *How to use* sections then describe that copy, and ``base_model``
    keeps pointing at the upstream repo.
    """
    family = family_for(entry)
    yaml_text = card_data(entry, hosted).to_yaml().strip()
    shown = entry if hosted is None else dataclasses.replace(entry, source=hosted)
    lic = entry.license
    banner = ""
    if not lic.commercial_use or not lic.redistributable:
        banner = (f"> **Licence: {lic.display}.** "
                  + ("Non-commercial research only. " if not lic.commercial_use else "")
                  + ("Do not redistribute the weights or derivatives without the rights holder's permission. "
                     if not lic.redistributable else "")
                  + "See *Licence* below.\n\n")
    summary = f"\n\n{family.summary}" if family.summary else ""
    results = family.results_text(entry) or "No published results for these weights."
    limitations = "\n".join(f"- {item}" for item in (*family.limitations_for(entry), *COMMON_LIMITATIONS))
    if entry.weights_note:
        limitations += f"\n- {entry.weights_note}"
    sections = [
        f"---\n{yaml_text}\n---\n{GENERATED_MARKER}",
        f"# {entry.name}\n\n{banner}{entry.description}{summary}",
        "## Model details\n\n" + _details(entry),
        "## Input\n\n" + _input(entry),
        "## Output\n\n" + _output(entry),
        "## Weights\n\n" + _weights(shown),
        "## How to use\n\n" + _usage(entry, hosted),
        "### Fine-tuning in nnU-Net v2\n\n" + _nnunet(entry),
        "## Pretraining\n\n" + _pretraining(entry),
        "## Results reported by the original authors\n\n" + results,
        "## Limitations\n\n" + limitations,
        "## Licence\n\n" + _licence(entry),
        "## Citation\n\n" + _citation(entry),
    ]
    return "\n\n".join(s.strip("\n") for s in sections) + "\n"


def _citation(entry: ModelEntry) -> str:
    paper = entry.paper
    head = ", ".join(p for p in (paper.title, paper.url) if p)
    if not paper.bibtex.strip():
        return head or "No citation recorded."
    return (head + "\n\n" if head else "") + f"```bibtex\n{paper.bibtex.strip()}\n```"
