"""torch.hub entry points of medzoo: one per registry entry, generated from the registry when torch.hub imports
this file.

    model = torch.hub.load("<org>/medzoo", "med3d_resnet50", in_channels=4)
    model = torch.hub.load("<org>/medzoo", "load", "suprem-unet")
    model = torch.hub.load("/path/to/medzoo", "genesis_nnunet", source="local", pretrained=False)

The entry point of model ``name`` is ``name`` with ``-`` (and ``.``) replaced by ``_``; it is ``zoo.load(name,
...)``, arguments and behaviour included (``pretrained``, ``in_channels``, ``num_classes``, ``checkpoint``,
``cache_dir``, ``init`` ...). Its docstring (``torch.hub.help``) is built from the registry entry: description,
licence, input contract, parameter count, weights. ``load(name, ...)`` takes any registry name, and
:data:`_ALIASES` keeps the shorthand names users know. Helpers carry ``_`` names so that they are not entry
points.
"""

dependencies = ["torch", "huggingface_hub", "safetensors", "numpy", "einops"]

import inspect as _inspect  # noqa: E402
import textwrap as _textwrap  # noqa: E402
from typing import Any as _Any, Callable as _Callable  # noqa: E402

import zoo as _zoo  # noqa: E402
from zoo.registry import ModelEntry as _ModelEntry, all_entries as _all_entries  # noqa: E402

#: shorthand entry point -> registry name (names users know from earlier versions of this file)
_ALIASES = {"genesis_nnunet": "genesis-chest-ct-nnunet-lung"}

#: the arguments every entry point takes: those of ``zoo.load`` after the model name
_LOAD_SIGNATURE = _inspect.signature(_zoo.load)
_ENTRY_SIGNATURE = _LOAD_SIGNATURE.replace(parameters=list(_LOAD_SIGNATURE.parameters.values())[1:])


def _python_name(name: str) -> str:
    """The entry point name of registry model ``name`` (``med3d-resnet34-23datasets`` -> ``med3d_resnet34_23datasets``)."""
    return name.replace("-", "_").replace(".", "_")


def _parameter_count(entry: _ModelEntry) -> int | None:
    """Parameters of the network ``zoo.load`` builds, by arithmetic on its spec (:mod:`zoo.archs.size_estimate`,
    exact for every registry entry: ``tests/test_spec_safety.py``), so nothing is built each time torch.hub
    imports this file; None when the spec cannot be estimated."""
    from zoo.archs.size_estimate import estimate_architecture

    spec = {**entry.build_kwargs(), "in_channels": entry.input.in_channels, "num_classes": entry.num_classes}
    try:
        return estimate_architecture(entry.architecture, spec).parameters
    except ValueError:  # the docstring then says nothing about parameters
        return None


def _paragraph(text: str) -> str:
    return _textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)


def _docstring(entry: _ModelEntry) -> str:
    """The entry point's docstring, from the registry entry's facts."""
    lic, inp = entry.license, entry.input
    terms = [lic.display]
    if not lic.commercial_use:
        terms.append("non-commercial use only")
    if not lic.redistributable:
        terms.append("no redistribution of the weights")
    licence = "Licence: " + "; ".join(terms) + "." + (f" {lic.notice}" if lic.notice else "")
    channels = f"{inp.in_channels} channel(s)" + (f" ({', '.join(inp.channel_names)})" if inp.channel_names else "")
    spacing = ("native spacing" if inp.spacing_mm is None
               else " x ".join(f"{s:g}" for s in inp.spacing_mm) + " mm voxels")
    divisible = f"; each spatial dimension divisible by {inp.divisible_by}" if inp.divisible_by > 1 else ""
    contract = (f"Input: (N, C, {', '.join(inp.axis_order)}) tensors, {channels}, {inp.modality}, {spacing}"
                f"{divisible}. Intensity: {inp.intensity}.")
    src = entry.source
    if src is None:
        weights = ("Weights: none published; pretrained=True raises WeightsNotAvailableError. Use pretrained=False, "
                   "checkpoint='your weights'" + (f", or init='{entry.base_model}' (start from its weights)"
                                              if entry.base_model else "") + ".")
    elif src.package_file:
        weights = "Weights: shipped in the package (no download)."
    else:
        weights = f"Weights: {src.repo_id}/{src.filename} on the Hugging Face Hub, verified and converted on first use."
    paragraphs = [entry.description, licence, contract]
    count = _parameter_count(entry)
    if count is not None:
        paragraphs.append(f"Parameters: {count:,} ({count / 1e6:.2f}M), as built by zoo.load.")
    paragraphs += [weights, f'Same as zoo.load("{entry.name}", ...): takes every argument of zoo.load.']
    return "\n\n".join(_paragraph(p) for p in paragraphs)


def _entry_point(name: str, python_name: str, doc: str) -> _Callable[..., _Any]:
    """A module-level function ``python_name`` that is ``zoo.load(name, ...)``."""

    def entry_point(*args: _Any, **kwargs: _Any) -> _Any:
        return _zoo.load(name, *args, **kwargs)

    entry_point.__name__ = entry_point.__qualname__ = python_name
    entry_point.__module__ = __name__
    entry_point.__doc__ = doc
    entry_point.__signature__ = _ENTRY_SIGNATURE
    return entry_point


def load(*args: _Any, **kwargs: _Any) -> _Any:
    """Any registry model by name, e.g. ``torch.hub.load(repo, 'load', 'med3d-resnet34-23datasets')``: the same
    as ``zoo.load(name, ...)``. ``zoo list`` (or ``zoo.list_models()``) shows the names."""
    return _zoo.load(*args, **kwargs)


load.__signature__ = _LOAD_SIGNATURE


def _define_entry_points() -> None:
    """One module global per registry entry, plus the aliases; refuses a name that is taken twice."""
    docs: dict[str, str] = {}
    for entry in _all_entries():
        python_name = _python_name(entry.name)
        if not python_name.isidentifier() or python_name in globals():
            raise RuntimeError(f"registry name {entry.name!r} gives no free entry point name ({python_name!r})")
        docs[entry.name] = _docstring(entry)
        globals()[python_name] = _entry_point(entry.name, python_name, docs[entry.name])
    for alias, name in _ALIASES.items():
        if alias in globals():
            raise RuntimeError(f"alias {alias!r} is taken")
        doc = f"Shorthand for ``{_python_name(name)}``.\n\n" + docs[name]
        globals()[alias] = _entry_point(name, alias, doc)


_define_entry_points()
