"""The data model of the registry: one immutable :class:`ModelEntry` per model, and the facts it is made of.

``zoo/entries/<family>.py`` declares entries with these classes (as data, no registration); :mod:`zoo.registry`
collects them into the table behind ``zoo.list_models`` / ``zoo.get_entry`` and re-exports every name here.

| class                | what it records                                                            |
|----------------------|----------------------------------------------------------------------------|
| :class:`ModelEntry`  | one model: architecture and builder arguments, and the facts below         |
| :class:`CheckpointSource` | where the upstream checkpoint lives, its :data:`CheckpointFormat`, hashes |
| :class:`License`     | licence of record of the weights                                           |
| :class:`InputContract` | channels, modality, axis order, intensity, spacing, patch                |
| :class:`Normalization` | the intensity normalisation of the input, machine-readable               |
| :class:`OutputContract` | what forward returns: logits, probabilities or features, activation, target |
| :class:`Pretraining` | data and method of pretraining, recipe                                     |
| :class:`Paper`       | citation                                                                   |
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Mapping, get_args

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

#: upstream checkpoint formats: the converter table of :mod:`zoo.convert.formats` has one row per name
CheckpointFormat = Literal[
    "genesis-unet3d", "nnunet-v1", "medicalnet", "suprem-unet", "safetensors", "timm",
    "nnssl", "stunet-v1", "suprem-segresnet", "suprem-swinunetr", "monai-bundle", "voco",
]
#: the names of :data:`CheckpointFormat`, in declaration order
CHECKPOINT_FORMATS: tuple[CheckpointFormat, ...] = get_args(CheckpointFormat)


@dataclass(frozen=True)
class License:
    """Licence of record of the weights.

    ``spdx`` is a Hugging Face licence id (``mit``, ``apache-2.0``, ``cc-by-nc-nd-4.0``) or ``other``,
    in which case ``name`` and ``link`` say which. ``redistributable`` tells whether converted weights may be
    re-hosted; ``notice`` is shown when the weights are loaded (non-commercial terms and the like).
    ``card_license`` records a conflicting licence stated on the upstream Hub card, if any.
    """

    spdx: str
    name: str | None = None
    link: str | None = None
    redistributable: bool = True
    commercial_use: bool = True
    notice: str = ""
    card_license: str | None = None

    def __post_init__(self) -> None:
        if self.spdx == "other" and not (self.name and self.link):
            raise ValueError("License(spdx='other') needs a name and a link")

    @property
    def display(self) -> str:
        return self.name if self.spdx == "other" else self.spdx


@dataclass(frozen=True)
class CheckpointSource:
    """Where the upstream checkpoint lives and how to verify it.

    ``revision`` is a pinned 40-hex Hub commit. ``sha256`` and ``size`` are the file's when known; when the
    sha256 is unknown the downloaded file is verified against the Hub's own LFS hash (the blob name in the
    huggingface_hub cache) and ``zoo info`` says so. ``package_file`` names a file shipped inside the package
    (``zoo/data/...``) instead of a Hub file.
    """

    repo_id: str
    filename: str
    format: CheckpointFormat
    revision: str | None = None
    sha256: str | None = None
    size: int | None = None
    revision_note: str = ""
    package_file: str | None = None

    def __post_init__(self) -> None:
        if self.format not in CHECKPOINT_FORMATS:
            raise ValueError(f"unknown checkpoint format {self.format!r}; one of {CHECKPOINT_FORMATS}")
        if self.revision is not None and not _HEX40.match(self.revision):
            raise ValueError(f"revision must be a full 40-hex commit, got {self.revision!r}")
        if self.sha256 is not None and not _HEX64.match(self.sha256):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}")

    @property
    def url(self) -> str:
        """Direct download URL on the Hugging Face Hub at the pinned revision."""
        return f"https://huggingface.co/{self.repo_id}/resolve/{self.revision or 'main'}/{self.filename}"

    @property
    def verification(self) -> str:
        """How a downloaded file is checked: against a pinned sha256, or the Hub's LFS hash."""
        if self.package_file:
            return "sha256 pinned in the registry (file shipped in the package)"
        if self.sha256:
            return "sha256 pinned in the registry"
        return "sha256 not yet recorded: verified against the Hub's LFS hash (blob name) on download"


#: intensity normalisation schemes of :class:`Normalization`
NormalizationScheme = Literal["ct_zscore", "ct_clip_scale", "zscore"]
#: the names of :data:`NormalizationScheme`
NORMALIZATION_SCHEMES: tuple[NormalizationScheme, ...] = get_args(NormalizationScheme)


@dataclass(frozen=True)
class Normalization:
    """The intensity normalisation of the pretraining input, machine-readable (``zoo adapt`` compares it with
    a plan's; ``zoo plan --match-input`` writes it into one).

    ``"ct_zscore"`` and ``"ct_clip_scale"`` are fixed maps of raw intensities (HU): clip to ``clip``, then
    ``(x - mean) / std`` (nnU-Net's ``CTNormalization`` with fixed statistics; ``ct_clip_scale`` is the case
    ``mean = clip[0]``, ``std = clip[1] - clip[0]``: a scale to [0, 1]). ``"zscore"`` is a per-volume z-score
    (nnU-Net's ``ZScoreNormalization``), over the foreground (non-zero voxels) when ``foreground`` is true.
    """

    scheme: NormalizationScheme
    mean: float | None = None
    std: float | None = None
    clip: tuple[float, float] | None = None
    foreground: bool = False

    def __post_init__(self) -> None:
        if self.scheme not in NORMALIZATION_SCHEMES:
            raise ValueError(f"normalization scheme must be one of {NORMALIZATION_SCHEMES}, got {self.scheme!r}")
        if self.clip is not None:
            object.__setattr__(self, "clip", (float(self.clip[0]), float(self.clip[1])))
            if not self.clip[0] < self.clip[1]:
                raise ValueError(f"normalization clip must be (low, high) with low < high, got {self.clip}")
        if self.fixed:
            if self.mean is None or self.std is None or self.clip is None or not self.std > 0:
                raise ValueError(f"normalization {self.scheme!r} needs mean, std > 0 and clip")
        elif self.mean is not None or self.std is not None:
            raise ValueError("a per-volume z-score has no fixed mean or std")

    @property
    def fixed(self) -> bool:
        """True for a fixed clip + affine map (reproducible by nnU-Net's CTNormalization)."""
        return self.scheme != "zscore"

    @property
    def nnunet_scheme(self) -> str:
        """The nnU-Net normalisation class that reproduces it."""
        return "CTNormalization" if self.fixed else "ZScoreNormalization"

    @property
    def describe(self) -> str:
        """One line: what happens to a raw intensity x."""
        if not self.fixed:
            return "per-volume z-score" + (" over the foreground (non-zero voxels)" if self.foreground else "")
        assert self.clip is not None
        return f"clip [{self.clip[0]:g}, {self.clip[1]:g}], then (x - ({self.mean:g})) / {self.std:g}"


@dataclass(frozen=True)
class InputContract:
    """What the network expects as input.

    ``axis_order`` names the three spatial axes of the input tensor (N, C, a0, a1, a2): ``"xyz"`` for Models
    Genesis cubes (z last), ``"zyx"`` for nnU-Net / MONAI numpy order. ``spacing_mm`` is in that axis order
    (``None``: native spacing, no resampling). ``patch_size`` is the pretraining patch in that axis order.
    ``normalization`` is ``intensity`` in machine-readable form, where known.
    """

    in_channels: int
    modality: str
    axis_order: str
    intensity: str
    patch_size: tuple[int, ...]
    spacing_mm: tuple[float, ...] | None = None
    channel_names: tuple[str, ...] = ()
    divisible_by: int = 1
    normalization: Normalization | None = None

    def __post_init__(self) -> None:
        if isinstance(self.normalization, Mapping):  # read back from a model folder's config.json
            object.__setattr__(self, "normalization", Normalization(**self.normalization))
        if sorted(self.axis_order) != ["x", "y", "z"]:
            raise ValueError(f"axis_order must be a permutation of 'xyz', got {self.axis_order!r}")


#: what a network's forward returns (``"unspecified"``: a model folder whose config.json predates the field)
OutputKind = Literal["logits", "probabilities", "features", "unspecified"]
#: the names of :data:`OutputKind`
OUTPUT_KINDS: tuple[OutputKind, ...] = get_args(OutputKind)

#: what ``zoo.load(name, num_classes=n)`` returns when ``n`` differs from the pretrained head (a new head)
NEW_HEAD_LOGITS = "a new head (num_classes=n) returns n channels of logits, no activation applied"


@dataclass(frozen=True)
class OutputContract:
    """What the network's ``forward`` returns with the pretrained head (or none, for a backbone).

    ``kind``: ``"logits"`` (apply ``activation`` to get the meaning), ``"probabilities"`` (``activation`` was
    already applied inside ``forward``) or ``"features"`` (no meaning beyond the representation; ``activation``
    None). ``activation`` ``"identity"`` marks a regression: the values are the target itself (a reconstruction).
    ``channels`` is the channel count of the output (None: it depends on the builder arguments);
    ``target`` says what the channels mean, ``scale`` the value range after the activation (for restoration:
    the intensity scale of the target), ``resolution`` the output size relative to the input. ``new_head``
    says what ``zoo.load(name, num_classes=n)`` returns with a new head.
    """

    kind: OutputKind
    target: str
    activation: str | None = None
    channels: int | None = None
    scale: str | None = None
    resolution: str | None = None
    new_head: str = NEW_HEAD_LOGITS

    def __post_init__(self) -> None:
        if self.kind not in OUTPUT_KINDS:
            raise ValueError(f"output kind must be one of {OUTPUT_KINDS}, got {self.kind!r}")
        if self.kind == "features" and self.activation is not None:
            raise ValueError("features have no activation: set activation=None")

    @property
    def summary(self) -> str:
        """One line: kind, channels, activation and target (``zoo info``, cards)."""
        if self.kind == "unspecified":
            return "unspecified (the config predates output contracts)"
        channels = f"{self.channels} channel(s)" if self.channels is not None else "channels per builder arguments"
        if self.kind == "logits":
            how = f"logits (apply {self.activation})" if self.activation else "logits"
        elif self.kind == "probabilities":
            how = f"probabilities ({self.activation} applied in forward)"
        else:
            how = "features (no activation)"
        return f"{how}, {channels}: {self.target}"


#: the output contract of a model folder whose config.json has no ``output`` (written before the field existed)
UNSPECIFIED_OUTPUT = OutputContract(kind="unspecified", target="unspecified", new_head="")


@dataclass(frozen=True)
class Paper:
    title: str
    url: str
    bibtex: str


@dataclass(frozen=True)
class Pretraining:
    """How and on what the weights were learned. ``recipe`` points to the export/ script that reproduces them."""

    data: str
    method: str
    datasets: tuple[str, ...] = ()
    recipe: str = ""


@dataclass(frozen=True)
class ModelEntry:
    """One registry entry. Immutable; ``build_kwargs()`` returns a private copy of the builder arguments.

    ``first_conv`` lists the state-dict keys whose dimension 1 is the input channel count (aliases
    included); ``classifier`` lists the module-name prefixes of the task head, dropped when ``num_classes``
    changes. ``num_classes`` is the head size of the pretrained weights (``None`` for a head-less backbone).
    ``hosted`` names a medzoo Hub repo holding the converted weights (``model.safetensors``, format
    ``"safetensors"``, pinned revision and sha256) next to the upstream ``source``; ``zoo.load`` prefers it and
    falls back to ``source`` when it cannot be downloaded. None until a copy is published (``zoo publish``).
    """

    name: str
    architecture: str
    arch_kwargs: Mapping[str, Any]
    license: License
    input: InputContract
    pretraining: Pretraining
    paper: Paper
    description: str
    source: CheckpointSource | None = None
    first_conv: tuple[str, ...] = ()
    classifier: tuple[str, ...] = ()
    num_classes: int | None = None
    tags: tuple[str, ...] = ()
    weights_note: str = ""
    base_model: str | None = None
    output: OutputContract = UNSPECIFIED_OUTPUT
    hosted: CheckpointSource | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch_kwargs", MappingProxyType(copy.deepcopy(dict(self.arch_kwargs))))
        if self.hosted is not None and (self.hosted.format != "safetensors" or self.hosted.package_file):
            raise ValueError(f"{self.name}: a hosted copy is a medzoo repo's model.safetensors (format "
                             f"'safetensors', no package_file), got {self.hosted!r}")

    @property
    def has_weights(self) -> bool:
        return self.source is not None or self.hosted is not None

    def build_kwargs(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.arch_kwargs))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view of every field (used by ``zoo info --json`` and model cards)."""

        def convert(value: Any) -> Any:
            if dataclasses.is_dataclass(value):
                return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
            if isinstance(value, Mapping):
                return {k: convert(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [convert(v) for v in value]
            return value

        out = convert(self)
        out["has_weights"] = self.has_weights
        return out


__all__ = [
    "CHECKPOINT_FORMATS",
    "CheckpointFormat",
    "CheckpointSource",
    "InputContract",
    "License",
    "ModelEntry",
    "NEW_HEAD_LOGITS",
    "NORMALIZATION_SCHEMES",
    "Normalization",
    "NormalizationScheme",
    "OUTPUT_KINDS",
    "OutputContract",
    "OutputKind",
    "UNSPECIFIED_OUTPUT",
    "Paper",
    "Pretraining",
]
