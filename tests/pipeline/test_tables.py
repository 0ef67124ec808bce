"""Tables end to end at smoke scale: numbers, files, resuming, failures and comparisons."""

from __future__ import annotations

import json
import math
import textwrap

import pandas as pd
import pytest

import genbench.tables as tables
from genbench.core.paths import configs_dir, results_dir
from genbench.runs.identity import config_hash, is_current
from genbench.tables import runner
from helpers import REPO
from helpers.tables import tiny_table

HQ_ANALYTIC = 100 * (1 - math.exp(-4.5))  # % of a 2D isotropic Gaussian within 3 standard deviations: 98.889


def lines(frame, dataset, metric):
    return frame[(frame["dataset"] == dataset) & (frame["metric"] == metric)].iloc[0]


def test_gmm_baselines_smoke_meets_the_planted_answers():
    written = tables.run_table("gmm-baselines", "smoke", log=lambda *_: None)
    for kind in ("md", "csv", "tex", "figure"):
        assert written[kind].is_file() and written[kind].stat().st_size > 0
    frame = pd.read_csv(written["csv"])
    assert {"row", "dataset", "metric", "unit", "estimator", "obtained", "obtained_std", "n", "published",
            "published_std", "source"} <= set(frame.columns)
    for key, k in (("ring8", 8), ("grid25", 25)):
        assert lines(frame, key, "modes_ali")["obtained"] == k
        assert lines(frame, key, "modes_veegan")["obtained"] == k
        hq = lines(frame, key, "high_quality_pct")
        se = math.sqrt(HQ_ANALYTIC * (100 - HQ_ANALYTIC) / 2500)
        assert abs(hq["obtained"] - HQ_ANALYTIC) < 3 * se
        nll, h = lines(frame, key, "nll"), lines(frame, key, "mixture_entropy")
        assert nll["estimator"] == "exact" and h["estimator"] == "estimate" and nll["unit"] == "nats"
        assert abs(nll["obtained"] - h["obtained"]) < 3 * math.hypot(nll["obtained_se"], h["obtained_se"])
    md = written["md"].read_text()
    assert "gmm2d/grid25" in md and "exact" in md and "nats" in md


TINY = tiny_table()


@pytest.fixture
def tiny_table(configs_copy):
    (configs_copy / "table" / "tiny.yaml").write_text(TINY)
    return "tiny"


def test_seeds_aggregate_and_published_numbers_sit_beside(tiny_table):
    written = tables.run_table(tiny_table, "smoke", log=lambda *_: None)
    frame = pd.read_csv(written["csv"])
    mob = frame[(frame["row"] == "MoB (K=3)") & (frame["metric"] == "nll")].iloc[0]
    runs = [json.loads(p.read_text()) for p in sorted(results_dir("runs", "tiny", "smoke").glob("mob-k-3--*.json"))]
    values = [next(r["value"] for r in run["results"] if r["metric"] == "nll") for run in runs]
    assert mob["n"] == 2 and mob["obtained"] == pytest.approx(sum(values) / 2)
    assert mob["obtained_std"] == pytest.approx(pd.Series(values).std())
    assert mob["published"] == 168.95 and mob["published_status"] == "R"
    assert "UNVERIFIED" in written["md"].read_text()
    for run in runs:
        assert run["git_commit"] and run["data"]["checksum"] and run["machine"]["cpus"] and run["wall_time_s"] > 0


def test_an_interrupted_table_resumes_without_rerunning_finished_runs(tiny_table, monkeypatch):
    real = runner.train_and_evaluate
    calls = []

    def killed_after_first(config, path, run_id, table=None, **kw):
        if calls:
            raise KeyboardInterrupt  # the user's Ctrl-C in the middle of the table
        calls.append(run_id)
        return real(config, path, run_id, table, **kw)

    monkeypatch.setattr(runner, "train_and_evaluate", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        tables.run_table(tiny_table, "smoke", log=lambda *_: None)
    first = calls[0]
    before = json.loads(results_dir("runs", "tiny", "smoke", f"{first}.json").read_text())

    rerun = []
    monkeypatch.setattr(runner, "train_and_evaluate", lambda *a, **k: rerun.append(a[2]) or real(*a, **k))
    tables.run_table(tiny_table, "smoke", log=lambda *_: None)
    assert first not in rerun and len(rerun) == 3
    after = json.loads(results_dir("runs", "tiny", "smoke", f"{first}.json").read_text())
    assert after["started"] == before["started"]

    # a changed config reruns exactly the runs it changes
    rerun.clear()
    spec = (configs_dir() / "table" / "tiny.yaml")
    spec.write_text(TINY.replace("model.components=3", "model.components=4"))
    tables.run_table(tiny_table, "smoke", log=lambda *_: None)
    assert sorted(rerun) == ["mob-k-3--digits--s0", "mob-k-3--digits--s1"]


def test_an_option_added_later_with_a_null_default_keeps_earlier_runs_current():
    old = {"model": {"name": "rbm", "k": 25, "constraints": None}, "seed": 0}
    record = {"config": old, "config_hash": config_hash(old)}
    added = {"model": {**old["model"], "final_momentum": None}, "seed": 0}
    assert is_current(record, old) and is_current(record, added)
    assert not is_current(record, {"model": {**old["model"], "final_momentum": 0.9}, "seed": 0})
    assert not is_current(record, {"model": {**old["model"], "constraints": {"clip": 1.0}}, "seed": 0})
    assert not is_current(record, {"model": {**old["model"], "k": 1}, "seed": 0})


DIVERGING = '''
import lightning as L
import torch


class Diverging(L.LightningModule):
    """Its loss becomes NaN on the third step."""

    def __init__(self, info):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, x, i):
        return self.w.sum() * (float("nan") if i >= 2 else 1.0)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def log_prob(self, x):
        return torch.zeros(x.shape[0]) + self.w

    def sample(self, n):
        return torch.zeros(n, 1, 8, 8)
'''


def test_diverged_and_failed_runs_are_recorded_and_the_table_still_renders(configs_copy, tmp_path):
    (tmp_path / "diverging.py").write_text(DIVERGING)
    (configs_copy / "table" / "bad.yaml").write_text(textwrap.dedent(f"""
        title: bad runs
        datasets:
          digits: {{label: digits, overrides: [data=digits]}}
        models:
          - label: diverging
            overrides: [model=custom, "model.name={tmp_path / 'diverging.py'}:Diverging", trainer.max_epochs=3]
          - label: wrong space
            overrides: [model=true_mixture]
          - label: fine
            overrides: [model=independent_bernoulli, trainer.max_epochs=1]
        metrics: [nll]
        scales:
          smoke: {{seeds: [0]}}
        """))
    written = tables.run_table("bad", "smoke", log=lambda *_: None)
    frame = pd.read_csv(written["csv"])
    status = dict(zip(frame["row"], frame["status"]))
    assert status["diverging"].startswith("1 diverged") and "non-finite" in status["diverging"]
    assert status["wrong space"].startswith("1 failed") and "supports continuous" in status["wrong space"]
    assert status["fine"] == "1 finished"
    md = written["md"].read_text()
    assert "diverged" in md and "failed" in md
    record = json.loads(results_dir("runs", "bad", "smoke", "diverging--digits--s0.json").read_text())
    assert record["status"] == "diverged" and record["steps"] <= 3


def test_compare_ranks_a_new_model_among_the_baselines(tiny_table):
    from genbench.cli import main

    assert main(["compare", "model=examples/fvsbn.py:FVSBN", "table=tiny", "trainer.max_epochs=5"]) == 0
    md = results_dir("tables", "tiny--compare-examples-fvsbn-py-fvsbn", "smoke.md").read_text()
    assert "FVSBN (compared, examples/fvsbn.py)" in md and "Ranking by nll" in md


@pytest.mark.mnist
@pytest.mark.slow  # ~35 s on real MNIST; MoB and independent pixels have their own tests (test_baselines.py)
def test_binary_baselines_on_real_mnist(mnist_root):
    written = tables.run_table("binary-baselines", "smoke", log=lambda *_: None)
    frame = pd.read_csv(written["csv"])
    mnist = frame[(frame["dataset"] == "mnist") & (frame["metric"] == "nll")]
    assert set(mnist["variant"]) >= {"mnist/dynamic"}
    mob500 = mnist[mnist["row"] == "MoB (K=500)"].iloc[0]
    assert mob500["published"] == 137.64 and mob500["published_status"] == "R"
    ib = mnist[mnist["row"] == "independent Bernoulli"].iloc[0]
    assert 190 < ib["obtained"] < 220  # independent pixels on binarized MNIST: about 206 nats
    assert 120 < mob500["obtained"] < ib["obtained"]


INTERRUPTED = '''
import lightning as L
import torch


class CtrlC(L.LightningModule):
    def __init__(self, info):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, x, i):
        raise KeyboardInterrupt

    def log_prob(self, x):
        return x.flatten(1).sum(1) * self.w

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
'''


def test_ctrl_c_inside_training_is_recorded_as_interrupted_not_finished(tmp_path):
    from genbench.runs.execute import train_and_evaluate

    (tmp_path / "ctrlc.py").write_text(INTERRUPTED)
    config = tables.compose(["data=digits", "model=custom", f"model.name={tmp_path / 'ctrlc.py'}:CtrlC"])
    path = tmp_path / "record.json"
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train_and_evaluate(config, path, "ctrlc")
    assert json.loads(path.read_text())["status"] == "interrupted"


def test_runs_that_differ_only_in_evaluation_share_one_training(configs_copy):
    from genbench.runs.execute import train_and_evaluate

    base = ["data=digits", "model=mixture_of_bernoullis", "trainer.max_epochs=3"]
    first = train_and_evaluate(tables.compose(base), results_dir("a.json"), "a")
    second = train_and_evaluate(tables.compose([*base, "evaluation.likelihood.bound_k=7"]), results_dir("b.json"), "b")
    assert first["checkpoint"] == second["checkpoint"] and second.get("reused_training") and not first.get("reused_training")
    assert [r["value"] for r in first["results"]] == [r["value"] for r in second["results"]]
    third = train_and_evaluate(tables.compose([*base, "seed=1"]), results_dir("c.json"), "c")
    assert third["checkpoint"] != first["checkpoint"] and not third.get("reused_training")


def test_render_only_and_selected_rows_and_seeds(tiny_table, monkeypatch):
    real, ran = runner.train_and_evaluate, []
    monkeypatch.setattr(runner, "train_and_evaluate", lambda *a, **k: pytest.fail("nothing may run"))
    written = tables.run_table(tiny_table, "smoke", log=lambda *_: None, render_only=True)
    assert "2 missing (not run yet)" in written["md"].read_text()  # two seeds of each row
    monkeypatch.setattr(runner, "train_and_evaluate", lambda *a, **k: ran.append(a[2]) or real(*a, **k))
    tables.run_table(tiny_table, "smoke", log=lambda *_: None, rows="MoB", seeds=[1])
    assert ran == ["mob-k-3--digits--s1"]
    tables.run_table(tiny_table, "smoke", log=lambda *_: None, rows="MoB")
    assert ran == ["mob-k-3--digits--s1", "mob-k-3--digits--s0"]  # seed 1 was done before


def test_numbers_format_with_infinite_interval_ends():
    assert tables.fmt(float("-inf")) == "−∞" and tables.fmt(3.0) == "3" and tables.fmt(0.012345) == "0.0123"


def test_random_overrides_depend_only_on_the_seed_and_stay_in_range():
    spec = {"model.lr": {"log_uniform": [1e-5, 1e-3]}, "model.beta1": {"uniform": [0.2, 0.8]}}
    draws = [dict(o.split("=") for o in tables.random_overrides(spec, seed)) for seed in range(20)]
    assert tables.random_overrides(spec, 3) == tables.random_overrides(spec, 3)
    assert len({d["model.lr"] for d in draws}) == 20
    assert all(1e-5 <= float(d["model.lr"]) <= 1e-3 and 0.2 <= float(d["model.beta1"]) <= 0.8 for d in draws)
    # log-uniform: about half the draws below the geometric midpoint 1e-4
    assert 5 <= sum(float(d["model.lr"]) < 1e-4 for d in draws) <= 15
    with pytest.raises(tables.TableError, match="uniform, log_uniform"):
        tables.random_overrides({"model.lr": {"normal": [0, 1]}}, 0)


def test_random_overrides_reach_the_runs_and_rows_share_them(configs_copy):
    (configs_copy / "table" / "drawn.yaml").write_text(TINY.replace(
        "smoke: {seeds: [0, 1]}", "smoke: {seeds: [0, 1], random_overrides: {model.pseudocount: {uniform: [0.01, 1.0]}}}"))
    planned = tables.plan(tables.load_table("drawn"), "smoke")
    drawn = {(p.row, p.seed): [o for o in p.overrides if o.startswith("model.pseudocount=")] for p in planned}
    assert drawn[("independent Bernoulli", 0)] == drawn[("MoB (K=3)", 0)] != drawn[("MoB (K=3)", 1)]


FIGURE_FN = '''
def draw(runs, path):
    import matplotlib.pyplot as plt
    import torch
    fig, axes = plt.subplots(1, len(runs))
    for ax, run in zip(axes, runs):
        with torch.no_grad():
            x = run.model.sample(16).reshape(16, -1)
        ax.imshow(x.numpy()); ax.set_title(f"{run.label} ({run.status})")
    fig.savefig(path); plt.close(fig)
    (path.parent / "seen.txt").write_text(";".join(f"{r.label}|{r.seed}|{r.model.training}" for r in runs))
    return path
'''


def test_table_figures_receive_the_trained_models_of_one_seed(tiny_table, configs_copy, tmp_path):
    (tmp_path / "figfn.py").write_text(FIGURE_FN)
    spec = (configs_copy / "table" / "tiny.yaml").read_text()
    (configs_copy / "table" / "tiny.yaml").write_text(
        spec + f"figures:\n  - {{function: '{tmp_path / 'figfn.py'}:draw', file: panel.png, dataset: digits, seed: 1}}\n")
    written = tables.run_table(tiny_table, "smoke", log=lambda *_: None)
    panel = written["figure:panel"]
    assert panel.is_file() and panel.name == "smoke_panel.png"
    assert (panel.parent / "seen.txt").read_text() == "independent Bernoulli|1|False;MoB (K=3)|1|False"
    assert "smoke_panel.png" in written["md"].read_text()


def test_curves_plot_the_swept_rows_and_skip_rows_not_run(tiny_table, configs_copy):
    spec = (configs_copy / "table" / "tiny.yaml").read_text()
    (configs_copy / "table" / "tiny.yaml").write_text(spec + """curves:
- title: NLL against K
  xlabel: K
  metric: nll
  dataset: digits
  series:
    mixtures: [[3, "MoB (K=3)"], [10, not a row of this table], [1, independent Bernoulli]]
""")
    written = tables.run_table(tiny_table, "smoke", log=lambda *_: None)
    assert written["figure:curves"].is_file() and "smoke_curves.png" in written["md"].read_text()
    frame = pd.read_csv(written["csv"])
    panel = tables.load_table(tiny_table)["curves"][0]
    nll = {row: lines(frame[frame["row"] == row], "digits", "nll") for row in ("independent Bernoulli", "MoB (K=3)")}
    points = tables.curve_points(panel, frame)
    assert list(points) == ["mixtures"] and [x for x, _, _ in points["mixtures"]] == [1, 3]  # sorted by x, row 10 absent
    for (_, y, spread), row in zip(points["mixtures"], ("independent Bernoulli", "MoB (K=3)")):
        assert (y, spread) == pytest.approx((nll[row]["obtained"], nll[row]["obtained_std"]))


def test_each_scale_of_a_table_keeps_its_own_run_figures():
    from genbench.runs.execute import figure_dir_for

    smoke = figure_dir_for(results_dir("runs", "t", "smoke", "r.json"), "r")
    paper = figure_dir_for(results_dir("runs", "t", "paper", "r.json"), "r")
    assert smoke == results_dir("figures", "t", "smoke", "r") and paper == results_dir("figures", "t", "paper", "r")
    assert figure_dir_for(results_dir("runs", "train", "r.json"), "r") == results_dir("figures", "train", "r")
    assert figure_dir_for(results_dir("elsewhere.json"), "r") == results_dir("figures", "train", "r")


TWO_SCALES = TINY.replace("smoke: {seeds: [0, 1]}", "smoke: {seeds: [0]}\n  paper: {seeds: [0, 1]}")


def test_each_scale_keeps_its_render_and_a_smaller_render_never_replaces_a_larger_one(configs_copy):
    (configs_copy / "table" / "tiny.yaml").write_text(TWO_SCALES)
    quiet = dict(log=lambda *_: None)
    paper = tables.run_table("tiny", "paper", **quiet)
    measured = {k: paper[k].read_bytes() for k in ("md", "csv", "tex", "json")}
    smoke = tables.run_table("tiny", "smoke", **quiet)
    assert smoke["md"].parent == paper["md"].parent and smoke["md"].name == "smoke.md" and paper["md"].name == "paper.md"
    assert {k: paper[k].read_bytes() for k in measured} == measured  # a smoke render leaves the paper one alone
    assert json.loads(paper["json"].read_text())["runs"] == {"planned": 4, "finished": 4}
    index = results_dir("tables", "README.md").read_text()
    assert "| [tiny](tiny/paper.md) | paper | 4 / 4 |" in index and "| [tiny](tiny/smoke.md) | smoke | 2 / 2 |" in index

    results_dir("runs", "tiny", "paper", "mob-k-3--digits--s1.json").unlink()  # a record lost: 3 of 4 finished
    kept = tables.run_table("tiny", "paper", render_only=True, **quiet)
    assert kept.kept and {k: paper[k].read_bytes() for k in measured} == measured
    assert "1 missing" in kept.markdown  # the smaller render is shown, not written
    replaced = tables.run_table("tiny", "paper", render_only=True, overwrite=True, **quiet)
    assert not replaced.kept and "3 finished, 1 missing of 4 planned runs" in replaced["md"].read_text()


def test_seed_statistics_combine_the_estimators_uncertainty_correctly():
    runs = [{"value": v, "unit": "nats", "estimator": "estimate", "std_error": se, "interval": (v - a, v + b)}
            for v, se, a, b in ((10.0, 0.3, 1.0, 0.5), (12.0, 0.4, 2.0, 1.5))]
    s = tables.stats(runs)
    assert s["obtained"] == 11.0 and s["obtained_std"] == pytest.approx(math.sqrt(2))
    assert s["obtained_se"] == pytest.approx(0.25)  # √(0.3² + 0.4²)/2: the seed mean's estimator error
    assert (s["obtained_low"], s["obtained_high"]) == (9.5, 12.0)  # the mean of the seeds' intervals
    assert math.isnan(tables.stats([runs[0], {**runs[1], "std_error": None, "interval": None}])["obtained_se"])
    undefined = {**runs[1], "value": float("nan")}  # e.g. a reverse KL with no high-quality sample
    s = tables.stats([runs[0], undefined])
    assert (s["n"], s["n_undefined"], s["obtained"]) == (1, 1, 10.0)


def test_the_summary_figure_keeps_long_row_labels_inside_the_image(tmp_path):
    import matplotlib.image

    from genbench.tables.figures import summary_figure

    label = "RBM 500 h, CD-25 with rbm.m's momentum schedule (0.5 → 0.9 after 5 epochs)"
    frame = pd.DataFrame([
        {"row": label, "dataset": "mnist", "metric": "nll", "unit": "nats", "obtained": 84.2, "obtained_std": float("nan"),
         "obtained_se": 0.1, "obtained_low": 83.9, "obtained_high": 84.4, "published": 86.34, "published_std": float("nan"),
         "published_id": "x"},
        {"row": "short", "dataset": "mnist", "metric": "nll", "unit": "nats", "obtained": 90.0, "obtained_std": 1.0,
         "obtained_se": 0.1, "obtained_low": float("nan"), "obtained_high": float("nan"), "published": float("nan"),
         "published_std": float("nan"), "published_id": float("nan")}])
    path = summary_figure({"metrics": ["nll"], "datasets": {"mnist": {"label": "MNIST"}}}, frame, tmp_path / "s.png")
    image = matplotlib.image.imread(path)
    assert (image[:, :3, :3] > 0.99).all()  # a white margin on the left: no label runs off the edge


def test_every_measured_render_in_the_repository_has_its_run_records():
    """A committed cpu or paper render is rebuilt from committed records (--render-only on a fresh clone): as many
    finished records as the render counts, each current for the table's config of that run (files git does not
    track yet, e.g. a table still running, are left out)."""
    import subprocess

    root = REPO
    repo = root / "reference"
    listed = subprocess.run(["git", "ls-files", "reference"], cwd=root, capture_output=True, text=True)
    committed = {root / f for f in listed.stdout.split()} if listed.returncode == 0 else None  # else: every file
    keep = (lambda p: p in committed) if committed is not None else (lambda p: True)
    renders = [p for p in sorted((repo / "tables").glob("*/*.json")) if p.stem in ("cpu", "paper") and keep(p)]
    assert renders, "no measured render in reference/tables"
    for render in renders:
        name, scale = render.parent.name, render.stem
        planned = {p.run_id: p for p in tables.plan(tables.load_table(name), scale)}
        records = [json.loads(p.read_text()) for p in (repo / "runs" / name / scale).glob("*.json") if keep(p)]
        finished = [r for r in records if r["status"] == "finished" and r["run_id"] in planned]
        assert len(finished) == json.loads(render.read_text())["runs"].get("finished", 0), (name, scale)
        for r in finished:
            assert is_current(r, tables.compose(planned[r["run_id"]].overrides)), (name, scale, r["run_id"])
