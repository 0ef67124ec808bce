"""``make paper-costs``: what each table's paper scale costs, computed, not typed in.

For every table with a paper scale: its plan (:mod:`.plan`) in an empty results home, so that every run counts,
probed with one torch thread per worker as the ``local`` launcher runs a table on this machine's cores: the total
CPU time, the wall time on those workers and whether it fits in a day; and an estimate for the reference GPU
(:data:`.probe.REFERENCE_GPU`) from each training step's FLOPs and kernel launches, the evaluation sped up as much
as a step. Writes ``results/bench/paper-costs.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from ..core import paths
from ..core.errors import GenbenchError
from ..runs.execute import cpu_name
from ..tables.spec import load_table, table_names
from .plan import fresh_home, plan_table
from .probe import REFERENCE_GPU

DAY_S = 24 * 3600


def paper_tables() -> list[str]:
    return [t for t in table_names() if "paper" in load_table(t)["scales"] and t != "demo"]


def table_cost(name: str, workers: int, log=print) -> dict:
    """One table's paper scale: runs, trainings, CPU seconds (one process and on ``workers``), GPU estimate."""
    began = time.perf_counter()
    try:
        with fresh_home():
            p = plan_table(name, "paper", workers=workers, log=lambda *_: None)
    except GenbenchError as e:
        log(f"{name}: not planned ({e})")
        return {"table": name, "error": str(e)}
    cost = {"table": name, "runs": len(p.runs), "trainings": len({r.training for r in p.runs}),
            "cpu_s": round(p.total_s), "cpu_wall_s": round(p.makespan(workers)),
            "gpu_s": round(sum(r.gpu_s or 0.0 for r in p.runs)), "upper_bound": any(r.upper_bound for r in p.runs),
            "synthetic_data": p.synthetic_data, "probe_s": round(time.perf_counter() - began)}
    cost["fits_a_day"] = cost["cpu_wall_s"] <= DAY_S
    log(f"{name}: {cost['runs']} runs, {cost['cpu_s'] / 3600:.1f} CPU-hours, {cost['gpu_s'] / 3600:.2f} GPU-hours "
        f"(estimated), probed in {cost['probe_s']} s")
    return cost


def hours(s: float) -> str:
    return f"{s / 3600:,.1f}" if s >= 360 else f"{s / 3600:.2f}"


def render(costs: list[dict], machine: str, workers: int, measured: str) -> str:
    gpu = REFERENCE_GPU
    lines = ["# What the paper scales cost", "",
             f"Computed by `make paper-costs` ({measured}) on {machine}: each table's `genbench table NAME --scale "
             f"paper --plan` with every run counted (an empty results home), probed with one torch thread per "
             f"process as {workers} `local` workers run it here.", "",
             "| table | runs | trainings | CPU-hours (one process each) | wall hours on "
             f"{workers} workers | fits one {workers}-core machine in a day | {gpu['name']} hours (estimate) |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for c in costs:
        if "error" in c:
            lines.append(f"| {c['table']} | not planned: {c['error']} | | | | | |")
            continue
        bound = "≤ " if c["upper_bound"] else ""
        synthetic = " (synthetic data)" if c["synthetic_data"] else ""
        lines.append(f"| {c['table']}{synthetic} | {c['runs']} | {c['trainings']} | {bound}{hours(c['cpu_s'])} | "
                     f"{bound}{hours(c['cpu_wall_s'])} | {'yes' if c['fits_a_day'] else 'no'} | "
                     f"{bound}{hours(c['gpu_s'])} |")
    fits = [c["table"] for c in costs if c.get("fits_a_day")]
    lines += ["", f"Fit one {workers}-core CPU machine in a day: {', '.join(fits) or 'none'}.", "",
              f"CPU hours: measured rates (a few timed steps of each distinct training through its own Trainer, its "
              f"evaluation shrunk and scaled back up, sample figures left out; genbench/bench/probe.py) times the "
              f"paper's steps. GPU hours: "
              f"an **estimate**, not a measurement: each step's FLOPs (torch's FlopCounterMode, backward included) at "
              f"{gpu['sustained']:.0%} of the {gpu['name']}'s {gpu['fp32_tflops']:g} TFLOP/s FP32, or its operator "
              f"calls at {gpu['launch_us']:g} µs per kernel launch, whichever is longer, plus the set-up and "
              f"per-epoch work as measured here; evaluation sped up as much as the training step. ≤: early "
              f"stopping may end trainings sooner. Synthetic data: the data files were absent here, so tensors of "
              f"the data's space with the published split sizes stood in (evaluators that need labels, the SVM "
              f"features, are then not counted)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genbench.bench.paper_costs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", default=None, help="comma-separated (default: every table with a paper scale)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="local workers (default: the cores)")
    parser.add_argument("--out", type=Path, default=None, help="folder (default: results/bench)")
    args = parser.parse_args(argv)
    out = args.out or paths.results_dir("bench")  # resolved before fresh_home moves the results home
    tables = args.tables.split(",") if args.tables else paper_tables()
    costs = [table_cost(t, args.workers) for t in tables]
    text = render(costs, cpu_name(), args.workers, time.strftime("%Y-%m-%d"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "paper-costs.md").write_text(text)
    (out / "paper-costs.json").write_text(json.dumps({"machine": cpu_name(), "workers": args.workers,
                                                      "reference_gpu": REFERENCE_GPU, "tables": costs}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
