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

    def summary(self) -> str:
        acts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        return (
            f"{self.source} -> {self.target}: {self.share_initialised:.2%} of target parameters initialised from "
            f"the checkpoint ({self.share_initialised_body:.2%} without segmentation heads; "
            f"{self.initialised_params:,} of {self.target_params:,}); {self.share_used:.2%} of the checkpoint's "
            f"parameters used ({self.used_params:,} of {self.source_params:,}). Tensors: {acts}.{self._width_hint()}"
        )

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
        parts = [f"Transfer {self.source} -> {self.target}", "", self.table()]
        if self.unused:
            parts += ["", f"Checkpoint tensors not used ({len(self.unused)}):"]
            width = max(len(u.source_key) for u in self.unused)
            parts += [f"  {u.source_key:<{width}}  {_shape(u.source_shape):<16} {u.params:>12,}  {u.reason}"
                      for u in self.unused]
        parts += ["", "Alias names (all_modules.*, decoder.encoder.*) share these tensors and are not repeated.",
                  self.summary()]
        return "\n".join(parts)
