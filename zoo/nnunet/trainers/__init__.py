"""nnU-Net v2 trainer classes for medzoo architectures, and the folder nnU-Net's ``-tr`` lookup searches.

nnunetv2 (2.8) looks trainer names up inside ``nnunetv2.training.nnUNetTrainer`` and then in the folders
listed in the environment variable ``nnUNet_extTrainer`` (``os.pathsep``-separated). Point it at
:data:`EXT_DIR` and ``nnUNetv2_train`` / ``nnUNetv2_predict`` find medzoo's trainers unchanged::

    export nnUNet_extTrainer=$(python -c "import zoo.nnunet.trainers as t; print(t.EXT_DIR)")
    nnUNetv2_train 3 3d_fullres 0 -p nnUNetPlans_unetpp -tr nnUNetTrainerUNetPlusPlus

Trainers: ``nnUNetTrainerUNetPlusPlus`` (UNet++ deep supervision), ``nnUNetTrainerQuick`` (any plan: a few
iterations, the loss printed per iteration; ``ZOO_QUICK_ITERS`` / ``ZOO_QUICK_EPOCHS``),
``nnUNetTrainerUNetPlusPlusQuick``, ``nnUNetTrainerUNetPlusPlus_smoke`` and ``nnUNetTrainerFinetune``
(fine-tuning from ``-pretrained_weights``: nnunetv2's ``nnUNetTrainer_warmup`` schedule, resumable with ``--c``).

The classes live in ``medzoo_trainers.py`` (the only module of that folder besides this one). They load on
first attribute access (they import nnunetv2, about 5 s); :data:`EXT_DIR` costs nothing.
"""

from __future__ import annotations

from pathlib import Path

#: the folder to put in ``nnUNet_extTrainer``
EXT_DIR = str(Path(__file__).resolve().parent)

_TRAINERS = ("nnUNetTrainerUNetPlusPlus", "nnUNetTrainerUNetPlusPlus_smoke", "nnUNetTrainerQuick",
             "nnUNetTrainerUNetPlusPlusQuick", "nnUNetTrainerFinetune", "WarmupPolyLRScheduler")

__all__ = ["EXT_DIR", *_TRAINERS]


def __getattr__(name: str):
    if name in _TRAINERS:
        from . import medzoo_trainers

        value = getattr(medzoo_trainers, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo.nnunet.trainers' has no attribute {name!r}")
