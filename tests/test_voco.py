"""VoCo (``Luffy503/VoCo``): the authors' ``VoComni_nnunet`` layout, built with dynamic-network-architectures from
the facts of their code, saved as their files are, loaded through medzoo, and transferred into an nnU-Net plan.

Facts (Luffy03/Large-Scale-Medical on GitHub): ``Omni-supervised/models/PlainConvUNet_load.py`` builds
``PlainConvUNet`` with 6 stages, features min(32 * 2**i, 320), 3x3x3 kernels, strides (1,1,1) then (2,2,2),
2 convolutions per stage, conv bias, affine InstanceNorm3d (eps 1e-5), LeakyReLU, no dropout, 21 classes;
``Downstream/nnUNet/.../nnUNetTrainer_pretrain.py`` reads the file raw or from ``state_dict`` /
``network_weights`` / ``net`` / ``student`` and strips ``module.`` and ``backbone.``. The real file cannot be
downloaded here: the weights are random, the layout is the authors'.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import zoo
from zoo.convert.formats import unwrap_checkpoint
from zoo.errors import CheckpointFormatError

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")

NAME = "voco-omni-nnunet"


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


def authors_plain_unet(in_channels: int = 1, num_classes: int = 21, base: int = 32, cap: int = 320,
                       last_stride: tuple[int, int, int] = (2, 2, 2)) -> nn.Module:
    """dynamic-network-architectures' PlainConvUNet with the arguments of the authors' ``get_Plain_nnUNet``."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    stages = 6
    return PlainConvUNet(
        input_channels=in_channels, n_stages=stages,
        features_per_stage=[min(base * 2 ** i, cap) for i in range(stages)], conv_op=nn.Conv3d,
        kernel_sizes=[[3, 3, 3]] * stages, strides=[[1, 1, 1]] + [[2, 2, 2]] * 4 + [list(last_stride)],
        num_classes=num_classes, deep_supervision=False, n_conv_per_stage=[2] * stages,
        n_conv_per_stage_decoder=[2] * (stages - 1), conv_bias=True, norm_op=nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None, dropout_op_kwargs=None,
        nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True},
    )


def randomised(net: nn.Module, seed: int) -> nn.Module:
    """Every tensor random (norm affines included), so that a wrong or missed copy shows in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.05 if p.dim() > 1 else 0.3) + (1.0 if p.dim() == 1 else 0))
    return net.eval()


@pytest.fixture(scope="module")
def authors(tmp_path_factory) -> tuple[nn.Module, Path]:
    """The full-size authors' network and its file: the raw state dict (all alias keys), as ``torch.save``."""
    with torch.device("meta"):  # no default initialisation of 31M parameters: every tensor is drawn below
        net = authors_plain_unet()
    net = randomised(net.to_empty(device="cpu"), seed=5)
    path = tmp_path_factory.mktemp("voco") / "VoComni_nnunet.pt"
    torch.save(net.state_dict(), path)
    return net, path


def test_entry_records_the_authors_topology_and_the_unconfirmed_facts():
    entry = zoo.get_entry(NAME)
    assert (entry.architecture, entry.source.repo_id, entry.source.filename, entry.source.format) == \
        ("plain_conv_unet", "Luffy503/VoCo", "VoComni_nnunet.pt", "voco")
    assert entry.source.revision is None and entry.source.sha256 is None
    assert entry.license.spdx == "apache-2.0" and entry.num_classes == 21
    assert entry.input.normalization.clip == (-175.0, 250.0) and entry.input.spacing_mm == (1.5, 1.5, 1.5)
    assert "Unconfirmed" in entry.weights_note and "(1,2,2)" in entry.weights_note
    with torch.device("meta"):
        ours = zoo.load(NAME, pretrained=False)
        theirs = authors_plain_unet()
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert sum(p.numel() for p in theirs.parameters()) == 31_210_889  # the README's "31M"


def test_authors_file_loads_exactly_and_adapts_channels_and_classes(authors):
    net, path = authors
    model = zoo.load(NAME, checkpoint=path, progress=False).eval()
    sd, theirs = model.state_dict(), net.state_dict()
    assert sd.keys() == theirs.keys() and all(torch.equal(sd[k], theirs[k]) for k in theirs)
    x = torch.randn(1, 1, 64, 32, 32, generator=torch.Generator().manual_seed(0))  # bottleneck 2x1x1
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, net(x), rtol=0, atol=0)
    assert out.shape == (1, 21, 64, 32, 32)

    k, n = 3, 4
    adapted = zoo.load(NAME, checkpoint=path, in_channels=k, num_classes=n, progress=False).eval()
    first = adapted.encoder.stages[0][0].convs[0].conv.weight
    assert first.shape == (32, k, 3, 3, 3)
    torch.testing.assert_close(first, theirs["encoder.stages.0.0.convs.0.conv.weight"].repeat(1, k, 1, 1, 1) / k)
    assert [tuple(s.weight.shape[:2]) for s in adapted.decoder.seg_layers] == [(n, 320), (n, 256), (n, 128),
                                                                              (n, 64), (n, 32)]
    small = x[..., :8, :8, :8]
    with torch.no_grad():  # k identical channels reproduce the 1-channel response of the first stage
        torch.testing.assert_close(adapted.encoder.stages[0](small.repeat(1, k, 1, 1, 1)),
                                   model.encoder.stages[0](small), rtol=1e-5, atol=1e-5)
    assert any("21 -> 4 classes" in a for a in adapted.load_report.adaptations)
    assert all(torch.equal(adapted.state_dict()[key], sd[key]) for key in sd
               if "seg_layers" not in key and "stages.0.0.convs.0." not in key)


@pytest.mark.parametrize("wrapper", [None, "state_dict", "network_weights", "net", "student"])
def test_containers_and_prefixes_of_the_authors_loader(tmp_path, wrapper):
    net = randomised(authors_plain_unet(base=2, cap=4, num_classes=3), seed=1)
    body = {f"module.backbone.{k}": v for k, v in net.state_dict().items()}
    projection = {"module.student.layer1.0.weight": torch.ones(4, 6), "module.teacher.layer3.0.bias": torch.ones(4)}
    inner = {**body, **projection}
    obj = inner if wrapper is None else {wrapper: inner, "epoch": 7, "optimizer": {"state": {}}}
    torch.save(obj, tmp_path / "f.pt")
    out = unwrap_checkpoint(tmp_path / "f.pt", "voco")
    theirs = net.state_dict()
    assert out.state_dict.keys() == theirs.keys() and all(torch.equal(out.state_dict[k], theirs[k]) for k in theirs)
    assert sorted(out.dropped_keys) == ["student.layer1.0.weight", "teacher.layer3.0.bias"]
    assert out.dropped_entries == ([] if wrapper is None else ["epoch", "optimizer"])


def test_missing_encoder_tensor_or_other_shapes_are_refused_never_skipped(tmp_path, authors):
    small = randomised(authors_plain_unet(base=2, cap=4), seed=2).state_dict()
    gap = {k: v for k, v in small.items() if not k.startswith(("encoder.stages.2.0.convs.0.",
                                                               "decoder.encoder.stages.2.0.convs.0."))}
    torch.save({"state_dict": gap}, tmp_path / "gap.pt")
    with pytest.raises(CheckpointFormatError, match="lacks encoder tensors") as err:
        unwrap_checkpoint(tmp_path / "gap.pt", "voco")
    assert err.value.key == "encoder.stages.2.0.convs.0.conv.weight"
    torch.save({"model": small}, tmp_path / "other.pt")  # not a wrapper of the authors' loader
    with pytest.raises(CheckpointFormatError, match="neither a raw state dict nor one wrapped in 'state_dict'"):
        unwrap_checkpoint(tmp_path / "other.pt", "voco")
    torch.save({"head.weight": torch.ones(2)}, tmp_path / "alien.pt")
    with pytest.raises(CheckpointFormatError, match="no 'encoder.stages.*' .* or 'swinViT.*'"):
        unwrap_checkpoint(tmp_path / "alien.pt", "voco")

    # full size: a deeper encoder tensor gone and the Dataset503-plan last stride (1,2,2): upstream's loader would
    # keep the rest and leave those tensors random; medzoo refuses and names them
    _, path = authors
    sd = torch.load(path, weights_only=True)
    missing = "encoder.stages.4.0.convs.1.norm.weight"
    for key in [k for k in sd if k.endswith((missing, "stages.4.0.convs.1.all_modules.1.weight"))]:
        del sd[key]
    sd["decoder.transpconvs.0.weight"] = torch.zeros(320, 320, 1, 2, 2)
    torch.save(sd, tmp_path / "VoComni_nnunet.pt")
    with pytest.raises(CheckpointFormatError) as err:
        zoo.load(NAME, checkpoint=tmp_path / "VoComni_nnunet.pt", progress=False)
    assert err.value.key == missing
    assert "decoder.transpconvs.0.weight: (320, 320, 1, 2, 2) vs (320, 320, 2, 2, 2)" in str(err.value)


OPS = {
    "conv_op": "torch.nn.modules.conv.Conv3d", "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
}
#: an nnU-Net v2 3d_fullres plan in the manner of MSD Task04 Hippocampus (1 MR channel, 3 labels, 1 mm, patch
#: 40 x 56 x 40 in z, y, x): 4 stages up to 256 features
HIPPOCAMPUS_PLANS = {
    "dataset_name": "Dataset004_Hippocampus",
    "plans_name": "nnUNetPlans",
    "transpose_forward": [0, 1, 2],
    "transpose_backward": [0, 1, 2],
    "configurations": {"3d_fullres": {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 9,
        "patch_size": [40, 56, 40], "median_image_size_in_voxels": [36, 50, 35], "spacing": [1.0, 1.0, 1.0],
        "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": 4, "features_per_stage": [32, 64, 128, 256], "kernel_sizes": [[3, 3, 3]] * 4,
                "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]], "n_conv_per_stage": [2] * 4,
                "n_conv_per_stage_decoder": [2] * 3, **OPS},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
        "batch_dice": False,
    }},
    "experiment_planner_used": "ExperimentPlanner",
    "label_manager": "LabelManager",
}
HIPPOCAMPUS_DS = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "Anterior": 1, "Posterior": 2},
                  "numTraining": 260, "file_ending": ".nii.gz"}


def test_transfer_into_a_decathlon_like_plan_reports_every_tensor(authors):
    from zoo.nnunet.export import adapt_to_plan

    net, _ = authors  # the file's own round trip is tested above: here its tensors (all alias keys) go in directly
    target, report = adapt_to_plan(NAME, copy.deepcopy(HIPPOCAMPUS_PLANS), "3d_fullres", HIPPOCAMPUS_DS,
                                   state_dict=net.state_dict(), seed=0)
    assert report.options["in_channels"] == 1 and report.options["num_classes"] == 3
    rows, src, got = {r.target_key: r for r in report.rows}, net.state_dict(), target.state_dict()
    # the checkpoint is x, y, z (MONAI RAS arrays), the plan z, y, x: every kernel is permuted, never taken raw
    for key in ("encoder.stages.0.0.convs.0.conv.weight", "encoder.stages.3.0.convs.1.conv.weight"):
        assert rows[key].action == "permute" and "xyz->zyx" in rows[key].detail
        assert torch.equal(got[key], src[key].permute(0, 1, 4, 3, 2))
    assert torch.equal(got["encoder.stages.2.0.convs.0.norm.weight"], src["encoder.stages.2.0.convs.0.norm.weight"])
    # the decoder is aligned by resolution from the output side: the plan's full-resolution stage is the file's
    assert rows["decoder.stages.2.convs.0.conv.weight"].source_key == "decoder.stages.4.convs.0.conv.weight"
    assert report.share_initialised_body == 1.0
    # nothing is dropped silently: the two stages the plan lacks and the 21-class heads are listed with reasons
    lost = {u.source_key.split(".")[2] for u in report.unused if u.source_key.startswith("encoder.stages.")}
    assert lost == {"4", "5"} and all("target's encoder has 4 stages" in u.reason for u in report.unused
                                      if u.source_key.startswith("encoder.stages."))
    assert any(u.head and "seg_layers" in u.source_key for u in report.unused)
    assert "encoder stages: 0 100%, 1 100%, 2 100%, 3 100%" in report.summary()
    assert "Checkpoint tensors not used" in str(report)


# ------------------------------------------------------------------------------------------ VoCo-B (Swin, SSL head)

SSL_NAME = "voco-b-ssl"


def authors_voco_head(feature_size: int) -> nn.Module:
    """The layout of the authors' ``VoCoHead`` (Self-supervised/models/voco_head.py): ``backbone`` = MONAI's
    SwinTransformer (v2, patch 2, window 7, depths 2,2,2,2, heads 3,6,12,24) + UnetrBasicBlock encoders 1-4 and
    10 (decoders commented out upstream), and two projection heads (``student`` / ``teacher``: Linear +
    BatchNorm1d(affine=False, no running stats) + ReLU twice, then Linear; 1024 wide) on the pooled encoders."""
    blocks = pytest.importorskip("monai.networks.blocks")
    from monai.networks.nets.swin_unetr import SwinTransformer

    fs = feature_size

    def basic(cin: int, cout: int) -> nn.Module:
        return blocks.UnetrBasicBlock(spatial_dims=3, in_channels=cin, out_channels=cout, kernel_size=3, stride=1,
                                      norm_name="instance", res_block=True)

    def projection(in_dim: int, hidden: int = 1024) -> nn.Module:
        head = nn.Module()
        head.layer1 = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden, affine=False,
                                                                             track_running_stats=False), nn.ReLU())
        head.layer2 = nn.Sequential(nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden, affine=False,
                                                                             track_running_stats=False), nn.ReLU())
        head.layer3 = nn.Sequential(nn.Linear(hidden, hidden))
        return head

    backbone = nn.Module()
    backbone.swinViT = SwinTransformer(in_chans=1, embed_dim=fs, window_size=(7, 7, 7), patch_size=(2, 2, 2),
                                       depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24), mlp_ratio=4.0, qkv_bias=True,
                                       drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0,
                                       norm_layer=nn.LayerNorm, spatial_dims=3, use_v2=True)
    backbone.encoder1, backbone.encoder2 = basic(1, fs), basic(fs, fs)
    backbone.encoder3, backbone.encoder4, backbone.encoder10 = basic(2 * fs, 2 * fs), basic(4 * fs, 4 * fs), \
        basic(16 * fs, 16 * fs)
    head = nn.Module()
    head.backbone = backbone
    pooled = fs + fs + 2 * fs + 4 * fs + 16 * fs  # 1152 for B, as upstream's in_dim
    head.student, head.teacher = projection(pooled), projection(pooled)
    return head.eval()


def test_voco_b_ssl_full_size_layout_on_the_meta_device():
    pytest.importorskip("monai")
    from zoo.archs.build import build_model

    from zoo.archs.monai_nets import _ScalarsOnCPU  # MONAI reads drop-path rates with .item()

    with torch.device("meta"), _ScalarsOnCPU():
        theirs = authors_voco_head(48)
        ours = build_model(zoo.get_entry(SSL_NAME))
    backbone = {k[len("backbone."):]: tuple(v.shape) for k, v in theirs.state_dict().items()
                if k.startswith("backbone.")}
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert all(shapes[k] == s for k, s in backbone.items())  # every file tensor has its place, same shape
    rest = {k.split(".")[0] for k in shapes if k not in backbone}
    assert rest == {"decoder5", "decoder4", "decoder3", "decoder2", "decoder1"}  # head-less: `out` is Identity
    assert sum(p.numel() for n, p in theirs.named_parameters() if n.startswith("backbone.")) == 53_164_146  # "53M"
    assert sum(p.numel() for p in ours.parameters()) == 72_761_970  # = VoComni_B's "72M": SwinUNETR-v2, fs 48


def test_voco_b_ssl_authors_file_loads_the_encoder_exactly(tmp_path):
    pytest.importorskip("monai")
    import dataclasses

    from zoo.adapt.fit import fit_state_dict
    from zoo.archs.build import build_model
    from zoo.convert.cache import validate_against

    head = randomised(authors_voco_head(12), seed=3)  # feature_size reduced for speed; full size above
    path = tmp_path / "VoCo_B_SSL_head.pt"
    torch.save(head.state_dict(), path)  # upstream's final_model.pt: the raw state dict of VoCoHead
    entry = dataclasses.replace(zoo.get_entry(SSL_NAME), arch_kwargs={"feature_size": 12, "use_v2": True})
    out = unwrap_checkpoint(path, "voco")
    assert {k.split(".")[0] for k in out.dropped_keys} == {"student", "teacher"}
    with torch.device("meta"):
        reference = build_model(entry)
    sd = validate_against(out.state_dict, reference, entry)  # decoder and head absent: allowed (classifier)
    src = head.state_dict()
    assert all(torch.equal(v, src["backbone." + k]) for k, v in sd.items())
    fitted = fit_state_dict(copy.copy(sd), reference, entry, 1, None, "repeat_scale")
    fresh = {k.split(".")[0] for k in reference.state_dict() if k not in fitted.tensors}
    assert fresh == {"decoder5", "decoder4", "decoder3", "decoder2", "decoder1"}  # `out` is Identity head-less

    k, n = 2, 3
    model = build_model(entry, in_channels=k, num_classes=n).eval()
    fitted = fit_state_dict(copy.copy(sd), model, entry, k, n, "repeat_scale")
    model.load_state_dict(fitted.tensors, strict=False)
    assert model.swinViT.patch_embed.proj.weight.shape[1] == k and model.out.conv.conv.weight.shape[0] == n
    x = torch.rand(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # k identical channels reproduce the authors' 1-channel input layers
        torch.testing.assert_close(model.swinViT.patch_embed(x.repeat(1, k, 1, 1, 1)),
                                   head.backbone.swinViT.patch_embed(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.encoder1(x.repeat(1, k, 1, 1, 1)), head.backbone.encoder1(x),
                                   rtol=1e-5, atol=1e-5)
    got = model.state_dict()
    assert all(torch.equal(got[key], src["backbone." + key]) for key in sd if key not in entry.first_conv)

    gone = dict(head.state_dict())
    del gone["backbone.encoder10.layer.conv1.conv.weight"]
    torch.save({"state_dict": gone}, path)
    with pytest.raises(CheckpointFormatError, match="encoder10.layer.conv1.conv.weight"):
        validate_against(unwrap_checkpoint(path, "voco").state_dict, reference, entry)
    del gone["backbone.swinViT.layers3.0.blocks.0.attn.qkv.weight"]
    torch.save({"state_dict": gone}, path)
    with pytest.raises(CheckpointFormatError, match="layers3.0.blocks.0.attn.qkv.weight"):
        unwrap_checkpoint(path, "voco")
