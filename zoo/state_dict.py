"""State-dict helpers shared by conversion, loading and adaptation.

nnU-Net's networks list some tensors under several names (``...convs.0.conv.weight`` is also
``...convs.0.all_modules.0.weight`` and ``decoder.encoder.…``). medzoo stores each tensor once, under its
canonical name (the first name ``state_dict()`` gives it), and expands the aliases when loading.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Mapping

from torch import Tensor, nn

PREFIXES_TO_STRIP = ("module.", "_orig_mod.")


def strip_prefix(state_dict: Mapping[str, Tensor], prefix: str) -> "OrderedDict[str, Tensor]":
    """Remove ``prefix`` from every key that has it (keys without it are kept unchanged)."""
    n = len(prefix)
    return OrderedDict((k[n:] if k.startswith(prefix) else k, v) for k, v in state_dict.items())


def strip_wrappers(state_dict: Mapping[str, Tensor]) -> "OrderedDict[str, Tensor]":
    """Strip DataParallel (``module.``) and torch.compile (``_orig_mod.``) prefixes, repeatedly."""
    out = OrderedDict(state_dict)
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES_TO_STRIP:
            if out and all(k.startswith(prefix) for k in out):
                out = strip_prefix(out, prefix)
                changed = True
    return out


def alias_groups(model: nn.Module) -> list[list[str]]:
    """Groups of state-dict names that refer to the same parameter or buffer, in ``state_dict()`` order.

    Works on the meta device (groups are found by module identity, not by data pointers).
    """
    groups: dict[tuple[int, str], list[str]] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        prefix = f"{module_name}." if module_name else ""
        for local, _ in module.named_parameters(recurse=False):
            groups.setdefault((id(module), local), []).append(prefix + local)
        for local, _ in module.named_buffers(recurse=False):
            if local not in getattr(module, "_non_persistent_buffers_set", set()):
                groups.setdefault((id(module), local), []).append(prefix + local)
    order = {k: i for i, k in enumerate(model.state_dict(keep_vars=True).keys())}
    result = [sorted(g, key=lambda k: order.get(k, len(order))) for g in groups.values()]
    return sorted(result, key=lambda g: order.get(g[0], len(order)))


def canonical_keys(model: nn.Module) -> list[str]:
    """One name per distinct tensor of ``model``, in ``state_dict()`` order."""
    return [g[0] for g in alias_groups(model)]


def canonicalize(state_dict: Mapping[str, Tensor], model: nn.Module) -> "OrderedDict[str, Tensor]":
    """Keep one name per tensor: drop alias keys whose canonical name is present."""
    out: "OrderedDict[str, Tensor]" = OrderedDict()
    alias_to_canonical = {alias: g[0] for g in alias_groups(model) for alias in g}
    for key, value in state_dict.items():
        canonical = alias_to_canonical.get(key, key)
        if canonical not in out:
            out[canonical] = value
    return out


def expand_aliases(state_dict: Mapping[str, Tensor], model: nn.Module) -> "OrderedDict[str, Tensor]":
    """Add every alias name of ``model`` for the canonical tensors present in ``state_dict``."""
    out = OrderedDict(state_dict)
    for group in alias_groups(model):
        present = next((k for k in group if k in state_dict), None)
        if present is None:
            continue
        for alias in group:
            out.setdefault(alias, state_dict[present])
    return out


def count_parameters(tensors: Iterable[Tensor]) -> int:
    return sum(t.numel() for t in tensors)
