"""``python -m export.med3d``: Med3D co-training of a MedicalNet 3D ResNet on labelled data sets.

Every ``--data`` folder is one data set (domain) in nnU-Net's raw layout (``dataset.json``, ``imagesTr/``,
``labelsTr/``); each gets its own 1x1x1 branch. The backbone is written to ``OUT/model`` in the ``med3d-*``
layout (``zoo.load("OUT/model")``).

Examples::

    python -m export.data.fetch --out data
    python -m export.med3d.make_demo_datasets --data data --out raw        # 3 public domains
    python -m export.med3d --data raw/Dataset901_ChestCTTumour raw/Dataset902_BrainMRTumour \\
        raw/Dataset903_HeadCTBone --out runs/med3d-demo --preset demo
    python -m export.med3d --data raw/Dataset0* --out runs/med3d-r50 --depth 50 --dry-run
    python -m export.med3d --data raw/Dataset0* --out runs/med3d-r50 --prepare-only --workers 16
    torchrun --nproc_per_node=4 -m export.med3d --data raw/Dataset0* --out runs/med3d-r50 --depth 50

Each case is read, resampled to its data set's median spacing and normalised once into OUT/prepared (or
--prepared DIR), by --workers processes; training then cuts its crops from the memory-mapped volumes in
DataLoader workers. With --prepared pointing at a folder prepared before, --data may be left out (the data sets,
their order and their held-out cases are then those of the preparation). --dry-run reads headers only and
prints what a run would do, and which files will fail and why. Interrupted
runs continue from OUT/checkpoint.pt, and an interrupted preparation from the cases already done, when started
again with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..common.cli import (
    TRAINING_KEYS,
    add_data_arguments,
    add_training_arguments,
    data_options,
    run_cli,
)
from .config import PRESETS, preset


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.med3d", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+",
                   help="data set folders in nnU-Net's raw layout, one per domain; may be left out when --prepared "
                        "names a folder prepared before")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, panels/, tensorboard/, model/, prepared/")
    p.add_argument("--preset", choices=sorted(PRESETS), default="medicalnet")
    p.add_argument("--depth", type=int, choices=(10, 18, 34, 50, 101, 152, 200))
    p.add_argument("--shortcut", dest="shortcut_type", choices=("A", "B"))
    p.add_argument("--patch", dest="patch_zyx", type=int, nargs=3, metavar=("Z", "Y", "X"))
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--samples-per-volume", type=int)
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--channel", type=int, help="input channel of multi-channel data sets (default 0)")
    add_training_arguments(p)
    add_data_arguments(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keys = ("depth", "shortcut_type", "patch_zyx", "weight_decay", "samples_per_volume", "val_fraction", "channel",
            *TRAINING_KEYS)
    cfg = preset(args.preset, **{k: getattr(args, k) for k in keys})

    return run_cli(args, cfg, _run)


def _run(args: argparse.Namespace, cfg, info, device) -> int:
    from ..common.prepare import open_prepared, prepare_folder
    from .data import datasets_from_manifest, describe, med3d_jobs, med3d_recipe, scan_datasets

    log = print if info.main else (lambda *_: None)
    recipe = med3d_recipe(cfg)
    folder, workers, loader_workers = data_options(args, info)
    if args.dry_run:
        return _dry_run(args, cfg, info, workers, loader_workers)
    if args.data:
        raws = scan_datasets(args.data, cfg)              # every data-set-level check before any volume is read
        jobs = med3d_jobs(raws, cfg)
        manifest = prepare_folder(recipe, jobs, folder, workers=workers, strict=args.strict, info=info,
                                  progress=not args.no_progress, log=log)
        datasets = datasets_from_manifest(manifest, [r.name for r in raws])
    elif args.prepared:
        manifest = open_prepared(folder, recipe)
        datasets = datasets_from_manifest(manifest)
    else:
        raise ValueError("no data: pass --data (data set folders in nnU-Net's raw layout), or --prepared with a "
                         "folder prepared before")
    describe(datasets, log)
    log(f"prepared data: {folder} ({len(manifest.volumes)} cases, {len(manifest.failed)} left out)")
    if args.prepare_only:
        return 0

    from .output import write_output
    from .train import train

    started = time.perf_counter()
    result = train(cfg, datasets, args.out, device=str(device), resume=not args.no_resume, max_steps=args.max_steps,
                   progress=not args.no_progress, loader_workers=loader_workers, log=log)
    if info.main:
        prepared = {"folder": str(folder), "recipe": recipe.identity, "digest": recipe.digest,
                    "left_out": [{"path": f["sources"][0]["path"] if f.get("sources") else None,
                                  "reason": f.get("reason")} for f in manifest.failed]}
        out = write_output(args.out, args.name or Path(args.out).resolve().name, cfg, result.best_state,
                           result.history, datasets, best_epoch=result.best_epoch,
                           stopped_because=result.stopped_because, device=str(device), world_size=info.world,
                           minutes=(time.perf_counter() - started) / 60, prepared=prepared)
        h = result.history
        print(json.dumps({
            "model": str(out), "stopped": result.stopped_because, "epochs": len(h.val_loss),
            "baselines": h.baselines, "best_val_loss": min(h.val_loss) if h.val_loss else None,
            "best_val_dice": max((v for v in h.val_metrics.get("dice", []) if v == v), default=None),
            "first_step_time": result.first_step_time,
        }, indent=2))
    return 0


def _dry_run(args: argparse.Namespace, cfg, info, workers: int, loader_workers: int) -> int:
    """Headers only: volumes per split, crops and steps per epoch, disk, RAM, preparation time, failing files."""
    import numpy as np
    import torch

    from ..common.dry_run import dry_run
    from .data import med3d_jobs, plan_med3d, scan_datasets
    from .train import Med3DNet

    if not args.data:
        raise ValueError("--dry-run needs --data")
    raws = scan_datasets(args.data, cfg)
    jobs = med3d_jobs(raws, cfg, dry_run=True)
    plans, steps = plan_med3d(jobs, cfg, info.world)
    with torch.device("meta"):
        parameters = sum(p.numel() for p in Med3DNet(cfg.depth, [r.num_classes for r in raws],
                                                     cfg.shortcut_type).parameters())
    if info.main:
        dry_run(plans, what="crops", batch_size=cfg.batch_size, world=info.world, workers=workers,
                item_bytes=5 * int(np.prod(cfg.patch_zyx)), model_parameters=parameters,
                loader_workers=loader_workers, steps_per_epoch=steps, exact=True)
        for r in raws:
            mine = [j for j in jobs if j.group == r.name]
            ok = [p for p, j in zip(plans, jobs) if j.group == r.name and p.reason is None]
            held = sum(1 for p in ok if p.role != "train")
            val = (f"{held} held out" if held else
                   f"none held out: validated on {cfg.val_crops_per_volume * len(ok)} fixed crops of its training cases")
            spacing = tuple(round(float(s), 3) for s in mine[0].settings["spacing_zyx"])
            print(f"  {r.name}: {len(mine)} case(s), {len(ok)} usable ({val}); median spacing {spacing} mm "
                  "(z, y, x) from the headers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
