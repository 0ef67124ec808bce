"""``genbench table NAME --scale S --plan``: what a table's runs will cost on this machine, before any is trained.

Every run of the plan is composed as ``genbench table`` would run it; runs already done (a current record here,
in the reference results, or of the same config elsewhere, which the table copies) and trainings already kept cost
nothing, and runs that differ only in evaluation share
one training, as they do when run. Each distinct training and each distinct evaluation is probed once on the
current device (:mod:`.probe`), runs whose configs differ only in the value of a nonzero float (a learning rate, a
noise level) sharing a probe: their arithmetic is the same. The total is given for one process and for
``--workers N``: the trainings, each with the evaluations that wait for it, scheduled longest first on N workers
(each probed with the threads a worker of that launcher gets).
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ..core import paths
from ..core.progress import duration
from ..launchers import local_threads
from ..runs.checkpoints import FINAL_CHECKPOINT
from ..runs.config import compose
from ..runs.execute import cpu_name, quiet_lightning
from ..runs.identity import digest, training_hash
from ..tables.runner import MeasuredRuns, earlier_record, is_done, run_table
from ..tables.spec import load_table, plan
from .probe import ProbeData, TrainingProbe, gpu_step_seconds, probe_evaluation, probe_training


@dataclass
class RunCost:
    run_id: str
    training: str  # the training hash: runs with the same one share it
    status: str  # "done", "to run", "training kept" (only its evaluation runs)
    device: str | None = None
    train_s: float = 0.0  # 0 where another run of the table carries the shared training
    eval_s: float = 0.0
    peak_mib: float | None = None
    shares_with: str | None = None
    upper_bound: bool = False  # early stopping may end the training sooner
    gpu_s: float | None = None  # estimated on the reference GPU (probe.REFERENCE_GPU) from FLOPs and launches

    @property
    def seconds(self) -> float:
        return self.train_s + self.eval_s


@dataclass
class TablePlan:
    table: str
    scale: str
    machine: str
    threads: int
    runs: list[RunCost] = field(default_factory=list)
    probe_s: float = 0.0
    synthetic_data: bool = False  # a data set's files were absent: tensors of its space and sizes stood in

    @property
    def total_s(self) -> float:
        return sum(r.seconds for r in self.runs)

    def makespan(self, workers: int) -> float:
        """Wall time on ``workers`` workers if each training with the evaluations that wait for it is one job,
        longest first to the least loaded worker (LPT, within 4/3 of the best schedule). Optimistic: workers claim
        runs in the table's order, and one may wait for a training another is doing."""
        jobs: dict[str, float] = {}
        for r in self.runs:
            jobs[r.training] = jobs.get(r.training, 0.0) + r.seconds
        loads = [0.0] * workers
        for job in sorted(jobs.values(), reverse=True):
            loads[loads.index(min(loads))] += job
        return max(loads)


def gpu_seconds(probe: TrainingProbe, eval_s: float, trains: bool) -> float:
    """A run on the reference GPU, estimated: the training's steps at :func:`.probe.gpu_step_seconds` (its
    set-up and per-epoch work as measured here), the evaluation sped up as much as a training step."""
    speedup = probe.gpu_speedup()
    if speedup is None:  # nothing trains, or the step was not counted: as here
        return (probe.seconds if trains else 0.0) + eval_s
    step = gpu_step_seconds(probe.flops_per_step, probe.ops_per_step)
    return (probe.projected(step, speedup) if trains else 0.0) + eval_s / speedup


def cost_key(obj):
    """A config as its arithmetic sees it: every float reduced to whether it is zero (a switch), else kept."""
    if isinstance(obj, dict):
        return {k: cost_key(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [cost_key(v) for v in obj]
    if isinstance(obj, float):
        return "float" if obj else 0.0
    return obj


def worker_threads(launcher: str, workers: int) -> int:
    """Torch threads each worker gets (:mod:`genbench.launchers`): one for forked local workers, the cores shared
    out for submitit_local and a local Ray, this process's own otherwise (one process, or SLURM's machines)."""
    if workers > 1 and launcher == "local":
        return 1
    if launcher in ("submitit_local", "ray"):  # Ray: a local instance (a cluster's machines are not probed here)
        return local_threads(workers)
    return torch.get_num_threads()


def plan_table(name: str, scale: str, workers: int = 1, launcher: str = "local", rows: str | None = None,
               seeds: list[int] | None = None, log=print) -> TablePlan:
    """Probe the table's runs at ``scale`` (those of ``rows`` and ``seeds``, as ``genbench table`` selects them)
    that are not done yet; returns their projected costs."""
    quiet_lightning()
    planned = [p for p in plan(load_table(name), scale)
               if (rows is None or rows in p.row) and (seeds is None or p.seed in seeds)]
    threads, before = worker_threads(launcher, workers), torch.get_num_threads()
    result = TablePlan(name, scale, cpu_name(), threads)
    trainings: dict[str, tuple[TrainingProbe, object, ProbeData]] = {}
    datas: dict[str, ProbeData] = {}  # one copy of each data set (the first probe's set-up includes its loading)
    evaluations: dict[str, object] = {}
    carried: dict[str, str] = {}  # training hash -> the run that trains it
    measured = MeasuredRuns()  # records of the same config elsewhere: copied when the table runs
    began = time.perf_counter()
    torch.set_num_threads(threads)
    try:
        for i, p in enumerate(planned):
            config = compose(p.overrides)
            path = paths.results_dir("runs", name, scale, f"{p.run_id}.json")
            old, _ = earlier_record(path, config, name, scale, p.run_id)
            trained = training_hash(config)
            if is_done(old, config) or measured.find(config, path) is not None:
                result.runs.append(RunCost(p.run_id, trained, "done"))
                continue
            key = digest(cost_key({k: config[k] for k in ("data", "model", "trainer")}))
            if key not in trainings:
                log(f"[{i + 1}/{len(planned)}] probing the training of {p.run_id}")
                trainings[key] = probe_training(config, datas.get(digest(config["data"])))
                datas[digest(config["data"])] = trainings[key][2]
            probe, model, data = trainings[key]
            result.synthetic_data |= not data.real
            eval_key = digest([key, cost_key(config.get("evaluation") or {})])
            if eval_key not in evaluations:
                log(f"[{i + 1}/{len(planned)}] probing the evaluation of {p.run_id}")
                evaluations[eval_key] = probe_evaluation(model, data, config.get("evaluation") or {})
            ev = evaluations[eval_key]
            kept = paths.models_dir("trained", trained).joinpath(FINAL_CHECKPOINT).is_file()
            shares = carried.get(trained)
            carried.setdefault(trained, p.run_id)
            peaks = [m for m in (probe.peak_mib, ev.peak_mib) if m is not None]
            trains = not kept and not shares
            result.runs.append(RunCost(
                p.run_id, trained, "training kept" if kept else "to run", probe.device,
                probe.seconds if trains else 0.0, ev.seconds, max(peaks) if peaks else None,
                shares, probe.early_stopping and trains, gpu_seconds(probe, ev.seconds, trains)))
    finally:
        torch.set_num_threads(before)
    result.probe_s = time.perf_counter() - began
    return result


def render_plan(p: TablePlan, workers: int = 1, launcher: str = "local") -> str:
    """The plan as text: one line per run, then the totals."""
    device = next((r.device for r in p.runs if r.device), "cpu")
    lines = [f"Plan of {p.table} at {p.scale} scale: {len(p.runs)} runs, projected on {device} ({p.machine}, "
             f"{p.threads} torch thread{'s' if p.threads > 1 else ''} per process) from probes that took "
             f"{p.probe_s:.0f} s. Seconds of wall time; peak memory of the probe "
             f"({'allocated on the GPU' if device.startswith('cuda') else 'resident set of this process'}).", "",
             f"{'run':60s} {'status':14s} {'training s':>11s} {'evaluation s':>13s} {'total s':>10s} {'peak MiB':>9s}"]
    for r in p.runs:
        status = "done" if r.status == "done" else "shares" if r.shares_with else r.status
        peak = f"{r.peak_mib:9.0f}" if r.peak_mib is not None else f"{'–':>9s}"
        train = f"≤{r.train_s:.0f}" if r.upper_bound else f"{r.train_s:.0f}"
        lines.append(f"{r.run_id[:60]:60s} {status:14s} {train:>11s} {r.eval_s:13.0f} {r.seconds:10.0f} {peak}")
    todo = [r for r in p.runs if r.status != "done"]
    lines += ["", f"Total: {len(todo)} runs to run ({len({r.training for r in todo})} trainings, "
                  f"{sum(1 for r in todo if r.status == 'training kept')} kept), {p.total_s:,.0f} s "
                  f"({duration(p.total_s)}) in one process"]
    if workers > 1:
        span = p.makespan(workers)
        lines[-1] += (f"; {span:,.0f} s ({duration(span)}) on {workers} {launcher} workers "
                      f"at best (each training with its evaluations as one job, longest first; workers take runs in "
                      f"the table's order, so the wall time can be longer)")
    lines[-1] += "."
    notes = ["'shares': trained by the run named earlier in this list (the same training hash); its evaluation only.",
             "Training: the run's Trainer timed for two short epochs, projected to its epochs and steps; evaluation: "
             "the run's evaluation shrunk along its test examples and temperatures, its stages scaled back up, "
             "without the sample figures (genbench/bench/probe.py). Data loading of files and the first CUDA start "
             "are in the training's set-up."]
    if p.synthetic_data:
        notes.append("Synthetic data: a data set's files are absent here, so tensors of its space with the published "
                     "split sizes stood in (evaluators that need labels, the SVM features, are not counted).")
    if any(r.upper_bound for r in p.runs):
        notes.append("≤: the model stops early when its validation score stops improving: at most this long.")
    return "\n".join(lines + [""] + notes) + "\n"


ACCURACY_CASES = (("ali-mode-coverage", "cpu", "GAN", [0]), ("rbm-constraints", "cpu", "baseline", None),
                  ("iwae-table-1", "smoke", None, None))
"""(table, scale, rows, seeds) that ``make bench`` plans and then runs: an adversarial training and mode counts,
an RBM with AIS, and VAE/IWAE bounds, each a few minutes on a CPU."""


@contextmanager
def fresh_home():
    """An empty results home that reads no reference results (every planned run is run), the data where it was."""
    saved = {k: os.environ.get(k) for k in paths.environment()}  # every variable that says where genbench reads
    data = str(paths.data_root().resolve())  # the data sets stay where they are
    with tempfile.TemporaryDirectory() as home:
        os.environ.update(GENBENCH_HOME=home, GENBENCH_RESULTS=os.path.join(home, "results"),
                          GENBENCH_REFERENCE="none", GENBENCH_DATA=data)
        try:
            yield home
        finally:
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def plan_accuracy(cases=ACCURACY_CASES) -> list[dict]:
    """Each case planned, then run from scratch: the projected and the recorded seconds of every run (a run's
    wall time; a run that reused a training of the table has only its evaluation in it)."""
    out = []
    for table, scale, rows, seeds in cases:
        with fresh_home():
            planned = plan_table(table, scale, rows=rows, seeds=seeds, log=lambda *_: None)
            written = run_table(table, scale, rows=rows, seeds=seeds, log=lambda *_: None)
        actual = {p.run_id: r for p, r in written.runs if r.get("status") != "missing"}
        runs = [{"run_id": r.run_id, "planned_s": round(r.seconds, 1), "actual_s": actual[r.run_id]["wall_time_s"],
                 "planned_train_s": round(r.train_s, 1), "planned_eval_s": round(r.eval_s, 1),
                 "actual_train_s": None if actual[r.run_id].get("reused_training") else actual[r.run_id].get(
                     "train_time_s"), "actual_eval_s": actual[r.run_id].get("eval_time_s"),
                 "status": actual[r.run_id]["status"]} for r in planned.runs if r.run_id in actual]
        total_plan, total_actual = sum(r["planned_s"] for r in runs), sum(r["actual_s"] for r in runs)
        out.append({"table": table, "scale": scale, "rows": rows, "seeds": seeds, "probe_s": round(planned.probe_s, 1),
                    "runs": runs, "planned_s": round(total_plan, 1), "actual_s": round(total_actual, 1),
                    "ratio": round(total_plan / total_actual, 3) if total_actual else None})
    return out


def markdown(result: dict) -> list[str]:
    cases = result.get("plan_accuracy")
    if not cases:
        return []
    lines = ["## (n) `genbench table --plan` against the runs it planned", "",
             "| table | scale | selection | runs | probes (s) | planned (s) | actual (s) | planned / actual |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for c in cases:
        picked = ", ".join(x for x in (c["rows"] and f"rows '{c['rows']}'", c["seeds"] and f"seeds {c['seeds']}") if x)
        lines.append(f"| {c['table']} | {c['scale']} | {picked or 'all'} | {len(c['runs'])} | {c['probe_s']} | "
                     f"{c['planned_s']} | {c['actual_s']} | **{c['ratio']}** |")
    lines += ["", "Each case planned in an empty results home, then run there from scratch in the same process; "
              "actual: the runs' recorded wall times (training and evaluation; the table's render is not in it).", ""]
    return lines
