"""UNet++ in nnU-Net v2: the recipe that trains ``unetpp-liver`` (README.md), its reference architecture
(``unetpp_liver_architecture.json``) and the conversion of the trained nnU-Net checkpoint into a medzoo model
folder (:func:`checkpoint_to_model_dir`, ``python -m export.unetpp``)."""

from .model_dir import checkpoint_to_model_dir

__all__ = ["checkpoint_to_model_dir"]
