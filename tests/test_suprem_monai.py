"""SuPreM SegResNet / Swin UNETR and MONAI's whole-body CT bundle: MONAI's own classes, the authors' file layouts.

The authors' layouts, from their code (MrGiovanni/SuPreM ``supervised_pretraining/train.py``,
``backbone/Universal_model.py``, ``backbone/swinunetr.py``; Project-MONAI/model-zoo
``models/wholeBody_ct_segmentation/configs/inference.json``):

* SegResNet: ``monai.networks.nets.SegResNet(blocks_down=[1,2,2,4], blocks_up=[1,1,1], init_filters=16,
  in_channels=1, out_channels=num_class, dropout_prob=0.0)`` trained in DistributedDataParallel and saved as
  ``{'net': model.state_dict(), 'optimizer': ..., 'scheduler': ..., 'epoch': ...}``: keys ``module.<SegResNet key>``.
* Swin UNETR: the universal model's ``self.backbone`` is a SwinUNETR(feature_size=48) copy without an ``out``
  head, saved the same way: keys ``module.backbone.<SwinUNETR key>`` next to the universal model's own keys.
  Its patch merging concatenates the 2x2x2 neighbours in the order (d, h, w) = 000, 100, 010, 001, 101, 010,
  001, 111 (``x0`` .. ``x7`` of its ``PatchMerging.forward``), written out independently below.
* whole body: ``SegResNet(in_channels=1, out_channels=105, init_filters=32, blocks_down=[1,2,2,4],
  blocks_up=[1,1,1], dropout_prob=0.2)``, a raw state dict.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import pytest
import torch

import zoo
from zoo.errors import AdaptationError, CheckpointFormatError, PlanError

nets = pytest.importorskip("monai.networks.nets")
from monai.networks.nets.swin_unetr import PatchMergingV2  # noqa: E402

from zoo.archs.monai_nets import _ScalarsOnCPU, build_monai_swinunetr  # noqa: E402
from zoo.archs.build import build_model  # noqa: E402
from zoo.archs.size_estimate import estimate_architecture  # noqa: E402
from zoo.convert.cache import validate_against  # noqa: E402
from zoo.convert.formats import unwrap_checkpoint  # noqa: E402

DEMO = Path(__file__).resolve().parent.parent / "zoo" / "assets" / "demo"
CONF = "3d_fullres"

pytestmark = [pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions: one thread is faster than two contending ones (as tests/test_adapt.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SEGRESNET_ARGS = dict(blocks_down=[1, 2, 2, 4], blocks_up=[1, 1, 1], init_filters=16, in_channels=1,
                      dropout_prob=0.0)


def _authors_segresnet(out_channels: int = 25) -> torch.nn.Module:
    return nets.SegResNet(out_channels=out_channels, **SEGRESNET_ARGS).eval()


class _AuthorsMerging(PatchMergingV2):
    """SuPreM's neighbour order, written out as in the authors' forward (x0 .. x7)."""

    def forward(self, x):
        parts = [x[:, 0::2, 0::2, 0::2], x[:, 1::2, 0::2, 0::2], x[:, 0::2, 1::2, 0::2], x[:, 0::2, 0::2, 1::2],
                 x[:, 1::2, 0::2, 1::2], x[:, 0::2, 1::2, 0::2], x[:, 0::2, 0::2, 1::2], x[:, 1::2, 1::2, 1::2]]
        return self.reduction(self.norm(torch.cat(parts, -1)))


def _authors_swin(feature_size: int) -> torch.nn.Module:
    net = nets.SwinUNETR(in_channels=1, out_channels=25, feature_size=feature_size, downsample=_AuthorsMerging)
    del net.out  # SuPreM's copy has no `out` head
    return net.eval()


def _decoder1(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = {}
    hook = net.decoder1.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    hidden = net.swinViT(x, net.normalize)  # the backbone's own forward, without MONAI's head
    enc = [net.encoder1(x), net.encoder2(hidden[0]), net.encoder3(hidden[1]), net.encoder4(hidden[2])]
    dec = net.decoder5(net.encoder10(hidden[4]), hidden[3])
    for block, skip in zip((net.decoder4, net.decoder3, net.decoder2, net.decoder1), enc[::-1]):
        dec = block(dec, skip)
    hook.remove()
    return seen["out"]


def test_suprem_segresnet_authors_file_loads_exactly(tmp_path):
    ref = _authors_segresnet()
    path = tmp_path / "supervised_suprem_segresnet_2100.pth"
    torch.save({"net": {"module." + k: v for k, v in ref.state_dict().items()}, "epoch": 800}, path)
    model = zoo.load("suprem-segresnet", checkpoint=path, progress=False).eval()
    assert set(model.state_dict()) == set(ref.state_dict()) - {"conv_final.2.conv.weight", "conv_final.2.conv.bias"}
    x = torch.randn(1, 1, 16, 24, 8)  # anisotropic: each axis divisible by 8
    with torch.no_grad():
        feats = model(x)
        ref.conv_final[2] = torch.nn.Identity()
        assert torch.equal(feats, ref(x))
    n = sum(p.numel() for p in model.parameters())
    assert n == estimate_architecture("monai_segresnet", zoo.get_entry("suprem-segresnet").build_kwargs()).parameters
    assert round(n / 1e6, 2) == 4.70
    # in_channels=k and num_classes=n are exact; the new head is fresh, the rest the authors' weights
    adapted = zoo.load("suprem-segresnet", checkpoint=path, in_channels=3, num_classes=5, progress=False).eval()
    assert adapted.convInit.conv.weight.shape[1] == 3
    assert adapted(torch.randn(1, 3, 8, 16, 8)).shape == (1, 5, 8, 16, 8)
    assert torch.equal(adapted.down_layers[3][1].conv2.conv.weight, ref.down_layers[3][1].conv2.conv.weight)


def test_suprem_segresnet_refuses_a_missing_encoder_key(tmp_path):
    sd = {"module." + k: v for k, v in _authors_segresnet().state_dict().items()}
    del sd["module.down_layers.2.1.conv1.conv.weight"]
    path = tmp_path / "cut.pth"
    torch.save({"net": sd}, path)
    with pytest.raises(CheckpointFormatError, match="down_layers.2.1.conv1.conv.weight"):
        zoo.load("suprem-segresnet", checkpoint=path, progress=False)
    del sd["module.convInit.conv.weight"]
    torch.save({"net": sd}, path)
    with pytest.raises(CheckpointFormatError, match="convInit"):
        zoo.load("suprem-segresnet", checkpoint=path, progress=False)


def test_suprem_swinunetr_authors_file_loads_exactly(tmp_path):
    ref = _authors_swin(12)  # feature_size reduced for speed; the full size is checked on the meta device
    sd = {"module.backbone." + k: v for k, v in ref.state_dict().items()}
    sd["module.organ_embedding.weight"] = torch.zeros(25, 256)
    sd["module.controller.weight"] = torch.zeros(153, 512, 1, 1, 1)
    path = tmp_path / "supervised_suprem_swinunetr_2100.pth"
    torch.save({"net": sd, "optimizer": {}}, path)
    # zoo.load converts against the registry's feature_size=48; the reduced copy goes through the same converter
    # and the same validation, with the entry's arguments at feature_size=12
    entry = dataclasses.replace(zoo.get_entry("suprem-swinunetr"),
                                arch_kwargs={**zoo.get_entry("suprem-swinunetr").arch_kwargs, "feature_size": 12})
    model = build_model(entry).eval()
    unwrapped = unwrap_checkpoint(path, "suprem-swinunetr")
    assert sorted(unwrapped.dropped_keys) == ["module.controller.weight", "module.organ_embedding.weight"]
    model.load_state_dict(validate_against(unwrapped.state_dict, model, entry), strict=True)
    x = torch.randn(1, 1, 64, 32, 32)  # the smallest input whose 1/32 level has more than one voxel (InstanceNorm)
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, _decoder1(ref, x))
        # MONAI 1.6's own "merging" is not SuPreM's: the exact order matters
        plain = build_monai_swinunetr(feature_size=12).eval()
        plain.load_state_dict(model.state_dict())
        assert not torch.allclose(plain(x), out)
    adapted = build_model(entry, in_channels=2, num_classes=3).eval()
    with torch.no_grad():
        assert adapted(torch.randn(1, 2, 32, 64, 32)).shape == (1, 3, 32, 64, 32)
    assert estimate_architecture("monai_swinunetr", {**entry.arch_kwargs, "in_channels": 2, "num_classes": 3}
                                 ).parameters == sum(p.numel() for p in adapted.parameters())
    del sd["module.backbone.swinViT.layers3.0.blocks.1.attn.qkv.weight"]
    torch.save({"net": sd}, path)
    with pytest.raises(CheckpointFormatError, match="layers3.0.blocks.1.attn.qkv.weight"):
        validate_against(unwrap_checkpoint(path, "suprem-swinunetr").state_dict, model, entry)
    del sd["module.backbone.swinViT.patch_embed.proj.weight"]
    torch.save({"net": sd}, path)
    with pytest.raises(CheckpointFormatError, match="patch_embed"):
        unwrap_checkpoint(path, "suprem-swinunetr")


def test_full_size_swinunetr_on_the_meta_device():
    with torch.device("meta"), _ScalarsOnCPU():  # MONAI's drop-path schedule calls .item()
        ref = _authors_swin(48)
    with torch.device("meta"):
        model = build_model(zoo.get_entry("suprem-swinunetr"))
    assert set(model.state_dict()) == set(ref.state_dict())
    n = sum(p.numel() for p in model.parameters())
    assert n == 62_186_610 == estimate_architecture("monai_swinunetr", {"feature_size": 48}).parameters
    assert round(n / 1e6, 2) == 62.19


def test_monai_wholebody_bundle_raw_state_dict(tmp_path):
    ref = nets.SegResNet(spatial_dims=3, in_channels=1, out_channels=105, init_filters=32, blocks_down=[1, 2, 2, 4],
                         blocks_up=[1, 1, 1], dropout_prob=0.2).eval()
    path = tmp_path / "model.pt"
    torch.save(ref.state_dict(), path)
    model = zoo.load("monai-wholebody-ct", checkpoint=path, progress=False).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    assert sum(p.numel() for p in model.parameters()) == 18_799_401


def _demo_plan(tmp_path: Path) -> Path:
    plans = json.loads((DEMO / "nnUNetPlans.json").read_text())
    plans["configurations"][CONF]["patch_size"] = [80, 160, 112]
    out = tmp_path / "nnUNetPlans.json"
    out.write_text(json.dumps(plans))
    return out


def test_zoo_plan_arch_monai_gives_nnunet_v2_the_network_and_its_pretrained_weights(tmp_path):
    """`zoo plan NAME --arch monai`: nnU-Net's own PlansManager / get_network_from_plans build the class the plan
    names with the checkpoint's arguments; the trainer's deep-supervision switch works; nnU-Net's own
    load_pretrained_weights takes {'network_weights': zoo.load(NAME, num_classes=n).state_dict()} (only the
    .seg_layers. heads, which it skips, stay fresh); patch, spacing and normalisation are the entry's."""
    from zoo.cli import main as cli_main
    from zoo.nnunet.plan_rewrite import rewrite_plan

    src = _demo_plan(tmp_path)
    out = tmp_path / "nnUNetPlans_monai.json"
    assert cli_main(["plan", "suprem-segresnet", "--plans", str(src), "--arch", "monai", "-o", str(out)]) == 0
    new = json.loads(out.read_text())
    c = new["configurations"][CONF]
    assert c["architecture"] == {"network_class_name": "zoo.archs.monai_nets.MonaiSegResNet", "_kw_requires_import": [],
                                 "arch_kwargs": {"blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1], "init_filters": 16,
                                                 "dropout_prob": 0.0, "strides": [[1, 1, 1]] + [[2, 2, 2]] * 3}}
    assert c["patch_size"] == [96, 96, 96] and c["spacing"] == [1.5, 1.5, 1.5] and c["batch_size"] == 2
    assert c["normalization_schemes"] == ["CTNormalization"] * 4
    props = new["foreground_intensity_properties_per_channel"]["0"]
    assert (props["percentile_00_5"], props["percentile_99_5"]) == (-175.0, 250.0)
    assert c["data_identifier"] != "nnUNetPlans_3d_fullres"  # new preprocessing
    swin = rewrite_plan("suprem-swinunetr", src, CONF, arch="monai")["configurations"][CONF]["architecture"]
    assert swin["network_class_name"] == "zoo.archs.monai_nets.MonaiSwinUNETR"
    assert swin["arch_kwargs"]["downsample"] == "merging-suprem" and len(swin["arch_kwargs"]["strides"]) == 6
    whole = rewrite_plan("monai-wholebody-ct", src, CONF, arch="monai")  # no nnU-Net scheme: normalisation kept
    assert whole["configurations"][CONF]["normalization_schemes"] == \
        json.loads(src.read_text())["configurations"][CONF]["normalization_schemes"]
    assert whole["configurations"][CONF]["spacing"] == [1.5, 1.5, 1.5]
    assert "no nnU-Net normalisation scheme" in whole["medzoo_input"]["note"]
    with pytest.raises(PlanError, match="suprem-segresnet"):
        rewrite_plan(None, src, CONF, arch="monai")
    with pytest.raises(PlanError, match="monai"):
        rewrite_plan("genesis-chest-ct-nnunet-lung", src, CONF, arch="monai")
    with pytest.raises(PlanError, match="tensor-for-tensor"):
        rewrite_plan("suprem-segresnet", src, CONF, arch="unet")

    pytest.importorskip("nnunetv2")
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    cm = PlansManager(str(out)).get_configuration(CONF)
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, 1, 4, allow_init=True, deep_supervision=True)
    assert type(net).__module__ == "zoo.archs.monai_nets" and type(net).__name__ == "MonaiSegResNet"
    ref = _authors_segresnet()
    ckpt = tmp_path / "s.pth"
    torch.save({"net": {"module." + k: v for k, v in ref.state_dict().items()}}, ckpt)
    pretrained = tmp_path / "pretrained.pth"
    torch.save({"network_weights": zoo.load("suprem-segresnet", checkpoint=ckpt, num_classes=4,
                                            progress=False).state_dict()}, pretrained)
    fresh_head = net.decoder.seg_layers[0].weight.clone()
    load_pretrained_weights(net, str(pretrained), verbose=False)
    assert torch.equal(net.down_layers[3][1].conv2.conv.weight, ref.down_layers[3][1].conv2.conv.weight)
    assert torch.equal(net.decoder.seg_layers[0].weight, fresh_head)
    patch = [16, 8, 24]
    scales = 1 / torch.tensor(cm.pool_op_kernel_sizes).cumprod(0)[:-1]  # nnUNetTrainer's deep-supervision scales
    with torch.no_grad():
        outs = net(torch.randn(1, 1, *patch))
        assert [tuple(o.shape[2:]) for o in outs] == [tuple(int(p * s) for p, s in zip(patch, sc))
                                                      for sc in scales.tolist()]
        assert [o.shape[1] for o in outs] == [4] * 3
        net.decoder.deep_supervision = False  # nnUNetTrainer.set_deep_supervision_enabled
        assert net(torch.randn(1, 1, *patch)).shape == (1, 4, *patch)
    arch = cm.network_arch_init_kwargs
    with pytest.raises(ValueError, match="strides"):
        get_network_from_plans(cm.network_arch_class_name, {**arch, "strides": [[1, 1, 1], [2, 2, 2]]}, [], 1, 4)


def test_transfer_into_unet_plans_is_refused_with_the_reason(tmp_path):
    """MONAI's networks have no tensor-for-tensor counterpart in nnU-Net's U-Nets: adapt_to_plan (before any
    download) and the engine itself refuse, naming the way that works."""
    from zoo.adapt.engine import adapt_state_dict
    from zoo.nnunet.export import adapt_to_plan

    with pytest.raises(AdaptationError, match="monai_segresnet"):
        adapt_to_plan("suprem-segresnet", DEMO / "nnUNetPlans.json", CONF, num_classes=3, in_channels=1)
    from zoo.nnunet.plan_rewrite import rewrite_plan

    monai_plan = rewrite_plan("suprem-segresnet", DEMO / "nnUNetPlans.json", CONF, arch="monai")
    with pytest.raises(PlanError, match="MonaiSegResNet"):  # the engine's transfer is for nnU-Net's U-Nets
        adapt_to_plan("suprem-segresnet", monai_plan, CONF, num_classes=3, in_channels=1)
    with torch.device("meta"):
        unet = build_model(zoo.get_entry("genesis-chest-ct-nnunet-lung"), 1, 2)
    seg_sd = {k: torch.zeros(v.shape) for k, v in nets.SegResNet(init_filters=8).state_dict().items()}
    with pytest.raises(AdaptationError, match="--arch monai"):
        adapt_state_dict(seg_sd, unet, source_name="suprem-segresnet", target_name="plain")
    with torch.device("meta"), _ScalarsOnCPU():
        swin = build_monai_swinunetr(feature_size=12)
    with pytest.raises(AdaptationError, match="swinViT"):
        adapt_state_dict({k: torch.zeros(v.shape) for k, v in unet.state_dict().items()}, swin,
                         source_name="unet", target_name="swin")


def test_import_zoo_does_not_import_monai_and_missing_monai_is_named(monkeypatch):
    import subprocess
    import sys

    code = "import sys, zoo; zoo.get_entry('suprem-swinunetr'); print('monai' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    monai_nets = importlib.import_module("zoo.archs.monai_nets")
    monkeypatch.setitem(sys.modules, "monai.networks.nets", None)
    monai_nets._classes.cache_clear()
    try:
        with pytest.raises(ImportError, match=r'pip install "medzoo\[monai\]"'):
            monai_nets.build_monai_segresnet()
    finally:
        monkeypatch.undo()
        monai_nets._classes.cache_clear()
