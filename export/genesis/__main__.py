"""``python -m export.genesis``: Models Genesis pretraining on a folder of CT volumes.

Examples::

    python -m export.data.fetch --out data                       # public CT/MR volumes, sha256-verified
    python -m export.genesis --data data/ct --out runs/demo --preset demo
    torchrun --nproc_per_node=4 -m export.genesis --data data/ct --out runs/lung --preset lung
    python -m export.genesis --data data/ct --out runs/mine --plans nnUNetPlans.json -c 3d_fullres

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
    p = argparse.ArgumentParser(prog="python -m export.genesis", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, nargs="+",
                   help="CT volumes or folders of them (NIfTI, NRRD, MetaImage, DICOM series, InVesalius .inv3)")
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

    from zoo.errors import ZooError

    from .data import prepare_cubes
    from .output import write_output
    from ..common.distributed import finish_distributed, init_distributed
    from .train import train

    info, device = init_distributed(args.device)
    try:
        data = prepare_cubes(args.data, args.val_data, cfg, log=print if info.main else (lambda *_: None))
    except (ZooError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    result = train(cfg, data.train, data.val, args.out, device=str(device), resume=not args.no_resume,
                   max_steps=args.max_steps, progress=not args.no_progress)
    if info.main:
        folder = write_output(
            args.out, args.name or Path(args.out).resolve().name, cfg, result.best_state, result.history,
            best_epoch=result.best_epoch, stopped_because=result.stopped_because, data_files=data.files,
            data_summary=data.summary, datasets=data.datasets, device=str(device), world_size=info.world,
            minutes=(time.perf_counter() - started) / 60,
        )
        h = result.history
        print(json.dumps({
            "model": str(folder), "stopped": result.stopped_because, "epochs": len(h.val_loss),
            "identity_val_loss": h.identity_val_loss, "untrained_val_loss": h.untrained_val_loss,
            "best_val_loss": min(h.val_loss) if h.val_loss else None,
        }, indent=2))
    finish_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
