"""Registry entries, one module per model family. Importing this package registers all of them.

| module       | entries                                                              |
|--------------|----------------------------------------------------------------------|
| ``genesis``  | ``genesis-chest-ct``, ``genesis-chest-ct-nnunet-lung``               |
| ``med3d``    | ``med3d-resnet{10,18,34,50,101,152,200}``, ``med3d-resnet{10,18,34,50}-23datasets`` |
| ``suprem``   | ``suprem-unet``                                                      |
| ``demo``     | ``genesis-ct-demo`` (weights shipped in ``zoo/assets/``)              |
"""

from . import demo, genesis, med3d, suprem  # noqa: F401
