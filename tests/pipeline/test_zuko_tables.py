"""zuko's flows through the real pipeline: the flows-2d rows, maf-table-2 at smoke scale (on digits; on real MNIST
when present), the Gaussian row against its published number, and `genbench compare model=zuko`."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml
from matplotlib.image import imread
from test_flow_tables import EASY_MEANS, EASY_STD, UNTRAINED, assert_published_columns_match_the_yaml, record, value

from genbench import tables
from genbench.cli import main
from genbench.core.paths import results_dir

NSF_ROW = "NSF, zuko (8 rational-quadratic spline transforms, 8 bins, 2 × 64 ReLU)"
MAF_ROWS = {"gaussian": "Gaussian (zuko GMM, 1 component, full covariance: training mean and covariance)",
            "made": "MADE (zuko MAF, 1 transform, 2 × 1024 ReLU)",
            "maf5": "MAF (5), zuko (2 × 1024 ReLU, batch norm)",
            "rnvp5": "Real NVP (5), genbench (separate s, t nets 2 × 1024 ReLU, batch norm)"}
EASY4 = {"label": "4 modes at distance 3 from the origin, std 0.2",
         "overrides": ["data=gmm2d", "data.mixture=custom", f"+data.means={json.dumps(EASY_MEANS).replace(' ', '')}",
                       f"+data.std={EASY_STD}"],
         "smoke": ["data.train_size=4000", "data.test_size=1000", "data.batch_size=100", "trainer.max_epochs=5"]}


def edit(configs, name, fn):
    path = configs / "table" / f"{name}.yaml"
    spec = yaml.safe_load(path.read_text())
    fn(spec)
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))


def easy4_flows_2d(spec, rows):
    """flows-2d on one easy mixture, with only ``rows`` (labels), each beside itself untrained."""
    spec["datasets"] = {"easy4": EASY4}
    spec["models"] = [{**m, "datasets": None} for m in spec["models"] if m["label"] in rows]
    spec["models"] += [{**m, "label": f"{m['label']} untrained", "overrides": [*m["overrides"], UNTRAINED]}
                       for m in spec["models"]]
    spec["figures"] = [{"function": "genbench.evaluation.flow_figures:data_and_latent", "file": "data_latent_easy4.png",
                        "dataset": "easy4", "seed": 0}]


def test_flows_2d_nsf_row_earns_its_nll_and_draws_its_figure_row(configs_copy):
    edit(configs_copy, "flows-2d", lambda spec: easy4_flows_2d(spec, [NSF_ROW]))
    written = tables.run_table("flows-2d", "smoke", log=lambda *_: None)
    frame = pd.read_csv(written["csv"])
    entropy = value(frame, NSF_ROW, "mixture_entropy")
    nll, untrained = value(frame, NSF_ROW, "nll"), value(frame, f"{NSF_ROW} untrained", "nll")
    assert frame.loc[frame["metric"] == "nll", "estimator"].eq("exact").all()
    # 200 steps take the spline flow from N(0, I) (5.6 nats above the floor, measured) to within 0.3 nats of it
    assert nll > entropy - 3 * value(frame, NSF_ROW, "nll", "obtained_se") and nll - entropy < 0.3
    assert untrained - entropy > 3
    assert value(frame, NSF_ROW, "modes_veegan") == 4 and value(frame, NSF_ROW, "high_quality_pct") > 50
    assert record("flows-2d", NSF_ROW, "easy4")["config"]["model"]["flow"] == "NSF"
    png = written["figure:data_latent_easy4"]  # one row of four panels per model: trained and untrained
    height, width = imread(png).shape[:2]
    assert round(13 * height / (3.3 * width)) == 2


def maf_table_on_digits(spec):
    """maf-table-2's rows and published numbers, on 17-level digits instead of MNIST (1 epoch of 15 steps)."""
    spec["datasets"]["mnist"] = {**spec["datasets"]["mnist"], "overrides": ["data=digits", "data.variant=integer"],
                                 "smoke": []}


def test_maf_table_smoke_on_digits_earns_its_bits_beside_the_logit_space_numbers(configs_copy):
    edit(configs_copy, "maf-table-2", maf_table_on_digits)
    written = tables.run_table("maf-table-2", "smoke", log=lambda *_: None)
    frame = pd.read_csv(written["csv"])
    ours = frame[frame["metric"] == "bits_per_dim"]
    assert len(ours) == 7 and (ours["n"] == 1).all() and (ours["estimator"] == "upper bound").all()
    # 15 steps take every flow with batch norm below 17 uniform grey levels, log2 17 = 4.09 bits/dim (measured
    # 2.74-3.02), and the Gaussian fitted in closed form further (2.36); MADE, without batch norm, starts from N(0, I)
    # on logit values near -13.8 and is still above (6.7)
    normed = ours[ours["row"].str.contains("batch norm")]
    assert len(normed) == 5 and (normed["obtained"] < math.log2(17)).all()
    assert value(frame, MAF_ROWS["gaussian"], "bits_per_dim") < math.log2(17) - 1.5
    assert math.isfinite(value(frame, MAF_ROWS["made"], "bits_per_dim"))
    for row in MAF_ROWS.values():  # the published logit-space number sits beside each row, as printed (negative)
        pub = frame[(frame["row"] == row) & (frame["metric"] == "log_likelihood")]
        assert len(pub) == 1 and pub["published"].iloc[0] < -1000 and pd.isna(pub["obtained"].iloc[0])
    shown = frame[frame["row"].str.contains("published only")]
    assert set(shown["published_id"]) == {"maf-t2-mnist-uncond-made-mog", "maf-t2-mnist-uncond-maf-mog5"}
    assert_published_columns_match_the_yaml(frame, configs_copy)
    rec = record("maf-table-2", MAF_ROWS["maf5"], "mnist")
    assert rec["config"]["model"]["alpha"] == 1e-6 and rec["config"]["model"]["batch_norm"] is True


@pytest.mark.slow
@pytest.mark.mnist
def test_maf_table_smoke_on_real_mnist(mnist_root):
    """The table's own smoke scale on MNIST (2,000 training images, one epoch of every row; about 3 minutes)."""
    written = tables.run_table("maf-table-2", "smoke", log=lambda *_: None)
    frame = pd.read_csv(written["csv"])
    ours = frame[frame["metric"] == "bits_per_dim"]
    assert len(ours) == 7 and (ours["n"] == 1).all() and (ours["obtained"] < 8).all()  # 8 = uniform on [0, 256)


@pytest.mark.slow
@pytest.mark.mnist
def test_gaussian_row_reproduces_the_published_logit_space_number(mnist_root, configs_copy):
    """The Gaussian row at the cpu scale's data (50,000 images; it never trains) against MAF's −1366.9 ± 1.4.

    Our pixel-space NLL converts to logit space by the mean log-det of the test set under the evaluator's own
    dequantization noise (computed here): log p(y) = −NLL(x̃) − E[log|dy/dx̃|]. Measured −1364.1 ± 0.7 (s.e.)."""
    import torch

    from genbench.core.transforms import dequantize
    from genbench.data import build_datamodule
    from genbench.models.flows import logit_space

    edit(configs_copy, "maf-table-2", lambda spec: spec.update(
        models=[m for m in spec["models"] if m["label"] == MAF_ROWS["gaussian"]], figures=[]))
    written = tables.run_table("maf-table-2", "cpu", log=lambda *_: None)
    frame = pd.read_csv(written["csv"])
    nll = value(frame, MAF_ROWS["gaussian"], "nll")
    dm = build_datamodule({"name": "mnist", "variant": "grey", "val_size": 10000})
    test, noise = dm.split("test").float(), torch.Generator().manual_seed(0)  # the evaluator's draws, batch by batch
    logdet = torch.cat([logit_space(256, 1e-6)(dequantize(test[i:i + dm.eval_batch_size], noise).flatten(1))[1]
                        for i in range(0, len(test), dm.eval_batch_size)]).double().mean().item()
    assert -nll - logdet == pytest.approx(-1366.9, abs=5.0)


def test_compare_brings_a_zuko_flow_in_as_it_brings_a_genbench_model(configs_copy):
    """`genbench compare model=zuko ...` and `genbench compare model=realnvp ...` on the same table: both append
    their row, run it under the table's data, scale and evaluators, and rank it among the table's rows."""
    edit(configs_copy, "flows-2d", lambda spec: easy4_flows_2d(spec, ["NICE (4 additive couplings, 2 × 64 ReLU)"]))
    extra = ["model.flow=MAF", "model.flow_kwargs={transforms:4,hidden_features:[32,32]}"]
    assert main(["compare", "model=zuko", "table=flows-2d", *extra]) == 0
    assert main(["compare", "model=realnvp", "table=flows-2d", "model.couplings=4"]) == 0
    frames = {m: pd.read_csv(results_dir("tables", f"flows-2d--compare-{m}", "smoke.csv")) for m in ("zuko", "realnvp")}
    for m, frame in frames.items():
        row = frame[frame["row"] == f"{m} (compared)"]
        assert set(row["metric"]) == set(frames["realnvp"].loc[frames["realnvp"]["row"] == "realnvp (compared)", "metric"])
        assert (row["status"] == "1 finished").all()
        md = results_dir("tables", f"flows-2d--compare-{m}", "smoke.md").read_text()
        assert f"{m} (compared)" in md.split("Ranking by nll")[1]
    rec = record("flows-2d", "zuko (compared)", "easy4")
    assert rec["config"]["model"]["flow"] == "MAF" and rec["config"]["model"]["flow_kwargs"]["transforms"] == 4
