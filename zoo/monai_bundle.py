"""``zoo export-monai NAME -o DIR``: a medzoo model as a MONAI bundle that MONAI's own bundle loader reads.

Layout written (MONAI bundle specification, https://docs.monai.io/en/stable/mb_specification.html)::

    DIR/configs/metadata.json    MONAI's metadata schema (meta_schema_20240725): versions, task, description,
                                 authors, copyright, network_data_format (inputs / outputs), references, ...
    DIR/configs/inference.json   network_def (a "_target_" MONAI's ConfigParser instantiates), network, device,
                                 ckpt_path, inferer
    DIR/models/model.pt          a plain state dict (torch.save of {key: tensor}), keys = network_def's
    DIR/LICENSE                  licence of record of the weights, its link and notes, the pretraining data
    DIR/docs/README.md           what the bundle holds and how to load it

``network_def`` (:data:`BundleNetwork`):

* ``"monai"``: MONAI's own network, no medzoo needed. Only MedicalNet's ResNets (``med3d-*``) have one:
  ``monai.networks.nets.ResNet`` with the depth's block and layers, ``shortcut_type`` of the weights,
  ``conv1_t_size=7``, ``conv1_t_stride=2``, max-pool kept (``no_max_pool=False``), ``bias_downsample=False``,
  ``feed_forward=False`` (no ``fc``). The keys are identical, so the weights load strictly, but MONAI's ResNet
  has stride 2 and no dilation in layer3/layer4 (output stride 32) while MedicalNet trained its weights with
  stride 1 and dilation 2/4 (output stride 8), and MONAI's ``forward`` ends in global average pooling: the bundle
  returns (N, 512 * expansion) pooled features of the classic topology (docs/monai.md).
* ``"medzoo"``: ``zoo.archs.build_architecture`` with the entry's builder arguments (``name`` selects a row of
  medzoo's fixed architecture table; the spec is checked before anything is built). Needs medzoo where the
  bundle runs (``required_packages_version``); outputs equal ``zoo.load(NAME)``'s exactly.
* ``"auto"`` (default): ``"monai"`` where MONAI has the network, else ``"medzoo"``.

Before anything is written the bundle is checked with MONAI's own parser: ``ConfigParser`` instantiates
``network_def`` on the meta device and its state-dict keys and shapes must equal the weights'; the metadata's
required fields are checked against the schema's list (:func:`check_metadata`; MONAI's ``verify_metadata`` needs
the schema file from the network and ``jsonschema``).

Licences: pretrained weights whose licence forbids redistribution (or with no recorded licence, or derived from
such an entry) are refused unless the caller states they hold the rights (:func:`zoo.publish.licence_problems`,
the same rule as ``zoo publish``). ``pretrained=False`` exports a randomly initialised network and says so.

The bundle is written into a temporary folder next to ``DIR`` and moved into place when complete; an existing
non-empty ``DIR`` is replaced only with ``overwrite=True`` (CLI ``--force``); ``DIR`` may not be the model folder
it is exported from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, get_args

from ._version import __version__
from .errors import ZooError
from .hub.integrity import default_file_mode, process_umask
from .registry import ModelEntry

BundleNetwork = Literal["auto", "monai", "medzoo"]

#: the metadata schema the bundle names (MONAI's current one; copied to https://project-monai.github.io/schema/)
SCHEMA_URL = ("https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
              "meta_schema_20240725.json")
#: top-level fields meta_schema_20240725 requires
METADATA_REQUIRED = ("schema", "version", "monai_version", "pytorch_version", "numpy_version",
                     "required_packages_version", "task", "description", "authors", "copyright",
                     "network_data_format")
#: fields of each tensor in network_data_format inputs / outputs that the schema requires
TENSOR_REQUIRED = ("type", "format", "num_channels", "spatial_shape", "dtype", "value_range")
BUNDLE_VERSION = "0.1.0"
MEDZOO_TARGET = "zoo.archs.build_architecture"
MONAI_RESNET_TARGET = "monai.networks.nets.ResNet"

METADATA = "configs/metadata.json"
INFERENCE = "configs/inference.json"
MODEL = "models/model.pt"
LICENSE = "LICENSE"
README = "docs/README.md"


class MonaiBundleError(ZooError):
    """The model cannot be exported as a MONAI bundle as asked (no MONAI network for it, MONAI missing, ...)."""


class MonaiBundleRefusedError(MonaiBundleError, PermissionError):
    """The weights' licence forbids redistribution and the caller did not state they hold the rights."""


@dataclass
class MonaiBundle:
    """What :func:`export_monai_bundle` wrote."""

    path: Path
    name: str
    network: Literal["monai", "medzoo"]
    target: str
    pretrained: bool
    keys: int
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rights_asserted: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        weights = "pretrained weights" if self.pretrained else "random initialisation (no pretrained weights)"
        lines = [f"wrote MONAI bundle {self.path} for {self.name}: network_def {self.target} ({self.network}), "
                 f"{self.keys} tensors, {weights}"]
        lines += [f"  {f}" for f in self.files]
        lines += [f"  note: {n}" for n in self.notes]
        if self.rights_asserted:
            lines.append("  exported under the caller's statement that they hold the rights:")
            lines += [f"    - {p}" for p in self.rights_asserted]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ network_def


def _check_config_values(value: Any, where: str) -> None:
    """MONAI's parser reads strings starting with ``$``, ``@`` or ``%`` as code, references or macros, and ``#``
    / ``::`` in keys as paths: a builder argument like that cannot be written as plain data."""
    if isinstance(value, str) and value[:1] in ("$", "@", "%"):
        raise MonaiBundleError(f"{where} = {value!r} would be read by MONAI's ConfigParser as an expression or "
                               "reference; this model cannot be exported as plain bundle data")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str) or "#" in k or "::" in k or k.startswith("_") and k.endswith("_"):
                raise MonaiBundleError(f"{where} has key {k!r}, which MONAI's ConfigParser would not read as data")
            _check_config_values(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_config_values(v, f"{where}[{i}]")


def _jsonable(value: Any) -> Any:
    """Builder arguments as JSON data (tuples become lists)."""
    return json.loads(json.dumps(value, default=list))


def medzoo_network_def(entry: ModelEntry) -> dict[str, Any]:
    """``network_def`` building ``entry``'s network with medzoo: ``zoo.archs.build_architecture(name=..., **kwargs)``
    with the entry's builder arguments, ``in_channels`` and ``num_classes``."""
    kwargs = entry.build_kwargs()
    kwargs["in_channels"] = entry.input.in_channels
    kwargs["num_classes"] = entry.num_classes
    kwargs = _jsonable(kwargs)
    _check_config_values(kwargs, "network_def")
    if "name" in kwargs:
        raise MonaiBundleError(f"{entry.name}: builder argument 'name' clashes with build_architecture's name")
    return {"_target_": MEDZOO_TARGET, "name": entry.architecture, **kwargs}


def monai_network_def(entry: ModelEntry) -> dict[str, Any]:
    """``network_def`` for MONAI's ``ResNet`` holding a MedicalNet ResNet's weights (same keys; see the module
    docstring for what differs). Raises :class:`MonaiBundleError` for any other architecture, or a MedicalNet
    configuration MONAI's ResNet cannot hold (the segmentation head ``conv_seg``, ``features_only``)."""
    if entry.architecture != "med3d_resnet":
        raise MonaiBundleError(
            f"{entry.name}: MONAI has no network with the layout of architecture {entry.architecture!r} (only "
            "MedicalNet's ResNets, med3d-*, map onto monai.networks.nets.ResNet); export it with network='medzoo' "
            "(CLI --network medzoo: network_def built by medzoo, which must then be installed)")
    from .archs.med3d_resnet import DEPTHS, Bottleneck

    kwargs = entry.build_kwargs()
    depth = int(kwargs.get("depth", 0))
    if depth not in DEPTHS:
        raise MonaiBundleError(f"{entry.name}: depth {depth!r} is not a MedicalNet depth ({sorted(DEPTHS)})")
    unsupported = {k: v for k, v in kwargs.items() if k not in ("depth", "shortcut_type", "dilated")
                   and not (k == "head" and v in (None, "none", "classification"))
                   and not (k == "features_only" and not v)}
    if unsupported:
        raise MonaiBundleError(f"{entry.name}: MONAI's ResNet has no equivalent of builder arguments {unsupported}; "
                               "use network='medzoo'")
    block, layers, default_shortcut = DEPTHS[depth]
    classes = entry.num_classes
    return {
        "_target_": MONAI_RESNET_TARGET,
        "block": "bottleneck" if block is Bottleneck else "basic",
        "layers": list(layers),
        "block_inplanes": [64, 128, 256, 512],
        "spatial_dims": 3,
        "n_input_channels": entry.input.in_channels,
        "conv1_t_size": 7,
        "conv1_t_stride": 2,
        "no_max_pool": False,
        "shortcut_type": kwargs.get("shortcut_type") or default_shortcut,
        "bias_downsample": False,
        "feed_forward": classes is not None,
        "num_classes": classes if classes is not None else 400,  # unused without feed_forward (MONAI's default)
    }


def choose_network(entry: ModelEntry, network: BundleNetwork) -> Literal["monai", "medzoo"]:
    """``network`` resolved for ``entry``: ``"auto"`` is ``"monai"`` for MedicalNet's ResNets, else ``"medzoo"``."""
    if network not in get_args(BundleNetwork):
        raise MonaiBundleError(f"network must be one of {get_args(BundleNetwork)}, got {network!r}")
    if network == "auto":
        return "monai" if entry.architecture == "med3d_resnet" else "medzoo"
    return network  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------ configs


def inference_config(network_def: Mapping[str, Any]) -> dict[str, Any]:
    """``configs/inference.json``: ``network_def``, ``network`` on ``device``, ``ckpt_path`` (``models/model.pt``
    under ``bundle_root``, ``"."`` as in MONAI's model zoo: override it with the bundle folder) and a
    ``SimpleInferer``. ``monai.bundle.load`` instantiates ``network_def`` and loads the weights itself; data loading
    and pre-processing are the user's (see ``docs/README.md``)."""
    return {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "ckpt_path": "$@bundle_root + '/models/model.pt'",
        "network_def": dict(network_def),
        "network": "$@network_def.to(@device)",
        "inferer": {"_target_": "SimpleInferer"},
    }


def _authors(entry: ModelEntry) -> str:
    match = re.search(r"author\s*=\s*[{\"](.+?)[}\"]\s*,?\s*\n", entry.paper.bibtex)
    names = "; ".join(n.strip() for n in match.group(1).split(" and ") if n.strip()) if match else ""
    who = f"{names} ({entry.paper.title})" if names else entry.paper.title
    return f"weights: {who}; MONAI bundle exported by medzoo {__version__}"


def _spatial(entry: ModelEntry) -> list[str]:
    d = max(1, int(entry.input.divisible_by))
    return [f"{d}*n" if d > 1 else "n"] * len(entry.input.patch_size)


def _versions() -> dict[str, str]:
    import monai
    import numpy
    import torch

    return {"monai_version": monai.__version__, "pytorch_version": torch.__version__.split("+")[0],
            "numpy_version": numpy.__version__}


def metadata(entry: ModelEntry, network: Literal["monai", "medzoo"], pretrained: bool,
             output: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    """``configs/metadata.json`` for ``entry`` (schema :data:`SCHEMA_URL`). ``output``: the ``pred`` tensor
    entry (measured from the instantiated network), ``notes``: sentences added to the description."""
    inp = entry.input
    value_range = list(inp.normalization.clip) if inp.normalization is not None and inp.normalization.scheme \
        == "ct_clip_scale" and inp.normalization.clip else []
    weights = ("pretrained weights: " + entry.description if pretrained
               else f"RANDOMLY INITIALISED weights (exported with pretrained=False): the {entry.architecture} "
                    f"architecture of {entry.name}, not its pretrained weights")
    description = " ".join([
        weights,
        f"Input: {inp.in_channels} channel(s), {inp.modality}, spatial axes in {inp.axis_order} order (nnU-Net's "
        "numpy order is zyx; MONAI's LoadImage with the NIfTI reader gives xyz: transpose accordingly), sizes "
        f"divisible by {inp.divisible_by}; intensities: {inp.intensity}.",
        f"Output: {output['_description']}.",
        *notes,
    ])
    pred = {k: v for k, v in output.items() if not k.startswith("_")}
    meta = {
        "schema": SCHEMA_URL,
        "version": BUNDLE_VERSION,
        "changelog": {BUNDLE_VERSION: f"exported by medzoo {__version__} from {entry.name}"},
        **_versions(),
        "required_packages_version": {"medzoo": __version__} if network == "medzoo" else {},
        "name": entry.name,
        "task": output.get("_task") or entry.output.target,
        "description": description,
        "authors": _authors(entry),
        "copyright": (f"weights: licence of record {entry.license.display}, see LICENSE" if pretrained
                      else "weights: random initialisation, no pretrained weights")
                     + "; bundle files written by medzoo (Apache-2.0)",
        "data_source": entry.pretraining.data if pretrained else "none (random initialisation)",
        "data_type": "numpy array, channel first",
        "intended_use": "research; not for diagnostic use",
        "references": [f"{entry.paper.title}: {entry.paper.url}"],
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "magnitude", "modality": inp.modality, "num_channels": inp.in_channels,
                "spatial_shape": _spatial(entry), "dtype": "float32", "value_range": value_range,
                "is_patch_data": True,
                "channel_def": {str(i): n for i, n in enumerate(inp.channel_names or ("image",) * inp.in_channels)},
            }},
            "outputs": {"pred": pred},
        },
    }
    return meta


def check_metadata(meta: Any) -> list[str]:
    """What ``meta`` lacks against meta_schema_20240725: each required field, with the type the schema asks
    for, and the required fields of every tensor in ``network_data_format``. Empty when it passes."""
    if not isinstance(meta, Mapping):
        return [f"metadata must be a JSON object, got {type(meta).__name__}"]
    problems = [f"missing required field {k!r}" for k in METADATA_REQUIRED if k not in meta]
    types = {"required_packages_version": dict, "network_data_format": dict, "changelog": dict,
             "references": list}
    for key in METADATA_REQUIRED + ("changelog", "references"):
        if key in meta:
            want = types.get(key, str)
            if not isinstance(meta[key], want):
                problems.append(f"field {key!r} must be a {want.__name__}, got {type(meta[key]).__name__}")
    fmt = meta.get("network_data_format")
    if isinstance(fmt, Mapping):
        for side in ("inputs", "outputs"):
            tensors = fmt.get(side)
            if not isinstance(tensors, Mapping):
                problems.append(f"network_data_format.{side} must be an object")
                continue
            for name, t in tensors.items():
                if isinstance(t, Mapping):
                    problems += [f"network_data_format.{side}.{name} lacks {k!r}" for k in TENSOR_REQUIRED
                                 if k not in t]
                    if "num_channels" in t and not (isinstance(t["num_channels"], int)
                                                    and not isinstance(t["num_channels"], bool)):
                        problems.append(f"network_data_format.{side}.{name}.num_channels must be an integer")
                    for key in ("spatial_shape", "value_range"):
                        if key in t and not isinstance(t[key], list):
                            problems.append(f"network_data_format.{side}.{name}.{key} must be an array")
    return problems


def licence_text(entry: ModelEntry, pretrained: bool, rights_asserted: list[str]) -> str:
    """``LICENSE`` of the bundle: the weights' licence of record and link, the family's licence notes from the
    model card, the pretraining data and its licence note."""
    from .cards.prose import family_for
    from .cards.render import SPDX_LINKS

    lic = entry.license
    if not pretrained:
        return ("The weights in models/model.pt are a random initialisation written by medzoo (no pretrained "
                f"weights of {entry.name}); the bundle files are medzoo's output, Apache-2.0: "
                f"{SPDX_LINKS['apache-2.0']}\n")
    link = lic.link or SPDX_LINKS.get(lic.spdx, "")
    lines = [
        f"Weights in models/model.pt: {entry.name}",
        f"Licence of record of the weights: {lic.display}" + (f" ({link})" if link else ""),
        "Commercial use: " + ("allowed by the licence" if lic.commercial_use else "NOT allowed"),
        "Redistribution: " + ("allowed; keep this notice" if lic.redistributable else "NOT allowed by the licence"),
    ]
    if rights_asserted:
        lines.append("Exported under the exporter's statement that they hold the rights despite: "
                     + "; ".join(rights_asserted))
    notes = list(family_for(entry).licence_notes)
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    if lic.notice:
        lines += ["", f"Notice: {lic.notice}"]
    lines += ["", f"Pretraining data: {entry.pretraining.data}",
              "The licences of the pretraining data sets are their providers'; they are not granted here.",
              "", "The bundle files (configs, docs) are medzoo's output, Apache-2.0; that licence does not extend "
                  "to the weights.", ""]
    return "\n".join(lines)


def _readme(entry: ModelEntry, network: str, meta: Mapping[str, Any]) -> str:
    extra = ("Needs medzoo installed (`pip install medzoo`): network_def is `zoo.archs.build_architecture`."
             if network == "medzoo" else "Needs only MONAI: network_def is `monai.networks.nets.ResNet`.")
    return "\n".join([
        f"# {entry.name} as a MONAI bundle", "", str(meta["description"]), "", extra, "", "```python",
        "from monai.bundle import ConfigParser",
        "import torch", "",
        "parser = ConfigParser()",
        "parser.read_config('configs/inference.json')",
        "parser['bundle_root'] = '.'  # the bundle folder",
        "net = parser.get_parsed_content('network_def')",
        "net.load_state_dict(torch.load('models/model.pt', weights_only=True), strict=True)",
        "```", "",
        "Or `monai.bundle.load(name=FOLDER_NAME, bundle_dir=PARENT, workflow_type='inference')`.",
        "Parsing a bundle's configs runs its `_target_` and `$` expressions: load bundles from sources you trust.",
        "", "Licence: see ../LICENSE.", "",
    ])


# ------------------------------------------------------------------------------------------ checks


def _instantiate_on_meta(config: Mapping[str, Any]) -> Any:
    """``network_def`` instantiated by MONAI's ConfigParser, every tensor on the meta device (no memory)."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser(json.loads(json.dumps(config)))
    with torch.device("meta"):
        return parser.get_parsed_content("network_def", instantiate=True)


def _check_keys(net: Any, state: Mapping[str, Any], target: str) -> None:
    theirs = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in state.items()}
    missing, extra = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
    shapes = [k for k in set(theirs) & set(ours) if theirs[k] != ours[k]]
    if missing or extra or shapes:
        raise MonaiBundleError(
            f"network_def {target} does not hold these weights strictly: missing {missing[:5]}, unexpected "
            f"{extra[:5]}, shapes differ {[(k, ours[k], theirs[k]) for k in shapes[:5]]}")


def _output_entry(net: Any, entry: ModelEntry, network: str) -> dict[str, Any]:
    """The ``pred`` tensor of network_data_format, from a forward pass on the meta device."""
    import torch

    size = 2 * max(16, int(entry.input.divisible_by))
    ndim = len(entry.input.patch_size)
    with torch.no_grad():
        out = net.eval()(torch.empty(1, entry.input.in_channels, *([size] * ndim), device="meta"))
    if isinstance(out, (list, tuple)):
        out = out[0]
    shape = tuple(out.shape)
    if network == "monai":
        feats = shape[1]
        return {
            "type": "tensor", "format": "features" if entry.num_classes is None else "logits",
            "num_channels": feats, "spatial_shape": [], "dtype": "float32", "value_range": [], "is_patch_data": True,
            "channel_def": {},
            "_task": "3D image feature extraction: globally average-pooled layer4 features of a MedicalNet ResNet "
                     "backbone in MONAI's ResNet",
            "_description": f"(N, {feats}) globally average-pooled layer4 features of MONAI's ResNet (layer3/layer4 "
                            "with stride 2 and no dilation, output stride 32), not MedicalNet's dilated layer4 map "
                            "(output stride 8): the weights were trained dilated, so features differ from "
                            "zoo.load's (see medzoo docs/monai.md)",
        }
    spatial = shape[2:]
    same = spatial == (size,) * ndim
    kind = entry.output.kind
    return {
        "type": "image" if spatial else "tensor",
        "format": {"logits": "logits", "probabilities": "probabilities", "features": "features"}.get(kind, kind),
        "num_channels": shape[1],
        "spatial_shape": _spatial(entry) if same else [],
        "dtype": "float32",
        "value_range": [0, 1] if kind == "probabilities" else [],
        "is_patch_data": True,
        "channel_def": {},
        "_task": entry.output.target,
        "_description": f"{entry.output.summary}; size {entry.output.resolution or 'per the architecture'}"
                        + ("" if same else f" ({size}^{ndim} input gives {'x'.join(map(str, spatial)) or 'no'} "
                                            "spatial output)"),
    }


# ------------------------------------------------------------------------------------------ export


def _resolve(name: str) -> tuple[ModelEntry, Path | None]:
    from .model_dir import read_model_dir
    from .registry import get_entry

    if os.path.isdir(name):
        entry, _ = read_model_dir(name)
        return entry, Path(name).resolve()
    return get_entry(name), None


def _check_output(out: Path, folder: Path | None, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise MonaiBundleError(f"{out} exists and is not a folder; give a folder for the bundle")
    if folder is not None:
        o = out.resolve()
        if o == folder or folder in o.parents or o in folder.parents:
            raise MonaiBundleError(f"the bundle folder {out} would overlap the model folder {folder} it is "
                                   "exported from; choose another folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise MonaiBundleError(f"{out} exists and is not empty; pass overwrite=True (CLI: --force) to replace it")


def _write_tree(out: Path, files: Mapping[str, bytes | Any]) -> None:
    """Write ``files`` (relative path -> bytes, or a state dict for torch.save) into a temporary folder next to
    ``out``, then move it into place (an existing ``out`` is replaced only after the new one is complete)."""
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    old: Path | None = None
    try:
        dir_mode = 0o777 & ~process_umask()
        os.chmod(tmp, dir_mode)
        for rel, data in files.items():
            path = tmp / rel
            if not path.parent.is_dir():
                path.parent.mkdir(parents=True)
                os.chmod(path.parent, dir_mode)
            if isinstance(data, bytes):
                path.write_bytes(data)
            else:
                torch.save(data, path)
            os.chmod(path, default_file_mode())
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "previous")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "previous").exists() and not out.exists():
            os.replace(old / "previous", out)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def export_monai_bundle(
    name: str,
    output: str | os.PathLike,
    *,
    network: BundleNetwork = "auto",
    pretrained: bool = True,
    checkpoint: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    i_hold_the_rights: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> MonaiBundle:
    """Write registry model (or model folder) ``name`` as a MONAI bundle in folder ``output``.

    Args:
        name: a registry name or a medzoo model folder.
        output: the bundle folder (created; an existing non-empty one only with ``overwrite``).
        network: ``"monai"`` (MONAI's own network: med3d-* only), ``"medzoo"`` (medzoo's builder) or ``"auto"``.
        pretrained: export the pretrained weights (``zoo.load(name)``); ``False``: a random initialisation,
            described as such in the metadata (no download, no licence check).
        checkpoint, cache_dir: as in :func:`zoo.load`.
        i_hold_the_rights: export weights whose licence forbids redistribution (the caller holds the rights).

    Raises:
        MonaiBundleRefusedError: the licence forbids redistribution and ``i_hold_the_rights`` is false.
        MonaiBundleError: no MONAI network for the architecture, MONAI missing, keys that do not match, an output
            that exists or overlaps the model folder. Nothing is written then.
    """
    entry, folder = _resolve(name)
    kind = choose_network(entry, network)
    out = Path(output)
    _check_output(out, folder, overwrite)
    asserted: list[str] = []
    if pretrained:
        from .publish import licence_problems

        problems = licence_problems(entry)
        if problems and not i_hold_the_rights:
            raise MonaiBundleRefusedError(
                f"{entry.name} cannot be exported with its weights: " + "; ".join(problems)
                + ". Pass i_hold_the_rights=True (CLI: --i-hold-the-rights) only if you hold the rights, or "
                  "pretrained=False (CLI: --random-init) for the architecture alone.")
        asserted = problems
    network_def = monai_network_def(entry) if kind == "monai" else medzoo_network_def(entry)
    try:
        import monai  # noqa: F401
    except ImportError:
        raise MonaiBundleError("writing a MONAI bundle needs MONAI to check it: pip install monai") from None

    from .loading import load

    model = load(name, pretrained=pretrained, checkpoint=checkpoint, cache_dir=cache_dir, progress=progress)
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    config = inference_config(network_def)
    net = _instantiate_on_meta(config)
    _check_keys(net, state, network_def["_target_"])
    notes = []
    if kind == "monai":
        dilated = bool(entry.build_kwargs().get("dilated", True))
        if dilated:
            notes.append("MONAI's ResNet is not MedicalNet's dilated topology: stem, layer1 and layer2 compute the "
                         "same maps, layer3/layer4 do not (stride 2, no dilation); use network_def "
                         "zoo.archs.build_architecture (medzoo export-monai --network medzoo) for MedicalNet's "
                         "own features.")
    pred = _output_entry(net, entry, kind)
    meta = metadata(entry, kind, pretrained, pred, notes)
    problems = check_metadata(meta)
    if problems:  # pragma: no cover - a bug in this module, not in the user's input
        raise MonaiBundleError(f"metadata for {entry.name} fails the schema's required fields: {problems}")

    def dump(obj: Any) -> bytes:
        return (json.dumps(obj, indent=2) + "\n").encode()

    files: dict[str, Any] = {
        METADATA: dump(meta),
        INFERENCE: dump(config),
        MODEL: state,
        LICENSE: licence_text(entry, pretrained, asserted).encode(),
        README: _readme(entry, kind, meta).encode(),
    }
    _write_tree(out, files)
    return MonaiBundle(out, entry.name, kind, network_def["_target_"], pretrained, len(state), list(files),
                       notes, asserted)


__all__ = ["BundleNetwork", "MonaiBundle", "MonaiBundleError", "MonaiBundleRefusedError", "check_metadata",
           "choose_network", "export_monai_bundle", "inference_config", "licence_text", "medzoo_network_def",
           "metadata", "monai_network_def"]
