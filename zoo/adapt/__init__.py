"""Adaptation of pretrained weights to other networks.

* :func:`adapt_state_dict`: the transfer engine (:mod:`zoo.adapt.engine`): fit a U-Net checkpoint to another
  U-Net, tensor by tensor (copy, channel inflation, kernel collapse/inflation, transposed-conv strides, stage
  alignment, axis permutation), with a :class:`TransferReport`; tensors are matched by their role in the
  network (:mod:`zoo.adapt.roles`);
* :func:`adapt_model`: the same, loaded into a (meta or real) network; :func:`load_into` puts tensors into a
  network and gives the rest storage and fresh initialisation (:mod:`zoo.adapt.materialise`);
* :func:`adapt_to_plan`: a registry checkpoint into the network of an nnU-Net plan configuration;
* :mod:`zoo.adapt.initialise`: an entry's network initialised from another entry's checkpoint
  (``zoo.load(name, init=...)``);
* :func:`adapt_input_channels`: first-conv channel inflation/reduction, with the other kernel maths in
  :mod:`zoo.adapt.kernels`;
* :mod:`zoo.adapt.fit`: ``zoo.load``'s exact fit of an entry's weights (input channels, a new head, dtypes).

Names load on first use, so ``import zoo.adapt`` costs nothing.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY = {
    "adapt_state_dict": "zoo.adapt.engine",
    "adapt_model": "zoo.adapt.engine",
    "load_into": "zoo.adapt.materialise",
    "TransferReport": "zoo.adapt.report",
    "TransferRow": "zoo.adapt.report",
    "UnusedRow": "zoo.adapt.report",
    "adapt_to_plan": "zoo.nnunet.export",
    "adapt_input_channels": "zoo.adapt.kernels",
    "CHANNEL_MODES": "zoo.adapt.kernels",
}

__all__ = list(_LAZY)


__getattr__ = lazy_attributes(__name__, _LAZY)
