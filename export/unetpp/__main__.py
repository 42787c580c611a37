"""``python -m export.unetpp``: check a UNet++ plan against ``unetpp-liver``, or turn the trained nnU-Net
checkpoint into a medzoo model folder (``zoo.load("RUN/model")``, ``zoo publish``)::

    python -m export.unetpp --check-plans $nnUNet_preprocessed/Dataset003_Liver/nnUNetPlans_unetpp.json
    python -m export.unetpp --checkpoint $nnUNet_results/.../fold_all/checkpoint_final.pth --out RUN/model
"""

from __future__ import annotations

import argparse
import json

from .model_dir import checkpoint_to_model_dir, compare_with_reference


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.unetpp", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check-plans", help="plans file whose configuration should match unetpp-liver")
    p.add_argument("-c", "--configuration", default="3d_fullres")
    p.add_argument("--checkpoint", help="nnU-Net's checkpoint_final.pth of a NestedUNet plan")
    p.add_argument("--out", help="model folder to write (with --checkpoint)")
    p.add_argument("--name", default="unetpp-liver", help="registry entry describing the model (default unetpp-liver)")
    args = p.parse_args(argv)
    if not args.check_plans and not args.checkpoint:
        p.error("give --check-plans PLANS and/or --checkpoint FILE --out DIR")
    status = 0
    if args.check_plans:
        diff = compare_with_reference(args.check_plans, args.configuration)
        if diff:
            print(f"{args.check_plans} ({args.configuration}) differs from unetpp-liver's architecture; trained "
                  "weights will load with their own plan (the model folder records it), but not as the registry "
                  "entry:\n" + json.dumps(diff, indent=2))
            status = 1
        else:
            print(f"{args.check_plans} ({args.configuration}) matches unetpp-liver's architecture")
    if args.checkpoint:
        if not args.out:
            p.error("--checkpoint needs --out")
        result = checkpoint_to_model_dir(args.checkpoint, args.out, name=args.name)
        print(f"wrote {args.out} (config.json, model.safetensors, README.md)")
        if result["differences"]:
            print("differences from the registry entry:\n" + json.dumps(result["differences"], indent=2, default=str))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
