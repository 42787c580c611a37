"""``zoo demo``: the main job end to end, offline, on what ships inside the package.

1. load ``genesis-ct-demo`` (weights in ``zoo/assets/genesis-ct-demo``, sha256-verified);
2. adapt it to a bundled 4-channel brain-MRI nnU-Net plan (``zoo/assets/demo/nnUNetPlans.json``) and write the
   file ``nnUNetv2_train ... -pretrained_weights`` accepts, with the per-tensor transfer report (JSON, text and
   a PNG of the network's stages coloured by what happened to their tensors);
3. damage a cube of a real chest CT shipped with the package (pyradiomics ``lung2``, never seen in training)
   with the Models Genesis transforms, restore it with the network and save original | damaged | restored
   as a PNG.
"""

from __future__ import annotations

import errno
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_MODEL = "genesis-ct-demo"
DEMO_PLANS = ASSETS / "demo" / "nnUNetPlans.json"
DEMO_DATASET = ASSETS / "demo" / "dataset.json"
DEMO_CT = ASSETS / "demo" / "chest_ct_lung2_crop.nrrd"


def demo_inputs() -> list[Path]:
    """The folders the demo reads (its plan, dataset.json and CT; the model's weights): never an output."""
    return [ASSETS / "demo", ASSETS / DEMO_MODEL]


@dataclass
class DemoResult:
    out_dir: str
    pretrained_weights: str
    transfer_report: str
    transfer_report_png: str
    restoration_png: str
    share_initialised: float
    share_used: float
    tensors_copied: int
    tensors_adapted: int
    tensors_fresh: int
    mse_damaged: float
    mse_restored: float
    applied: list[str]


def restore_cube(model: torch.nn.Module, cube01: np.ndarray, seed: int = 0,
                 config=None) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Damage ``cube01`` (Z, Y, X) in [0, 1] with the Genesis transforms and restore it with ``model``.

    The damaged cube goes back to HU (``x * 2000 - 1000``) and into the network through
    :func:`zoo.io.model_input.model_input` with ``config`` (default: the model's own
    :func:`~zoo.io.model_input.resolve_data_config`; for the demo network the Genesis nnU-Net CT z-score,
    ``(HU - mean) / std``, axis order ``zyx``). Returns
    ``(damaged, restored, applied, target)``, all (Z, Y, X) in [0, 1] (``target``: the clean cube after the
    same flips as ``damaged``); ``applied`` names the transforms drawn.
    Seeds from ``seed`` upwards are tried until at least one corruption besides a flip is drawn.
    """
    from .io import Volume
    from .io.model_input import model_input, resolve_data_config
    from .transforms.genesis import genesis_corrupt

    config = config if config is not None else resolve_data_config(model)

    clean = torch.from_numpy(np.ascontiguousarray(cube01, dtype=np.float32))[None, None]
    for s in range(seed, seed + 100):
        result = genesis_corrupt(clean, torch.Generator().manual_seed(s))
        applied = [k for k in ("shuffled", "nonlinear", "inpainted", "outpainted") if bool(result.applied[k][0])]
        if applied:
            break
    hu = Volume(result.damaged[0].numpy() * 2000.0 - 1000.0, config.spacing_zyx or (1.0, 1.0, 1.0), modality="CT")
    x = model_input(hu, None, config)          # at the model's spacing already: normalised, no resampling
    model.eval()
    with torch.no_grad():
        restored = torch.sigmoid(model(x))[:, :1]
    return result.damaged[0, 0].numpy(), restored[0, 0].numpy(), applied, result.target[0, 0].numpy()


def run_demo(out_dir: str | os.PathLike = "medzoo-demo", *, seed: int = 0, progress: bool = True,
             log: Callable[[str], None] = print) -> DemoResult:
    """Run the three steps above, writing into ``out_dir``; returns what was written and measured."""
    from .loading import load
    from .weights import LicenseWarning
    from .io import read_volume
    from .io.model_input import model_input, resolve_data_config
    from .nnunet.export import export_nnunet
    from .viz import save_panels, save_transfer_png

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(out))  # a folder is expected
    out.mkdir(parents=True, exist_ok=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LicenseWarning)
        model = load(DEMO_MODEL, progress=progress)
    entry = model.pretrained_cfg
    n_params = sum(p.numel() for p in model.parameters())
    log(f"1. loaded {entry.name}: {n_params:,} parameters ({model.load_report.verified_by}); licence "
        f"{entry.license.display}: {entry.license.notice}")

    weights = out / f"{DEMO_MODEL}__Dataset001_BrainTumourDemo__3d_fullres.pth"
    report_path = out / "transfer_report.json"
    exported = export_nnunet(DEMO_MODEL, DEMO_PLANS, DEMO_DATASET, "3d_fullres", weights, report_path=report_path)
    report = exported.report
    counts = report.counts()
    (out / "transfer_report.txt").write_text(str(report) + "\n")
    log(f"2. adapted to the 4-channel MRI plan {DEMO_PLANS.name}: {report.share_initialised:.1%} of the target "
        f"parameters initialised from the checkpoint, {report.share_used:.1%} of the checkpoint used "
        f"(tensors per action: {', '.join(f'{k} {v}' for k, v in counts.items())})")
    log(f"   wrote {weights} ({exported.keys} keys) for nnUNetv2_train -pretrained_weights")
    report_png = save_transfer_png(report, out / "transfer_report.png", overwrite=True)  # the folder is guarded
    log(f"   per-tensor report: {report_path}, {out / 'transfer_report.txt'} and the picture {report_png}")

    # the entry's data config: its spacing, axis order and patch; the Genesis transforms need [0, 1], so the
    # clean cube is cut with the genesis_ct scale and the damaged one re-normalised with the model's own scheme
    config = resolve_data_config(entry)
    volume = read_volume(DEMO_CT, modality="CT")
    cube = model_input(volume, None, config.with_intensity("genesis_ct"), crop_or_pad="patch")[0, 0].numpy()
    damaged, restored, applied, target = restore_cube(model, cube, seed, config)
    mse_damaged = float(np.mean((damaged - target) ** 2))
    mse_restored = float(np.mean((restored - target) ** 2))
    z = cube.shape[0] // 2
    png = save_panels(out / "restoration.png", [target[z], damaged[z], restored[z]],
                      titles=["original", f"damaged MSE {mse_damaged:.3f}", f"restored MSE {mse_restored:.3f}"])
    log(f"3. restored a damaged {tuple(cube.shape)} (z, y, x) cube of {DEMO_CT.name} ({', '.join(applied)}): "
        f"MSE {mse_damaged:.4f} damaged -> {mse_restored:.4f} restored; picture {png}")

    result = DemoResult(
        out_dir=str(out), pretrained_weights=str(weights), transfer_report=str(report_path),
        transfer_report_png=str(report_png), restoration_png=str(png), share_initialised=float(report.share_initialised),
        share_used=float(report.share_used), tensors_copied=int(counts.get("copy", 0)),
        tensors_adapted=int(sum(v for k, v in counts.items() if k not in ("copy", "new", "skip"))),
        tensors_fresh=int(counts.get("new", 0) + counts.get("skip", 0)),
        mse_damaged=mse_damaged, mse_restored=mse_restored, applied=applied,
    )
    (out / "summary.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result
