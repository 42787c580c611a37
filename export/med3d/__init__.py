"""Med3D multi-domain co-training (``python -m export.med3d``): one MedicalNet 3D ResNet (depth 10 to 200)
trained on several labelled data sets at once, one 1x1x1 branch per data set.

* :mod:`.config`: run settings and presets (``medicalnet``, ``demo``);
* :mod:`.data`: data sets in nnU-Net's raw layout, per-domain median spacing, per-volume percentile clip and
  z-score, target-containing random crops;
* :mod:`.train`: the network (backbone + branches) and the task run by :func:`export.common.loop.fit`;
* :mod:`.output`: the backbone in the ``med3d-*`` layout, loadable with ``zoo.load(path)``;
* :mod:`.make_demo_datasets`: public labelled volumes (chest CT tumour, brain MR tumour, head CT bone) in
  nnU-Net's raw layout.
"""
