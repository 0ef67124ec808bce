"""The flow tables' smoke runs (the real pipeline, cut to seconds) and the flow figures' building blocks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml

from genbench import tables
from genbench.data.base import DataInfo, DataSpace
from genbench.evaluation import flow_figures as ff
from genbench.models.flows import NICE


def shrink(configs, name, datasets, rows=None, extra=()):
    """Keep only some datasets (and the rows whose label contains one of ``rows``) of a table; extra smoke overrides."""
    path = configs / "table" / f"{name}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["datasets"] = {k: v for k, v in spec["datasets"].items() if k in datasets}
    spec["models"] = [m for m in spec["models"] if not rows or any(r in m["label"] for r in rows)]
    for m in spec["models"]:
        if m.get("datasets"):
            m["datasets"] = [d for d in m["datasets"] if d in datasets]
    spec["models"] = [m for m in spec["models"] if m.get("datasets", True)]
    spec["figures"] = [f for f in spec.get("figures", []) if f["dataset"] in datasets]
    for ds in spec["datasets"].values():  # after the dataset's own smoke overrides
        ds["smoke"] = [*ds.get("smoke", []), *extra]
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))


def run(name):
    written = tables.run_table(name, "smoke", log=lambda *_: None)
    return pd.read_csv(written["csv"]), written


def value(frame, row, metric):
    line = frame[frame["row"].str.contains(row, regex=False) & (frame["metric"] == metric)]
    return float(line["obtained"].iloc[0])


def test_flows_2d_smoke_on_ring8(configs_copy):
    shrink(configs_copy, "flows-2d", ["ring8"], rows=["NICE", "depth 4"],
           extra=["data.train_size=2000", "data.test_size=1000", "trainer.max_epochs=2"])
    frame, written = run("flows-2d")
    entropy = value(frame, "depth 4", "mixture_entropy")
    assert abs(entropy - (-4.30)) < 0.05  # log 8 + entropy of one N(0, 0.01² I)
    for row in ("NICE", "depth 4"):
        nll = value(frame, row, "nll")
        assert entropy < nll < 10  # no model beats the floor; a trained flow is far better than 10 nats
        assert 0 <= value(frame, row, "modes_ali") <= 8
    assert set(frame.loc[frame["metric"] == "nll", "estimator"]) == {"exact"}
    assert written["figure:data_latent_ring8"].is_file()


def test_realnvp_table_smoke_on_digits_with_its_figures(configs_copy):
    shrink(configs_copy, "realnvp-table-5-2", ["digits"], extra=["trainer.max_epochs=2"])
    frame, written = run("realnvp-table-5-2")
    bpd = value(frame, "multi-scale", "bits_per_dim")
    assert 0 < bpd < 8  # 17 levels: log2(17) = 4.09 bits/dim for the uniform pmf; a density can be worse early on
    assert frame.loc[frame["metric"] == "bits_per_dim", "estimator"].iloc[0] == "upper bound"
    nll = value(frame, "multi-scale", "nll")
    assert math.isclose(bpd, nll / (64 * math.log(2)), rel_tol=1e-6)
    published = frame[frame["row"].str.contains("published only")]
    assert {3.49, 3.0}.issubset(set(published["published"]))  # Real NVP and PixelRNN on CIFAR-10 beside
    for fig in ("samples_digits", "interpolation_digits"):
        assert written[f"figure:{fig}"].is_file()


def test_nice_table_smoke_zca_row_on_digits(configs_copy):
    shrink(configs_copy, "nice-table-5-1", ["digits"], extra=["trainer.max_epochs=2"])
    frame, _ = run("nice-table-5-1")
    assert math.isfinite(value(frame, "CIFAR-10 preprocessing", "bits_per_dim"))
    tfd = frame[frame["dataset"] == "tfd"]
    assert set(tfd["published"]) == {4.55, 5514.71} and (tfd["n"] == 0).all()  # shown, not run


@pytest.mark.slow
@pytest.mark.mnist
def test_nice_and_realnvp_smoke_on_real_mnist(configs_copy, mnist_root):
    shrink(configs_copy, "realnvp-table-5-2", ["mnist"])
    frame, _ = run("realnvp-table-5-2")
    assert 0 < value(frame, "multi-scale", "bits_per_dim") < 8.5
    shrink(configs_copy, "nice-table-5-1", ["mnist"])
    frame, _ = run("nice-table-5-1")
    assert value(frame, "NICE (MNIST", "bits_per_dim") < 11  # an untrained NICE scores about 10 bits/dim


# -- figure building blocks ---------------------------------------------------------------------------------------

def test_spherical_interpolation_passes_through_the_four_latents():
    z = torch.randn(4, 10)
    grid = ff.spherical_latents(z, 5)
    for (i, j), k in {(0, 0): 0, (0, 4): 1, (4, 0): 2, (4, 4): 3}.items():
        assert torch.allclose(grid[i, j], z[k], atol=1e-6)


@pytest.mark.parametrize("name", ff.MASKS)
def test_inpainting_masks(name):
    mask = ff.inpainting_mask(name, (1, 28, 28), torch.Generator().manual_seed(0))
    assert mask.shape == (1, 28, 28) and mask.dtype == torch.bool
    expected = {"75% random": 0.75, "90% random": 0.9, "middle vertically": 0.5, "middle horizontally": 0.5}.get(name, 0.5)
    assert abs(mask.float().mean().item() - expected) < 0.05


def test_langevin_inpainting_keeps_the_observed_pixels_and_stays_in_range():
    info = DataInfo("toy", "toy", DataSpace("discrete", (1, 4, 4), 256), {"train": 1}, "0")
    model = NICE(info, hidden=8, layers=1).eval()
    x = torch.randint(0, 256, (3, 1, 4, 4)).float() + 0.5
    mask = ff.inpainting_mask("top rows", (1, 4, 4)).expand(3, 1, 4, 4)
    init, final = ff.langevin_inpaint(model, x, mask, 256, steps=20, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(final[~mask], x[~mask]) and torch.allclose(init[~mask], x[~mask])
    assert not torch.allclose(final[mask], init[mask])
    assert final.min() >= 0 and final.max() < 256


def test_figures_skip_rows_without_a_model(tmp_path):
    runs = [SimpleNamespace(label="missing", model=None, datamodule=None)]
    for fn in (ff.data_and_latent, ff.spherical_interpolation, ff.langevin_inpainting, ff.samples):
        assert fn(runs, tmp_path / "x.png") is None
