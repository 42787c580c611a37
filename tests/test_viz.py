"""zoo.viz: PNG encoding (decoded by Pillow, the real peer), panels and their captions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from zoo.viz import encode_png, save_panels, to_uint8
from zoo.viz.font import GLYPH_HEIGHT, glyph, render_text


@pytest.mark.parametrize("shape", [(7, 11), (5, 9, 3)])
def test_png_round_trips_through_pillow(shape, tmp_path):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    (tmp_path / "x.png").write_bytes(encode_png(image))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png")), image)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(image.astype(np.float32))


def test_panels_with_captions(tmp_path):
    a, b = np.linspace(0, 1, 320).reshape(8, 40), np.zeros((6, 40))
    path = save_panels(tmp_path / "p.png", [a, b], scale=3, gap=4, titles=["original", "x"])
    img = np.asarray(Image.open(path))
    strip = 7 * 2 + 2 * 3                                      # short titles fit at twice the font size
    assert img.shape == (strip + 24, 120 + 4 + 120)
    assert (img[:strip, :120] == 0).sum() > 100 and (img[:strip, 124:] == 0).sum() > 10   # dark text on white
    assert np.array_equal(img[strip:, :120], np.kron(to_uint8(a, 0, 1), np.ones((3, 3), np.uint8)))
    assert np.all(img[strip + 18:, 124:] == 255)               # the shorter panel is padded with white
    long = save_panels(tmp_path / "q.png", [a], scale=3, titles=["a title much wider than this panel of 120 px"])
    assert np.asarray(Image.open(long)).shape == (7 + 6 + 24, 120)   # one font size smaller, cut to the width


def test_bad_titles_write_nothing(tmp_path):
    with pytest.raises(ValueError, match="one per panel"):
        save_panels(tmp_path / "p.png", [np.zeros((4, 4))] * 2, titles=["only one"])
    assert not (tmp_path / "p.png").exists()


def test_font():
    assert np.array_equal(glyph("a"), glyph("A")) and np.array_equal(glyph("§"), glyph("?"))
    assert glyph("I")[:, 2].all() and not glyph(" ").any()
    assert render_text("ab", scale=3).shape == (GLYPH_HEIGHT * 3, 2 * 6 * 3)
