"""The RBM tables: their configs compose at both scales, and AIS meets exact log Z through the real pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from helpers.tables import records_of

import genbench.tables as tables
from genbench.core.paths import configs_dir

PARSER = OverridesParser.create()


def at(config, dotted):
    for part in dotted.split("."):
        config = config[part]
    return config


def expected_overrides(spec, scale, row, dataset):
    """What a run of (row, dataset) at this scale must be configured with, from the table config alone: the most
    specific source of each key wins (scale < dataset < dataset at this scale < row < row at this scale); a dict
    value merges into the dict an earlier source set, as Hydra merges it."""
    ds, scale_cfg = spec["datasets"][dataset], spec["scales"][scale] or {}
    values, groups = {}, {}
    for text in [*scale_cfg.get("overrides", []), *ds.get("overrides", []), *ds.get(scale, []),
                 *row.get("overrides", []), *row.get(scale, [])]:
        o = PARSER.parse_override(text)
        is_group = "." not in o.key_or_group and (configs_dir() / o.key_or_group).is_dir()
        target, value = (groups if is_group else values), o.value()
        if isinstance(value, dict) and isinstance(target.get(o.key_or_group), dict):
            value = {**target[o.key_or_group], **value}
        target[o.key_or_group] = value
    return values, groups


def assert_aggregates_are_the_records(frame, records):
    """Every number the table shows is the mean (std, min, max, n) over seeds of the values in the run records."""
    ours = frame[(frame["n"] > 0) & ~frame["status"].str.startswith("derived")]  # derived lines: their own test
    ours = ours.drop_duplicates(["row", "dataset", "metric"])
    assert len(ours) > 0
    for _, line in ours.iterrows():
        values = [r["value"] for rec in records.values() if rec["status"] == "finished"
                  and rec["run_id"].rsplit("--", 2)[:2] == [tables.slug(line["row"]), line["dataset"]]
                  for r in rec["results"] if r["metric"] == line["metric"]]
        assert line["n"] == len(values) > 0, (line["row"], line["metric"])
        v = np.array(values, dtype=float)
        assert line["obtained"] == pytest.approx(v.mean())
        assert (line["obtained_min"], line["obtained_max"]) == pytest.approx((v.min(), v.max()))
        if len(v) > 1:
            assert line["obtained_std"] == pytest.approx(v.std(ddof=1))


def assert_published_columns_match_the_yaml(frame):
    """The published columns are configs/published/*.yaml's entries, read here without genbench.published."""
    entries = {e["id"]: e for f in sorted((configs_dir() / "published").glob("*.yaml")) for e in yaml.safe_load(f.read_text())}
    lines = frame[frame["published_id"].notna()]
    assert len(lines) > 0
    for _, line in lines.iterrows():
        e = entries[line["published_id"]]
        assert (line["published"], line["published_status"]) == (e["value"], e["status"])
        assert e["paper"] in line["source"]
        if not line["status"].startswith("derived"):  # a derived line is named by its kind (relative_increase_pct)
            assert line["metric"] == e["metric"]


@pytest.mark.parametrize("name", tables.table_names())
def test_every_table_composes_at_every_scale_as_its_config_says(name):
    """Every run of every scale is one (row, dataset, seed) of the table, with a run id of its own, and its composed
    config holds the table's settings for it: each key at its most specific value, each config group selected,
    random hyperparameters inside their ranges, the seed and the row's name (composed for the first seed, and for
    every seed of a row with random hyperparameters)."""
    spec = tables.load_table(name)
    rows = {m["label"]: m for m in spec["models"]}
    for scale, scale_cfg in spec["scales"].items():
        scale_cfg = scale_cfg or {}
        planned = tables.plan(spec, scale)
        expected = {(m["label"], d, s) for m in spec["models"] if scale in m.get("scales", tables.SCALES)
                    for d in (m.get("datasets") or spec["datasets"]) for s in scale_cfg.get("seeds", [0])}
        assert sorted((p.row, p.dataset, p.seed) for p in planned) == sorted(expected)
        assert len({p.run_id for p in planned}) == len(planned)  # no two runs share a record
        first_seed = scale_cfg.get("seeds", [0])[0]
        for p in planned:
            row = rows[p.row]
            drawn = {**(scale_cfg.get("random_overrides") or {}), **(row.get("random_overrides") or {})}
            if p.seed != first_seed and not drawn:
                continue  # other seeds differ only in `seed=` (checked on the plan above): composing them is minutes
            config = tables.compose(p.overrides)
            assert config["seed"] == p.seed and config["name"] == tables.slug(row.get("id") or p.row)
            if "same_as" in row:  # composes as the row it repeats: tests/pipeline/test_cross_family.py
                continue
            values, groups = expected_overrides(spec, scale, row, p.dataset)
            for key, (low, high) in ((k, next(iter(d.values()))) for k, d in drawn.items()):
                assert low * (1 - 1e-3) <= at(config, key) <= high * (1 + 1e-3), (p.run_id, key)
                values.pop(key, None)  # the draw replaces a fixed value
            for key, value in values.items():
                got = at(config, key)
                if isinstance(value, dict):  # keys set elsewhere by their dotted path may join the dict
                    got = {k: got[k] for k in value}
                assert got == (pytest.approx(value) if isinstance(value, float) else value), (p.run_id, key, got, value)
            for group, choice in groups.items():
                text = (configs_dir() / group / f"{choice}.yaml").read_text()
                declared = yaml.safe_load(text) or {}
                if "name" in declared and f"{group}.name" not in values and "@package _global_" not in text:
                    assert config[group]["name"] == declared["name"], (p.run_id, group)


def test_ais_validation_smoke_on_digits_ais_within_its_interval_of_exact(configs_copy):
    """The table's own pipeline (train, exact log Z, AIS, RAISE) on digits: 0 inside every AIS error interval."""
    path = configs_copy / "table" / "ais-validation.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["datasets"] = {"digits": spec["datasets"]["digits"]}
    spec["datasets"]["digits"]["smoke"] = ["trainer.max_epochs=10"]
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    frame = pd.read_csv(tables.run_table("ais-validation", "smoke", log=lambda *_: None)["csv"])
    assert_aggregates_are_the_records(frame, records_of("ais-validation"))
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
    records = records_of("derived")
    assert len(records) == 4
    assert_aggregates_are_the_records(frame, records)  # each row's nll: mean, std, min, max of its two seeds
    nll = frame[frame["metric"] == "nll"].set_index("row")["obtained"]
    assert (frame.loc[frame["metric"] == "nll", "n"] == 2).all()
    d = frame[frame["metric"] == "relative_increase_pct"].iloc[0]
    assert d["n"] == 2 and d["unit"] == "%" and d["published_id"] == "dumoulin18-e6-removal-50pct-increase"
    assert_published_columns_match_the_yaml(frame)
    assert d["obtained"] == pytest.approx(100 * (nll["better"] - nll["base"]) / nll["base"], abs=0.05)
    assert d["obtained"] < 0


@pytest.mark.slow  # ~32 s on real MNIST; the RBM's estimators are tested in test_rbm.py and test_ais.py
@pytest.mark.mnist
def test_rbm_mnist_smoke_on_real_mnist(mnist_root):
    frame = pd.read_csv(tables.run_table("rbm-mnist", "smoke", log=lambda *_: None)["csv"])
    nll = frame[frame["metric"] == "nll"]
    assert len(nll) == 4 and (nll["estimator"] == "estimate").all()
    assert ((nll["obtained"] > 90) & (nll["obtained"] < 206)).all()  # better than independent pixels (205.9)
    assert (nll["obtained_low"] <= nll["obtained"]).all() and (nll["obtained"] <= nll["obtained_high"]).all()
    assert_aggregates_are_the_records(frame, records_of("rbm-mnist"))
    assert_published_columns_match_the_yaml(frame)
    assert set(frame["published_id"].dropna()) == {"sm08-rbm-cd1-500", "sm08-rbm-cd3-500", "sm08-rbm-cd25-500"}


@pytest.mark.slow
@pytest.mark.mnist
def test_rbm_constraints_smoke_on_real_mnist(mnist_root):
    frame = pd.read_csv(tables.run_table("rbm-constraints", "smoke", log=lambda *_: None)["csv"])
    nll = frame[frame["metric"] == "nll"].set_index("row")["obtained"]
    assert nll["E6 99% of weights removed at random"] > nll["baseline (no constraint)"]
    assert nll["E1 sampled with weight noise σ=0.1"] > nll["E1 sampled with bias noise σ=0.1"]


def test_bench_report_names_what_was_not_measured_and_the_float32_floor():
    from genbench.bench.run import markdown

    pcd = {"sklearn_float32_s": 5.0, "genbench_lightning_s": 4.0, "genbench_core_s": 3.5, "floor_s": 2.0, "ratio": 0.8}
    text = markdown({"date": "d", "machine": "m", "load_average_before": 0.1, "pcd_epoch": pcd})
    assert "not measured: this CPU has no native bfloat16" in text and "bfloat16 products **n/a**" in text
    assert "**0.40** of scikit-learn's epoch" in text and "**0.50** of the float32 arithmetic floor" in text
    pcd.update(genbench_lightning_bf16_s=2.5, ratio_bfloat16=0.5)
    assert "| 2.50 |" in markdown({"date": "d", "machine": "m", "load_average_before": 0.1, "pcd_epoch": pcd})
