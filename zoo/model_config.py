"""A model folder's ``config.json``, read with a size bound and checked field by field before anything uses it.

Data is never code and never an unbounded allocation: the file is read only up to :data:`MAX_CONFIG_BYTES`, must
hold a JSON object, and every field :func:`zoo.model_dir.entry_from_config` uses must have its type
(``architecture`` one of :data:`zoo.archs.ARCHITECTURES`, ``in_channels`` / ``num_classes`` positive integers
within :mod:`zoo.archs.limits`, ``arch_kwargs`` an object, ``first_conv`` / ``classifier`` / ``tags`` lists of
strings, ``input`` / ``license`` / ``paper`` / ``pretraining`` / ``output`` objects with the fields of their
registry dataclasses; ``output`` is optional, older files have none). The architecture spec itself then goes through
:func:`zoo.archs.size_estimate.check_architecture` (op classes from an allow-list, size limits by arithmetic).
Every problem is a :class:`~zoo.errors.CheckpointFormatError` naming the file, the key and the fix.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Mapping

from .errors import CheckpointFormatError
from .json_file import read_json_object

#: largest config.json read (a real one is a few kilobytes)
MAX_CONFIG_BYTES = 1 << 20
#: largest entry of ``input.patch_size`` / ``input.divisible_by``
MAX_PATCH_AXIS = 4096
#: most spatial axes in ``input.patch_size`` / ``input.spacing_mm``
MAX_AXES = 4

_FIX = "fix or remove that field of the file"


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``path``, read only up to :data:`MAX_CONFIG_BYTES`."""
    return read_json_object(path, what="model config", max_bytes=MAX_CONFIG_BYTES, error=CheckpointFormatError,
                            fix="a model folder's config.json describes the model in a few kilobytes: rewrite it "
                                "(zoo.model_dir.entry_config)")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:116] + " ..."


def _is_int(value: Any, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high


def _is_positive_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value)) and value > 0
    except OverflowError:
        return False


def _sequence_of(check: Callable[[Any], bool], max_len: int | None = None) -> Callable[[Any], bool]:
    def check_all(value: Any) -> bool:
        return (isinstance(value, (list, tuple)) and (max_len is None or len(value) <= max_len)
                and all(check(x) for x in value))

    return check_all


def _is_normalization(value: Any) -> bool:
    """null, or an object that makes a valid :class:`zoo.entry.Normalization` (finite numbers, known scheme)."""
    from .entry import Normalization

    if value is None:
        return True
    if not isinstance(value, Mapping) or not set(value) <= {f.name for f in dataclasses.fields(Normalization)}:
        return False
    finite = lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))  # noqa: E731
    clip = value.get("clip")
    if not (finite(value.get("mean")) and finite(value.get("std")) and isinstance(value.get("foreground", False), bool)
            and (clip is None or (isinstance(clip, list) and len(clip) == 2 and all(finite(c) and c is not None
                                                                                    for c in clip)))):
        return False
    try:
        Normalization(**value)
    except (TypeError, ValueError):
        return False
    return True


#: annotation of a registry dataclass field -> (check, what it wants)
_FIELD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "str | None": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "int": (lambda v: _is_int(v, MAX_PATCH_AXIS), f"an integer 1..{MAX_PATCH_AXIS}"),
    "tuple[int, ...]": (_sequence_of(lambda x: _is_int(x, MAX_PATCH_AXIS), MAX_AXES),
                        f"a list of at most {MAX_AXES} integers 1..{MAX_PATCH_AXIS}"),
    "tuple[float, ...] | None": (lambda v: v is None or _sequence_of(_is_positive_number, MAX_AXES)(v),
                                 f"null or a list of at most {MAX_AXES} positive finite numbers"),
    "tuple[str, ...]": (_sequence_of(lambda x: isinstance(x, str)), "a list of strings"),
    "Normalization | None": (_is_normalization, "null or a normalization object (scheme, mean, std, clip, foreground)"),
}


def _fail(where: str, key: str, wanted: str, value: Any) -> CheckpointFormatError:
    return CheckpointFormatError(f"{where}: {key} must be {wanted}, got {_short(value)}; {_FIX}", path=where, key=key)


def _check_object(where: str, key: str, value: Any, cls: type, skip: tuple[str, ...] = ()) -> None:
    """``value`` is null or an object whose keys are fields of dataclass ``cls``, each of the field's type."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise _fail(where, key, "an object", value)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, item in value.items():
        if name not in fields:
            raise CheckpointFormatError(f"{where}: {key}.{name} is not a field of {key} (fields: "
                                        f"{', '.join(fields)}); {_FIX}", path=where, key=f"{key}.{name}")
        if name in skip:
            continue
        check, wanted = _FIELD_TYPES.get(str(fields[name].type), (lambda v: isinstance(v, (str, int, float, bool)),
                                                                  "a JSON scalar"))
        if not check(item):
            raise _fail(where, f"{key}.{name}", wanted, item)


def _check_top_level(config: Mapping[str, Any], where: str) -> None:
    from .archs import ARCHITECTURES
    from .archs.limits import MAX_CHANNELS, MAX_CLASSES

    arch = config.get("architecture")
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise _fail(where, "architecture", f"one of {', '.join(sorted(ARCHITECTURES))}", arch)
    if not _is_int(config.get("in_channels"), MAX_CHANNELS):
        raise _fail(where, "in_channels", f"an integer 1..{MAX_CHANNELS:,}", config.get("in_channels"))
    classes = config.get("num_classes")
    if classes is not None and not _is_int(classes, MAX_CLASSES):
        raise _fail(where, "num_classes", f"null or an integer 1..{MAX_CLASSES:,}", classes)
    kwargs = config.get("arch_kwargs")
    if kwargs is not None and not (isinstance(kwargs, Mapping) and all(isinstance(k, str) for k in kwargs)):
        raise _fail(where, "arch_kwargs", "an object of builder arguments", kwargs)
    strings = _FIELD_TYPES["tuple[str, ...]"]
    for key in ("first_conv", "classifier", "tags"):
        if config.get(key) is not None and not strings[0](config[key]):
            raise _fail(where, key, strings[1], config[key])
    for key in ("name", "description", "base_model"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise _fail(where, key, "a string", config[key])


def _check_input(config: Mapping[str, Any], where: str) -> None:
    from .archs.limits import MAX_CHANNELS
    from .registry import InputContract

    inp = config.get("input")
    _check_object(where, "input", inp, InputContract, skip=("in_channels",))
    if isinstance(inp, Mapping) and "in_channels" in inp:
        if not _is_int(inp["in_channels"], MAX_CHANNELS):
            raise _fail(where, "input.in_channels", f"an integer 1..{MAX_CHANNELS:,}", inp["in_channels"])
        if inp["in_channels"] == config["in_channels"]:
            return
        raise CheckpointFormatError(f"{where}: input.in_channels = {inp['in_channels']} disagrees with in_channels = "
                                    f"{config['in_channels']}; make them equal", path=where, key="input.in_channels")


def _check_output(config: Mapping[str, Any], where: str) -> None:
    """``output`` (optional: files written before output contracts have none) is an :class:`OutputContract`."""
    from .archs.limits import MAX_CHANNELS
    from .registry import OUTPUT_KINDS, OutputContract

    out = config.get("output")
    _check_object(where, "output", out, OutputContract, skip=("kind", "channels"))
    if not isinstance(out, Mapping):
        return
    if "kind" in out and out["kind"] not in OUTPUT_KINDS:
        raise _fail(where, "output.kind", f"one of {', '.join(OUTPUT_KINDS)}", out["kind"])
    if out.get("channels") is not None and not _is_int(out["channels"], MAX_CHANNELS):
        raise _fail(where, "output.channels", f"null or an integer 1..{MAX_CHANNELS:,}", out["channels"])
    if out.get("kind") == "features" and out.get("activation") is not None:
        raise _fail(where, "output.activation", "null for kind 'features'", out["activation"])


def _check_spec(config: Mapping[str, Any], where: str) -> None:
    from .archs.limits import ArchitectureSpecError
    from .archs.size_estimate import BUILDER_ARGS, check_architecture

    def name_of(key: str) -> str:
        root = key.split("[", 1)[0].split(".", 1)[0]
        return f"{where}: {key}" if root in BUILDER_ARGS else f"{where}: arch_kwargs.{key}"

    spec = {**(config.get("arch_kwargs") or {}), "in_channels": config["in_channels"],
            "num_classes": config.get("num_classes")}
    try:
        check_architecture(config["architecture"], spec, name_of=name_of)
    except ArchitectureSpecError as err:
        key = err.key[len(f"{where}: "):] if (err.key or "").startswith(f"{where}: ") else err.key
        raise CheckpointFormatError(f"{err}; fix that value in the file (zoo.archs.ops lists the allowed classes, "
                                    "zoo.archs.limits the limits)", path=where, key=key) from None


def check_config(config: Any, where: str = "config.json") -> None:
    """Refuse a ``config.json`` mapping with any field of the wrong type, or an architecture spec that names a
    class outside the allow-list or is above the size limits; ``where`` names the file in messages."""
    from .registry import License, Paper, Pretraining

    if not isinstance(config, Mapping):
        raise CheckpointFormatError(f"{where} must hold a JSON object, got {type(config).__name__}", path=where)
    _check_top_level(config, where)
    _check_input(config, where)
    for key, cls in (("license", License), ("paper", Paper), ("pretraining", Pretraining)):
        _check_object(where, key, config.get(key), cls)
    _check_output(config, where)
    _check_spec(config, where)
