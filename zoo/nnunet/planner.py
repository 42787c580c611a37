"""UNet++ planned the way nnU-Net plans its own network variants.

nnU-Net sizes a configuration's patch and batch for one network: ``ExperimentPlanner.get_plans_for_configuration``
(nnunetv2/experiment_planning/experiment_planners/default_experiment_planner.py) estimates the memory of a
training step with the network's ``compute_conv_feature_map_size(patch)`` (``static_estimate_VRAM_usage``),
shrinks the patch while ``estimate / ref_bs * 2 > UNet_reference_val_3d * vram_target / 8`` (one
divisibility step of the axis with the largest patch / median-shape ratio at a time) and sets the batch to
``round(reference / estimate * ref_bs)``, at least 2, at most 5 % of the data set's voxels. The ResEnc presets
(``residual_unets/residual_encoder_unet_planners.py``) are subclasses that change ``UNet_class`` and reuse
the default planner's preprocessed data (``generate_data_identifier``).

A plan sized for PlainConvUNet is too big for UNet++: its nested decoder holds about three times the feature
maps. Two ways to plan it:

* :class:`NestedUNetPlanner` (an ``ExperimentPlanner`` subclass, like the ResEnc presets): the whole nnU-Net
  planning with ``UNet_class = zoo.archs.nested_unet.NestedUNet`` (so the search uses
  :meth:`NestedUNet.compute_conv_feature_map_size`), the default VRAM target (8 GB) and reference value, plans
  name ``nnUNetPlans_unetpp``, and the ``nnUNetPlans`` preprocessed data for ``2d`` / ``3d_fullres``.
  nnU-Net's ``-pl`` only finds planners inside nnunetv2, so run it as
  ``python -m zoo.nnunet.planner -d DATASET_ID [-gpu_memory_target 8]`` (after
  ``nnUNetv2_plan_and_preprocess -d ID``, or ``nnUNetv2_extract_fingerprint``), or in Python
  ``NestedUNetPlanner(ID).plan_experiment()``.
* :func:`fit_patch_and_batch` (used by ``zoo plan --arch unetpp``; no data set needed): the same shrinking rule
  on an existing plan, topology kept, until the NestedUNet's estimate x batch is at most the plain U-Net's
  estimate x batch of the original plan (so UNet++ fits where the plain plan fits).

Only :class:`NestedUNetPlanner` needs nnunetv2; it is created on first access, so importing this module (and
``zoo``) does not import nnunetv2.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: plans name of :class:`NestedUNetPlanner` (``nnUNetv2_train ... -p nnUNetPlans_unetpp``)
PLANS_NAME = "nnUNetPlans_unetpp"
#: nnU-Net's minimum batch size (``ExperimentPlanner.UNet_min_batch_size``)
MIN_BATCH_SIZE = 2


def _spatial(value: Any, dims: int) -> list[int]:
    return [int(value)] * dims if isinstance(value, int) else [int(v) for v in value]


def plain_conv_unet_feature_map_size(arch_kwargs: dict, patch_size: Sequence[int], num_classes: int,
                                     deep_supervision: bool = False) -> np.int64:
    """dynamic-network-architectures' ``PlainConvUNet.compute_conv_feature_map_size(patch_size)`` (the estimate
    nnU-Net's default planner uses) from a plan's ``arch_kwargs``, without building the network."""
    n = int(arch_kwargs["n_stages"])
    dims = len(patch_size)
    feats = arch_kwargs["features_per_stage"]
    feats = [int(feats)] * n if isinstance(feats, int) else [int(f) for f in feats]
    strides = arch_kwargs["strides"]
    strides = [_spatial(s, dims) for s in (strides if isinstance(strides, (list, tuple)) else [strides] * n)]
    enc = arch_kwargs["n_conv_per_stage"]
    enc = [int(enc)] * n if isinstance(enc, int) else [int(c) for c in enc]
    dec = arch_kwargs["n_conv_per_stage_decoder"]
    dec = [int(dec)] * (n - 1) if isinstance(dec, int) else [int(c) for c in dec]
    sizes, total = [], np.int64(0)
    size = [int(p) for p in patch_size]
    for s in range(n):
        size = [v // k for v, k in zip(size, strides[s])]
        sizes.append(size)
        total += np.int64(enc[s] * feats[s]) * np.prod(size, dtype=np.int64)
    for s in range(n - 1):                 # decoder stage s works at the resolution of encoder stage n - 2 - s
        r = n - 2 - s
        voxels = np.prod(sizes[r], dtype=np.int64)
        total += np.int64(dec[s] * feats[r]) * voxels + np.int64(feats[r]) * voxels
        if deep_supervision or s == n - 2:
            total += np.int64(num_classes) * voxels
    return total


def nested_unet_feature_map_size(arch_kwargs: dict, patch_size: Sequence[int], input_channels: int,
                                 num_classes: int, deep_supervision: bool = False) -> np.int64:
    """:meth:`NestedUNet.compute_conv_feature_map_size` for a plan's ``arch_kwargs`` (network built on the meta
    device: no memory, no initialisation)."""
    import torch

    from ..archs.nested_unet import build_nested_unet

    kwargs = {k: v for k, v in arch_kwargs.items() if k not in ("deep_supervision",)}
    with torch.device("meta"):
        net = build_nested_unet(in_channels=input_channels, num_classes=num_classes,
                                deep_supervision=deep_supervision, **kwargs)
    return net.compute_conv_feature_map_size(list(patch_size))


def _total_strides(arch_kwargs: dict, dims: int) -> list[int]:
    n = int(arch_kwargs["n_stages"])
    strides = arch_kwargs["strides"]
    total = [1] * dims
    for s in (strides if isinstance(strides, (list, tuple)) else [strides] * n):
        total = [t * v for t, v in zip(total, _spatial(s, dims))]
    return total


def fit_patch_and_batch(arch_kwargs: dict, patch_size: Sequence[int], batch_size: int,
                        median_shape: Sequence[float] | None, input_channels: int, num_classes: int) -> dict:
    """Patch and batch for UNet++ within the plain U-Net plan's memory, by nnU-Net's search, topology kept.

    Budget: ``plain_estimate(patch_size) * batch_size`` (the original plan's estimated step). While
    ``nested_estimate(patch) * min_batch`` exceeds it, the axis with the largest ``patch / median_shape`` ratio
    (``median_shape`` default: the patch) loses one multiple of its total stride (the plan's topology fixes the
    divisibility; an axis keeps at least two bottleneck voxels). Then ``batch = floor(budget / nested_estimate)``
    within ``[min_batch, batch_size]`` (``min_batch`` = nnU-Net's 2, or the plan's batch if smaller). Returns
    ``patch_size``, ``batch_size``, both estimates (per sample and x batch), the budget and ``fits``.
    """
    dims = len(patch_size)
    total = _total_strides(arch_kwargs, dims)
    patch = [int(p) for p in patch_size]
    median = [float(m) for m in (median_shape if median_shape is not None else patch)][:dims]
    plain = plain_conv_unet_feature_map_size(arch_kwargs, patch, num_classes)
    budget = plain * int(batch_size)
    min_bs = min(MIN_BATCH_SIZE, int(batch_size))
    cache: dict[tuple, np.int64] = {}

    def estimate(p: list[int]) -> np.int64:
        if tuple(p) not in cache:
            cache[tuple(p)] = nested_unet_feature_map_size(arch_kwargs, p, input_channels, num_classes)
        return cache[tuple(p)]

    while estimate(patch) * min_bs > budget:
        order = np.argsort([p / m for p, m in zip(patch, median)])[::-1]
        for axis in order:                 # largest ratio first; the next axis if that one is at its minimum
            if patch[axis] - total[axis] >= 2 * total[axis]:
                patch[axis] -= total[axis]
                break
        else:
            break                          # every axis at its minimum: the smallest patch this topology allows
    nested = estimate(patch)
    batch = max(min_bs, min(int(batch_size), int(budget // nested)))
    return {
        "patch_size": patch,
        "batch_size": batch,
        "estimate_plain_per_sample": int(plain),
        "estimate_unetpp_per_sample": int(nested),
        "estimate_plain_step": int(budget),
        "estimate_unetpp_step": int(nested * batch),
        "fits": bool(nested * batch <= budget),
    }


def _make_planner_class() -> type:
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    from ..archs.nested_unet import NestedUNet

    class NestedUNetPlanner(ExperimentPlanner):
        """nnU-Net's default planner with UNet++ (:class:`zoo.archs.nested_unet.NestedUNet`) as the network:
        patch and batch from the NestedUNet's ``compute_conv_feature_map_size`` under the same VRAM target and
        reference value; ``2d`` / ``3d_fullres`` reuse the ``nnUNetPlans`` preprocessed data (same spacing and
        normalisation), as nnU-Net's ResEnc presets do."""

        def __init__(self, dataset_name_or_id, gpu_memory_target_in_gb: float = 8,
                     preprocessor_name: str = "DefaultPreprocessor", plans_name: str = PLANS_NAME,
                     overwrite_target_spacing=None, suppress_transpose: bool = False):
            super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                             overwrite_target_spacing, suppress_transpose)
            self.UNet_class = NestedUNet

        def generate_data_identifier(self, configuration_name: str) -> str:
            if configuration_name in ("2d", "3d_fullres"):
                return "nnUNetPlans_" + configuration_name
            return self.plans_identifier + "_" + configuration_name

    NestedUNetPlanner.__module__ = __name__
    NestedUNetPlanner.__qualname__ = "NestedUNetPlanner"
    return NestedUNetPlanner


def __getattr__(name: str) -> Any:
    if name == "NestedUNetPlanner":
        cls = _make_planner_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> dict:
    """``python -m zoo.nnunet.planner -d ID``: nnU-Net's ``plan_experiment`` with :class:`NestedUNetPlanner`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m zoo.nnunet.planner",
                                     description="Plan UNet++ (NestedUNet) for an nnU-Net data set "
                                                 "(like nnUNetv2_plan_experiment -pl ...)")
    parser.add_argument("-d", nargs="+", required=True, help="data set id(s) or name(s)")
    parser.add_argument("-gpu_memory_target", type=float, default=8.0, help="GB (default 8, as nnU-Net's default)")
    parser.add_argument("-overwrite_plans_name", default=PLANS_NAME)
    parser.add_argument("-preprocessor_name", default="DefaultPreprocessor")
    args = parser.parse_args(argv)
    planner_cls = __getattr__("NestedUNetPlanner")
    plans = {}
    for d in args.d:
        d = int(d) if d.isdigit() else d
        plans[d] = planner_cls(d, args.gpu_memory_target, args.preprocessor_name,
                               args.overwrite_plans_name).plan_experiment()
    return plans


__all__ = ["MIN_BATCH_SIZE", "PLANS_NAME", "NestedUNetPlanner", "fit_patch_and_batch", "main",
           "nested_unet_feature_map_size", "plain_conv_unet_feature_map_size"]

if __name__ == "__main__":
    main()
