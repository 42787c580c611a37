"""Cubes per second of the batched Models Genesis transforms against the per-cube numpy reference.

In one run: the numpy reference (``zoo.transforms.genesis_reference``, one cube at a time, single-threaded
by nature), the batched torch version (``zoo.transforms.genesis.genesis_corrupt``) on CPU with 1 thread and
with torch's default thread count, and on CUDA when available. Same cubes (uniform noise in [0, 1], default
batch 32 of 64 x 64 x 32), same upstream probabilities; every batch draws its own decisions, so the timing is
a median over repeats (batched) or a mean over many cubes (reference). ``--breakdown`` (default on) also
times each transform alone, applied to every cube.

Target: batched CPU >= 20x the reference. Default run: about 30-60 s on 2 cores.

    python benchmarks/genesis_transforms.py [--batch 32] [--shape 64 64 32] [--repeats 7] [--ref-cubes 48]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.transforms import genesis as G  # noqa: E402
from zoo.transforms.genesis import GenesisConfig, genesis_corrupt  # noqa: E402
from zoo.transforms.genesis_reference import (  # noqa: E402
    reference_genesis_corrupt,
    reference_in_painting,
    reference_local_pixel_shuffle,
    reference_nonlinear,
    reference_out_painting,
)


def time_reference(cubes: np.ndarray, fn, rng) -> float:
    """Seconds per cube, mean over ``cubes``."""
    t0 = time.perf_counter()
    for cube in cubes:
        fn(cube, rng)
    return (time.perf_counter() - t0) / len(cubes)


def time_batched(batch: torch.Tensor, fn, repeats: int, sync=lambda: None) -> float:
    """Seconds per cube, median over ``repeats`` calls on the whole batch (after one warm-up call)."""
    fn(batch)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(batch)
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / batch.shape[0]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--shape", type=int, nargs=3, default=(64, 64, 32), help="spatial cube shape")
    ap.add_argument("--repeats", type=int, default=7, help="timed calls of the batched version")
    ap.add_argument("--ref-cubes", type=int, default=48, help="cubes run through the reference pipeline")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the per-transform timings")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    cfg = GenesisConfig()
    shape = tuple(args.shape)
    gen = torch.Generator().manual_seed(0)
    batch = torch.rand((args.batch, 1) + shape, generator=gen)
    rng = np.random.default_rng(0)
    ref_cubes = np.random.default_rng(1).random((args.ref_cubes, 1) + shape)
    default_threads = torch.get_num_threads()
    print(f"cubes {shape}, batch {args.batch}; torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"default torch threads {default_threads}, load average {os.getloadavg()[0]:.2f}")
    results: dict = {"shape": shape, "batch": args.batch, "torch": torch.__version__}

    ref = time_reference(ref_cubes, lambda c, r: reference_genesis_corrupt(c, r, cfg), rng)
    results["reference_cubes_per_s"] = 1 / ref
    print(f"reference (numpy, per cube)      : {1 / ref:8.1f} cubes/s   ({ref * 1e3:6.1f} ms/cube, "
          f"{args.ref_cubes} cubes)")

    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        b = time_batched(batch, lambda x: genesis_corrupt(x, gen, cfg), args.repeats)
        results[f"cpu_{threads}_threads_cubes_per_s"] = 1 / b
        print(f"batched CPU, {threads} thread(s)         : {1 / b:8.1f} cubes/s   ({b * 1e3:6.2f} ms/cube)  "
              f"ratio {ref / b:5.1f}x")
    torch.set_num_threads(default_threads)

    if torch.cuda.is_available():
        dev = torch.device("cuda")
        gcuda = torch.Generator(device=dev).manual_seed(0)
        xb = batch.to(dev)
        b = time_batched(xb, lambda x: genesis_corrupt(x, gcuda, cfg), args.repeats * 3, torch.cuda.synchronize)
        results["cuda_cubes_per_s"] = 1 / b
        print(f"batched CUDA ({torch.cuda.get_device_name()}): {1 / b:8.1f} cubes/s   ({b * 1e3:6.3f} ms/cube)  "
              f"ratio {ref / b:5.1f}x")

    if not args.no_breakdown:
        print("each transform alone, applied to every cube (ms/cube): reference | batched 1 thread | ratio")
        torch.set_num_threads(1)
        few = ref_cubes[: max(4, args.ref_cubes // 6)]
        rows = {
            "local pixel shuffle": (lambda c, r: reference_local_pixel_shuffle(c, r, cfg.shuffle_blocks),
                                    lambda x: G.local_pixel_shuffle(x, gen, cfg.shuffle_blocks)),
            "Bezier intensity": (lambda c, r: reference_nonlinear(c, r, 1.0, cfg.invert_rate),
                                 lambda x: G.nonlinear(x, gen, cfg.invert_rate, cfg.bezier_samples,
                                                       cfg.bezier_lut_size)),
            "in-painting": (lambda c, r: reference_in_painting(c.copy(), r), lambda x: G.in_painting(x, gen)),
            "out-painting": (lambda c, r: reference_out_painting(c, r), lambda x: G.out_painting(x, gen)),
        }
        for name, (ref_fn, bat_fn) in rows.items():
            r_t = time_reference(few, ref_fn, rng)
            b_t = time_batched(batch, bat_fn, max(3, args.repeats // 2))
            results[f"breakdown_{name}"] = {"reference_ms": r_t * 1e3, "batched_ms": b_t * 1e3}
            print(f"  {name:22s}: {r_t * 1e3:8.2f} | {b_t * 1e3:8.3f} | {r_t / b_t:6.1f}x")
        torch.set_num_threads(default_threads)

    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
