"""export/ssl3d: the label generation of the five 3D self-supervised tasks is proven exact; the tasks train on a
prepared folder (shared loop, 2-process torchrun), export registry-loadable encoders that transfer into nnU-Net
plans; bad input gives clear errors; the ``ssl3d-*`` entries build without weights. The preparation and streaming
stage itself: tests/test_ssl3d_prepared.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from export.ssl3d import labels as L
from export.ssl3d.config import SSLConfig, preset
from export.common.prepare import VolumeFailedError
from export.ssl3d.data import GridTooLargeError, prepare_data, prepare_ssl_volume, ssl_recipe
from export.ssl3d.encoders import encoder_spec
from export.ssl3d.output import write_output
from export.ssl3d.tasks import CPCTask, make_task
from export.ssl3d.train import train

from torchrun_ranks import torchrun_two_cpu_ranks

REPO = Path(__file__).resolve().parents[1]
CT = REPO / "zoo" / "assets" / "demo" / "chest_ct_lung2_crop.nrrd"
TINY_FEATURES = (4, 8, 16)

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")
TINY_PLAN = {
    "n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]], "n_conv_per_stage": [2, 2, 2],
    "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
}


def coded_cube(size: int, sample: int = 0) -> torch.Tensor:
    """(1, S, S, S) whose voxel (z, y, x) holds sample * 1e6 + z * 1e4 + y * 100 + x: a patch's first voxel
    says where it was cut from."""
    z, y, x = torch.meshgrid(*(torch.arange(size, dtype=torch.float64),) * 3, indexing="ij")
    return (sample * 1e6 + z * 1e4 + y * 100 + x)[None]


def decode(value: float) -> tuple[int, int, int, int]:
    v = int(round(value))
    return v // 1_000_000, (v // 10_000) % 100, (v // 100) % 100, v % 100


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------- label generation
def test_rotations_invert_exactly_and_are_ten_distinct_proper_rotations():
    cube = torch.randn(2, 9, 9, 9, dtype=torch.float64)
    outs = [L.rotate(cube, c) for c in range(L.N_ROTATIONS)]
    assert L.N_ROTATIONS == 10
    for c, out in enumerate(outs):
        assert torch.equal(L.unrotate(out, c), cube)
    assert len({o.numpy().tobytes() for o in outs}) == 10                      # all distinct
    # each axis group is a quarter-turn group: class k+1 = class 1 applied k+1 times, four turns = identity
    for first in (1, 4, 7):
        turned = cube
        for k in range(3):
            turned = L.rotate(turned, first)
            assert torch.equal(turned, outs[first + k])
        assert torch.equal(L.rotate(turned, first), cube)
    # rotations about z keep every z slice's content (a rotation, not a reflection or a shuffle across slices)
    for c in (1, 2, 3):
        for z in range(9):
            assert torch.allclose(outs[c][:, z].sum(), cube[:, z].sum())
    batch, labels = L.rotation_batch(torch.randn(16, 1, 6, 6, 6), gen(1))
    assert labels.shape == (16,) and set(labels.tolist()) <= set(range(10))
    with pytest.raises(ValueError, match="cubic"):
        L.rotate(torch.zeros(1, 4, 5, 6), 1)


def test_rotation_batch_labels_invert_the_batch():
    cubes = torch.randn(12, 1, 8, 8, 8)
    rotated, labels = L.rotation_batch(cubes, gen(3))
    for r, c, l in zip(rotated, cubes, labels.tolist()):
        assert torch.equal(L.unrotate(r, l), c)


def test_permutations_are_distinct_far_apart_and_deterministic():
    perms = L.jigsaw_permutations(100, 27)
    assert perms.shape == (100, 27)
    assert all(sorted(p) == list(range(27)) for p in perms.tolist())
    assert len({tuple(p) for p in perms.tolist()}) == 100
    assert (perms[0] == np.arange(27)).all()
    chosen = L.min_hamming(perms)
    rng = np.random.default_rng(0)
    random_set = np.stack([np.arange(27)] + [rng.permutation(27) for _ in range(99)])
    assert chosen >= 24 and chosen > L.min_hamming(random_set)       # max-Hamming selection beats a random set
    assert np.array_equal(L.hamming_permutations(100, 27, seed=0), perms)


def test_every_jigsaw_permutation_reassembles_the_cube():
    grid = L.grid_for_jigsaw(12, per_side=3, jitter=0)                # cells = patches of 4, tiling the cube
    cube = torch.randn(2, 12, 12, 12, dtype=torch.float64)
    patches = L.extract_patches(cube, grid, L.patch_starts(grid))
    assert torch.equal(L.assemble(patches, grid), cube)
    for i, perm in enumerate(L.jigsaw_permutations(100, 27)):
        shuffled = L.shuffle_patches(patches, perm)
        if i:
            assert not torch.equal(shuffled, patches)
        assert torch.equal(L.assemble(L.unshuffle_patches(shuffled, perm), grid), cube)
    # the batch function: its label names the permutation that undoes the shuffle
    cubes = torch.randn(8, 1, 12, 12, 12, dtype=torch.float64)
    perms = L.jigsaw_permutations(100, 27)
    batch, labels = L.jigsaw_batch(cubes, grid, perms, gen(5))
    assert batch.shape == (8, 27, 1, 4, 4, 4)
    for b, c, lab in zip(batch, cubes, labels.tolist()):
        assert torch.equal(L.assemble(L.unshuffle_patches(b, perms[lab]), grid), c)


def test_published_grids_match_the_authors_geometry():
    g = L.grid_for_jigsaw(128)
    assert (g.cell, g.patch, g.jitter, g.n) == (42, 39, 3, 27)
    c = L.grid_for_cpc(128)
    assert (c.overlap, c.cell, c.patch, c.n) == (25, 25, 50, 64)           # half-overlapping 50^3 patches
    assert c.patch == 2 * c.cell and 3 * c.cell + c.patch <= 128


def test_rpl_labels_match_patch_offsets():
    grid = L.grid_for_jigsaw(30, per_side=3, jitter=2)                     # cells of 10, patches of 8
    cubes = torch.stack([coded_cube(30, s) for s in range(60)])
    pairs, labels, corners = L.rpl_batch(cubes, grid, gen(7))
    offsets = L.rpl_offsets(3)
    assert len(offsets) == 26 and len(set(offsets)) == 26 and (0, 0, 0) not in offsets
    assert all(max(abs(v) for v in o) == 1 for o in offsets)
    assert len(set(labels.tolist())) > 20                                   # many classes drawn
    for s, (pair, label, corner) in enumerate(zip(pairs, labels.tolist(), corners)):
        found = [decode(float(p[0, 0, 0, 0])) for p in pair]
        assert all(f[0] == s for f in found)                               # patches of this sample
        centre, neighbour = np.array(found[0][1:]), np.array(found[1][1:])
        assert (centre == corner[0].numpy()).all() and (neighbour == corner[1].numpy()).all()
        assert ((centre - 10) >= 0).all() and ((centre - 10) <= grid.jitter).all()   # centre cell, jittered
        delta = neighbour - centre
        expected = np.array(offsets[label]) * grid.cell
        assert (np.abs(delta - expected) <= grid.jitter).all()
        assert tuple(np.sign(np.round(delta / grid.cell)).astype(int)) == offsets[label]


def test_cpc_positives_are_the_true_next_patches():
    grid = L.grid_for_cpc(40, per_side=4)                                  # overlap 8, stride 8, patches 16
    layout = L.CPCLayout(4)
    assert (grid.cell, grid.patch, layout.last_context_row, layout.steps) == (8, 16, 1, 2)
    cubes = torch.stack([coded_cube(40, s) for s in range(3)])
    patches = L.cpc_patches(cubes, grid)                                    # (3, 64, 1, 16, 16, 16)
    flat = patches.flatten(0, 1)
    positives = L.cpc_positive_index(3, layout).view(3, 16, 2)
    contexts = layout.context_index()
    for b in range(3):
        for col in range(16):
            y, x = divmod(col, 4)
            for step in range(2):
                s, z0, y0, x0 = decode(float(flat[positives[b, col, step], 0, 0, 0, 0]))
                assert (s, z0, y0, x0) == (b, (2 + step) * 8, y * 8, x * 8)
            ctx = contexts[col].tolist()
            assert ctx[-1] == grid.index(1, y, x)                             # the column's own last context patch
            assert all(grid.coords(i)[0] <= 1 for i in ctx)                   # never a patch of a predicted row
            assert len(ctx) == 10
    # the loss is wired to those indices: predicting the true next codes gives perfect accuracy
    cfg = SSLConfig(task="cpc", size=40, per_side=4, batch_size=3, features=TINY_FEATURES)
    task = CPCTask(cfg, encoder_spec("unet", features=TINY_FEATURES))
    # unit codes: a code's dot product with itself (1) beats any other's, so the true code always wins; seeded,
    # so the check does not depend on the global random state the tests before it left behind
    codes = torch.nn.functional.normalize(torch.randn(3, 64, 32, generator=torch.Generator().manual_seed(0)), dim=-1)
    preds = codes.flatten(0, 1)[L.cpc_positive_index(3, layout)].view(3, 16, 2, 32) * 20
    loss, correct = task.criterion((preds, codes), None)
    assert int(correct) == 3 * 16 * 2 and float(loss) < 0.1
    assert math.isclose(task.chance_loss, math.log(3 * 64))


def test_cpc_augmentation_keeps_the_grid_and_shapes():
    grid = L.grid_for_cpc(40)
    out = L.cpc_patches(torch.randn(2, 1, 40, 40, 40), grid, gen(2))
    assert out.shape == (2, 64, 1, 16, 16, 16)
    # cropped to 7/8 and zero-padded back: a border of zeros around every patch
    assert (out[..., 0, :, :] == 0).all() and (out[..., -1, :, :] == 0).all()


# ------------------------------------------------------------------------------------------ training + export
def tiny(task: str, **changes) -> SSLConfig:
    sizes = {"rotation": 16, "jigsaw": 15, "rpl": 15, "cpc": 20, "exemplar": 16}
    base = dict(features=TINY_FEATURES, dropout=0.0, norm_momentum=0.1, size=sizes[task], spacing_zyx=(5.0, 2.5, 2.5),
                sampling="crop",
                cubes_per_volume=12, batch_size=2, lr=1e-3, hidden=16, code_size=8, context_size=8, jitter=1,
                max_epochs=1, val_samples=4, amp=False, min_foreground=0.1)
    base.update(changes)
    return preset(task, "published", **base)


def prepare(cfg: SSLConfig, folder, paths=(CT,), val_paths=None, **kwargs):
    """``paths`` prepared into ``folder`` with ``cfg``'s recipe: the training view (:class:`SSLData`)."""
    return prepare_data(list(paths), val_paths, cfg, folder, log=kwargs.pop("log", lambda *_: None), **kwargs)


@pytest.fixture(scope="module")
def ct_cubes(tmp_path_factory):
    """The shipped CT crop prepared once per cube size (a single volume: a share of its cubes validates)."""
    return {t: prepare(tiny(t), tmp_path_factory.mktemp(f"prepared-{t}")) for t in ("rotation", "jigsaw", "cpc")}


@pytest.mark.parametrize("task", ["rotation", "jigsaw", "rpl", "cpc", "exemplar"])
def test_every_task_trains_a_step_on_real_ct(task, ct_cubes, tmp_path):
    data = ct_cubes["cpc" if task == "cpc" else "jigsaw" if task in ("jigsaw", "rpl") else "rotation"]
    cfg = tiny(task)
    spec = encoder_spec("unet", features=TINY_FEATURES, dropout=0.0, norm_momentum=0.1)
    assert (data.n_train, data.n_val) == (10, 2)
    result = train(cfg, spec, data, tmp_path, device="cpu", progress=False, max_steps=2)
    h = result.history
    assert len(h.val_loss) == 1 and math.isfinite(h.val_loss[0]) and math.isfinite(h.train_loss[0])
    assert {"chance_loss", "chance_accuracy", "untrained_val_loss", "untrained_accuracy"} <= set(h.baselines)
    assert 0.0 <= h.val_metrics["accuracy"][0] <= 1.0
    assert all(k.startswith(("backbone.", "head.", "project.", "gru.", "predictors.")) for k in result.best_state)


def test_exported_encoder_loads_and_transfers_into_an_nnunet_plan(ct_cubes, tmp_path):
    from zoo.adapt import adapt_state_dict
    from zoo.archs import build_architecture

    data = ct_cubes["rotation"]
    cfg = tiny("rotation")
    spec = encoder_spec("unet", features=TINY_FEATURES, dropout=0.0, norm_momentum=0.1)
    result = train(cfg, spec, data, tmp_path, device="cpu", progress=False, max_steps=2)
    folder = write_output(tmp_path, "tiny-rotation", cfg, spec, result.best_state, result.history, data,
                          best_epoch=result.best_epoch, stopped_because=result.stopped_because, device="cpu",
                          world_size=1, minutes=0.1)
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "ssl3d_unet_encoder" and config["provenance"]["data_files"][0]["path"] == str(CT)
    from zoo.hub.integrity import sha256_file

    assert config["provenance"]["data_files"][0]["sha256"] == sha256_file(CT)
    assert config["provenance"]["prepared_data"]["digest"] == ssl_recipe(cfg).digest
    assert "chance_loss" in (folder / "README.md").read_text()
    model = zoo.load(str(folder))
    exported = {k[len("backbone."):]: v for k, v in result.best_state.items() if k.startswith("backbone.")}
    loaded = model.state_dict()
    assert exported and all(k in loaded for k in exported)
    for k, v in exported.items():
        torch.testing.assert_close(loaded[k], v)
    assert zoo.load(str(folder), in_channels=2, num_classes=3)(torch.randn(1, 2, 16, 16, 16)).shape == (1, 3)
    # into the network of an nnU-Net plan with the same widths: every encoder convolution is transferred
    target = build_architecture("plain_conv_unet", in_channels=1, num_classes=2, **TINY_PLAN)
    tensors, report = adapt_state_dict(model.state_dict(), target)
    enc = [k for k in target.state_dict() if k.startswith("encoder.stages.") and ".all_modules." not in k]
    assert set(enc) <= set(tensors), sorted(set(enc) - set(tensors))
    torch.testing.assert_close(tensors["encoder.stages.1.0.convs.1.conv.weight"],
                               model.state_dict()["encoder.stages.1.0.convs.1.conv.weight"])
    # and through the plan API behind `zoo export-nnunet FOLDER --plans ...`
    from zoo.nnunet import adapt_to_plan

    plans = json.loads((REPO / "zoo" / "assets" / "demo" / "nnUNetPlans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"] = TINY_PLAN
    dataset = json.loads((REPO / "zoo" / "assets" / "demo" / "dataset.json").read_text())
    network, plan_report = adapt_to_plan(str(folder), plans, "3d_fullres", dataset)
    assert plan_report.rows and any(r.source_key == "encoder.stages.1.0.convs.1.conv.weight" for r in plan_report.rows)
    wide = json.loads((REPO / "zoo" / "assets" / "demo" / "nnUNetPlans.json").read_text())   # 32..320 wide
    _, wide_report = adapt_to_plan(str(folder), wide, "3d_fullres", dataset)
    assert wide_report.initialised_params == 0 and "widths='slice'" in wide_report.summary()


def test_plan_and_resnet_encoders(ct_cubes, tmp_path):
    from zoo.adapt import adapt_state_dict
    from zoo.archs import build_architecture

    plans = json.loads((REPO / "zoo" / "assets" / "demo" / "nnUNetPlans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"] = TINY_PLAN
    spec = encoder_spec("plan", plans=plans, configuration="3d_fullres")
    assert spec.architecture == "nnunet_encoder" and spec.width == 16 and spec.min_patch == 4
    data = ct_cubes["rotation"]
    cfg = tiny("rotation", encoder="plan")
    result = train(cfg, spec, data, tmp_path, device="cpu", progress=False, max_steps=1)
    folder = write_output(tmp_path, "tiny-plan-rotation", cfg, spec, result.best_state, result.history, data,
                          best_epoch=result.best_epoch, stopped_because=result.stopped_because, device="cpu",
                          world_size=1, minutes=0.1)
    encoder = zoo.load(str(folder))
    target = build_architecture("plain_conv_unet", in_channels=1, num_classes=2, **TINY_PLAN)
    tensors, report = adapt_state_dict(encoder.state_dict(), target)
    enc = {k for k in target.state_dict() if k.startswith("encoder.") and ".all_modules." not in k}
    assert enc <= set(tensors) and report.unused == []                  # the plan's own encoder: all of it
    resnet = encoder_spec("resnet", depth=10)
    assert resnet.architecture == "med3d_resnet" and resnet.width == 512
    assert resnet.build()(torch.randn(1, 1, 16, 16, 16)).shape == (1, 512, 2, 2, 2)


def test_registry_entries_build_without_weights():
    names = zoo.list_models("ssl3d-*")
    assert names == ["ssl3d-cpc", "ssl3d-exemplar", "ssl3d-jigsaw", "ssl3d-rotation", "ssl3d-rpl"]
    for name in names:
        entry = zoo.info(name)
        assert entry.source is None and "export.ssl3d --task" in entry.weights_note and entry.pretraining.datasets
    model = zoo.load("ssl3d-jigsaw", pretrained=False)
    assert model.feature_channels == (16, 32, 64, 128, 256)
    assert model(torch.randn(1, 1, 32, 32, 32)).shape == (1, 256, 2, 2, 2)
    from zoo.errors import WeightsNotAvailableError

    with pytest.raises(WeightsNotAvailableError, match="export.ssl3d"):
        zoo.load("ssl3d-cpc")


# ------------------------------------------------------------------------------------------------ bad input
def test_volume_smaller_than_the_grid_is_named_and_left_out_or_stops_with_strict(tmp_path):
    from export.common.prepare import VolumeJob
    from export.demo_assets import write_nrrd

    small = tmp_path / "small_ct.nrrd"
    write_nrrd(small, np.zeros((20, 40, 40), np.int16), (2.0, 2.0, 2.0), (0, 0, 0), None)
    cfg = preset("rpl", "demo")
    with pytest.raises(GridTooLargeError, match=r"small_ct\.nrrd.*smaller than the 3x3x3 grid"):
        prepare_ssl_volume(VolumeJob("small", (str(small),), "train"), ssl_recipe(cfg).params)
    rng = np.random.default_rng(0)
    big, held = tmp_path / "big_ct.nrrd", tmp_path / "held_ct.nrrd"
    for p in (big, held):
        write_nrrd(p, rng.integers(-1000, 1000, (60, 60, 60)).astype(np.int16), (2.5, 2.5, 2.5), (0, 0, 0), None)
    # --strict: the first bad volume stops the run, naming it; what was finished is kept
    with pytest.raises(VolumeFailedError, match=r"small_ct\.nrrd.*smaller than the 3x3x3 grid.*--strict"):
        prepare(cfg, tmp_path / "strict", paths=[big, small], val_paths=[held], strict=True)
    assert len(list((tmp_path / "strict" / "volumes").glob("*.npy"))) == 1
    # the default (and the old --skip-small): the small volume is named and left out; the others are used
    lines = []
    data = prepare(cfg, tmp_path / "p", paths=[small, big], val_paths=[held], log=lines.append)
    assert [r["path"] for r in data.files] == [str(big), str(held)]
    assert any("small_ct.nrrd" in x and "3x3x3 grid" in x for x in lines)
    failed = data.prepared["failed"][0]
    assert "small_ct.nrrd" in failed["path"] and "3x3x3 grid" in failed["reason"]
    from export.ssl3d.__main__ import main

    for extra in ([], ["--strict"], ["--skip-small"]):
        assert main(["--task", "rpl", "--preset", "demo", "--data", str(small), "--out", str(tmp_path / "o"),
                     "--no-progress", "--workers", "1", *extra]) == 2
    with pytest.raises(ValueError, match="does not fit"):
        L.extract_patches(torch.zeros(1, 30, 30, 30), L.Grid(30, 3, 12), L.patch_starts(L.Grid(30, 3, 12)))
    # patches too small for the encoder's pooling
    with pytest.raises(ValueError, match="smaller than the ssl3d_unet_encoder encoder accepts"):
        make_task(preset("jigsaw", "published", size=30), encoder_spec("unet"))


# ----------------------------------------------------------------------------------------------- torchrun
def test_torchrun_two_cpu_processes_rotation(tmp_path):
    ranks = torchrun_two_cpu_ranks(tmp_path, """
        from pathlib import Path
        from test_ssl3d import tiny, prepare, TINY_FEATURES
        from export.common.distributed import init_distributed
        from export.ssl3d.encoders import encoder_spec
        from export.ssl3d.train import train
        cfg = tiny("rotation")
        info, _ = init_distributed("cpu")
        data = prepare(cfg, Path(RUN) / "prepared", info=info)     # one rank prepares, the other waits
        spec = encoder_spec("unet", features=TINY_FEATURES, dropout=0.0, norm_momentum=0.1)
        result = train(cfg, spec, data, RUN, device="cpu", progress=False, max_steps=2)
    """)
    assert ranks[0]["digest"] == ranks[1]["digest"]            # DDP kept the parameters identical
    assert ranks[0]["train_loss"] == ranks[1]["train_loss"]
    assert ranks[0]["train_metrics"] == ranks[1]["train_metrics"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.suffix == ".pt") == ["checkpoint.pt"]


def test_resized_sampling_is_the_whole_volume_or_a_crop_of_it(tmp_path):
    import torch.nn.functional as F

    from export.ssl3d.data import resized_crops

    vol = np.random.default_rng(0).standard_normal((20, 30, 40)).astype(np.float32)
    whole = resized_crops(vol, 16, 2, (1.0, 1.0), np.random.default_rng(1))
    expected = F.interpolate(torch.from_numpy(vol)[None, None], size=(16, 16, 16), mode="trilinear",
                             align_corners=False)[0, 0].numpy()
    assert whole.shape == (2, 16, 16, 16) and np.allclose(whole[0], expected) and np.allclose(whole[1], expected)
    parts = resized_crops(vol, 16, 8, (0.5, 0.8), np.random.default_rng(1))
    assert parts.shape == (8, 16, 16, 16) and not np.allclose(parts[0], expected)
    with pytest.raises(ValueError, match="crop_fraction"):
        resized_crops(vol, 16, 1, (0.0, 1.0), np.random.default_rng(1))
    cfg = tiny("jigsaw", sampling="resized", crop_fraction=(0.7, 1.0), cubes_per_volume=3)
    data = prepare(cfg, tmp_path / "prepared")
    assert data.n_train + data.n_val == 3 and "resized to 15^3" in data.summary
    # the stored crop boxes, resized when loaded, are the crops of the prepared volume
    from export.common.cubes import CubeBatches
    from export.ssl3d.data import resize_box

    record = data.manifest.volumes[0]
    image = np.load(data.manifest.path(record))
    loaded = CubeBatches(data.manifest, "train", (15, 15, 15), 1, seed=0, shuffle=False).all()
    assert loaded.shape == (3, 1, 15, 15, 15)
    for cube, box in zip(loaded, record["facts"]["boxes"]):
        assert 0.7 * min(image.shape) - 1 <= min(box[3:]) and np.allclose(cube[0].numpy(), resize_box(image, box, 15))
    assert data.val_cubes(4).shape == (4, 1, 15, 15, 15)
