"""Pretraining corruptions. :mod:`zoo.transforms.genesis`: the Models Genesis transforms, batched on the
training device; :mod:`zoo.transforms.genesis_reference`: upstream's ``generate_pair`` loop step for step
(Python ``random`` draws, one ``np.random.shuffle`` per block), the test and benchmark baseline.

Import the submodules directly (``from zoo.transforms.genesis import genesis_corrupt``): this package
imports nothing itself, so ``import zoo.transforms`` stays free of torch.
"""
