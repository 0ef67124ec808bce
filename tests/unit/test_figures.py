"""Figures a reader misread, each pinned where it went wrong: x tick labels running into each other, a legend entry
with nothing drawn, recalled (status R) published values drawn like verified ones, a figure that does not say its
table and scale, an axis labelled "(none)", and a 2D density figure without the model's density.

Figures are measured as drawn: ``Figure.savefig`` is wrapped to keep each saved figure, and ``Figure.clear`` (the
figures are cleared once saved) leaves a saved one as it was."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from genbench.tables.aggregate import COLUMNS
from genbench.tables.figures import cost_figure, curves_figure, summary_figure

NAN = float("nan")


@pytest.fixture
def drawn(monkeypatch) -> list[Figure]:
    """The figures saved during the test, drawn at their own dpi, in the order saved."""
    figures: list[Figure] = []
    save, clear = Figure.savefig, Figure.clear

    def savefig(fig, *args, **kwargs):
        save(fig, *args, **kwargs)
        figures.append(fig)

    monkeypatch.setattr(Figure, "savefig", savefig)
    monkeypatch.setattr(Figure, "clear", lambda fig, *a, **kw: fig if fig in figures else clear(fig, *a, **kw))
    return figures


def line(row: str, dataset: str, obtained: float, metric: str = "nll", unit="nats", **kw) -> dict:
    """One frame line as aggregate() writes it; columns not given are missing (NaN)."""
    return {**dict.fromkeys(COLUMNS, NAN), "row": row, "dataset": dataset, "metric": metric, "unit": unit,
            "obtained": obtained, "n": 1, **kw}


def frame(*lines: dict) -> pd.DataFrame:
    return pd.DataFrame(list(lines), columns=COLUMNS)


def spec(name: str = "toy-table", metric: str = "nll", datasets=("a",), **kw) -> dict:
    return {"name": name, "metrics": [metric], "datasets": {k: {"label": f"dataset {k}"} for k in datasets},
            "models": [], **kw}


def drawn_tick_labels(ax, which: str = "x") -> list:
    """The tick labels the axes draws: non-empty, visible, at a location inside its view."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = sorted(axis.get_view_interval())
    tol = 1e-9 * (hi - lo)
    return [t.label1 for t in axis.get_major_ticks()
            if lo - tol <= t.get_loc() <= hi + tol and t.label1.get_visible() and t.label1.get_text()]


def overlaps(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of x (or y) tick labels of one axes whose boxes overlap, measured with the figure's renderer."""
    canvas = fig.canvas if hasattr(fig.canvas, "get_renderer") else FigureCanvasAgg(fig)  # pyplot's, once closed
    canvas.draw()
    renderer = canvas.get_renderer()
    found = []
    for ax in fig.axes:
        for which in "xy":
            labels = drawn_tick_labels(ax, which)
            boxes = [t.get_window_extent(renderer) for t in labels]
            found += [(labels[i].get_text(), labels[j].get_text()) for i in range(len(boxes))
                      for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
    return found


def gmm_baselines() -> tuple[dict, pd.DataFrame]:
    """gmm-baselines at smoke scale: the true mixture's NLL with a tight interval (long numbers: −4.2875)."""
    return (spec("gmm-baselines", datasets=("ring8", "grid25")),
            frame(line("true mixture", "ring8", -4.2775, obtained_low=-4.2875, obtained_high=-4.2675),
                  line("true mixture", "grid25", 0.0808, obtained_low=0.0705, obtained_high=0.0911)))


def costs() -> tuple[dict, pd.DataFrame]:
    """A cost figure whose training times span three decades (1, 2, 5 × 10^k labels ran together)."""
    rows = {"independent Bernoulli": 3.1, "MoB (K=500)": 420.0, "RBM PCD-1": 190.0, "RBM CD-25": 2500.0,
            "VAE, 1 stochastic layer, k=50": 1500.0, "IWAE, 1 stochastic layer, k=50": 1400.0}
    lines = [x for i, (row, t) in enumerate(rows.items())
             for x in (line(row, "a", 80.0 + 10 * i), line(row, "a", t, "train_time_s", "s"),
                       line(row, "a", 20.0 + i, "eval_time_s", "s"))]
    models = [{"label": row, "family": row.split(",")[0]} for row in rows]
    return spec("mnist-nll", metric="nll", models=models, cost_figure={"metric": "nll"}), frame(*lines)


@pytest.mark.parametrize("case", ["summary", "cost"])
def test_no_two_tick_labels_overlap(case, drawn, tmp_path):
    table, data = gmm_baselines() if case == "summary" else costs()
    draw = summary_figure if case == "summary" else cost_figure
    assert draw(table, data, tmp_path / f"smoke_{case}.png") is not None
    (fig,) = drawn
    assert all(len(drawn_tick_labels(ax)) >= 2 for ax in fig.axes)  # thinned, not emptied
    assert overlaps(fig) == []


def artist_has_data(artist) -> bool:
    if isinstance(artist, ErrorbarContainer):
        artist = artist.lines[0]
    data = artist.get_xdata() if hasattr(artist, "get_xdata") else artist.get_offsets()[:, 0]
    return bool(np.isfinite(np.asarray(data, float)).any())


def test_a_legend_lists_only_what_is_drawn(drawn, tmp_path):
    """The first row has no published number, the second has one: "published" is listed once, for a drawn point."""
    data = frame(line("no published number", "a", 90.0),
                 line("published", "a", 84.0, published=86.3, published_status="S", published_id="x"))
    summary_figure(spec(), data, tmp_path / "smoke_summary.png")
    (fig,) = drawn
    handles = [(label, h) for ax in fig.axes for h, label in zip(*ax.get_legend_handles_labels())]
    shown = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert any("published" in text for text in shown)
    for text in shown:
        assert any(label == text and artist_has_data(h) for label, h in handles), f"{text!r}: nothing drawn"


def test_recalled_published_values_are_drawn_hollow_and_the_legend_says_so(drawn, tmp_path):
    data = frame(line("verified", "a", 84.0, published=86.34, published_status="P", published_id="p"),
                 line("recalled", "a", 90.0, published=88.33, published_status="R", published_id="r"))
    summary_figure(spec(), data, tmp_path / "smoke_summary.png")
    (fig,) = drawn
    face = {x: c.lines[0].get_markerfacecolor() for ax in fig.axes for c in ax.containers
            if isinstance(c, ErrorbarContainer) for x in c.lines[0].get_xdata()}
    assert face[88.33] != face[86.34] and face[88.33] == "none"
    shown = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert any("R" in text and "unverified" in text for text in shown)


FIGURES = (summary_figure, curves_figure, cost_figure)


def small_table(metric: str = "nll", units=("nats", "nats")) -> tuple[dict, pd.DataFrame]:
    """A table with a summary, a curves panel and a cost figure: two rows on one dataset, their ``units``."""
    curves = [{"title": "against the width", "xlabel": "width", "metric": metric, "dataset": "a",
               "series": {"ours": [[1, "r1"], [2, "r2"]]}}]
    table = spec(metric=metric, curves=curves, models=[{"label": "r1"}, {"label": "r2"}],
                 cost_figure={"metric": metric})
    data = frame(*(x for r, v, unit in (("r1", 90.0, units[0]), ("r2", 85.0, units[1]))
                   for x in (line(r, "a", v, metric, unit), line(r, "a", 30.0 + v, "train_time_s", "s"),
                             line(r, "a", v / 10, "eval_time_s", "s"))))
    return table, data


@pytest.mark.parametrize("scale_in_name", [True, False])
def test_every_table_figure_names_its_table_and_scale(drawn, tmp_path, scale_in_name):
    """From the file name write_render gives (``smoke_summary.png``) or from the ``scale`` argument."""
    table, data = small_table()
    for draw in FIGURES:
        if scale_in_name:
            assert draw(table, data, tmp_path / f"smoke_{draw.__name__}.png")
        else:
            assert draw(table, data, tmp_path / f"{draw.__name__}.png", scale="smoke")
    assert len(drawn) == 3
    for fig in drawn:
        assert "toy-table" in fig.get_suptitle() and "smoke" in fig.get_suptitle(), fig.get_suptitle()


def test_a_unit_of_none_is_left_off_the_axis_label(drawn, tmp_path):
    """A unit of "none" or none at all: the axis names the metric alone."""
    table, data = small_table("reconstruction_error", units=("none", NAN))
    for draw in FIGURES:
        assert draw(table, data, tmp_path / f"smoke_{draw.__name__}.png")
    labels = [lab for fig in drawn for ax in fig.axes if ax.axison for lab in (ax.get_xlabel(), ax.get_ylabel())]
    assert "reconstruction_error" in labels
    assert not [lab for lab in labels if "none" in lab or "()" in lab or "nan" in lab]


@pytest.mark.parametrize("model", [
    {"name": "realnvp", "couplings": 2, "hidden": 16},
    {"name": "zuko", "flow": "NSF", "flow_kwargs": {"transforms": 2, "bins": 8, "hidden_features": [16, 16]}}])
def test_a_2d_flow_density_figure_shows_the_model_density(model, drawn, tmp_path):
    """The model's exp(log p) on the grid, beside the true density: a panel that is not all background (the figure
    used to show a histogram of the samples and the true density only)."""
    from genbench.data import build_datamodule
    from genbench.evaluation.samples import save_density_2d
    from genbench.models import build_model

    torch.manual_seed(0)
    dm = build_datamodule({"name": "gmm2d", "mixture": "ring8", "train_size": 200, "val_size": 0, "test_size": 100,
                           "batch_size": 100})
    flow = build_model(model, dm.info).eval()
    with torch.no_grad():
        x = flow.sample(500)
    save_density_2d(x, tmp_path / "density.png", mixture=dm.info.mixture, log_prob=flow.log_prob)
    (fig,) = drawn
    fig.canvas.draw()
    titles = [ax.get_title() for ax in fig.axes]
    assert "model density" in titles and "true density" in titles
    ax = fig.axes[titles.index("model density")]
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    box = ax.get_window_extent()
    height = pixels.shape[0]
    panel = pixels[int(height - box.y1) + 2:int(height - box.y0) - 2, int(box.x0) + 2:int(box.x1) - 2].reshape(-1, 3)
    background = np.array([[255, 255, 255], (np.array(ax.collections[0].cmap(0.0)[:3]) * 255).round()])
    is_background = (np.abs(panel[:, None] - background[None]).max(-1) <= 2).any(-1)
    assert (~is_background).mean() > 0.05


def test_sample_figures_draw_the_model_density_of_a_2d_flow(drawn, tmp_path):
    """The run's own density.png (genbench.evaluation.sample_figures) has the model's density panel."""
    from genbench.data import build_datamodule
    from genbench.evaluation import sample_figures
    from genbench.models import build_model

    dm = build_datamodule({"name": "gmm2d", "mixture": "ring8", "train_size": 200, "val_size": 0, "test_size": 100,
                           "batch_size": 100})
    flow = build_model({"name": "zuko", "flow": "NSF", "flow_kwargs": {"transforms": 2, "hidden_features": [16, 16]}},
                       dm.info).eval()
    sample_figures(flow, dm, tmp_path)
    assert any(ax.get_title() == "model density" for fig in drawn for ax in fig.axes)

