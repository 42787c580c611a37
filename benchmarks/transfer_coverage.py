"""How much of ``genesis-chest-ct-nnunet-lung`` reaches the networks nnU-Net designs for the ten Medical
Segmentation Decathlon tasks, and how fast medzoo adapts it.

Ten plans are made by nnunetv2's own ``ExperimentPlanner`` (default PlainConvUNet planner, 8 GB target) from
synthetic dataset fingerprints mimicking the MSD tasks (modality, channels, labels, approximate median
spacing and shape, z first). For each plan's ``3d_fullres`` configuration, the share of target parameters
initialised from the checkpoint:

* **nnunetv2 loader**: ``nnunetv2.run.load_pretrained_weights`` on the network nnunetv2 builds, fed the
  checkpoint in nnU-Net v2 layout (all alias keys): it refuses any shape mismatch outside the segmentation
  heads, so the share is 0 unless the plan matches exactly;
* **Genesis rule**: the all-or-nothing loader of the original Models Genesis nnU-Net code (competition
  README): if any ``conv_blocks`` tensor (encoder / decoder stages) is missing or shaped differently nothing
  loads ("Training from scratch"), otherwise every shape-matching tensor loads (raw shapes, no axis handling);
* **medzoo**: ``zoo.nnunet.adapt_to_plan`` (transfer engine), with and without the segmentation heads.

The goal: on every plan, every target tensor whose stage has a counterpart in the checkpoint is initialised
from it (only stages the checkpoint lacks and the segmentation heads start random): column ``goal``.

Then one column per model family of the registry (:data:`FAMILY_COLUMNS`: Genesis, VoCo, OpenMind, STU-Net, SuPreM's
SegResNet), each on the same ten tasks, through the route the family offers (the task's PlainConvUNet plan, its
ResEnc L plan, or the plan rewritten by ``zoo plan --arch``), from random weights in the entry's layout
(``--no-families`` skips it).

Then the adaptation of the 30.8M-parameter model into the 4-channel BrainTumour plan, in a fresh process
(from the converted cache: read weights, build the target, adapt, initialise what is left): time (median of
three fresh processes) and peak memory above the process's baseline, against < 0.5 s and < 2.5x the model's
bytes.

The checkpoint is a Genesis nnU-Net v1 file with random weights (same layout and sizes as the real one, which
cannot be downloaded here). Run: ``python benchmarks/transfer_coverage.py [--json results.json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from child_memory import MEMORY_PRELUDE

ROOT = Path(__file__).resolve().parent.parent
NAME = "genesis-chest-ct-nnunet-lung"

# task: (modality channels, labels, median spacing z,y,x in mm, median shape z,y,x, numTraining, relative size
# after cropping (< 0.75: images shrink when cropped to non-zero, e.g. skull-stripped))
TASKS = {
    "BrainTumour": (["FLAIR", "T1w", "T1gd", "T2w"],
                    {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3},
                    (1.0, 1.0, 1.0), (138, 169, 138), 484, 0.6),
    "Heart": (["MRI"], {"background": 0, "left atrium": 1}, (1.37, 1.25, 1.25), (115, 320, 232), 20, 1.0),
    "Liver": (["CT"], {"background": 0, "liver": 1, "cancer": 2}, (1.0, 0.77, 0.77), (432, 512, 512), 131, 1.0),
    "Hippocampus": (["MRI"], {"background": 0, "Anterior": 1, "Posterior": 2}, (1.0, 1.0, 1.0), (36, 50, 35), 260,
                    1.0),
    "Prostate": (["T2", "ADC"], {"background": 0, "PZ": 1, "TZ": 2}, (3.6, 0.62, 0.62), (20, 320, 319), 32, 1.0),
    "Lung": (["CT"], {"background": 0, "cancer": 1}, (1.24, 0.79, 0.79), (252, 512, 512), 63, 1.0),
    "Pancreas": (["CT"], {"background": 0, "pancreas": 1, "cancer": 2}, (2.5, 0.8, 0.8), (93, 512, 512), 281, 1.0),
    "HepaticVessel": (["CT"], {"background": 0, "vessel": 1, "tumour": 2}, (5.0, 0.8, 0.8), (49, 512, 512), 303, 1.0),
    "Spleen": (["CT"], {"background": 0, "spleen": 1}, (5.0, 0.79, 0.79), (90, 512, 512), 41, 1.0),
    "Colon": (["CT"], {"background": 0, "colon cancer": 1}, (5.0, 0.78, 0.78), (95, 512, 512), 126, 1.0),
}

INTENSITY = {"max": 3000.0, "mean": 100.0, "median": 90.0, "min": -1000.0, "percentile_00_5": -900.0,
             "percentile_99_5": 1500.0, "std": 200.0}


def write_raw_dataset(raw: Path, pre: Path, task_id: int, task: str) -> str:
    """dataset.json + dataset_fingerprint.json for nnunetv2's planner (no image files are read)."""
    channels, labels, spacing, shape, n_train, rel = TASKS[task]
    name = f"Dataset{task_id:03d}_{task}"
    cases = {f"{task.lower()}_{i:03d}": {"images": [f"imagesTr/{task.lower()}_{i:03d}_{c:04d}.nii.gz"
                                                    for c in range(len(channels))],
                                         "label": f"labelsTr/{task.lower()}_{i:03d}.nii.gz"} for i in range(n_train)}
    ds = {"channel_names": {str(i): c for i, c in enumerate(channels)}, "labels": labels, "numTraining": n_train,
          "file_ending": ".nii.gz", "overwrite_image_reader_writer": "SimpleITKIO", "dataset": cases}
    if any(isinstance(v, list) for v in labels.values()):
        ds["regions_class_order"] = [1, 2, 3]
    (raw / name).mkdir(parents=True)
    (raw / name / "dataset.json").write_text(json.dumps(ds))
    # small deterministic jitter around the median (the planner takes medians / percentiles)
    factors = [0.9, 0.95, 1.0, 1.0, 1.0, 1.05, 1.1]
    fingerprint = {
        "spacings": [[s * f for s in spacing] for f in factors],
        "shapes_after_crop": [[max(1, round(n * f)) for n in shape] for f in reversed(factors)],
        "foreground_intensity_properties_per_channel": {str(i): INTENSITY for i in range(len(channels))},
        "median_relative_size_after_cropping": rel,
    }
    (pre / name).mkdir(parents=True)
    (pre / name / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))
    return name


def plan_all(work: Path) -> dict[str, tuple[Path, dict]]:
    """Run nnunetv2's ExperimentPlanner (PlainConvUNet) and its ResEnc L planner on every task; returns task ->
    (PlainConvUNet plans path, dataset.json); the ResEnc L plans lie beside, as ``nnUNetResEncUNetLPlans.json``."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import (
        nnUNetPlannerResEncL,
    )

    raw, pre = Path(os.environ["nnUNet_raw"]), Path(os.environ["nnUNet_preprocessed"])
    out = {}
    for i, task in enumerate(TASKS, start=1):
        name = write_raw_dataset(raw, pre, i, task)
        with contextlib.redirect_stdout(io.StringIO()):
            ExperimentPlanner(name).plan_experiment()
            nnUNetPlannerResEncL(name).plan_experiment()
        out[task] = (pre / name / "nnUNetPlans.json", json.loads((raw / name / "dataset.json").read_text()))
    return out


#: one column per model family of the registry: (column, entry, which of the task's plans it goes into).
#: ``plain``: nnunetv2's default PlainConvUNet plan; ``resenc-l``: nnunetv2's ResEnc L plan (the planner the
#: nnU-Net authors recommend for ResidualEncoderUNets); ``rewrite:ARCH``: the default plan rewritten by
#: ``zoo plan --arch ARCH`` (the family's own network class in nnU-Net, which keeps the plan's data and takes the
#: checkpoint's topology). MONAI networks are not handled by medzoo's transfer engine (nnU-Net trains MONAI's own
#: network): their column is what nnunetv2's own ``load_pretrained_weights`` loads into the rewritten plan's network
#: from ``zoo.load(name, in_channels=C, num_classes=K)``'s weights.
FAMILY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("Genesis", NAME, "plain"),
    ("VoCo", "voco-omni-nnunet", "plain"),
    ("OpenMind", "openmind-resencl-mae", "resenc-l"),
    ("STU-Net", "stunet-base", "rewrite:stunet"),
    ("SuPreM-SRN", "suprem-segresnet", "rewrite:monai"),
)


def family_plan(plans_path: Path, route: str, name: str, work: Path) -> Path:
    """The plans file ``route`` names for ``plans_path``'s task (see :data:`FAMILY_COLUMNS`)."""
    if route == "plain":
        return plans_path
    if route == "resenc-l":
        return plans_path.with_name("nnUNetResEncUNetLPlans.json")
    from zoo.nnunet.plan_rewrite import rewrite_plan

    out = work / "rewritten" / f"{plans_path.parent.name}_{name}.json"
    out.parent.mkdir(exist_ok=True)
    rewrite_plan(name, plans_path, arch=route.partition(":")[2], output=out)
    return out


def family_coverage(plans: dict[str, tuple[Path, dict]], work: Path) -> dict[str, dict[str, dict]]:
    """Family column -> task -> shares of the target initialised from a random-weight checkpoint in the entry's
    layout (the real files cannot be downloaded here; coverage depends on shapes only)."""
    import torch

    from zoo.archs.build import build_model
    from zoo.nnunet.export import adapt_to_plan
    from zoo.registry import get_entry

    out: dict[str, dict[str, dict]] = {}
    for column, name, route in FAMILY_COLUMNS:
        torch.manual_seed(0)
        source = build_model(get_entry(name)).state_dict()
        out[column] = {}
        for task, (plans_path, ds) in plans.items():
            target = family_plan(plans_path, route, name, work)
            if route == "rewrite:monai":
                out[column][task] = _nnunet_loader_share(name, target, ds, work)
                continue
            net, report = adapt_to_plan(name, target, "3d_fullres", ds, state_dict=source)
            del net
            out[column][task] = {"plans": target.name, "share": report.share_initialised,
                                 "share_without_heads": report.share_initialised_body,
                                 "goal_met": not [r for r in report.rows if not r.head and r.action == "skip"]}
        del source
    return out


def _nnunet_loader_share(name: str, plans_path: Path, ds: dict, work: Path) -> dict:
    """nnunetv2's ``load_pretrained_weights`` into the network of ``plans_path``, fed medzoo's weights of ``name``
    fitted to the task's channels and classes (nnU-Net never loads the heads: they count as fresh)."""
    import torch
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from zoo.archs.build import build_model
    from zoo.registry import get_entry

    heads = PlansManager(str(plans_path)).get_label_manager(ds).num_segmentation_heads
    weights = build_model(get_entry(name), len(ds["channel_names"]), heads).state_dict()
    path = work / f"{name}_{plans_path.parent.name}.pth"
    torch.save({"network_weights": weights}, path)
    share = share_nnunet_loader(plans_path, ds, path)  # all but the heads, or 0 when nnunetv2 refuses
    return {"plans": plans_path.name, "share": share, "share_without_heads": 1.0 if share > 0 else 0.0,
            "goal_met": share > 0}


def print_family_table(columns: dict[str, dict[str, dict]]) -> None:
    print("\nshare of target parameters initialised (without segmentation heads), one column per family "
          "(random weights in each entry's layout; plan route in the header):")
    names = {c: (n, r) for c, n, r in FAMILY_COLUMNS}
    head = f"{'task':<14} " + " ".join(f"{c:>12}" for c in columns)
    print(head)
    print(" " * 15 + " ".join(f"{names[c][1]:>12}" for c in columns))
    print("-" * len(head))
    for task in TASKS:
        print(f"{task:<14} " + " ".join(
            f"{columns[c][task]['share_without_heads']:>11.1%}{'' if columns[c][task]['goal_met'] else '*'}"
            for c in columns))
    print("mean           " + " ".join(
        f"{statistics.mean(v['share_without_heads'] for v in columns[c].values()):>11.1%} " for c in columns))
    print("(* a target tensor with a counterpart in the checkpoint was left fresh: goal not met)")


def fake_checkpoint(work: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from upstream import nnunet_v1_file  # the documented v1 layout, random weights

    from zoo.registry import get_entry

    path = work / get_entry(NAME).source.filename
    nnunet_v1_file(path)
    return path


def canonical_params(net) -> tuple[dict, int, int]:
    """(canonical key -> shape, all params, seg-layer params) of a network, aliases counted once."""
    from zoo.state_dict import alias_groups

    sd = net.state_dict(keep_vars=True)
    shapes = {g[0]: tuple(sd[g[0]].shape) for g in alias_groups(net)}
    total = sum(_numel(s) for s in shapes.values())
    seg = sum(_numel(s) for k, s in shapes.items() if ".seg_layers." in k)
    return shapes, total, seg


def _numel(shape) -> int:
    return math.prod(shape)


def nnunet_network(plans_path: Path, ds: dict, meta: bool):
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(str(plans_path))
    cm = pm.get_configuration("3d_fullres")
    args = (cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import,
            determine_num_input_channels(pm, cm, ds), pm.get_label_manager(ds).num_segmentation_heads)
    if meta:
        with torch.device("meta"):
            return get_network_from_plans(*args, allow_init=False, deep_supervision=True), cm
    return get_network_from_plans(*args, allow_init=False, deep_supervision=True), cm


def share_nnunet_loader(plans_path: Path, ds: dict, v2_file: Path) -> float:
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    net, _ = nnunet_network(plans_path, ds, meta=False)
    _, total, seg = canonical_params(net)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            load_pretrained_weights(net, str(v2_file))
    except AssertionError:
        return 0.0
    return (total - seg) / total


def share_genesis_rule(plans_path: Path, ds: dict, source_shapes: dict) -> float:
    net, _ = nnunet_network(plans_path, ds, meta=True)
    shapes, total, _ = canonical_params(net)
    blocks = [k for k in shapes if k.startswith(("encoder.stages.", "decoder.stages."))]
    if any(source_shapes.get(k) != shapes[k] for k in blocks):
        return 0.0  # "Training from scratch"
    return sum(_numel(s) for k, s in shapes.items() if source_shapes.get(k) == s) / total


TIMING_CHILD = MEMORY_PRELUDE + """
import json, sys, time
import torch, zoo
from zoo.nnunet.export import adapt_to_plan
import warnings; warnings.simplefilter('ignore')
e = os.environ
base = rss_mb()
t0 = time.perf_counter()
net, report = adapt_to_plan("{name}", e["PLANS"], "3d_fullres", e["DS"], checkpoint=e["CKPT"], cache_dir=e["CACHE"])
first = time.perf_counter() - t0
peak = peak_mb() - base
assert not any(p.is_meta for p in net.parameters())
channels = report.rows[0].action
del net, report
times = []
for _ in range(3):
    t0 = time.perf_counter()
    net, report = adapt_to_plan("{name}", e["PLANS"], "3d_fullres", e["DS"], checkpoint=e["CKPT"], cache_dir=e["CACHE"])
    times.append(time.perf_counter() - t0)
    del net, report
print(json.dumps({{"first_s": first, "warm_s": sorted(times)[1], "peak_above_mb": peak, "first_row": channels}}))
"""


def timing(plans_path: Path, ds_path: Path, ckpt: Path, cache: Path, runs: int = 3) -> dict:
    """Median over ``runs`` fresh processes of the first call (and of the warm calls); the largest peak."""
    env = dict(os.environ, PLANS=str(plans_path), DS=str(ds_path), CKPT=str(ckpt), CACHE=str(cache),
               PYTHONPATH=str(ROOT))
    code = TIMING_CHILD.format(name=NAME)
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"first_s": statistics.median(r["first_s"] for r in results),
            "first_s_all": [r["first_s"] for r in results],
            "warm_s": statistics.median(r["warm_s"] for r in results),
            "peak_above_mb": max(r["peak_above_mb"] for r in results), "first_row": results[0]["first_row"]}


def describe(cm) -> str:
    kw = cm.network_arch_init_kwargs
    k0 = kw["kernel_sizes"][0]
    return (f"{kw['n_stages']} st, patch {'x'.join(map(str, cm.patch_size))}, k0 {''.join(map(str, k0))}, "
            f"last stride {''.join(map(str, kw['strides'][-1]))}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--no-families", action="store_true", help="skip the per-family columns")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="medzoo-coverage-") as tmp:
        work = Path(tmp)
        for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            (work / var).mkdir()
            os.environ[var] = str(work / var)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch

        from zoo.archs.build import build_model, meta_device_model
        from zoo.convert.cache import load_converted
        from zoo.weights import resolve_weights
        from zoo.nnunet.export import adapt_to_plan
        from zoo.registry import get_entry
        from zoo.state_dict import expand_aliases

        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
        entry = get_entry(NAME)
        ckpt = fake_checkpoint(work)
        cache = work / "zoo-cache"
        import warnings

        warnings.simplefilter("ignore")
        converted, _ = resolve_weights(entry, checkpoint=ckpt, cache_dir=cache, progress=False)
        source = load_converted(converted)
        n_source = sum(v.numel() for v in source.values())
        reference = meta_device_model(lambda: build_model(entry))
        v2_file = work / "genesis_v2_all_keys.pth"
        torch.save({"network_weights": dict(expand_aliases(source, reference))}, v2_file)
        source_shapes = {k: tuple(v.shape) for k, v in source.items()}

        print(f"planning {len(TASKS)} MSD-like datasets with nnunetv2's ExperimentPlanner ...", flush=True)
        plans = plan_all(work)
        header = f"{'task':<14} {'ch':>2} {'3d_fullres plan':<42} {'nnunetv2':>8} {'Genesis':>8} {'medzoo':>7} " \
                 f"{'w/o heads':>9}  {'goal':<4} random (no counterpart)"
        print("\nshare of target parameters initialised from " + NAME)
        print(header)
        print("-" * len(header))
        results = []
        for task, (plans_path, ds) in plans.items():
            _, cm = nnunet_network(plans_path, ds, meta=True)
            loader = share_nnunet_loader(plans_path, ds, v2_file)
            rule = share_genesis_rule(plans_path, ds, source_shapes)
            net, report = adapt_to_plan(NAME, plans_path, "3d_fullres", ds, state_dict=source)
            del net
            skipped_body = [r for r in report.rows if not r.head and r.action == "skip"]
            new = sorted({".".join(r.target_key.split(".")[:3]) for r in report.rows if r.action == "new"})
            goal = not skipped_body
            results.append({
                "task": task, "channels": len(ds["channel_names"]), "plan": describe(cm),
                "patch_size": cm.patch_size, "n_stages": cm.network_arch_init_kwargs["n_stages"],
                "share_nnunetv2_loader": loader, "share_genesis_rule": rule,
                "share_medzoo": report.share_initialised, "share_medzoo_without_heads": report.share_initialised_body,
                "goal_met": goal, "new_groups": new, "actions": report.counts(),
            })
            print(f"{task:<14} {len(ds['channel_names']):>2} {describe(cm):<42} {loader:>8.1%} {rule:>8.1%} "
                  f"{report.share_initialised:>7.2%} {report.share_initialised_body:>9.2%}  "
                  f"{'yes' if goal else 'NO':<4} {', '.join(new) or '-'}")
        print(f"\nmean over plans: nnunetv2 loader {statistics.mean(r['share_nnunetv2_loader'] for r in results):.1%}, "
              f"Genesis rule {statistics.mean(r['share_genesis_rule'] for r in results):.1%}, "
              f"medzoo {statistics.mean(r['share_medzoo'] for r in results):.1%}; goal met on "
              f"{sum(r['goal_met'] for r in results)}/{len(results)} plans")

        out = {"checkpoint_params": n_source, "plans": results}
        if not args.no_families:
            out["families"] = family_coverage(plans, work)
            print_family_table(out["families"])
        if not args.no_timing:
            plans_path, ds = plans["BrainTumour"]
            ds_path = work / "brats_dataset.json"
            ds_path.write_text(json.dumps(ds))
            t = timing(plans_path, ds_path, ckpt, cache)
            model_mb = n_source * 4 / 2**20
            ratio = t["peak_above_mb"] / model_mb
            print(f"\nadapting {n_source / 1e6:.1f}M parameters into the 4-channel BrainTumour plan (fresh processes, "
                  f"from the converted cache; first row: {t['first_row']}):")
            print(f"  first call {t['first_s']:.3f} s (median of {', '.join(f'{x:.3f}' for x in t['first_s_all'])}), "
                  f"warm {t['warm_s']:.3f} s (target < 0.5 s: {'met' if t['first_s'] < 0.5 else 'NOT met'})")
            print(f"  peak memory above baseline {t['peak_above_mb']:.0f} MB = {ratio:.2f}x the model's {model_mb:.0f} MB "
                  f"(target < 2.5x: {'met' if ratio < 2.5 else 'NOT met'})")
            out["timing"] = {**t, "model_mb": model_mb, "peak_ratio": ratio}
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
