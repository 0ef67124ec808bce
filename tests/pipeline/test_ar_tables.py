"""The autoregressive tables through the real pipeline (train → evaluate → record → table): ar-mnist's smoke scale
row by row (the whole scale is slow), the saved model being the best-validation epoch's, and the demo's MADE row."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml
from helpers.tables import obtained, records_of, result, run

from genbench import tables
from genbench.core.paths import results_dir
from genbench.runs.checkpoints import load_checkpoint


def keep_rows(configs, name, rows, datasets=None):
    """Keep the rows of table ``name`` whose label is in ``rows`` (and the datasets in ``datasets``)."""
    path = configs / "table" / f"{name}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["models"] = [m for m in spec["models"] if m["label"] in rows]
    if datasets:
        spec["datasets"] = {k: v for k, v in spec["datasets"].items() if k in datasets}
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))


def published_beside(frame, row):
    lines = frame[(frame["row"] == row) & frame["published_id"].notna()]
    return dict(zip(lines["published_id"], zip(lines["published"], lines["published_status"])))


@pytest.fixture
def larochelle(mnist_root):
    if not (mnist_root / "binarized_mnist" / "binarized_mnist_test.amat").exists():
        pytest.skip("Larochelle's binarized MNIST (.amat) not found in the data root")
    return mnist_root


def check_exact_record(rec, row_label):
    nll, bits = result(rec, "nll"), result(rec, "bits_per_dim")
    assert (nll["estimator"], nll["n"], nll["data"], nll["unit"]) == ("exact", 10_000, "mnist/larochelle", "nats"), row_label
    assert bits["value"] == pytest.approx(nll["value"] / (784 * 0.6931471805599453))
    assert 0 < nll["std_error"] < 1


def smoke_row(configs, label):
    """ar-mnist's smoke scale with this row alone: its finished, exactly scored record, the render and the CSV."""
    keep_rows(configs, "ar-mnist", [label])
    written, frame = run("ar-mnist")
    rec = records_of("ar-mnist")[f"{tables.slug(label)}--larochelle--s0"]
    assert rec["status"] == "finished", rec.get("error")
    check_exact_record(rec, label)
    return rec, written, frame


NADE = "NADE, 500 sigmoid units"
MADE32 = "MADE, 1 hidden layer, 32 masks"
PIXELCNN = "PixelCNN (blind spot kept)"


@pytest.mark.slow  # ~33 s on Larochelle's MNIST; NADE's exactness is tested in test_autoregressive.py
def test_ar_mnist_smoke_nade_trains_and_is_scored_exactly(configs_copy, larochelle):
    """50 minibatches take NADE well below where it starts, the independent-pixel model (b = logit of the pixel
    means, W ≈ 0: about 206 nats on this test set), scored exactly on the 10,000 test images, beside 88.86 and
    88.33 (S)."""
    rec, _, frame = smoke_row(configs_copy, NADE)
    assert result(rec, "nll")["value"] < 185
    assert rec["config"]["model"]["hidden"] == 500 and rec["config"]["data"]["variant"] == "larochelle"
    assert published_beside(frame, NADE) == {"ar-mnist-nade-lm11": (88.86, "S"), "ar-mnist-nade-uria16": (88.33, "S")}


@pytest.mark.slow  # ~35 s; the ensemble is tested by enumeration in test_autoregressive
def test_ar_mnist_smoke_made_scores_its_32_mask_ensemble(configs_copy, larochelle):
    rec, _, frame = smoke_row(configs_copy, MADE32)
    model = rec["config"]["model"]
    assert (model["masks"], model["ensemble"], model["hidden"], model["direct"]) == (32, None, [500], True)
    assert result(rec, "nll")["value"] < 200  # untrained: ~540 nats (orthogonal weights, zero biases)
    assert published_beside(frame, MADE32) == {"ar-mnist-made-1hl-32masks": (88.04, "S")}


def test_ar_mnist_smoke_pixelcnn(configs_copy, larochelle):
    rec, written, frame = smoke_row(configs_copy, PIXELCNN)
    assert result(rec, "nll")["value"] < 200
    assert any(f.endswith("samples.png") for f in rec["figures"])
    assert published_beside(frame, PIXELCNN) == {"ar-mnist-pixelcnn": (81.3, "S")}
    assert "smoke" in "\n".join(written["md"].read_text().splitlines()[:5])


@pytest.mark.slow
def test_ar_mnist_smoke_every_row(configs_copy, larochelle):
    _, frame = run("ar-mnist")
    records = records_of("ar-mnist")
    assert len(records) == 6 and {r["status"] for r in records.values()} == {"finished"}
    by = obtained(frame).loc["larochelle"]
    assert (by["nll"] < 200).all(), by
    recalled = frame[frame["published_status"] == "R"]
    assert set(recalled["published_id"]) == {"ar-mnist-made-1hl-1mask", "ar-mnist-made-2hl-32masks"}


def test_the_saved_model_is_the_best_validation_epoch(configs_copy):
    """Through the whole pipeline on digits: a learning rate at which the validation NLL rises again; final.ckpt,
    which genbench scores and saves, has the lowest validation NLL the run logged, not the last epoch's."""
    table = {"title": "best epoch", "datasets": {"digits": {"label": "digits, fixed",
                                                           "overrides": ["data=digits", "data.variant=fixed"]}},
             "models": [{"label": "MADE", "overrides": ["model=made", "model.hidden=[500]", "model.lr=0.05",
                                                        "model.patience=null", "trainer.max_epochs=50"]}],
             "metrics": ["nll"], "scales": {"smoke": {"seeds": [0]}}}
    (configs_copy / "table" / "ar-best.yaml").write_text(yaml.safe_dump(table))
    run("ar-best")
    rec = records_of("ar-best")["made--digits--s0"]
    log = pd.read_csv(results_dir("logs", "ar-best", "made--digits--s0", "metrics.csv"))
    val = log.dropna(subset=["val/nll"]).set_index("epoch")["val/nll"]
    assert len(val) == 50 and val.idxmin() < 49, "the last epoch is the best: the test needs a run where it is not"
    assert float(log["val/best_epoch"].dropna().iloc[0]) == val.idxmin()
    _, model, dm = load_checkpoint(rec["checkpoint"])
    with torch.no_grad():
        saved = -model.log_prob(dm.split("val").float()).mean().item()
    assert saved == pytest.approx(val.min(), abs=1e-4) and saved < val.iloc[-1] - 1e-3


def test_demo_made_row_beats_independent_pixels_on_digits(configs_copy):
    """The demo's MADE row on digits against the demo's own independent-Bernoulli row."""
    keep_rows(configs_copy, "demo", ["independent Bernoulli", "MADE (500 ReLU units, 4 masks)"], datasets=["digits"])
    _, frame = run("demo")
    by = obtained(frame).loc["digits"]
    assert by.loc["MADE (500 ReLU units, 4 masks)", "nll"] < by.loc["independent Bernoulli", "nll"] - 2, by
