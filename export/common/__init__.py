"""Task-independent machinery shared by the pretraining scripts (``export.genesis``, ``export.med3d``,
``export.ssl3d``).

* :mod:`.distributed`: torchrun process group (gloo on CPU, nccl on CUDA), per-(seed, rank, epoch, step)
  generators, all-reduced means;
* :mod:`.checkpoint`: atomic, code-free resumable checkpoints;
* :mod:`.loop`: :func:`~.loop.fit`, the epoch/step loop (DDP, bf16 autocast on GPU, resume, early stopping,
  StepLR, TensorBoard, progress bar, panels) parametrised by a task object (:class:`~.loop.Task`);
* :mod:`.prepare`: the one preprocessing stage: volumes read, resampled and normalised once (in parallel,
  resumable, one rank per volume under torchrun) into a folder of ``.npy`` files with a manifest;
* :mod:`.streaming`: DataLoader workers cutting batches from the memory-mapped folder, per (seed, epoch, rank,
  step); :mod:`.cubes`: the fixed cube boxes of Genesis and the self-supervised tasks as such batches;
* :mod:`.dry_run`: ``--dry-run``, the plan of a run from the volumes' headers only;
* :mod:`.data`: volume discovery and the per-volume percentile-clip + z-score used by Med3D and the 3D
  self-supervised tasks (on top of :mod:`zoo.io`);
* :mod:`.output`: the model folder ``zoo.load`` reads (safetensors + config.json with provenance + a card
  draft).
"""
