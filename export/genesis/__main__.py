"""``python -m export.genesis``: Models Genesis pretraining on a folder of CT volumes.

Examples::

    python -m export.data.fetch --out data                       # public CT/MR volumes, sha256-verified
    python -m export.genesis --data data/ct --out runs/demo --preset demo
    torchrun --nproc_per_node=4 -m export.genesis --data data/ct --out runs/lung --preset lung
    python -m export.genesis --data data/ct --out runs/mine --plans nnUNetPlans.json -c 3d_fullres
    python -m export.genesis --data LUNA16/subset[0-6] --out runs/lung --preset lung --dry-run
    python -m export.genesis --data data/ct --out runs/lung --preset lung --prepare-only --workers 16

Each volume is read, resampled and scaled once into OUT/prepared (or --prepared DIR), then training
streams cubes from it memory-mapped. Interrupted runs continue from OUT/checkpoint.pt, and an interrupted
preparation from the volumes already done, when started again with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..common.cli import (
    TRAINING_KEYS,
    add_data_arguments,
    add_training_arguments,
    data_options,
    run_cli,
)
from .config import PRESETS, preset


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.genesis", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+",
                   help="CT volumes or folders of them (NIfTI, NRRD, MetaImage, DICOM series, InVesalius .inv3); "
                        "may be left out when --prepared names a folder prepared before")
    p.add_argument("--val-data", nargs="+", help="held-out volumes for validation (default: a share of --data)")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, panels/, tensorboard/, model/")
    p.add_argument("--preset", choices=sorted(PRESETS), default="unet3d",
                   help="upstream recipes: unet3d (Genesis_Chest_CT), lung (Genesis nnU-Net Task006), demo")
    p.add_argument("--plans", help="an nnU-Net v2 plans.json: pretrain that configuration's network instead")
    p.add_argument("-c", "--configuration", default="3d_fullres")
    p.add_argument("--cube", type=int, nargs=3, metavar=("Z", "Y", "X"),
                   help="cube size (default 32 64 64, upstream's 64x64x32 in x, y, z); must be divisible by the "
                        "network's total strides")
    p.add_argument("--cubes-per-volume", type=int)
    add_training_arguments(p)
    add_data_arguments(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: getattr(args, k) for k in (*TRAINING_KEYS, "cubes_per_volume")}
    cfg = preset(args.preset, **overrides)
    if args.plans:
        from zoo.nnunet.plans import arch_for_configuration

        arch = arch_for_configuration(args.plans, args.configuration, in_channels=1, num_classes=cfg.num_classes)
        cfg.architecture, cfg.arch_kwargs = arch.arch, dict(arch.arch_kwargs)
    if args.cube:
        cfg.cube_zyx = tuple(args.cube)

    return run_cli(args, cfg, _run)


def _run(args: argparse.Namespace, cfg, info, device) -> int:
    from ..common.prepare import open_prepared, prepare_folder
    from .data import data_summary, genesis_jobs, genesis_recipe
    from .output import write_output
    from .train import train

    log = print if info.main else (lambda *_: None)
    recipe = genesis_recipe(cfg)
    folder, workers, loader_workers = data_options(args, info)
    if args.dry_run:
        return _dry_run(args, cfg, info, workers, loader_workers)
    if args.data:
        jobs = genesis_jobs(args.data, args.val_data, cfg)
        manifest = prepare_folder(recipe, jobs, folder, workers=workers, strict=args.strict, info=info,
                                  progress=not args.no_progress, log=log)
    elif args.prepared:
        manifest = open_prepared(folder, recipe)
    else:
        raise ValueError("no data: pass --data (CT volumes or folders), or --prepared with a folder prepared before")
    if not manifest.volumes:
        raise ValueError(f"none of the volumes could be used ({len(manifest.failed)} failed; see above)")
    log(f"prepared data: {folder} ({len(manifest.volumes)} volumes, {len(manifest.failed)} left out)")
    if args.prepare_only:
        return 0
    started = time.perf_counter()
    result = train(cfg, manifest, args.out, device=str(device), resume=not args.no_resume, max_steps=args.max_steps,
                   progress=not args.no_progress, loader_workers=loader_workers)
    if info.main:
        from ..common.prepare import source_summary
        from .data import cube_counts

        summary, datasets = data_summary(manifest, cfg, *cube_counts(manifest, cfg))
        folder_out = write_output(
            args.out, args.name or Path(args.out).resolve().name, cfg, result.best_state, result.history,
            best_epoch=result.best_epoch, stopped_because=result.stopped_because, data_files=source_summary(manifest),
            data_summary=summary, datasets=datasets, device=str(device), world_size=info.world,
            minutes=(time.perf_counter() - started) / 60,
        )
        h = result.history
        print(json.dumps({
            "model": str(folder_out), "stopped": result.stopped_because, "epochs": len(h.val_loss),
            "identity_val_loss": h.identity_val_loss, "untrained_val_loss": h.untrained_val_loss,
            "best_val_loss": min(h.val_loss) if h.val_loss else None, "first_step_time": result.first_step_time,
        }, indent=2))
    return 0


def _dry_run(args: argparse.Namespace, cfg, info, workers: int, loader_workers: int) -> int:
    from ..common.dry_run import dry_run, plan_volumes
    from .data import genesis_jobs, plan_genesis_volume
    from .train import build_network

    if not args.data:
        raise ValueError("--dry-run needs --data")
    jobs = genesis_jobs(args.data, args.val_data, cfg)
    plans = plan_volumes(jobs, plan_genesis_volume(cfg))
    import torch

    with torch.device("meta"):
        parameters = sum(p.numel() for p in build_network(cfg).parameters())
    if info.main:
        dry_run(plans, what="cubes", batch_size=cfg.batch_size, world=info.world, workers=workers,
                item_bytes=4 * int(np.prod(cfg.cube_zyx)), model_parameters=parameters,
                loader_workers=loader_workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
