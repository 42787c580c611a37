"""Models Genesis corruptions: the batched ``genesis_corrupt`` against the original upstream loop, one CPU thread.

Baseline: :func:`zoo.transforms.genesis_reference.generate_pair`, upstream's ``generate_pair``
(MrGiovanni/ModelsGenesis ``pytorch/utils.py``) step for step: Python ``random`` for every draw, 10,000
``np.random.shuffle`` calls per shuffled cube, ``copy.deepcopy``, a 100,000-sample Bezier curve and
``np.interp``; for the same seeds it returns the same arrays as the upstream code. Both run on the same real
CT cubes (:mod:`genesis_ct_cubes`: pyradiomics' two chest CTs, 32 x 64 x 64, [0, 1]) with upstream's rates,
in batches of ``--batch`` random cubes: 8 by default, the batch of the ``demo`` preset, which is the one that
corrupts on the CPU (the GPU presets corrupt on the GPU); ``--batch 6`` is upstream's batch.

One thread: ``OMP/MKL/OPENBLAS_NUM_THREADS=1`` are set before numpy and torch load, and
``torch.set_num_threads(1)``. The two run interleaved in rounds (one upstream batch, then ``--per-round``
batched batches), so both see the same machine load. The headline ratio uses CPU time
(``time.process_time``: the time the process actually ran, which waiting for a core on a busy machine does
not inflate); wall-clock times and their ratio are printed as well. Mean damage: ``mean |damaged - clean|``
per cube (clean = the flipped target), averaged over every cube of the run, with standard errors.

Target (issue 14): batched >= 20x the upstream loop, with the same mean damage per cube (within 5 %).
Default run: about 30 s of CPU time (about 20 s of it the upstream loop); longer on a busy machine.

    python benchmarks/genesis_transforms.py [--batch 8] [--rounds 60] [--per-round 4] [--no-breakdown]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"          # before numpy / torch load: one thread everywhere

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genesis_ct_cubes import VOLUMES, ct_cubes  # noqa: E402

from zoo.transforms import genesis_reference as R  # noqa: E402
from zoo.transforms.genesis import GenesisConfig, genesis_corrupt  # noqa: E402

TARGET = 20.0
DAMAGE_TOLERANCE = 0.05


class Clock:
    """CPU and wall seconds accumulated over ``with clock:`` blocks."""

    def __init__(self):
        self.cpu = self.wall = 0.0

    def __enter__(self):
        self._c, self._w = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.cpu += time.process_time() - self._c
        self.wall += time.perf_counter() - self._w


def damage(x, y) -> np.ndarray:
    """Mean absolute difference per cube, float64."""
    x, y = (t.numpy() if isinstance(t, torch.Tensor) else t for t in (x, y))
    return np.abs(x.astype(np.float64) - y).reshape(len(x), -1).mean(1)


def breakdown(cubes: np.ndarray, gen: torch.Generator, n_upstream: int, repeats: int = 3) -> dict:
    """Each transform alone, applied to every cube, ms per cube of CPU time: the upstream function against
    ``genesis_corrupt`` with only that transform switched on (which includes its fixed costs: the target and
    damaged copies, the draws)."""
    off = dict(flip_rate=0.0, local_rate=0.0, nonlinear_rate=0.0, paint_rate=0.0)
    rows = {
        "local pixel shuffle": (lambda c: R.local_pixel_shuffling(c, prob=1.0), dict(local_rate=1.0)),
        "Bezier intensity": (lambda c: R.nonlinear_transformation(c, prob=1.0), dict(nonlinear_rate=1.0)),
        "in-painting": (lambda c: R.image_in_painting(c.copy()), dict(paint_rate=1.0, inpaint_rate=1.0)),
        "out-painting": (lambda c: R.image_out_painting(c), dict(paint_rate=1.0, inpaint_rate=0.0)),
    }
    few = cubes[:n_upstream]
    batch = torch.from_numpy(cubes[:8].copy())
    out = {}
    for name, (up, rates) in rows.items():
        cfg = GenesisConfig(**{**off, **rates})
        clock_u, clock_b = Clock(), Clock()
        genesis_corrupt(batch, gen, cfg)
        for _ in range(repeats):
            with clock_u:
                for c in few:
                    up(c)
            with clock_b:
                genesis_corrupt(batch, gen, cfg)
        u = clock_u.cpu / (repeats * len(few)) * 1e3
        b = clock_b.cpu / (repeats * len(batch)) * 1e3
        out[name] = {"upstream_ms": u, "batched_ms": b, "ratio": u / b}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8, help="cubes per batch (the demo preset's CPU batch; upstream: 6)")
    ap.add_argument("--rounds", type=int, default=60, help="upstream batches timed")
    ap.add_argument("--per-round", type=int, default=4, help="batched batches per upstream batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-breakdown", action="store_true", help="skip the per-transform timings")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    cubes = ct_cubes()
    pool = torch.from_numpy(cubes)
    print(f"real CT cubes: {len(cubes)} of {cubes.shape[2:]} (z, y, x) from pyradiomics {', '.join(VOLUMES)}, "
          f"mean intensity {cubes.mean():.3f}; batch {args.batch}; torch {torch.__version__}, "
          f"numpy {np.__version__}, torch threads {torch.get_num_threads()}; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    random.seed(args.seed)
    np.random.seed(args.seed)
    pairs = R.generate_pair(cubes, args.batch, R.UpstreamConfig())
    gen = torch.Generator().manual_seed(args.seed)
    next(pairs)                                              # warm-up (imports, caches)
    genesis_corrupt(pool[: args.batch], gen)
    up, bat = Clock(), Clock()
    dmg_u, dmg_b = [], []
    for _ in range(args.rounds):
        with up:
            x, y = next(pairs)
        dmg_u.append(damage(x, y))
        for _ in range(args.per_round):
            idx = torch.randint(0, len(pool), (args.batch,), generator=gen)
            with bat:
                res = genesis_corrupt(pool[idx], gen)
            dmg_b.append(damage(res.damaged, res.target))
    dmg_u, dmg_b = np.concatenate(dmg_u), np.concatenate(dmg_b)
    n_u, n_b = len(dmg_u), len(dmg_b)
    ms_u, ms_b = up.cpu / n_u * 1e3, bat.cpu / n_b * 1e3
    ratio, ratio_wall = ms_u / ms_b, (up.wall / n_u) / (bat.wall / n_b)
    m_u, m_b = dmg_u.mean(), dmg_b.mean()
    se_u, se_b = dmg_u.std(ddof=1) / np.sqrt(n_u), dmg_b.std(ddof=1) / np.sqrt(n_b)
    rel = m_b / m_u - 1
    z = (m_b - m_u) / np.hypot(se_u, se_b)

    print(f"upstream loop (generate_pair, step for step): {ms_u:8.2f} ms/cube CPU  "
          f"({up.wall / n_u * 1e3:8.2f} wall), {n_u} cubes")
    print(f"batched genesis_corrupt (CPU, 1 thread)     : {ms_b:8.3f} ms/cube CPU  "
          f"({bat.wall / n_b * 1e3:8.3f} wall), {n_b} cubes")
    print(f"ratio: {ratio:.1f}x in CPU time ({ratio_wall:.1f}x wall clock); target >= {TARGET:.0f}x: "
          f"{'MET' if ratio >= TARGET else 'NOT MET'}")
    print(f"mean damage per cube, mean |damaged - clean|: upstream {m_u:.4f} +- {se_u:.4f}, "
          f"batched {m_b:.4f} +- {se_b:.4f} (standard errors): batched {rel:+.1%} ({z:+.1f} SE); "
          f"same within {DAMAGE_TOLERANCE:.0%}: {'YES' if abs(rel) <= DAMAGE_TOLERANCE else 'NO'}")
    results = {"cubes": list(cubes.shape), "batch": args.batch, "torch": torch.__version__,
               "upstream_ms_per_cube": ms_u, "batched_ms_per_cube": ms_b, "ratio_cpu": ratio,
               "ratio_wall": ratio_wall, "target": TARGET, "target_met": bool(ratio >= TARGET),
               "damage_upstream": m_u, "damage_upstream_se": se_u, "damage_batched": m_b,
               "damage_batched_se": se_b, "damage_relative_difference": rel,
               "load_average": os.getloadavg()[0]}

    if torch.cuda.is_available():
        dev = torch.device("cuda")
        gcuda = torch.Generator(device=dev).manual_seed(args.seed)
        xb = pool[: max(args.batch, 32)].to(dev)
        genesis_corrupt(xb, gcuda)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(20):
            genesis_corrupt(xb, gcuda)
        torch.cuda.synchronize()
        ms_cuda = (time.perf_counter() - t0) / (20 * len(xb)) * 1e3
        results["cuda_ms_per_cube"] = ms_cuda
        print(f"batched CUDA ({torch.cuda.get_device_name()}), batch {len(xb)}: {ms_cuda:.4f} ms/cube wall, "
              f"{ms_u / ms_cuda:.0f}x the upstream loop")

    if not args.no_breakdown:
        rows = breakdown(cubes, gen, n_upstream=4)
        results["breakdown"] = rows
        print("each transform alone on every cube, ms/cube CPU: upstream function | genesis_corrupt | ratio")
        for name, r in rows.items():
            print(f"  {name:20s}: {r['upstream_ms']:8.2f} | {r['batched_ms']:7.3f} | {r['ratio']:6.1f}x")

    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
