"""What a weight transfer did, tensor by tensor: :class:`TransferReport`.

One :class:`TransferRow` per target tensor (canonical names: nnU-Net's alias names ``all_modules.*`` and
``decoder.encoder.*`` carry the same tensors and are not repeated), one :class:`UnusedRow` per checkpoint
tensor that initialised nothing, with the reason. Totals: the share of target parameters initialised from
the checkpoint and the share of checkpoint parameters used. Nothing is dropped without a row saying why.

``action`` of a row:

* ``copy``: the checkpoint tensor as is;
* a ``+``-joined list of what was done to it: ``permute`` (kernel axes reordered to the target's axis order),
  ``realign`` (taken from another position: stage alignment, another encoder family, or the U-Net path of a
  UNet++), ``channels``
  (input channels inflated or reduced), ``kernel`` (kernel axis collapsed, inflated, cropped or padded),
  ``transpconv`` (transposed-convolution kernel fitted to another stride), ``axes`` (a spatial axis dropped or
  added), ``slice`` (widths differ, leading channels copied), ``dense`` (a U-Net decoder stage's ``[upsampled,
  skip]`` input put into a UNet++ node with more dense-skip inputs, which start at zero; or dropped the other
  way), ``dtype``;
* ``skip``: a counterpart exists but was not used (width mismatch, segmentation head, ...), see ``detail``;
* ``new``: the checkpoint has no counterpart; the tensor keeps its fresh initialisation.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import AdaptationError

INITIALISED = "initialised"

#: below this share of the target's parameters initialised from the checkpoint, the headline warns
LOW_SHARE = 0.5

_CAUSES = {
    "missing_stages": "target stages with no counterpart in the checkpoint",
    "fewer_convolutions": "target convolutions with no counterpart (the checkpoint's stages have fewer)",
    "width_mismatch": "skipped because the widths differ",
    "off_unet_path": "UNet++ nodes off the U-Net path",
    "families_differ": "encoder families differ",
    "other": "no counterpart in the checkpoint",
}


def _cause(row: "TransferRow") -> str:
    """The cause of a target tensor not being initialised, from its ``detail``."""
    d = row.detail
    if d.startswith("width mismatch"):
        return "width_mismatch"
    if "off the U-Net path" in d:
        return "off_unet_path"
    if "encoder families differ" in d:
        return "families_differ"
    if (("encoder has" in d and "stages" in d) or ("decoder has" in d and "resolutions" in d)
            or ("has no node" in d)):
        return "missing_stages"
    if "convolutions" in d:
        return "fewer_convolutions"
    return "other"


def _part(row: "TransferRow") -> str:
    """``encoder stage N``, ``encoder stem``, ``decoder``, ``segmentation heads`` or the key's first module."""
    if row.head:
        return "segmentation heads"
    parts = row.target_key.split(".")
    if parts[0] == "encoder" and len(parts) > 2 and parts[1] == "stages" and parts[2].isdigit():
        return f"encoder stage {int(parts[2])}"
    if parts[0] == "encoder" and len(parts) > 1 and parts[1] == "stem":
        return "encoder stem"
    return parts[0]


def _part_order(part: str) -> tuple:
    if part == "encoder stem":
        return (0, 0)
    if part.startswith("encoder stage "):
        return (1, int(part.rpartition(" ")[2]))
    return {"decoder": (3, 0), "segmentation heads": (4, 0)}.get(part, (2, part))


def _ranges(numbers: list[str]) -> str:
    """``['3', '4', '5']`` -> ``'3-5'``."""
    ns = sorted(int(n) for n in numbers)
    out, start = [], ns[0]
    for a, b in zip(ns, ns[1:] + [None]):
        if b != a + 1:
            out.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ", ".join(out)


@dataclass
class TransferRow:
    target_key: str
    source_key: str | None
    action: str
    target_shape: tuple[int, ...]
    source_shape: tuple[int, ...] | None
    params: int
    detail: str = ""
    head: bool = False

    @property
    def initialised(self) -> bool:
        """True when the tensor's values come from the checkpoint."""
        return self.action not in ("skip", "new")


@dataclass
class UnusedRow:
    source_key: str
    source_shape: tuple[int, ...]
    params: int
    reason: str
    head: bool = False


def _group(key: str) -> str:
    """``encoder.stages.4.0.convs.1.conv.weight`` -> ``encoder.stages.4``."""
    parts = key.split(".")
    return ".".join(parts[:3]) if len(parts) > 3 else key


def _shape(shape: tuple[int, ...] | None) -> str:
    return "-" if shape is None else "x".join(str(s) for s in shape) or "scalar"


@dataclass
class TransferReport:
    """Per-tensor record of a transfer from ``source`` into ``target``. ``str()`` is a readable table,
    :meth:`to_json` the machine-readable form, :meth:`check` the ``strict`` / threshold gate."""

    source: str
    target: str
    rows: list[TransferRow] = field(default_factory=list)
    unused: list[UnusedRow] = field(default_factory=list)
    source_params: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------- totals
    @property
    def target_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def initialised_params(self) -> int:
        return sum(r.params for r in self.rows if r.initialised)

    @property
    def share_initialised(self) -> float:
        """Share of the target's parameters (all tensors, heads included) initialised from the checkpoint."""
        total = self.target_params
        return self.initialised_params / total if total else 0.0

    @property
    def share_initialised_body(self) -> float:
        """The same share without the segmentation heads (which nnU-Net never transfers)."""
        body = [r for r in self.rows if not r.head]
        total = sum(r.params for r in body)
        return sum(r.params for r in body if r.initialised) / total if total else 0.0

    @property
    def used_params(self) -> int:
        return self.source_params - sum(u.params for u in self.unused)

    @property
    def share_used(self) -> float:
        """Share of the checkpoint's parameters that initialised at least one target tensor."""
        return self.used_params / self.source_params if self.source_params else 0.0

    def counts(self) -> dict[str, int]:
        """Number of target tensors per action."""
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.action] = out.get(r.action, 0) + 1
        return dict(sorted(out.items()))

    def rows_with(self, action: str) -> list[TransferRow]:
        """Rows whose action is ``action`` or contains it (``'kernel'`` matches ``'permute+kernel'``)."""
        return [r for r in self.rows if r.action == action or action in r.action.split("+")]

    def totals(self) -> dict[str, Any]:
        return {
            "target_tensors": len(self.rows),
            "target_params": self.target_params,
            "initialised_params": self.initialised_params,
            "share_initialised": self.share_initialised,
            "share_initialised_without_heads": self.share_initialised_body,
            "source_params": self.source_params,
            "used_params": self.used_params,
            "share_used": self.share_used,
            "actions": self.counts(),
            "initialised_tensors": self.initialised_tensors,
            "share_initialised_by_part": self.shares_by_part(),
            "low_share": self.low_share,
            "low_share_threshold": LOW_SHARE,
            "low_share_causes": self.low_share_causes(),
            "low_share_warning": self.low_share_warning(self.options.get("plans_file")),
        }

    # ----------------------------------------------------------------- gate
    def check(self, strict: bool = True, min_share: float | None = None) -> "TransferReport":
        """Raise :class:`AdaptationError` when ``strict`` and a checkpoint tensor outside the segmentation
        heads went unused, or when the share of initialised target parameters is below ``min_share``."""
        problems = []
        if strict:
            lost = [u for u in self.unused if not u.head]
            if lost:
                groups: dict[str, list[UnusedRow]] = {}
                for u in lost:
                    groups.setdefault(_group(u.source_key), []).append(u)
                lines = "; ".join(f"{g} ({len(us)} tensors: {us[0].reason})" for g, us in list(groups.items())[:8])
                more = f"; and {len(groups) - 8} more groups" if len(groups) > 8 else ""
                problems.append(
                    f"{len(lost)} checkpoint tensors outside the segmentation heads would go unused "
                    f"({sum(u.params for u in lost):,} parameters): {lines}{more}"
                )
        if min_share is not None:
            if not 0.0 <= float(min_share) <= 1.0:
                raise AdaptationError(f"min_share must be between 0 and 1, got {min_share!r}")
            if self.share_initialised < float(min_share):
                problems.append(
                    f"only {self.share_initialised:.3%} of the target's parameters ({self.initialised_params:,} of "
                    f"{self.target_params:,}) would be initialised from the checkpoint, below the required "
                    f"{float(min_share):.3%}"
                )
        if problems:
            raise AdaptationError(
                f"transfer {self.source} -> {self.target} refused: " + " and ".join(problems)
                + ". Nothing was written."
            )
        return self

    # ----------------------------------------------------------------- output
    def to_dict(self) -> dict[str, Any]:
        def row(obj: Any) -> dict[str, Any]:
            d = asdict(obj)
            for k, v in d.items():
                if isinstance(v, tuple):
                    d[k] = list(v)
            return d

        return {
            "source": self.source,
            "target": self.target,
            "options": self.options,
            "totals": self.totals(),
            "rows": [row(r) | {"initialised": r.initialised} for r in self.rows],
            "unused": [row(u) for u in self.unused],
        }

    def to_json(self, path: str | os.PathLike | None = None, indent: int | None = 2) -> str:
        """The report as JSON; also written (atomically) to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            from ..hub.integrity import atomic_path

            with atomic_path(path) as tmp:
                tmp.write_text(text + "\n")
        return text

    # ----------------------------------------------------------------- headline
    @property
    def initialised_tensors(self) -> int:
        return sum(1 for r in self.rows if r.initialised)

    @property
    def low_share(self) -> bool:
        """True when less than :data:`LOW_SHARE` of the target's parameters come from the checkpoint."""
        return bool(self.rows) and self.share_initialised < LOW_SHARE

    def shares_by_part(self) -> list[dict[str, Any]]:
        """The initialised share per part of the target: ``encoder stem``, ``encoder stage N`` (in order),
        ``decoder``, ``segmentation heads`` (and any other top-level module), each with its tensor counts."""
        parts: dict[str, dict[str, Any]] = {}
        for r in self.rows:
            name = _part(r)
            d = parts.setdefault(name, {"part": name, "tensors": 0, "initialised_tensors": 0, "params": 0,
                                        "initialised_params": 0})
            d["tensors"] += 1
            d["params"] += r.params
            if r.initialised:
                d["initialised_tensors"] += 1
                d["initialised_params"] += r.params
        out = sorted(parts.values(), key=lambda d: _part_order(d["part"]))
        for d in out:
            d["share"] = d["initialised_params"] / d["params"] if d["params"] else 0.0
        return out

    def low_share_causes(self) -> dict[str, dict[str, Any]]:
        """Why target tensors outside the segmentation heads were not initialised, by cause (``missing_stages``,
        ``fewer_convolutions``, ``width_mismatch``, ``off_unet_path``, ``families_differ``, ``other``): tensor
        and parameter counts and the share of the target's parameters."""
        total = self.target_params
        out: dict[str, dict[str, Any]] = {}
        for r in self.rows:
            if r.initialised or r.head:
                continue
            d = out.setdefault(_cause(r), {"tensors": 0, "params": 0})
            d["tensors"] += 1
            d["params"] += r.params
        for d in out.values():
            d["share_of_target"] = d["params"] / total if total else 0.0
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["params"]))

    def low_share_warning(self, plans: str | None = None) -> str | None:
        """A warning (why, and what would raise the share) when :attr:`low_share`, else ``None``. ``plans``:
        the plans file to name in the suggested ``zoo plan`` command."""
        if not self.low_share:
            return None
        causes = self.low_share_causes()
        why = [f"{_CAUSES.get(c, c)}: {d['tensors']} tensors, {d['share_of_target']:.2%} of the target's parameters"
               for c, d in causes.items()]
        missing = [d["part"].rpartition(" ")[2] for d in self.shares_by_part()
                   if d["part"].startswith("encoder stage ") and d["initialised_tensors"] == 0]
        if missing and "missing_stages" in causes:
            why[list(causes).index("missing_stages")] += f" (encoder stages {_ranges(missing)} are all new)"
        fixes = []
        if {"missing_stages", "fewer_convolutions", "width_mismatch"} & set(causes):
            conf = self.options.get("configuration", "3d_fullres")
            fixes.append(f"`zoo plan {self.source} --plans {plans or 'nnUNetPlans.json'} -c {conf} -o "
                         f"nnUNetPlans_{self.source}.json` rewrites the configuration to the checkpoint's topology "
                         "(then export with those plans: the whole network comes from the checkpoint)")
        if "width_mismatch" in causes and self.options.get("widths") != "slice":
            fixes.append("widths='slice' (CLI --widths slice) copies the leading channels of the tensors whose "
                         "widths differ")
        if "families_differ" in causes:
            fixes.append("cross_architecture=True transfers between encoder families")
        if "off_unet_path" in causes:
            fixes.append("UNet++ nodes off the U-Net path can only come from a UNet++ checkpoint")
        text = (f"WARNING: only {self.share_initialised:.2%} of the target's parameters come from the checkpoint "
                f"(below {LOW_SHARE:.0%}); the rest keeps its fresh initialisation. Why: "
                + ("; ".join(why) if why else "the target's own tensors are new") + ".")
        if fixes:
            text += " To raise it: " + "; or ".join(fixes) + "."
        return text

    def summary(self, plans: str | None = None) -> str:
        """The headline: share of the target initialised from the checkpoint (overall, then per part), then the
        share of the checkpoint used, then a warning when the target share is low. ``plans``: the plans file to
        name in the warning's ``zoo plan`` suggestion."""
        acts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        parts = self.shares_by_part()
        lines = [
            f"{self.source} -> {self.target}",
            f"target initialised from the checkpoint: {self.share_initialised:.2%} of parameters "
            f"({self.initialised_tensors} of {len(self.rows)} tensors; {self.initialised_params:,} of "
            f"{self.target_params:,} parameters; {self.share_initialised_body:.2%} without segmentation heads)",
        ]
        stages = [d for d in parts if d["part"].startswith("encoder stage ")]
        if stages:
            lines.append("  encoder stages: " + ", ".join(
                f"{d['part'].rpartition(' ')[2]} {d['share']:.0%}" for d in stages))
        for d in parts:
            if d in stages:
                continue
            note = "; not transferred unless heads=True / --heads" if d["part"] == "segmentation heads" else ""
            lines.append(f"  {d['part']}: {d['share']:.2%} ({d['initialised_tensors']} of {d['tensors']} "
                         f"tensors{note})")
        lines.append(f"checkpoint used: {self.share_used:.2%} of its parameters ({self.used_params:,} of "
                     f"{self.source_params:,})")
        lines.append(f"tensors: {acts}")
        warning = self.low_share_warning(plans or self.options.get("plans_file"))
        if warning:
            lines.append(warning)
        elif self._width_hint():
            lines.append(self._width_hint().strip())
        return "\n".join(lines)

    def _width_hint(self) -> str:
        n = sum(1 for r in self.rows if r.action == "skip" and r.detail.startswith("width mismatch"))
        if not n:
            return ""
        return (f" {n} tensors were skipped because their widths differ: widths='slice' (CLI --widths slice) copies "
                "the leading channels, or pretrain with this plan's own encoder for a full transfer.")

    def table(self) -> str:
        header = ["target tensor", "checkpoint tensor", "action", "checkpoint shape", "target shape", "params",
                  "detail"]
        body = []
        for r in self.rows:
            src = r.source_key if r.source_key is not None else "-"
            if r.source_key == r.target_key:
                src = "(same)"
            body.append([r.target_key, src, r.action, _shape(r.source_shape), _shape(r.target_shape),
                         f"{r.params:,}", r.detail])
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header) - 1)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
        lines = [fmt.format(*header), fmt.format(*["-" * w for w in widths], "------")]
        lines += [fmt.format(*row).rstrip() for row in body]
        return "\n".join(lines)

    def __str__(self) -> str:
        parts = [self.summary(), "", self.table()]
        if self.unused:
            parts += ["", f"Checkpoint tensors not used ({len(self.unused)}):"]
            width = max(len(u.source_key) for u in self.unused)
            parts += [f"  {u.source_key:<{width}}  {_shape(u.source_shape):<16} {u.params:>12,}  {u.reason}"
                      for u in self.unused]
        parts += ["", "Alias names (all_modules.*, decoder.encoder.*) share these tensors and are not repeated."]
        return "\n".join(parts)
