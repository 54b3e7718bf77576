"""`python -m vidops.demo` on its synthetic clip: the sheet and what its panels must show."""
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("matplotlib")

from vidops import demo  # noqa: E402


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("demo") / "sheet.png")
    return demo.run(out=out, frames=12, size=64)


def test_sheet_has_every_panel_and_its_size(result):
    import matplotlib.image as mimage

    assert os.path.exists(result["path"])
    img = mimage.imread(result["path"])
    s = result["sheet"]
    assert img.shape[:2] == (s["height"], s["width"])
    assert s["width"] <= 2000 and s["height"] > 0
    assert s["rows"] == list(demo.PANELS)
    assert set(result["timings"]) >= {"busy_quiet", "pixelwise_temporal_projection", "temporal_squeeze"}


def test_busy_is_brighter_on_the_moving_disc(result):
    busy = result["panels"]["busy"][0].abs().mean(0)            # (S, H, W)
    size = busy.shape[-1]
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    ratios = []
    for s in range(busy.shape[0]):
        cy, cx = result["centres"][3 * s + 1]                    # the disc in the middle of the triplet
        near = (ys - cy) ** 2 + (xs - cx) ** 2 <= (9 + 6) ** 2
        if near.sum() == 0 or (~near).sum() == 0:
            continue
        ratios.append(float(busy[s][near].mean() / busy[s][~near].mean()))
    assert ratios and min(ratios) > 3.0, ratios


def test_dynamic_appearance_vanishes_on_a_static_clip(tmp_path):
    static = demo.run(out=str(tmp_path / "static.png"), frames=6, size=48, static=True)
    dyn = static["panels"]["dynamic appearance"]
    moving = demo.run(out=str(tmp_path / "moving.png"), frames=6, size=48)["panels"]["dynamic appearance"]
    assert dyn.abs().max() < 1e-4 * max(moving.abs().max().item(), 1e-3)


def test_attention_peaks_on_the_query_trajectory(result):
    a = result["attention"]                                      # (T, 28, 28), sums to 1
    torch.testing.assert_close(a.sum(), torch.tensor(1.0), rtol=1e-4, atol=1e-4)
    t, yq, xq = result["query"]
    peak = a[t].flatten().argmax()
    py, px = divmod(int(peak), a.shape[-1])
    assert abs(py - yq * a.shape[-1]) <= 4 and abs(px - xq * a.shape[-1]) <= 4


def test_command_line(tmp_path):
    out = tmp_path / "cli.png"
    proc = subprocess.run([sys.executable, "-m", "vidops.demo", "--out", str(out), "--frames", "6", "--size", "48"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and "busy_quiet:" in proc.stdout
    assert out.exists()
