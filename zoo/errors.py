"""Exceptions raised by medzoo. Every message names what is wrong and how to fix it.

Besides the message, every error carries structured fields (modelled on huggingface_hub's typed errors): the
facts the message names, as attributes a caller or test can read without parsing text. Each class declares its
fields in its body (type-hinted, default ``None``) and lists them in :attr:`ZooError.fields`::

    try:
        zoo.load("genesis_ct")
    except ChecksumError as err:
        print(err.path, err.expected_sha256, err.actual_sha256)

``str(err)`` is exactly the message. A field the raise site did not know is ``None``; paths are ``str``. Errors pickle and copy
with their fields (they cross process boundaries under torchrun).
"""

from __future__ import annotations

import inspect
import os
from typing import Any, ClassVar


def _restore(cls: type, args: tuple, fields: dict) -> "ZooError":
    """Unpickle / copy a :class:`ZooError` without calling a subclass ``__init__`` (whose signature may differ)."""
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(fields)
    return err


class ZooError(Exception):
    """Base class of every medzoo error.

    ``ZooError(message, **fields)``: ``str(err) == message``; each keyword must be a field the class declares
    (:attr:`fields`) and becomes an attribute; undeclared fields are ``None``.
    """

    #: the field names this class declares (its own and its bases'), in declaration order
    fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            names.extend(getattr(klass, "fields", ()) if klass is not cls else ())
        own = [name for name, hint in inspect.get_annotations(cls).items()
               if not str(hint).startswith(("ClassVar", "typing.ClassVar")) and not name.startswith("_")]
        cls.fields = tuple(dict.fromkeys([*names, *own]))

    def __init__(self, message: str = "", **fields: Any) -> None:
        unknown = sorted(set(fields) - set(self.fields))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {unknown[0]!r}; its fields: "
                            f"{', '.join(self.fields) or 'none'}")
        super().__init__(message)
        for name in self.fields:
            value = fields.get(name)
            setattr(self, name, os.fspath(value) if isinstance(value, os.PathLike) else value)

    def __str__(self) -> str:  # KeyError subclasses would otherwise quote the message
        return str(self.args[0]) if self.args else ""

    def __repr__(self) -> str:
        shown = "".join(f", {name}={getattr(self, name, None)!r}" for name in self.fields
                        if getattr(self, name, None) is not None)
        return f"{type(self).__name__}({str(self)!r}{shown})"

    def __reduce__(self) -> tuple:
        return _restore, (type(self), self.args, dict(self.__dict__))


class UnknownModelError(ZooError, KeyError):
    """A model name that is not in the registry.

    Fields: ``name`` (the name asked for), ``suggestions`` (close registry names, best first; may be empty).
    """

    name: str | None = None
    suggestions: list[str] | None = None


class WeightsNotAvailableError(ZooError, FileNotFoundError):
    """The checkpoint cannot be obtained (offline, not mirrored, or never published).

    Fields: ``name`` (the model or file name), ``url`` (where it would be downloaded from), ``mirror_path`` (the
    mirror file looked for), ``reason`` (short tag or text: why it is not available).
    """

    name: str | None = None
    url: str | None = None
    mirror_path: str | None = None
    reason: str | None = None


class ChecksumError(ZooError):
    """A downloaded, mirrored or cached file does not have the expected sha256 or size.

    Fields: ``path`` (the file checked), ``expected_sha256`` / ``actual_sha256`` (hex digests),
    ``expected_size`` / ``actual_size`` (bytes). A value that was not compared is ``None``.
    """

    path: str | None = None
    expected_sha256: str | None = None
    actual_sha256: str | None = None
    expected_size: int | None = None
    actual_size: int | None = None


class UnsafeCheckpointError(ZooError):
    """A pickle that would execute code (or load unexpected objects) was refused.

    Fields: ``path`` (the file refused), ``global_name`` (the refused global as ``module.name``, when the pickle
    names one).
    """

    path: str | None = None
    global_name: str | None = None


class CheckpointFormatError(ZooError):
    """A checkpoint does not have the key layout of the format it claims to be in.

    Fields: ``path`` (the file), ``key`` (the state-dict key or tensor name at fault, when one is).
    """

    path: str | None = None
    key: str | None = None


class AdaptationError(ZooError, ValueError):
    """Weights cannot be fitted to the requested target (channels, plan, strict transfer).

    Fields: ``key`` (the state-dict key that cannot be fitted, when one is).
    """

    key: str | None = None


class ArchitectureSpecError(ZooError, ValueError):
    """A spec that names something outside the allow-list of :mod:`zoo.archs.ops`, has a value of the wrong
    type, or asks for a network above the limits of :mod:`zoo.archs.limits`.

    ``ArchitectureSpecError(key, message)``. Fields: ``key`` (the offending key as the message shows it,
    ``'arch_kwargs.features_per_stage[2]'``).
    """

    key: str | None = None

    def __init__(self, key: str | None, message: str = "", **fields: Any) -> None:
        super().__init__(message, key=key, **fields)


class PlanError(ZooError, ValueError):
    """A plans file, configuration or dataset.json that cannot describe an nnU-Net network.

    Fields: ``path`` (the plans / dataset.json file, when read from one), ``key`` (the key at fault, as the
    message names it).
    """

    path: str | None = None
    key: str | None = None


class InvalidOptionError(ZooError, ValueError):
    """An option outside its fixed set of choices (``channel_mode='nope'``); raised by
    :func:`zoo.options.check_option`.

    ``InvalidOptionError(option, value, choices, label=None)``; ``label`` names the option in the message only.
    Fields: ``option`` (its name), ``value`` (what was given), ``choices`` (the tuple of accepted values).
    """

    option: str | None = None
    value: Any = None
    choices: tuple | None = None

    def __init__(self, option: str, value: Any, choices: tuple, label: str | None = None, **fields: Any) -> None:
        choices = tuple(choices)
        super().__init__(f"unknown {label or option} {value!r}; choose one of {list(choices)!r}",
                         option=option, value=value, choices=choices, **fields)
