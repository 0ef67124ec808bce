"""Sweeps without a W&B server: a W&B sweep YAML (``configs/sweep/NAME.yaml``) run through Optuna.

One YAML, two backends. With a W&B key, ``genbench sweep NAME`` hands the file to the W&B server (its agent runs
``genbench train`` per trial); without one (or with ``--backend optuna``) this module translates the same file:

* ``method``: ``grid`` → a grid sampler over the ``values`` lists; ``random`` → random sampling; ``bayes`` → TPE.
  Draws are seeded by (sweep seed 0, trial number), so a resumed or second worker does not redraw the first
  worker's points.
* ``parameters``: ``values`` (categorical), ``value`` (fixed), ``distribution`` ``uniform``, ``log_uniform_values``,
  ``log_uniform`` (min and max are natural-log exponents), ``int_uniform``, ``q_uniform`` (``q``, default 1), as
  W&B defines them; ``min``/``max`` without a distribution are ``int_uniform`` for ints, else ``uniform``.
* ``metric``: ``name`` ``test/M`` (or ``M``) is the result metric ``M`` of the run record; ``goal`` the direction.
* ``command``: its ``key=value`` items are every trial's fixed overrides; ``${...}`` macros are dropped.
* ``early_terminate``: ``{type: hyperband, min_iter | max_iter (+ s), eta}`` → Optuna's Hyperband pruner, an
  iteration being an epoch: a run that logs a validation curve of the sweep's metric (``val/M``, the autoregressive
  family's ``val/nll``) reports it every epoch, and a trial the pruner stops is recorded as ``pruned`` (its
  ``last.ckpt`` is kept: the same config trained later resumes from it). W&B's server applies ``early_terminate``
  to the history of the metric itself, and a ``test/`` metric is logged once per run, so online it prunes nothing.

Each trial is an ordinary run (:func:`genbench.runs.train_and_evaluate`) whose record is
``results/runs/sweep/NAME/RUN_ID.json``, RUN_ID derived from the trial's parameters: a trial with the parameters
of a current finished record reuses it. The study lives in an Optuna RDB storage (default
``results/sweeps/NAME/study.db``; a PostgreSQL or MySQL URL lets machines share it). A trial whose process
died is failed and queued again: at once when it ran on this host (its run claim is free, see
:mod:`genbench.locks`), after the heartbeat's grace period otherwise. The summary (``summary.md``, ``summary.png``)
and the best trial as ``results/configs/experiment/sweep_NAME_best.yaml`` (in the results home, found by
``experiment=sweep_NAME_best``) are written after every sweep.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import platform
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import paths
from .config import GROUPS, compose
from .errors import ConfigError
from .identity import config_hash, is_current, slug
from .store import read_record, write_text_atomic

METHODS = ("grid", "random", "bayes")
DISTRIBUTIONS = ("categorical", "constant", "uniform", "log_uniform_values", "log_uniform", "int_uniform", "q_uniform")
SWEEP_KEYS = ("method", "metric", "parameters", "command", "run_cap", "program", "name", "description", "project",
              "entity", "early_terminate")
SEED = 0
HEARTBEAT_S, GRACE_S = 30, 120
"""A running trial writes a heartbeat every 30 s; one silent for 2 min is failed and retried by the next worker."""
MAX_RETRY = 3
"""A trial whose process dies more often than this (e.g. killed for memory each time) stays failed."""


# -- the sweep YAML ------------------------------------------------------------------------------------------------------

@dataclass
class Param:
    """One swept parameter. ``choices`` (values, or a grid's expansion) hold Optuna-storable values: lists and
    mappings become their Hydra override text."""

    key: str
    kind: str
    choices: list | None = None
    low: float | None = None
    high: float | None = None
    q: float | None = None

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, self.choices)
        if self.kind == "int_uniform" or (self.kind == "q_uniform" and isinstance(self.q, int)):
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.q or 1))
        return trial.suggest_float(self.key, self.low, self.high, step=self.q,
                                   log=self.kind in ("log_uniform", "log_uniform_values"))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "choices": self.choices, "low": self.low, "high": self.high, "q": self.q}


@dataclass
class Sweep:
    name: str
    path: Path
    method: str
    metric: str
    goal: str
    params: list[Param]
    fixed: list[str]
    run_cap: int | None = None
    target: float | None = None
    ignored: list[str] = field(default_factory=list)
    early_terminate: dict[str, Any] | None = None

    @property
    def grid_size(self) -> int:
        return math.prod(len(p.choices) for p in self.params) if self.method == "grid" else 0

    def spec(self) -> dict[str, Any]:
        """What decides a trial's number: a study made under another spec must not be continued."""
        spec = {"method": self.method, "metric": self.metric, "goal": self.goal, "fixed": self.fixed,
                "params": {p.key: p.describe() for p in self.params}}
        return {**spec, "early_terminate": self.early_terminate} if self.early_terminate else spec

    @property
    def monitor(self) -> str:
        """The validation curve a pruner watches: the sweep's metric on the validation split."""
        return f"val/{self.metric}"

    def pruner(self):
        """Optuna's Hyperband pruner for ``early_terminate`` (W&B's min_iter/max_iter/s/eta, in epochs), else none."""
        import optuna

        if not self.early_terminate:
            return optuna.pruners.NopPruner()
        e = self.early_terminate
        low = e.get("min_iter") or max(1, e["max_iter"] // e["eta"] ** e["s"])
        return optuna.pruners.HyperbandPruner(min_resource=low, max_resource=e.get("max_iter") or "auto",
                                              reduction_factor=e["eta"])

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """The Hydra overrides of one trial: the command's, the trial's parameters, then the run name."""
        return [*self.fixed, *(f"{k}={hydra_value(v)}" for k, v in params.items()), f"name=sweep-{self.name}"]

    def better(self, a: float, b: float) -> bool:
        return a < b if self.goal == "minimize" else a > b


def sweep_names() -> list[str]:
    return sorted(p.stem for p in (paths.configs_dir() / "sweep").glob("*.yaml"))


def load_sweep(name: str) -> Sweep:
    """Read and check ``configs/sweep/NAME.yaml``; every mistake is a :class:`ConfigError` naming what is valid."""
    path = paths.configs_dir() / "sweep" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no sweep {name!r} in {path.parent}; sweeps: {', '.join(sweep_names()) or 'none'}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"sweep {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    return parse_sweep(name, raw, path)


def parse_sweep(name: str, raw: Any, path: Path) -> Sweep:
    if not isinstance(raw, dict):
        raise ConfigError(f"sweep {path} must be a mapping with the keys method, metric, parameters and command "
                          "(W&B's sweep format, e.g. configs/sweep/mob_digits.yaml)")
    unknown = sorted(set(raw) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(f"sweep {path}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(SWEEP_KEYS)}")
    method = raw.get("method")
    if method not in METHODS:
        raise ConfigError(f"sweep {path}: method {method!r} is not one of {', '.join(METHODS)} (grid: every "
                          "combination of the values; random: independent draws; bayes: TPE on the trials so far)")
    metric, goal, target = parse_metric(raw.get("metric"), path)
    params, constants = parse_params(raw.get("parameters"), method, path)
    fixed = [*parse_command(raw.get("command"), path), *constants]
    clash = sorted({o.split("=", 1)[0].lstrip("+") for o in fixed} & {p.key for p in params})
    if clash:
        raise ConfigError(f"sweep {path}: {', '.join(clash)} is both swept (parameters) and fixed (command or value); "
                          "keep one")
    run_cap = raw.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or isinstance(run_cap, bool) or run_cap < 1):
        raise ConfigError(f"sweep {path}: run_cap must be a positive integer (the sweep's total trials), got {run_cap!r}")
    early = parse_early_terminate(raw.get("early_terminate"), path)
    ignored = ["early_terminate strict (Optuna's Hyperband has no strict mode)"] if early and early.pop("strict") else []
    return Sweep(name, path, method, metric, goal, params, fixed, run_cap, target, ignored, early)


def parse_early_terminate(raw: Any, path: Path) -> dict[str, Any] | None:
    """W&B's ``early_terminate`` (only ``type: hyperband`` exists): iterations are epochs; eta defaults to 3."""
    if raw is None:
        return None
    usage = ("early_terminate must be {type: hyperband, min_iter: N, eta: 3} or {type: hyperband, max_iter: N, s: S, "
             "eta: 3} (W&B's format; an iteration is an epoch)")
    if not isinstance(raw, dict) or raw.get("type") != "hyperband" or set(raw) - {"type", "min_iter", "max_iter", "s",
                                                                                    "eta", "strict"}:
        raise ConfigError(f"sweep {path}: {usage}; got {raw!r}")
    early = {"min_iter": raw.get("min_iter"), "max_iter": raw.get("max_iter"), "s": raw.get("s", 0),
             "eta": raw.get("eta", 3), "strict": bool(raw.get("strict", False))}
    numbers = [early[k] for k in ("min_iter", "max_iter", "s", "eta") if early[k] is not None]
    if (not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in numbers) or early["eta"] < 2
            or not (early["min_iter"] or (early["max_iter"] and "s" in raw))):
        raise ConfigError(f"sweep {path}: {usage}, with positive integers and eta >= 2; got {raw!r}")
    return early


def parse_metric(metric: Any, path: Path) -> tuple[str, str, float | None]:
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
        raise ConfigError(f"sweep {path}: metric must be {{name: test/METRIC, goal: minimize|maximize}}, METRIC a "
                          "result of the run record such as nll or modes_veegan")
    name, goal = metric["name"], metric.get("goal", "minimize")
    if "/" in name and not name.startswith("test/"):
        raise ConfigError(f"sweep {path}: metric {name!r} is not a test result; runs log their results as test/METRIC "
                          "(e.g. test/nll), which is what a sweep can score")
    if goal not in ("minimize", "maximize"):
        raise ConfigError(f"sweep {path}: metric goal {goal!r} is not minimize or maximize")
    extra = sorted(set(metric) - {"name", "goal", "target"})
    if extra:
        raise ConfigError(f"sweep {path}: unknown metric key(s) {', '.join(extra)}; valid: name, goal, target")
    target = metric.get("target")
    return name.removeprefix("test/"), goal, None if target is None else _number(target, "metric target", path)


def parse_command(command: Any, path: Path) -> list[str]:
    """The fixed overrides: the command's ``key=value`` items (``${...}`` macros and words like ``train`` dropped)."""
    if (not isinstance(command, list) or command[:2] != ["genbench", "train"] or "${args_no_hyphens}" not in command):
        raise ConfigError(f"sweep {path}: command must be [genbench, train, KEY=VALUE ..., \"${{args_no_hyphens}}\"]: "
                          "the W&B agent then runs `genbench train` with each trial's parameters as Hydra overrides, "
                          "and the fixed KEY=VALUE items apply to every trial")
    fixed = [str(c) for c in command[2:] if "=" in str(c) and not str(c).startswith(("$", "-"))]
    if "logger=wandb" not in fixed:
        raise ConfigError(f"sweep {path}: command must include logger=wandb, or a W&B sweep never sees the metric "
                          "(the Optuna backend logs to W&B offline with it too)")
    return fixed


def parse_params(raw: Any, method: str, path: Path, prefix: str = "") -> tuple[list[Param], list[str]]:
    """Swept parameters and the fixed overrides of ``value`` parameters; nested ``parameters`` become dotted keys."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"sweep {path}: parameters must map config keys (e.g. model.lr) to {{values: [...]}}, "
                          "{value: x} or {distribution: ..., min: a, max: b}")
    params, fixed = [], []
    for key, spec in raw.items():
        key = f"{prefix}{key}"
        if isinstance(spec, dict) and "parameters" in spec:
            more, more_fixed = parse_params(spec["parameters"], method, path, prefix=f"{key}.")
            params, fixed = params + more, fixed + more_fixed
        elif isinstance(spec, dict) and ("value" in spec or spec.get("distribution") == "constant"):
            fixed.append(f"{key}={hydra_value(spec.get('value'))}")
        else:
            params.append(parse_param(key, spec, method, path))
    return params, fixed


def parse_param(key: str, spec: Any, method: str, path: Path) -> Param:
    where = f"sweep {path}: parameter {key}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping: {{values: [...]}}, {{value: x}} or {{distribution: D, min: a, "
                          f"max: b}}, D one of {', '.join(DISTRIBUTIONS)}; got {spec!r}")
    if "probabilities" in spec:
        raise ConfigError(f"{where}: weighted values (probabilities) are not supported by the Optuna backend; "
                          "use plain values")
    dist = spec.get("distribution") or ("categorical" if "values" in spec else _inferred(spec))
    if dist not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: distribution {dist!r} is not supported; valid: {', '.join(DISTRIBUTIONS)} "
                          "(W&B's normal, log_normal and q_log_uniform families have no Optuna counterpart)")
    if dist == "categorical":
        return categorical(key, spec.get("values"), where)
    low, high = _number(spec.get("min"), f"{key} min", path), _number(spec.get("max"), f"{key} max", path)
    if not low < high:
        raise ConfigError(f"{where}: min ({low}) must be below max ({high})")
    if dist == "log_uniform_values" and low <= 0:
        raise ConfigError(f"{where}: log_uniform_values needs min > 0 (it draws the log uniformly); got {low}")
    if dist == "log_uniform":
        low, high = math.exp(low), math.exp(high)
    q = spec.get("q", 1) if dist == "q_uniform" else None
    if q is not None and (not isinstance(q, (int, float)) or q <= 0):
        raise ConfigError(f"{where}: q must be a positive number, got {q!r}")
    if dist == "q_uniform":
        low, high = math.ceil(low / q - 1e-9) * q, math.floor(high / q + 1e-9) * q
    if dist == "int_uniform" and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}: int_uniform needs integer min and max, got {low} and {high}")
    param = Param(key, dist, low=int(low) if dist == "int_uniform" else low, high=int(high) if dist == "int_uniform" else high, q=q)
    if method == "grid":
        return Param(key, dist, choices=grid_values(param, where))
    return param


def _inferred(spec: dict) -> str:
    """W&B's rule for a parameter with min and max but no distribution."""
    if "min" in spec and "max" in spec:
        return "int_uniform" if all(isinstance(spec[k], int) for k in ("min", "max")) else "uniform"
    return f"<none: give values, value, or distribution with min and max; keys given: {', '.join(spec) or 'none'}>"


def categorical(key: str, values: Any, where: str) -> Param:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: values must be a non-empty list")
    choices = [hydra_value(v) if isinstance(v, (list, dict)) else v for v in values]
    if len(set(map(repr, choices))) != len(choices):
        raise ConfigError(f"{where}: values {values} repeat a value")
    return Param(key, "categorical", choices=choices)


def grid_values(param: Param, where: str) -> list:
    """A grid's points of a discrete distribution (int_uniform, q_uniform); continuous ones cannot be gridded."""
    if param.kind == "int_uniform":
        return list(range(int(param.low), int(param.high) + 1))
    if param.kind == "q_uniform":
        n = round((param.high - param.low) / param.q) + 1
        values = [param.low + i * param.q for i in range(n)]
        return [int(v) if isinstance(param.q, int) else round(v, 12) for v in values]
    raise ConfigError(f"{where}: method grid needs discrete parameters (values, value, int_uniform or q_uniform), "
                      f"and {param.kind} is continuous; use method random or bayes, or list values")


def _number(value: Any, what: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"sweep {path}: {what} must be a number, got {value!r}")
    try:
        return value if isinstance(value, (int, float)) else float(value)
    except ValueError:
        raise ConfigError(f"sweep {path}: {what} must be a number, got {value!r}") from None


def hydra_value(value: Any) -> str:
    """A value as Hydra override text (lists and mappings in flow style)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return str(value)


def run_id(params: dict[str, Any]) -> str:
    """A trial's run id: readable parameters, then a hash of their exact values (the same params, the same run)."""
    def short(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    readable = "--".join(slug(f"{k.split('.')[-1]} {short(v)}") for k, v in sorted(params.items()))
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{readable[:80]}--{digest}"


# -- samplers ------------------------------------------------------------------------------------------------------------

def make_sampler(sweep: Sweep):
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid; the worker loop, not ``after_trial``, decides when the grid is done (``Study.stop`` only
        works inside ``optimize``)."""

        def after_trial(self, study, trial, state, values):
            pass

    class PerTrialSeed:
        """Draws seeded by (sweep seed, trial number): a resumed or second worker does not redraw earlier points."""

        def before_trial(self, study, trial):
            for sampler in (self, getattr(self, "_random_sampler", None)):
                if sampler is not None:
                    sampler._rng.rng.seed((SEED * 1_000_003 + trial.number) % 2**32)
            super().before_trial(study, trial)

    class RandomSampler(PerTrialSeed, optuna.samplers.RandomSampler):
        pass

    class TPESampler(PerTrialSeed, optuna.samplers.TPESampler):
        pass

    if sweep.method == "grid":
        return GridSampler({p.key: p.choices for p in sweep.params}, seed=SEED)
    return RandomSampler(seed=SEED) if sweep.method == "random" else TPESampler(seed=SEED)


# -- the study -----------------------------------------------------------------------------------------------------------

def default_storage(name: str) -> str:
    return f"sqlite:///{paths.results_dir('sweeps', name, 'study.db').resolve()}"


def open_study(sweep: Sweep, storage: str | None = None, create: bool = True):
    """(study, RDB storage) of the sweep, created on first use; refuses a study made under another spec."""
    import optuna

    url = storage or default_storage(sweep.name)
    quiet_optuna()
    with _serialized(url):
        rdb = _storage(url)
        if not create and sweep.name not in optuna.get_all_study_names(rdb):
            raise ConfigError(f"no study {sweep.name!r} in {hidden(url)}: run `genbench sweep {sweep.name}` first")
        study = optuna.create_study(study_name=sweep.name, storage=rdb, sampler=make_sampler(sweep),
                                    pruner=sweep.pruner(), direction=sweep.goal, load_if_exists=True)
        _check_spec(study, sweep, url)
    return study, rdb


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used with Study.optimize.*")


@contextlib.contextmanager
def _serialized(url: str):
    """Two workers starting on one new SQLite file would race to create its tables: one at a time."""
    from .locks import Claim

    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        yield
        return
    db = Path(url.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with Claim(db.with_suffix(".open.lock")):
        yield


def _storage(url: str, attempts: int = 5):
    """Optuna's RDB storage at ``url``. Workers that start together on a new database race to create its schema
    (tables, PostgreSQL's enum types): the loser's duplicate-object error is retried, and finds the schema made."""
    import optuna
    import sqlalchemy.exc

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
        except ImportError as e:
            cause = f" ({e.__cause__})" if e.__cause__ else ""
            raise ConfigError(f"the storage {hidden(url)} needs its database driver{cause}: pip install "
                              "'psycopg[binary]' (postgresql://; or psycopg2-binary with postgresql+psycopg2://) or "
                              "PyMySQL (mysql+pymysql://...); SQLite needs none") from None
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
        except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.OperationalError) as e:
            raise ConfigError(f"cannot open the storage {hidden(url)} ({str(e).splitlines()[0]}); give a SQLAlchemy URL "
                              "such as sqlite:///path/study.db or postgresql://user:password@host/database") from None


def _check_spec(study, sweep: Sweep, url: str) -> None:
    spec = json.loads(json.dumps(sweep.spec()))
    old = study.user_attrs.get("sweep")
    if old is None:
        study.set_user_attr("sweep", spec)
    elif old != spec:
        changed = ", ".join(k for k in spec if spec[k] != old.get(k))
        raise ConfigError(f"sweep {sweep.name}: {sweep.path} changed ({changed}) since its study in {hidden(url)} was made, so "
                          "its trials measured another question. Restore the file, or start a new study: delete "
                          f"results/sweeps/{sweep.name}/study.db (or give another --storage); finished runs with the "
                          "same parameters and config are reused, not trained again")


# -- running -------------------------------------------------------------------------------------------------------------

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
    import optuna
    from optuna.trial import TrialState

    from .runs import claim_run

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
    import optuna

    frozen = next(x for x in study.get_trials(deepcopy=False) if x.number == number)
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, frozen)


def lost(trial) -> bool:
    """A failed trial without an error of its own: its process died (or was interrupted) and it was queued again."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and "error" not in trial.user_attrs


def stop_reason(sweep: Sweep, study) -> str | None:
    """Why this worker should start no new trial, or None."""
    from optuna.trial import TrialState

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
    from optuna.trial import TrialState

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
    from optuna.trial import TrialState

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
    from optuna.trial import TrialState

    from .runs import claim_run

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
        shown = " ".join(f"{k}={_show(v)}" for k, v in params.items())
        claim = claim_run(path)
        if not claim.acquire(wait=False):
            log(f"[trial {trial.number}] {shown}: run {rid} is being run by {claim.holder() or 'another process'}; waiting")
        try:
            with claim:  # the study is told before the claim is released: a free claim means a dead or told trial
                trial.set_user_attr("worker", {"trial": trial.number, "host": platform.node(), "pid": os.getpid(),
                                               "record": str(path.resolve())})
                trial.set_user_attr("run_id", rid)
                trial.set_user_attr("record", _relative(path))
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
    from optuna.trial import TrialState

    from .runs import train_and_evaluate

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
    import lightning as L

    from .runs import RunPruned

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
    from optuna.trial import TrialState

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


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(paths.home().resolve()))
    except ValueError:
        return str(path)


def _config_path(path: Path) -> str:
    """A config file as the repository names it, wherever GENBENCH_CONFIGS points."""
    try:
        return f"configs/{path.resolve().relative_to(paths.configs_dir().resolve())}"
    except ValueError:
        return str(path)


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- summary -------------------------------------------------------------------------------------------------------------

def summarize(name: str, storage: str | None = None, log: Callable = print) -> dict[str, Path]:
    """Write the summary of an existing study (``genbench sweep NAME --summary``)."""
    sweep = load_sweep(name)
    url = storage or default_storage(name)
    if storage is None and not paths.results_dir("sweeps", name, "study.db").is_file():
        raise ConfigError(f"sweep {name} has no study yet ({url}): run `genbench sweep {name}` first")
    study, _ = open_study(sweep, url, create=False)
    return write_summary(sweep, study, url, log=log)


def ranked(sweep: Sweep, study) -> list:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    return sorted(done, key=lambda t: t.value if sweep.goal == "minimize" else -t.value)


def write_summary(sweep: Sweep, study, url: str, log: Callable = print) -> dict[str, Path]:
    """``results/sweeps/NAME/summary.{md,png}`` and the best trial as ``results/configs/experiment/sweep_NAME_best.yaml``."""
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
             (f"`{_config_path(sweep.path)}`: {sweep.method} over {over}, {sweep.goal} `{sweep.metric}` "
              f"({unit or 'unit unknown'}) on the test split. Fixed overrides: `{' '.join(sweep.fixed)}`. Backend: "
              f"Optuna, study `{sweep.name}` in `{shown_url(sweep.name, url)}`. Written "
              f"{time.strftime('%Y-%m-%d %H:%M:%S%z')}."), ""]
    if best:
        b = best[0]
        lines += [(f"**Best: trial {b.number}**, {_params_text(b, keys)}: {sweep.metric} = {b.value:.6g} {unit} "
                   f"(run `{b.user_attrs.get('run_id')}`, record `{b.user_attrs.get('record')}`)."), ""]
        lines += [(f"Its config is `{_relative(written['best'])}`: `genbench train "
                   f"experiment={written['best'].stem}` trains it again ({verified}).") if "best" in written
                  else f"No best config was written: {verified}.", ""]
    header = "| rank | trial | " + " | ".join(f"`{k}`" for k in keys) + f" | {sweep.metric} ({unit}) | run id | record |"
    lines += ["## Best trials", "", header, "|---" * (len(keys) + 5) + "|"]
    for i, t in enumerate(best[:10], 1):
        lines.append(f"| {i} | {t.number} | " + " | ".join(_show(t.params.get(k)) for k in keys)
                     + f" | {t.value:.6g} | `{t.user_attrs.get('run_id')}` | `{t.user_attrs.get('record')}` |")
    lines += ["", (f"Each run logs to W&B (group `sweep/{sweep.name}`; offline without a key, into `results/wandb/`, "
                   "which `wandb sync` uploads); its record holds its `wandb_run_id`.")]
    lines += ["", "## Trials", "", *trial_counts(study), ""]
    lines += by_value(sweep, best)
    if "png" in written:
        lines += ["![objective against each parameter](summary.png)", ""]
    return "\n".join(lines)


def shown_url(name: str, url: str) -> str:
    """The storage as the summary shows it: the default relative to the results, any password hidden."""
    if url == default_storage(name):
        return f"sqlite:///results/sweeps/{name}/study.db"
    return hidden(url)


def hidden(url: str) -> str:
    """A storage URL with its password hidden: summaries are committed, logs are shared."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _params_text(trial, keys: list[str]) -> str:
    return ", ".join(f"`{k}={_show(trial.params.get(k))}`" for k in keys)


def trial_counts(study) -> list[str]:
    """Trials by state, the failures' errors, and the wall time from the first start to the last end."""
    from optuna.trial import TrialState

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
                rows.append(f"| {_show(v)} | {mean:.6g} | {min(vals):.6g} | {max(vals):.6g} | {len(vals)} |")
        if rows:
            lines += [f"### {sweep.metric} by `{p.key}`", "", "| value | mean | min | max | n |", "|---|---|---|---|---|",
                      *rows, ""]
    return lines


def summary_plot(sweep: Sweep, study, best: list, path: Path) -> Path:
    """The objective against each parameter, one panel each; the best trial in red."""
    from .evaluation.samples import _figure, _save

    unit = best[0].user_attrs.get("unit", "")
    fig = _figure(figsize=(4.2 * len(sweep.params), 3.6))
    for i, p in enumerate(sweep.params, 1):
        ax = fig.add_subplot(1, len(sweep.params), i)
        xs = [_position(p, t.params.get(p.key)) for t in best]
        ax.scatter(xs, [t.value for t in best], s=22, alpha=0.7, color="tab:blue", label="trial")
        ax.scatter([xs[0]], [best[0].value], s=80, marker="*", color="tab:red", label=f"best (trial {best[0].number})")
        means = _means(p, best)
        if means:
            ax.scatter(list(means), list(means.values()), s=200, marker="_", color="black", label="mean per value")
        if p.choices is not None:
            ax.set_xticks(range(len(p.choices)), [_show(c) for c in p.choices], rotation=30 if len(p.choices) > 6 else 0)
        elif p.kind in ("log_uniform", "log_uniform_values"):
            ax.set_xscale("log")
        ax.set(xlabel=p.key, ylabel=f"{sweep.metric} ({unit})" if i == 1 else None)
        ax.grid(alpha=0.3)
        if i == 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"sweep {sweep.name}: {sweep.metric} ({'lower' if sweep.goal == 'minimize' else 'higher'} is better), "
                 f"{len(best)} complete trials", fontsize=10)
    return _save(fig, path)


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
    shipped ones, :func:`genbench.config.config_dirs`; shipped configs change only on purpose): the base experiment, group choices and the overridden keys with
    the values of the best run's resolved config; returns it (None if not written) and whether it composes to that
    run's config."""
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
    head = (f"# @package _global_\n# The best trial of sweep {sweep.name} ({_config_path(sweep.path)}): trial {trial.number}, "
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
