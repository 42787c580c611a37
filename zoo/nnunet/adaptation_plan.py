"""nnssl's adaptation plan, read as untrusted data, and the plan rewrite of the authors' fine-tuning recipe.

Every checkpoint an nnssl trainer saves (github.com/MIC-DKFZ/nnssl, ``adaptation_planning/adaptation_plan.py``
``AdaptationPlan.serialize``) carries, under ``nnssl_adaptation_plan`` and beside it as ``adaptation_plan.json``,
what a downstream user needs: the network (``architecture_plans``: a preset name such as ``"ResEncL"``, or an
nnU-Net class with ``arch_kwargs``), the pretraining configuration (``pretrain_plan.configurations``: spacing,
normalisation schemes, patch), ``pretrain_num_input_channels``, ``recommended_downstream_patchsize`` and the
state-dict prefixes of the encoder and stem. The authors' fine-tuning fork (github.com/TaWald/nnUNet, branch
``nnssl_finetuning_inclusion``, ``nnunetv2/experiment_planning/like_nnssl.py``, ``adaptation_mode=
like_pretrained``) turns it into an nnU-Net plan: the pretraining spacing, ``ZScoreNormalization`` for every
channel (CT included), the pretraining network, the recommended patch.

:func:`read_adaptation_plan` reads that structure from ``adaptation_plan.json`` (bounded JSON), from a
``checkpoint_final.pth`` (medzoo's weights-only loader: nothing in it is imported or called) or from a dict, and
keeps only what an allow-list names, each value type- and range-checked: class names are never resolved here,
and a network class other than the three nnU-Net v2 U-Nets nnssl names is refused. :func:`apply_adaptation_plan`
rewrites an nnU-Net v2 plan configuration to the recipe; op class paths in ``arch_kwargs`` then pass medzoo's
plan validation (its op allow-list) before anything is written, so the plan nnU-Net reads names only ops that
allow-list accepts. Two differences from the fork, both recorded in the plan: ``use_mask_for_norm`` becomes the
pretraining's (``False``: z-score over all voxels) instead of staying as planned, and the new
``data_identifier`` gets medzoo's suffix.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from ..archs.declarations import BY_NAME
from .plans import DNA_CLASSES, LEGACY_KEYS, PlanError, resolve_configuration

#: ``architecture_plans.arch_class_name`` values medzoo turns into an nnU-Net v2 U-Net -> medzoo architecture
NNSSL_CLASSES = {"ResEncL": "residual_encoder_unet", "ResidualEncoderUNet": "residual_encoder_unet",
                 "PlainConvUNet": "plain_conv_unet"}
#: the normalisation nnssl's planner writes and the fine-tuning recipe applies to every channel
ZSCORE = "ZScoreNormalization"
#: the top-level keys read (everything else is listed as ignored)
_KEYS = ("architecture_plans", "pretrain_plan", "pretrain_num_input_channels", "recommended_downstream_patchsize",
         "key_to_encoder", "key_to_stem", "keys_to_in_proj", "key_to_lpe")
_MAX_JSON = 1 << 20  # an adaptation_plan.json is a few kB
_MAX_SIDE = 4096  # voxels per patch axis
_MAX_STRING = 300


@dataclass(frozen=True)
class AdaptationPlan:
    """The allow-listed content of an nnssl adaptation plan (see module docstring).

    ``arch_kwargs`` is ``None`` for the ``"ResEncL"`` preset (nnssl's ``get_res_enc_l``), else the plan form of
    the class's keyword arguments (op class paths as strings, not resolved). Spacing and patches are in the
    pretraining plan's axis order (nnU-Net's z, y, x after its ``transpose_forward``).
    """

    arch_class_name: str
    arch_kwargs: dict[str, Any] | None
    pretrain_num_input_channels: int
    pretrain_configuration: str
    pretrain_spacing: tuple[float, ...] | None
    normalization_schemes: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]
    pretrain_patch_size: tuple[int, ...] | None
    recommended_downstream_patchsize: tuple[int, ...]
    key_to_encoder: str
    key_to_stem: str
    keys_to_in_proj: tuple[str, ...]
    key_to_lpe: str | None
    source: str
    ignored: tuple[str, ...] = ()

    @property
    def architecture(self) -> str:
        """The medzoo architecture of the network (``residual_encoder_unet`` / ``plain_conv_unet``)."""
        return NNSSL_CLASSES[self.arch_class_name]

    def topology(self) -> dict[str, Any]:
        """The plan ``arch_kwargs`` of the network (a fresh copy)."""
        if self.arch_kwargs is None:
            from ..entries.openmind import RESENC_L_ARCH_KWARGS

            return copy.deepcopy(dict(RESENC_L_ARCH_KWARGS))
        return copy.deepcopy(self.arch_kwargs)


def _fail(source: str, key: str, message: str) -> PlanError:
    return PlanError(f"adaptation plan {source}: {key} {message}", key=key)


def _int(value: Any, source: str, key: str, low: int = 1, high: int = _MAX_SIDE) -> int:
    value = _plain(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or not low <= value <= high:
        raise _fail(source, key, f"must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _plain(value: Any) -> Any:
    """A tensor (nnssl's ``_convert_numpy`` turns numpy arrays into tensors before saving) as a small list."""
    import torch

    if isinstance(value, torch.Tensor):
        if value.numel() > 16:
            return value  # refused by the caller's type check
        return value.tolist()
    return value


def _ints(value: Any, source: str, key: str, n: int | None = 3) -> tuple[int, ...]:
    value = _plain(value)
    if not isinstance(value, (list, tuple)) or (n is not None and len(value) != n) or not value:
        raise _fail(source, key, f"must be a list of {n or 'some'} positive integers, got {value!r}")
    return tuple(_int(v, source, f"{key}[{i}]") for i, v in enumerate(value))


def _string(value: Any, source: str, key: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_STRING or not value.isprintable():
        raise _fail(source, key, f"must be a short printable string, got {value!r:.80}")
    return value


def _spacing(value: Any, source: str, key: str) -> tuple[float, ...] | None:
    value = _plain(value)
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise _fail(source, key, f"must be a list of 3 spacings in mm (or null: no resampling), got {value!r}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= 100:
            raise _fail(source, f"{key}[{i}]", f"must be a spacing in (0, 100] mm, got {v!r}")
        out.append(float(v))
    return tuple(out)


def _arch_kwargs(value: Any, arch: str, source: str) -> dict[str, Any]:
    """Plan ``arch_kwargs`` for ``arch``: only the keyword arguments its nnU-Net class accepts, JSON values only."""
    if not isinstance(value, Mapping):
        raise _fail(source, "architecture_plans.arch_kwargs", f"must be a dict for a {arch}, got {type(value).__name__}")
    allowed = BY_NAME[arch].nnunet.allowed_kwargs  # type: ignore[union-attr]
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise _fail(source, "architecture_plans.arch_kwargs", f"has keys the {arch} class does not take: {unknown}")

    def json_only(v: Any, where: str) -> Any:
        v = _plain(v)
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (list, tuple)) and len(v) <= 64:
            return [json_only(x, where) for x in v]
        if isinstance(v, Mapping) and len(v) <= 16 and all(isinstance(k, str) for k in v):
            return {k: json_only(x, where) for k, x in v.items()}
        raise _fail(source, where, f"holds a value that is not plain data: {type(v).__name__}")

    return {str(k): json_only(v, f"architecture_plans.arch_kwargs.{k}") for k, v in value.items()}


def parse_adaptation_plan(data: Mapping[str, Any], source: str = "<dict>") -> AdaptationPlan:
    """The :class:`AdaptationPlan` of ``data`` (upstream's serialized form); :class:`PlanError` naming the key
    for anything outside the allow-list or out of range."""
    if not isinstance(data, Mapping):
        raise PlanError(f"adaptation plan {source}: expected a dict, found {type(data).__name__}")
    missing = [k for k in ("architecture_plans", "pretrain_plan", "recommended_downstream_patchsize") if k not in data]
    if missing:
        raise _fail(source, missing[0], "is missing; is this an nnssl adaptation plan (adaptation_plan.json)?")
    arch_plans = data["architecture_plans"]
    if not isinstance(arch_plans, Mapping):
        raise _fail(source, "architecture_plans", f"must be a dict, got {type(arch_plans).__name__}")
    name = _string(arch_plans.get("arch_class_name"), source, "architecture_plans.arch_class_name")
    if name not in NNSSL_CLASSES:
        raise _fail(source, "architecture_plans.arch_class_name",
                    f"is {name!r}; medzoo rewrites nnU-Net plans for {sorted(NNSSL_CLASSES)} (Primus and other "
                    "transformer presets are not nnU-Net v2 U-Nets)")
    raw_kwargs = arch_plans.get("arch_kwargs")
    if name == "ResEncL":
        if raw_kwargs is not None:
            raise _fail(source, "architecture_plans.arch_kwargs", "must be null for the 'ResEncL' preset")
        kwargs = None
    else:
        kwargs = _arch_kwargs(raw_kwargs, NNSSL_CLASSES[name], source)
    pretrain = data["pretrain_plan"]
    configs = pretrain.get("configurations") if isinstance(pretrain, Mapping) else None
    if not isinstance(configs, Mapping) or len(configs) != 1:
        raise _fail(source, "pretrain_plan.configurations",
                    "must hold exactly the one pretraining configuration (nnssl keeps only the one it trained)")
    (conf_name, conf), = configs.items()
    where = f"pretrain_plan.configurations.{conf_name}"
    conf_name = _string(conf_name, source, "pretrain_plan.configurations")
    if not isinstance(conf, Mapping):
        raise _fail(source, where, f"must be a dict, got {type(conf).__name__}")
    schemes = conf.get("normalization_schemes")
    if not isinstance(schemes, (list, tuple)) or not schemes or len(schemes) > 64:
        raise _fail(source, f"{where}.normalization_schemes", f"must be a non-empty list, got {schemes!r:.80}")
    schemes = tuple(_string(s, source, f"{where}.normalization_schemes") for s in schemes)
    masks = conf.get("use_mask_for_norm", [False] * len(schemes))
    if not isinstance(masks, (list, tuple)) or not all(isinstance(m, bool) for m in masks) or len(masks) > 64:
        raise _fail(source, f"{where}.use_mask_for_norm", f"must be a list of booleans, got {masks!r:.80}")
    patch = conf.get("patch_size")
    lpe = data.get("key_to_lpe")
    in_proj = data.get("keys_to_in_proj", ())
    if not isinstance(in_proj, (list, tuple)) or len(in_proj) > 8:
        raise _fail(source, "keys_to_in_proj", f"must be a short list of state-dict prefixes, got {in_proj!r:.80}")
    return AdaptationPlan(
        arch_class_name=name,
        arch_kwargs=kwargs,
        pretrain_num_input_channels=_int(data.get("pretrain_num_input_channels", 1), source,
                                         "pretrain_num_input_channels", high=64),
        pretrain_configuration=conf_name,
        pretrain_spacing=_spacing(conf.get("spacing"), source, f"{where}.spacing"),
        normalization_schemes=schemes,
        use_mask_for_norm=tuple(masks),
        pretrain_patch_size=None if patch is None else _ints(patch, source, f"{where}.patch_size"),
        recommended_downstream_patchsize=_ints(data["recommended_downstream_patchsize"], source,
                                               "recommended_downstream_patchsize"),
        key_to_encoder=_string(data.get("key_to_encoder", "encoder.stages"), source, "key_to_encoder"),
        key_to_stem=_string(data.get("key_to_stem", "encoder.stem"), source, "key_to_stem"),
        keys_to_in_proj=tuple(_string(k, source, "keys_to_in_proj") for k in in_proj),
        key_to_lpe=None if lpe is None else _string(lpe, source, "key_to_lpe"),
        source=source,
        ignored=tuple(sorted(str(k) for k in data if k not in _KEYS)),
    )


def read_adaptation_plan(source: str | os.PathLike | Mapping[str, Any]) -> AdaptationPlan:
    """The adaptation plan in ``source``: upstream's ``adaptation_plan.json``, an nnssl ``checkpoint_final.pth``
    (its ``nnssl_adaptation_plan``, read by the weights-only loader), or the serialized dict itself."""
    if isinstance(source, Mapping):
        return parse_adaptation_plan(source)
    path = Path(os.fspath(source))
    if path.suffix.lower() == ".json":
        from ..json_file import read_json_object

        data = read_json_object(path, what="adaptation plan", max_bytes=_MAX_JSON, error=PlanError,
                                fix="give nnssl's adaptation_plan.json or its checkpoint_final.pth")
        return parse_adaptation_plan(data, str(path))
    from ..convert.safe_load import load_legacy_checkpoint

    obj = load_legacy_checkpoint(path)
    plan = obj.get("nnssl_adaptation_plan") if isinstance(obj, Mapping) else None
    if not isinstance(plan, Mapping):
        raise PlanError(f"{path} has no 'nnssl_adaptation_plan' dict; give an nnssl checkpoint_final.pth or its "
                        "adaptation_plan.json", path=str(path), key="nnssl_adaptation_plan")
    return parse_adaptation_plan(plan, f"{path}['nnssl_adaptation_plan']")


def registry_adaptation_plan(name: str) -> AdaptationPlan:
    """The registry's record of entry ``name``'s adaptation plan (reconstructed from the authors' trainer code)."""
    from ..entries.openmind import ADAPTATION_PLANS

    if name not in ADAPTATION_PLANS:
        raise PlanError(f"{name!r} has no nnssl adaptation plan in the registry; give the checkpoint's "
                        "adaptation_plan.json (--adaptation-plan FILE)")
    return parse_adaptation_plan(ADAPTATION_PLANS[name], f"registry record of {name}")


def check_against_entry(plan: AdaptationPlan, entry: Any) -> None:
    """Refuse an adaptation plan whose network or input channels are not those of registry ``entry``."""
    kwargs = entry.build_kwargs()
    arch = kwargs.pop("unet", None) if entry.architecture == "nnunet_encoder" else entry.architecture
    kwargs.pop("features_only", None)
    if arch != plan.architecture or _canonical(kwargs) != _canonical(plan.topology()):
        raise PlanError(f"adaptation plan {plan.source} describes a {plan.arch_class_name} that is not the network of "
                        f"{entry.name!r} ({entry.architecture}); give the adaptation plan of that checkpoint",
                        key="architecture_plans")
    if plan.pretrain_num_input_channels != entry.input.in_channels:
        raise PlanError(f"adaptation plan {plan.source} was pretrained on {plan.pretrain_num_input_channels} channel(s), "
                        f"{entry.name!r} on {entry.input.in_channels}", key="pretrain_num_input_channels")


def _canonical(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    from ..archs.nnunet_blocks import resolve_arch_kwargs

    out = resolve_arch_kwargs({k: v for k, v in kwargs.items() if v is not None})
    return {k: (v if not isinstance(v, tuple) else list(v)) for k, v in out.items()}


def apply_adaptation_plan(plans: dict, plan: AdaptationPlan, configuration: str = "3d_fullres") -> dict:
    """Rewrite ``configuration`` of ``plans`` (a dict, in place) to nnssl's fine-tuning recipe and return the
    record stored under the plans' ``medzoo_adaptation_plan`` key: the pretraining network (class and
    ``arch_kwargs``), ``patch_size`` = ``recommended_downstream_patchsize``, the pretraining spacing (when it
    had one), ``ZScoreNormalization`` without mask for every channel, a new ``data_identifier``."""
    from .input_contract import DATA_SUFFIX

    if plan.normalization_schemes and any(s != ZSCORE for s in plan.normalization_schemes):
        raise PlanError(f"adaptation plan {plan.source}: pretrained with {list(plan.normalization_schemes)}; nnssl's "
                        f"fine-tuning recipe z-scores every channel, which reproduces only a {ZSCORE} pretraining",
                        key="normalization_schemes")
    resolved = resolve_configuration(plans, configuration)
    patch = resolved.get("patch_size")
    if not isinstance(patch, list) or len(patch) != 3:
        raise PlanError(f"configuration {configuration!r} is not 3D (patch_size {patch!r}); the adaptation plan "
                        "describes a 3D network: choose a 3D configuration (3d_fullres)", key="patch_size")
    kwargs = plan.topology()
    strides = kwargs["strides"]
    total = [math.prod(int(s[a]) for s in strides) for a in range(3)]
    new_patch = list(plan.recommended_downstream_patchsize)
    if any(p % t for p, t in zip(new_patch, total)):
        raise PlanError(f"adaptation plan {plan.source}: recommended_downstream_patchsize {new_patch} is not divisible "
                        f"by the network's total strides {total}", key="recommended_downstream_patchsize")
    n = len(resolved.get("normalization_schemes") or [])
    if n == 0:
        raise PlanError(f"configuration {configuration!r} has no normalization_schemes", key="normalization_schemes")
    conf = plans["configurations"][configuration]
    before = {k: copy.deepcopy(resolved.get(k)) for k in ("patch_size", "spacing", "normalization_schemes",
                                                           "use_mask_for_norm", "data_identifier")}
    before["network_class_name"] = (resolved.get("architecture") or {}).get("network_class_name",
                                                                            resolved.get("UNet_class_name"))
    for key in LEGACY_KEYS:  # the modern architecture block replaces the legacy flat keys
        conf.pop(key, None)
    conf["architecture"] = {"network_class_name": DNA_CLASSES[plan.architecture], "arch_kwargs": kwargs,
                            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    conf["patch_size"] = new_patch
    if plan.pretrain_spacing is not None:
        conf["spacing"] = list(plan.pretrain_spacing)
    conf["normalization_schemes"] = [ZSCORE] * n
    conf["use_mask_for_norm"] = [False] * n
    ident = resolved.get("data_identifier")
    if isinstance(ident, str) and not ident.endswith(DATA_SUFFIX):
        conf["data_identifier"] = ident + DATA_SUFFIX
    after = {k: copy.deepcopy(conf.get(k)) for k in before if k != "network_class_name"}
    after["network_class_name"] = conf["architecture"]["network_class_name"]
    return {
        "source": plan.source,
        "configuration": configuration,
        "adaptation_plan": {k: v for k, v in asdict(plan).items() if k not in ("source", "arch_kwargs")},
        "changed": [{"key": k, "before": before[k], "after": after[k]} for k in before if before[k] != after[k]],
        "note": ("nnssl fine-tuning recipe (TaWald/nnUNet like_nnssl.py, adaptation_mode like_pretrained): the "
                 "pretraining network, spacing and recommended patch, ZScoreNormalization for every channel; "
                 "use_mask_for_norm set to the pretraining's False (the fork keeps the planned value). The "
                 "preprocessed data change: run nnUNetv2_preprocess with these plans"),
    }


__all__ = ["AdaptationPlan", "NNSSL_CLASSES", "apply_adaptation_plan", "check_against_entry", "parse_adaptation_plan",
           "read_adaptation_plan", "registry_adaptation_plan"]
