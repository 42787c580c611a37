"""``python -m export.med3d``: Med3D co-training of a MedicalNet 3D ResNet on labelled data sets.

Every ``--data`` folder is one data set (domain) in nnU-Net's raw layout (``dataset.json``, ``imagesTr/``,
``labelsTr/``); each gets its own 1x1x1 branch. The backbone is written to ``OUT/model`` in the ``med3d-*``
layout (``zoo.load("OUT/model")``).

Examples::

    python -m export.data.fetch --out data
    python -m export.med3d.make_demo_datasets --data data --out raw        # 3 public domains
    python -m export.med3d --data raw/Dataset901_ChestCTTumour raw/Dataset902_BrainMRTumour \\
        raw/Dataset903_HeadCTBone --out runs/med3d-demo --preset demo
    torchrun --nproc_per_node=4 -m export.med3d --data raw/Dataset0* --out runs/med3d-r50 --depth 50

Interrupted runs continue from ``OUT/checkpoint.pt`` when started again with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..common.cli import TRAINING_KEYS, add_training_arguments
from .config import PRESETS, preset


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.med3d", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, nargs="+", help="data set folders in nnU-Net's raw layout, one per domain")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, panels/, tensorboard/, model/")
    p.add_argument("--preset", choices=sorted(PRESETS), default="medicalnet")
    p.add_argument("--depth", type=int, choices=(10, 18, 34, 50, 101, 152, 200))
    p.add_argument("--shortcut", dest="shortcut_type", choices=("A", "B"))
    p.add_argument("--patch", dest="patch_zyx", type=int, nargs=3, metavar=("Z", "Y", "X"))
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--samples-per-volume", type=int)
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--channel", type=int, help="input channel of multi-channel data sets (default 0)")
    add_training_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keys = ("depth", "shortcut_type", "patch_zyx", "weight_decay", "samples_per_volume", "val_fraction", "channel",
            *TRAINING_KEYS)
    cfg = preset(args.preset, **{k: getattr(args, k) for k in keys})

    from zoo.errors import ZooError

    from ..common.distributed import finish_distributed, init_distributed
    from .data import load_datasets
    from .output import write_output
    from .train import train

    info, device = init_distributed(args.device)
    log = print if info.main else (lambda *_: None)
    try:
        datasets = load_datasets(args.data, cfg, log=log)
    except (ZooError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    result = train(cfg, datasets, args.out, device=str(device), resume=not args.no_resume, max_steps=args.max_steps,
                   progress=not args.no_progress, log=log)
    if info.main:
        folder = write_output(args.out, args.name or Path(args.out).resolve().name, cfg, result.best_state,
                              result.history, datasets, best_epoch=result.best_epoch,
                              stopped_because=result.stopped_because, device=str(device), world_size=info.world,
                              minutes=(time.perf_counter() - started) / 60)
        h = result.history
        print(json.dumps({
            "model": str(folder), "stopped": result.stopped_because, "epochs": len(h.val_loss),
            "baselines": h.baselines, "best_val_loss": min(h.val_loss) if h.val_loss else None,
            "best_val_dice": max((v for v in h.val_metrics.get("dice", []) if v == v), default=None),
        }, indent=2))
    finish_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
