"""Models Genesis transforms: documented properties, batched torch version against the per-cube numpy
reference (same maps, same geometry ranges, same rates), determinism, multi-channel behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.transforms import genesis as G
from zoo.transforms.genesis import GenesisConfig, bezier_map, genesis_corrupt, local_pixel_shuffle
from zoo.transforms.genesis_reference import (
    reference_bezier_curve,
    reference_bezier_map,
    reference_genesis_corrupt,
    reference_in_painting,
    reference_local_pixel_shuffle,
    reference_out_painting,
)

unit = st.floats(0.0, 1.0, allow_nan=False)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def within(p_hat: float, p: float, n: int, sigmas: float = 4.5) -> bool:
    return abs(p_hat - p) <= sigmas * math.sqrt(p * (1 - p) / n) + 1e-12


# ------------------------------------------------------------------------------------------ Bezier
@settings(max_examples=200, deadline=None)
@given(unit, unit, unit, unit)
def test_bezier_curve_coordinates_are_monotone(a, b, c, d):
    """Why sorting can be replaced by reversing: x(t) and y(t) never increase (control values 1, c, a, 0)."""
    xv, yv = reference_bezier_curve([[0, 0], [a, b], [c, d], [1, 1]], 4001)
    assert np.all(np.diff(xv) <= 1e-12) and np.all(np.diff(yv) <= 1e-12)
    assert xv[0] == pytest.approx(1) and xv[-1] == pytest.approx(0)


@settings(max_examples=60, deadline=None)
@given(unit, unit, unit, unit, st.booleans())
def test_bezier_map_properties_and_batched_equals_reference(a, b, c, d, inverted):
    q = np.linspace(-0.25, 1.25, 3001)
    ref = reference_bezier_map(q, (a, b, c, d), inverted)
    bat = bezier_map(torch.from_numpy(q).view(1, -1), torch.tensor([[a, b, c, d]], dtype=torch.float64),
                     torch.tensor([inverted])).view(-1).numpy()
    inside = (q >= 0) & (q <= 1)
    for f in (ref, bat):
        assert f.min() >= -1e-9 and f.max() <= 1 + 1e-9
        steps = np.diff(f[inside])
        if inverted:        # 0 -> 1, 1 -> 0, never increasing
            assert np.all(steps <= 1e-6)
            assert f[q == 0][0] == pytest.approx(1, abs=1e-6) and f[q == 1][0] == pytest.approx(0, abs=1e-6)
        else:               # 0 -> 0, 1 -> 1, never decreasing
            assert np.all(steps >= -1e-6)
            assert f[q == 0][0] == pytest.approx(0, abs=1e-6) and f[q == 1][0] == pytest.approx(1, abs=1e-6)
        assert np.all(f[q < 0] == f[q == 0][0]) and np.all(f[q > 1] == f[q == 1][0])   # clamped like np.interp
    # Linear interpolation in a table of spacing h never leaves [f(q - h), f(q + h)] of a monotone f. A plain
    # |bat - ref| bound cannot hold for every curve: where x'(t) = 0 (e.g. a = 1, c = 0) the map has a
    # vertical tangent with a cube-root profile, and any uniform table misses it by ~h^(1/3) there.
    h = 1.0 / (8192 - 1)
    lo, hi = reference_bezier_map(q - h, (a, b, c, d), inverted), reference_bezier_map(q + h, (a, b, c, d), inverted)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    assert np.all(bat >= lo - 1e-5) and np.all(bat <= hi + 1e-5)
    assert np.abs(bat - ref).mean() < 5e-5


def test_bezier_batched_accuracy_over_many_curves():
    rng = np.random.default_rng(0)
    q = rng.random(20000)
    worst, means = 0.0, []
    for _ in range(30):
        ctl, inv = rng.random(4), bool(rng.random() < 0.5)
        ref = reference_bezier_map(q, tuple(ctl), inv)
        bat = bezier_map(torch.from_numpy(q).view(1, -1).float(), torch.from_numpy(ctl).view(1, 4),
                         torch.tensor([inv])).view(-1).double().numpy()
        worst = max(worst, np.abs(bat - ref).max())
        means.append(np.abs(bat - ref).mean())
    assert worst < 1e-3 and np.mean(means) < 1e-5


# ------------------------------------------------------------------------------------ pixel shuffle
def check_shuffle_semantics(x: np.ndarray, out: np.ndarray, blocks):
    """x holds unique values (= flat index). Replays the blocks in order and checks upstream semantics:
    voxels no block covers keep their value; a voxel's value comes from inside its last writer's block, read
    from the original; each block's surviving voxels read distinct sources; the last block is a permutation."""
    shape = x.shape
    owner = np.full(shape, -1)
    for b, (start, size) in enumerate(blocks):
        owner[tuple(slice(s, s + n) for s, n in zip(start, size))] = b
    assert np.array_equal(out[owner < 0], x[owner < 0])
    src = np.stack(np.unravel_index(out.astype(np.int64).ravel(), shape), -1).reshape(shape + (3,))
    for b, (start, size) in enumerate(blocks):
        w = owner == b
        if not w.any():
            continue
        s = src[w]
        assert np.all(s >= np.array(start)) and np.all(s < np.array(start) + np.array(size))
        assert len(np.unique(out[w])) == w.sum()                    # injective
    start, size = blocks[-1]
    box = tuple(slice(s, s + n) for s, n in zip(start, size))
    assert sorted(out[box].ravel()) == sorted(x[box].ravel())      # multiset of the last block kept
    assert np.mean(out[owner >= 0] != x[owner >= 0]) > 0.5          # and it does shuffle


def test_batched_shuffle_follows_sequential_semantics():
    x = torch.arange(2 * 40 * 30 * 20, dtype=torch.float32).view(2, 1, 40, 30, 20)
    local = x - torch.arange(2).view(2, 1, 1, 1, 1) * (40 * 30 * 20)
    out, (starts, sizes) = local_pixel_shuffle(x, gen(0), n_blocks=400, return_blocks=True)
    assert starts.shape == sizes.shape == (2, 400, 3)
    assert sizes.min() == 1 and tuple(sizes.amax(dim=(0, 1)).tolist()) == (4, 3, 2)     # randint(1, S // 10)
    assert torch.all(starts + sizes <= torch.tensor([40, 30, 20]))
    for i in range(2):
        blocks = list(zip(starts[i].tolist(), sizes[i].tolist()))
        check_shuffle_semantics(local[i, 0].numpy(), (out[i, 0] - i * 40 * 30 * 20).numpy(), blocks)
    assert torch.equal(x, torch.arange(2 * 40 * 30 * 20, dtype=torch.float32).view(2, 1, 40, 30, 20))


def test_reference_shuffle_follows_sequential_semantics():
    x = np.arange(40 * 30 * 20, dtype=np.float64).reshape(1, 40, 30, 20)
    out, blocks = reference_local_pixel_shuffle(x, np.random.default_rng(0), 400, return_blocks=True)
    check_shuffle_semantics(x[0], out[0], [(b.start, b.size) for b in blocks])


def test_shuffle_statistics_batched_vs_reference():
    """Same coverage and same share of voxels left in place (uniform permutations) on 64 x 64 x 32 cubes."""
    x = torch.arange(64 * 64 * 32, dtype=torch.float32).view(1, 1, 64, 64, 32).repeat(6, 1, 1, 1, 1)
    out = local_pixel_shuffle(x, gen(1))
    changed_b = (out != x).float().mean().item()
    rng = np.random.default_rng(1)
    xr = x[0].double().numpy()
    changed_r = np.mean([np.mean(reference_local_pixel_shuffle(xr, rng) != xr) for _ in range(3)])
    assert abs(changed_b - changed_r) < 0.01, (changed_b, changed_r)
    assert 0.7 < changed_b < 0.85


def test_shuffle_shares_the_permutation_across_channels():
    base = torch.rand(3, 1, 20, 20, 20, generator=gen(2))
    x = torch.cat([base, 2 * base + 1], dim=1)
    out = local_pixel_shuffle(x, gen(3), n_blocks=300)
    assert torch.allclose(out[:, 1], 2 * out[:, 0] + 1)
    assert not torch.equal(out, x)


# ------------------------------------------------------------------------------------------ painting
def count_dist(counts, k):
    return np.bincount(np.asarray(counts), minlength=k + 1) / len(counts)


def test_inpainting_geometry_and_counts_batched_vs_reference():
    m, spatial = 20000, (64, 64, 32)
    starts, sizes, active = G.inpaint_boxes(m, spatial, gen(4))
    for d, s in enumerate(spatial):
        sz, stt = sizes[..., d], starts[..., d]
        assert (sz.min().item(), sz.max().item()) == (s // 6, s // 3)           # 10..21, 5..10
        assert sz.float().mean().item() == pytest.approx((s // 6 + s // 3) / 2, abs=0.1)
        assert stt.min().item() == 3 and torch.all(stt <= s - sz - 3)
        assert torch.any(stt == s - sz - 3)
    rng = np.random.default_rng(4)
    dummy = np.zeros((1,) + spatial)
    ref_counts, ref_sizes = [], []
    for _ in range(3000):
        _, rec = reference_in_painting(dummy, rng)
        ref_counts.append(len(rec.boxes))
        ref_sizes += [b[1] for b in rec.boxes]
    expected = [0.05 * 0.95 ** k for k in range(5)] + [0.95 ** 5]
    for dist, n in ((count_dist(active.sum(1).numpy(), 5), m), (count_dist(ref_counts, 5), 3000)):
        for p_hat, p in zip(dist, expected):
            assert within(p_hat, p, n), (dist, expected)
    ref_sizes = np.array(ref_sizes)
    assert ref_sizes.min(0).tolist() == [10, 10, 5] and ref_sizes.max(0).tolist() == [21, 21, 10]


def test_outpainting_geometry_and_counts_batched_vs_reference():
    m, spatial = 20000, (64, 64, 32)
    starts, sizes, active = G.outpaint_windows(m, spatial, gen(6))
    assert torch.all(active[:, 0])
    extra = active[:, 1:]
    for d, s in enumerate(spatial):
        sz = sizes[..., d]
        assert (sz.min().item(), sz.max().item()) == (s - 4 * s // 7, s - 3 * s // 7)   # 28..37, 14..19
        assert starts[..., d].min().item() == 3 and torch.all(starts[..., d] <= s - sz - 3)
    rng = np.random.default_rng(6)
    dummy = np.zeros((1,) + spatial)
    ref_counts, ref_sizes = [], []
    for _ in range(1500):
        _, rec = reference_out_painting(dummy, rng)
        ref_counts.append(len(rec.boxes) - 1)
        ref_sizes += [b[1] for b in rec.boxes]
    expected = [0.05 * 0.95 ** k for k in range(4)] + [0.95 ** 4]
    for dist, n in ((count_dist(extra.sum(1).numpy(), 4), m), (count_dist(ref_counts, 4), 1500)):
        for p_hat, p in zip(dist, expected):
            assert within(p_hat, p, n), (dist, expected)
    ref_sizes = np.array(ref_sizes)
    assert ref_sizes.min(0).tolist() == [28, 28, 14] and ref_sizes.max(0).tolist() == [37, 37, 19]


def _union(shape, starts, sizes, active):
    mask = np.zeros(shape, bool)
    for (st_, sz), on in zip(zip(starts, sizes), active):
        if on:
            mask[tuple(slice(a, a + n) for a, n in zip(st_, sz))] = True
    return mask


def test_painted_regions_are_exactly_the_boxes():
    x = torch.full((12, 2, 64, 64, 32), 5.0)               # out of [0, 1): noise never equals it
    inp, (st_i, sz_i, ac_i) = G.in_painting(x, gen(8), return_boxes=True)
    outp, (st_o, sz_o, ac_o) = G.out_painting(x, gen(9), return_boxes=True)
    for i in range(12):
        m_in = _union((64, 64, 32), st_i[i].tolist(), sz_i[i].tolist(), ac_i[i].tolist())
        m_out = _union((64, 64, 32), st_o[i].tolist(), sz_o[i].tolist(), ac_o[i].tolist())
        for c in range(2):                                  # boxes shared by the channels
            assert np.array_equal(inp[i, c].numpy() != 5.0, m_in)
            assert np.array_equal(outp[i, c].numpy() == 5.0, m_out)
        assert not torch.equal(inp[i, 0], inp[i, 1]) or not m_in.any()   # noise drawn per channel
    for noise in (inp[inp != 5.0], outp[outp != 5.0]):                   # uniform [0, 1)
        assert noise.min() >= 0 and noise.max() < 1 and noise.max() > 0.99
        assert noise.mean().item() == pytest.approx(0.5, abs=0.01)
        assert noise.std().item() == pytest.approx(math.sqrt(1 / 12), abs=0.01)
    assert torch.all(x == 5.0)


# ----------------------------------------------------------------------------- pipeline and rates
def flip_odd_probability(rate=0.4, max_flips=3):
    """P(an axis is flipped an odd number of times): k flips with P(k), each on a uniform axis of 3."""
    total = 0.0
    for k in range(1, max_flips + 1):
        p_k = rate ** k * ((1 - rate) if k < max_flips else 1.0)
        p_odd = sum(math.comb(k, j) * (1 / 3) ** j * (2 / 3) ** (k - j) for j in range(1, k + 1, 2))
        total += p_k * p_odd
    return total


def test_rates_batched_vs_reference_vs_documented():
    n = 2500
    cfg = GenesisConfig(shuffle_blocks=5, bezier_samples_reference=2000)     # rates only: cheap settings
    res = genesis_corrupt(torch.rand(n, 1, 14, 14, 14, generator=gen(10)), gen(11), cfg)
    a = {k: v.double().mean().item() for k, v in res.applied.items() if k != "flipped"}
    flips = res.applied["flipped"].double().mean(0).tolist()
    expected = {"shuffled": 0.5, "nonlinear": 0.9, "inpainted": 0.18, "outpainted": 0.72}
    for k, p in expected.items():
        assert within(a[k], p, n), (k, a[k])
    assert within(res.applied["inverted"][res.applied["nonlinear"]].double().mean().item(), 0.5, int(0.9 * n))
    assert all(within(f, flip_odd_probability(), n) for f in flips), flips

    rng = np.random.default_rng(10)
    cube = np.random.default_rng(0).random((1, 14, 14, 14))
    infos = [reference_genesis_corrupt(cube, rng, cfg)[2] for _ in range(1200)]
    r = {"shuffled": np.mean([i["shuffled"] for i in infos]),
         "nonlinear": np.mean([i["nonlinear"] is not None for i in infos]),
         "inpainted": np.mean([i["paint"] is not None and i["paint"].kind == "in" for i in infos]),
         "outpainted": np.mean([i["paint"] is not None and i["paint"].kind == "out" for i in infos])}
    for k, p in expected.items():
        assert within(r[k], p, 1200), (k, r[k])
    odd = np.mean([[sum(1 for ax in i["flips"] if ax == d) % 2 for d in (1, 2, 3)] for i in infos], axis=0)
    assert all(within(o, flip_odd_probability(), 1200) for o in odd), odd


def test_flip_bug_fixed_and_legacy_reproduced():
    ramp = torch.arange(16, dtype=torch.float32).view(1, 1, 1, 1, 16).expand(300, 1, 16, 16, 16).contiguous()
    only_flips = GenesisConfig(local_rate=0, nonlinear_rate=0, paint_rate=0)
    fixed = genesis_corrupt(ramp, gen(12), only_flips)
    assert torch.equal(fixed.damaged, fixed.target)         # flips hit input and target alike
    flipped_z = (fixed.target != ramp).flatten(1).any(1)
    assert torch.equal(flipped_z, fixed.applied["flipped"][:, 2])
    assert within(flipped_z.double().mean().item(), flip_odd_probability(), 300)
    legacy = genesis_corrupt(ramp, gen(12), only_flips.replace(legacy_flip=True))
    assert torch.equal(legacy.target, ramp)                  # upstream never flips the last spatial axis


def test_determinism_and_input_untouched():
    x = torch.rand(6, 1, 32, 32, 16, generator=gen(13))
    keep = x.clone()
    r1 = genesis_corrupt(x, gen(14))
    r2 = genesis_corrupt(x, gen(14))
    r3 = genesis_corrupt(x, gen(15))
    assert torch.equal(r1.damaged, r2.damaged) and torch.equal(r1.target, r2.target)
    assert all(torch.equal(r1.applied[k], r2.applied[k]) for k in r1.applied)
    assert not torch.equal(r1.damaged, r3.damaged)
    assert torch.equal(x, keep)
    assert r1.damaged.shape == x.shape and r1.damaged.dtype == x.dtype


def test_multichannel_shared_or_per_channel():
    base = torch.rand(8, 1, 24, 24, 16, generator=gen(16))
    x = base.repeat(1, 3, 1, 1, 1)
    no_paint = GenesisConfig(paint_rate=0, shuffle_blocks=500)
    shared = genesis_corrupt(x, gen(17), no_paint).damaged
    assert torch.equal(shared[:, 0], shared[:, 1]) and torch.equal(shared[:, 0], shared[:, 2])
    per = genesis_corrupt(x, gen(17), no_paint.replace(per_channel=True))
    assert per.applied["shuffled"].shape == (24,)
    assert not torch.equal(per.damaged[:, 0], per.damaged[:, 1])
    inpaint = GenesisConfig(local_rate=0, nonlinear_rate=0, paint_rate=1, inpaint_rate=1)
    r = genesis_corrupt(x, gen(18), inpaint)
    masks = r.damaged != r.target
    assert torch.equal(masks[:, 0], masks[:, 1]) and torch.equal(masks[:, 1], masks[:, 2])


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(N, C, S0, S1, S2\)"):
        genesis_corrupt(torch.rand(1, 64, 64, 32))
    with pytest.raises(TypeError, match="floating"):
        genesis_corrupt(torch.zeros(1, 1, 64, 64, 32, dtype=torch.int16))
    with pytest.raises(ValueError, match="too small"):
        genesis_corrupt(torch.rand(1, 1, 64, 64, 12))
    with pytest.raises(ValueError, match="too small"):
        local_pixel_shuffle(torch.rand(1, 1, 9, 20, 20))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="generator"):
            genesis_corrupt(torch.rand(1, 1, 16, 16, 16, device="cuda"), gen(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_documented_properties():
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.arange(2 * 40 * 30 * 20, dtype=torch.float32, device="cuda").view(2, 1, 40, 30, 20)
    out, (starts, sizes) = local_pixel_shuffle(x, g, n_blocks=400, return_blocks=True)
    assert out.device.type == "cuda"
    blocks = list(zip(starts[0].tolist(), sizes[0].tolist()))
    check_shuffle_semantics(x[0, 0].cpu().numpy(), out[0, 0].cpu().numpy(), blocks)
    r = genesis_corrupt(torch.rand(8, 1, 64, 64, 32, device="cuda", generator=g), g)
    assert r.damaged.device.type == "cuda" and r.damaged.isfinite().all()
