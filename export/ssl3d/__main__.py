"""``python -m export.ssl3d``: one of the five 3D self-supervised tasks of Taleb et al. on unlabelled volumes.

Examples::

    python -m export.data.fetch --out data
    python -m export.ssl3d --task rotation --data data --out runs/ssl3d-rotation           # published settings
    python -m export.ssl3d --task jigsaw --data data --out runs/jigsaw-demo --preset demo
    python -m export.ssl3d --task cpc --data data --out runs/cpc-plan --encoder plan \\
        --plans nnUNetPlans.json -c 3d_fullres                                             # an nnU-Net plan's encoder
    python -m export.ssl3d --task rpl --data brains/ --out runs/rpl --dry-run              # headers only, seconds
    python -m export.ssl3d --task rpl --data brains/ --out runs/rpl --prepare-only --workers 16
    torchrun --nproc_per_node=4 -m export.ssl3d --task rpl --data brains/ --out runs/rpl

Each volume is read, resampled, clipped and z-scored once into OUT/prepared (or --prepared DIR), with its
cubes or crops chosen there; training then streams them memory-mapped through loader workers. A volume that
cannot be used (unreadable, smaller than the task's cube or grid) is named and left out; --strict stops the
run at the first one instead (--skip-small is kept for old command lines: leaving such volumes out is the
default now). The encoder is written to ``OUT/model`` (``zoo.load("OUT/model")``;
``zoo.adapt.adapt_state_dict`` transfers it into nnU-Net plans). Interrupted runs continue from
``OUT/checkpoint.pt``, and an interrupted preparation from the volumes already done, when started again.
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
from .config import PRESETS, TASKS, preset
from .encoders import ENCODERS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.ssl3d", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--data", nargs="+",
                   help="volumes or folders of them (CT or MR, any zoo.io format); may be left out when --prepared "
                        "(or OUT/prepared) holds a folder prepared before")
    p.add_argument("--val-data", nargs="+", help="held-out volumes (default: a share of --data)")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, tensorboard/, model/, prepared/")
    p.add_argument("--preset", choices=PRESETS, default="published")
    p.add_argument("--encoder", choices=ENCODERS, help="unet (the authors' 3D U-Net encoder), plan, resnet")
    p.add_argument("--plans", help="nnU-Net plans.json for --encoder plan")
    p.add_argument("-c", "--configuration", default="3d_fullres")
    p.add_argument("--depth", type=int, help="MedicalNet ResNet depth for --encoder resnet")
    p.add_argument("--size", type=int, help="cube side in voxels (the authors' data_dim, 128)")
    p.add_argument("--spacing", dest="spacing_zyx", type=float, nargs=3, metavar=("Z", "Y", "X"))
    p.add_argument("--sampling", choices=("resized", "crop"),
                   help="resized: crops of --crop-fraction of each volume resized to the cube (the authors' data); "
                        "crop: random sub-cubes at the volume's resolution")
    p.add_argument("--crop-fraction", type=float, nargs=2, metavar=("LOW", "HIGH"))
    p.add_argument("--cubes-per-volume", type=int)
    p.add_argument("--min-foreground", type=float)
    p.add_argument("--val-fraction", type=float,
                   help="share of the volumes held out when --val-data is not given (of the cubes for one volume)")
    p.add_argument("--val-samples", type=int, help="fixed validation samples (rounded down to whole batches)")
    p.add_argument("--skip-small", action="store_true",
                   help="accepted for old command lines: volumes smaller than the task's cube are now always named "
                        "and left out (--strict stops instead)")
    add_training_arguments(p)
    add_data_arguments(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keys = ("encoder", "depth", "size", "spacing_zyx", "sampling", "crop_fraction", "cubes_per_volume",
            "min_foreground", "val_fraction", "val_samples", *TRAINING_KEYS)
    try:
        cfg = preset(args.task, args.preset, **{k: getattr(args, k) for k in keys})
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    return run_cli(args, cfg, _run)


def _run(args: argparse.Namespace, cfg, info, device) -> int:
    from ..common.prepare import open_prepared, prepare_folder
    from .data import ssl_data, ssl_recipe, volume_jobs
    from .encoders import encoder_spec
    from .output import write_output
    from .tasks import make_task
    from .train import train

    log = print if info.main else (lambda *_: None)
    spec = encoder_spec(cfg.encoder, features=cfg.features, dropout=cfg.dropout, norm_momentum=cfg.norm_momentum,
                        plans=args.plans, configuration=args.configuration, depth=cfg.depth)
    recipe = ssl_recipe(cfg)
    folder, workers, loader_workers = data_options(args, info)
    if args.dry_run:
        return _dry_run(args, cfg, spec, recipe, info, workers, loader_workers)
    if not args.prepare_only:
        make_task(cfg, spec)                         # settings the task or encoder refuse stop before preparing
    if args.data:
        jobs = volume_jobs(args.data, args.val_data, cfg)
        manifest = prepare_folder(recipe, jobs, folder, workers=workers, strict=args.strict, info=info,
                                  progress=not args.no_progress, log=log)
    else:
        manifest = open_prepared(folder, recipe)
    if not manifest.volumes:
        raise ValueError(f"none of the volumes could be used ({len(manifest.failed)} failed; see above)")
    log(f"prepared data: {folder} ({len(manifest.volumes)} volumes, {len(manifest.failed)} left out)")
    if args.prepare_only:
        return 0
    data = ssl_data(manifest, cfg)
    log(f"{data.n_train} training and {data.n_val} validation {'crops' if cfg.sampling == 'resized' else 'cubes'} "
        f"of {cfg.size}^3 ({cfg.sampling}); {loader_workers} loader worker(s)")
    started = time.perf_counter()
    result = train(cfg, spec, data, args.out, device=str(device), resume=not args.no_resume,
                   max_steps=args.max_steps, progress=not args.no_progress, loader_workers=loader_workers, log=log)
    if info.main:
        folder_out = write_output(args.out, args.name or Path(args.out).resolve().name, cfg, spec, result.best_state,
                                  result.history, data, best_epoch=result.best_epoch,
                                  stopped_because=result.stopped_because, device=str(device), world_size=info.world,
                                  minutes=(time.perf_counter() - started) / 60)
        h = result.history
        print(json.dumps({
            "model": str(folder_out), "task": cfg.task, "stopped": result.stopped_because, "epochs": len(h.val_loss),
            "baselines": h.baselines, "best_val_loss": min(h.val_loss) if h.val_loss else None,
            "best_val_accuracy": max(h.val_metrics.get("accuracy", [float("nan")])),
            "first_step_time": result.first_step_time,
        }, indent=2))
    return 0


def _dry_run(args: argparse.Namespace, cfg, spec, recipe, info, workers: int, loader_workers: int) -> int:
    """Headers only: what the run would prepare and train (see :mod:`export.common.dry_run`)."""
    import torch

    from ..common.dry_run import dry_run, plan_volumes
    from .data import plan_ssl_volume, volume_jobs
    from .tasks import make_task

    if not args.data:
        raise ValueError("--dry-run reads the volumes' headers: pass --data")
    jobs = volume_jobs(args.data, args.val_data, cfg)
    if info.main:
        plans = plan_volumes(jobs, plan_ssl_volume(recipe))
        with torch.device("meta"):
            parameters = sum(p.numel() for p in make_task(cfg, spec).build_model().parameters())
        what = "crops" if cfg.sampling == "resized" else "cubes"
        steps = None
        if cfg.steps_per_epoch:
            items = sum(p.items for p in plans if p.reason is None and p.role == "train")
            steps = min(cfg.steps_per_epoch, (items // max(info.world, 1)) // max(cfg.batch_size, 1))
        dry_run(plans, what=what, batch_size=cfg.batch_size, world=info.world, workers=workers,
                item_bytes=4 * cfg.size ** 3, model_parameters=parameters, loader_workers=loader_workers,
                steps_per_epoch=steps)
        if not any(p.role == "val" for p in plans):
            print(f"  no validation volume: the last {cfg.val_fraction:g} of the training {what} validate")
        print(f"  the prepared folder would be {Path(args.prepared or Path(args.out) / 'prepared')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
