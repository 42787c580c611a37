"""Models Genesis training throughput: cubes per second of a full step (corrupt on the device, forward,
MSE on the sigmoid, backward, SGD), per network, measured in one run.

Networks: the Task006 lung plan of the Models Genesis nnU-Net (30.8 M parameters), the Genesis UNet3D
(19.1 M) and the genesis-ct-demo plan (1.4 M). Cubes are (32, 64, 64) (z, y, x) = upstream 64 x 64 x 32 (x, y, z).
The baseline printed beside each is the corruption alone (zoo.transforms.genesis.genesis_corrupt), so the
ratio says how much of a step the data side costs. CUDA is measured too when available (bf16 autocast).

    python benchmarks/genesis_training.py [--batch 2] [--steps 3] [--nets lung,unet3d,demo]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.genesis.config import preset  # noqa: E402
from export.genesis.train import build_network, restoration_loss  # noqa: E402
from zoo.transforms.genesis import genesis_corrupt  # noqa: E402

PRESET_OF = {"lung": "lung", "unet3d": "unet3d", "demo": "demo"}


def measure(net_name: str, device: torch.device, batch: int, steps: int) -> dict:
    cfg = preset(PRESET_OF[net_name])
    torch.manual_seed(0)
    net = build_network(cfg).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr * 0.01, momentum=0.9)
    gen = torch.Generator(device=device).manual_seed(0)
    clean = torch.rand(batch, 1, *cfg.cube_zyx, device=device)
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else contextlib.nullcontext

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step() -> None:
        damaged = genesis_corrupt(clean, gen)
        with amp():
            loss, _ = restoration_loss(net, damaged.damaged, damaged.target, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    times, corrupt = [], []
    for _ in range(steps):
        sync(); t0 = time.perf_counter(); step(); sync(); times.append(time.perf_counter() - t0)
        sync(); t0 = time.perf_counter(); genesis_corrupt(clean, gen); sync(); corrupt.append(time.perf_counter() - t0)
    step_s, corrupt_s = statistics.median(times), statistics.median(corrupt)
    return {"net": net_name, "device": device.type, "params": sum(p.numel() for p in net.parameters()),
            "cubes_per_s": batch / step_s, "corrupt_cubes_per_s": batch / corrupt_s, "data_share": corrupt_s / step_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--nets", default="lung,unet3d,demo")
    args = p.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"batch {args.batch} of (32, 64, 64) cubes, median of {args.steps} steps, torch threads {torch.get_num_threads()}")
    print(f"{'network':<8}{'device':<8}{'params':>12}{'train cubes/s':>15}{'corrupt cubes/s':>17}{'data share':>12}")
    for device in devices:
        for name in args.nets.split(","):
            r = measure(name, device, args.batch, args.steps)
            print(f"{r['net']:<8}{r['device']:<8}{r['params']:>12,}{r['cubes_per_s']:>15.2f}"
                  f"{r['corrupt_cubes_per_s']:>17.1f}{r['data_share']:>11.1%}")


if __name__ == "__main__":
    main()
