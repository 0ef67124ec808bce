"""``make bench``: speed as ratios against peers measured in one run, written to ``results/bench/``.

* (a) one PCD-1 epoch over MNIST (H = 500, batch 100) against scikit-learn's
  ``BernoulliRBM`` on the same data, and as a fraction of the matmul floor;
* (b) one AIS estimate (14,503 temperatures × 100 runs, 784×500) as GFLOP/s
  against a plain ``torch.mm`` loop of the same shapes;
* (c) wall time and peak memory of each table's smoke scale, each table run in
  a fresh process with an empty ``GENBENCH_HOME`` so that every run executes;
* (d) Burda's −L_5000 on 10,000 binarized MNIST images against the arithmetic floor of
  its products, and (e) a VAE/IWAE training epoch through Lightning against a bare loop
  of the same updates (:mod:`genbench.bench.vae`);
* (f) NADE's O(HD) scoring against the naive O(HD²) one, (g) MADE's 32-mask ensemble on the
  MNIST test set and (h) PixelCNN drawing 100 images, each against the arithmetic floor of
  its products (:mod:`genbench.bench.ar`);
* (i) what rendering the cross-family table ``mnist-nll`` at its cpu scale cost, row by row, read from its run
  records (training and evaluation wall times, the CPU each ran on, and which rows were copied from a family table);
* (j) one training step of a small model per family under Lightning, in a bare loop and as its products alone, and
  (k) the 2D Real NVP against zuko and normflows (:mod:`genbench.bench.steps`); ``ratios.png`` draws every ratio;
* (l) a smoke table of many small runs sequentially on one thread and on two single-thread ``submitit_local``
  workers, with the two renders' numbers compared;
* (m) the start-up of ``genbench --help``, ``list`` and of a mistake (:mod:`genbench.bench.cli`);
* (n) ``genbench table --plan`` against the runs it planned, run from scratch (:mod:`genbench.bench.plan`);
* (o) the training split resident on the device against the loader, on the CPU (:mod:`genbench.bench.resident`).

Numbers are only comparable on an idle machine (both cores free): the load
average is recorded with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from ..core import paths
from ..runs.execute import cpu_name
from ..runs.store import read_record
from ..tables import table_names
from .ar import benchmark_made_ensemble, benchmark_nade, benchmark_pixelcnn_sampling
from .ar import markdown as ar_markdown
from .cli import cli_latency
from .cli import markdown as cli_markdown
from .plan import markdown as plan_markdown
from .plan import plan_accuracy
from .resident import benchmark_resident
from .resident import markdown as resident_markdown
from .rbm import benchmark_ais, benchmark_pcd_epoch
from .steps import benchmark_peers, benchmark_steps, ratios_figure
from .steps import markdown as steps_markdown
from .vae import benchmark_bound, benchmark_vae_epoch


def table_smoke_cost(name: str) -> dict:
    """Wall time and peak resident memory of ``genbench table NAME --scale smoke`` from scratch."""
    env = {**os.environ, "GENBENCH_REFERENCE": "none"}  # every run executes: no reference record counts as done
    env.setdefault("GENBENCH_DATA", str(paths.data_root().resolve()))
    with tempfile.TemporaryDirectory() as home:
        env["GENBENCH_HOME"] = home
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "genbench.cli", "table", name, "--scale", "smoke"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err = proc.stderr.read()
    return {"table": name, "wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "exit_status": os.waitstatus_to_exitcode(status), "error": err.strip().splitlines()[-1] if status and err.strip() else None}


def parallel_table_cost(name: str = "mode-coverage-2d", workers: int = 2, rounds: int = 2) -> dict:
    """``genbench table NAME --scale smoke`` from scratch in one single-thread process, on ``workers`` single-thread
    processes forked by the ``local`` launcher, and on as many ``submitit_local`` jobs (new interpreters); each the
    fastest of ``rounds`` interleaved rounds (a shared machine only ever adds time), with whether the renders hold
    the same numbers."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GENBENCH_REFERENCE": "none"}
    env.setdefault("GENBENCH_DATA", str(paths.data_root().resolve()))
    ways = {"sequential": [], "local": ["--launcher", "local", "--workers", str(workers)],
            "submitit_local": ["--launcher", "submitit_local", "--workers", str(workers)]}
    walls, frames = {how: [] for how in ways}, {}
    for _ in range(rounds):
        for how, extra in ways.items():
            with tempfile.TemporaryDirectory() as home:
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "genbench.cli", "table", name, "--scale", "smoke", *extra],
                               env={**env, "GENBENCH_HOME": home}, check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                walls[how].append(time.perf_counter() - start)
                frames[how] = pd.read_csv(Path(home) / "results" / "tables" / name / "smoke.csv")
    cols = ["row", "dataset", "metric", "obtained"]
    sorted_ = {how: f[cols].sort_values(cols[:3]).reset_index(drop=True) for how, f in frames.items()}
    differences = {how: sorted_["sequential"].compare(f).to_string()[:500]
                   for how, f in sorted_.items() if not sorted_["sequential"].equals(f)}
    best = {how: min(w) for how, w in walls.items()}
    return {"table": name, "workers": workers, "rounds": rounds, "all_walls_s": walls,
            "sequential_s": best["sequential"], "parallel_s": best["local"], "submitit_s": best["submitit_local"],
            "speedup": best["sequential"] / best["local"], "submitit_speedup": best["sequential"] / best["submitit_local"],
            "same_numbers": not differences, "difference": "; ".join(f"{k}: {v}" for k, v in differences.items()) or None}


def recorded_costs(name: str = "mnist-nll", scale: str = "cpu") -> dict | None:
    """The wall times a table's records of one scale hold, row by row: what rendering it cost (no run here)."""
    folders = [paths.results_dir("runs", name, scale), paths.reference_dir("runs", name, scale)]
    folder = next((f for f in folders if f is not None and f.is_dir()), folders[0])
    records = [r for r in (read_record(f) for f in sorted(folder.glob("*.json"))) if r and r.get("status") == "finished"]
    if not records:
        return None
    rows = [{"run_id": r["run_id"], "train_s": r.get("train_time_s"), "eval_s": r.get("eval_time_s"),
             "run_s": None if r.get("reused_training") else r.get("wall_time_s"), "cpu": r.get("machine", {}).get("cpu"),
             "copied_from": r.get("reused_record")} for r in records]
    return {"table": name, "scale": scale, "rows": rows, "total_run_s": round(sum(x["run_s"] or 0 for x in rows), 1)}


NO_BF16 = "not measured: this CPU has no native bfloat16 products (AVX-512 or AMX)"


def _seconds(s: float | None) -> str:
    return f"{s:.2f}" if s is not None else NO_BF16


def _opt(s: float | None) -> str:
    return f"{s:,.0f}" if s is not None else "–"


def _ratio(r: float | None) -> str:
    return f"{r:.2f}" if r is not None else "n/a"


def markdown(result: dict) -> str:
    pcd, ais = result.get("pcd_epoch"), result.get("ais")
    kept = result.get("skipped") or []
    lines = ["# genbench speed (`make bench`)", "", f"Measured {result['date']} on {result['machine']}; "
             f"load average before: {result['load_average_before']:.2f}."
             + (f" Sections skipped in that run ({', '.join(kept)}) keep the values of an earlier run, measured at an "
                "earlier date (possibly on another CPU)." if kept else ""), ""]
    if pcd:
        lines += ["## (a) One PCD-1 epoch over MNIST (60,000 images, 500 hidden units, batch 100)", "",
                  "| | seconds |", "|---|---|",
                  f"| scikit-learn BernoulliRBM (float32) | {pcd['sklearn_float32_s']:.2f} |",
                  f"| genbench RBM, Lightning epoch (float32) | {pcd['genbench_lightning_s']:.2f} |",
                  f"| genbench RBM, Lightning epoch (`matmul_dtype=bfloat16`) | {_seconds(pcd.get('genbench_lightning_bf16_s'))} |",
                  f"| genbench RBM, bare update loop (float32) | {pcd['genbench_core_s']:.2f} |",
                  f"| float32 matmul floor (5 products per update) | {pcd['floor_s']:.2f} |", "",
                  f"genbench / scikit-learn (target ≤ 0.5): float32 **{pcd['ratio']:.2f}**, bfloat16 products "
                  f"**{_ratio(pcd.get('ratio_bfloat16'))}**. floor / genbench float32 = "
                  f"**{pcd['floor_s'] / pcd['genbench_lightning_s']:.2f}** of the float32 arithmetic floor"
                  + (" (bfloat16 runs below that floor by design: its products are a different arithmetic). "
                     if pcd.get("ratio_bfloat16") is not None else ". ") +
                  f"The floor alone is **{pcd['floor_s'] / pcd['sklearn_float32_s']:.2f}** of scikit-learn's epoch "
                  "(it does the same five products): the best ratio any float32 implementation can reach here.", ""]
    if ais:
        lines += ["## (b) One AIS estimate (14,503 temperatures × 100 runs, 784×500 RBM)", "",
                  f"{ais['wall_time_s']:.1f} s, **{ais['gflops']:.0f} GFLOP/s** against {ais['plain_mm_gflops']:.0f} GFLOP/s for "
                  f"a plain matmul loop of the same shapes: **{ais['ratio_to_plain_mm']:.2f}** of it (goal ≥ 0.75).", ""]
    if result.get("vae_bound"):
        b = result["vae_bound"]
        lines += [f"## (d) −L_{b['k']} of {b['examples']:,} binarized MNIST images (Burda's 1-layer VAE, 784-200-200-50)", "",
                  f"{b['wall_time_s']:.1f} s ({b['gflops']:.0f} GFLOP/s of decoder products) against {b['floor_s']:.1f} s for "
                  f"the same products alone in a bare `torch.mm` loop ({b['floor_gflops']:.0f} GFLOP/s): "
                  f"**{b['ratio_to_floor']:.2f}×** the arithmetic floor (goal ≤ 1.5). The rest is elementwise work on "
                  f"every example × sample row: the softplus and the x·logits sum of the Bernoulli likelihood over 784 "
                  f"pixels, and the bias copies of the linear layers (measured by torch's profiler).", ""]
    if result.get("vae_epoch"):
        lines += ["## (e) One VAE/IWAE training epoch (60,000 images, batch 20, 3,000 updates)", "",
                  "| k | Lightning epoch (s) | bare loop of the same updates (s) | ratio |", "|---|---|---|---|"]
        lines += [f"| {e['k']} | {e['lightning_s']:.1f} | {e['bare_s']:.1f} | {e['ratio']:.2f} |" for e in result["vae_epoch"]]
        lines += [""]

    lines += ar_markdown(result)
    lines += steps_markdown(result)
    lines += cli_markdown(result)
    lines += plan_markdown(result)
    lines += resident_markdown(result)
    if result.get("recorded_costs"):
        c = result["recorded_costs"]
        lines += [f"## (i) What `{c['table']}` at its {c['scale']} scale cost (from its run records)", "",
                  "| run | training (s) | evaluation (s) | run (s) | CPU | record |", "|---|---|---|---|---|---|"]
        lines += [f"| {x['run_id']} | {_opt(x['train_s'])} | {_opt(x['eval_s'])} | {_opt(x['run_s'])} | {x['cpu']} | "
                  f"{'copied from ' + x['copied_from'] if x['copied_from'] else 'run by this table'} |" for x in c["rows"]]
        lines += ["", f"Total of the runs' wall times: **{c['total_run_s'] / 3600:.2f} h** on one core each (rows copied "
                  "from a family table cost that table's run once; '–' is a time the record does not hold: runs made "
                  "before training and evaluation were timed apart, or the run time of a reused training).", ""]
    if result.get("tables"):
        lines += ["## (c) Tables at smoke scale, from scratch", "", "| table | wall (s) | peak memory (MiB) | exit |",
                  "|---|---|---|---|"]
        lines += [f"| {t['table']} | {t['wall_s']} | {t['peak_rss_mib']} | {t['exit_status']} |" for t in result["tables"]]
    return "\n".join(lines) + "\n"


def _pcd() -> dict:
    return {"pcd_epoch": benchmark_pcd_epoch()}


def _ais() -> dict:
    return {"ais": benchmark_ais()}


def _vae() -> dict:
    return {"vae_bound": benchmark_bound(), "vae_epoch": [benchmark_vae_epoch(k=k) for k in (1, 50)]}


def _ar() -> dict:
    return {"nade_eval": benchmark_nade(), "made_ensemble": benchmark_made_ensemble(),
            "pixelcnn_sampling": benchmark_pixelcnn_sampling()}


def _steps() -> dict:
    return {"training_step": benchmark_steps()}


def _peers() -> dict:
    return {"flow_peers": benchmark_peers()}


SECTIONS = {"pcd": _pcd, "ais": _ais, "vae": _vae, "ar": _ar, "steps": _steps, "peers": _peers,
            "parallel": lambda: {"parallel_table": parallel_table_cost()},
            "cli": lambda: {"cli_latency": cli_latency()},
            "plan": lambda: {"plan_accuracy": plan_accuracy()},
            "resident": lambda: {"resident": benchmark_resident()}}
"""The sections ``--skip`` can leave out (besides ``tables``), in the order they run; each returns its results."""


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip", nargs="*", default=[], choices=[*SECTIONS, "tables"])
    ap.add_argument("--tables", nargs="*", default=None, help="tables to time (default: all)")
    ap.add_argument("--out", type=Path, default=paths.results_dir("bench"))
    a = ap.parse_args(argv)

    out = a.out / "bench.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}  # sections skipped now keep their last values
    result = {**previous, "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": f"{cpu_name()}, {os.cpu_count()} cores", "load_average_before": os.getloadavg()[0],
              "skipped": a.skip}
    for name, section in SECTIONS.items():
        if name not in a.skip:
            result.update(section())
    result["recorded_costs"] = recorded_costs()
    if "tables" not in a.skip:
        measured = {t["table"]: t for t in result.get("tables", [])}
        measured.update({t: table_smoke_cost(t) for t in (a.tables or table_names())})
        result["tables"] = [measured[t] for t in sorted(measured)]
    a.out.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    (a.out / "bench.md").write_text(markdown(result))

    ratios_figure(result, a.out / "ratios.png")
    print(markdown(result))
    return result

