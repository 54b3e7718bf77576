"""Benchmark charts of any number of panels show their whole title and legend."""
import pytest
import torch

from vidops.bench import report


def _result(n_ops: int, providers=("reference", "vidops_cpu", "channels_last_3d_reference")):
    records = []
    for o in range(n_ops):
        for c in range(2):
            key = dict(op="models" if n_ops == 1 else f"op{o}", case=f"case{c} N=1", mode="fwd", dtype="float32")
            for i, p in enumerate(providers):
                records.append(dict(key, provider=p, median_ms=10.0 / (i + 1), speedup=float(i + 1), targets=[]))
    header = {"device_name": "AMD EPYC 9654 96-Core Processor", "threads": 2, "torch": torch.__version__,
              "git_commit": "0123456789abcdef", "timestamp": "2026-12-07T05:00:00+00:00"}
    return {"header": header, "records": records}


@pytest.mark.parametrize("n_ops", [1, 2, 3, 7])
def test_title_and_legend_inside_the_image(n_ops, tmp_path, monkeypatch):
    plt = pytest.importorskip("matplotlib.pyplot")
    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    result = _result(n_ops)
    assert report.write_chart(result, str(tmp_path / "c.png")) is None
    fig = figures[-1]
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    texts = [fig._suptitle] + [t for legend in fig.legends for t in legend.get_texts()]
    extents = [fig._suptitle.get_window_extent(renderer)] + [lg.get_window_extent(renderer) for lg in fig.legends]
    for t, e in zip(texts, extents):
        assert e.x0 >= box.x0 and e.x1 <= box.x1 and e.y1 <= box.y1, f"{t.get_text()!r} {e} outside {box}"
    # the legend sits below the title, the panels below the legend
    title, legend = extents[0], extents[1]
    assert legend.y1 <= title.y0 + 1
    top_of_axes = max(ax.get_tightbbox(renderer).y1 for ax in fig.axes)
    assert top_of_axes <= legend.y0 + 1
    real_close(fig)


def test_three_columns_keep_a_one_line_header():
    layout = report.chart_layout(_result(3))
    assert layout["size_px"][0] == round(3 * report.PANEL_W_IN * report.CHART_DPI)
    assert len(layout["header"]["title"]) == 1 and layout["header"]["legend_rows"] == 1
    one = report.chart_layout(_result(1))
    assert one["size_px"][0] == round(report.MIN_CHART_W_IN * report.CHART_DPI)
