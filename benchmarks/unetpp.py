"""UNet++ (``NestedUNet``) against nnU-Net's PlainConvUNet on the same plan: parameters, one training step
(forward + backward with deep supervision, as nnU-Net trains) and inference time, peak memory.

Plan: the MSD Lung 3d_fullres plan of ``genesis-chest-ct-nnunet-lung`` (6 stages, 32-320 features, 3x3x3
kernels, strides [1,2,2,2,2,(1,2,2)]), one CT channel, 2 classes. Both networks are measured in one run, each
in a fresh subprocess (so peak memory is the child's own ``VmHWM`` above its level before the step), on CPU
with ``--threads`` threads, and on CUDA as well when a GPU is present (``torch.cuda.max_memory_allocated``).

* training step: batch ``--batch`` (default 1), deep supervision on (PlainConvUNet and NestedUNet in nnU-Net's
  multi-scale mode; NestedUNet also in UNet++'s ``top_row`` mode, five full-resolution outputs), loss = sum of
  the output means, one timed step (``--repeats`` for more, the median is reported);
* inference: ``eval()``, ``no_grad``, deep supervision off; NestedUNet for every pruned branch L1..L5.

The plan's own patch (80 x 192 x 160) is heavy on a CPU: one UNet++ training step there took 123 s and
21.2 GB peak RSS on the 2-core build machine (PlainConvUNet 32 s, 6.4 GB; measured once, batch 1). The default
run therefore uses a 48 x 96 x 96 patch (same plan and topology, a multiple of the total strides; about
1 minute in all); ``--patch 80 192 160`` measures the full patch (several minutes, >20 GB for UNet++).

    python benchmarks/unetpp.py [--patch 48 96 96] [--batch 1] [--threads 2] [--repeats 1] [--json out.json]

``--plan-memory [PLANS]`` instead compares the two plans of one data set (default: the demo plan
``zoo/assets/demo/nnUNetPlans.json`` with its ``dataset.json``): peak memory of one training step (forward +
backward, deep supervision, nnU-Net's multi-scale outputs) of PlainConvUNet at the plain plan's patch and batch
and of NestedUNet at the patch and batch ``zoo plan --arch unetpp`` plans (``zoo.nnunet.planner``), each in a
fresh subprocess on CPU, with the ratio against the 1.2x target::

    python benchmarks/unetpp.py --plan-memory [PLANS] [-c 3d_fullres] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from child_memory import MEMORY_PRELUDE

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import json, statistics, sys, time
import torch
P = json.loads(sys.argv[1])
THREADS, DEVICE, ARCH, MODE, BATCH, PATCH, REPEATS, INFER_BRANCHES = (
    P["threads"], P["device"], P["arch"], P["mode"], P["batch"], tuple(P["patch"]), P["repeats"], P["branches"])
sys.path.insert(0, P["root"])
from zoo.archs import build_architecture
from zoo.entries.genesis import LUNG_PLAN_ARCH_KWARGS

def hwm():
    return peak_mb() * 2**20

def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

torch.set_num_threads(THREADS)
torch.manual_seed(0)
device = torch.device(DEVICE)
net = build_architecture(ARCH, in_channels=1, num_classes=2, deep_supervision=True, **LUNG_PLAN_ARCH_KWARGS)
if MODE is not None:
    net.decoder.deep_supervision_mode = MODE
net.to(device)
params = sum(p.numel() for p in net.parameters())
x = torch.randn(BATCH, 1, *PATCH, device=device)

def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()

out = {"params": params}
before = hwm()
cleared = reset_hwm()
base = hwm() if cleared else before
if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
    base_cuda = torch.cuda.memory_allocated()
times = []
for _ in range(REPEATS):
    net.zero_grad(set_to_none=True)
    sync(); t = time.perf_counter()
    outputs = net(x)
    loss = sum(o.float().mean() for o in outputs)
    loss.backward()
    sync(); times.append(time.perf_counter() - t)
    n_out, shapes = len(outputs), [list(o.shape[2:]) for o in outputs]
    del outputs, loss
out["train_s"] = statistics.median(times)
out["outputs"] = n_out
out["output_shapes"] = shapes
out["train_peak_bytes"] = (hwm() - base) if device.type == "cpu" else torch.cuda.max_memory_allocated() - base_cuda
out["peak_measure"] = ("VmHWM above the level before the step" if cleared else "VmHWM of the process (clear_refs "
                       "unavailable)") if device.type == "cpu" else "torch.cuda.max_memory_allocated above the weights"
net.zero_grad(set_to_none=True)
net.eval()
net.decoder.deep_supervision = False
infer = {}
branches = [None] + (list(range(net.depth, 0, -1)) if hasattr(net, "depth") and INFER_BRANCHES else [])
with torch.no_grad():
    for b in branches:
        if b is not None:
            net.branch = b
        sync(); t = time.perf_counter()
        y = net(x)
        sync(); infer["full" if b is None else f"L{b}"] = time.perf_counter() - t
        del y
out["infer_s"] = infer
print("RESULT " + json.dumps(out))
'''


def run_child(arch: str, mode: str | None, args: argparse.Namespace, device: str, infer_branches: bool) -> dict:
    params = {"root": str(ROOT), "threads": args.threads, "device": device, "arch": arch, "mode": mode,
              "batch": args.batch, "patch": list(args.patch), "repeats": args.repeats, "branches": infer_branches}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run([sys.executable, "-c", MEMORY_PRELUDE + textwrap.dedent(CHILD), json.dumps(params)], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{arch} ({mode}) on {device} failed:\n{proc.stderr[-3000:]}")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


PLAN_CHILD = r'''
import json, sys
import torch
P = json.loads(sys.argv[1])
sys.path.insert(0, P["root"])
from zoo.archs import build_architecture
torch.set_num_threads(P["threads"])
torch.manual_seed(0)
net = build_architecture(P["arch"], in_channels=P["in_channels"], num_classes=P["num_classes"],
                         deep_supervision=True, **P["arch_kwargs"])
x = torch.randn(P["batch"], P["in_channels"], *P["patch"])
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = peak_mb()
outputs = net(x)
loss = sum(o.float().mean() for o in outputs)
loss.backward()
print("RESULT " + json.dumps({"peak_mib": peak_mb() - base}))
'''


def plan_memory(plans_path: str, configuration: str, threads: int) -> dict:
    """Peak memory of a training step: PlainConvUNet on the plain plan, NestedUNet on ``zoo plan --arch unetpp``'s."""
    sys.path.insert(0, str(ROOT))
    from zoo.nnunet.plan_rewrite import rewrite_plan
    from zoo.nnunet.plans import arch_for_configuration

    plans = json.loads(Path(plans_path).read_text())
    dataset_json = Path(plans_path).with_name("dataset.json")
    num_classes = len(json.loads(dataset_json.read_text())["labels"]) if dataset_json.is_file() else 2
    unetpp = rewrite_plan(None, plans, configuration, arch="unetpp")
    rows = {}
    for label, arch, p in (("PlainConvUNet (plain plan)", "plain_conv_unet", plans),
                           ("NestedUNet (unetpp plan)", "nested_unet", unetpp)):
        spec = arch_for_configuration(p, configuration, in_channels=1, num_classes=2)
        conf = p["configurations"][configuration]
        in_channels = len(conf.get("normalization_schemes") or [0])
        params = {"root": str(ROOT), "threads": threads, "arch": arch, "arch_kwargs": spec.arch_kwargs,
                  "in_channels": in_channels, "num_classes": num_classes, "patch": conf["patch_size"],
                  "batch": conf["batch_size"]}
        proc = subprocess.run([sys.executable, "-c", MEMORY_PRELUDE + textwrap.dedent(PLAN_CHILD), json.dumps(params)],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        if proc.returncode != 0:
            raise RuntimeError(f"{label} failed:\n{proc.stderr[-3000:]}")
        line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
        rows[label] = {"patch": conf["patch_size"], "batch": conf["batch_size"],
                       **json.loads(line[len("RESULT "):])}
    plain, nested = rows.values()
    ratio = nested["peak_mib"] / plain["peak_mib"]
    print(f"\n{plans_path} [{configuration}], CPU, {threads} thread(s): peak memory of one training step")
    for label, r in rows.items():
        print(f"{label:<28} patch {' x '.join(map(str, r['patch'])):<16} batch {r['batch']:<3} "
              f"{r['peak_mib'] / 1024:7.2f} GiB")
    print(f"UNet++ plan / plain plan = {ratio:.2f}x (target <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'}); "
          f"estimates: {unetpp['medzoo_unetpp_plan']['estimate_unetpp_step']:,} vs "
          f"{unetpp['medzoo_unetpp_plan']['estimate_plain_step']:,} feature-map voxels")
    return {"plans": str(plans_path), "configuration": configuration, "rows": rows, "ratio": ratio}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, nargs=3, default=[48, 96, 96], help="z y x (default 48 96 96)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=1, help="timed training steps per network (median)")
    parser.add_argument("--no-branches", action="store_true", help="skip the pruned-branch inference timings")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--plan-memory", nargs="?", const=str(ROOT / "zoo" / "assets" / "demo" / "nnUNetPlans.json"),
                        metavar="PLANS", help="compare the plain plan with zoo plan --arch unetpp's (peak memory)")
    parser.add_argument("-c", "--configuration", default="3d_fullres", help="with --plan-memory")
    args = parser.parse_args(argv)
    if args.plan_memory:
        results = plan_memory(args.plan_memory, args.configuration, args.threads)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        return results
    sys.path.insert(0, str(ROOT))
    from zoo.entries.genesis import LUNG_PLAN_ARCH_KWARGS

    total = [1, 1, 1]
    for stride in LUNG_PLAN_ARCH_KWARGS["strides"]:
        total = [t * v for t, v in zip(total, stride)]
    bottom = [p // t for p, t in zip(args.patch, total)]
    if any(p % t for p, t in zip(args.patch, total)) or bottom[0] * bottom[1] * bottom[2] < 2:
        parser.error(f"--patch must be a multiple of the plan's total strides {total} with more than one voxel "
                     f"at the bottleneck (InstanceNorm), e.g. 32 64 64 or 48 96 96; got {args.patch}")

    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cases = [("PlainConvUNet", "plain_conv_unet", None), ("NestedUNet (multiscale DS)", "nested_unet", "multiscale"),
             ("NestedUNet (top_row DS)", "nested_unet", "top_row")]
    results: dict = {"plan": "genesis-chest-ct-nnunet-lung (MSD Lung 3d_fullres)", "patch": args.patch,
                     "batch": args.batch, "threads": args.threads, "devices": {}}
    for device in devices:
        rows = {}
        for label, arch, mode in cases:
            rows[label] = run_child(arch, mode, args, device,
                                    infer_branches=(mode == "multiscale" and not args.no_branches))
        results["devices"][device] = rows
        name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU, {args.threads} thread(s)"
        base = rows["PlainConvUNet"]
        print(f"\n{name}: patch {' x '.join(map(str, args.patch))}, batch {args.batch}")
        print(f"{'network':<28} {'params':>12} {'train step':>11} {'x U-Net':>8} {'peak memory':>12} "
              f"{'inference':>10} {'outputs':>8}")
        for label, r in rows.items():
            print(f"{label:<28} {r['params']:>12,} {r['train_s']:>10.2f}s {r['train_s'] / base['train_s']:>7.2f}x "
                  f"{r['train_peak_bytes'] / 2**30:>9.2f} GiB {r['infer_s']['full']:>9.2f}s {r['outputs']:>8}")
        branches = {k: v for k, v in rows["NestedUNet (multiscale DS)"]["infer_s"].items() if k != "full"}
        if branches:
            print("NestedUNet pruned inference: " + ", ".join(f"{k} {v:.2f}s" for k, v in branches.items()))
        print(f"parameters: NestedUNet / PlainConvUNet = "
              f"{rows['NestedUNet (multiscale DS)']['params'] / base['params']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
