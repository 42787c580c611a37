"""The five 3D self-supervised tasks of Taleb et al. (NeurIPS 2020): ``python -m export.ssl3d --task
rotation|jigsaw|rpl|cpc|exemplar``.

* :mod:`.labels`: label generation (rotations, grids, Hamming-distance permutations, relative locations, CPC
  context/targets), pure and separately tested;
* :mod:`.config`: run settings, the published per-task settings and a CPU demo preset;
* :mod:`.encoders`: the authors' 3D U-Net encoder (default), any nnU-Net plan's encoder, MedicalNet ResNets;
* :mod:`.tasks`: task networks, losses, chance levels; :mod:`.train`: the shared loop;
* :mod:`.data`: unlabelled volumes -> a prepared folder (per-volume z-scored images, cube boxes chosen once);
  :mod:`.output`: the encoder as a model folder.
"""
