"""The VAE family's tables at smoke scale through the real pipeline (train → evaluate → table → figures), cut to a
few rows, held to what an untrained model or a model that ignores its code cannot reach, to the true mixture's
entropy, and to their run records and configs/published."""

from __future__ import annotations

import math

import pytest
import yaml
from helpers.tables import obtained, records_of, result, run

import genbench.tables as tables
from genbench.core.paths import configs_dir

UNTRAINED = "trainer.max_epochs=0"


def edit(configs, name, rows, untrained=None, extra_smoke=(), datasets=None):
    """Keep the rows whose label is in ``rows`` (and the datasets in ``datasets``); ``untrained``: append a copy of
    that row scored without a training step; ``extra_smoke``: more smoke overrides for the whole table."""
    path = configs / "table" / f"{name}.yaml"
    spec = yaml.safe_load(path.read_text())
    keep = [m for m in spec["models"] if m["label"] in rows]
    if untrained:
        row = next(m for m in keep if m["label"] == untrained)
        keep.append({**row, "label": f"{untrained} untrained", "smoke": [*row.get("smoke", []), UNTRAINED],
                     "published": {}})
    spec["models"] = keep
    if datasets:
        spec["datasets"] = {k: v for k, v in spec["datasets"].items() if k in datasets}
        spec["figures"] = [f for f in spec.get("figures", []) if f["dataset"] in datasets]
    spec["scales"]["smoke"]["overrides"] = [*spec["scales"]["smoke"].get("overrides", []), *extra_smoke]
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))


def assert_table_is_its_records_and_the_yaml(frame, records):
    """Each number shown is its run record's (one seed), and each published column is configs/published's entry."""
    for _, line in frame[frame["n"] > 0].iterrows():
        rec = records[f"{tables.slug(line['row'])}--{line['dataset']}--s0"]
        assert line["obtained"] == pytest.approx(result(rec, line["metric"])["value"])
    entries = {e["id"]: e for f in (configs_dir() / "published").glob("*.yaml") for e in yaml.safe_load(f.read_text())}
    for _, line in frame[frame["published_id"].notna()].iterrows():
        e = entries[line["published_id"]]
        assert (line["metric"], line["published"], line["published_status"]) == (e["metric"], e["value"], e["status"])


@pytest.mark.slow  # 17 s on real MNIST; the VAE family's digits tests stay in make test
def test_iwae_table_1_smoke_on_mnist_earns_its_bound(configs_copy, mnist_root):
    """Two rows on 5,000 MNIST images for one pass: both beat the untrained model by tens of nats (measured ~45),
    L_20 is below the ELBO, and the IWAE k = 50 row is shown beside Burda's 84.78."""
    edit(configs_copy, "iwae-table-1", ["VAE = IWAE, 1 layer, k=1", "IWAE, 1 layer, k=50"], untrained="VAE = IWAE, 1 layer, k=1",
         extra_smoke=["evaluation.likelihood.bound_k=20"])
    written, frame = run("iwae-table-1")
    records = records_of("iwae-table-1")
    assert set(r["status"] for r in records.values()) == {"finished"} and len(records) == 3
    by = obtained(frame).loc["mnist"]
    untrained = by.loc["VAE = IWAE, 1 layer, k=1 untrained", "nll"]
    for row in ("VAE = IWAE, 1 layer, k=1", "IWAE, 1 layer, k=50"):
        assert by.loc[row, "nll"] < untrained - 20, by
        assert by.loc[row, "nll"] < by.loc[row, "nll_elbo"]
        assert 0 <= by.loc[row, "active_units"] <= 50
    rec = records["iwae-1-layer-k-50--mnist--s0"]
    nll = result(rec, "nll")
    assert (nll["estimator"], nll["settings"]["k"], nll["n"], nll["data"]) == ("upper bound", 20, 10_000, "mnist/dynamic")
    assert rec["config"]["model"]["k"] == 50 and rec["config"]["data"]["batch_size"] == 20
    assert_table_is_its_records_and_the_yaml(frame, records)
    published = frame[frame["row"] == "IWAE, 1 layer, k=50"]["published"].dropna()
    assert list(published) == [84.78]
    assert "smoke" in "\n".join(written["md"].read_text().splitlines()[:5])


@pytest.mark.slow
def test_iwae_table_3_smoke_on_larochelle(configs_copy, mnist_root):
    if not (mnist_root / "binarized_mnist" / "binarized_mnist_test.amat").exists():
        pytest.skip("Larochelle's binarized MNIST (.amat) not found in the data root")
    edit(configs_copy, "iwae-table-3", ["IWAE, 2 layers, k=5"], untrained="IWAE, 2 layers, k=5")
    _, frame = run("iwae-table-3")
    records = records_of("iwae-table-3")
    by = obtained(frame).loc["larochelle"]
    assert by.loc["IWAE, 2 layers, k=5", "nll"] < by.loc["IWAE, 2 layers, k=5 untrained", "nll"] - 20, by
    rec = records["iwae-2-layers-k-5--larochelle--s0"]
    assert result(rec, "nll")["data"] == "mnist/larochelle"
    assert result(rec, "active_units")["settings"]["latent_dims"] == 150
    assert len(result(rec, "active_units")["settings"]["per_layer"]) == 2
    assert_table_is_its_records_and_the_yaml(frame, records)


SMALL_2D = ["data.train_size=5000", "data.val_size=0", "data.test_size=2000"]


def test_mode_coverage_vae_rows_bound_the_nll_above_the_mixture_entropy(configs_copy):
    """The VAE's test NLL bound sits above the true mixture's entropy (cross-entropy ≥ entropy; the bound adds its
    slack), and its samples are scored by both mode protocols."""
    edit(configs_copy, "mode-coverage-2d", ["VAE"], extra_smoke=SMALL_2D)
    _, frame = run("mode-coverage-2d")
    records = records_of("mode-coverage-2d")
    for dataset in ("ring8", "grid25"):
        rec = records[f"vae--{dataset}--s0"]
        nll, entropy = result(rec, "nll"), result(rec, "mixture_entropy")
        assert nll["estimator"] == "upper bound" and nll["settings"]["k"] == 100
        assert nll["value"] > entropy["value"] - 3 * math.hypot(nll["std_error"], entropy["std_error"])
        assert 0 <= result(rec, "modes_ali")["value"] <= {"ring8": 8, "grid25": 25}[dataset]
    assert_table_is_its_records_and_the_yaml(frame, records)


def test_fig_5_8_has_its_vae_column(configs_copy):
    """The VAE row on ALI's network shapes: inference metrics in the table and its column in the figure."""
    edit(configs_copy, "ali-fig-5-8", ["VAE"], extra_smoke=SMALL_2D)
    written, frame = run("ali-fig-5-8")
    rec = records_of("ali-fig-5-8")["vae--grid25--s0"]
    model = rec["config"]["model"]
    assert (model["latent"], model["hidden"], model["decoder_hidden"], model["batch_norm"]) == (
        [2], [[400, 400]], [[400, 400, 400, 400]], True)
    same = result(rec, "reconstruction_same_mode_pct")["value"]
    assert 0 <= same <= 100 and result(rec, "latent_mmd")["value"] == result(rec, "latent_mmd")["value"]
    assert written["figure:fig_5_8"].read_bytes()[:4] == b"\x89PNG"
    assert set(frame["row"]) == {"VAE"}


def test_demo_vae_row_beats_independent_pixels_on_digits(configs_copy):
    """The demo's IWAE on digits against the demo's own independent-Bernoulli row: the best model that ignores a
    code (measured 23.4 vs 27.2 nats)."""
    edit(configs_copy, "demo", ["independent Bernoulli", "IWAE (k=5, Burda's 1-layer nets)"], datasets=["digits"])
    _, frame = run("demo")
    by = obtained(frame).loc["digits"]
    assert by.loc["IWAE (k=5, Burda's 1-layer nets)", "nll"] < by.loc["independent Bernoulli", "nll"] - 2, by
    assert by.loc["IWAE (k=5, Burda's 1-layer nets)", "nll"] < by.loc["IWAE (k=5, Burda's 1-layer nets)", "nll_elbo"]
