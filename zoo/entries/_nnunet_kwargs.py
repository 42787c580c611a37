"""The plan ``arch_kwargs`` of a 3D nnU-Net v2 U-Net as nnU-Net's default planner writes them, shared by the
entries whose weights come from such a network (Models Genesis' nnU-Net, OpenMind's ResEnc-L, VoCo's nnU-Net).

Ops are the dotted class paths nnU-Net's ``plans.json`` uses: ``Conv3d`` with bias, ``InstanceNorm3d(eps=1e-5,
affine=True)``, no dropout, ``LeakyReLU(inplace=True)`` (negative slope 0.01), 3x3x3 kernels everywhere.
"""

from __future__ import annotations

from typing import Any, Sequence


def unet_arch_kwargs(
    features_per_stage: Sequence[int],
    strides: Sequence[Sequence[int]],
    *,
    blocks_key: str,
    blocks_per_stage: Sequence[int],
    n_conv_per_stage_decoder: Sequence[int],
) -> dict[str, Any]:
    """``arch_kwargs`` of a U-Net with ``len(features_per_stage)`` stages; ``blocks_key`` is ``n_conv_per_stage``
    (PlainConvUNet) or ``n_blocks_per_stage`` (ResidualEncoderUNet). Strides are per stage, in (z, y, x) order."""
    n = len(features_per_stage)
    return {
        "n_stages": n,
        "features_per_stage": list(features_per_stage),
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * n,
        "strides": [list(s) for s in strides],
        blocks_key: list(blocks_per_stage),
        "n_conv_per_stage_decoder": list(n_conv_per_stage_decoder),
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }


__all__ = ["unet_arch_kwargs"]
