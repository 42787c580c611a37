"""An nnU-Net v2 checkpoint of a NestedUNet (``checkpoint_final.pth``) -> a medzoo model folder.

The folder (``config.json`` + ``model.safetensors`` + ``README.md``) is what ``zoo.load(path)`` reads and
``zoo publish`` uploads. The network is described by the checkpoint's own plan (``init_args``: plans,
configuration, dataset.json), so a plan that differs from the registry's ``unetpp-liver`` still loads; the
differences are listed in the README and returned.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


from zoo.convert.safe_load import load_legacy_checkpoint
from zoo.hub.integrity import sha256_file
from zoo.model_dir import entry_config, write_model_dir
from zoo.nnunet.plans import arch_for_configuration
from zoo.registry import get_entry


def checkpoint_to_model_dir(checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                            name: str = "unetpp-liver") -> dict[str, Any]:
    """Write a model folder for ``checkpoint`` (nnU-Net's ``checkpoint_final.pth`` of a NestedUNet plan),
    described like registry entry ``name``. Returns ``{'path', 'differences', 'config'}``."""
    checkpoint = Path(checkpoint)
    ckpt = load_legacy_checkpoint(checkpoint)  # weights_only: no pickled code runs, even from nnU-Net's file
    init = ckpt.get("init_args") or {}
    if "network_weights" not in ckpt or "plans" not in init:
        raise ValueError(f"{checkpoint} is not an nnU-Net v2 training checkpoint (network_weights, init_args)")
    spec = arch_for_configuration(init["plans"], init["configuration"], init.get("dataset_json"))
    if spec.arch != "nested_unet":
        raise ValueError(f"{checkpoint} holds a {spec.arch}, not a NestedUNet (plan network_class_name)")
    entry = get_entry(name)
    config = entry_config(entry)
    differences = {}
    for key, ours, theirs in (("arch_kwargs", spec.arch_kwargs, dict(entry.arch_kwargs)),
                              ("in_channels", spec.in_channels, entry.input.in_channels),
                              ("num_classes", spec.num_classes, entry.num_classes)):
        if json.loads(json.dumps(ours)) != json.loads(json.dumps(theirs)):
            differences[key] = {"checkpoint": ours, "registry": theirs}
    config.update(arch_kwargs=spec.arch_kwargs, in_channels=spec.in_channels, num_classes=spec.num_classes)
    config["input"] = {**config["input"], "in_channels": spec.in_channels}
    config["provenance"] = {
        "nnunet_checkpoint": checkpoint.name,
        "nnunet_checkpoint_sha256": sha256_file(checkpoint),
        "trainer": ckpt.get("trainer_name"),
        "epochs": ckpt.get("current_epoch"),
        "dataset": init["plans"].get("dataset_name"),
        "plans": init["plans"].get("plans_name"),
        "configuration": init["configuration"],
        "fold": init.get("fold"),
        "differences_from_registry": differences,
    }
    diff_text = ("\n".join(f"- `{k}`: checkpoint {v['checkpoint']} vs registry {v['registry']}"
                           for k, v in differences.items()) or "none")
    readme = (f"# {name} (trained with nnU-Net)\n\nConverted from `{checkpoint.name}` (sha256 "
              f"`{config['provenance']['nnunet_checkpoint_sha256']}`), trainer "
              f"`{config['provenance']['trainer']}`, {config['provenance']['epochs']} epochs on "
              f"`{config['provenance']['dataset']}` ({config['provenance']['plans']}, "
              f"{init['configuration']}, fold {init.get('fold')}).\n\nDifferences from the registry entry: "
              f"{diff_text}\n\nLoad with `zoo.load(\"{Path(out)}\")`.\n")
    path = write_model_dir(out, ckpt["network_weights"], config, readme=readme)
    return {"path": path, "differences": differences, "config": config}


REFERENCE = Path(__file__).with_name("unetpp_liver_architecture.json")


def compare_with_reference(plans: Any, configuration: str = "3d_fullres") -> dict[str, Any]:
    """Differences between ``configuration`` of ``plans`` and ``unetpp_liver_architecture.json`` (the
    registry's ``unetpp-liver``): ``{}`` when the trained weights will match the entry exactly."""
    from zoo.nnunet.plans import load_plans, resolve_configuration

    ref = json.loads(REFERENCE.read_text())
    plans = load_plans(plans)
    spec = arch_for_configuration(plans, configuration, in_channels=1, num_classes=3)
    conf = resolve_configuration(plans, configuration)
    found = {"network_class_name": "zoo.archs.nested_unet.NestedUNet" if spec.arch == "nested_unet" else spec.arch,
             "patch_size": conf.get("patch_size")}
    want = {"network_class_name": ref["architecture"]["network_class_name"], "patch_size": ref["patch_size"]}
    out = {k: {"plan": found[k], "reference": want[k]} for k in found if found[k] != want[k]}
    ref_kwargs = ref["architecture"]["arch_kwargs"]
    for key in sorted(set(ref_kwargs) | set(spec.arch_kwargs)):
        if spec.arch_kwargs.get(key) != ref_kwargs.get(key):
            out[f"arch_kwargs.{key}"] = {"plan": spec.arch_kwargs.get(key), "reference": ref_kwargs.get(key)}
    return out
