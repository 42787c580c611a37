"""Converting upstream checkpoints (legacy pickles) into verified safetensors in the local cache.

* :mod:`.safe_load` unpickles legacy files without code execution;
* :mod:`.formats` unwraps each upstream format into a flat state dict in medzoo's key layout;
* :mod:`.nnunet_v1` maps nnU-Net v1 ``Generic_UNet`` keys to the v2 ``PlainConvUNet`` layout;
* :mod:`.cache` writes the converted file atomically under a lock and verifies it on later loads.
"""
