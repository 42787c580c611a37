"""The only classes a spec may name: torch's own convolutions, norms, dropouts and nonlinearities, by table.

Data is never code. ``conv_op``, ``norm_op``, ``dropout_op`` and ``nonlin`` read from a file (a model folder's
``config.json``, an nnU-Net ``plans.json``) are looked up in the fixed table below: nothing is imported by name
and no callable outside the table is ever reached. A name outside the table, or a class in the wrong role (a
nonlinearity given as ``conv_op``), is refused with :class:`~zoo.archs.limits.ArchitectureSpecError` listing
what is allowed. Classes passed by Python code are accepted only when they are in the table too.

=============  ======================================================================================
role           classes (``torch.nn.<Name>``)
=============  ======================================================================================
``conv_op``    Conv1d, Conv2d, Conv3d
``norm_op``    BatchNorm1d/2d/3d, InstanceNorm1d/2d/3d, GroupNorm, LayerNorm
``dropout_op`` Dropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout
``nonlin``     ReLU, LeakyReLU, PReLU, ELU, GELU, SiLU, Mish, Tanh, Sigmoid, Softplus, Hardswish,
               Hardsigmoid, ReLU6, SELU, CELU
=============  ======================================================================================

Each class is accepted under every spelling nnU-Net plans use: ``torch.nn.<Name>`` (``torch.nn.LeakyReLU``),
``torch.nn.modules.<Name>`` and ``torch.nn.modules.<file>.<Name>`` (``torch.nn.modules.conv.Conv3d``,
``torch.nn.modules.instancenorm.InstanceNorm3d``, ``torch.nn.modules.activation.LeakyReLU``: what nnU-Net's
planners write, ``cls.__module__ + '.' + cls.__name__``).

Their keyword arguments (``norm_op_kwargs``, ``dropout_op_kwargs``, ``nonlin_kwargs``) may hold only JSON
scalars (numbers, booleans, strings, null), under names the class's ``__init__`` accepts (read with
:func:`inspect.signature`; nothing is called), each of the type of its default (``affine`` a bool, ``eps`` a
finite number, ``p`` in [0, 1], ...). ``device`` and ``dtype`` are never accepted, nor the channel count the
blocks pass positionally to a norm.

The residual block of ResidualEncoderUNet (``block``) is chosen by the same kind of table
(:data:`BLOCK_SPELLINGS`).
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from functools import lru_cache
from typing import Any, Mapping

from torch import nn

from .limits import MAX_CHANNELS, ArchitectureSpecError

#: role -> {file under torch/nn/modules: classes}
_TABLE: dict[str, dict[str, tuple[type, ...]]] = {
    "conv_op": {"conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d)},
    "norm_op": {
        "batchnorm": (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
        "instancenorm": (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d),
        "normalization": (nn.GroupNorm, nn.LayerNorm),
    },
    "dropout_op": {
        "dropout": (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout),
    },
    "nonlin": {
        "activation": (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid,
                       nn.Softplus, nn.Hardswish, nn.Hardsigmoid, nn.ReLU6, nn.SELU, nn.CELU),
    },
}

#: the spec keys that name a class, in the order nnU-Net lists them (``_kw_requires_import``)
ROLES: tuple[str, ...] = tuple(_TABLE)

#: the ``*_kwargs`` key of each role
KWARGS_KEY = {"norm_op": "norm_op_kwargs", "dropout_op": "dropout_op_kwargs", "nonlin": "nonlin_kwargs"}

_ROLE_WORDS = {"conv_op": "convolutions", "norm_op": "normalisations", "dropout_op": "dropouts",
               "nonlin": "nonlinearities"}

#: number of spatial axes of each convolution
CONV_DIMS: dict[type, int] = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}


def _spellings(file: str, cls: type) -> set[str]:
    name = cls.__name__
    return {f"torch.nn.{name}", f"torch.nn.modules.{name}", f"torch.nn.modules.{file}.{name}",
            f"{cls.__module__}.{name}"}


#: role -> {accepted dotted name: class}
ALLOWED: dict[str, dict[str, type]] = {
    role: {spelling: cls for file, classes in files.items() for cls in classes for spelling in _spellings(file, cls)}
    for role, files in _TABLE.items()
}
_CLASSES: dict[str, frozenset[type]] = {role: frozenset(names.values()) for role, names in ALLOWED.items()}

#: dotted names accepted for ``block`` (ResidualEncoderUNet) -> the block medzoo builds
BLOCK_SPELLINGS: dict[str, str] = {
    spelling: name
    for name in ("BasicBlockD", "BottleneckD")
    for spelling in (name, f"dynamic_network_architectures.building_blocks.residual.{name}",
                     f"zoo.archs.nnunet_blocks.{name}")
}

#: string-valued op arguments with a fixed set of values
_CHOICES: dict[tuple[type, str], tuple[str, ...]] = {(nn.GELU, "approximate"): ("none", "tanh")}
#: numeric op arguments with a range
_RANGES: dict[str, tuple[float, float]] = {"p": (0.0, 1.0)}
_MAX_STRING = 64
_MAX_REPR = 120


def shown(value: Any) -> str:
    """``repr(value)``, cut to a readable length (a value from a file may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 4] + " ..."


def canonical_name(cls: type) -> str:
    """``torch.nn.<Name>`` of a class in the table."""
    return f"torch.nn.{cls.__name__}"


def role_of(cls: type) -> str | None:
    for role, classes in _CLASSES.items():
        if cls in classes:
            return role
    return None


def allowed_names(role: str) -> list[str]:
    """The short spellings (``torch.nn.<Name>``) of the classes allowed for ``role``."""
    return [canonical_name(cls) for files in _TABLE[role].values() for cls in files]


def _refuse(value: Any, role: str, where: str, cls: type | None = None) -> ArchitectureSpecError:
    other = role_of(cls) if cls is not None else None
    if other is None and isinstance(value, str):
        other = next((r for r, names in ALLOWED.items() if value in names), None)
    hint = f" ({shown(value)} is one of the {_ROLE_WORDS[other]}, allowed as {other})" if other else ""
    return ArchitectureSpecError(where, (
        f"{where} = {shown(value)} is not one of the allowed {_ROLE_WORDS[role]}{hint}: allowed are "
        f"{', '.join(allowed_names(role))} (also spelled torch.nn.modules.<file>.<Name>, as nnU-Net writes them). "
        "Nothing named in a spec is imported; fix the name"
    ))


def resolve_op(value: Any, role: str, where: str | None = None) -> type | None:
    """The torch class ``value`` names for ``role`` (``'conv_op'``, ``'norm_op'``, ``'dropout_op'``,
    ``'nonlin'``); ``None`` stays ``None`` except for ``conv_op``. ``where`` names the key in messages."""
    if role not in _TABLE:
        raise ValueError(f"unknown op role {role!r}; one of {ROLES}")
    where = where or f"arch_kwargs.{role}"
    if value is None:
        if role == "conv_op":
            raise ArchitectureSpecError(where, f"{where} is null; it must name a convolution: "
                                               f"{', '.join(allowed_names(role))}")
        return None
    if isinstance(value, type):
        if value in _CLASSES[role]:
            return value
        raise _refuse(f"{value.__module__}.{value.__qualname__}", role, where, value)
    if not isinstance(value, str):
        raise ArchitectureSpecError(where, f"{where} must be a dotted class name such as "
                                           f"'{next(iter(sorted(ALLOWED[role])))}', got {shown(value)}")
    cls = ALLOWED[role].get(value)
    if cls is None:
        raise _refuse(value, role, where)
    return cls


def resolve_block_name(value: Any, where: str = "arch_kwargs.block") -> str:
    """``'BasicBlockD'`` or ``'BottleneckD'`` from a class or a dotted name in :data:`BLOCK_SPELLINGS`."""
    spelling = f"{value.__module__}.{value.__qualname__}" if isinstance(value, type) else value
    if isinstance(spelling, str) and spelling in BLOCK_SPELLINGS:
        return BLOCK_SPELLINGS[spelling]
    raise ArchitectureSpecError(where, f"{where} = {shown(value)} is not an allowed residual block: allowed are "
                                       f"{', '.join(sorted(BLOCK_SPELLINGS))}")


@lru_cache(maxsize=None)
def accepted_kwargs(cls: type, role: str) -> dict[str, inspect.Parameter]:
    """Keyword arguments a spec may give ``cls`` in ``role``, from its ``__init__`` signature (not called)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    if role == "norm_op" and params:
        params = params[1:]  # the channel count, passed positionally by the blocks
    return {p.name: p for p in params
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in ("device", "dtype")}


def kwarg_default(cls: type, role: str, name: str) -> Any:
    """The default of argument ``name`` of ``cls`` (``inspect.Parameter.empty`` when it has none)."""
    return accepted_kwargs(cls, role)[name].default


def _annotation_types(param: inspect.Parameter) -> tuple[set[type], bool]:
    """Plain types named by ``param``'s annotation, and whether it admits None."""
    ann = param.annotation
    if isinstance(ann, str):
        names = {part.strip() for part in ann.replace("Optional[", "").replace("]", "").split("|")}
        known = {"bool": bool, "int": int, "float": float, "str": str}
        return {known[n] for n in names if n in known}, "None" in names or "Optional" in ann
    union = isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union
    args = typing.get_args(ann) if union else (ann,)
    return {a for a in args if a in (bool, int, float, str)}, type(None) in args


def _kind(param: inspect.Parameter) -> tuple[type | None, bool]:
    """The scalar type an argument takes (from its default, else its annotation) and whether null is allowed."""
    named, nullable = _annotation_types(param)
    default = param.default
    nullable = nullable or default is None
    for kind in (bool, int, float, str):
        if type(default) is kind:
            return kind, nullable
    for kind in (bool, float, int, str):
        if kind in named:
            return kind, nullable
    return None, nullable


def _check_scalar(cls: type, name: str, param: inspect.Parameter, value: Any, where: str) -> None:
    kind, nullable = _kind(param)
    if value is None:
        if nullable:
            return
        raise ArchitectureSpecError(where, f"{where} must not be null ({canonical_name(cls)} needs a value)")
    if kind is bool:
        ok = isinstance(value, bool)
        want = "true or false"
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_CHANNELS
        want = f"an integer 1..{MAX_CHANNELS}"
    elif kind is float:
        low, high = _RANGES.get(name, (-math.inf, math.inf))
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite_in(value, low, high)
        want = "a finite number" + (f" in [{low:g}, {high:g}]" if name in _RANGES else "")
    elif kind is str:
        choices = _CHOICES.get((cls, name))
        ok = isinstance(value, str) and len(value) <= _MAX_STRING and (choices is None or value in choices)
        want = f"one of {choices}" if choices else f"a string of at most {_MAX_STRING} characters"
    else:
        ok, want = False, "nothing a spec may set"
    if not ok:
        raise ArchitectureSpecError(where, f"{where} must be {want} (argument {name!r} of {canonical_name(cls)}), "
                                           f"got {shown(value)}")


def _finite_in(value: int | float, low: float, high: float) -> bool:
    try:
        number = float(value)
    except OverflowError:
        return False
    return math.isfinite(number) and low <= number <= high


def check_op_kwargs(cls: type | None, kwargs: Any, role: str, where: str | None = None) -> dict[str, Any]:
    """A copy of ``kwargs`` (``None`` -> ``{}``) after checking it fits ``cls`` in ``role``: an object of JSON
    scalars whose names ``cls.__init__`` accepts, each of the right type. ``where`` names the key in messages."""
    where = where or f"arch_kwargs.{KWARGS_KEY.get(role, role + '_kwargs')}"
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise ArchitectureSpecError(where, f"{where} must be an object of keyword arguments or null, "
                                           f"got {shown(kwargs)}")
    for key, value in kwargs.items():
        if not isinstance(key, str):
            raise ArchitectureSpecError(where, f"{where} has a key that is not a string: {shown(key)}")
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise ArchitectureSpecError(f"{where}.{key}", f"{where}.{key} must be a number, boolean, string or "
                                                          f"null, got {shown(value)}")
    if cls is None:
        return dict(kwargs)
    accepted = accepted_kwargs(cls, role)
    for key, value in kwargs.items():
        if key not in accepted:
            raise ArchitectureSpecError(f"{where}.{key}", (
                f"{where}.{key} is not an argument of {canonical_name(cls)}; accepted: {sorted(accepted) or 'none'}"))
        _check_scalar(cls, key, accepted[key], value, f"{where}.{key}")
    missing = [name for name, p in accepted.items() if p.default is p.empty and name not in kwargs]
    if missing:
        raise ArchitectureSpecError(f"{where}.{missing[0]}", f"{where}.{missing[0]} is missing ({canonical_name(cls)} "
                                                             "needs it)")
    return dict(kwargs)
