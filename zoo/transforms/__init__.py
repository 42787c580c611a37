"""Pretraining corruptions. :mod:`zoo.transforms.genesis`: the Models Genesis transforms batched in torch;
:mod:`zoo.transforms.genesis_reference`: the same, one cube at a time in numpy (test and benchmark baseline).

Import the submodules directly (``from zoo.transforms.genesis import genesis_corrupt``): this package
imports nothing itself, so ``import zoo.transforms`` stays free of torch.
"""
