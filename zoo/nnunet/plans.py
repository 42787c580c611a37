"""Read nnU-Net v2 plans and dataset.json into what medzoo needs to build the network nnU-Net would build.

Two plan formats are read (facts: docs/nnunet-plans.md §1; nnU-Net's
nunetv2/utilities/plans_handling/plans_handler.py):

* the ``architecture`` format (nnU-Net >= 2.3): ``configurations[C]["architecture"] = {network_class_name,
  arch_kwargs, _kw_requires_import}``;
* the legacy flat format (before Feb 2024): ``UNet_class_name``, ``UNet_base_num_features``,
  ``unet_max_num_features``, ``n_conv_per_stage_encoder``, ``n_conv_per_stage_decoder``,
  ``pool_op_kernel_sizes``, ``conv_kernel_sizes`` (converted exactly as nnU-Net's ``ConfigurationManager`` does).

Configuration inheritance (``inherits_from``) is a shallow ``dict.update`` on the parent, as in nnU-Net.
Input channels come from dataset.json ``channel_names`` (formerly ``modality``), plus the number of foreground
labels for a cascade stage (``previous_stage``); output channels are nnU-Net's ``num_segmentation_heads``
(regions, or labels including background, the ignore label excluded).

Every problem raises :class:`PlanError` naming the configuration and the key. No nnunetv2 import.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Mapping, NamedTuple

from ..archs.declarations import NNUNET_CLASSES
from ..errors import PlanError  # noqa: F401 -- defined in zoo.errors; re-exported here, where it lived
from ..json_file import read_json_object
from ..options import DEEP_SUPERVISION_MODES

#: ``network_class_name`` nnU-Net resolves (``pydoc.locate``) for each medzoo architecture of the U-Net family
#: (:data:`zoo.archs.declarations.NNUNET_CLASSES`); NestedUNet (UNet++) is medzoo's own class, so nnU-Net's
#: environment must have medzoo installed
DNA_CLASSES = {a.name: a.nnunet.class_path for a in NNUNET_CLASSES}
_CLASS_TO_ARCH = {a.nnunet.class_name: a.name for a in NNUNET_CLASSES}
#: the classes of the legacy flat plan format: nnU-Net's own (dynamic-network-architectures)
_LEGACY_CLASSES = tuple(a.nnunet.class_name for a in NNUNET_CLASSES if a.nnunet.stock)

#: plan ``arch_kwargs`` each class accepts and needs (declared with the architecture)
_ALLOWED_KWARGS = {a.name: a.nnunet.allowed_kwargs for a in NNUNET_CLASSES}
_REQUIRED_KWARGS = {a.name: a.nnunet.required_kwargs for a in NNUNET_CLASSES}
LEGACY_KEYS = ("UNet_class_name", "UNet_base_num_features", "unet_max_num_features", "n_conv_per_stage_encoder",
               "n_conv_per_stage_decoder", "pool_op_kernel_sizes", "conv_kernel_sizes", "num_pool_per_axis")

#: nnU-Net's axis letters of a raw image array (SimpleITK and NibabelIO both give z, y, x)
RAW_AXIS_ORDER = "zyx"


class PlanArchitecture(NamedTuple):
    """The network of one plan configuration: medzoo architecture name, its ``arch_kwargs`` (plan form, class
    paths as strings), input channels and output channels (segmentation heads)."""

    arch: str
    arch_kwargs: dict
    in_channels: int
    num_classes: int


def _where(configuration: str | None, key: str) -> str:
    return f"configuration {configuration!r}: {key}" if configuration is not None else key


#: the largest plans.json / dataset.json read: real ones are tens of kilobytes (dataset.json with a file list
#: for thousands of cases stays under a few megabytes)
MAX_JSON_BYTES = 64 << 20


def _read_json(source: Any, what: str) -> dict:
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    if isinstance(source, (str, os.PathLike)):
        return read_json_object(source, what=f"{what} file", max_bytes=MAX_JSON_BYTES, error=PlanError)
    raise PlanError(f"{what} must be a path or a dict, got {type(source).__name__}")


def load_plans(plans: Any) -> dict:
    """A plans dict (copied) from a path or a dict; checks that ``configurations`` is a non-empty object."""
    value = _read_json(plans, "plans")
    configs = value.get("configurations")
    if not isinstance(configs, dict) or not configs:
        raise PlanError("plans: 'configurations' must be a non-empty object of configuration name -> settings",
                        key="configurations")
    for name, conf in configs.items():
        if not isinstance(conf, dict):
            raise PlanError(f"plans: configuration {name!r} must be an object, got {type(conf).__name__}",
                            key=f"configurations.{name}")
    tf = value.get("transpose_forward", [0, 1, 2])
    if not (isinstance(tf, list) and sorted(x for x in tf if isinstance(x, int) and not isinstance(x, bool)) == [0, 1, 2]
            and len(tf) == 3):
        raise PlanError(f"plans: 'transpose_forward' must be a permutation of [0, 1, 2], got {tf!r}",
                        key="transpose_forward")
    return value


def load_dataset_json(dataset_json: Any) -> dict:
    """A dataset.json dict from a path or a dict, checked: channels, labels with background 0."""
    value = _read_json(dataset_json, "dataset.json")
    channels = value.get("channel_names", value.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise PlanError("dataset.json: 'channel_names' (formerly 'modality') must be a non-empty object "
                        "{\"0\": \"CT\", ...}")
    labels = value.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise PlanError("dataset.json: 'labels' must be a non-empty object {\"background\": 0, ...}", key="labels")
    if "background" not in labels or labels["background"] != 0 or isinstance(labels["background"], bool):
        raise PlanError(f"dataset.json: 'labels' must declare \"background\": 0, got {labels.get('background')!r}")
    for name, val in labels.items():
        if name == "ignore":
            if not _is_int(val):
                raise PlanError(f"dataset.json: labels['ignore'] must be an integer, got {val!r}")
            continue
        vals = val if isinstance(val, list) else [val]
        if not vals or not all(_is_int(v) and v >= 0 for v in vals):
            raise PlanError(f"dataset.json: labels[{name!r}] must be a non-negative integer or a list of them, "
                            f"got {val!r}")
    if _has_regions(labels):
        order = value.get("regions_class_order")
        n = len(_foreground_regions(labels))
        if not isinstance(order, list) or len(order) != n:
            raise PlanError(f"dataset.json: region-based labels need 'regions_class_order' with {n} entries, "
                            f"got {order!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _has_regions(labels: Mapping[str, Any]) -> bool:
    return any(isinstance(v, list) and len(v) > 1 for k, v in labels.items() if k != "ignore")


def _foreground_regions(labels: Mapping[str, Any]) -> list:
    regions = []
    for name, val in labels.items():
        if name == "ignore":
            continue
        vals = val if isinstance(val, list) else [val]
        if set(vals) == {0}:
            continue
        regions.append(tuple(vals))
    return regions


def _all_labels(labels: Mapping[str, Any]) -> list[int]:
    out: set[int] = set()
    for name, val in labels.items():
        if name == "ignore":
            continue
        out.update(val if isinstance(val, list) else [val])
    return sorted(out)


def image_channels(dataset_json: Mapping[str, Any]) -> int:
    """Number of image channels (``channel_names``, or the legacy ``modality``)."""
    return len(dataset_json.get("modality", dataset_json.get("channel_names")) or {})


def foreground_labels(dataset_json: Mapping[str, Any]) -> list[int]:
    return [label for label in _all_labels(dataset_json["labels"]) if label != 0]


def output_channels(dataset_json: Mapping[str, Any]) -> int:
    """nnU-Net's ``num_segmentation_heads``: number of foreground regions, or of labels incl. background."""
    labels = dataset_json["labels"]
    if _has_regions(labels):
        return len(_foreground_regions(labels))
    return len(_all_labels(labels))


def configuration_names(plans: Mapping[str, Any]) -> list[str]:
    return list(plans["configurations"])


def resolve_configuration(plans: Mapping[str, Any], configuration: str) -> dict:
    """The configuration dict with ``inherits_from`` resolved (shallow update on the parent, as nnU-Net)."""
    configs = plans["configurations"]
    if configuration not in configs:
        raise PlanError(f"unknown configuration {configuration!r}; the plans have {list(configs)}",
                        key=configuration)
    chain = [configuration]
    conf = configs[configuration]
    while "inherits_from" in conf:
        parent = conf["inherits_from"]
        if not isinstance(parent, str) or parent not in configs:
            raise PlanError(f"{_where(chain[-1], 'inherits_from')} names {parent!r}, which is not a configuration "
                            f"of these plans ({list(configs)})", key=_where(chain[-1], 'inherits_from'))
        if parent in chain:
            raise PlanError(f"circular inheritance between configurations: {' -> '.join(chain + [parent])}")
        chain.append(parent)
        conf = configs[parent]
    resolved: dict = {}
    for name in reversed(chain):
        resolved.update(copy.deepcopy(configs[name]))
    return resolved


def _legacy_architecture(conf: Mapping[str, Any], configuration: str) -> dict:
    """nnU-Net's own conversion of a pre-2.3 flat configuration into the ``architecture`` form."""
    for key in ("UNet_class_name", "UNet_base_num_features", "unet_max_num_features", "n_conv_per_stage_encoder",
                "n_conv_per_stage_decoder", "pool_op_kernel_sizes", "conv_kernel_sizes", "patch_size"):
        if key not in conf:
            raise PlanError(f"{_where(configuration, key)} is missing (legacy plans format without 'architecture')", key=_where(configuration, key))
    cls = conf["UNet_class_name"]
    if cls not in _LEGACY_CLASSES:
        raise PlanError(f"{_where(configuration, 'UNet_class_name')} = {cls!r}; the legacy format knows "
                        "PlainConvUNet and ResidualEncoderUNet", key=_where(configuration, 'UNet_class_name'))
    enc = conf["n_conv_per_stage_encoder"]
    if not isinstance(enc, list) or not enc:
        raise PlanError(f"{_where(configuration, 'n_conv_per_stage_encoder')} must be a non-empty list, got {enc!r}", key=_where(configuration, 'n_conv_per_stage_encoder'))
    patch = conf["patch_size"]
    if not isinstance(patch, list) or len(patch) not in (2, 3):
        raise PlanError(f"{_where(configuration, 'patch_size')} must list 2 or 3 sizes, got {patch!r}", key=_where(configuration, 'patch_size'))
    base, cap = conf["UNet_base_num_features"], conf["unet_max_num_features"]
    for key, val in (("UNet_base_num_features", base), ("unet_max_num_features", cap)):
        if not _is_int(val) or val < 1:
            raise PlanError(f"{_where(configuration, key)} must be a positive integer, got {val!r}", key=_where(configuration, key))
    dims = len(patch)
    n = len(enc)
    return {
        "network_class_name": DNA_CLASSES[_CLASS_TO_ARCH[cls]],
        "arch_kwargs": {
            "n_stages": n,
            "features_per_stage": [min(base * 2 ** i, cap) for i in range(n)],
            "conv_op": f"torch.nn.modules.conv.Conv{dims}d",
            "kernel_sizes": copy.deepcopy(conf["conv_kernel_sizes"]),
            "strides": copy.deepcopy(conf["pool_op_kernel_sizes"]),
            ("n_conv_per_stage" if cls == "PlainConvUNet" else "n_blocks_per_stage"): copy.deepcopy(enc),
            "n_conv_per_stage_decoder": copy.deepcopy(conf["n_conv_per_stage_decoder"]),
            "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dims}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def is_legacy(conf: Mapping[str, Any]) -> bool:
    return "architecture" not in conf


def configuration_architecture(plans: Mapping[str, Any], configuration: str) -> dict:
    """``{network_class_name, arch_kwargs, _kw_requires_import}`` of a configuration (legacy plans converted)."""
    conf = resolve_configuration(plans, configuration)
    if is_legacy(conf):
        return _legacy_architecture(conf, configuration)
    arch = conf["architecture"]
    if not isinstance(arch, dict):
        raise PlanError(f"{_where(configuration, 'architecture')} must be an object, got {type(arch).__name__}", key=_where(configuration, 'architecture'))
    for key in ("network_class_name", "arch_kwargs"):
        if key not in arch:
            raise PlanError(f"{_where(configuration, 'architecture.' + key)} is missing", key=_where(configuration, 'architecture.' + key))
    if not isinstance(arch["network_class_name"], str):
        raise PlanError(f"{_where(configuration, 'architecture.network_class_name')} must be a string", key=_where(configuration, 'architecture.network_class_name'))
    if not isinstance(arch["arch_kwargs"], dict):
        raise PlanError(f"{_where(configuration, 'architecture.arch_kwargs')} must be an object", key=_where(configuration, 'architecture.arch_kwargs'))
    out = copy.deepcopy(arch)
    out.setdefault("_kw_requires_import", ["conv_op", "norm_op", "dropout_op", "nonlin"])
    req = out["_kw_requires_import"]
    if not isinstance(req, list) or not all(isinstance(k, str) for k in req):
        raise PlanError(f"{_where(configuration, 'architecture._kw_requires_import')} must be a list of argument "
                        f"names, got {req!r}", key=_where(configuration, 'architecture._kw_requires_import'))
    missing = [k for k in req if k not in out["arch_kwargs"]]
    if missing:
        raise PlanError(f"{_where(configuration, 'architecture.arch_kwargs.' + missing[0])} is missing (listed in "
                        "_kw_requires_import; nnU-Net looks it up)", key=_where(configuration, 'architecture.arch_kwargs.' + missing[0]))
    return out


def arch_name(network_class_name: str, configuration: str | None = None) -> str:
    """medzoo architecture name of an nnU-Net ``network_class_name`` (DNA or medzoo class path)."""
    short = network_class_name.rsplit(".", 1)[-1]
    if short not in _CLASS_TO_ARCH:
        raise PlanError(
            f"{_where(configuration, 'architecture.network_class_name')} = {network_class_name!r}: medzoo adapts "
            "weights into PlainConvUNet and ResidualEncoderUNet plans (and medzoo's NestedUNet, UNet++, and STUNet) "
            "only",
            key=_where(configuration, 'architecture.network_class_name'),
        )
    return _CLASS_TO_ARCH[short]


def _check_int(value: Any, where: str, minimum: int = 1) -> int:
    if not _is_int(value) or value < minimum:
        raise PlanError(f"{where} must be an integer >= {minimum}, got {value!r}", key=where)
    return value


def _per_stage(value: Any, n: int, where: str) -> list:
    if isinstance(value, list):
        if len(value) != n:
            raise PlanError(f"{where} must have {n} entries (one per stage), got {len(value)}: {value!r}", key=where)
        return value
    return [value] * n


def _axis_list(value: Any, dims: int, where: str, odd: bool) -> list[int]:
    vals = [value] * dims if _is_int(value) else value
    if not isinstance(vals, list) or len(vals) != dims or not all(_is_int(v) and v >= 1 for v in vals):
        raise PlanError(f"{where} must be {dims} positive integers (one per spatial axis), got {value!r}", key=where)
    if odd and any(v % 2 == 0 for v in vals):
        raise PlanError(f"{where} must be odd (nnU-Net pads (k - 1) // 2), got {value!r}", key=where)
    return list(vals)


def _plan_op(value: Any, role: str, where: str) -> Any:
    """The torch class a plan names for ``role``, from the allow-list of :mod:`zoo.archs.ops` (nothing is
    imported: nnU-Net's own ``pydoc.locate`` would run any module's top-level code)."""
    from ..archs.limits import ArchitectureSpecError
    from ..archs.ops import resolve_op

    if not isinstance(value, (str, type(None))):
        raise PlanError(f"{where} must be a dotted class path (e.g. 'torch.nn.LeakyReLU'), got {value!r}", key=where)
    try:
        return resolve_op(value, role, where)
    except ArchitectureSpecError as err:
        raise PlanError(str(err), key=err.key) from None


def _check_sizes(arch: str, kwargs: Mapping[str, Any], configuration: str | None, patch_size: Any) -> None:
    """The size limits of :mod:`zoo.archs.limits` (parameters, layers, activations of one forward at batch 1 on
    ``patch_size``), by arithmetic before anything is built; input and output channels count as 1 here (they come
    from dataset.json; the build checks them)."""
    from ..archs.limits import ArchitectureSpecError
    from ..archs.size_estimate import check_architecture

    try:
        check_architecture(arch, {**kwargs, "in_channels": 1, "num_classes": 1}, patch_size=patch_size,
                           name_of=lambda key: _where(configuration, f"architecture.arch_kwargs.{key}"),
                           patch_key=_where(configuration, "patch_size"))
    except ArchitectureSpecError as err:
        raise PlanError(str(err), key=err.key) from None


def check_arch_kwargs(arch: str, kwargs: Mapping[str, Any], configuration: str | None = None,
                      patch_size: Any = None) -> int:
    """Validate plan ``arch_kwargs`` for medzoo architecture ``arch``; return the number of spatial dims."""
    from torch import nn

    from ..archs.limits import MAX_STAGES

    w = lambda key: _where(configuration, f"architecture.arch_kwargs.{key}")  # noqa: E731
    unknown = sorted(set(kwargs) - _ALLOWED_KWARGS[arch])
    if unknown:
        raise PlanError(f"{w(unknown[0])} is not an argument of {arch} (unknown keys: {unknown})", key=w(unknown[0]))
    for key in _REQUIRED_KWARGS[arch]:
        if key not in kwargs:
            raise PlanError(f"{w(key)} is missing", key=w(key))
    n = _check_int(kwargs["n_stages"], w("n_stages"), minimum=2)
    if n > MAX_STAGES:
        raise PlanError(f"{w('n_stages')} = {n} is above the limit of {MAX_STAGES} stages (zoo.archs.limits)", key=w('n_stages'))
    conv = _plan_op(kwargs["conv_op"], "conv_op", w("conv_op"))
    if conv is nn.Conv3d:
        dims = 3
    elif conv is nn.Conv2d:
        dims = 2
    else:
        raise PlanError(f"{w('conv_op')} must be Conv2d or Conv3d, got {kwargs['conv_op']!r}", key=w('conv_op'))
    for i, f in enumerate(_per_stage(kwargs["features_per_stage"], n, w("features_per_stage"))):
        _check_int(f, f"{w('features_per_stage')}[{i}]")
    for i, k in enumerate(_per_stage(kwargs["kernel_sizes"], n, w("kernel_sizes"))):
        _axis_list(k, dims, f"{w('kernel_sizes')}[{i}]", odd=True)
    strides = [_axis_list(s, dims, f"{w('strides')}[{i}]", odd=False)
               for i, s in enumerate(_per_stage(kwargs["strides"], n, w("strides")))]
    enc_key = "n_blocks_per_stage" if arch in ("residual_encoder_unet", "stunet") else "n_conv_per_stage"
    for i, c in enumerate(_per_stage(kwargs[enc_key], n, w(enc_key))):
        _check_int(c, f"{w(enc_key)}[{i}]")
    if "n_conv_per_stage_decoder" in _REQUIRED_KWARGS[arch]:  # STU-Net's decoder mirrors its encoder
        for i, c in enumerate(_per_stage(kwargs["n_conv_per_stage_decoder"], n - 1, w("n_conv_per_stage_decoder"))):
            _check_int(c, f"{w('n_conv_per_stage_decoder')}[{i}]")
    if "conv_bias" in kwargs and not isinstance(kwargs["conv_bias"], bool):
        raise PlanError(f"{w('conv_bias')} must be true or false, got {kwargs['conv_bias']!r}", key=w('conv_bias'))
    if "nonlin_first" in kwargs and not isinstance(kwargs["nonlin_first"], bool):
        raise PlanError(f"{w('nonlin_first')} must be true or false, got {kwargs['nonlin_first']!r}", key=w('nonlin_first'))
    for op in ("norm_op", "dropout_op", "nonlin"):
        if op in kwargs:
            _plan_op(kwargs[op], op, w(op))
        opkw = op + "_kwargs" if op != "nonlin" else "nonlin_kwargs"
        if opkw in kwargs and kwargs[opkw] is not None and not (
            isinstance(kwargs[opkw], dict) and all(isinstance(k, str) for k in kwargs[opkw])
        ):
            raise PlanError(f"{w(opkw)} must be an object of keyword arguments or null, got {kwargs[opkw]!r}", key=w(opkw))
    if arch == "nested_unet":
        branch = kwargs.get("branch")
        if branch is not None and not (_is_int(branch) and 1 <= branch <= n - 1):
            raise PlanError(f"{w('branch')} must be null or an integer 1..{n - 1} (the UNet++ sub-network), "
                            f"got {branch!r}", key=w('branch'))
        mode = kwargs.get("deep_supervision_mode", "multiscale")
        if mode not in DEEP_SUPERVISION_MODES:  # plan-file validation: its own message, naming the plan key
            raise PlanError(f"{w('deep_supervision_mode')} must be 'multiscale' or 'top_row', got {mode!r}", key=w('deep_supervision_mode'))
    if arch == "residual_encoder_unet":
        if kwargs.get("block") not in (None, "BasicBlockD", "BottleneckD") and not (
            isinstance(kwargs.get("block"), str) and kwargs["block"].rsplit(".", 1)[-1] in ("BasicBlockD", "BottleneckD")
        ):
            raise PlanError(f"{w('block')} must be BasicBlockD or BottleneckD, got {kwargs.get('block')!r}", key=w('block'))
        if kwargs.get("stem_channels") is not None:
            _check_int(kwargs["stem_channels"], w("stem_channels"))
        if kwargs.get("bottleneck_channels") is not None:
            for i, c in enumerate(_per_stage(kwargs["bottleneck_channels"], n, w("bottleneck_channels"))):
                _check_int(c, f"{w('bottleneck_channels')}[{i}]")
        if str(kwargs.get("block", "")).endswith("BottleneckD") and kwargs.get("bottleneck_channels") is None:
            raise PlanError(f"{w('bottleneck_channels')} is required with block BottleneckD", key=w('bottleneck_channels'))
    if patch_size is not None:
        where = _where(configuration, "patch_size")
        if not isinstance(patch_size, list) or len(patch_size) != dims or not all(
            _is_int(p) and p >= 1 for p in patch_size
        ):
            raise PlanError(f"{where} must be {dims} positive integers, got {patch_size!r}", key=where)
        total = [1] * dims
        for s in strides:
            total = [t * v for t, v in zip(total, s)]
        bad = [a for a in range(dims) if patch_size[a] % total[a]]
        if bad:
            raise PlanError(f"{where} {patch_size} is not divisible by the product of the strides {total} "
                            f"along axis {bad[0]}; nnU-Net's skips would not line up", key=where)
    _check_sizes(arch, kwargs, configuration, patch_size)
    return dims


def plan_axis_order(plans: Mapping[str, Any], dims: int = 3) -> str:
    """Axis letters of the plan's (transposed) arrays: ``transpose_forward`` applied to z, y, x; a 2D
    configuration works on the last two."""
    tf = plans.get("transpose_forward", [0, 1, 2])
    order = "".join(RAW_AXIS_ORDER[i] for i in tf)
    return order[-dims:] if dims < 3 else order


def arch_for_configuration(
    plans: Any,
    configuration: str = "3d_fullres",
    dataset_json: Any = None,
    *,
    in_channels: int | None = None,
    num_classes: int | None = None,
) -> PlanArchitecture:
    """The network of ``configuration``: ``(architecture name in zoo.archs, arch_kwargs, in_channels, num_classes)``.

    ``plans`` and ``dataset_json`` are paths or dicts. Without a dataset.json, ``in_channels`` defaults to the
    number of ``normalization_schemes`` and ``num_classes`` must be given. Explicit values override dataset.json.
    """
    plans = load_plans(plans)
    conf = resolve_configuration(plans, configuration)
    arch_info = configuration_architecture(plans, configuration)
    arch = arch_name(arch_info["network_class_name"], configuration)
    kwargs = arch_info["arch_kwargs"]
    check_arch_kwargs(arch, kwargs, configuration, conf.get("patch_size"))
    schemes = conf.get("normalization_schemes")
    if schemes is not None and not isinstance(schemes, list):
        raise PlanError(f"{_where(configuration, 'normalization_schemes')} must be a list, got {schemes!r}", key=_where(configuration, 'normalization_schemes'))
    channels = classes = None
    if dataset_json is not None:
        ds = load_dataset_json(dataset_json)
        n_img = image_channels(ds)
        if schemes is not None and len(schemes) != n_img:
            raise PlanError(
                f"dataset.json does not belong to these plans: it has {n_img} image channel(s) "
                f"({list(ds.get('channel_names', ds.get('modality')).values())}) but "
                f"{_where(configuration, 'normalization_schemes')} lists {len(schemes)} ({schemes})"
            )
        channels = n_img + (len(foreground_labels(ds)) if conf.get("previous_stage") else 0)
        classes = output_channels(ds)
    elif schemes is not None:
        channels = len(schemes)
    if in_channels is not None:
        channels = _check_int(in_channels, "in_channels")
    if num_classes is not None:
        classes = _check_int(num_classes, "num_classes")
    if channels is None or channels < 1:
        raise PlanError(f"cannot tell the input channels of {configuration!r}: give a dataset.json or in_channels")
    if classes is None or classes < 1:
        raise PlanError(f"cannot tell the output channels of {configuration!r}: give a dataset.json or num_classes")
    return PlanArchitecture(arch, copy.deepcopy(kwargs), channels, classes)


def build_from_plan(spec: PlanArchitecture, *, device: Any = None, deep_supervision: bool = False):
    """Build the medzoo network of a :class:`PlanArchitecture` (``device='meta'``: no memory, no init)."""
    import torch

    from ..archs import build_architecture

    def build():
        return build_architecture(spec.arch, in_channels=spec.in_channels, num_classes=spec.num_classes,
                                  deep_supervision=deep_supervision, **spec.arch_kwargs)

    try:
        if device is not None:
            with torch.device(device):
                return build()
        return build()
    except PlanError:
        raise
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as err:
        raise PlanError(f"the plan's architecture cannot be built: {err}") from None
