"""Run configurations as dataclasses that round-trip through JSON (checkpoints, ``config.json`` provenance)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

C = TypeVar("C", bound="JsonConfig")


class JsonConfig:
    """Mixin for a ``@dataclass`` run configuration: :meth:`to_dict` and :meth:`from_dict`.

    JSON has no tuples, so the fields named in ``TUPLE_FIELDS`` come back as tuples; unknown keys (from an
    older or newer version of the script) are ignored.
    """

    TUPLE_FIELDS: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        values = {k: v for k, v in data.items() if k in known}
        for key in cls.TUPLE_FIELDS:
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)
