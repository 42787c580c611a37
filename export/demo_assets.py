"""Build the files ``zoo demo`` ships in ``zoo/assets/``: the genesis-ct-demo weights and a real CT crop.

    python -m export.data.fetch --out data --what ct
    python -m export.genesis --data data/pyradiomics/lung1_image.nrrd data/invesalius/Cranium.inv3 \
        data/pyradiomics/lung2_image.nrrd --out runs/genesis-ct-demo --name genesis-ct-demo --preset demo
    python -m export.demo_assets --run runs/genesis-ct-demo --data data

Then record the printed sha256 and size in ``zoo/entries/demo.py``.

The CT crop comes from pyradiomics' ``lung2_image.nrrd`` (BSD-3-Clause, its licence is copied beside it),
the volume the demo network never trained on (it was the validation volume). It is cropped in-plane around
the image centre, keeps every slice and stays int16 HU, written as gzip NRRD (LPS, x y z sizes as NRRD
requires).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

import numpy as np

from zoo.hub.integrity import atomic_path, sha256_file
from zoo.io import read_volume

ASSETS = Path(__file__).resolve().parents[1] / "zoo" / "assets"
DEMO_CT = "demo/chest_ct_lung2_crop.nrrd"


def write_nrrd(path: Path, array_zyx: np.ndarray, spacing_zyx, origin_xyz, direction) -> None:
    """int16 (z, y, x) array -> gzip NRRD with LPS geometry (``direction`` columns = x, y, z unit vectors)."""
    if array_zyx.dtype != np.int16:
        raise ValueError("write_nrrd stores int16 HU only")
    d = np.asarray(direction if direction is not None else np.eye(3), dtype=np.float64)
    sx, sy, sz = spacing_zyx[2], spacing_zyx[1], spacing_zyx[0]
    vecs = [d[:, 0] * sx, d[:, 1] * sy, d[:, 2] * sz]
    fmt = lambda v: "(" + ",".join(f"{c:.10g}" for c in v) + ")"  # noqa: E731
    header = "\n".join([
        "NRRD0004", "type: short", "dimension: 3", "space: left-posterior-superior",
        f"sizes: {array_zyx.shape[2]} {array_zyx.shape[1]} {array_zyx.shape[0]}",
        "space directions: " + " ".join(fmt(v) for v in vecs), "kinds: domain domain domain",
        "endian: little", "encoding: gzip", f"space origin: {fmt(origin_xyz)}", "", "",
    ])
    payload = gzip.compress(np.ascontiguousarray(array_zyx).astype("<i2").tobytes(), compresslevel=9, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(header.encode("ascii") + payload)


def crop_ct(source: Path, out: Path, size_yx: tuple[int, int] = (192, 192)) -> dict:
    vol = read_volume(source)
    z, y, x = vol.shape_zyx
    y0, x0 = (y - size_yx[0]) // 2, (x - size_yx[1]) // 2
    crop = vol.array[:, y0:y0 + size_yx[0], x0:x0 + size_yx[1]].astype(np.int16)
    d = vol.direction if vol.direction is not None else np.eye(3)
    sx, sy = vol.spacing_zyx[2], vol.spacing_zyx[1]
    origin = np.asarray(vol.origin or (0, 0, 0)) + d[:, 0] * sx * x0 + d[:, 1] * sy * y0
    write_nrrd(out, crop, vol.spacing_zyx, origin, d)
    return {"source": source.name, "source_sha256": sha256_file(source), "crop_yx_start": [y0, x0],
            "shape_zyx": list(crop.shape), "spacing_zyx": list(vol.spacing_zyx)}


def with_data_licences(readme: str, data_files: list[dict]) -> str:
    """The draft card with the licence of every training and validation volume (from export.data.fetch's
    sources) added under its data table: the demo weights are Apache-2.0, one of the volumes is GPL-2.0."""
    from .data.fetch import SOURCES

    licence_of = {name: (src.description, src.license) for src in SOURCES.values() for name in src.files}
    lines = []
    for f in data_files:
        name = Path(f["path"]).name
        where, licence = licence_of.get(name, ("source not recorded", "licence not recorded"))
        lines.append(f"- `{name}` ({f.get('role', '')}): {licence}, from {where}")
    note = "Data licences (the weights are the project's; the volumes keep their own terms):\n\n" + "\n".join(lines)
    return readme.replace("\n## Hyper-parameters", f"\n{note}\n\n## Hyper-parameters", 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="the export.genesis run folder (its model/ is shipped)")
    p.add_argument("--data", required=True, help="the export.data.fetch folder")
    args = p.parse_args(argv)
    model = Path(args.run) / "model"
    target = ASSETS / "genesis-ct-demo"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model / "config.json", target / "config.json")
    readme = (model / "README.md").read_text(encoding="utf-8")
    provenance = json.loads((model / "config.json").read_text(encoding="utf-8"))["provenance"]
    with atomic_path(target / "README.md") as tmp:
        tmp.write_text(with_data_licences(readme, provenance["data_files"]), encoding="utf-8")
    # one tensor per name: nnU-Net's alias keys (all_modules.*, decoder.encoder.*) are restored by zoo.load
    from safetensors.torch import load_file, save_file

    from zoo.archs.build import build_model
    from zoo.model_dir import read_model_dir
    from zoo.state_dict import canonicalize

    entry, weights_path = read_model_dir(model)
    tensors = {k: v.contiguous() for k, v in canonicalize(load_file(str(weights_path)), build_model(entry)).items()}
    with atomic_path(target / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "medzoo_name": entry.name})
    ct_source = Path(args.data) / "pyradiomics" / "lung2_image.nrrd"
    info = crop_ct(ct_source, ASSETS / DEMO_CT)
    shutil.copyfile(Path(args.data) / "pyradiomics" / "LICENSE.txt", ASSETS / "demo" / "LICENSE-pyradiomics.txt")
    (ASSETS / "demo" / "chest_ct_lung2_crop.json").write_text(json.dumps(info, indent=2) + "\n")
    weights = target / "model.safetensors"
    print(json.dumps({"weights": str(weights), "sha256": sha256_file(weights), "size": weights.stat().st_size,
                      "ct": str(ASSETS / DEMO_CT), "ct_size": (ASSETS / DEMO_CT).stat().st_size, **info}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
