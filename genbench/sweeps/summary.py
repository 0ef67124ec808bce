"""What a sweep found: ``summary.md`` and ``summary.png``, and the best trial as an experiment config."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from optuna.trial import TrialState

from ..core import paths
from ..core.errors import ConfigError
from ..evaluation.samples import new_figure, save_figure
from ..runs.config import GROUPS, compose
from ..runs.identity import config_hash
from ..runs.store import read_record, write_text_atomic
from .spec import Param, Sweep, config_path, hydra_value, load_sweep, relative_to_home, shown_value
from .study import default_storage, lost, open_study, shown_url


def summarize(name: str, storage: str | None = None, log: Callable = print) -> dict[str, Path]:
    """Write the summary of an existing study (``genbench sweep NAME --summary``)."""
    sweep = load_sweep(name)
    url = storage or default_storage(name)
    if storage is None and not paths.results_dir("sweeps", name, "study.db").is_file():
        raise ConfigError(f"sweep {name} has no study yet ({url}): run `genbench sweep {name}` first")
    study, _ = open_study(sweep, url, create=False)
    return write_summary(sweep, study, url, log=log)


def ranked(sweep: Sweep, study) -> list:
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    return sorted(done, key=lambda t: t.value if sweep.goal == "minimize" else -t.value)


def write_summary(sweep: Sweep, study, url: str, log: Callable = print) -> dict[str, Path]:
    """``results/sweeps/NAME/summary.{md,png}``, and the best trial as
    ``results/configs/experiment/sweep_NAME_best.yaml``."""
    out = paths.results_dir("sweeps", sweep.name)
    best = ranked(sweep, study)
    written, verified = {}, None
    if best:
        written["png"] = summary_plot(sweep, study, best, out / "summary.png")
        experiment, verified = write_best_experiment(sweep, best[0])
        if experiment is not None:
            written["best"] = experiment
    written["md"] = out / "summary.md"
    write_text_atomic(written["md"], summary_markdown(sweep, study, url, best, written, verified))
    log(f"sweep {sweep.name}: " + (f"best trial {best[0].number}: {sweep.metric} = {best[0].value:.6g} "
                                   f"{best[0].user_attrs.get('unit', '')}" if best else "no finished trial yet"))
    log("written: " + ", ".join(str(p) for p in written.values()))
    return written


def summary_markdown(sweep: Sweep, study, url: str, best: list, written: dict, verified: str | None) -> str:
    keys = [p.key for p in sweep.params]
    unit = best[0].user_attrs.get("unit", "") if best else ""
    over = ", ".join(f"`{k}`" for k in keys)
    lines = [f"# Sweep `{sweep.name}`", "",
             (f"`{config_path(sweep.path)}`: {sweep.method} over {over}, {sweep.goal} `{sweep.metric}` "
              f"({unit or 'unit unknown'}) on the test split. Fixed overrides: `{' '.join(sweep.fixed)}`. Backend: "
              f"Optuna, study `{sweep.name}` in `{shown_url(sweep.name, url)}`. Written "
              f"{time.strftime('%Y-%m-%d %H:%M:%S%z')}."), ""]
    if best:
        b = best[0]
        lines += [(f"**Best: trial {b.number}**, {_params_text(b, keys)}: {sweep.metric} = {b.value:.6g} {unit} "
                   f"(run `{b.user_attrs.get('run_id')}`, record `{b.user_attrs.get('record')}`)."), ""]
        lines += [(f"Its config is `{relative_to_home(written['best'])}`: `genbench train "
                   f"experiment={written['best'].stem}` trains it again ({verified}).") if "best" in written
                  else f"No best config was written: {verified}.", ""]
    header = "| rank | trial | " + " | ".join(f"`{k}`" for k in keys) + f" | {sweep.metric} ({unit}) | run id | record |"
    lines += ["## Best trials", "", header, "|---" * (len(keys) + 5) + "|"]
    for i, t in enumerate(best[:10], 1):
        lines.append(f"| {i} | {t.number} | " + " | ".join(shown_value(t.params.get(k)) for k in keys)
                     + f" | {t.value:.6g} | `{t.user_attrs.get('run_id')}` | `{t.user_attrs.get('record')}` |")
    lines += ["", (f"Each run logs to W&B (group `sweep/{sweep.name}`; offline without a key, into `results/wandb/`, "
                   "which `wandb sync` uploads); its record holds its `wandb_run_id`.")]
    lines += ["", "## Trials", "", *trial_counts(study), ""]
    lines += by_value(sweep, best)
    if "png" in written:
        lines += ["![objective against each parameter](summary.png)", ""]
    return "\n".join(lines)


def _params_text(trial, keys: list[str]) -> str:
    return ", ".join(f"`{k}={shown_value(trial.params.get(k))}`" for k in keys)


def trial_counts(study) -> list[str]:
    """Trials by state, the failures' errors, and the wall time from the first start to the last end."""
    trials = study.get_trials(deepcopy=False)
    n = {s: sum(t.state == s for t in trials) for s in TrialState}
    n_lost = sum(lost(t) for t in trials)
    lines = [(f"{len(trials)} trials: {n[TrialState.COMPLETE]} complete, {n[TrialState.PRUNED]} pruned (run diverged, "
              "or stopped by the pruner), "
              f"{n[TrialState.FAIL] - n_lost} failed (run failed), {n_lost} lost (process died or interrupted; queued "
              f"again), {n[TrialState.RUNNING]} running, {n[TrialState.WAITING]} waiting.")]
    ended = [t for t in trials if t.datetime_start and t.datetime_complete]
    if ended:
        wall = (max(t.datetime_complete for t in ended) - min(t.datetime_start for t in ended)).total_seconds()
        busy = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in ended)
        lines.append(f"Wall time {wall:.1f} s from the first trial's start to the last one's end; {busy:.1f} s in trials.")
    for t in trials:
        if t.state in (TrialState.FAIL, TrialState.PRUNED) and "error" in t.user_attrs:
            lines.append(f"* trial {t.number} {t.state.name.lower()}: {t.user_attrs['error'].splitlines()[0][:200]}")
    return lines


def by_value(sweep: Sweep, best: list) -> list[str]:
    """Mean, min and count of the metric per value of each categorical parameter (e.g. over seeds)."""
    lines = []
    for p in sweep.params:
        if p.choices is None or len(p.choices) > 20:
            continue
        rows = []
        for v in p.choices:
            vals = [t.value for t in best if t.params.get(p.key) == v]
            if vals:
                mean = sum(vals) / len(vals)
                rows.append(f"| {shown_value(v)} | {mean:.6g} | {min(vals):.6g} | {max(vals):.6g} | {len(vals)} |")
        if rows:
            lines += [f"### {sweep.metric} by `{p.key}`", "", "| value | mean | min | max | n |", "|---|---|---|---|---|",
                      *rows, ""]
    return lines


def summary_plot(sweep: Sweep, study, best: list, path: Path) -> Path:
    """The objective against each parameter, one panel each; the best trial in red."""
    unit = best[0].user_attrs.get("unit", "")
    fig = new_figure(figsize=(4.2 * len(sweep.params), 3.6))
    for i, p in enumerate(sweep.params, 1):
        ax = fig.add_subplot(1, len(sweep.params), i)
        xs = [_position(p, t.params.get(p.key)) for t in best]
        ax.scatter(xs, [t.value for t in best], s=22, alpha=0.7, color="tab:blue", label="trial")
        ax.scatter([xs[0]], [best[0].value], s=80, marker="*", color="tab:red", label=f"best (trial {best[0].number})")
        means = _means(p, best)
        if means:
            ax.scatter(list(means), list(means.values()), s=200, marker="_", color="black", label="mean per value")
        if p.choices is not None:
            ax.set_xticks(range(len(p.choices)), [shown_value(c) for c in p.choices], rotation=30 if len(p.choices) > 6 else 0)
        elif p.kind in ("log_uniform", "log_uniform_values"):
            ax.set_xscale("log")
        ax.set(xlabel=p.key, ylabel=f"{sweep.metric} ({unit})" if i == 1 else None)
        ax.grid(alpha=0.3)
        if i == 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"sweep {sweep.name}: {sweep.metric} ({'lower' if sweep.goal == 'minimize' else 'higher'} is better), "
                 f"{len(best)} complete trials", fontsize=10)
    return save_figure(fig, path)


def _means(p: Param, trials: list) -> dict[int, float]:
    """Mean objective per value of a categorical parameter, when some value has several trials (e.g. seeds)."""
    if p.choices is None:
        return {}
    groups = {i: [t.value for t in trials if t.params.get(p.key) == c] for i, c in enumerate(p.choices)}
    if max(map(len, groups.values())) < 2:
        return {}
    return {i: sum(v) / len(v) for i, v in groups.items() if v}


def _position(p: Param, value: Any) -> float:
    return p.choices.index(value) if p.choices is not None and value in p.choices else value


def write_best_experiment(sweep: Sweep, trial) -> tuple[Path | None, str]:
    """``results/configs/experiment/sweep_NAME_best.yaml`` (in the results home: a config Hydra finds beside the
    shipped ones, :func:`genbench.runs.config.config_dirs`; shipped configs change only on purpose): the base
    experiment, group choices and the overridden keys with the values of the best run's resolved config; returns
    it (None if not written) and whether it composes to that run's config."""
    record = read_record(paths.home() / trial.user_attrs.get("record", ""))
    if record is None:
        return None, f"the best run's record {trial.user_attrs.get('record')} is missing"
    path = paths.results_dir("configs", "experiment", f"sweep_{sweep.name}_best.yaml")
    items = [*sweep.fixed, *(f"{k}={hydra_value(v)}" for k, v in trial.params.items())]
    write_text_atomic(path, best_experiment_text(sweep, trial, items, record))
    try:
        same = config_hash(compose([f"experiment={path.stem}"])) == record["config_hash"]
    except ConfigError as e:  # reported in the summary: the sweep's results stand without it
        return path, f"WARNING: it does not compose: {str(e).splitlines()[0]}"
    if not same:
        return path, "WARNING: it composes to another config than the best run's; compare it with the record"
    return path, f"it composes to the best run's config, hash {record['config_hash']}"


def best_experiment_text(sweep: Sweep, trial, items: list[str], record: dict) -> str:
    """Group choices go to ``defaults`` (the base experiment first); other keys take the resolved value."""
    defaults, body = [], {"name": f"sweep-{sweep.name}-best"}
    for item in items:
        key, value = item.lstrip("+").split("=", 1)
        if key == "experiment":
            defaults.insert(0, value)
        elif key in GROUPS:
            if key != "logger":  # how a run logs is not part of its config hash
                defaults.append({f"override /{key}": value})
        else:
            _set(body, key, _get(record["config"], key))
    unit = trial.user_attrs.get("unit", "")
    head = (f"# @package _global_\n# The best trial of sweep {sweep.name} ({config_path(sweep.path)}): trial {trial.number}, "
            f"{sweep.metric} = {trial.value:.6g} {unit},\n# run {trial.user_attrs.get('run_id')}, record "
            f"{trial.user_attrs.get('record')}.\n# Written by `genbench sweep {sweep.name}`, which rewrites it.\n")
    return head + yaml.safe_dump({"defaults": [*defaults, "_self_"], **body}, sort_keys=False)


def _get(tree: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value
