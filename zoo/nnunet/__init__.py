"""nnU-Net v2 integration without importing nnunetv2: read plans, adapt weights into a plan's network, export a
file for ``nnUNetv2_train -pretrained_weights``, rewrite a plan to a checkpoint's topology.

| function                        | module                         |
|---------------------------------|--------------------------------|
| ``arch_for_configuration``      | :mod:`zoo.nnunet.plans`        |
| ``adapt_to_plan``               | :mod:`zoo.nnunet.export`       |
| ``export_nnunet``               | :mod:`zoo.nnunet.export`       |
| ``rewrite_plan``                | :mod:`zoo.nnunet.plan_rewrite` |

UNet++ in nnU-Net: ``rewrite_plan(None, plans, arch="unetpp")`` (``zoo plan --arch unetpp``) names
:class:`zoo.archs.nested_unet.NestedUNet` in the plan; :mod:`zoo.nnunet.trainers` holds the trainers nnU-Net finds
through ``nnUNet_extTrainer`` (``EXT_DIR``).

Submodules load on first use.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY = {
    "PlanError": "zoo.nnunet.plans",
    "PlanArchitecture": "zoo.nnunet.plans",
    "arch_for_configuration": "zoo.nnunet.plans",
    "load_plans": "zoo.nnunet.plans",
    "load_dataset_json": "zoo.nnunet.plans",
    "resolve_configuration": "zoo.nnunet.plans",
    "adapt_to_plan": "zoo.nnunet.export",
    "export_nnunet": "zoo.nnunet.export",
    "ExportResult": "zoo.nnunet.export",
    "rewrite_plan": "zoo.nnunet.plan_rewrite",
}

__all__ = list(_LAZY)


__getattr__ = lazy_attributes(__name__, _LAZY)
