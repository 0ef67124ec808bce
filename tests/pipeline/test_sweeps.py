"""Offline sweeps (genbench/sweeps/): W&B sweep YAMLs through Optuna, end to end on the bundled digits.

Real Optuna studies in SQLite and real runs (a mixture of Bernoullis trains in well under a second); the kill and
two-worker tests start real `genbench sweep` processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from genbench.cli import main
from genbench.core.errors import ConfigError
from genbench.core.paths import home, results_dir
from genbench.runs.identity import config_hash
from genbench.runs.store import read_record
from genbench.sweeps import (check_composes, default_storage, load_sweep, make_sampler, parse_sweep, run_sweep,
                             sweep_names)
from genbench.tables import compose

COMMAND = '[genbench, train, experiment=mob_digits, trainer.max_epochs={epochs}, logger=wandb, "${{args_no_hyphens}}"]'


def write_sweep(configs: Path, name: str, parameters: str, method: str = "grid", epochs: int = 5, extra: str = "") -> None:
    (configs / "sweep" / f"{name}.yaml").write_text(
        f"method: {method}\nmetric: {{name: test/nll, goal: minimize}}\nparameters:\n{parameters}\n"
        f"command: {COMMAND.format(epochs=epochs)}\n{extra}")


def study_of(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=default_storage(name))


def records(name: str) -> dict[str, dict]:
    return {p.stem: read_record(p) for p in results_dir("runs", "sweep", name).glob("*.json")}


def nll(record: dict) -> float:
    return next(r["value"] for r in record["results"] if r["metric"] == "nll")


def params_of(trials) -> list[tuple]:
    return sorted(tuple(sorted(t.params.items())) for t in trials)


def complete(study) -> list:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def genbench_sweep(name: str, *args: str) -> subprocess.Popen:
    """`genbench sweep NAME` in its own process, under this test's GENBENCH_HOME and configs."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "genbench.cli", "sweep", name, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# -- end to end ----------------------------------------------------------------------------------------------------------

def test_offline_sweep_runs_and_its_summary_names_the_best_trial(configs_copy, capsys):
    write_sweep(configs_copy, "four", "  model.components: {values: [2, 5, 10, 20]}")
    assert main(["sweep", "four"]) == 0  # no W&B key (WANDB_MODE=offline): the Optuna backend
    runs = records("four")
    assert len(runs) == 4 and all(r["status"] == "finished" for r in runs.values())
    best_id, best = min(runs.items(), key=lambda kv: nll(kv[1]))
    study = study_of("four")
    assert len(complete(study)) == 4 and study.best_value == nll(best)
    assert study.best_trial.user_attrs["run_id"] == best_id

    summary = results_dir("sweeps", "four", "summary.md").read_text()
    best_line = next(line for line in summary.splitlines() if line.startswith("**Best"))
    assert f"trial {study.best_trial.number}" in best_line and best_id in best_line
    assert f"{nll(best):.6g} nats" in best_line and "4 complete" in summary
    png = results_dir("sweeps", "four", "summary.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    # the best trial as an experiment: composes to the best run's config (hash), as the summary says
    assert "experiment=sweep_four_best" in summary and "composes to the best run's config" in summary
    assert results_dir("configs", "experiment", "sweep_four_best.yaml").read_text().startswith("# @package _global_")
    assert not (configs_copy / "experiment" / "sweep_four_best.yaml").exists()  # shipped configs stay as shipped
    assert config_hash(compose(["experiment=sweep_four_best"])) == best["config_hash"]

    # a new study of the same sweep re-scores the finished records instead of training again
    results_dir("sweeps", "four", "study.db").unlink()
    assert main(["sweep", "four"]) == 0
    assert "done before" in capsys.readouterr().out
    assert {k: r["started"] for k, r in records("four").items()} == {k: r["started"] for k, r in runs.items()}
    assert study_of("four").best_value == nll(best)

    # each trial logged to W&B offline, grouped by the sweep
    for r in runs.values():
        [run_dir] = results_dir("wandb").rglob(f"offline-run-*-{r['wandb_run_id']}")
        assert b"sweep/four" in next(run_dir.glob("*.wandb")).read_bytes()
        assert r["config"]["name"] == "sweep-four" and r["table"] == "sweep/four"


def test_a_resumed_sweep_does_not_rerun_finished_trials(configs_copy):
    write_sweep(configs_copy, "resume", "  model.pseudocount: {distribution: log_uniform_values, min: 0.001, max: 0.1}",
                method="random", extra="run_cap: 4\n")
    run_sweep("resume", count=2)
    first = {k: r["started"] for k, r in records("resume").items()}
    assert len(first) == 2
    run_sweep("resume", count=2)
    runs = records("resume")
    assert len(runs) == 4 and {k: runs[k]["started"] for k in first} == first  # the first two were not run again
    run_sweep("resume")  # run_cap 4 is reached: nothing runs
    study = study_of("resume")
    assert len(records("resume")) == 4 and len(study.trials) == 4
    assert len({t.params["model.pseudocount"] for t in complete(study)}) == 4  # a resumed worker draws new points

    # a study is not continued under a changed question
    write_sweep(configs_copy, "resume", "  model.pseudocount: {distribution: uniform, min: 0.001, max: 0.1}",
                method="random", extra="run_cap: 4\n")
    with pytest.raises(ConfigError, match="changed .*params.*study.db"):
        run_sweep("resume")


def test_a_killed_sweep_is_completed_by_the_next_run_and_its_trial_retried(configs_copy):
    write_sweep(configs_copy, "killed", "  model.components: {values: [5, 10]}", epochs=200)
    proc = genbench_sweep("killed")
    running = wait_for_running_trial("killed", proc)
    proc.kill()
    proc.wait()
    assert main(["sweep", "killed"]) == 0

    study = study_of("killed")
    [dead] = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    assert dead.number == running.number and "error" not in dead.user_attrs
    done = complete(study)
    [retry] = [t for t in done if t.system_attrs.get("failed_trial") == dead.number]
    assert retry.params == dead.params
    assert params_of(done) == [(("model.components", 5),), (("model.components", 10),)]
    assert len(records("killed")) == 2 and all(r["status"] == "finished" for r in records("killed").values())


def wait_for_running_trial(name: str, proc: subprocess.Popen, timeout: float = 90.0):
    began = time.time()
    while time.time() - began < timeout:
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before it could be killed:\n{proc.stdout.read()}")
        if any(results_dir("runs", "sweep", name).glob("*.lock")):  # a trial has claimed its run: the study exists
            trials = study_of(name).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            claimed = [t for t in trials if "worker" in t.user_attrs]
            if claimed:
                return claimed[0]
        time.sleep(0.1)
    proc.kill()
    pytest.fail("no trial started")


def test_two_workers_share_a_grid_without_running_a_trial_twice(configs_copy):
    write_sweep(configs_copy, "pair", "  model.components: {values: [2, 5, 10, 20]}", epochs=60)
    workers = [genbench_sweep("pair") for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    study = study_of("pair")
    assert len(study.trials) == 4  # no point was drawn twice
    assert params_of(complete(study)) == [(("model.components", c),) for c in (2, 5, 10, 20)]
    assert len(records("pair")) == 4
    assert len({t.user_attrs["worker"]["pid"] for t in study.trials}) == 2, outputs  # both worked


# -- translation ---------------------------------------------------------------------------------------------------------

def sweep_of(method: str, parameters: dict, **extra):
    raw = {"method": method, "metric": {"name": "test/nll", "goal": "maximize"}, "parameters": parameters,
           "command": ["genbench", "train", "experiment=mob_digits", "logger=wandb", "${env}", "${args_no_hyphens}"],
           **extra}
    return parse_sweep("t", raw, Path("t.yaml"))


def first_trial(sweep):
    study = optuna.create_study(sampler=make_sampler(sweep), direction=sweep.goal)
    trial = study.ask()
    values = {p.key: p.suggest(trial) for p in sweep.params}
    study.tell(trial, 0.0)
    return values, study.trials[0].distributions


def test_methods_become_optuna_samplers():
    params = {"model.components": {"values": [5, 10]}}
    assert isinstance(make_sampler(sweep_of("grid", params)), optuna.samplers.GridSampler)
    assert isinstance(make_sampler(sweep_of("random", params)), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler(sweep_of("bayes", params)), optuna.samplers.TPESampler)
    sweep = sweep_of("random", params, run_cap=8)
    assert sweep.metric == "nll" and sweep.goal == "maximize" and sweep.run_cap == 8
    assert sweep.fixed == ["experiment=mob_digits", "logger=wandb"]  # macros and words dropped


def test_distributions_as_wandb_defines_them():
    values, dists = first_trial(sweep_of("random", {
        "a": {"distribution": "uniform", "min": 0.5, "max": 2},
        "b": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        "c": {"distribution": "log_uniform", "min": 0, "max": 2},  # exponents: e^0 .. e^2
        "d": {"distribution": "int_uniform", "min": 1, "max": 15},
        "e": {"distribution": "q_uniform", "min": 0.05, "max": 1.0, "q": 0.1},
        "f": {"min": 2, "max": 9},  # no distribution: ints → int_uniform
        "g": {"min": 0.0, "max": 1.5},  # floats → uniform
        "h": {"values": [[100], [500, 500]]},
        "i": {"value": 7}}))
    assert dists["a"] == FloatDistribution(0.5, 2)
    assert dists["b"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["c"].log and dists["c"].low == pytest.approx(1.0) and dists["c"].high == pytest.approx(7.389056)
    assert dists["d"] == IntDistribution(1, 15) and isinstance(values["d"], int)
    assert dists["e"].step == 0.1 and dists["e"].low == pytest.approx(0.1) and dists["e"].high == pytest.approx(1.0)
    assert dists["f"] == IntDistribution(2, 9) and dists["g"] == FloatDistribution(0.0, 1.5)
    assert dists["h"] == CategoricalDistribution(["[100]", "[500, 500]"])
    assert "i" not in dists and "i=7" in sweep_of("random", {"i": {"value": 7}, "j": {"values": [1]}}).fixed
    assert 0.5 <= values["a"] <= 2 and 1e-4 <= values["b"] <= 0.1


def test_grid_expands_discrete_distributions_and_runs_every_point():
    sweep = sweep_of("grid", {"k": {"distribution": "int_uniform", "min": 1, "max": 3},
                              "q": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.5},
                              "s": {"values": ["x", "y"]}})
    assert [p.choices for p in sweep.params] == [[1, 2, 3], [0.0, 0.5, 1.0], ["x", "y"]] and sweep.grid_size == 18
    study = optuna.create_study(sampler=make_sampler(sweep))
    for _ in range(18):
        trial = study.ask()
        [p.suggest(trial) for p in sweep.params]
        study.tell(trial, 0.0)
    assert len(set(params_of(study.trials))) == 18


def test_trial_overrides_and_run_ids():
    sweep = sweep_of("grid", {"model.hidden": {"values": [[100], [500]]}, "seed": {"values": [0, 1]}})
    overrides = sweep.overrides({"model.hidden": "[100]", "seed": 1})
    assert overrides == ["experiment=mob_digits", "logger=wandb", "model.hidden=[100]", "seed=1", "name=sweep-t"]
    from genbench.sweeps import run_id

    assert run_id({"seed": 1, "model.lr": 0.001}) == run_id({"model.lr": 0.001, "seed": 1})
    assert run_id({"seed": 1, "model.lr": 0.001}) != run_id({"seed": 1, "model.lr": 0.0010001})
    assert run_id({"seed": 1, "model.lr": 0.001}).startswith("lr-0-001--seed-1--")


@pytest.mark.parametrize("change, named", [
    ({"method": "hyperband"}, "grid, random, bayes"),
    ({"parameters": {"x": {"distribution": "normal", "mu": 0, "sigma": 1}}}, "log_uniform_values, log_uniform, int_uniform"),
    ({"parameters": {"x": {"distribution": "uniform", "min": 0, "max": 1}}}, "values, value, int_uniform or q_uniform"),
    ({"parameters": {"x": {"distribution": "uniform", "min": 2, "max": 1}}}, "min (2) must be below max (1)"),
    ({"parameters": {"x": 3}}, "must be a mapping"),
    ({"metric": {"name": "test/nll", "goal": "lowest"}}, "minimize or maximize"),
    ({"metric": {"name": "train/loss"}}, "test/METRIC"),
    ({"command": ["genbench", "train", "logger=wandb", "${args}"]}, "args_no_hyphens"),
    ({"command": ["genbench", "train", "${args_no_hyphens}"]}, "logger=wandb"),
    ({"colour": "red"}, "valid: method, metric, parameters, command, run_cap"),
    ({"run_cap": 0}, "positive integer"),
    ({"command": ["genbench", "train", "seed=1", "logger=wandb", "${args_no_hyphens}"]}, "both swept"),
    ({"early_terminate": {"type": "median"}}, "type: hyperband, min_iter: N"),
    ({"early_terminate": {"type": "hyperband", "eta": 3}}, "max_iter: N, s: S"),
    ({"early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 1}}, "eta >= 2"),
])
def test_a_bad_sweep_names_what_is_valid(change, named):
    raw = {"method": "grid", "metric": {"name": "test/nll"}, "parameters": {"seed": {"values": [0, 1]}},
           "command": ["genbench", "train", "logger=wandb", "${args_no_hyphens}"], **change}
    with pytest.raises(ConfigError) as e:
        parse_sweep("bad", raw, Path("configs/sweep/bad.yaml"))
    assert named in str(e.value) and "configs/sweep/bad.yaml" in str(e.value)


def test_early_terminate_prunes_a_trial_from_its_validation_curve(configs_copy):
    """Hyperband on val/nll, one bracket (rung at epoch 1): after a learning trial, the trials that learn nothing
    (lr 1e-7) are not the best at epoch 1, so they are stopped there and recorded as pruned, not trained on."""
    (configs_copy / "sweep" / "prune.yaml").write_text(
        "method: grid\nmetric: {name: test/nll, goal: minimize}\nparameters:\n  model.lr: {values: [1.0e-7, 2.0e-7, 0.003]}\n"
        "early_terminate: {type: hyperband, min_iter: 1, max_iter: 2, eta: 3}\n"
        "command: [genbench, train, data=digits, model=made, 'model.hidden=[50]', model.optimizer=adam, "
        "trainer.max_epochs=2, logger=wandb, '${args_no_hyphens}']\n")
    assert isinstance(load_sweep("prune").pruner(), optuna.pruners.HyperbandPruner)
    run_sweep("prune", log=lambda *_: None)
    trials = study_of("prune").get_trials(deepcopy=False)
    assert trials[0].params["model.lr"] == 0.003, "Optuna's grid order changed: the learning trial must come first"
    by_lr = {t.params["model.lr"]: t for t in trials}
    assert by_lr[0.003].state == TrialState.COMPLETE and set(by_lr[0.003].intermediate_values) == {1, 2}
    for lr in (1e-7, 2e-7):
        t = by_lr[lr]
        assert t.state == TrialState.PRUNED and list(t.intermediate_values) == [1]
        assert t.intermediate_values[1] > by_lr[0.003].intermediate_values[1] + 5  # a real gap, not noise
        record = read_record(home() / t.user_attrs["record"])
        assert record["status"] == "pruned" and record["epochs"] == 1 and not record["results"]
        assert "pruned after epoch 1" in record["error"]
    assert "2 pruned" in results_dir("sweeps", "prune", "summary.md").read_text()


def test_an_endless_sweep_and_an_unknown_one_are_refused(configs_copy, capsys):
    write_sweep(configs_copy, "endless", "  model.pseudocount: {distribution: uniform, min: 0.001, max: 0.1}",
                method="bayes")
    with pytest.raises(ConfigError, match="--count N.*run_cap"):
        run_sweep("endless")
    assert main(["sweep", "nope"]) == 2 and "mob_digits" in capsys.readouterr().err
    write_sweep(configs_copy, "badkey", "  model.nope: {values: [1, 2]}")
    assert main(["sweep", "badkey"]) == 2 and "does not compose" in capsys.readouterr().err
    assert not records("endless") and not records("badkey")


@pytest.mark.parametrize("name", sweep_names())
def test_every_shipped_sweep_translates_and_composes(name):
    sweep = load_sweep(name)
    make_sampler(sweep)
    check_composes(sweep)
    values, _ = first_trial(sweep)
    config = compose(sweep.overrides(values))
    assert config["logger"]["wandb"] and config["name"] == f"sweep-{name}"
    raw = json.loads(json.dumps(sweep.spec()))
    assert raw["metric"] in {"nll", "modes_veegan"}


def test_a_silent_trial_of_another_host_is_retried_after_the_grace_period(configs_copy, monkeypatch):
    """Another machine's dead worker holds no claim here: its trial is failed and queued again by heartbeat."""
    from genbench import sweeps
    from genbench.sweeps import study as sweep_study

    monkeypatch.setattr(sweep_study, "HEARTBEAT_S", 1)
    monkeypatch.setattr(sweep_study, "GRACE_S", 2)
    write_sweep(configs_copy, "remote", "  model.components: {values: [2, 5]}")
    study, rdb = sweeps.open_study(load_sweep("remote"))
    trial = study.ask()
    trial.suggest_categorical("model.components", [2, 5])
    trial.set_user_attr("worker", {"trial": trial.number, "host": "elsewhere", "pid": 1, "record": "/nowhere.json"})
    rdb.record_heartbeat(trial._trial_id)
    sweeps.reap_dead_trials(study)
    assert study.trials[0].state == TrialState.RUNNING  # its heartbeat is recent
    time.sleep(3.5)
    sweeps.reap_dead_trials(study)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    assert study.trials[1].params == study.trials[0].params


def test_a_bad_storage_url_is_one_clear_line_without_its_password(configs_copy):
    write_sweep(configs_copy, "store", "  model.components: {values: [2]}")
    for url, why in (("postgresql://me:s3cret@localhost:1/db", "database driver|cannot open"), ("nonsense", "SQLAlchemy URL")):
        with pytest.raises(ConfigError, match=why) as e:
            run_sweep("store", storage=url)
        assert "s3cret" not in str(e.value)


def test_a_grid_point_drawn_twice_is_kept_by_the_lower_trial_only():
    """Optuna's grid sampler hands out a running point when no point is left: the later of two trials on one point
    yields (across machines no run claim would stop it), the earlier keeps it, and a finished trial keeps it too."""
    from genbench.sweeps import grid_twin

    study = optuna.create_study()
    params = {"model.components": 10}
    study.enqueue_trial(params)
    study.enqueue_trial(params)
    first, second = study.ask(), study.ask()
    for t in (first, second):
        t.suggest_categorical("model.components", [5, 10])
    assert first.params == second.params == params
    assert grid_twin(study, second.number, params) == first.number and grid_twin(study, first.number, params) is None
    study.tell(first, 1.0)
    assert grid_twin(study, second.number, params) == first.number
