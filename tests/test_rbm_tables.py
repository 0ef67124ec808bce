"""The RBM tables: their configs compose at both scales, and AIS meets exact log Z through the real pipeline."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

import genbench.tables as tables


@pytest.mark.parametrize("name", tables.table_names())
def test_every_table_composes_at_every_scale(name):
    spec = tables.load_table(name)
    for scale in spec["scales"]:
        for p in tables.plan(spec, scale):
            config = tables.compose(p.overrides)
            assert config["seed"] == p.seed


def test_ais_validation_smoke_on_digits_ais_within_its_interval_of_exact(configs_copy):
    """The table's own pipeline (train, exact log Z, AIS, RAISE) on digits: 0 inside every AIS error interval."""
    path = configs_copy / "table" / "ais-validation.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["datasets"] = {"digits": spec["datasets"]["digits"]}
    spec["datasets"]["digits"]["smoke"] = ["trainer.max_epochs=10"]
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    frame = pd.read_csv(tables.run_table("ais-validation", "smoke", log=lambda *_: None)["csv"])
    errors = frame[frame["metric"] == "log_z_ais_error"]
    assert len(errors) == 4
    assert ((errors["obtained_low"] <= 0) & (0 <= errors["obtained_high"])).all()
    assert (errors["obtained"].abs() < 0.2).all()
    exact = frame[(frame["metric"] == "log_z")]
    assert set(exact["estimator"]) == {"exact"}
    gaps = frame[frame["metric"] == "nll_raise_gap"]
    assert (gaps["obtained"] > -3 * gaps["obtained_se"]).all()  # RAISE is not below AIS beyond noise


def test_derived_numbers_are_computed_seed_by_seed(configs_copy):
    (configs_copy / "table" / "derived.yaml").write_text("""
title: derived
datasets:
  digits: {label: digits, overrides: [data=digits]}
models:
  - label: base
    overrides: [model=independent_bernoulli, trainer.max_epochs=1]
  - label: better
    overrides: [model=mixture_of_bernoullis, model.components=5, trainer.max_epochs=5]
derived:
  - label: better vs base
    kind: relative_increase_pct
    rows: {row: better, reference: base}
    published: [dumoulin18-e6-removal-50pct-increase]
metrics: [nll]
scales:
  smoke: {seeds: [0, 1]}
""")
    frame = pd.read_csv(tables.run_table("derived", "smoke", log=lambda *_: None)["csv"])
    nll = frame[frame["metric"] == "nll"].set_index("row")["obtained"]
    d = frame[frame["metric"] == "relative_increase_pct"].iloc[0]
    assert d["n"] == 2 and d["unit"] == "%" and d["published"] == 4.3
    assert d["obtained"] == pytest.approx(100 * (nll["better"] - nll["base"]) / nll["base"], abs=0.05)
    assert d["obtained"] < 0


@pytest.mark.mnist
def test_rbm_mnist_smoke_on_real_mnist(mnist_root):
    frame = pd.read_csv(tables.run_table("rbm-mnist", "smoke", log=lambda *_: None)["csv"])
    nll = frame[frame["metric"] == "nll"]
    assert len(nll) == 4 and (nll["estimator"] == "estimate").all()
    assert ((nll["obtained"] > 90) & (nll["obtained"] < 206)).all()  # better than independent pixels (205.9)
    assert (nll["obtained_low"] <= nll["obtained"]).all() and (nll["obtained"] <= nll["obtained_high"]).all()
    cd25 = nll[nll["row"] == "RBM CD-25"].iloc[0]
    assert cd25["published"] == 86.34 and cd25["published_status"] == "S"


@pytest.mark.slow
@pytest.mark.mnist
def test_rbm_constraints_smoke_on_real_mnist(mnist_root):
    frame = pd.read_csv(tables.run_table("rbm-constraints", "smoke", log=lambda *_: None)["csv"])
    nll = frame[frame["metric"] == "nll"].set_index("row")["obtained"]
    assert nll["E6 99% of weights removed at random"] > nll["baseline (no constraint)"]
    assert nll["E1 sampled with weight noise σ=0.1"] > nll["E1 sampled with bias noise σ=0.1"]


def test_bench_report_names_what_was_not_measured_and_the_float32_floor():
    from genbench.bench import markdown

    pcd = {"sklearn_float32_s": 5.0, "genbench_lightning_s": 4.0, "genbench_core_s": 3.5, "floor_s": 2.0, "ratio": 0.8}
    text = markdown({"date": "d", "machine": "m", "load_average_before": 0.1, "pcd_epoch": pcd})
    assert "not measured: this CPU has no native bfloat16" in text and "bfloat16 products **n/a**" in text
    assert "**0.40** of scikit-learn's epoch" in text and "**0.50** of the float32 arithmetic floor" in text
    pcd.update(genbench_lightning_bf16_s=2.5, ratio_bfloat16=0.5)
    assert "| 2.50 |" in markdown({"date": "d", "machine": "m", "load_average_before": 0.1, "pcd_epoch": pcd})
