"""Models Genesis pretraining (``python -m export.genesis``): restoration of damaged CT cubes.

* :mod:`.config`: run settings and the upstream presets (``unet3d``, ``lung``, ``demo``);
* :mod:`.data`: volumes -> [0, 1] cubes, split by volume;
* :mod:`.train`: the loop (torchrun/DDP, bf16 on GPU, resumable, TensorBoard, PNG panels);
* :mod:`.checkpoint`: atomic, code-free resumable checkpoints;
* :mod:`.output`: the model folder ``zoo.load`` reads, with provenance and a card draft.
"""
