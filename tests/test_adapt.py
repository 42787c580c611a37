"""The transfer engine, its report and the plans reader, without nnunetv2.

Property tests (hypothesis) prove the exactness claims on small random networks: inflated input channels,
collapsed / inflated kernels, transposed-convolution strides, axis permutation, equal plans (100 % copy,
identical outputs), deeper / shallower targets (identical shared encoder stages); and that every checkpoint
tensor is either used or listed with a reason. Fuzzed plans fail with PlanError or build.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from zoo.adapt.engine import adapt_model, adapt_state_dict
from zoo.adapt.kernels import adapt_kernel, adapt_transposed_kernel, collapse_axis, inflate_axis, map_axes
from zoo.adapt.materialise import load_into
from zoo.adapt.report import TransferReport
from zoo.archs import build_architecture
from zoo.errors import AdaptationError, ZooError
from zoo.nnunet.plans import (
    PlanError,
    arch_for_configuration,
    build_from_plan,
    load_dataset_json,
    output_channels,
    plan_axis_order,
)

@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny convolutions: one thread is fastest, and oversubscribed OpenMP threads (more threads than the CPUs
    this process may use) make them ~100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPS = {
    "conv_op": "torch.nn.modules.conv.Conv3d",
    "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None,
    "dropout_op_kwargs": None,
    "nonlin": "torch.nn.LeakyReLU",
    "nonlin_kwargs": {"inplace": True},
}


def plain_kwargs(features, kernels, strides, n_conv=2, n_dec=2) -> dict:
    n = len(features)
    return {"n_stages": n, "features_per_stage": list(features), "kernel_sizes": [list(k) for k in kernels],
            "strides": [list(s) for s in strides], "n_conv_per_stage": [n_conv] * n if isinstance(n_conv, int)
            else list(n_conv), "n_conv_per_stage_decoder": [n_dec] * (n - 1), **OPS}


def build(kwargs, in_channels=1, num_classes=2, arch="plain_conv_unet", randomise=True, seed=0):
    torch.manual_seed(seed)
    net = build_architecture(arch, in_channels=in_channels, num_classes=num_classes, **copy.deepcopy(kwargs))
    if randomise:  # every tensor random, so that a wrong copy shows
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.dim() == 1 else 0.0) * 0.5)
    return net.eval()


def meta(kwargs, in_channels=1, num_classes=2, arch="plain_conv_unet"):
    with torch.device("meta"):
        return build_architecture(arch, in_channels=in_channels, num_classes=num_classes, **copy.deepcopy(kwargs))


def input_for(kwargs, channels=1, batch=1, factor=2, seed=1):
    total = [1, 1, 1]
    for s in kwargs["strides"]:
        total = [t * v for t, v in zip(total, s)]
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, *[t * factor for t in total], generator=g)


@st.composite
def small_plan(draw, min_stages=2, max_stages=4):
    n = draw(st.integers(min_stages, max_stages))
    features = [draw(st.integers(2, 5)) for _ in range(n)]
    kernels = [[draw(st.sampled_from([1, 3])) for _ in range(3)] for _ in range(n)]
    strides = [[1, 1, 1]] + [[draw(st.sampled_from([1, 2])) for _ in range(3)] for _ in range(n - 1)]
    n_conv = [draw(st.integers(1, 2)) for _ in range(n)]
    return plain_kwargs(features, kernels, strides, n_conv, draw(st.integers(1, 2)))


# ------------------------------------------------------------------------------------------ exactness


@SETTINGS
@given(plan=small_plan(), k=st.integers(1, 5), mode=st.sampled_from(["repeat_scale", "mean"]))
def test_inflated_input_channels_on_k_copies_equal_the_original(plan, k, mode):
    source = build(plan, in_channels=1)
    target = meta(plan, in_channels=k)
    report = adapt_model(source.state_dict(), target, channel_mode=mode, heads=True)
    target.eval()
    x = input_for(plan)
    with torch.no_grad():
        torch.testing.assert_close(target(x.repeat(1, k, 1, 1, 1)), source(x), rtol=1e-4, atol=1e-4)
    first = report.rows[0]
    assert first.target_key == "encoder.stages.0.0.convs.0.conv.weight"
    assert first.action == ("copy" if k == 1 else "channels")
    assert report.share_initialised == 1.0


@SETTINGS
@given(plan=small_plan(max_stages=3), s=st.integers(2, 4))
def test_reduced_input_channels_sum_to_one(plan, s):
    source = build(plan, in_channels=s)
    target = meta(plan, in_channels=1)
    adapt_model(source.state_dict(), target, heads=True)
    target.eval()
    x = input_for(plan)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x.repeat(1, s, 1, 1, 1)), rtol=1e-4, atol=1e-4)


@SETTINGS
@given(axis=st.integers(0, 2), mode=st.sampled_from(["sum", "mean"]), cin=st.integers(1, 3), cout=st.integers(1, 3),
       seed=st.integers(0, 10_000))
def test_collapsed_kernel_on_input_constant_along_the_axis_equals_the_original(axis, mode, cin, cout, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(cout, cin, 3, 3, 3, generator=g, dtype=torch.float64)
    size = [5, 6, 7]
    x = torch.randn(1, cin, *size, generator=g, dtype=torch.float64)
    x = x.narrow(2 + axis, 0, 1).expand_as(x).contiguous()  # constant along `axis`
    w1, ops = adapt_kernel(w, [1 if a == axis else 3 for a in range(3)], collapse=mode)
    assert w1.shape[2 + axis] == 1 and len(ops) == 1
    pad = [1, 1, 1]
    pad[axis] = 0
    original = F.conv3d(x, w, padding=pad)  # valid along `axis`: no zero-padded border there
    collapsed = F.conv3d(x, w1, padding=[0 if a == axis else 1 for a in range(3)]).narrow(2 + axis, 1, size[axis] - 2)
    scale = 3.0 if mode == "mean" else 1.0
    torch.testing.assert_close(collapsed * scale, original)


@SETTINGS
@given(cin=st.integers(1, 3), cout=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_centre_inflation_2d_to_3d_is_exact_slice_by_slice(cin, cout, seed):
    g = torch.Generator().manual_seed(seed)
    w2 = torch.randn(cout, cin, 3, 3, generator=g, dtype=torch.float64)
    w3, ops = map_axes(w2, "yx", "zyx")
    assert w3.shape == (cout, cin, 1, 3, 3) and ops == ["add axis z", "permute yxz->zyx"]
    w3, _ = adapt_kernel(w3, [3, 3, 3], inflate="center")
    x = torch.randn(1, cin, 4, 5, 6, generator=g, dtype=torch.float64)
    out3 = F.conv3d(x, w3, padding=1)
    slices = torch.stack([F.conv2d(x[:, :, z], w2, padding=1) for z in range(4)], dim=2)
    torch.testing.assert_close(out3, slices)
    # i3d inflation: exact for inputs constant along the new axis (away from the border)
    wi = inflate_axis(w3.narrow(2, 1, 1), 0, 3, "i3d")
    xc = x[:, :, :1].expand_as(x).contiguous()
    torch.testing.assert_close(F.conv3d(xc, wi, padding=1)[:, :, 1:-1],
                               F.conv3d(xc, w3.narrow(2, 1, 1), padding=[0, 1, 1])[:, :, 1:-1])


@SETTINGS
@given(src=st.lists(st.sampled_from([1, 2, 4]), min_size=3, max_size=3),
       dst=st.lists(st.sampled_from([1, 2, 4]), min_size=3, max_size=3), seed=st.integers(0, 10_000))
def test_transposed_kernel_for_other_strides_upsamples_or_pools_the_original_output(src, dst, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 2, *src, generator=g, dtype=torch.float64)
    b = torch.randn(2, generator=g, dtype=torch.float64)
    x = torch.randn(1, 3, 2, 3, 2, generator=g, dtype=torch.float64)
    w2, _ = adapt_transposed_kernel(w, dst)
    ref = F.conv_transpose3d(x, w, b, stride=src)
    out = F.conv_transpose3d(x, w2, b, stride=dst)
    for axis, (s, d) in enumerate(zip(src, dst)):  # bring the reference to the target's stride, axis by axis
        dim = 2 + axis
        if d > s:
            ref = ref.repeat_interleave(d // s, dim=dim)
        elif d < s:
            shape = list(ref.shape)
            shape[dim:dim + 1] = [shape[dim] // (s // d), s // d]
            ref = ref.reshape(shape).mean(dim + 1)
    torch.testing.assert_close(out, ref)


@SETTINGS
@given(plan=small_plan(), heads=st.booleans())
def test_equal_plans_copy_everything_and_give_identical_outputs(plan, heads):
    source = build(plan, in_channels=2, num_classes=3)
    target = meta(plan, in_channels=2, num_classes=3)
    tensors, report = adapt_state_dict(source.state_dict(), target, heads=heads)
    body = [r for r in report.rows if not r.head]
    assert all(r.action == "copy" and r.source_key == r.target_key for r in body)
    assert report.share_initialised_body == 1.0
    # unchanged tensors are the checkpoint's own (no copy)
    sd = source.state_dict()
    assert all(tensors[k].data_ptr() == sd[k].data_ptr() for k in tensors)
    if heads:
        assert report.share_initialised == 1.0 and report.share_used == 1.0 and not report.unused
        load_into(target, tensors)
        target.eval()
        x = input_for(plan, channels=2)
        with torch.no_grad():
            assert torch.equal(target(x), source(x))
    else:
        assert all(u.head for u in report.unused) and report.unused


@SETTINGS
@given(plan=small_plan(min_stages=3, max_stages=4), delta=st.sampled_from([-2, -1, 1, 2]), data=st.data())
def test_deeper_or_shallower_target_keeps_the_shared_encoder_stages(plan, delta, data):
    n = plan["n_stages"]
    m = n + delta
    assume(m >= 2)
    target_plan = copy.deepcopy(plan)
    if m < n:
        for key in ("features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage"):
            target_plan[key] = target_plan[key][:m]
    else:
        for _ in range(m - n):
            target_plan["features_per_stage"].append(data.draw(st.integers(2, 5)))
            target_plan["kernel_sizes"].append([3, 3, 3])
            target_plan["strides"].append([2, 2, 2])
            target_plan["n_conv_per_stage"].append(2)
    target_plan["n_stages"] = m
    target_plan["n_conv_per_stage_decoder"] = [2] * (m - 1)
    source = build(plan)
    target = meta(target_plan)
    report = adapt_model(source.state_dict(), target, seed=0)
    target.eval()
    x = input_for(target_plan if m > n else plan)
    with torch.no_grad():
        skips_s, skips_t = source.encoder(x), target.encoder(x)
    for s in range(min(n, m)):
        assert torch.equal(skips_s[s], skips_t[s]), f"encoder stage {s} differs"
    # stages the checkpoint lacks start fresh; stages the target lacks are listed as unused with the reason
    if m > n:
        assert all(r.action == "new" for r in report.rows if r.target_key.startswith(f"encoder.stages.{n}."))
        assert "resolutions" in next(r for r in report.rows if r.target_key == "decoder.transpconvs.0.weight").detail
    else:
        lost = [u for u in report.unused if u.source_key.startswith(f"encoder.stages.{m}.")]
        assert lost and all("target's encoder has" in u.reason for u in lost)
        with pytest.raises(AdaptationError, match="unused"):
            report.check(strict=True)
    # decoder aligned by resolution from the output side: the full-resolution stage is always the checkpoint's
    full_t, full_s = f"decoder.stages.{m - 2}.convs.0.conv.weight", f"decoder.stages.{n - 2}.convs.0.conv.weight"
    row = next(r for r in report.rows if r.target_key == full_t)
    assert row.source_key == full_s and row.initialised


@SETTINGS
@given(plan=small_plan(max_stages=3))
def test_axis_permutation_gives_the_permuted_output(plan):
    # plan is in the checkpoint's xyz order; the target plan is the same network written in zyx
    target_plan = copy.deepcopy(plan)
    target_plan["kernel_sizes"] = [k[::-1] for k in plan["kernel_sizes"]]
    target_plan["strides"] = [s[::-1] for s in plan["strides"]]
    source = build(plan)
    target = meta(target_plan)
    report = adapt_model(source.state_dict(), target, source_axis_order="xyz", target_axis_order="zyx", heads=True)
    target.eval()
    x = input_for(plan)
    with torch.no_grad():
        out = target(x.permute(0, 1, 4, 3, 2))
        torch.testing.assert_close(out, source(x).permute(0, 1, 4, 3, 2), rtol=1e-4, atol=1e-4)
    assert report.share_initialised == 1.0
    assert {a for r in report.rows for a in r.action.split("+")} <= {"copy", "permute"}


@SETTINGS
@given(src=small_plan(), dst=small_plan(), ch=st.integers(1, 3), widths=st.sampled_from(["skip", "slice"]))
def test_nothing_is_silently_dropped(src, dst, ch, widths):
    source = build(src)
    target = build(dst, in_channels=ch, randomise=False) if widths == "slice" else meta(dst, in_channels=ch)
    _, report = adapt_state_dict(source.state_dict(), target, widths=widths)
    source_keys = {k for k in source.state_dict() if ".all_modules." not in k and not k.startswith("decoder.encoder.")}
    used = {r.source_key for r in report.rows if r.initialised}
    unused = {u.source_key for u in report.unused}
    assert used | unused == source_keys and not used & unused
    assert all(u.reason for u in report.unused)
    assert all(r.detail for r in report.rows if r.action in ("skip", "new"))
    assert report.target_params == sum(p.numel() for p in target.parameters())
    assert report.source_params == sum(p.numel() for p in source.parameters())
    assert 0.0 <= report.share_initialised <= 1.0 and 0.0 <= report.share_used <= 1.0


# ------------------------------------------------------------------------------------------ engine details

LUNGISH = plain_kwargs([4, 8, 16, 16], [[3, 3, 3]] * 4, [[1, 1, 1], [2, 2, 2], [2, 2, 2], [1, 2, 2]])


def test_width_mismatch_is_skipped_with_reason_or_sliced_on_request():
    wider = copy.deepcopy(LUNGISH)
    wider["features_per_stage"] = [4, 8, 24, 24]
    source = build(LUNGISH)
    _, report = adapt_state_dict(source.state_dict(), meta(wider))
    row = next(r for r in report.rows if r.target_key == "encoder.stages.2.0.convs.0.conv.weight")
    assert row.action == "skip" and "width mismatch" in row.detail
    assert next(r for r in report.rows if r.target_key == "encoder.stages.1.0.convs.1.conv.weight").action == "copy"
    target = build(wider, randomise=False)
    tensors, report = adapt_state_dict(source.state_dict(), target, widths="slice")
    w = tensors["encoder.stages.2.0.convs.0.conv.weight"]
    assert torch.equal(w[:16], source.state_dict()["encoder.stages.2.0.convs.0.conv.weight"])
    # the decoder's first conv takes [upsampled, skip]: both halves are sliced separately
    dec = tensors["decoder.stages.1.convs.0.conv.weight"]  # resolution 1: 2 x 8 inputs in both, out 8
    assert torch.equal(dec, source.state_dict()["decoder.stages.1.convs.0.conv.weight"])
    dec0 = tensors["decoder.stages.0.convs.0.conv.weight"]  # out 24 (was 16), in 2 x 24 (was 2 x 16)
    src0 = source.state_dict()["decoder.stages.0.convs.0.conv.weight"]
    assert torch.equal(dec0[:16, :16], src0[:, :16]) and torch.equal(dec0[:16, 24:40], src0[:, 16:32])
    with pytest.raises(AdaptationError, match="real"):
        adapt_state_dict(source.state_dict(), meta(wider), widths="slice")


def test_plain_checkpoint_into_residual_encoder_by_position():
    res = {k: v for k, v in LUNGISH.items() if k != "n_conv_per_stage"}
    res["n_blocks_per_stage"] = [1, 2, 2, 2]
    res["n_conv_per_stage_decoder"] = [1, 1, 1]
    source = build(LUNGISH)
    target = meta(res, arch="residual_encoder_unet")
    report = adapt_model(source.state_dict(), target, seed=0)
    sd, src = target.state_dict(), source.state_dict()
    assert torch.equal(sd["encoder.stem.convs.0.conv.weight"], src["encoder.stages.0.0.convs.0.conv.weight"])
    assert torch.equal(sd["encoder.stages.0.blocks.0.conv1.conv.weight"], src["encoder.stages.0.0.convs.1.conv.weight"])
    assert torch.equal(sd["encoder.stages.2.blocks.0.conv2.norm.weight"], src["encoder.stages.2.0.convs.1.norm.weight"])
    assert torch.equal(sd["decoder.stages.0.convs.0.conv.weight"], src["decoder.stages.0.convs.0.conv.weight"])
    row = next(r for r in report.rows if r.target_key == "encoder.stem.convs.0.conv.weight")
    assert row.action == "realign"
    # blocks the checkpoint lacks start as identity (ResEnc init), shortcuts are new
    assert torch.count_nonzero(sd["encoder.stages.1.blocks.1.conv2.norm.weight"]) == 0
    assert next(r for r in report.rows if ".skip." in r.target_key).action == "new"
    assert not any(p.is_meta for p in target.parameters())
    _, off = adapt_state_dict(source.state_dict(), meta(res, arch="residual_encoder_unet"), cross_architecture=False)
    assert next(r for r in off.rows if r.target_key == "encoder.stem.convs.0.conv.weight").action == "skip"


def test_nnunet_style_source_with_aliases_and_wrappers_is_canonicalised():
    source = build(LUNGISH)
    full = {f"module.{k}": v for k, v in source.state_dict().items()}  # aliases included, DDP prefix
    _, report = adapt_state_dict({"network_weights": full}, meta(LUNGISH), heads=True)
    assert report.share_initialised == 1.0 and not report.unused
    assert report.source_params == sum(p.numel() for p in source.parameters())


def test_2d_target_from_3d_checkpoint_sums_out_the_missing_axis():
    plan2d = {**plain_kwargs([4, 8], [[3, 3]] * 2, [[1, 1], [2, 2]]), "conv_op": "torch.nn.modules.conv.Conv2d",
              "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d"}
    source = build(plain_kwargs([4, 8], [[3, 3, 3]] * 2, [[1, 1, 1], [2, 2, 2]]))
    tensors, report = adapt_state_dict(source.state_dict(), meta(plan2d), source_axis_order="zyx",
                                       target_axis_order="yx")
    w = tensors["encoder.stages.0.0.convs.0.conv.weight"]
    assert torch.allclose(w, source.state_dict()["encoder.stages.0.0.convs.0.conv.weight"].sum(2))
    assert report.share_initialised_body == 1.0
    _, plain = adapt_state_dict(source.state_dict(), meta(plan2d))
    assert "dimensionality" in next(r for r in plain.rows if r.target_key.endswith("convs.0.conv.weight")).detail


def test_report_table_json_and_gates(tmp_path):
    source = build(LUNGISH)
    shallow = copy.deepcopy(LUNGISH)
    for key in ("features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage"):
        shallow[key] = shallow[key][:3]
    shallow.update(n_stages=3, n_conv_per_stage_decoder=[2, 2])
    _, report = adapt_state_dict(source.state_dict(), meta(shallow, in_channels=3), source_name="ckpt",
                                 target_name="plan")
    text = str(report)
    assert "encoder.stages.0.0.convs.0.conv.weight" in text and "channels" in text
    assert "Checkpoint tensors not used" in text and "the target's encoder has 3 stages" in text
    data = json.loads(report.to_json(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text()) == data
    assert data["totals"]["share_initialised"] == pytest.approx(report.share_initialised)
    assert len(data["rows"]) == len(report.rows) and data["rows"][0]["initialised"] is True
    assert report.counts()["channels"] == 1
    with pytest.raises(AdaptationError, match="outside the segmentation heads"):
        report.check(strict=True)
    with pytest.raises(AdaptationError, match="below the required"):
        report.check(strict=False, min_share=0.9999)
    with pytest.raises(AdaptationError, match="between 0 and 1"):
        report.check(strict=False, min_share=2)
    report.check(strict=False, min_share=0.5)
    with pytest.raises(AdaptationError, match="unused"):
        adapt_state_dict(source.state_dict(), meta(shallow), strict=True)
    for bad in ({"channel_mode": "nope"}, {"kernel_collapse": "max"}, {"kernel_inflate": "x"}, {"widths": "y"},
                {"source_axis_order": "xx"}):
        with pytest.raises(AdaptationError):
            adapt_state_dict(source.state_dict(), meta(LUNGISH), **bad)
    assert isinstance(report, TransferReport)


def test_primitives_refuse_impossible_requests():
    with pytest.raises(AdaptationError):
        adapt_transposed_kernel(torch.zeros(1, 1, 2, 2, 2), [3, 2, 2])
    with pytest.raises(AdaptationError):
        inflate_axis(torch.zeros(1, 1, 3, 3, 3), 0, 3)
    with pytest.raises(AdaptationError):
        collapse_axis(torch.zeros(1, 1, 3, 3, 3), 0, "median")
    w, ops = adapt_kernel(torch.ones(1, 1, 5, 3, 3), [3, 3, 5])
    assert w.shape == (1, 1, 3, 3, 5) and len(ops) == 2


# ------------------------------------------------------------------------------------------ plans

BASE_CONF = {
    "data_identifier": "nnUNetPlans_3d_fullres",
    "preprocessor_name": "DefaultPreprocessor",
    "batch_size": 2,
    "patch_size": [16, 32, 32],
    "median_image_size_in_voxels": [40, 80, 80],
    "spacing": [3.0, 1.0, 1.0],
    "normalization_schemes": ["ZScoreNormalization", "ZScoreNormalization"],
    "use_mask_for_norm": [False, False],
    "architecture": {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": plain_kwargs([4, 8, 16], [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
                                    [[1, 1, 1], [1, 2, 2], [2, 2, 2]]),
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    },
    "batch_dice": True,
}
BASE_PLANS = {
    "dataset_name": "Dataset042_Test",
    "plans_name": "nnUNetPlans",
    "transpose_forward": [0, 1, 2],
    "transpose_backward": [0, 1, 2],
    "configurations": {
        "3d_lowres": {**copy.deepcopy(BASE_CONF), "next_stage": "3d_cascade_fullres", "batch_dice": False},
        "3d_fullres": copy.deepcopy(BASE_CONF),
        "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
    },
    "experiment_planner_used": "ExperimentPlanner",
    "label_manager": "LabelManager",
}
BASE_DS = {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "PZ": 1, "TZ": 2},
           "numTraining": 32, "file_ending": ".nii.gz"}


def legacy_conf() -> dict:
    conf = {k: v for k, v in BASE_CONF.items() if k != "architecture"}
    conf.update(UNet_class_name="PlainConvUNet", UNet_base_num_features=4, unet_max_num_features=16,
                n_conv_per_stage_encoder=[2, 2, 2], n_conv_per_stage_decoder=[2, 2],
                pool_op_kernel_sizes=[[1, 1, 1], [1, 2, 2], [2, 2, 2]],
                conv_kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3]], num_pool_per_axis=[1, 2, 2])
    return conf


def test_plans_formats_inheritance_and_channels(tmp_path):
    spec = arch_for_configuration(BASE_PLANS, "3d_fullres", BASE_DS)
    assert spec.arch == "plain_conv_unet" and spec.in_channels == 2 and spec.num_classes == 3
    cascade = arch_for_configuration(BASE_PLANS, "3d_cascade_fullres", BASE_DS)
    assert cascade.in_channels == 2 + 2 and cascade.arch_kwargs == spec.arch_kwargs  # + foreground labels
    legacy = copy.deepcopy(BASE_PLANS)
    legacy["configurations"]["3d_fullres"] = legacy_conf()
    (tmp_path / "plans.json").write_text(json.dumps(legacy))
    (tmp_path / "dataset.json").write_text(json.dumps(BASE_DS))
    old = arch_for_configuration(tmp_path / "plans.json", "3d_fullres", tmp_path / "dataset.json")
    assert old == spec
    regions = {"channel_names": {"0": "FLAIR", "1": "T1w"},
               "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3,
                          "ignore": 4}, "regions_class_order": [1, 2, 3]}
    assert output_channels(load_dataset_json(regions)) == 3
    ignore = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "ignore": 2}}
    assert output_channels(load_dataset_json(ignore)) == 2
    assert arch_for_configuration(BASE_PLANS, in_channels=5, num_classes=7)[2:] == (5, 7)
    assert arch_for_configuration(BASE_PLANS, num_classes=2).in_channels == 2  # from normalization_schemes
    assert plan_axis_order({"transpose_forward": [2, 0, 1]}) == "xzy"
    assert plan_axis_order(BASE_PLANS, 2) == "yx"
    net = build_from_plan(spec, device="meta")
    assert net.encoder.stages[0][0].convs[0].conv.weight.shape == (4, 2, 1, 3, 3)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: p["configurations"].pop("3d_fullres") and p["configurations"].pop("3d_cascade_fullres"),
         "unknown configuration '3d_fullres'"),
        (lambda p: p["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].pop("strides"),
         "configuration '3d_fullres': architecture.arch_kwargs.strides is missing"),
        (lambda p: p["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].update(kernel_sizes=[[3, 3]] * 3),
         r"configuration '3d_fullres': architecture.arch_kwargs.kernel_sizes\[0\]"),
        (lambda p: p["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].update(n_stages=4),
         "features_per_stage must have 4 entries"),
        (lambda p: p["configurations"]["3d_fullres"].update(patch_size=[16, 30, 32]),
         "configuration '3d_fullres': patch_size .* not divisible"),
        (lambda p: p["configurations"]["3d_fullres"]["architecture"].update(network_class_name="x.Primus"),
         "PlainConvUNet and ResidualEncoderUNet"),
        (lambda p: p["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].update(nonlin="torch.nn.Nope"),
         "arch_kwargs.nonlin = 'torch.nn.Nope'"),
        (lambda p: p["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].update(foo=1),
         "arch_kwargs.foo is not an argument"),
        (lambda p: p["configurations"]["3d_fullres"].update(inherits_from="3d_cascade_fullres"),
         "circular inheritance"),
        (lambda p: p["configurations"].update({"3d_fullres": {**legacy_conf(), "UNet_base_num_features": "32"}}),
         "configuration '3d_fullres': UNet_base_num_features must be a positive integer"),
        (lambda p: p["configurations"]["3d_fullres"].pop("architecture"),
         "configuration '3d_fullres': UNet_class_name is missing"),
        (lambda p: p.update(configurations=[]), "'configurations' must be a non-empty object"),
        (lambda p: p.update(transpose_forward=[0, 0, 1]), "transpose_forward"),
    ],
)
def test_malformed_plans_name_the_key_and_configuration(mutate, message):
    plans = copy.deepcopy(BASE_PLANS)
    mutate(plans)
    with pytest.raises(PlanError, match=message):
        arch_for_configuration(plans, "3d_fullres", BASE_DS)


@pytest.mark.parametrize(
    "ds, message",
    [
        ({"channel_names": {"0": "T2"}, "labels": {"background": 0, "a": 1}}, "1 image channel.*lists 2"),
        ({"labels": {"background": 0}}, "'channel_names'"),
        ({"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"a": 1}}, "background"),
        ({"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "a": "1"}}, r"labels\['a'\]"),
        ({"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "a": [1, 2]}}, "regions_class_order"),
    ],
)
def test_mismatched_or_malformed_dataset_json(ds, message):
    with pytest.raises(PlanError, match=message):
        arch_for_configuration(BASE_PLANS, "3d_fullres", ds)


def test_missing_files_are_plan_errors(tmp_path):
    with pytest.raises(PlanError, match="does not exist"):
        arch_for_configuration(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PlanError, match="not valid JSON"):
        arch_for_configuration(tmp_path / "bad.json")


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 400) | st.floats(-10, 10, allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_plans_fail_with_plan_error_or_build(data):
    plans = copy.deepcopy(BASE_PLANS)
    ds = copy.deepcopy(BASE_DS)
    for _ in range(data.draw(st.integers(1, 3))):
        doc = data.draw(st.sampled_from([plans, plans, plans, ds]))
        path = data.draw(st.sampled_from([p for p in _paths(doc) if p]))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(JSON)
    conf = data.draw(st.sampled_from(["3d_fullres", "3d_cascade_fullres", "3d_lowres", "2d"]))
    try:
        spec = arch_for_configuration(plans, conf, ds)
        net = build_from_plan(spec, device="meta")
    except PlanError as err:
        assert str(err)
        return
    assert sum(p.numel() for p in net.parameters()) > 0


# ------------------------------------------------------------------------------------------ CLI


def _cli(argv) -> int:
    """``zoo.cli.main`` once the lead wires cli_adapt in; until then an equivalent parser."""
    from zoo import cli
    from zoo.cli.adapt import add_subcommands

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "adapt" in sub.choices:
        return cli.main(argv)
    add_subcommands(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ZooError as err:
        print(f"zoo {args.command}: error: {err}", file=sys.stderr)
        return 2


@pytest.fixture
def small_model_dir(tmp_path):
    """A medzoo model folder holding a small PlainConvUNet (stands in for a registry checkpoint)."""
    from zoo.model_dir import write_model_dir

    kwargs = BASE_CONF["architecture"]["arch_kwargs"]
    net = build(kwargs, in_channels=1, num_classes=2)
    config = {"name": "tiny-unet", "architecture": "plain_conv_unet", "arch_kwargs": kwargs, "in_channels": 1,
              "num_classes": 2, "first_conv": ["encoder.stages.0.0.convs.0.conv.weight"],
              "classifier": ["decoder.seg_layers"], "input": {"in_channels": 1, "modality": "MR", "axis_order": "zyx",
                                                             "intensity": "z-score", "patch_size": [16, 32, 32]}}
    path = tmp_path / "tiny"
    write_model_dir(path, net.state_dict(), config)
    return path, net


def test_cli_adapt_plan_and_errors(small_model_dir, tmp_path, capsys):
    folder, net = small_model_dir
    plans, ds = tmp_path / "plans.json", tmp_path / "dataset.json"
    deeper = copy.deepcopy(BASE_PLANS)
    arch = deeper["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    arch.update(n_stages=4, features_per_stage=[4, 8, 16, 32], kernel_sizes=arch["kernel_sizes"] + [[3, 3, 3]],
                strides=arch["strides"] + [[2, 2, 2]], n_conv_per_stage=[2] * 4, n_conv_per_stage_decoder=[2] * 3)
    plans.write_text(json.dumps(deeper))
    ds.write_text(json.dumps(BASE_DS))
    report = tmp_path / "report.json"
    assert _cli(["adapt", str(folder), "--plans", str(plans), "--dataset-json", str(ds), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "initialised from the checkpoint" in out
    data = json.loads(report.read_text())
    assert data["options"]["in_channels"] == 2 and data["totals"]["actions"]["channels"] == 1
    # an impossible request: the deeper target's new stage cannot come from the checkpoint
    assert _cli(["adapt", str(folder), "--plans", str(plans), "--strict", "--min-share", "0.99"]) == 2
    assert "below the required" in capsys.readouterr().err
    # plan rewrite: back to the checkpoint's topology, then transfer is complete
    out_plans = tmp_path / "plans_tiny.json"
    assert _cli(["plan", str(folder), "--plans", str(plans), "-o", str(out_plans)]) == 0
    new = json.loads(out_plans.read_text())
    assert new["plans_name"] == "plans_tiny"
    assert new["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["n_stages"] == 3
    assert new["configurations"]["3d_fullres"]["spacing"] == BASE_CONF["spacing"]
    assert _cli(["adapt", str(folder), "--plans", str(out_plans), "--dataset-json", str(ds), "--strict"]) == 0
    # errors: unknown configuration, malformed plan; nothing written
    bad_report = tmp_path / "bad.json"
    assert _cli(["adapt", str(folder), "--plans", str(plans), "-c", "3d_nope", "--report", str(bad_report)]) == 2
    assert "unknown configuration '3d_nope'" in capsys.readouterr().err
    assert not bad_report.exists()
    assert _cli(["plan", str(folder), "--plans", str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
    assert _cli(["plan", str(folder), "--plans", str(plans), "-c", "2d", "-o", str(tmp_path / "y.json")]) == 2
    assert not (tmp_path / "y.json").exists()


def test_non_unet_checkpoints_and_2d_rewrites_are_refused_before_any_download(tmp_path):
    from zoo.nnunet.export import adapt_to_plan
    from zoo.nnunet.plan_rewrite import rewrite_plan

    with pytest.raises(AdaptationError, match="genesis_unet3d"):
        adapt_to_plan("genesis-chest-ct", BASE_PLANS, "3d_fullres", BASE_DS)
    plans = copy.deepcopy(BASE_PLANS)
    conf2d = copy.deepcopy(BASE_CONF)
    conf2d["patch_size"] = [32, 32]
    plans["configurations"]["2d"] = conf2d
    with pytest.raises(PlanError, match="is 2D"):
        rewrite_plan("genesis-chest-ct-nnunet-lung", plans, "2d", output=tmp_path / "p.json")
    assert not (tmp_path / "p.json").exists()


def test_import_zoo_adapt_is_light():
    import subprocess

    code = ("import sys, zoo.adapt, zoo.nnunet; zoo.adapt.TransferReport;"
            "bad=[m for m in ('nnunetv2','dynamic_network_architectures','torch','zoo.adapt.engine') if m in sys.modules];"
            "print(bad); assert bad == [], bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent)
    assert out.returncode == 0, out.stdout + out.stderr
