"""A sweep's YAML (W&B's format) read and checked: its parameters, metric, command and early stopping, and
the run id of a point."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml

from ..core import paths
from ..core.errors import ConfigError
from ..runs.identity import slug

METHODS = ("grid", "random", "bayes")
DISTRIBUTIONS = ("categorical", "constant", "uniform", "log_uniform_values", "log_uniform", "int_uniform", "q_uniform")
SWEEP_KEYS = ("method", "metric", "parameters", "command", "run_cap", "program", "name", "description", "project",
              "entity", "early_terminate")
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


def relative_to_home(path: Path) -> str:
    """A path as the summaries name it: relative to the results home when it is under it."""
    try:
        return str(path.resolve().relative_to(paths.home().resolve()))
    except ValueError:
        return str(path)


def config_path(path: Path) -> str:
    """A config file as the repository names it, wherever GENBENCH_CONFIGS points."""
    try:
        return f"configs/{path.resolve().relative_to(paths.configs_dir().resolve())}"
    except ValueError:
        return str(path)


def shown_value(value: Any) -> str:
    """A parameter value as logs and summaries show it."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
