"""Meta-device tensors made real: the one place where a network built on the meta device (no memory, no random
init) gets storage and its own initialisation for the tensors no checkpoint filled.

Used by ``zoo.load`` (a new task head) and by the transfer engine (:func:`load_into`: every tensor the
checkpoint had no counterpart for).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from ..state_dict import expand_aliases


def materialise_meta_tensors(model: nn.Module, *, seed: int | None = None) -> list[str]:
    """Give every tensor of ``model`` still on the meta device fresh CPU storage and the model's own
    initialisation; tensors already real are kept as they are.

    A module whose tensors are all on the meta device is reset (``reset_parameters``, then
    ``model.initialize(module)`` when the model defines it, e.g. nnU-Net's He init); a module with only some
    meta tensors gets those from a reset copy of itself. Afterwards, a residual block (a module with
    ``last_norm()``) whose last norm is new is initialised again by ``model.initialize``, so it starts as the
    identity. ``seed`` seeds the initialisation without touching the global random state.

    Returns the names of the modules that were (partly) initialised afresh, in ``named_modules`` order.
    """
    initialize = getattr(model, "initialize", None)
    fresh_modules: list[str] = []
    fresh_ids: set[int] = set()
    with contextlib.ExitStack() as stack:
        if seed is not None:
            stack.enter_context(torch.random.fork_rng(devices=[]))
            torch.manual_seed(seed)
        for name, module in model.named_modules():
            local = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
            meta = [n for n, t in local if t.is_meta]
            if not meta:
                continue
            if len(meta) == len(local):
                _allocate(module, meta)
                _reset(module, initialize)
                fresh_ids.add(id(module))
            else:
                clone = copy.deepcopy(module)
                _allocate(clone, [n for n, _ in local])
                _reset(clone, initialize)
                for n in meta:
                    if n in module._parameters:
                        old = module._parameters[n]
                        module._parameters[n] = nn.Parameter(clone._parameters[n].detach(),
                                                             requires_grad=old.requires_grad)
                    else:
                        module._buffers[n] = clone._buffers[n]
            fresh_modules.append(name)
        if callable(initialize):
            for module in model.modules():
                last = getattr(module, "last_norm", None)
                if callable(last):
                    norm = last()
                    if norm is not None and id(norm) in fresh_ids:
                        initialize(module)
    return fresh_modules


def load_into(model: nn.Module, tensors: Mapping[str, Tensor], *, seed: int | None = None) -> list[str]:
    """Put ``tensors`` (canonical names, from :func:`zoo.adapt.engine.adapt_state_dict`) into ``model`` by
    assignment, alias names included, then :func:`materialise_meta_tensors`. Returns the names of the modules
    that were (partly) initialised afresh."""
    full = expand_aliases(tensors, model)
    if full:
        model.load_state_dict(full, strict=False, assign=True)
    return materialise_meta_tensors(model, seed=seed)


def _allocate(module: nn.Module, names: list[str]) -> None:
    """Replace the named local tensors by uninitialised CPU tensors of the same shape and dtype (cheaper than
    ``to_empty``, whose meta-tensor path goes through torch's reference implementations)."""
    for n in names:
        if n in module._parameters:
            old = module._parameters[n]
            module._parameters[n] = nn.Parameter(torch.empty(old.shape, dtype=old.dtype, device="cpu"),
                                                 requires_grad=old.requires_grad)
        else:
            old = module._buffers[n]
            module._buffers[n] = torch.empty(old.shape, dtype=old.dtype, device="cpu")


def _reset(module: nn.Module, initialize: Callable[[nn.Module], Any] | None) -> None:
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
    if callable(initialize):
        initialize(module)


__all__ = ["load_into", "materialise_meta_tensors"]
