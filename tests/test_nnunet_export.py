"""Exported weights against the real nnunetv2 (PyPI 2.8.1): the file written by ``export_nnunet`` /
``zoo export-nnunet`` loads with nnunetv2's own ``load_pretrained_weights`` into the network nnunetv2 builds from
the plan (lung, 4-channel MRI with regions, anisotropic, 4-stage hippocampus-like, ResEnc), a ``zoo plan``
output is accepted by ``PlansManager`` and builds, and medzoo reads plans exactly as nnunetv2 does (hypothesis:
random and fuzzed plans, legacy format).

The ``genesis-chest-ct-nnunet-lung`` weights are a fake nnU-Net v1 upstream file (tests/upstream.py) served
through the real huggingface_hub client from a local cache, converted once per module.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoo.registry as registry
from zoo.convert.cache import load_converted
from zoo.entries.genesis import LUNG_PLAN_ARCH_KWARGS
from zoo.errors import ZooError
from zoo.weights import resolve_weights
from zoo.nnunet.export import adapt_to_plan, export_nnunet
from zoo.nnunet.plan_rewrite import rewrite_plan
from zoo.nnunet.plans import PlanError, arch_for_configuration, build_from_plan

from upstream import genesis_lung_cache

pytest.importorskip("nnunetv2")
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights  # noqa: E402
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans  # noqa: E402
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels  # noqa: E402
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::zoo.LicenseWarning"),
              pytest.mark.filterwarnings("ignore:Detected old nnU-Net plans format")]
@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny convolutions: one thread is fastest, and oversubscribed OpenMP threads (more threads than the CPUs
    this process may use) make them ~100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


NAME = "genesis-chest-ct-nnunet-lung"
IMPORTS = ["conv_op", "norm_op", "dropout_op", "nonlin"]
OPS = {k: LUNG_PLAN_ARCH_KWARGS[k] for k in ("conv_op", "conv_bias", "norm_op", "norm_op_kwargs", "dropout_op",
                                             "dropout_op_kwargs", "nonlin", "nonlin_kwargs")}
DNA = "dynamic_network_architectures.architectures.unet."


def plans_for(arch_kwargs, patch, n_channels=1, cls="PlainConvUNet", spacing=(1.0, 1.0, 1.0), name="Dataset900_T"):
    conf = {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": list(patch), "median_image_size_in_voxels": [2 * p for p in patch], "spacing": list(spacing),
        "normalization_schemes": ["ZScoreNormalization"] * n_channels, "use_mask_for_norm": [False] * n_channels,
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {"network_class_name": DNA + cls, "arch_kwargs": copy.deepcopy(arch_kwargs),
                         "_kw_requires_import": IMPORTS},
        "batch_dice": True,
    }
    return {"dataset_name": name, "plans_name": "nnUNetPlans", "original_median_spacing_after_transp": list(spacing),
            "original_median_shape_after_transp": [2 * p for p in patch], "image_reader_writer": "SimpleITKIO",
            "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "configurations": {"3d_fullres": conf},
            "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": {}}


def dataset(channels, labels, **extra):
    return {"channel_names": {str(i): c for i, c in enumerate(channels)}, "labels": labels, "numTraining": 20,
            "file_ending": ".nii.gz", **extra}


F6 = [32, 64, 128, 256, 320, 320]
PLANS = {
    "lung": (plans_for(LUNG_PLAN_ARCH_KWARGS, [80, 192, 160], spacing=(1.24, 0.79, 0.79)),
             dataset(["CT"], {"background": 0, "cancer": 1})),
    "mri-4ch-regions": (
        plans_for({"n_stages": 6, "features_per_stage": F6, "kernel_sizes": [[3, 3, 3]] * 6,
                   "strides": [[1, 1, 1]] + [[2, 2, 2]] * 4 + [[2, 2, 1]], "n_conv_per_stage": [2] * 6,
                   "n_conv_per_stage_decoder": [2] * 5, **OPS}, [128, 160, 112], n_channels=4),
        dataset(["FLAIR", "T1w", "T1gd", "T2w"],
                {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3},
                regions_class_order=[1, 2, 3])),
    "anisotropic": (
        plans_for({"n_stages": 6, "features_per_stage": F6,
                   "kernel_sizes": [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
                   "strides": [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]],
                   "n_conv_per_stage": [2] * 6, "n_conv_per_stage_decoder": [2] * 5, **OPS},
                  [16, 320, 320], n_channels=2, spacing=(3.6, 0.62, 0.62)),
        dataset(["T2", "ADC"], {"background": 0, "PZ": 1, "TZ": 2})),
    "hippocampus-4-stages": (
        plans_for({"n_stages": 4, "features_per_stage": F6[:4], "kernel_sizes": [[3, 3, 3]] * 4,
                   "strides": [[1, 1, 1]] + [[2, 2, 2]] * 3, "n_conv_per_stage": [2] * 4,
                   "n_conv_per_stage_decoder": [2] * 3, **OPS}, [40, 56, 40]),
        dataset(["MRI"], {"background": 0, "Anterior": 1, "Posterior": 2})),
    "resenc": (
        plans_for({"n_stages": 6, "features_per_stage": F6, "kernel_sizes": [[3, 3, 3]] * 6,
                   "strides": [[1, 1, 1]] + [[2, 2, 2]] * 5, "n_blocks_per_stage": [1, 2, 2, 2, 2, 2],
                   "n_conv_per_stage_decoder": [1] * 5, **OPS}, [128, 128, 128], cls="ResidualEncoderUNet"),
        dataset(["CT"], {"background": 0, "liver": 1, "tumour": 2})),
}


@pytest.fixture(scope="module")
def lung_cache(tmp_path_factory):
    """A cache folder whose hub/ holds the fake upstream file; converted once for the whole module."""
    cache = genesis_lung_cache(tmp_path_factory)
    path, _ = resolve_weights(registry.get_entry(NAME), cache_dir=cache, progress=False)
    return cache, load_converted(path)


def nnunet_network(plans, ds, configuration="3d_fullres"):
    """The network nnunetv2 builds for training (deep supervision on, its own init)."""
    pm = PlansManager(plans)
    cm = pm.get_configuration(configuration)
    n_in = determine_num_input_channels(pm, cm, ds)
    n_out = pm.get_label_manager(ds).num_segmentation_heads
    return get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                  cm.network_arch_init_kwargs_req_import, n_in, n_out, allow_init=True,
                                  deep_supervision=True)


def load_and_compare(plans, ds, path, configuration="3d_fullres"):
    net = nnunet_network(plans, ds, configuration)
    load_pretrained_weights(net, str(path))
    saved = torch.load(path, weights_only=True)  # plain tensors and metadata only
    weights = saved["network_weights"]
    sd = net.state_dict()
    assert set(weights) == set(sd)
    for key, value in sd.items():
        if ".seg_layers." not in key:
            assert torch.equal(value, weights[key]), key
    return net, saved


@pytest.mark.parametrize("plan", list(PLANS))
def test_export_loads_with_nnunetv2_load_pretrained_weights(plan, lung_cache, tmp_path):
    cache, source = lung_cache
    plans, ds = PLANS[plan]
    out = tmp_path / "pretrained.pth"
    result = export_nnunet(NAME, plans, ds, "3d_fullres", out, cache_dir=cache, report_path=tmp_path / "r.json")
    net, saved = load_and_compare(plans, ds, out)
    report = result.report
    assert saved["medzoo"]["model"] == NAME and saved["medzoo"]["share_initialised"] == report.share_initialised
    assert json.loads((tmp_path / "r.json").read_text())["totals"]["target_params"] == report.target_params
    assert result.keys == len(net.state_dict())
    rows = {r.target_key: r for r in report.rows}
    # the checkpoint is x,y,z (Models Genesis cubes), nnU-Net z,y,x: kernels are permuted
    assert report.options["source_axis_order"] == "xyz" and report.options["target_axis_order"] == "zyx"
    body_share = report.share_initialised_body
    if plan == "lung":
        assert body_share == 1.0
        first = net.state_dict()["encoder.stages.0.0.convs.0.conv.weight"]
        assert torch.equal(first, source["encoder.stages.0.0.convs.0.conv.weight"].permute(0, 1, 4, 3, 2))
        assert rows["decoder.transpconvs.0.weight"].action == "permute+transpconv"  # [1,2,2] in xyz vs in zyx
    elif plan == "mri-4ch-regions":
        assert body_share == 1.0 and rows["encoder.stages.0.0.convs.0.conv.weight"].action == "permute+channels"
        x = torch.randn(1, 1, 32, 32, 16)
        net.eval()
        with torch.no_grad():  # 4 identical channels reproduce the 1-channel response of the first conv
            conv4 = net.encoder.stages[0][0].convs[0].conv
            w1 = source["encoder.stages.0.0.convs.0.conv.weight"].permute(0, 1, 4, 3, 2)
            ref = torch.nn.functional.conv3d(x, w1, conv4.bias, padding=1)
            torch.testing.assert_close(conv4(x.repeat(1, 4, 1, 1, 1)), ref, rtol=1e-4, atol=1e-4)
        assert net.decoder.seg_layers[0].weight.shape[0] == 3  # regions
    elif plan == "anisotropic":
        assert body_share == 1.0
        assert rows["encoder.stages.1.0.convs.0.conv.weight"].action == "permute+kernel"
        assert {r.action for r in report.rows if r.target_key.startswith("decoder.transpconvs.")
                and r.target_key.endswith("weight")} >= {"permute+transpconv"}
    elif plan == "hippocampus-4-stages":
        assert body_share == 1.0
        assert rows["decoder.stages.0.convs.0.conv.weight"].source_key == "decoder.stages.2.convs.0.conv.weight"
        lost = {u.source_key.split(".")[2] for u in report.unused if u.source_key.startswith("encoder.stages.")}
        assert lost == {"4", "5"}
    else:
        assert rows["encoder.stem.convs.0.conv.weight"].action.startswith("realign")
        assert rows["decoder.stages.4.convs.0.conv.weight"].action == "permute"
        assert 0.3 < body_share < 1.0
    # every target tensor whose stage has a counterpart in the checkpoint came from it
    assert all(r.initialised for r in report.rows if not r.head and r.action != "new")


def test_zoo_plan_output_is_accepted_by_nnunetv2_and_transfer_is_complete(lung_cache, tmp_path):
    cache, _ = lung_cache
    plans, ds = PLANS["hippocampus-4-stages"]
    path = tmp_path / "nnUNetPlans_genesis.json"
    rewrite_plan(NAME, plans, "3d_fullres", output=path)
    pm = PlansManager(str(path))
    cm = pm.get_configuration("3d_fullres")
    assert pm.plans_name == "nnUNetPlans_genesis"
    assert cm.spacing == plans["configurations"]["3d_fullres"]["spacing"]
    assert cm.normalization_schemes == plans["configurations"]["3d_fullres"]["normalization_schemes"]
    assert cm.pool_op_kernel_sizes[-1] == [2, 2, 1]  # the checkpoint's [1,2,2] (x,y,z) in z,y,x
    assert cm.patch_size == [32, 64, 48]  # [40, 56, 40] to the nearest multiples of (32, 32, 16) and new["configurations"]["3d_fullres"]["patch_size"] == cm.patch_size
    out = tmp_path / "pretrained.pth"
    report = export_nnunet(NAME, str(path), ds, "3d_fullres", out, cache_dir=cache).report
    load_and_compare(str(path), ds, out)
    assert report.share_initialised_body == 1.0 and not [u for u in report.unused if not u.head]
    assert {r.action for r in report.rows if not r.head} <= {"copy", "permute"}


def _cli(argv) -> int:
    from zoo import cli
    from zoo.cli.adapt import add_subcommands

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "export-nnunet" in sub.choices:
        return cli.main(argv)
    add_subcommands(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ZooError as err:
        print(f"zoo {args.command}: error: {err}", file=sys.stderr)
        return 2


def test_cli_export_nnunet_and_its_refusals(lung_cache, tmp_path, capsys):
    cache, _ = lung_cache
    plans, ds = PLANS["hippocampus-4-stages"]
    p, d = tmp_path / "plans.json", tmp_path / "dataset.json"
    p.write_text(json.dumps(plans))
    d.write_text(json.dumps(ds))
    out = tmp_path / "pretrained.pth"
    common = ["--plans", str(p), "--dataset-json", str(d), "-c", "3d_fullres", "--cache-dir", str(cache)]
    assert _cli(["export-nnunet", NAME, *common, "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    load_and_compare(str(p), ds, out)
    refused = tmp_path / "refused.pth"
    # impossible strict request: the 4-stage plan cannot use the checkpoint's stages 4 and 5
    assert _cli(["export-nnunet", NAME, *common, "-o", str(refused), "--strict"]) == 2
    assert "encoder.stages.4" in capsys.readouterr().err
    # mismatched dataset.json, unknown configuration
    d2 = tmp_path / "d2.json"
    d2.write_text(json.dumps(dataset(["T1", "T2"], {"background": 0, "a": 1})))
    assert _cli(["export-nnunet", NAME, "--plans", str(p), "--dataset-json", str(d2), "--cache-dir", str(cache),
                 "-o", str(refused)]) == 2
    assert "does not belong to these plans" in capsys.readouterr().err
    assert _cli(["export-nnunet", NAME, *common[:-4], "-c", "2d", "--cache-dir", str(cache), "-o", str(refused)]) == 2
    assert "unknown configuration '2d'" in capsys.readouterr().err
    assert not refused.exists() and not list(tmp_path.glob(".refused*"))


# ------------------------------------------------------------------------------------------ plans as nnunetv2 reads them


@st.composite
def random_plan(draw):
    n = draw(st.integers(2, 4))
    dims = draw(st.sampled_from([2, 3]))
    residual = draw(st.booleans())
    features = [draw(st.integers(2, 8)) for _ in range(n)]
    kernels = [[draw(st.sampled_from([1, 3])) for _ in range(dims)] for _ in range(n)]
    strides = [[1] * dims] + [[draw(st.sampled_from([1, 2])) for _ in range(dims)] for _ in range(n - 1)]
    kw = {"n_stages": n, "features_per_stage": features, "kernel_sizes": kernels, "strides": strides,
          ("n_blocks_per_stage" if residual else "n_conv_per_stage"): [draw(st.integers(1, 2)) for _ in range(n)],
          "n_conv_per_stage_decoder": [draw(st.integers(1, 2)) for _ in range(n - 1)], **copy.deepcopy(OPS)}
    kw["conv_op"] = f"torch.nn.modules.conv.Conv{dims}d"
    kw["norm_op"] = f"torch.nn.modules.instancenorm.InstanceNorm{dims}d"
    total = [1] * dims
    for s in strides:
        total = [t * v for t, v in zip(total, s)]
    patch = [t * draw(st.integers(1, 3)) for t in total]
    plans = plans_for(kw, patch, n_channels=draw(st.integers(1, 3)),
                      cls="ResidualEncoderUNet" if residual else "PlainConvUNet")
    if dims == 2:
        plans["configurations"]["2d"] = plans["configurations"].pop("3d_fullres")
    n_labels = draw(st.integers(1, 3))
    ds = dataset([f"c{i}" for i in range(len(plans["configurations"][next(iter(plans["configurations"]))]
                                              ["normalization_schemes"]))],
                 {"background": 0, **{f"l{i}": i + 1 for i in range(n_labels)}})
    return plans, ds


@functools.lru_cache(maxsize=1)
def _small_source():
    src_plan, _ = PLANS["hippocampus-4-stages"]
    return build_from_plan(arch_for_configuration(src_plan, num_classes=2)).state_dict()


def _shapes(net):
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(case=random_plan())
def test_random_plans_build_as_in_nnunetv2_and_exports_load(case, tmp_path_factory):
    plans, ds = case
    conf = next(iter(plans["configurations"]))
    spec = arch_for_configuration(plans, conf, ds)
    ours = build_from_plan(spec, device="meta")
    net = None
    pm = PlansManager(plans)
    cm = pm.get_configuration(conf)
    with torch.device("meta"):
        net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, determine_num_input_channels(pm, cm, ds),
                                     pm.get_label_manager(ds).num_segmentation_heads, allow_init=False)
    assert list(_shapes(ours).items()) == list(_shapes(net).items())
    # any plan takes (part of) any U-Net checkpoint and nnunetv2 accepts the file
    out = tmp_path_factory.mktemp("export") / "w.pth"
    export_nnunet(NAME, plans, ds, conf, out, state_dict=_small_source())
    load_and_compare(plans, ds, out, conf)


def legacy(plans, conf="3d_fullres"):
    """The pre-2.3 flat form of a configuration, as older nnU-Net wrote it."""
    c = plans["configurations"][conf]
    arch = c.pop("architecture")
    kw = arch["arch_kwargs"]
    enc = kw.get("n_conv_per_stage", kw.get("n_blocks_per_stage"))
    c.update(UNet_class_name=arch["network_class_name"].rsplit(".", 1)[-1], UNet_base_num_features=kw["features_per_stage"][0],
             unet_max_num_features=max(kw["features_per_stage"]), n_conv_per_stage_encoder=enc,
             n_conv_per_stage_decoder=kw["n_conv_per_stage_decoder"], pool_op_kernel_sizes=kw["strides"],
             conv_kernel_sizes=kw["kernel_sizes"], num_pool_per_axis=[0, 0, 0])
    return plans


@pytest.mark.parametrize("plan", ["lung", "resenc", "anisotropic"])
def test_legacy_plans_read_as_nnunetv2_reads_them(plan, lung_cache, tmp_path):
    plans, ds = PLANS[plan]
    old = legacy(copy.deepcopy(plans))
    spec = arch_for_configuration(old, "3d_fullres", ds)
    cm = ConfigurationManager(copy.deepcopy(old["configurations"]["3d_fullres"]))
    assert spec.arch_kwargs == cm.network_arch_init_kwargs
    assert spec == arch_for_configuration(plans, "3d_fullres", ds)
    if plan == "lung":  # and a legacy plan exports and loads (nnunetv2 converts it on load)
        out = tmp_path / "w.pth"
        export_nnunet(NAME, old, ds, "3d_fullres", out, cache_dir=lung_cache[0])
        load_and_compare(old, ds, out)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 64) | st.sampled_from(["torch.nn.LeakyReLU", "x", "Conv3d"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["eps", "a", "inplace"]), inner,
                                                                 max_size=2),
    max_leaves=5,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_plans_we_accept_are_built_identically_by_nnunetv2(data):
    plans, ds = copy.deepcopy(PLANS["hippocampus-4-stages"])
    kw = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    kw["features_per_stage"] = [2, 4, 6, 8]
    for _ in range(data.draw(st.integers(1, 2))):
        key = data.draw(st.sampled_from(sorted(kw)))
        if data.draw(st.booleans()):
            kw.pop(key)
        else:
            kw[key] = data.draw(JSON)
    try:
        spec = arch_for_configuration(plans, "3d_fullres", ds)
        ours = build_from_plan(spec, device="meta")
    except PlanError:
        return
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    with torch.device("meta"):
        net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, 1, 3, allow_init=False)
    assert _shapes(ours) == _shapes(net)


def test_adapt_to_plan_network_matches_what_nnunetv2_loads(lung_cache):
    cache, _ = lung_cache
    plans, ds = PLANS["hippocampus-4-stages"]
    ours, report = adapt_to_plan(NAME, plans, "3d_fullres", ds, cache_dir=cache, seed=0)
    assert ours.transfer_report is report and not any(p.is_meta for p in ours.parameters())
    net = nnunet_network(plans, ds)
    net.load_state_dict(ours.state_dict())
    x = torch.randn(1, 1, 40, 56, 40)
    ours.eval(), net.eval()
    net.decoder.deep_supervision = False
    with torch.no_grad():
        torch.testing.assert_close(ours(x), net(x))
