"""One declaration per architecture: its builder, weight-layout family, task and nnU-Net class.

Every per-architecture set elsewhere is derived from :data:`DECLARATIONS`, never listed by hand:

| derived set                                   | rule                                                      |
|-----------------------------------------------|-----------------------------------------------------------|
| :data:`zoo.archs.ARCHITECTURES`               | name -> ``builder`` of every declaration                  |
| ``zoo.nnunet.export.UNET_ARCHS``              | ``family == "nnunet"`` (state-dict keys follow nnU-Net's) |
| ``zoo.nnunet.plans.DNA_CLASSES`` and friends  | the declarations with an :class:`NNUNetClass`             |
| ``zoo.nnunet.plan_rewrite.ARCH_CHOICES``      | ``nnunet.plan_choice`` (``zoo plan --arch``)              |
| ``zoo.cards.render.SEGMENTATION_ARCHS``       | ``task == "segmentation"``                                |
| ``zoo.cards.render.NNUNET_ARCHS``             | a stock nnU-Net (dynamic-network-architectures) class     |

A new architecture is one more :class:`Architecture` in :data:`DECLARATIONS` (plus its builder module and its
spec estimate in :mod:`zoo.archs.size_estimate`). Nothing here imports torch or a builder module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

#: the family whose state-dict key layout an architecture follows: Models Genesis' UNet3D, MedicalNet's ResNets,
#: or nnU-Net v2 (dynamic-network-architectures: ``encoder.stages.*``, ``decoder.*``)
WeightFamily = Literal["models-genesis", "medicalnet", "nnunet", "stunet", "monai"]

#: what the network's output is for: a dense segmentation map; the encoder of a segmentation U-Net (features
#: meant to initialise one); an image backbone (pooled features, or class scores with a ``num_classes`` head)
Task = Literal["segmentation", "segmentation-encoder", "backbone"]

#: ``zoo plan --arch`` / ``rewrite_plan(arch=...)`` choices
PlanChoice = Literal["unet", "unetpp", "stunet"]

#: plan ``arch_kwargs`` every nnU-Net U-Net class takes
_COMMON_PLAN_KWARGS = frozenset({
    "n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", "n_conv_per_stage_decoder",
    "conv_bias", "norm_op", "norm_op_kwargs", "dropout_op", "dropout_op_kwargs", "nonlin", "nonlin_kwargs",
})
_PLAIN_REQUIRED = ("n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", "n_conv_per_stage",
                   "n_conv_per_stage_decoder")


@dataclass(frozen=True)
class NNUNetClass:
    """How an nnU-Net v2 plan names and configures the network (``configurations[C]["architecture"]``).

    ``class_path`` is the ``network_class_name`` nnU-Net resolves (``pydoc.locate``); ``required_kwargs`` and
    ``allowed_kwargs`` are the plan ``arch_kwargs`` the class needs and accepts; ``plan_choice`` is the name
    ``zoo plan --arch`` gives the class, if any.
    """

    class_path: str
    required_kwargs: tuple[str, ...]
    allowed_kwargs: frozenset[str]
    plan_choice: PlanChoice | None = None

    def __post_init__(self) -> None:
        missing = set(self.required_kwargs) - self.allowed_kwargs
        if missing:
            raise ValueError(f"{self.class_path}: required kwargs {sorted(missing)} are not allowed kwargs")

    @property
    def class_name(self) -> str:
        """The bare class name (``PlainConvUNet``), as the legacy plan format and class paths end."""
        return self.class_path.rpartition(".")[2]

    @property
    def stock(self) -> bool:
        """True for nnU-Net's own classes (dynamic-network-architectures), False for medzoo's."""
        return self.class_path.startswith("dynamic_network_architectures.")


@dataclass(frozen=True)
class Architecture:
    """One architecture medzoo builds by name.

    ``builder`` is ``"module:callable"`` (keyword arguments only, ``in_channels`` and ``num_classes`` among them,
    returns an ``nn.Module``); ``family`` is the state-dict layout the weights follow (:data:`WeightFamily`);
    ``task`` what the output is for (:data:`Task`); ``nnunet`` the plan class, for networks nnU-Net can train.
    """

    name: str
    builder: str
    family: WeightFamily
    task: Task
    nnunet: NNUNetClass | None = None

    def __post_init__(self) -> None:
        module, _, attr = self.builder.partition(":")
        if not (module.startswith("zoo.archs.") and attr.isidentifier()):
            raise ValueError(f"{self.name}: builder must be 'zoo.archs.<module>:<callable>', got {self.builder!r}")
        if self.family not in get_args(WeightFamily) or self.task not in get_args(Task):
            raise ValueError(f"{self.name}: unknown family {self.family!r} or task {self.task!r}")

    @property
    def nnunet_keys(self) -> bool:
        """True when the state-dict keys follow nnU-Net's, so the weights transfer into nnU-Net plans."""
        return self.family == "nnunet"

    @property
    def nnunet_class_name(self) -> str | None:
        """The bare nnU-Net class name (``PlainConvUNet``), None for networks nnU-Net does not train."""
        return self.nnunet.class_name if self.nnunet is not None else None


#: every architecture, in the order of :data:`zoo.archs.ARCHITECTURES`
DECLARATIONS: tuple[Architecture, ...] = (
    Architecture(
        name="genesis_unet3d",
        builder="zoo.archs.genesis_unet3d:build_unet3d",
        family="models-genesis",
        task="segmentation",
    ),
    Architecture(
        name="med3d_resnet",
        builder="zoo.archs.med3d_resnet:build_med3d_resnet",
        family="medicalnet",
        task="backbone",
    ),
    Architecture(
        name="plain_conv_unet",
        builder="zoo.archs.nnunet_unet:build_plain_conv_unet",
        family="nnunet",
        task="segmentation",
        nnunet=NNUNetClass(
            class_path="dynamic_network_architectures.architectures.unet.PlainConvUNet",
            required_kwargs=_PLAIN_REQUIRED,
            allowed_kwargs=_COMMON_PLAN_KWARGS | {"n_conv_per_stage", "nonlin_first"},
            plan_choice="unet",
        ),
    ),
    Architecture(
        name="residual_encoder_unet",
        builder="zoo.archs.nnunet_unet:build_residual_encoder_unet",
        family="nnunet",
        task="segmentation",
        nnunet=NNUNetClass(
            class_path="dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
            required_kwargs=("n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides",
                             "n_blocks_per_stage", "n_conv_per_stage_decoder"),
            allowed_kwargs=_COMMON_PLAN_KWARGS | {"n_blocks_per_stage", "block", "bottleneck_channels",
                                                  "stem_channels"},
        ),
    ),
    Architecture(
        name="nested_unet",
        builder="zoo.archs.nested_unet:build_nested_unet",
        family="nnunet",
        task="segmentation",
        nnunet=NNUNetClass(
            class_path="zoo.archs.nested_unet.NestedUNet",
            required_kwargs=_PLAIN_REQUIRED,
            allowed_kwargs=_COMMON_PLAN_KWARGS | {"n_conv_per_stage", "nonlin_first", "branch",
                                                  "deep_supervision_mode"},
            plan_choice="unetpp",
        ),
    ),
    Architecture(
        name="stunet",
        builder="zoo.archs.stunet:build_stunet",
        family="stunet",
        task="segmentation",
        nnunet=NNUNetClass(
            class_path="zoo.archs.stunet.STUNet",
            required_kwargs=("n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides",
                             "n_blocks_per_stage"),
            allowed_kwargs=frozenset({"n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides",
                                      "n_blocks_per_stage"}),
            plan_choice="stunet",
        ),
    ),
    Architecture(
        name="ssl3d_unet_encoder",
        builder="zoo.archs.ssl3d_encoder:build_ssl3d_unet_encoder",
        family="nnunet",
        task="segmentation-encoder",
    ),
    Architecture(
        name="nnunet_encoder",
        builder="zoo.archs.ssl3d_encoder:build_nnunet_encoder",
        family="nnunet",
        task="segmentation-encoder",
    ),
    # MONAI's own classes (optional extra); nnU-Net v2 trains them through a plan that names
    # zoo.archs.monai_nets.MonaiSegResNet / MonaiSwinUNETR (`zoo plan NAME --arch monai`, zoo.nnunet.plan_rewrite).
    # No NNUNetClass: the derived plan sets (plans.check_arch_kwargs, the transfer engine) are for U-Net arch_kwargs
    # (n_stages, conv_op, ...), which MONAI's classes do not take; their plans are validated by nnU-Net itself.
    Architecture(
        name="monai_segresnet",
        builder="zoo.archs.monai_nets:build_monai_segresnet",
        family="monai",
        task="segmentation",
    ),
    Architecture(
        name="monai_swinunetr",
        builder="zoo.archs.monai_nets:build_monai_swinunetr",
        family="monai",
        task="segmentation",
    ),
)

#: architecture name -> its declaration
BY_NAME: dict[str, Architecture] = {a.name: a for a in DECLARATIONS}

#: architecture name -> "module:callable"; the callable takes keyword arguments and returns an nn.Module
ARCHITECTURES: dict[str, str] = {a.name: a.builder for a in DECLARATIONS}

#: the declarations of the networks nnU-Net v2 trains (plan classes), in declaration order
NNUNET_CLASSES: tuple[Architecture, ...] = tuple(a for a in DECLARATIONS if a.nnunet is not None)


def names_where(**facts: object) -> tuple[str, ...]:
    """Names of the declarations whose attributes equal ``facts``, in declaration order
    (``names_where(family="nnunet")``, ``names_where(task="segmentation")``)."""
    return tuple(a.name for a in DECLARATIONS if all(getattr(a, k) == v for k, v in facts.items()))


__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "BY_NAME",
    "DECLARATIONS",
    "NNUNET_CLASSES",
    "NNUNetClass",
    "PlanChoice",
    "Task",
    "WeightFamily",
    "names_where",
]
