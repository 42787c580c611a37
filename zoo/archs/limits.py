"""The size limits of a network spec, and the error raised when a spec breaks a rule.

A spec is the set of builder arguments of an architecture in :mod:`zoo.archs`: a registry entry's
``arch_kwargs``, the ``arch_kwargs`` / ``in_channels`` / ``num_classes`` of a model folder's ``config.json``, or
an nnU-Net plan's ``architecture.arch_kwargs``. Before anything is built, :mod:`zoo.archs.size_estimate` reads
it key by key (every count must be an ``int``, not a ``bool`` nor a ``float``) and computes, by integer
arithmetic alone (no tensor allocated, no module constructed), the parameter count, the number of conv /
transposed-conv / linear layers and, where a patch size is known (nnU-Net plans), the activation elements of one
forward pass at batch size 1. A spec above any limit below is refused with :class:`ArchitectureSpecError`
naming the key, its value and the limit.

Every limit is far above every real network: the largest here are STU-Net huge (about 1.4e9 parameters) and
MedicalNet ResNet-200 (about 1.3e8 parameters, 203 conv/linear layers, 36 blocks in its largest stage, fixed by
its depth); nnU-Net's planners write at most 8 stages (2D), kernels of 1 or 3 and strides of 1 or 2.

==================  ===============  ==================================================================
limit               value            applies to
==================  ===============  ==================================================================
MAX_PARAMETERS      2 000 000 000    parameters of the whole network (8 GB in float32)
MAX_LAYERS          10 000           conv, transposed-conv and linear layers of the whole network
MAX_ACTIVATIONS     100 000 000 000  output elements of those layers in one forward at batch 1 (with a
                                     known patch size: nnU-Net plans)
MAX_KERNEL          31               kernel size and stride, per spatial axis
MAX_CHANNELS        16 384           in_channels, each features_per_stage / bottleneck_channels entry,
                                     stem_channels, and integers inside ``*_kwargs`` (PReLU
                                     num_parameters, GroupNorm num_channels)
MAX_CLASSES         100 000          num_classes
MAX_STAGES          16               n_stages (entries of features_per_stage for the Taleb encoder)
MAX_PER_STAGE       128              each entry of n_conv_per_stage, n_conv_per_stage_decoder and
                                     n_blocks_per_stage
==================  ===============  ==================================================================
"""

from __future__ import annotations

from ..errors import ArchitectureSpecError  # noqa: F401 -- defined in zoo.errors; re-exported here, where it lived

MAX_PARAMETERS = 2_000_000_000
MAX_LAYERS = 10_000
MAX_ACTIVATIONS = 100_000_000_000
MAX_KERNEL = 31
MAX_CHANNELS = 16_384
MAX_CLASSES = 100_000
MAX_STAGES = 16
MAX_PER_STAGE = 128
