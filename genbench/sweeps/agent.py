"""Running a sweep: trials claimed, trained (or found done), pruned, and retried when their process died."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import platform
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import optuna
from optuna.trial import TrialState

from ..core import paths
from ..core.errors import ConfigError
from ..runs.callbacks import RunPruned
from ..runs.config import compose
from ..runs.execute import claim_run, train_and_evaluate
from ..runs.identity import is_current
from ..runs.store import read_record
from .spec import Sweep, load_sweep, relative_to_home, run_id, shown_value
from .study import GRACE_S, HEARTBEAT_S, MAX_RETRY, default_storage, hidden, lost, open_study
from .summary import write_summary


def run_sweep(name: str, count: int | None = None, storage: str | None = None, log: Callable = print) -> dict[str, Path]:
    """Run this worker's trials of sweep NAME (``count`` at most; else until the grid or ``run_cap`` is done), then
    write the summary. Several workers (processes or machines on one storage) may run at once."""
    sweep = load_sweep(name)
    if count is None and sweep.method != "grid" and sweep.run_cap is None:
        raise ConfigError(f"sweep {name} ({sweep.method}) has no end: give --count N (this worker's trials) or set "
                          f"run_cap: N (the sweep's total trials) in {sweep.path}")
    check_composes(sweep)
    study, rdb = open_study(sweep, storage)
    log(f"sweep {name}: {sweep.method} over {', '.join(p.key for p in sweep.params)}"
        + (f" ({sweep.grid_size} points)" if sweep.method == "grid" else "")
        + f"; {sweep.goal} {sweep.metric}; study {hidden(storage or default_storage(name))}")
    for note in sweep.ignored:
        log(f"  ignored by the Optuna backend: {note}")
    ran = 0
    while count is None or ran < count:
        reap_dead_trials(study)
        why = stop_reason(sweep, study)
        if why:
            log(f"sweep {name}: {why}")
            break
        run_trial(sweep, study, rdb, log)
        ran += 1
    return write_summary(sweep, study, storage or default_storage(name), log=log)


def check_composes(sweep: Sweep) -> None:
    """Compose one trial's config before the first trial: a bad key fails the sweep, not every trial."""
    first = {p.key: p.choices[0] if p.choices is not None else p.low for p in sweep.params}
    try:
        compose(sweep.overrides(first))
    except ConfigError as e:
        raise ConfigError(f"sweep {sweep.name} ({sweep.path}) does not compose: {e}") from None


def reap_dead_trials(study) -> None:
    """Fail and queue again the trials of dead processes: by heartbeat (any host, after the grace period), and at
    once for this host's trials whose run claim nobody holds (the kernel drops a dead process's ``flock``)."""

    optuna.storages.fail_stale_trials(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker") or {}
        if worker.get("trial") != t.number or worker.get("host") != platform.node():
            continue  # not claimed yet, copied from an earlier attempt, or another host's: the heartbeat decides
        claim = claim_run(Path(worker["record"]))
        if not claim.acquire(wait=False):
            continue  # its process is alive
        claim.release()
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        retry_lost(study, t.number)


def retry_lost(study, number: int) -> None:
    frozen = next(x for x in study.get_trials(deepcopy=False) if x.number == number)
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, frozen)


def stop_reason(sweep: Sweep, study) -> str | None:
    """Why this worker should start no new trial, or None."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return None  # a lost trial waits to be run again
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if sweep.target is not None and any(not sweep.better(sweep.target, t.value) for t in done):
        return f"the metric target {sweep.target} is reached"
    running = [t for t in trials if t.state == TrialState.RUNNING]
    spent = [t for t in trials if t.state.is_finished() and not lost(t)] + running
    if sweep.run_cap is not None and len(spent) >= sweep.run_cap:
        return f"run_cap {sweep.run_cap} reached ({len(spent)} trials)"
    return grid_reason(sweep, spent, running) if sweep.method == "grid" else None


def grid_reason(sweep: Sweep, spent: list, running: list) -> str | None:
    """The grid is done when every point has an ended trial; the rest may be running in other workers."""
    def points(trials):
        return {tuple(repr(t.params.get(p.key)) for p in sweep.params) for t in trials}

    grid = {tuple(map(repr, combo)) for combo in itertools.product(*(p.choices for p in sweep.params))}
    left = grid - points(t for t in spent if t.state != TrialState.RUNNING)
    if not left:
        return f"the grid is done ({len(grid)} points)"
    if not left - points(running):
        return (f"the grid's last {len(left)} point(s) are running in other workers (a dead worker's trial is queued "
                f"again at once on its own host, after {GRACE_S} s without heartbeat on another)")
    return None


def grid_twin(study, number: int, params: dict) -> int | None:
    """Another trial with these parameters that keeps the point: finished, or running with a lower number. Optuna's
    grid sampler hands out a running point when no point is left, and two workers asking at the same moment can draw
    one point; on one results folder the run's claim stops the second, across machines this does."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)):
        if t.number != number and t.params == params and (t.state != TrialState.RUNNING or t.number < number):
            return t.number
    return None


@contextlib.contextmanager
def heartbeat(rdb, trial_id: int):
    """Record the trial's heartbeat every HEARTBEAT_S while it runs (what Optuna's ``optimize`` does for itself)."""
    stop = threading.Event()

    def beat():
        while True:
            with contextlib.suppress(Exception):  # a busy database skips one beat; GRACE_S allows several
                rdb.record_heartbeat(trial_id)
            if stop.wait(HEARTBEAT_S):
                return

    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_trial(sweep: Sweep, study, rdb, log: Callable) -> None:
    """Ask for one trial, run (or reuse) its run under the run's claim, and tell the study its outcome."""

    trial = study.ask()
    with heartbeat(rdb, trial._trial_id):
        params = {p.key: p.suggest(trial) for p in sweep.params}
        twin = grid_twin(study, trial.number, params) if sweep.method == "grid" else None
        if twin is not None:
            trial.set_user_attr("error", f"duplicate of trial {twin}: not run (two workers drew the grid's last point)")
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            log(f"[trial {trial.number}] its point is trial {twin}'s: not run")
            return
        rid = run_id(params)
        path = paths.results_dir("runs", "sweep", sweep.name, f"{rid}.json")
        shown = " ".join(f"{k}={shown_value(v)}" for k, v in params.items())
        claim = claim_run(path)
        if not claim.acquire(wait=False):
            log(f"[trial {trial.number}] {shown}: run {rid} is being run by {claim.holder() or 'another process'}; waiting")
        try:
            with claim:  # the study is told before the claim is released: a free claim means a dead or told trial
                trial.set_user_attr("worker", {"trial": trial.number, "host": platform.node(), "pid": os.getpid(),
                                               "record": str(path.resolve())})
                trial.set_user_attr("run_id", rid)
                trial.set_user_attr("record", relative_to_home(path))
                state, value, error = run_params(sweep, trial, params, path, rid, shown, log)
                study.tell(trial, value, state=None if state == TrialState.COMPLETE else state, skip_if_finished=True)
        except Exception as e:  # a bug: the trial fails with its error, the sweep stops
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        except BaseException:  # Ctrl-C or a kill signal: the trial is lost and queued again for the next worker
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            retry_lost(study, trial.number)
            log(f"[trial {trial.number}] interrupted; queued again for the next `genbench sweep {sweep.name}`")
            raise
    if error and error.startswith("the run has no result"):  # the sweep's metric name is wrong: every trial would fail
        raise ConfigError(f"sweep {sweep.name}: {error}; set metric.name in {sweep.path} to test/<one of them>")


def run_params(sweep: Sweep, trial, params: dict, path: Path, rid: str, shown: str, log: Callable):
    """(state, value, error) of one trial's run: a current finished record is reused, else the run is trained."""

    try:
        config = compose(sweep.overrides(params))
    except ConfigError as e:  # this trial's values do not compose (the first trial's did)
        trial.set_user_attr("error", str(e))
        log(f"[trial {trial.number}] {shown}: does not compose ({e})")
        return TrialState.FAIL, None, str(e)
    old = read_record(path)
    if old and old.get("status") in ("finished", "diverged") and is_current(old, config):
        log(f"[trial {trial.number}] {shown}: done before (run {rid})")
        record = old
    else:  # a pruned run is trained on: this study's pruner decides again (the training resumes from its last epoch)
        log(f"[trial {trial.number}] {shown}: running (run {rid})")
        pruning = pruning_callback(trial, sweep.monitor) if sweep.early_terminate else None
        record = train_and_evaluate(config, path, rid, table=f"sweep/{sweep.name}", callbacks=[pruning] if pruning else [])
        if pruning and not pruning.reported:
            trial.set_user_attr("pruning", f"the run logged no {sweep.monitor}: nothing to prune on")
    state, value, error, unit = outcome(record, sweep.metric)
    trial.set_user_attr("status", record["status"])
    if unit:
        trial.set_user_attr("unit", unit)
    if error:
        trial.set_user_attr("error", error)
    log(f"[trial {trial.number}] {record['status']}"
        + (f": {sweep.metric} = {value:.6g} {unit}" if state == TrialState.COMPLETE else f" ({error})")
        + f" in {record.get('wall_time_s', 0):.1f} s")
    return state, value, error


def pruning_callback(trial, monitor: str):
    """A Lightning callback reporting ``monitor`` to the trial after every validation (step = epochs done) and
    stopping the run (:class:`genbench.runs.RunPruned`) when the study's pruner says so."""

    class Pruning(L.Callback):
        reported = 0

        def on_validation_end(self, trainer, pl_module):
            value = trainer.callback_metrics.get(monitor)
            if trainer.sanity_checking or value is None:
                return
            epoch = trainer.current_epoch + 1
            trial.report(float(value), step=epoch)
            self.reported += 1
            if trial.should_prune():
                raise RunPruned(f"pruned after epoch {epoch} by the sweep's Hyperband pruner ({monitor} = "
                                f"{float(value):.5g})", epochs=epoch)

    return Pruning()


def outcome(record: dict, metric: str) -> tuple[Any, float | None, str | None, str | None]:
    """(trial state, value, error, unit) of a run record: finished → its metric; diverged or pruned → pruned; else
    failed."""
    if record["status"] in ("diverged", "pruned"):
        return TrialState.PRUNED, None, record.get("error") or "diverged", None
    if record["status"] != "finished":
        return TrialState.FAIL, None, record.get("error") or record["status"], None
    found = next((r for r in record.get("results", []) if r["metric"] == metric), None)
    if found is None:
        have = ", ".join(sorted({r["metric"] for r in record.get("results", [])})) or "none"
        return TrialState.FAIL, None, f"the run has no result {metric!r}; its results: {have}", None
    if not math.isfinite(found["value"]):
        return TrialState.FAIL, None, f"{metric} is {found['value']}", found["unit"]
    return TrialState.COMPLETE, found["value"], None, found["unit"]
