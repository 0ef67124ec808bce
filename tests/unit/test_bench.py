"""The speed report: what it counts and what it says (speed itself is measured by `make bench`, never timed here)."""

import torch

from genbench.bench.run import markdown
from genbench.bench.vae import burda_model, decoder_flops_per_row


def test_the_bound_floor_counts_the_decoder_products_of_burdas_model():
    model = burda_model((torch.rand(100, 784) < 0.2).float())
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
    from genbench.bench.run import recorded_costs
    from genbench.core.paths import results_dir
    from genbench.runs.store import save_record

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


def test_the_step_floor_records_the_products_of_forward_and_backward():
    """A Linear layer on an input without gradient: its forward product and its weight gradient's, nothing else."""
    from genbench.bench.steps import flops, products_of

    layer, x = torch.nn.Linear(3, 4), torch.randn(5, 3)
    products = products_of(lambda: layer(x).sum().backward())
    assert sorted(products) == [(1, 4, 5, 3), (1, 5, 3, 4)] and flops(products) == 2 * (2 * 5 * 3 * 4)
    batched = products_of(lambda: torch.bmm(torch.randn(2, 5, 3), torch.randn(2, 3, 4)))
    assert batched == [(2, 5, 3, 4)] and flops(batched) == 2 * 2 * 5 * 3 * 4


def test_the_report_states_step_peer_and_parallel_ratios_with_their_goals(tmp_path):
    from genbench.bench.steps import ratios_figure

    row = {"label": "GAN 2D toy", "parameters": 890003, "gflop": 0.93, "lightning_s": 0.0086, "bare_s": 0.0081,
           "floor_s": 0.0031, "lightning_over_bare": 1.06, "bare_over_floor": 2.6, "floor_gflops": 300.0}
    peer = {"parameters": 35344, "step_s": 0.004, "log_prob_s": 0.2, "sample_s": 0.3}
    ours = {"parameters": 35352, "step_s": 0.0036, "log_prob_s": 0.1, "sample_s": 0.4,
            **{f"{k}_over_{p}": 0.9 for k in ("step", "log_prob", "sample") for p in ("zuko", "normflows")}}
    result = {"date": "d", "machine": "m", "load_average_before": 0.1,
              "training_step": {"steps": 300, "rounds": 3, "threads": 2, "models": {"gan_toy": row},
                                "lightning_own_s": {"automatic": 0.00037, "manual": 0.0002}},
              "flow_peers": {"points": 100000, "variants": {"no_batch_norm": {"genbench": ours, "zuko": peer,
                                                                               "normflows": peer}}},
              "parallel_table": {"table": "mode-coverage-2d", "workers": 2, "sequential_s": 36.0, "parallel_s": 20.0,
                                 "submitit_s": 30.0, "speedup": 1.8, "submitit_speedup": 1.2, "same_numbers": True,
                                 "rounds": 2}}
    text = markdown(result)
    assert "| GAN 2D toy | 890,003 | 0.930 | 8.60 | 8.10 | 3.10 | **1.06** | 2.60 | 300 |" in text
    assert "| no batch norm | zuko | 35,344 | 4.00 | 0.200 | 0.300 | **0.90** | **0.90** | **0.90** |" in text
    assert "forked by the `local` launcher: 20.0 s, **1.80×** faster (goal ≥ 1.6)" in text
    assert "`submitit_local` jobs (each a new interpreter, 4–5 s of imports): 30.0 s, 1.20×" in text
    assert "The renders' numbers are identical" in text
    assert "0.37 ms with automatic optimization" in text and "0.20 ms with manual optimization" in text
    ratios_figure(result, tmp_path / "ratios.png")
    assert (tmp_path / "ratios.png").stat().st_size > 10_000
