"""The checkpoint's input contract against a plan's: intensity normalisation per channel, and target spacing.

``compare_input(entry, plans, configuration)`` sets the registry's record of the pretraining input
(:class:`zoo.entry.Normalization`, ``spacing_mm``) beside what nnU-Net's preprocessing will do with the plan:
the configuration's ``normalization_schemes`` with the plans' ``foreground_intensity_properties_per_channel``
(nnU-Net's ``CTNormalization`` clips to ``percentile_00_5`` / ``percentile_99_5`` and z-scores with ``mean`` /
``std``; ``ZScoreNormalization`` z-scores each image, in
nnunetv2/preprocessing/normalization/default_normalization_schemes.py) and the configuration's ``spacing``.
``zoo adapt`` and ``zoo export-nnunet`` print :attr:`InputComparison.text`, with a warning when they differ.

``match_input(entry, plans, configuration, spacing=...)`` is the fix, used by ``zoo plan --match-input``: every
channel gets the scheme that reproduces the checkpoint's (``CTNormalization`` with the checkpoint's mean, std and
clip range written as the intensity properties, for a fixed CT map; ``ZScoreNormalization`` for a per-volume
z-score) and, on request, the configuration the checkpoint's spacing. The preprocessed data then differ from the
plan's, so the affected ``data_identifier`` get a suffix (run ``nnUNetv2_preprocess`` for the new plans).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ..entry import ModelEntry, Normalization
from .plans import PlanError, load_plans, plan_axis_order, resolve_configuration

#: the plans' key for the per-channel foreground statistics (and its legacy name, still read by nnU-Net)
PROPERTIES_KEYS = ("foreground_intensity_properties_per_channel", "foreground_intensity_properties_by_modality")
#: appended to a ``data_identifier`` whose preprocessed data change under :func:`match_input`
DATA_SUFFIX = "_medzoo_input"


def _close(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-4, abs_tol=1e-3)


def _properties(plans: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in PROPERTIES_KEYS:
        if isinstance(plans.get(key), Mapping):
            return plans[key]
    return {}


@dataclass(frozen=True)
class ChannelComparison:
    """One input channel: the checkpoint's normalisation and what the plan's scheme does with it."""

    channel: int
    name: str
    plan_scheme: str
    plan_properties: dict | None
    checkpoint: str
    plan: str
    differs: bool | None  # None: the registry has no machine-readable normalisation to compare


@dataclass(frozen=True)
class InputComparison:
    """The checkpoint's input contract beside the plan's (see module docstring)."""

    model: str
    configuration: str
    axis_order: str
    checkpoint_intensity: str
    checkpoint_normalization: Normalization | None
    channels: tuple[ChannelComparison, ...]
    checkpoint_spacing: tuple[float, ...] | None  # in the plan's axis order
    plan_spacing: tuple[float, ...] | None
    spacing_differs: bool | None  # None: the checkpoint has no fixed spacing (native spacing)

    @property
    def intensity_differs(self) -> bool:
        return any(c.differs for c in self.channels)

    @property
    def differs(self) -> bool:
        return self.intensity_differs or bool(self.spacing_differs)

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.intensity_differs:
            chans = ", ".join(str(c.channel) for c in self.channels if c.differs)
            out.append(f"the plan normalises channel(s) {chans} differently from {self.model}'s pretraining input "
                       f"({self.checkpoint_intensity}): the weights were learned on another intensity distribution")
        if self.spacing_differs:
            out.append(f"the plan's spacing {_mm(self.plan_spacing)} differs from the pretraining spacing "
                       f"{_mm(self.checkpoint_spacing)}")
        return out

    @property
    def text(self) -> str:
        """The side-by-side block printed by ``zoo adapt`` / ``zoo export-nnunet``."""
        rows = [("", f"checkpoint {self.model}", f"plan ({self.configuration})")]
        for c in self.channels:
            rows.append((f"channel {c.channel} ({c.name})", c.checkpoint, c.plan))
        native = "native spacing of the pretraining data (no resampling)"
        rows.append((f"spacing ({','.join(self.axis_order)}) mm",
                     native if self.checkpoint_spacing is None else _mm(self.checkpoint_spacing),
                     _mm(self.plan_spacing) if self.plan_spacing is not None else "not given"))
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        lines = ["input contract (pretraining vs plan):"]
        lines += [f"  {a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]
        for w in self.warnings:
            lines.append(f"WARNING: {w}")
        if self.differs:
            lines.append(f"  `zoo plan {self.model} --plans PLANS -o OUT --match-input"
                         f"{' --match-spacing' if self.spacing_differs else ''}` rewrites the plan to the "
                         "checkpoint's input (then run nnUNetv2_preprocess for the new plans)")
        elif self.checkpoint_normalization is not None:
            lines.append("  the plan reproduces the checkpoint's intensity normalisation")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(differs=self.differs, intensity_differs=self.intensity_differs, warnings=self.warnings)
        return d


def _mm(spacing: Any) -> str:
    return " x ".join(f"{float(s):g}" for s in spacing)


def _plan_side(scheme: str, props: Mapping[str, Any] | None, use_mask: bool) -> str:
    if scheme == "CTNormalization":
        if not props:
            return "CTNormalization (no intensity properties in the plans)"
        try:
            return (f"CTNormalization: clip [{float(props['percentile_00_5']):g}, {float(props['percentile_99_5']):g}], "
                    f"then (x - ({float(props['mean']):g})) / {float(props['std']):g}")
        except (KeyError, TypeError, ValueError):
            return "CTNormalization (incomplete intensity properties)"
    if scheme == "ZScoreNormalization":
        return "ZScoreNormalization: per-image z-score" + (" over the foreground mask" if use_mask else "")
    return scheme


def _channel_differs(norm: Normalization, scheme: str, props: Mapping[str, Any] | None, use_mask: bool) -> bool:
    if scheme != norm.nnunet_scheme:
        return True
    if not norm.fixed:
        return bool(use_mask) != norm.foreground
    assert norm.clip is not None
    try:
        plan = (props["mean"], props["std"], props["percentile_00_5"], props["percentile_99_5"])  # type: ignore[index]
        return not all(_close(a, b) for a, b in zip(plan, (norm.mean, norm.std, *norm.clip)))
    except (KeyError, TypeError, ValueError):
        return True


def _checkpoint_spacing(entry: ModelEntry, plans: Mapping[str, Any], dims: int) -> tuple[float, ...] | None:
    spacing = entry.input.spacing_mm
    if spacing is None or len(spacing) != dims:
        return None
    src, tgt = entry.input.axis_order[-dims:], plan_axis_order(plans, dims)
    return tuple(float(spacing[src.index(letter)]) for letter in tgt)


def compare_input(entry: ModelEntry | str, plans: Any, configuration: str = "3d_fullres") -> InputComparison:
    """The checkpoint ``entry``'s input contract beside ``configuration`` of ``plans`` (a path or a dict)."""
    if not isinstance(entry, ModelEntry):
        from ..weights import resolve_entry

        entry, _ = resolve_entry(entry)
    plans = load_plans(plans)
    conf = resolve_configuration(plans, configuration)
    schemes = list(conf.get("normalization_schemes") or [])
    masks = list(conf.get("use_mask_for_norm") or [])
    props_all = _properties(plans)
    norm = entry.input.normalization
    names = entry.input.channel_names
    channels = []
    for i, scheme in enumerate(schemes):
        props = props_all.get(str(i), props_all.get(i))
        props = dict(props) if isinstance(props, Mapping) else None
        use_mask = bool(masks[i]) if i < len(masks) else False
        checkpoint = norm.describe if norm is not None else f"{entry.input.intensity} (not machine-readable)"
        channels.append(ChannelComparison(
            channel=i, name=names[i] if i < len(names) else (names[0] if names else "?"), plan_scheme=str(scheme),
            plan_properties=props, checkpoint=checkpoint, plan=_plan_side(str(scheme), props, use_mask),
            differs=None if norm is None else _channel_differs(norm, str(scheme), props, use_mask)))
    plan_spacing = conf.get("spacing")
    plan_spacing = tuple(float(s) for s in plan_spacing) if isinstance(plan_spacing, list) else None
    dims = len(plan_spacing) if plan_spacing else 3
    ck_spacing = _checkpoint_spacing(entry, plans, dims)
    spacing_differs = (None if ck_spacing is None or plan_spacing is None else
                       not all(math.isclose(a, b, rel_tol=0.01) for a, b in zip(ck_spacing, plan_spacing)))
    return InputComparison(
        model=entry.name, configuration=configuration, axis_order=plan_axis_order(plans, dims),
        checkpoint_intensity=entry.input.intensity, checkpoint_normalization=norm, channels=tuple(channels),
        checkpoint_spacing=ck_spacing, plan_spacing=plan_spacing, spacing_differs=spacing_differs)


def suffix_data_identifier(conf: dict) -> None:
    """Mark a configuration whose preprocessing medzoo changed: ``data_identifier`` gets ``DATA_SUFFIX`` (once), so
    nnU-Net preprocesses into a new folder instead of reusing data prepared the old way."""
    ident = conf.get("data_identifier")
    if isinstance(ident, str) and not ident.endswith(DATA_SUFFIX):
        conf["data_identifier"] = ident + DATA_SUFFIX


def match_input(entry: ModelEntry, plans: dict, configuration: str = "3d_fullres", *, spacing: bool = False) -> dict:
    """Rewrite ``plans`` (a dict, in place) so that nnU-Net's preprocessing reproduces ``entry``'s pretraining
    input (see module docstring); returns the record stored under the plans' ``medzoo_input`` key."""
    norm = entry.input.normalization
    if norm is None:
        raise PlanError(f"{entry.name!r} has no machine-readable intensity normalisation in the registry "
                        f"({entry.input.intensity!r}); --match-input cannot rewrite the plan")
    before = compare_input(entry, plans, configuration)
    conf = plans["configurations"][configuration]
    resolved = resolve_configuration(plans, configuration)
    n = len(resolved.get("normalization_schemes") or [])
    if n == 0:
        raise PlanError(f"configuration {configuration!r} has no normalization_schemes")
    record: dict[str, Any] = {"model": entry.name, "configuration": configuration,
                              "checkpoint_normalization": asdict(norm), "changed": []}
    if norm.fixed:
        assert norm.clip is not None
        key = next((k for k in PROPERTIES_KEYS if isinstance(plans.get(k), dict)), PROPERTIES_KEYS[0])
        props = plans.setdefault(key, {})
        for i in range(n):
            old = dict(props.get(str(i)) or {})
            new = {**old, "mean": float(norm.mean), "std": float(norm.std),  # type: ignore[arg-type]
                   "percentile_00_5": norm.clip[0], "percentile_99_5": norm.clip[1]}
            props[str(i)] = new
            record["changed"].append({"key": f"{key}.{i}", "before": old, "after": new})
        record["note"] = (f"CTNormalization with these properties clips to [{norm.clip[0]:g}, {norm.clip[1]:g}] and "
                          f"computes (x - ({norm.mean:g})) / {norm.std:g}: {entry.name}'s pretraining input. The "
                          "plans' intensity properties are shared by every configuration")
    else:
        record["note"] = f"ZScoreNormalization per image: {entry.name}'s per-volume z-score"
    schemes = [norm.nnunet_scheme] * n
    if list(resolved.get("normalization_schemes") or []) != schemes:
        record["changed"].append({"key": f"configurations.{configuration}.normalization_schemes",
                                  "before": resolved.get("normalization_schemes"), "after": schemes})
        conf["normalization_schemes"] = schemes
    if not norm.fixed:
        masks = [norm.foreground] * n
        if list(resolved.get("use_mask_for_norm") or []) != masks:
            record["changed"].append({"key": f"configurations.{configuration}.use_mask_for_norm",
                                      "before": resolved.get("use_mask_for_norm"), "after": masks})
            conf["use_mask_for_norm"] = masks
    if spacing:
        if before.checkpoint_spacing is None:
            raise PlanError(f"{entry.name!r} was pretrained at the native spacing of its data (no fixed spacing in "
                            "the registry); --match-spacing has nothing to write")
        new_spacing = list(before.checkpoint_spacing)
        record["changed"].append({"key": f"configurations.{configuration}.spacing",
                                  "before": list(before.plan_spacing or []), "after": new_spacing})
        conf["spacing"] = new_spacing
    # the preprocessed data change: new data identifiers so that nnU-Net does not reuse the old ones
    intensity_changed = any(c["key"].startswith(PROPERTIES_KEYS) or "normalization" in c["key"]
                            or "use_mask" in c["key"] for c in record["changed"])
    targets = list(plans["configurations"].values()) if intensity_changed and norm.fixed else [conf]
    if record["changed"]:
        if "data_identifier" not in conf:
            conf["data_identifier"] = resolved.get("data_identifier")
        for c in targets:
            suffix_data_identifier(c)
        record["data_identifier"] = conf["data_identifier"]
        record["preprocess"] = "the preprocessed data change: run nnUNetv2_preprocess with these plans"
    return record
