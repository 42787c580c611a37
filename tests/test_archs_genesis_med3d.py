"""Models Genesis UNet3D and MedicalNet ResNets against the documented upstream layouts.

The expected keys, shapes, tensor and parameter counts below are transcribed from
docs/upstream-checkpoints.md (sections 1.1-1.2 for Genesis, 3.1-3.3 for MedicalNet; worked out there from the
upstream sources MrGiovanni/ModelsGenesis ``pytorch/unet3d.py`` and Tencent/MedicalNet ``models/resnet.py``),
not generated from zoo's own code.

MedicalNet vs MONAI: MONAI 1.6.1's ``monai.networks.nets.ResNet`` has the same state_dict keys (after
``module.`` is stripped; ``bias_downsample=False`` for shortcut B, ``feed_forward=False`` drops ``fc``), so the
weights load strictly both ways. But MONAI's layer3/layer4 use stride 2 without dilation (output stride 32)
while MedicalNet keeps stride 1 with dilation 2/4 (output stride 8). Hence:

* stem, layer1 and layer2 must agree exactly with MONAI as is (same strides, no dilation there);
* layer3/layer4 differ as is (we check the shapes differ), and agree exactly once the MONAI network's
  layer3/layer4 convolutions are switched to stride 1 / dilation 2 and 4 / padding = dilation by editing
  the Conv3d attributes (an independent re-implementation of MedicalNet's forward path).
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from zoo.archs import build_architecture
from zoo.archs.genesis_unet3d import ContBatchNorm3d, UNet3D, build_unet3d
from zoo.archs.med3d_resnet import Med3DResNet, build_med3d_resnet

# ----------------------------------------------------------------------------------------------------------
# Documented facts (docs/upstream-checkpoints.md; "section" below means a section of that page)
# ----------------------------------------------------------------------------------------------------------

#: section 1.2: LUConv prefix -> conv1.weight shape
GENESIS_LUCONVS = {
    "down_tr64.ops.0": (32, 1, 3, 3, 3),
    "down_tr64.ops.1": (64, 32, 3, 3, 3),
    "down_tr128.ops.0": (64, 64, 3, 3, 3),
    "down_tr128.ops.1": (128, 64, 3, 3, 3),
    "down_tr256.ops.0": (128, 128, 3, 3, 3),
    "down_tr256.ops.1": (256, 128, 3, 3, 3),
    "down_tr512.ops.0": (256, 256, 3, 3, 3),
    "down_tr512.ops.1": (512, 256, 3, 3, 3),
    "up_tr256.ops.0": (256, 768, 3, 3, 3),
    "up_tr256.ops.1": (256, 256, 3, 3, 3),
    "up_tr128.ops.0": (128, 384, 3, 3, 3),
    "up_tr128.ops.1": (128, 128, 3, 3, 3),
    "up_tr64.ops.0": (64, 192, 3, 3, 3),
    "up_tr64.ops.1": (64, 64, 3, 3, 3),
}
GENESIS_OTHER = {
    "up_tr256.up_conv.weight": (512, 512, 2, 2, 2),
    "up_tr256.up_conv.bias": (512,),
    "up_tr128.up_conv.weight": (256, 256, 2, 2, 2),
    "up_tr128.up_conv.bias": (256,),
    "up_tr64.up_conv.weight": (128, 128, 2, 2, 2),
    "up_tr64.up_conv.bias": (128,),
    "out_tr.final_conv.weight": (1, 64, 1, 1, 1),
    "out_tr.final_conv.bias": (1,),
}
GENESIS_KEYS = 106
GENESIS_PARAMS = 19_073_665


def genesis_documented_shapes() -> dict[str, tuple[int, ...]]:
    """The 106 documented keys -> shapes (every LUConv: conv1.{weight,bias}, bn1.{5 tensors} of length C_out)."""
    out: dict[str, tuple[int, ...]] = {}
    for prefix, w in GENESIS_LUCONVS.items():
        c = w[0]
        out[f"{prefix}.conv1.weight"] = w
        out[f"{prefix}.conv1.bias"] = (c,)
        for name in ("weight", "bias", "running_mean", "running_var"):
            out[f"{prefix}.bn1.{name}"] = (c,)
        out[f"{prefix}.bn1.num_batches_tracked"] = ()
    out.update(GENESIS_OTHER)
    return out


#: section 3.2: depth -> (block, layers, released shortcut, backbone params in M (2 decimals), tensors incl./excl. nbt)
MED3D = {
    10: ("basic", (1, 1, 1, 1), "B", 14.36, 72, 60),
    18: ("basic", (2, 2, 2, 2), "A", 32.99, 102, 85),
    34: ("basic", (3, 4, 6, 3), "A", 63.30, 198, 165),
    50: ("bottleneck", (3, 4, 6, 3), "B", 46.16, 318, 265),
    101: ("bottleneck", (3, 4, 23, 3), "B", 85.20, 624, 520),
    152: ("bottleneck", (3, 8, 36, 3), "B", 117.36, 930, 775),
    200: ("bottleneck", (3, 24, 36, 3), "B", 126.56, 1218, 1015),
}
#: section 3.3: which stages have ``layerN.0.downsample`` keys with the released shortcut
MED3D_DOWNSAMPLE_STAGES = {10: {2, 3, 4}, 18: set(), 34: set(), 50: {1, 2, 3, 4}, 101: {1, 2, 3, 4},
                           152: {1, 2, 3, 4}, 200: {1, 2, 3, 4}}
PLANES = (64, 128, 256, 512)


def med3d_documented_shapes(depth: int) -> dict[str, tuple[int, ...]]:
    """Backbone keys -> shapes spelled out from the documented block structure (section 3.1/3.3)."""
    kind, layers, _, *_ = MED3D[depth]
    exp = 1 if kind == "basic" else 4
    out: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 1, 7, 7, 7)}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            out[f"{prefix}.{name}"] = (c,)
        out[f"{prefix}.num_batches_tracked"] = ()

    bn("bn1", 64)
    inplanes = 64
    for s, (planes, n) in enumerate(zip(PLANES, layers), start=1):
        for i in range(n):
            p = f"layer{s}.{i}"
            cin = inplanes if i == 0 else planes * exp
            if kind == "basic":
                out[f"{p}.conv1.weight"] = (planes, cin, 3, 3, 3)
                bn(f"{p}.bn1", planes)
                out[f"{p}.conv2.weight"] = (planes, planes, 3, 3, 3)
                bn(f"{p}.bn2", planes)
            else:
                out[f"{p}.conv1.weight"] = (planes, cin, 1, 1, 1)
                bn(f"{p}.bn1", planes)
                out[f"{p}.conv2.weight"] = (planes, planes, 3, 3, 3)
                bn(f"{p}.bn2", planes)
                out[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1, 1)
                bn(f"{p}.bn3", planes * 4)
            if i == 0 and s in MED3D_DOWNSAMPLE_STAGES[depth]:
                out[f"{p}.downsample.0.weight"] = (planes * exp, inplanes, 1, 1, 1)
                bn(f"{p}.downsample.1", planes * exp)
        inplanes = planes * exp
    return out


def shapes_of(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------------
# Models Genesis UNet3D
# ----------------------------------------------------------------------------------------------------------


def test_genesis_keys_shapes_and_parameter_count_match_the_documented_layout():
    with torch.device("meta"):
        model = build_unet3d()
        assert build_architecture("genesis_unet3d", in_channels=1, num_classes=1).__class__ is UNet3D
    got = shapes_of(model)
    documented = genesis_documented_shapes()
    assert len(documented) == GENESIS_KEYS
    assert got == documented
    assert n_params(model) == GENESIS_PARAMS
    # upstream module order: up_conv before ops in every up transition, head last
    keys = list(got)
    assert keys.index("up_tr256.up_conv.weight") < keys.index("up_tr256.ops.0.conv1.weight")
    assert keys[-2:] == ["out_tr.final_conv.weight", "out_tr.final_conv.bias"]


def test_genesis_variants_keep_the_layout():
    with torch.device("meta"):
        upstream = build_unet3d(upstream_bn=True)
        headless = build_unet3d(num_classes=None, upstream_bn=True)  # the SuPreM backbone
        three = build_unet3d(in_channels=2, num_classes=3)
        prelu = build_unet3d(act="prelu")
    assert shapes_of(upstream) == genesis_documented_shapes()
    assert all(isinstance(m, ContBatchNorm3d) for n, m in upstream.named_modules() if n.endswith("bn1"))
    assert set(shapes_of(headless)) == {k for k in genesis_documented_shapes() if not k.startswith("out_tr.")}
    assert len(headless.state_dict()) == GENESIS_KEYS - 2
    assert three.state_dict()["down_tr64.ops.0.conv1.weight"].shape == (32, 2, 3, 3, 3)
    assert three.state_dict()["out_tr.final_conv.weight"].shape == (3, 64, 1, 1, 1)
    extra = set(prelu.state_dict()) - set(genesis_documented_shapes())
    assert len(extra) == 14 and all(k.endswith("activation.weight") for k in extra)


def test_genesis_forward_shapes_and_activation():
    torch.manual_seed(0)
    model = build_unet3d(out_activation=None).eval()
    x = torch.rand(2, 1, 16, 16, 8)  # (N, C, X, Y, Z), each divisible by 8
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        dec = model.forward_decoder(x)
    assert logits.shape == (2, 1, 16, 16, 8)
    assert feats.shape == (2, 512, 2, 2, 1)
    assert dec.shape == (2, 64, 16, 16, 8)
    model.out_activation = "sigmoid"
    with torch.no_grad():
        probs = model(x)
    torch.testing.assert_close(probs, torch.sigmoid(logits))
    headless = build_unet3d(num_classes=None).eval()
    with torch.no_grad():
        assert headless(x).shape == (2, 64, 16, 16, 8)
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.rand(1, 1, 16, 16, 12))


def test_genesis_upstream_bn_makes_eval_outputs_depend_on_the_batch():
    torch.manual_seed(0)
    a, b = torch.rand(1, 1, 16, 16, 16), torch.rand(1, 1, 16, 16, 16) * 3
    upstream = build_unet3d(upstream_bn=True, out_activation=None)
    standard = build_unet3d(upstream_bn=False, out_activation=None)
    standard.load_state_dict(upstream.state_dict(), strict=True)  # same keys
    upstream.eval(), standard.eval()
    before = upstream.down_tr64.ops[0].bn1.running_mean.clone()
    with torch.no_grad():
        up_alone, up_batch = upstream(a), upstream(torch.cat([a, b]))[:1]
        st_alone, st_batch = standard(a), standard(torch.cat([a, b]))[:1]
    # ContBatchNorm3d: batch statistics even in eval -> sample a's output changes with its batch mates
    assert not torch.allclose(up_alone, up_batch, atol=1e-3)
    # ordinary BatchNorm3d in eval: running statistics -> independent of the batch
    torch.testing.assert_close(st_alone, st_batch, rtol=1e-4, atol=1e-5)
    # upstream quirks: running stats still move in eval, num_batches_tracked never counts
    bn = upstream.down_tr64.ops[0].bn1
    assert not torch.equal(bn.running_mean, before)
    assert int(bn.num_batches_tracked) == 0


def test_genesis_initialize_resets_a_module_to_the_default():
    model = build_unet3d(num_classes=2)
    head = model.out_tr.final_conv
    with torch.no_grad():
        head.weight.fill_(7.0)
        model.down_tr64.ops[0].bn1.weight.fill_(3.0)
    model.initialize(head)
    model.initialize(model.down_tr64.ops[0].bn1)
    assert head.weight.abs().max() < 1  # kaiming-uniform bound 1/sqrt(64)
    assert torch.all(model.down_tr64.ops[0].bn1.weight == 1)


def test_genesis_bad_arguments():
    with pytest.raises(ValueError, match="relu"):
        build_unet3d(act="gelu")
    with pytest.raises(ValueError, match="sigmoid"):
        build_unet3d(out_activation="softmax")
    with pytest.raises(ValueError, match="num_classes"):
        build_unet3d(num_classes=0)


# ----------------------------------------------------------------------------------------------------------
# MedicalNet ResNets
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", sorted(MED3D))
def test_med3d_keys_shapes_counts_match_the_documented_layout(depth):
    kind, layers, shortcut, params_m, n_incl, n_excl = MED3D[depth]
    with torch.device("meta"):
        model = build_med3d_resnet(depth=depth)
    assert model.shortcut_type == shortcut
    got = shapes_of(model)
    assert len(got) == n_incl
    assert len([k for k in got if not k.endswith("num_batches_tracked")]) == n_excl
    assert round(n_params(model) / 1e6, 2) == params_m
    assert got == med3d_documented_shapes(depth)
    # blocks per stage, as documented
    for s, n in enumerate(layers, start=1):
        assert max(int(k.split(".")[1]) for k in got if k.startswith(f"layer{s}.")) == n - 1
    assert got["conv1.weight"] == (64, 1, 7, 7, 7)
    assert not any(k.startswith(("fc.", "conv_seg.")) for k in got)


def test_med3d_sample_keys():
    """Some exact key -> shape pairs spelled out by hand (section 3.3)."""
    with torch.device("meta"):
        r10, r18, r50 = (shapes_of(build_med3d_resnet(depth=d)) for d in (10, 18, 50))
    assert r10["layer2.0.downsample.0.weight"] == (128, 64, 1, 1, 1)
    assert r10["layer4.0.downsample.1.running_var"] == (512,)
    assert "layer1.0.downsample.0.weight" not in r10
    assert "layer2.0.downsample.0.bias" not in r10  # bias=False
    assert not any("downsample" in k for k in r18)
    assert r18["layer4.1.conv2.weight"] == (512, 512, 3, 3, 3)
    assert r50["layer1.0.downsample.0.weight"] == (256, 64, 1, 1, 1)
    assert r50["layer3.5.conv3.weight"] == (1024, 256, 1, 1, 1)
    assert r50["layer4.0.conv1.weight"] == (512, 1024, 1, 1, 1)
    assert r50["layer4.2.bn3.weight"] == (2048,)


def test_med3d_shortcut_override_changes_the_keys():
    with torch.device("meta"):
        r18b = shapes_of(build_med3d_resnet(depth=18, shortcut_type="B"))
        r10a = shapes_of(build_med3d_resnet(depth=10, shortcut_type="A"))
    assert r18b["layer2.0.downsample.0.weight"] == (128, 64, 1, 1, 1)
    assert not any("downsample" in k for k in r10a)


def _monai_resnet(depth: int):
    monai_resnet = pytest.importorskip("monai.networks.nets.resnet")
    kind, layers, shortcut, *_ = MED3D[depth]
    return monai_resnet.ResNet(
        block=kind, layers=list(layers), block_inplanes=[64, 128, 256, 512], spatial_dims=3, n_input_channels=1,
        conv1_t_size=7, conv1_t_stride=2, shortcut_type=shortcut, feed_forward=False, bias_downsample=False,
    )


def _monai_to_medicalnet_dilation(net) -> None:
    """Make MONAI's layer3/4 MedicalNet's: stride 1, dilation 2/4, padding = dilation (1x1x1 convs: stride only)."""
    for layer, d in ((net.layer3, 2), (net.layer4, 4)):
        for block in layer:
            for m in block.modules():
                if isinstance(m, nn.Conv3d):
                    m.stride = (1, 1, 1)
                    if m.kernel_size == (3, 3, 3):
                        m.dilation, m.padding = (d, d, d), (d, d, d)
            if isinstance(block.downsample, functools.partial):  # shortcut A
                block.downsample = functools.partial(block.downsample.func, *block.downsample.args,
                                                     **{**block.downsample.keywords, "stride": 1})


def _monai_maps(net, x):
    y = net.maxpool(net.act(net.bn1(net.conv1(x))))
    out = []
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        y = layer(y)
        out.append(y)
    return out


@pytest.mark.parametrize("depth", [10, 18, 50])
def test_med3d_weights_load_strictly_into_monai_and_match_its_outputs(depth):
    torch.manual_seed(depth)
    ours = build_med3d_resnet(depth=depth)
    with torch.no_grad():  # non-trivial BN statistics so that eval mode really uses them
        for m in ours.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    ours.eval()
    net = _monai_resnet(depth).eval()
    assert list(net.state_dict()) == list(ours.state_dict())  # same names, same order
    net.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        stem, l1, l2, l3, l4 = _ours_maps(ours, x)
        m1, m2, m3, m4 = _monai_maps(net, x)
        torch.testing.assert_close(l1, m1)
        torch.testing.assert_close(l2, m2)
        assert l4.shape[2:] == (4, 4, 4) and m4.shape[2:] == (1, 1, 1)  # output stride 8 vs 32
        _monai_to_medicalnet_dilation(net)
        m1, m2, m3, m4 = _monai_maps(net, x)
        torch.testing.assert_close(l3, m3, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(l4, m4, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours(x), l4)
        torch.testing.assert_close(ours.forward_features(x), l4)


def _ours_maps(model: Med3DResNet, x):
    """(stem, layer1, ..., layer4) of ``model`` via a features_only twin holding the same weights."""
    twin = build_med3d_resnet(depth=model.depth, features_only=True)
    twin.load_state_dict(model.state_dict(), strict=True)
    return twin.eval()(x)


@pytest.mark.parametrize("depth,exp", [(10, 1), (50, 4)])
def test_med3d_features_only_shapes_and_strides(depth, exp):
    model = build_med3d_resnet(depth=depth, features_only=True).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        feats = model(x)
    assert [tuple(f.shape) for f in feats] == [
        (1, 64, 16, 16, 16), (1, 64 * exp, 8, 8, 8), (1, 128 * exp, 4, 4, 4), (1, 256 * exp, 4, 4, 4), (1, 512 * exp, 4, 4, 4)
    ]
    assert model.feature_channels == tuple(f.shape[1] for f in feats)
    assert model.feature_strides == (2, 4, 8, 8, 8)
    sub = build_med3d_resnet(depth=depth, features_only=True, out_indices=(1, 3)).eval()
    sub.load_state_dict(model.state_dict(), strict=True)  # all backbone modules are still there
    with torch.no_grad():
        a, b = sub(x)
    torch.testing.assert_close(a, feats[1])
    torch.testing.assert_close(b, feats[3])
    with pytest.raises(ValueError, match="out_indices"):
        build_med3d_resnet(depth=depth, features_only=True, out_indices=(5,))


def test_med3d_classification_head():
    model = build_med3d_resnet(depth=10, num_classes=3).eval()
    assert model.head == "classification"
    sd = shapes_of(model)
    assert sd["fc.weight"] == (3, 512) and sd["fc.bias"] == (3,)
    assert set(sd) - {"fc.weight", "fc.bias"} == set(med3d_documented_shapes(10))
    with torch.no_grad():
        assert model(torch.randn(2, 1, 16, 32, 32)).shape == (2, 3)
    with torch.device("meta"):
        assert shapes_of(build_med3d_resnet(depth=50, num_classes=5))["fc.weight"] == (5, 2048)


def test_med3d_segmentation_head_follows_conv_seg():
    with torch.device("meta"):
        r50 = build_med3d_resnet(depth=50, num_classes=4, head="segmentation")
    seg = {k: v for k, v in shapes_of(r50).items() if k.startswith("conv_seg.")}
    assert seg == {
        "conv_seg.0.weight": (2048, 32, 2, 2, 2), "conv_seg.0.bias": (32,),
        "conv_seg.1.weight": (32,), "conv_seg.1.bias": (32,), "conv_seg.1.running_mean": (32,),
        "conv_seg.1.running_var": (32,), "conv_seg.1.num_batches_tracked": (),
        "conv_seg.3.weight": (32, 32, 3, 3, 3),
        "conv_seg.4.weight": (32,), "conv_seg.4.bias": (32,), "conv_seg.4.running_mean": (32,),
        "conv_seg.4.running_var": (32,), "conv_seg.4.num_batches_tracked": (),
        "conv_seg.6.weight": (4, 32, 1, 1, 1),
    }
    model = build_med3d_resnet(depth=10, num_classes=2, head="segmentation").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32, 32)).shape == (1, 2, 8, 8, 8)  # 1/4 of the input, as upstream


def test_med3d_in_channels_and_initialize():
    model = build_med3d_resnet(depth=18, in_channels=4)
    assert model.conv1.weight.shape == (64, 4, 7, 7, 7)
    # kaiming normal, fan_out, relu gain: std = sqrt(2 / (64 * 343))
    assert abs(model.conv1.weight.std().item() - (2 / (64 * 343)) ** 0.5) < 0.1 * (2 / (64 * 343)) ** 0.5
    bn = model.layer1[0].bn1
    with torch.no_grad():
        bn.weight.fill_(5.0)
        bn.bias.fill_(2.0)
    model.initialize(bn)
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_med3d_bad_arguments_name_the_choices():
    with pytest.raises(ValueError, match=r"\[10, 18, 34, 50, 101, 152, 200\]"):
        build_med3d_resnet(depth=20)
    with pytest.raises(ValueError, match="'A' or 'B'"):
        build_med3d_resnet(depth=18, shortcut_type="C")
    with pytest.raises(ValueError, match="segmentation"):
        build_med3d_resnet(depth=18, num_classes=2, head="detection")
    with pytest.raises(ValueError, match="num_classes"):
        build_med3d_resnet(depth=18, head="segmentation")
    with pytest.raises(ValueError, match="features_only"):
        build_med3d_resnet(depth=18, num_classes=2, features_only=True)
