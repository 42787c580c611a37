"""Time to a ready model and peak memory: ``zoo.load('med3d-resnet152')`` from a warm cache.

Compared, in one run, each in a fresh subprocess (so peak memory is measured above that process's own
import baseline):

  (a) the MONAI user's path: build MONAI's ResNet-152 normally, ``torch.load`` the upstream ``.pth``,
      strip ``module.``, ``load_state_dict``;
  (b) ``zoo.load('med3d-resnet152')`` with the converted file already in the cache;
  (c) the floor: build on the meta device and assign tensors memory-mapped from the safetensors file.

(b) and (c) are timed from a process that has imported torch (and zoo, which imports almost nothing), so each
pays for the modules it imports on the way (safetensors, the architecture; zoo also its registry and loading
code); (a) is timed after ``import monai``, which favours MONAI.

Also ``import zoo`` on top of ``import torch``. Targets: (a)/(b) >= 10, (b)/(c) <= 1.5, peak of (b) above
its baseline <= 1.3x the checkpoint size, import overhead <= 0.2 s.

The upstream file is a MedicalNet-layout ``resnet_152.pth`` with random weights (the real one cannot be
downloaded here; sizes and layout are the same). Run: ``python benchmarks/load_speed.py [--depth 152]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from child_memory import MEMORY_PRELUDE

CHILD_PRELUDE = MEMORY_PRELUDE + """
import json, sys, time
"""

MONAI_PATH = """
import torch
from monai.networks.nets.resnet import ResNet, ResNetBottleneck
base = rss_mb(); t0 = time.perf_counter()
net = ResNet(ResNetBottleneck, [3, 8, 36, 3], [64, 128, 256, 512], spatial_dims=3, n_input_channels=1,
             conv1_t_size=7, conv1_t_stride=2, shortcut_type="B", bias_downsample=False, feed_forward=False)
sd = torch.load(os.environ["UPSTREAM"], map_location="cpu", weights_only=True)["state_dict"]
sd = {k.replace("module.", "", 1): v for k, v in sd.items()}
net.load_state_dict(sd, strict=True)
t = time.perf_counter() - t0
print(json.dumps({"seconds": t, "peak_above_mb": peak_mb() - base}))
"""

ZOO_PATH = """
import torch, zoo
base = rss_mb(); t0 = time.perf_counter()
net = zoo.load("med3d-resnet{depth}", cache_dir=os.environ["ZOO_BENCH_CACHE"], progress=False)
t = time.perf_counter() - t0
assert not any(p.is_meta for p in net.parameters())
print(json.dumps({"seconds": t, "peak_above_mb": peak_mb() - base}))
"""

FLOOR_PATH = """
import torch
base = rss_mb(); t0 = time.perf_counter()
from safetensors.torch import load_file          # timed like zoo.load's own lazy imports: both start after
from zoo.archs import build_architecture         # `import torch` (+ `import zoo`, which imports almost nothing)
with torch.device("meta"):
    net = build_architecture("med3d_resnet", depth={depth}, in_channels=1)
net.load_state_dict(load_file(os.environ["CONVERTED"]), assign=True)
t = time.perf_counter() - t0
print(json.dumps({"seconds": t, "peak_above_mb": peak_mb() - base}))
"""


def run_child(code: str, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(code)], env={**os.environ, **env},
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(code: str, env: dict[str, str], repeats: int) -> dict:
    runs = [run_child(code, env) for _ in range(repeats)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def import_time(statement: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        code = f"import time; t=time.perf_counter(); {statement}; print(time.perf_counter()-t)"
        times.append(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                          check=True).stdout))
    return statistics.median(times)


def prepare(depth: int, workdir: Path) -> tuple[Path, Path, Path]:
    """Write a MedicalNet-layout upstream file and convert it into a zoo cache as a first load would."""
    import torch

    from zoo.archs.build import build_model, meta_device_model
    from zoo.convert.cache import convert_into_cache, converted_dir, source_key_for
    from zoo.registry import get_entry

    entry = get_entry(f"med3d-resnet{depth}")
    upstream = workdir / entry.source.filename
    model = build_model(entry)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, upstream,
               _use_new_zipfile_serialization=False)
    del model
    cache = workdir / "cache"
    directory = converted_dir(entry.name, source_key_for(entry), cache)
    reference = meta_device_model(lambda: build_model(entry))
    converted = convert_into_cache(directory, upstream, entry=entry, fmt="medicalnet", reference=reference,
                                   provenance={"source_sha256": "benchmark", "verified_by": "benchmark"},
                                   progress=False)
    return upstream, cache, converted.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=152)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        upstream, cache, converted = prepare(args.depth, Path(tmp))
        size_mb = upstream.stat().st_size / 2**20
        env = {"UPSTREAM": str(upstream), "ZOO_BENCH_CACHE": str(cache), "CONVERTED": str(converted),
               "HF_HUB_OFFLINE": "1"}
        a = median_of(MONAI_PATH, env, args.repeats) if args.depth == 152 else None
        b = median_of(ZOO_PATH.replace("{depth}", str(args.depth)), env, args.repeats)
        c = median_of(FLOOR_PATH.replace("{depth}", str(args.depth)), env, args.repeats)
    t_torch = import_time("import torch", 5)
    t_zoo = import_time("import torch, zoo", 5)

    print(f"med3d-resnet{args.depth}: upstream checkpoint {size_mb:.0f} MiB, median of {args.repeats} fresh processes")
    print(f"{'path':<44}{'seconds':>10}{'peak above baseline (MiB)':>28}")
    if a:
        print(f"{'(a) MONAI: build + torch.load + load_state_dict':<44}{a['seconds']:>10.3f}{a['peak_above_mb']:>28.0f}")
    print(f"{'(b) zoo.load, warm cache':<44}{b['seconds']:>10.3f}{b['peak_above_mb']:>28.0f}")
    print(f"{'(c) floor: meta build + mmap assign':<44}{c['seconds']:>10.3f}{c['peak_above_mb']:>28.0f}")
    print()
    if a:
        print(f"speed-up over MONAI path (a)/(b): {a['seconds'] / b['seconds']:6.1f}x   (target >= 10x)")
    print(f"overhead over floor (b)/(c):       {b['seconds'] / c['seconds']:6.2f}x   (target <= 1.5x)")
    print(f"peak memory / checkpoint size:     {b['peak_above_mb'] / size_mb:6.2f}    (target <= 1.3)")
    print(f"import torch {t_torch:.3f} s; import torch, zoo {t_zoo:.3f} s; zoo adds {t_zoo - t_torch:+.3f} s (target <= 0.2 s)")


if __name__ == "__main__":
    main()
