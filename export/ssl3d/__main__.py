"""``python -m export.ssl3d``: one of the five 3D self-supervised tasks of Taleb et al. on unlabelled volumes.

Examples::

    python -m export.data.fetch --out data
    python -m export.ssl3d --task rotation --data data --out runs/ssl3d-rotation           # published settings
    python -m export.ssl3d --task jigsaw --data data --out runs/jigsaw-demo --preset demo
    python -m export.ssl3d --task cpc --data data --out runs/cpc-plan --encoder plan \\
        --plans nnUNetPlans.json -c 3d_fullres                                             # an nnU-Net plan's encoder
    torchrun --nproc_per_node=4 -m export.ssl3d --task rpl --data data --out runs/rpl

The encoder is written to ``OUT/model`` (``zoo.load("OUT/model")``; ``zoo.adapt.adapt_state_dict`` transfers
it into nnU-Net plans). Interrupted runs continue from ``OUT/checkpoint.pt`` when started again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..common.cli import TRAINING_KEYS, add_training_arguments
from .config import PRESETS, TASKS, preset
from .encoders import ENCODERS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.ssl3d", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--data", required=True, nargs="+", help="volumes or folders of them (CT or MR, any zoo.io format)")
    p.add_argument("--val-data", nargs="+", help="held-out volumes (default: a share of --data)")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, tensorboard/, model/")
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
    p.add_argument("--skip-small", action="store_true",
                   help="leave out volumes smaller than the task's cube (default: stop with an error naming them)")
    add_training_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keys = ("encoder", "depth", "size", "spacing_zyx", "sampling", "crop_fraction", "cubes_per_volume",
            "min_foreground", *TRAINING_KEYS)
    cfg = preset(args.task, args.preset, **{k: getattr(args, k) for k in keys})

    from zoo.errors import ZooError

    from ..common.distributed import finish_distributed, init_distributed
    from .data import prepare_cubes
    from .encoders import encoder_spec
    from .output import write_output
    from .train import train

    info, device = init_distributed(args.device)
    log = print if info.main else (lambda *_: None)
    try:
        spec = encoder_spec(cfg.encoder, features=cfg.features, dropout=cfg.dropout, norm_momentum=cfg.norm_momentum,
                            plans=args.plans, configuration=args.configuration, depth=cfg.depth)
        data = prepare_cubes(args.data, args.val_data, cfg, log=log, skip_small=args.skip_small)
    except (ZooError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        result = train(cfg, spec, data.train, data.val, args.out, device=str(device), resume=not args.no_resume,
                       max_steps=args.max_steps, progress=not args.no_progress, log=log)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if info.main:
        folder = write_output(args.out, args.name or Path(args.out).resolve().name, cfg, spec, result.best_state,
                              result.history, data, best_epoch=result.best_epoch,
                              stopped_because=result.stopped_because, device=str(device), world_size=info.world,
                              minutes=(time.perf_counter() - started) / 60)
        h = result.history
        print(json.dumps({
            "model": str(folder), "task": cfg.task, "stopped": result.stopped_because, "epochs": len(h.val_loss),
            "baselines": h.baselines, "best_val_loss": min(h.val_loss) if h.val_loss else None,
            "best_val_accuracy": max(h.val_metrics.get("accuracy", [float("nan")])),
        }, indent=2))
    finish_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
