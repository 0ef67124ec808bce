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
