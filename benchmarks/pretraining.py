"""Training throughput of the Med3D co-training and the five 3D self-supervised tasks: samples per second of a
full optimiser step (label generation / cropping on the fly, forward, loss, backward, step), measured on CPU and,
when available, on CUDA (bf16 autocast), in one run.

A "sample" is what one batch entry is for the task: a Med3D crop (resized to the patch), a rotation cube, a
jigsaw puzzle (27 patches), an RPL pair, a CPC grid (64 patches), an exemplar triplet. The data-side column is
the label generation alone (rotations, patch grids, CPC augmentation, exemplar augmentation, Med3D crops and
rotation/scaling), so its share says how much of a step the data costs. Inputs are synthetic (random volumes),
so the numbers do not depend on which public volumes are present.

    python benchmarks/pretraining.py                       # demo presets (CPU-sized)
    python benchmarks/pretraining.py --preset published    # the authors' 128^3 settings (GPU-sized)
    python benchmarks/pretraining.py --tasks rotation,cpc --steps 5
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.common.distributed import DistInfo  # noqa: E402
from export.med3d.config import preset as med3d_preset  # noqa: E402
from export.med3d.data import Case, Med3DDataset, foreground_bbox  # noqa: E402
from export.med3d.train import Med3DTask  # noqa: E402
from export.ssl3d.config import TASKS, preset as ssl_preset  # noqa: E402
from export.ssl3d.encoders import encoder_spec  # noqa: E402
from export.ssl3d.data import ArrayCubes  # noqa: E402
from export.ssl3d.tasks import make_task  # noqa: E402

ALL = ("med3d",) + TASKS


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _med3d_task(preset_name: str, batch: int | None) -> tuple[Med3DTask, object]:
    cfg = med3d_preset("medicalnet" if preset_name == "published" else "demo", amp=True)
    if batch:
        cfg.batch_size = batch
    rng = np.random.default_rng(0)
    datasets = []
    for j, shape in enumerate([(48, 160, 160), (24, 128, 128), (96, 128, 128)]):
        cases = []
        for c in range(2):
            label = np.zeros(shape, np.uint8)
            label[shape[0] // 3: shape[0] // 2, 40:60, 50:80] = 1
            cases.append(Case(f"c{c}", rng.standard_normal(shape).astype(np.float32), label, foreground_bbox(label)))
        datasets.append(Med3DDataset(f"D{j}", {"background": 0, "fg": 1}, "CT", (1.0, 1.0, 1.0), cases, []))
    return Med3DTask(cfg, datasets), cfg


def _ssl_task(name: str, preset_name: str, batch: int | None):
    cfg = ssl_preset(name, preset_name, amp=True)
    if batch:
        cfg.batch_size = batch
    spec = encoder_spec(cfg.encoder, features=cfg.features, dropout=cfg.dropout, norm_momentum=cfg.norm_momentum)
    cubes = np.random.default_rng(0).standard_normal((max(2 * cfg.batch_size, 4), 1, *(cfg.size,) * 3), dtype=np.float32)
    return make_task(cfg, spec, ArrayCubes(cubes, cubes[: cfg.batch_size])), cfg


def measure(name: str, device: torch.device, preset_name: str, steps: int, batch: int | None) -> dict:
    task, cfg = _med3d_task(preset_name, batch) if name == "med3d" else _ssl_task(name, preset_name, batch)
    torch.manual_seed(0)
    net = task.build_model().to(device)
    info = DistInfo()
    task.setup(device, info)             # loaders with no worker: the data side is timed in this process
    opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9) if name == "med3d" else \
        torch.optim.Adam(net.parameters(), lr=1e-4)
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else contextlib.nullcontext
    plan = task.train_plan if name == "med3d" else task.loader.plan
    batches = [plan.load(0, i % len(plan)) for i in range(steps + 1)]
    gen = torch.Generator(device=device).manual_seed(0)

    def step(b) -> None:
        loss, _ = task.loss(net, b, gen, amp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def data_only(b, i: int) -> None:
        if name == "med3d":
            from export.med3d.data import augment

            _, images, labels = plan.load(0, i % len(plan))      # crops cut from the volumes
            augment(images.to(device), labels.to(device).long(), gen, cfg.rotation_deg, tuple(cfg.scale_range))
        else:
            task.make(b.to(device), gen)

    step(batches[0])  # warm-up
    times, data = [], []
    for i in range(steps):
        b = batches[(i + 1) % len(batches)]
        _sync(device); t0 = time.perf_counter(); step(b); _sync(device); times.append(time.perf_counter() - t0)
        _sync(device); t0 = time.perf_counter(); data_only(b, i + 1); _sync(device); data.append(time.perf_counter() - t0)
    n = cfg.batch_size
    step_s, data_s = statistics.median(times), statistics.median(data)
    size = f"{tuple(cfg.patch_zyx)}" if name == "med3d" else f"{cfg.size}^3"
    encoder = f"resnet{cfg.depth}" if name == "med3d" else "unet " + "/".join(str(f) for f in cfg.features)
    return {"task": name, "device": device.type, "batch": n, "input": size, "encoder": encoder,
            "params": sum(p.numel() for p in net.parameters()), "samples_per_s": n / step_s,
            "data_samples_per_s": n / data_s, "data_share": data_s / step_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("demo", "published"), default="demo")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, help="override every task's batch size")
    p.add_argument("--tasks", default=",".join(ALL))
    p.add_argument("--devices", default="cpu,cuda", help="cpu, cuda (skipped when unavailable)")
    args = p.parse_args()
    devices = [torch.device(d) for d in args.devices.split(",") if d == "cpu" or torch.cuda.is_available()]
    print(f"preset {args.preset}, median of {args.steps} steps, torch threads {torch.get_num_threads()}")
    print(f"{'task':<10}{'device':<7}{'batch':>6}  {'input':<16}{'encoder':<22}{'params':>12}{'samples/s':>11}"
          f"{'data samples/s':>16}{'data share':>12}")
    for device in devices:
        for name in args.tasks.split(","):
            r = measure(name, device, args.preset, args.steps, args.batch)
            print(f"{r['task']:<10}{r['device']:<7}{r['batch']:>6}  {r['input']:<16}{r['encoder']:<22}{r['params']:>12,}"
                  f"{r['samples_per_s']:>11.2f}{r['data_samples_per_s']:>16.1f}{r['data_share']:>11.1%}")


if __name__ == "__main__":
    main()
