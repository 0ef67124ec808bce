"""The cross-family table (mnist-nll) and what it stands on: rows that repeat another table's row (``same_as``)
compose to that row's exact config, a run another table measured is copied from its record instead of rerun, and
every run records the wall time of its training (kept with the trained model) and of its evaluation."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

from genbench import tables
from genbench.core.paths import models_dir, results_dir
from genbench.runs.identity import config_hash
from genbench.tables.aggregate import cost_results
from genbench.tables.spec import same_as
from genbench.core.errors import TableError


def same_as_runs():
    """(table, scale, planned run) of every same_as row of every table, at every scale the row runs."""
    out = []
    for name in tables.table_names():
        spec = tables.load_table(name)
        rows = {m["label"]: m for m in spec["models"]}
        for scale in spec["scales"]:
            out += [(name, scale, p) for p in tables.plan(spec, scale) if "same_as" in rows[p.row]]
    return out


def test_same_as_rows_compose_to_the_config_of_the_row_they_repeat():
    """Config for config (the hash that decides whether a record is current), at the scale the row maps to."""
    runs = same_as_runs()
    assert len(runs) >= 20  # mnist-nll's rows
    for name, scale, p in runs:
        row = next(m for m in tables.load_table(name)["models"] if m["label"] == p.row)
        src, src_row, src_scale = same_as(row, scale)
        theirs = next(q for q in tables.plan(src, src_scale) if q.row == src_row["label"]
                      and q.dataset == row["same_as"]["dataset"] and q.seed == p.seed)
        assert config_hash(tables.compose(p.overrides)) == config_hash(tables.compose(theirs.overrides)), (name, p.run_id)
        if not row.get("published"):
            assert p.published == (src_row.get("published") or {}).get(row["same_as"]["dataset"], []), p.run_id


def test_mnist_nll_has_every_family_in_its_sections():
    spec = tables.load_table("mnist-nll")
    families = {(p.dataset, next(m["family"] for m in spec["models"] if m["label"] == p.row))
                for p in tables.plan(spec, "cpu")}
    assert {f for d, f in families if d == "dynamic"} == {"baseline", "RBM", "VAE"}
    assert {f for d, f in families if d == "larochelle"} == {"autoregressive"}
    assert {f for d, f in families if d == "grey"} == {"flow", "autoregressive"}
    assert {"train_time_s", "eval_time_s"} <= set(spec["metrics"])


def write_table(configs, name, spec):
    (configs / "table" / f"{name}.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))


def records(table, scale="smoke"):
    return {p.stem: json.loads(p.read_text()) for p in results_dir("runs", table, scale).glob("*.json")}


MOB = {"label": "MoB (K=10)", "overrides": ["model=mixture_of_bernoullis", "model.components=10", "trainer.max_epochs=3"]}


@pytest.fixture
def source_table(configs_copy):
    """A one-row table on digits, run once at smoke scale."""
    write_table(configs_copy, "source", {
        "title": "source", "datasets": {"digits": {"label": "digits", "overrides": ["data=digits", "data.variant=dynamic"]}},
        "models": [MOB], "metrics": ["nll"], "scales": {"smoke": {"seeds": [0]}}})
    tables.run_table("source", "smoke", log=lambda *_: None)
    return configs_copy


def test_a_same_as_row_copies_the_measured_record_instead_of_training_again(source_table):
    (source,) = records("source").values()
    assert source["train_time_s"] > 0 and source["eval_time_s"] > 0 and source["status"] == "finished"
    trained_before = sorted(p.name for p in models_dir("trained").iterdir())
    write_table(source_table, "cross", {
        "title": "cross", "datasets": {"bin": {"label": "digits, binarized"}},
        "models": [{"label": "MoB again", "family": "baseline", "same_as": {"table": "source", "row": "MoB (K=10)", "dataset": "digits"}},
                   {"label": "MoB, more components", "family": "mixture",
                    "same_as": {"table": "source", "row": "MoB (K=10)", "dataset": "digits"}, "overrides": ["model.components=12"]}],
        "metrics": ["nll", "train_time_s", "eval_time_s", "wall_time_s"], "cost_figure": {"metric": "nll"},
        "scales": {"smoke": {"seeds": [0]}}})
    logged = []
    written = tables.run_table("cross", "smoke", log=logged.append)
    again, more = (records("cross")[f"{tables.slug(label)}--bin--s0"] for label in ("MoB again", "MoB, more components"))
    assert again["reused_record"] == "source/smoke/mob-k-10--digits--s0.json" and again["table"] == "cross"
    assert again["results"] == source["results"] and again["train_time_s"] == source["train_time_s"]
    assert any("the same run as source/smoke/" in line for line in logged)
    assert "reused_record" not in more and more["config"]["model"]["components"] == 12  # a changed config is run
    trained_after = sorted(p.name for p in models_dir("trained").iterdir())
    assert len(trained_after) == len(trained_before) + 1  # only the changed row trained
    frame = pd.read_csv(written["csv"])
    costs = frame[frame["metric"].isin(["train_time_s", "eval_time_s", "wall_time_s"])]
    assert set(costs["estimator"]) == {"measured"} and set(costs["unit"]) == {"s"}
    line = costs[(costs["row"] == "MoB again") & (costs["metric"] == "train_time_s")]
    assert line["obtained"].item() == pytest.approx(source["train_time_s"])
    assert written["figure:cost"].is_file()


def test_an_evaluation_only_change_reports_the_original_training_time(source_table):
    """A run that evaluates a model trained by another run shows that training's time (kept in final.ckpt), and
    no run time of its own (its wall time is evaluation only)."""
    (source,) = records("source").values()
    spec = yaml.safe_load((source_table / "table" / "source.yaml").read_text())
    spec["models"][0]["overrides"] = [*MOB["overrides"], "evaluation.likelihood.bound_k=7"]  # not a training key
    write_table(source_table, "source", spec)
    tables.run_table("source", "smoke", log=lambda *_: None)
    (rec,) = records("source").values()
    assert rec["status"] == "finished" and rec["reused_training"] and rec["config_hash"] != source["config_hash"]
    assert rec["train_time_s"] == source["train_time_s"] and rec["results"] == source["results"]
    assert [c["metric"] for c in cost_results(rec)] == ["train_time_s", "eval_time_s"]


def test_a_same_as_row_naming_a_row_that_does_not_exist_says_which_rows_exist(configs_copy):
    write_table(configs_copy, "bad", {
        "title": "bad", "datasets": {"d": {"label": "d"}}, "metrics": ["nll"], "scales": {"smoke": {"seeds": [0]}},
        "models": [{"label": "x", "same_as": {"table": "demo", "row": "no such row", "dataset": "digits"}}]})
    with pytest.raises(TableError, match="MoB \\(K=10\\)"):
        tables.plan(tables.load_table("bad"), "smoke")


@pytest.mark.slow  # ~38 s: every family on digits; each family's own table tests stay in make test
def test_mnist_nll_smoke_scale_on_digits(configs_copy):
    """The smoke scale end to end: every family's estimator label, MADE and PixelCNN beat independent pixels and a
    uniform pmf by a margin an untrained model cannot reach, and every row has its costs."""
    written = tables.run_table("mnist-nll", "smoke", log=lambda *_: None)
    frame = pd.read_csv(written["csv"])
    nll = frame[frame["metric"] == "nll"].drop_duplicates("row").set_index("row")
    kind = nll["estimator"].to_dict()
    assert kind["MoB (K=10, digits)"] == kind["MADE (500 ReLU units, 4 masks, digits)"] == "exact"
    assert kind["RBM (20 h, PCD-1, digits)"] == "exact"  # 20 hidden units: log Z by enumeration (AIS above 20)
    assert kind["IWAE (k=5, digits)"] == "upper bound"
    assert kind["PixelCNN (17-way softmax, digits)"] == "exact" and kind["Real NVP (multi-scale, digits)"] == "upper bound"
    obtained = nll["obtained"]
    assert obtained["MADE (500 ReLU units, 4 masks, digits)"] < obtained["independent Bernoulli (digits)"] - 3
    assert obtained["PixelCNN (17-way softmax, digits)"] < 0.8 * 64 * math.log(17)
    costs = frame[frame["metric"] == "eval_time_s"]
    assert set(costs["row"]) == set(nll.index)
    assert written["figure:cost"].is_file()
