"""Speed of the RBM estimators against a plain PyTorch matmul loop of the same shapes.

``python -m genbench.bench_rbm [--betas N] [--out results/bench/ais.json]``. Speed is a
ratio measured in one call (DESIGN.md): the AIS loop's useful arithmetic (two
[runs, V]×[V, H]-sized matmuls per temperature) over its wall time, beside
``torch.mm`` of the same shapes in a bare loop, on the same threads.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from .evaluation.ais import ais_log_z, sm_schedule


def benchmark_ais(V: int = 784, H: int = 500, runs: int = 100, betas=None, plain_steps: int = 2000,
                  dtype: torch.dtype = torch.float32, seed: int = 0) -> dict:
    """Time :func:`ais_log_z` on a random V×H RBM (default: S&M's 14,503 temperatures).

    GFLOP/s counts ``2 · (2·runs·V·H)`` flops per temperature (the two matmuls);
    the plain loop runs ``plain_steps`` iterations of ``torch.mm`` [runs,V]·[V,H] and
    [runs,H]·[H,V] into preallocated outputs, the ceiling any AIS loop could reach.
    """
    betas = sm_schedule() if betas is None else torch.as_tensor(betas, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(H, V, generator=g, dtype=dtype) * 0.05
    b = torch.randn(V, generator=g, dtype=dtype) * 0.5 - 1.0
    c = torch.randn(H, generator=g, dtype=dtype) * 0.5 - 1.0
    base_b = torch.logit((torch.rand(V, generator=g, dtype=dtype) * 0.3 + 0.05))
    flops_step = 2 * 2 * runs * V * H

    v = (torch.rand(runs, V, generator=g) < 0.2).to(dtype)
    h = (torch.rand(runs, H, generator=g) < 0.5).to(dtype)
    WT, x, y = W.t().contiguous(), torch.empty(runs, H, dtype=dtype), torch.empty(runs, V, dtype=dtype)
    for _ in range(20):
        torch.mm(v, WT, out=x), torch.mm(h, W, out=y)
    t0 = time.perf_counter()
    for _ in range(plain_steps):
        torch.mm(v, WT, out=x)
        torch.mm(h, W, out=y)
    plain = time.perf_counter() - t0

    t0 = time.perf_counter()
    res = ais_log_z(W, b, c, base_b, betas, n_runs=runs, generator=g)
    wall = time.perf_counter() - t0
    n_steps = len(betas) - 1
    out = {
        "benchmark": "ais_log_z", "V": V, "H": H, "runs": runs, "n_betas": len(betas), "dtype": str(dtype),
        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "wall_time_s": wall, "ms_per_temperature": 1e3 * wall / n_steps,
        "gflops": flops_step * n_steps / wall / 1e9,
        "plain_mm_gflops": flops_step * plain_steps / plain / 1e9,
        "plain_mm_ms_per_step": 1e3 * plain / plain_steps,
        "log_z": res.log_z,
    }
    out["ratio_to_plain_mm"] = out["gflops"] / out["plain_mm_gflops"]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--V", type=int, default=784)
    ap.add_argument("--H", type=int, default=500)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--betas", type=int, default=None, help="number of temperatures (default: S&M's 14,503)")
    ap.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    a = ap.parse_args(argv)
    from .evaluation.ais import schedule

    result = benchmark_ais(a.V, a.H, a.runs, None if a.betas is None else schedule(a.betas))
    print(json.dumps(result, indent=2))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
