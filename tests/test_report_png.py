"""The transfer report as a PNG (``zoo.viz.transfer_png``, ``zoo adapt --report-png``), decoded by Pillow.

On a real transfer: the shipped ``genesis-ct-demo`` weights (3 encoder stages) into the demo's 6-stage nnU-Net plan,
so encoder stages 0-2 are copied, stages 3-5 and the heads are new. The rows and cells expected are counted from the
built network, the colours read back from the decoded PNG.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.cli import main
from zoo.demo import DEMO_DATASET, DEMO_PLANS
from zoo.nnunet.export import adapt_to_plan
from zoo.viz import save_transfer_png, transfer_figure
from zoo.viz.transfer_png import ACTION_COLOURS, action_category, cell_of, figure_height

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")

DEMO = "genesis-ct-demo"


@pytest.fixture(scope="module")
def demo_transfer():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return adapt_to_plan(DEMO, str(DEMO_PLANS), "3d_fullres", str(DEMO_DATASET))
    finally:
        torch.set_num_threads(threads)


def _pixel(img: np.ndarray, yx: tuple[int, int]) -> tuple[int, ...]:
    return tuple(int(v) for v in img[yx])


def test_png_decodes_with_one_row_per_stage_and_legend_colours(demo_transfer, tmp_path):
    net, report = demo_transfer
    path = save_transfer_png(report, tmp_path / "transfer.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        img = np.asarray(im)
    figure = transfer_figure(report)
    assert np.array_equal(img, figure.image)
    # rows from the network itself: every encoder stage, every decoder stage, then the heads
    n_enc, n_dec = len(net.encoder.stages), len(net.decoder.stages)
    assert figure.rows == ([f"encoder stage {i}" for i in range(n_enc)] + [f"decoder stage {i}" for i in range(n_dec)]
                           + ["heads"])
    actions = {action_category(r.action) for r in report.rows}
    assert [e.action for e in figure.legend] == [a for a in ACTION_COLOURS if a in actions]
    assert img.shape[0] == figure_height(n_enc + n_dec + 1, 2, len(actions)) and img.shape[1] == figure.size[0]
    # one cell per conv layer group and per transposed conv / head; every tensor in exactly one cell
    convs = sum(len(s[0].convs) for s in net.encoder.stages) + sum(len(s.convs) for s in net.decoder.stages)
    assert len(figure.cells) == convs + len(net.decoder.transpconvs) + len(net.decoder.seg_layers)
    assert sum(c.tensors for c in figure.cells) == len(report.rows)

    copied = figure.cell("encoder.stages.1.0.convs.0")   # stage 1 of the checkpoint's 3, as is
    head = figure.cell("decoder.seg_layers.0")           # nnU-Net heads are never transferred by default
    assert {r.action for r in report.rows if cell_of(r.target_key) == copied.name} == {"copy"}
    assert {r.action for r in report.rows if cell_of(r.target_key) == head.name} == {"new"}
    copy_swatch = _pixel(img, _centre(figure.legend_entry("copy").box))
    new_swatch = _pixel(img, _centre(figure.legend_entry("new").box))
    assert _pixel(img, copied.centre) == copy_swatch == ACTION_COLOURS["copy"]
    assert _pixel(img, head.centre) == new_swatch == ACTION_COLOURS["new"]
    assert copy_swatch != new_swatch
    # an unused stage (3) is new everywhere, its share column says 0%: the picture agrees with the report
    assert all(set(c.params) == {"new"} for c in figure.cells if c.row == "encoder stage 3")
    shares = {e.action: e.share_params for e in figure.legend}
    assert sum(v for k, v in shares.items() if k not in ("new", "skip")) == pytest.approx(report.share_initialised)
    # dark text on the white background: the title and the legend are drawn
    dark = img.sum(axis=2) == 0
    assert dark[:40].sum() > 200 and dark[-40:].sum() > 100 and not dark[:, :8].any()

    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_transfer_png(report, path)
    assert save_transfer_png(report, path, overwrite=True) == path


def _centre(box: tuple[int, int, int, int]) -> tuple[int, int]:
    return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2


def test_compound_actions_take_the_most_telling_colour():
    assert action_category("permute+kernel") == "kernel"
    assert action_category("realign+permute+dense") == "dense"
    assert action_category("realign+channels") == "channels"
    assert action_category("realign+axes+slice") == "slice"
    assert action_category("copy") == "copy" and action_category("new") == "new"
    assert cell_of("encoder.stages.2.blocks.1.skip.1.conv.weight") == "encoder.stages.2.blocks.1"
    assert cell_of("decoder.nodes.x1_2.convs.0.norm.bias") == "decoder.nodes.x1_2.convs.0"
    assert cell_of("conv1.weight") == "conv1"


def test_cli_adapt_writes_the_png_and_refuses_to_overwrite_it(tmp_path, capsys):
    png = tmp_path / "out" / "transfer.png"
    argv = ["adapt", DEMO, "--plans", str(DEMO_PLANS), "--dataset-json", str(DEMO_DATASET), "--report-png", str(png)]
    assert main(argv) == 0
    assert f"written to {png}" in capsys.readouterr().out
    with Image.open(png) as im:
        first = np.asarray(im.convert("RGB"))
    assert first.shape[0] > 200 and first.shape[1] > 400
    before = png.stat().st_mtime_ns
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--report-png" in err and "--force" in err
    assert png.stat().st_mtime_ns == before
    assert main([*argv, "--force"]) == 0
    with Image.open(png) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), first)
    assert not list(png.parent.glob(".*.partial"))
