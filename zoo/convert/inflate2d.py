"""timm's 2D ImageNet ResNets inflated into the Med3D 3D ResNet layout (I3D, Carreira & Zisserman 2017).

Upstream format ``timm``: the ``model.safetensors`` of a timm Hub repo ``timm/resnet{18,34,50,...}.<tag>``
(a flat state dict, no wrapper; a legacy ``pytorch_model.bin`` is read too). timm's ResNet keys are Med3D's
(:mod:`zoo.archs.med3d_resnet`, shortcut B) one to one: ``conv1``, ``bn1``, ``layer{1..4}.{i}.conv{1,2,3}``,
``.bn{1,2,3}``, ``.downsample.0`` (1x1 conv) / ``.downsample.1`` (BN), ``fc``. The conversion:

* every 2D kernel (O, I, k, k) becomes (O, I, k, k, k) by I3D inflation: repeated along a new **first**
  spatial axis and divided by k (:func:`zoo.adapt.kernels.inflate_axis`, mode ``i3d``). Med3D volumes are
  (N, C, z, y, x), so the inflated axis is z (the slice axis) and the ImageNet image plane is the axial
  (y, x) plane, rows = y, columns = x. A volume constant along z then gives, away from the z borders, the 2D
  network's response to one slice at every z (exact: BN and ReLU act per voxel, strides and max-pooling
  along a constant axis keep it constant);
* ``conv1``'s RGB input channels are summed into one grey channel (:func:`zoo.adapt.kernels.
  adapt_input_channels`, k -> 1): the grey image gives what timm gives for that image replicated to RGB;
* the ImageNet classifier ``fc`` (1000 classes) is dropped and listed in the conversion's ``dropped_keys``:
  the entries are backbones, ``num_classes=K`` adds a new head;
* a BatchNorm without ``num_batches_tracked`` gets 0, as ``BatchNorm._load_from_state_dict`` does;
* BN statistics and every other tensor are kept unchanged. The key set and shapes are then checked strictly
  against the built network (:func:`zoo.convert.cache.validate_against`), which names any missing or extra key.

ImageNet mean/std normalisation is not part of the weights; see the entries' input contract.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import torch
from torch import Tensor

from ..adapt.kernels import adapt_input_channels, inflate_axis
from ..errors import CheckpointFormatError

#: the first convolution, whose RGB channels are summed to one grey channel
STEM = "conv1.weight"
#: ImageNet classifier prefix, dropped
CLASSIFIER = "fc."
#: axis of the 3D kernel (after the two channel dims) that inflation adds: z of Med3D's (z, y, x)
INFLATED_AXIS = 0


def inflate_kernel(weight: Tensor) -> Tensor:
    """(O, I, k, k) -> (O, I, k, k, k): repeat along a new leading spatial axis (z) and divide by k."""
    if weight.dim() != 4:
        raise CheckpointFormatError(f"expected a 2D convolution kernel (O, I, kh, kw), got shape {tuple(weight.shape)}")
    k = weight.shape[2]
    if weight.shape[3] != k:
        raise CheckpointFormatError(f"only square 2D kernels are inflated, got shape {tuple(weight.shape)}")
    return inflate_axis(weight.unsqueeze(2 + INFLATED_AXIS), INFLATED_AXIS, k, mode="i3d")


def _is_conv_weight(key: str) -> bool:
    leaf = key.rsplit(".", 2)
    return key.endswith(".weight") and (leaf[-2].startswith("conv") or key.endswith("downsample.0.weight"))


def inflate_timm_resnet(state_dict: Mapping[str, Tensor], where: str = "checkpoint") -> tuple["OrderedDict[str, Tensor]", list[str]]:
    """Inflate a timm 2D ResNet state dict to the Med3D layout; returns it and the dropped (``fc``) keys."""
    stem = state_dict.get(STEM)
    if stem is None or stem.dim() != 4:
        found = "no conv1.weight" if stem is None else f"conv1.weight of shape {tuple(stem.shape)}"
        raise CheckpointFormatError(
            f"{where} is not a 2D timm ResNet checkpoint ({found}; expected a (64, 3, 7, 7) kernel)"
        )
    out: "OrderedDict[str, Tensor]" = OrderedDict()
    dropped: list[str] = []
    for key, value in state_dict.items():
        if key.startswith(CLASSIFIER):
            dropped.append(key)
            continue
        if _is_conv_weight(key):
            if value.dim() != 4:
                raise CheckpointFormatError(
                    f"{where}: {key} has shape {tuple(value.shape)}; a 2D timm ResNet has (O, I, kh, kw) kernels"
                )
            if key == STEM:
                value = adapt_input_channels(value, 1, "repeat_scale")  # k -> 1: sum of the RGB kernels
            value = inflate_kernel(value)
        out[key] = value
    for key in [k for k in out if k.endswith(".running_mean")]:
        counter = key[: -len("running_mean")] + "num_batches_tracked"
        out.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return out, dropped
