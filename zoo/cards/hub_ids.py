"""Identifiers the Hugging Face Hub knows, kept in the repository so that every card is checked offline.

* :data:`HUB_DATASETS`: registry data-set names that are Hub datasets, and their Hub id. A card's ``datasets:``
  lists only these; every other data set is named in the card's text. An id goes here only once its Hub page
  has been seen (URL in the comment); one that cannot be checked stays out.
* :data:`HUB_LICENSES`: the Hub's licence identifiers (https://huggingface.co/docs/hub/repositories-licenses).
* :data:`OTHER_LICENSES`: ``license: other`` licences: one ``license_name`` slug per licence, keyed by the link
  of its text, so that entries sharing a licence share its slug whatever their display names.
* :data:`HUB_PIPELINE_TAGS`: the Hub tasks (https://huggingface.co/tasks) a medzoo card may declare.
"""

from __future__ import annotations

import re

#: registry data-set name (as in ``Pretraining.datasets``) -> Hub dataset id
HUB_DATASETS: dict[str, str] = {
    "imagenet-1k": "ILSVRC/imagenet-1k",  # https://huggingface.co/datasets/ILSVRC/imagenet-1k (gated)
}

#: https://huggingface.co/docs/hub/repositories-licenses ("other" needs license_name and license_link)
HUB_LICENSES: frozenset[str] = frozenset({
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause",
    "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0",
    "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0",
    "etalab-2.0", "eupl-1.1", "eupl-1.2", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1",
    "lgpl-3.0", "isc", "lppl-1.3c", "ms-pl", "mpl-2.0", "odc-by", "odbl", "openrail++", "osl-3.0", "postgresql",
    "ofl-1.1", "ncsa", "unlicense", "zlib", "pddl", "lgpl-lr", "unknown", "other",
})

#: link of a licence's text -> its one ``license_name`` slug (for ``license: other``)
OTHER_LICENSES: dict[str, str] = {
    "https://github.com/MrGiovanni/ModelsGenesis/blob/master/LICENSE":
        "asu-non-commercial-research-licence-models-genesis",
}

#: Hub pipeline tags a medzoo card may use (https://huggingface.co/tasks)
HUB_PIPELINE_TAGS: frozenset[str] = frozenset({
    "image-segmentation", "image-feature-extraction", "image-to-image", "image-classification",
})


def hub_dataset_ids(names) -> list[str]:
    """The Hub ids of the registry data-set ``names`` that are on the Hub (:data:`HUB_DATASETS`), in order."""
    known = {k.lower(): v for k, v in HUB_DATASETS.items()}
    known.update({v.lower(): v for v in HUB_DATASETS.values()})
    return list(dict.fromkeys(known[n.lower()] for n in names if n.lower() in known))


def other_license_name(link: str | None, name: str | None = None) -> str:
    """The ``license_name`` slug of the ``license: other`` licence whose text is at ``link``; a licence not in
    :data:`OTHER_LICENSES` (a user's own folder) gets a slug of its ``name`` (the tests keep registry entries
    in the list)."""
    if link in OTHER_LICENSES:
        return OTHER_LICENSES[link]
    out = re.sub(r"[^a-z0-9.]+", "-", (name or "other").lower()).strip("-.")
    return re.sub(r"-{2,}", "-", out) or "other"
