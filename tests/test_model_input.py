"""zoo.io.model_input: an entry's data config and the model-ready tensor of a volume, checked against values
computed here independently (clip/scale/z-score by hand, transposes by index, linear resampling of a linear
ramp, which linear interpolation reproduces exactly)."""

from __future__ import annotations

import fnmatch

import numpy as np
import pytest
import torch

import zoo
from zoo.io import Volume
from zoo.io.model_input import (
    FAMILY_INTENSITY,
    DataConfig,
    DataConfigError,
    UnmappedIntensityError,
    _from_table,
    model_input,
    resolve_data_config,
)

GENESIS_MEAN, GENESIS_STD = -775.8457, 251.9326


def config(name: str) -> DataConfig:
    return resolve_data_config(zoo.get_entry(name))


def hu_volume(shape=(5, 6, 7), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1500, 1500, shape).astype(np.float32)


def padded(expected: np.ndarray, shape) -> np.ndarray:
    out = np.zeros(shape, dtype=np.float64)
    out[tuple(slice(0, n) for n in expected.shape)] = expected
    return out


def test_genesis_unet3d_clips_scales_and_puts_x_first():
    cfg = config("genesis-chest-ct")
    assert (cfg.intensity, dict(cfg.intensity_params)) == ("genesis_ct", {})
    assert (cfg.axis_order, cfg.spacing_mm) == ("xyz", None)
    a = hu_volume()                                                  # (z, y, x) = (5, 6, 7)
    a[1, 2, 3] = 400.0                                               # a marker at z=1, y=2, x=3
    t = model_input(a, (2.0, 1.0, 1.0), cfg)                         # native spacing: no resampling
    expected = (np.clip(a.astype(np.float64), -1000, 1000) + 1000) / 2000
    expected = padded(expected.transpose(2, 1, 0), (8, 8, 8))        # (x, y, z), padded to divisible_by 8
    assert t.shape == (1, 1, 8, 8, 8) and t.dtype == torch.float32
    np.testing.assert_allclose(t[0, 0].numpy(), expected, rtol=0, atol=1e-6)
    assert t[0, 0, 3, 2, 1].item() == pytest.approx(0.7)            # the marker, x first


def test_genesis_nnunet_zscores_with_its_mean_and_std():
    cfg = config("genesis-chest-ct-nnunet-lung")
    assert cfg.intensity == "nnunet_ct" and cfg.axis_order == "xyz" and cfg.divisible_by == 32
    a = hu_volume((4, 5, 6), seed=1)
    t = model_input(Volume(a, (1.0, 1.0, 1.0), modality="CT"), None, cfg)
    expected = (np.clip(a.astype(np.float64), -1000, 1000) - GENESIS_MEAN) / GENESIS_STD
    np.testing.assert_allclose(t[0, 0].numpy(), padded(expected.transpose(2, 1, 0), (32, 32, 32)), atol=1e-5)


def test_demo_entry_resamples_to_its_spacing_keeps_zyx():
    cfg = config("genesis-ct-demo")
    assert cfg.spacing_zyx == (1.5, 1.0, 1.0) and cfg.axis_order == "zyx" and cfg.divisible_by == 4
    spacing = (3.0, 1.0, 0.5)
    z, y, x = np.meshgrid(*(np.arange(n) * s for n, s in zip((5, 4, 9), spacing)), indexing="ij")
    ramp = lambda z, y, x: 10 * z + 3 * y - 2 * x - 500.0          # noqa: E731  linear in mm: resampled exactly
    t = model_input(ramp(z, y, x).astype(np.float32), spacing, cfg)
    # new grid: z 0..12 mm every 1.5 -> 9, y 0..3 every 1 -> 4, x 0..4 every 1 -> 5
    zn, yn, xn = np.meshgrid(np.arange(9) * 1.5, np.arange(4) * 1.0, np.arange(5) * 1.0, indexing="ij")
    expected = (np.clip(ramp(zn, yn, xn), -1000, 1000) - GENESIS_MEAN) / GENESIS_STD
    assert t.shape == (1, 1, 12, 4, 8)                               # (9, 4, 5) padded to multiples of 4
    np.testing.assert_allclose(t[0, 0].numpy(), padded(expected, (12, 4, 8)), atol=1e-4)


def test_med3d_zscores_over_nonzero_voxels():
    cfg = config("med3d-resnet18")
    assert cfg.intensity == "zscore" and dict(cfg.intensity_params) == {"mask": "nonzero"}
    a = np.random.default_rng(2).normal(300, 50, (6, 7, 8)).astype(np.float32)
    a[:2] = 0.0                                                      # background
    t = model_input(Volume(a, (1.0, 1.0, 1.0), modality="MR"), None, cfg)
    fg = a[a != 0].astype(np.float64)
    expected = (a - fg.mean()) / fg.std()
    np.testing.assert_allclose(t[0, 0].numpy(), padded(expected, (8, 8, 8)), atol=1e-5)


def test_resampling_changes_the_shape_by_the_spacing_ratio():
    cfg = config("suprem-unet")                                      # 1.5 mm isotropic, xyz
    a = np.zeros((10, 20, 30), dtype=np.float32)
    t = model_input(a - 1000, (3.0, 1.5, 0.75), cfg)
    # z: 9 * 3 / 1.5 + 1 = 19, y: 20, x: floor(29 * 0.75 / 1.5) + 1 = 15; x first, then padded to 8
    assert t.shape == (1, 1, 16, 24, 24)
    cfg1 = cfg.with_intensity("minmax")
    assert model_input(a, (1.5, 1.5, 1.5), cfg1, crop_or_pad=(8, 8, 8)).shape == (1, 1, 8, 8, 8)
    assert model_input(a, (1.5, 1.5, 1.5), cfg1, crop_or_pad="patch").shape == (1, 1, 96, 96, 96)


def test_unmapped_and_unknown_schemes_are_refused_clearly():
    cfg = config("ssl3d-rotation")
    assert cfg.intensity is None and "percentiles" in cfg.intensity_note
    with pytest.raises(UnmappedIntensityError, match=r"ssl3d-rotation.*with_intensity"):
        model_input(np.zeros((4, 4, 4), np.float32), (1, 1, 1), cfg)
    liver = config("unetpp-liver")                                   # nnunet_ct, statistics not recorded
    with pytest.raises(UnmappedIntensityError, match=r"unetpp-liver.*foreground_intensity_properties"):
        model_input(np.zeros((4, 4, 4), np.float32), (1, 1, 1), liver)
    out = model_input(Volume(np.full((4, 4, 4), 100, np.float32), (1.0, 0.77, 0.77), modality="CT"), None,
                      liver.with_intensity("nnunet_ct", mean=50.0, std=25.0, p005=-100.0, p995=200.0))
    assert out[0, 0, 0, 0, 0].item() == pytest.approx(2.0)
    with pytest.raises(DataConfigError, match=r"ssl3d-rotation: unknown intensity scheme 'ct_hu'.*zscore"):
        cfg.with_intensity("ct_hu")
    with pytest.raises(DataConfigError, match=r"missing \['p005', 'p995'\]"):
        cfg.with_intensity("nnunet_ct", mean=0.0, std=1.0)
    with pytest.raises(TypeError, match=r"zoo.get_entry\('genesis-ct-demo'\)"):
        resolve_data_config("genesis-ct-demo")
    with pytest.raises(DataConfigError, match="takes 1 channel"):
        model_input(np.zeros((2, 4, 4, 4), np.float32), (1, 1, 1), config("genesis-chest-ct"))


def test_every_entry_has_a_config_and_the_table_agrees_with_structured_normalization():
    for name in zoo.list_models():
        entry = zoo.get_entry(name)
        cfg = resolve_data_config(entry)
        assert cfg.entry == name and cfg.intensity_note
        scheme, params, _ = _from_table(entry)
        assert any(any(fnmatch.fnmatchcase(name, p) for p in pats) for pats, *_ in FAMILY_INTENSITY)
        if getattr(entry.input, "normalization", None) is not None:
            assert (cfg.intensity, dict(cfg.intensity_params)) == (scheme, params), name


def test_data_config_is_one_call_by_name_entry_or_model():
    import zoo

    by_name = zoo.data_config("genesis-chest-ct")
    assert by_name == zoo.data_config(zoo.get_entry("genesis-chest-ct"))
    assert by_name == zoo.data_config(zoo.load("genesis-chest-ct", pretrained=False))
    assert by_name.axis_order == "xyz"
    override = zoo.data_config("genesis-chest-ct", intensity="zscore")
    assert override.intensity == "zscore" and override != by_name
