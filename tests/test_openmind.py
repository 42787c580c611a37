"""OpenMind ResEnc-L (nnssl): the authors' network and checkpoint container, built from their published code
(github.com/MIC-DKFZ/nnssl: ``architectures/architecture_registry.py`` ``get_res_enc_l``,
``training/nnsslTrainer/AbstractTrainer.py`` ``save_checkpoint``, ``adaptation_planning/adaptation_plan.py``), loaded
through medzoo and compared with dynamic-network-architectures' own network; the adaptation plan as a ``zoo plan``
rewrite that nnunetv2 reads; transfer into a Decathlon-like plan with the per-tensor report.

The full ResEnc-L (102.3M parameters) is compared on the meta device; weights and outputs use a copy with smaller
widths (every other argument the authors'), registered for the test under the entry's name.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

import zoo
import zoo.registry as registry
from zoo.entries.openmind import ADAPTATION_PLANS, RESENC_L_ARCH_KWARGS
from zoo.errors import CheckpointFormatError, UnsafeCheckpointError
from zoo.nnunet.adaptation_plan import read_adaptation_plan
from zoo.nnunet.plans import PlanError

from test_nnunet_export import OPS, dataset, plans_for

dna_unet = pytest.importorskip("dynamic_network_architectures.architectures.unet")

pytestmark = [pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")]

MAE, VOCO = "openmind-resencl-mae", "openmind-resencl-voco"
SMALL = [4, 8, 8, 16, 16, 16]  # widths of the test copy; everything else is get_res_enc_l's
DNA = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"


def get_res_enc_l(cin: int, cout: int, features=(32, 64, 128, 256, 320, 320)) -> nn.Module:
    """nnssl's ``get_res_enc_l`` (architecture_registry.py), argument for argument, with ``features`` variable."""
    n = 6
    return dna_unet.ResidualEncoderUNet(
        input_channels=cin, n_stages=n, features_per_stage=list(features), conv_op=nn.Conv3d,
        kernel_sizes=[[3, 3, 3] for _ in range(n)], strides=[[1, 1, 1]] + [[2, 2, 2]] * 5,
        n_blocks_per_stage=[1, 3, 4, 6, 6, 6], num_classes=cout, n_conv_per_stage_decoder=[1, 1, 1, 1, 1],
        conv_bias=True, norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True}, deep_supervision=False)


def _random(net: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval()


#: the spatial size of test inputs: 2 x 1 x 1 at the bottleneck (instance norm needs more than one voxel)
SHAPE = (1, 1, 64, 32, 32)


@dataclasses.dataclass
class PlanObject:
    """Stands for nnssl's ``AdaptationPlan`` object, pickled as itself instead of its ``serialize()`` dict."""

    x: int


class VoCoArchitecture(nn.Module):
    """nnssl's SSL wrapper (architectures/voco_architecture.py): ``encoder`` + ``projector`` MLP."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = nn.Sequential(nn.Linear(sum(encoder.output_channels), 8), nn.ReLU(), nn.Linear(8, 8))


def save_container(path, module: nn.Module, trainer: str, plan: dict | None = None) -> None:
    """``AbstractBaseTrainer.save_checkpoint``'s dict (numpy arrays already tensors, as its ``_convert_numpy``)."""
    plan = copy.deepcopy(dict(plan or ADAPTATION_PLANS[MAE]))
    conf = plan["pretrain_plan"]["configurations"]["onemmiso"]
    conf["spacing"] = torch.tensor([1.0, 1.0, 1.0])  # an ndarray in the trainer: saved as a tensor
    opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    torch.save({"network_weights": module.state_dict(), "optimizer_state": opt.state_dict(), "grad_scaler_state": None,
                "logging": {"train_losses": [0.9, 0.8], "lrs": [0.01, 0.0099]}, "_best_ema": 0.8, "current_epoch": 2,
                "init_args": {"plan": {"dataset_name": "Dataset745_OpenMind"}, "configuration_name": "onemmiso",
                              "fold": 0, "pretrain_json": {}, "device": torch.device("cpu")},
                "trainer_name": trainer, "nnssl_adaptation_plan": plan}, path)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny 3D convolutions: one thread is ~10x faster than two on a loaded 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small(monkeypatch):
    """The OpenMind entries with the test widths (every other fact as registered)."""
    for name in ADAPTATION_PLANS:
        entry = registry.get_entry(name)
        kwargs = entry.build_kwargs()
        kwargs["features_per_stage"] = list(SMALL)
        monkeypatch.setitem(registry._REGISTRY, name, dataclasses.replace(entry, arch_kwargs=kwargs))


def test_full_resenc_l_is_the_authors_network_on_the_meta_device():
    from zoo.archs.build import build_model, meta_device_model

    with torch.device("meta"):
        theirs = get_res_enc_l(1, 1)
    ours = meta_device_model(lambda: build_model(registry.get_entry(MAE), 1, 1))
    shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == shapes
    assert sum(p.numel() for p in theirs.parameters()) == sum(p.numel() for p in ours.parameters()) == 102_348_965
    encoder = meta_device_model(lambda: build_model(registry.get_entry(VOCO), 1, None))
    assert {k: tuple(v.shape) for k, v in encoder.state_dict().items()} == {
        "encoder." + k: tuple(v.shape) for k, v in theirs.encoder.state_dict().items()}


def test_mae_container_loads_exactly_with_in_channels_and_num_classes(small, tmp_path):
    theirs = _random(get_res_enc_l(1, 1, SMALL))
    ckpt = tmp_path / "checkpoint_final.pth"
    save_container(ckpt, theirs, "BaseMAETrainer")
    cache = tmp_path / "cache"
    ours = zoo.load(MAE, checkpoint=ckpt, cache_dir=cache, progress=False).eval()
    x = torch.randn(SHAPE)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    meta = json.loads(next(cache.rglob("meta.json")).read_text())
    assert {"optimizer_state", "nnssl_adaptation_plan", "trainer_name", "init_args"} <= set(meta["dropped_entries"])
    k = zoo.load(MAE, checkpoint=ckpt, cache_dir=cache, in_channels=3, num_classes=4, progress=False).eval()
    assert k.encoder.stem.convs[0].conv.weight.shape[1] == 3
    assert k.decoder.seg_layers[-1].weight.shape[0] == 4
    with torch.no_grad():  # repeat_scale: three copies of the channel give the one-channel features
        torch.testing.assert_close(k.forward_features(x.repeat(1, 3, 1, 1, 1)), theirs.encoder(x)[-1])


def test_encoder_only_voco_container_drops_the_projector(small, tmp_path):
    theirs = VoCoArchitecture(_random(get_res_enc_l(1, 1, SMALL)).encoder)
    ckpt = tmp_path / "checkpoint_final.pth"
    save_container(ckpt, theirs, "VoCoTrainer")
    cache = tmp_path / "cache"
    ours = zoo.load(VOCO, checkpoint=ckpt, cache_dir=cache, progress=False).eval()
    x = torch.randn(SHAPE)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs.encoder(x)[-1])
    meta = json.loads(next(cache.rglob("meta.json")).read_text())
    assert sorted(meta["dropped_keys"]) == ["projector.0.bias", "projector.0.weight", "projector.2.bias",
                                            "projector.2.weight"]
    with pytest.raises(CheckpointFormatError, match="network_weights"):
        torch.save({"state_dict": theirs.state_dict()}, tmp_path / "other.pth")
        zoo.load(VOCO, checkpoint=tmp_path / "other.pth", cache_dir=cache, progress=False)


def test_a_missing_encoder_tensor_is_refused(small, tmp_path):
    """Every name of one encoder tensor (its alias and the decoder's reference to the encoder) removed: a module's
    ``load_state_dict(strict=False)`` would keep it random without a word; zoo.load refuses."""
    theirs = _random(get_res_enc_l(1, 1, SMALL))
    sd = theirs.state_dict()
    gone = [k for k in sd if k.endswith("stages.2.blocks.1.conv1.conv.weight")
            or k.endswith("stages.2.blocks.1.conv1.all_modules.0.weight")]
    assert len(gone) == 4
    for k in gone:
        del sd[k]
    fresh = get_res_enc_l(1, 1, SMALL)
    assert fresh.load_state_dict(sd, strict=False).missing_keys == gone  # the silent skip
    module = nn.Module()
    module.encoder, module.decoder = theirs.encoder, theirs.decoder
    ckpt = tmp_path / "checkpoint_final.pth"
    save_container(ckpt, theirs, "BaseMAETrainer")
    obj = torch.load(ckpt, weights_only=True)
    obj["network_weights"] = sd
    torch.save(obj, ckpt)
    with pytest.raises(CheckpointFormatError, match=r"missing.*encoder\.stages\.2\.blocks\.1\.conv1") as err:
        zoo.load(MAE, checkpoint=ckpt, cache_dir=tmp_path / "cache", progress=False)
    assert err.value.key.startswith("encoder.stages.2.blocks.1.conv1")


def test_adaptation_plan_is_read_as_data_under_an_allow_list(tmp_path):
    ckpt = tmp_path / "checkpoint_final.pth"
    save_container(ckpt, _random(get_res_enc_l(1, 1, SMALL)), "BaseMAETrainer")
    plan = read_adaptation_plan(ckpt)
    assert (plan.arch_class_name, plan.pretrain_spacing, plan.recommended_downstream_patchsize) == (
        "ResEncL", (1.0, 1.0, 1.0), (160, 160, 160))
    assert plan.topology() == dict(RESENC_L_ARCH_KWARGS)
    bad = copy.deepcopy(dict(ADAPTATION_PLANS[MAE]))
    bad["architecture_plans"]["arch_class_name"] = "os.system"
    with pytest.raises(PlanError, match="arch_class_name"):
        read_adaptation_plan(bad)
    bad["architecture_plans"] = {"arch_class_name": "ResidualEncoderUNet",
                                 "arch_kwargs": {**RESENC_L_ARCH_KWARGS, "exec": "print(1)"}}
    with pytest.raises(PlanError, match="exec"):
        read_adaptation_plan(bad)
    # the dataclass object itself (not its serialize()): weights_only refuses it, nothing is imported or run
    torch.save({"network_weights": {}, "nnssl_adaptation_plan": PlanObject(1)}, tmp_path / "pickled.pth")
    with pytest.raises(UnsafeCheckpointError):
        read_adaptation_plan(tmp_path / "pickled.pth")


def _decathlon(tmp_path, ct: bool):
    """A BrainTumour-like (4 MRI channels, regions) or Liver-like (CT) nnU-Net v2 PlainConvUNet plan."""
    six = {"n_stages": 6, "features_per_stage": [32, 64, 128, 256, 320, 320], "kernel_sizes": [[3, 3, 3]] * 6,
           "strides": [[1, 1, 1]] + [[2, 2, 2]] * 4 + [[1, 2, 2]], "n_conv_per_stage": [2] * 6,
           "n_conv_per_stage_decoder": [2] * 5, **OPS}
    channels = ["CT"] if ct else ["FLAIR", "T1w", "T1gd", "T2w"]
    plans = plans_for(six, [128, 128, 128], n_channels=len(channels), spacing=(1.0, 0.77, 0.77))
    if ct:
        plans["configurations"]["3d_fullres"]["normalization_schemes"] = ["CTNormalization"]
        plans["foreground_intensity_properties_per_channel"] = {"0": {"mean": 99.0, "std": 40.0, "percentile_00_5":
                                                                      -20.0, "percentile_99_5": 200.0}}
    path = tmp_path / ("ct.json" if ct else "mri.json")
    path.write_text(json.dumps(plans))
    return path, channels


@pytest.mark.parametrize("source", ["registry", "json", "pth"])
def test_zoo_plan_applies_the_recipe_and_nnunet_reads_it(tmp_path, capsys, source):
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from zoo import cli

    extra = []
    if source == "json":
        (tmp_path / "adaptation_plan.json").write_text(json.dumps(dict(ADAPTATION_PLANS[MAE])))
        extra = [str(tmp_path / "adaptation_plan.json")]
    elif source == "pth":
        save_container(tmp_path / "checkpoint_final.pth", _random(get_res_enc_l(1, 1, SMALL)), "BaseMAETrainer")
        extra = [str(tmp_path / "checkpoint_final.pth")]
    for ct in (False, True):
        plans, channels = _decathlon(tmp_path, ct)
        out = tmp_path / f"ptPlans_{int(ct)}.json"
        assert cli.main(["plan", MAE, "--plans", str(plans), "-o", str(out), "--adaptation-plan", *extra]) == 0
        printed = capsys.readouterr().out
        assert "patch_size: [128, 128, 128] -> [160, 160, 160]" in printed
        assert ("normalization_schemes: ['CTNormalization'] -> ['ZScoreNormalization']" in printed) == ct
        cm = PlansManager(str(out)).get_configuration("3d_fullres")
        assert cm.network_arch_class_name == DNA
        assert list(cm.patch_size) == [160, 160, 160] and list(cm.spacing) == [1.0, 1.0, 1.0]
        assert cm.normalization_schemes == ["ZScoreNormalization"] * len(channels)
        assert cm.use_mask_for_norm == [False] * len(channels)
        # nnU-Net's own preprocessing now z-scores every channel over all voxels, as nnssl's pretraining did
        volume = np.random.default_rng(0).normal(300.0, 80.0, size=(len(channels), 6, 6, 6)).astype(np.float32)
        seg = np.zeros((1, 6, 6, 6), dtype=np.int8)
        props = json.loads(out.read_text())["foreground_intensity_properties_per_channel"]
        normed = DefaultPreprocessor()._normalize(volume.copy(), seg, cm, {str(c): props.get(str(c), {})
                                                                          for c in range(len(channels))})
        expected = (volume - volume.mean(axis=(1, 2, 3), keepdims=True)) / volume.std(axis=(1, 2, 3), keepdims=True)
        np.testing.assert_allclose(normed, expected, rtol=1e-4, atol=1e-4)
        assert cm.data_identifier.endswith("_medzoo_input")
        with torch.device("meta"):
            net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                         cm.network_arch_init_kwargs_req_import, len(channels), 3,
                                         allow_init=False, deep_supervision=True)
            ref = get_res_enc_l(len(channels), 3)
        assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}


def test_plan_recipe_is_checked_against_the_model(tmp_path):
    from zoo.nnunet.plan_rewrite import rewrite_plan

    plans, _ = _decathlon(tmp_path, ct=False)
    other = copy.deepcopy(dict(ADAPTATION_PLANS[MAE]))
    other["architecture_plans"] = {"arch_class_name": "PlainConvUNet", "arch_kwargs": {
        "n_stages": 4, "features_per_stage": [8, 16, 32, 32], "kernel_sizes": [[3, 3, 3]] * 4,
        "strides": [[1, 1, 1]] + [[2, 2, 2]] * 3, "n_conv_per_stage": [2] * 4, "n_conv_per_stage_decoder": [2] * 3,
        **OPS}}
    with pytest.raises(PlanError, match="not the network of 'openmind-resencl-mae'"):
        rewrite_plan(MAE, str(plans), adaptation_plan=other)
    new = rewrite_plan(None, str(plans), adaptation_plan=other)  # no model: the file's own network
    assert new["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["features_per_stage"] == [8, 16, 32, 32]
    other["architecture_plans"]["arch_kwargs"]["conv_op"] = "os.system"
    with pytest.raises(PlanError):
        rewrite_plan(None, str(plans), adaptation_plan=other, output=tmp_path / "never.json")
    assert not (tmp_path / "never.json").exists()


def test_transfer_into_a_decathlon_plan_with_the_per_tensor_report(small, tmp_path):
    from zoo.nnunet.export import adapt_to_plan

    ckpt = tmp_path / "checkpoint_final.pth"
    save_container(ckpt, VoCoArchitecture(_random(get_res_enc_l(1, 1, SMALL)).encoder), "VoCoTrainer")
    kwargs = {**RESENC_L_ARCH_KWARGS, "n_stages": 5, "features_per_stage": SMALL[:5], "kernel_sizes": [[3, 3, 3]] * 5,
              "strides": [[1, 1, 1]] + [[2, 2, 2]] * 3 + [[1, 2, 2]], "n_blocks_per_stage": [1, 3, 4, 6, 6],
              "n_conv_per_stage_decoder": [1] * 4}  # a 5-stage ResEnc plan, anisotropic last stride
    plans = plans_for(kwargs, [64, 64, 64], n_channels=4, cls="ResidualEncoderUNet")
    ds = dataset(["FLAIR", "T1w", "T1gd", "T2w"], {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                                                  "enhancing tumor": 3}, regions_class_order=[1, 2, 3])
    net, report = adapt_to_plan(VOCO, plans, dataset_json=ds, checkpoint=ckpt, cache_dir=tmp_path / "c", seed=0)
    rows = {r.target_key: r for r in report.rows}
    stem = rows["encoder.stem.convs.0.conv.weight"]
    assert stem.initialised and stem.target_shape[1] == 4 and stem.source_shape[1] == 1
    encoder = [r for k, r in rows.items() if k.startswith("encoder.")]
    assert encoder and all(r.initialised for r in encoder)  # stages 0-4 of the 6-stage encoder
    assert not any(r.initialised for k, r in rows.items() if k.startswith("decoder."))  # no decoder upstream
    assert {u.source_key.split(".")[2] for u in report.unused} == {"5"}  # the deepest stage has no counterpart
    assert net.encoder.stem.convs[0].conv.weight.shape[1] == 4
