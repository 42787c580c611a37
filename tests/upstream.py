"""Builders of upstream-format checkpoint files and of local Hugging Face caches / mirrors, for tests.

The files follow the documented upstream layouts (docs/upstream-checkpoints.md): wrapping dicts,
``module.`` prefixes, optimizer state, legacy (non-zip) serialisation. Weights are random.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import torch

from zoo.archs.build import build_model
from zoo.registry import get_entry

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _optimizer_state(sd: dict) -> dict:
    params = [torch.nn.Parameter(v.detach().clone().float()) for v in list(sd.values())[:4] if v.is_floating_point()]
    opt = torch.optim.SGD(params, lr=1.0, momentum=0.9)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    return opt.state_dict()


def genesis_unet3d_file(path: Path, seed: int = 0) -> OrderedDict:
    """``Genesis_Chest_CT.pt``-style: {'epoch', 'state_dict' with 'module.' keys, 'optimizer_state_dict'}."""
    torch.manual_seed(seed)
    sd = build_model(get_entry("genesis-chest-ct")).state_dict()
    wrapped = {
        "epoch": 107,
        "state_dict": OrderedDict((f"module.{k}", v) for k, v in sd.items()),
        "optimizer_state_dict": _optimizer_state(sd),
    }
    torch.save(wrapped, path)
    return sd


def medicalnet_file(path: Path, depth: int, seed: int = 0) -> OrderedDict:
    """``resnet_{depth}.pth``-style: {'state_dict': 'module.'-prefixed backbone}, legacy serialisation."""
    torch.manual_seed(seed)
    sd = build_model(get_entry(f"med3d-resnet{depth}")).state_dict()
    torch.save({"state_dict": OrderedDict((f"module.{k}", v) for k, v in sd.items())}, path,
               _use_new_zipfile_serialization=False)
    return sd


def nnunet_v1_lung_state_dict(seed: int = 0, features=(32, 64, 128, 256, 320, 320), in_channels: int = 1,
                              num_classes: int = 2) -> OrderedDict:
    """The 98-key nnU-Net v1 Generic_UNet layout of ``genesis_nnunet_luna16_006.model``, written from the
    documented table (not from medzoo's converter)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.05  # noqa: E731
    sd: OrderedDict = OrderedDict()
    n = len(features) - 1  # bottleneck index
    prev = in_channels
    for d in range(n):
        for i in range(2):
            cin = prev if i == 0 else features[d]
            base = f"conv_blocks_context.{d}.blocks.{i}"
            sd[f"{base}.conv.weight"] = r(features[d], cin, 3, 3, 3)
            sd[f"{base}.conv.bias"] = r(features[d])
            sd[f"{base}.instnorm.weight"] = 1 + r(features[d])
            sd[f"{base}.instnorm.bias"] = r(features[d])
        prev = features[d]
    for j in range(2):
        base = f"conv_blocks_context.{n}.{j}.blocks.0"
        sd[f"{base}.conv.weight"] = r(features[n], features[n - 1] if j == 0 else features[n], 3, 3, 3)
        sd[f"{base}.conv.bias"] = r(features[n])
        sd[f"{base}.instnorm.weight"] = 1 + r(features[n])
        sd[f"{base}.instnorm.bias"] = r(features[n])
    strides = [[2, 2, 2]] * (n - 1) + [[1, 2, 2]]
    for u in range(n):
        below, skip = features[n - u], features[n - 1 - u]
        sd[f"tu.{u}.weight"] = r(below, skip, *strides[n - 1 - u])
    for u in range(n):
        skip = features[n - 1 - u]
        for j in range(2):
            base = f"conv_blocks_localization.{u}.{j}.blocks.0"
            sd[f"{base}.conv.weight"] = r(skip, 2 * skip if j == 0 else skip, 3, 3, 3)
            sd[f"{base}.conv.bias"] = r(skip)
            sd[f"{base}.instnorm.weight"] = 1 + r(skip)
            sd[f"{base}.instnorm.bias"] = r(skip)
    for u in range(n):
        sd[f"seg_outputs.{u}.weight"] = r(num_classes, features[n - 1 - u], 1, 1, 1)
    return sd


def nnunet_v1_file(path: Path, seed: int = 0) -> OrderedDict:
    """``genesis_nnunet_luna16_006.model``-style: {'epoch', 'state_dict' (no prefix), 'optimizer_state_dict'}."""
    sd = nnunet_v1_lung_state_dict(seed)
    torch.save({"epoch": 33, "state_dict": sd, "optimizer_state_dict": _optimizer_state(sd)}, path)
    return sd


def put_in_hf_cache(cache: Path, repo_id: str, filename: str, file: Path, revision: str | None) -> Path:
    """Lay ``file`` out as huggingface_hub's cache does: blobs/<sha256>, snapshots/<commit>/<file>, refs/main."""
    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    digest = sha256(file)
    blob = repo / "blobs" / digest
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(Path(file).read_bytes())
    commit = revision or FAKE_COMMIT
    snap = repo / "snapshots" / commit / filename
    snap.parent.mkdir(parents=True, exist_ok=True)
    if snap.exists() or snap.is_symlink():
        snap.unlink()
    os.symlink(os.path.relpath(blob, snap.parent), snap)
    if revision is None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
    return snap


def put_in_mirror(mirror: Path, repo_id: str, filename: str, file: Path) -> Path:
    dest = Path(mirror) / repo_id / filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(Path(file).read_bytes())
    return dest


def genesis_lung_cache(tmp_path_factory) -> Path:
    """A medzoo cache folder whose hub/ holds a fake upstream ``genesis-chest-ct-nnunet-lung`` file (nnU-Net v1
    pickle, random tensors), laid out as huggingface_hub's own cache so the real client finds it offline."""
    from zoo.hub.paths import hf_cache_dir

    cache = tmp_path_factory.mktemp("zoo-cache")
    entry = get_entry("genesis-chest-ct-nnunet-lung")
    upstream = tmp_path_factory.mktemp("upstream") / entry.source.filename
    nnunet_v1_file(upstream)
    put_in_hf_cache(hf_cache_dir(cache), entry.source.repo_id, entry.source.filename, upstream, entry.source.revision)
    upstream.unlink()
    return cache


def timm_resnet(depth: int, seed: int = 0):
    """timm's own 2D ``resnet{depth}`` (the real peer, ``pretrained=False``) with random weights and random,
    non-trivial BatchNorm parameters and running statistics (timm zero-initialises the last BN of each block),
    in eval mode."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(f"resnet{depth}", pretrained=False)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g) * 0.1
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
    return model.eval()


def timm_hub_folder(model, folder: Path) -> Path:
    """Write ``model`` as timm writes a Hub repo (``timm.models.save_for_hf``): model.safetensors + config.json."""
    from timm.models import save_for_hf

    save_for_hf(model, str(folder), safe_serialization=True)
    return Path(folder)


def put_folder_in_hf_cache(cache: Path, repo_id: str, folder: Path, revision: str | None = None) -> Path:
    """Every file of ``folder`` in the huggingface_hub cache layout of ``repo_id``; returns the snapshot folder."""
    snap = None
    for file in sorted(Path(folder).iterdir()):
        if file.is_file():
            snap = put_in_hf_cache(cache, repo_id, file.name, file, revision).parent
    return snap
