"""The speed report: what it counts and what it says (speed itself is measured by `make bench`, never timed here)."""

import torch

from genbench.bench import markdown
from genbench.bench_vae import _burda_model, decoder_flops_per_row


def test_the_bound_floor_counts_the_decoder_products_of_burdas_model():
    model = _burda_model((torch.rand(100, 784) < 0.2).float())
    assert decoder_flops_per_row(model) == 2 * (50 * 200 + 200 * 200 + 200 * 784)  # 50 → 200 → 200 → 784 logits


def test_the_report_states_the_vae_ratios_against_their_floor_and_a_bare_loop():
    result = {"date": "d", "machine": "m", "load_average_before": 0.1,
              "vae_bound": {"k": 5000, "examples": 10000, "wall_time_s": 600.0, "gflops": 34.0, "floor_s": 200.0,
                            "floor_gflops": 103.0, "ratio_to_floor": 3.0},
              "vae_epoch": [{"k": 1, "lightning_s": 20.0, "bare_s": 16.0, "ratio": 1.25}]}
    text = markdown(result)
    assert "−L_5000 of 10,000" in text and "**3.00×** the arithmetic floor (goal ≤ 1.5)" in text
    assert "| 1 | 20.0 | 16.0 | 1.25 |" in text


def test_the_cross_family_cost_section_sums_what_the_records_hold(genbench_home):
    """(i) reads the table's records: a copied row names its source, a reused training has no run time of its own,
    and the total counts each run once."""
    from genbench.bench import recorded_costs
    from genbench.paths import results_dir
    from genbench.runs import save_record

    folder = results_dir("runs", "mnist-nll", "cpu")
    cpu = {"cpu": "Some CPU (AVX2)"}
    save_record(folder / "a.json", {"run_id": "a", "status": "finished", "train_time_s": 100.0, "eval_time_s": 20.0,
                                    "wall_time_s": 125.0, "machine": cpu, "reused_record": "ar-mnist/cpu/a.json"})
    save_record(folder / "b.json", {"run_id": "b", "status": "finished", "wall_time_s": 3600.0, "machine": cpu})
    save_record(folder / "c.json", {"run_id": "c", "status": "finished", "train_time_s": 50.0, "eval_time_s": 7.0,
                                    "wall_time_s": 7.5, "reused_training": True, "machine": cpu})
    save_record(folder / "d.json", {"run_id": "d", "status": "failed", "wall_time_s": 9.0, "machine": cpu})
    costs = recorded_costs()
    assert [r["run_id"] for r in costs["rows"]] == ["a", "b", "c"] and costs["total_run_s"] == 3725.0
    text = markdown({"date": "d", "machine": "m", "load_average_before": 0.1, "recorded_costs": costs})
    assert "| a | 100 | 20 | 125 | Some CPU (AVX2) | copied from ar-mnist/cpu/a.json |" in text
    assert "| b | – | – | 3,600 | Some CPU (AVX2) | run by this table |" in text
    assert "| c | 50 | 7 | – |" in text and "**1.03 h**" in text
