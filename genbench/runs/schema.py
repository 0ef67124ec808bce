"""The numeric settings of a run's config: one table of rules, checked as soon as the config is composed.

Every run's config comes from :func:`genbench.runs.config.compose`, which ends with :func:`check_config`: a
value of the wrong type or out of its range fails there, before anything heavy is imported, in one line that
names the key, the value and what is valid, instead of as a traceback deep in training or not at all
(``trainer.max_epochs=-1`` would train forever). The rules are one table (:data:`RULES`), so a new key is one
line, and the tests assert that every number in the shipped configs has a rule.

Keys without a rule pass (strings such as names, a ``+trainer.KEY`` that Lightning checks itself), and so does
the group of a user's own model or data module (``name: module:Class``): its keys are its own arguments.
Standard library only: the CLI checks a command line with it before torch is imported.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from functools import cache
from typing import Any

from ..core.errors import ConfigError

KINDS = {"int": "an integer", "real": "a number", "bool": "true or false", "choice": ""}
NOUNS = {"int": "a number", "real": "a number", "bool": "true or false", "choice": "one of the valid values"}  # a string for an integer is "not a number"


@dataclass(frozen=True)
class Rule:
    """What one key takes: ``kind`` (int, real or bool) within ``range`` (``'>= 1'``, ``'[0, 1)'``: as printed).

    ``what``: what the value means, for the message; ``also``: values valid besides (``'auto'``, ``-1``), the only
    ones for the kind ``choice``;
    ``null``: null is valid (the shipped default is null); ``lists``: (nested) lists of such values are valid
    too (layer sizes); ``alt``: a rule the value may meet instead; ``when``: the rule applies only to the
    configs for which this is true (a later rule for the same key applies to the others).
    """

    kind: str
    range: str = ""
    what: str = ""
    also: tuple = ()
    null: bool = False
    lists: bool = False
    alt: Rule | None = None
    when: Callable[[dict], bool] | None = None


def count(what: str, at_least: int = 1, **kw) -> Rule:
    return Rule("int", f">= {at_least}", what, **kw)


def untrained(config: dict) -> bool:
    """Scored without training on purpose: a run named so (``name=...untrained``, as the tables' untrained rows
    are), or a model fitted by its data-driven initialization (``model.initialize``, e.g. zuko's GMM)."""
    model = config.get("model") or {}
    return str(config.get("name", "")).lower().endswith("untrained") or model.get("initialize") is not None


FLAG = Rule("bool")
SEED = Rule("int", "[0, 2**32)", "a random seed")
SIZES = count("units or feature maps", lists=True)
SIGMA = Rule("real", ">= 0", "a noise standard deviation")
BETA = Rule("real", "[0, 1)", "an Adam decay rate")
TEMPERATURES = count("AIS temperatures in S&M's three-segment shape", 4, also=("sm2008",))
LIMIT = count("batches per epoch", 0, alt=Rule("real", "[0, 1]", "a fraction of them"))
PRECISION = Rule("choice", what="training precision; half-precision parameters (16-true, bf16-true) are refused "
                 "because evaluations run in float32 or float64", also=(32, 64, "32-true", "64-true", "bf16-mixed",
                                                                          "16-mixed"), null=True)

RULES: tuple[tuple[str, Rule], ...] = (  # (space-separated key patterns, rule); '*' matches any text, dots too
    ("trainer.max_epochs", count("0: the untrained model is scored", 0, when=untrained)),
    ("trainer.max_epochs", count("passes over the training split; 0 only with name=...untrained or model.initialize")),
    ("trainer.max_steps", count("optimizer steps; -1: no limit", also=(-1,))),
    ("trainer.devices", count("devices per node", also=("auto",))),
    ("trainer.log_every_n_steps", count("training steps between logged losses")),
    ("trainer.gradient_clip_val", Rule("real", "> 0", "the gradient norm's clip; null: none", null=True)),
    ("trainer.limit_*_batches", LIMIT),
    ("trainer.enable_progress_bar trainer.deterministic", replace(FLAG, null=True)),
    ("trainer.precision", PRECISION),
    ("data.batch_size data.eval_batch_size", count("examples per batch")),
    ("data.val_size", count("training examples held out for validation", 0)),
    ("data.train_size data.test_size", count("examples in the split")),
    ("data.noise", SIGMA),
    ("data.std", Rule("real", "> 0", "the components' standard deviation", lists=True)),
    ("data.means data.covariances", Rule("real", what="the components' parameters", lists=True)),
    ("data.weights", Rule("real", "[0, 1]", "the components' weights", lists=True)),
    ("data.download data.hflip data.extra", FLAG),
    ("data.labels_per_class", count("labelled training examples per class; null: no labels", null=True)),
    ("data.labels_seed", replace(SEED, null=True)),
    ("model.decoder_hidden", replace(SIZES, null=True)),
    (("model.hidden model.latent model.*_hidden model.latent_dim model.channels model.features model.head "
      "model.flow_kwargs.hidden_features"), SIZES),
    ("model.couplings model.scales model.maxout_pieces model.flow_kwargs.transforms model.flow_kwargs.bins",
     count("layers or pieces")),
    ("model.blocks model.layers", count("layers or blocks per network", 0)),
    ("model.components model.flow_kwargs.components", count("mixture components")),
    ("model.k", count("importance samples or Gibbs steps per update")),
    ("model.n_chains", count("persistent fantasy particles")),
    ("model.sample_steps", count("Gibbs steps per sample")),
    ("model.masks", count("mask sets in the training pool")),
    ("model.ensemble", count("mask sets averaged at test time; null: all", null=True)),
    ("model.patience", count("epochs without a better validation NLL; null: never stop early", null=True)),
    ("model.d_steps", count("discriminator steps per generator step")),
    ("model.gan_epochs", count("epochs of the GAN phase", 0)),
    ("model.lr", Rule("real", "> 0", "a learning rate")),
    ("model.beta1 model.beta2", BETA),
    ("model.eps", Rule("real", "> 0", "Adam's damping")),
    ("model.weight_decay model.l2", Rule("real", ">= 0", "an L2 penalty")),
    ("model.momentum", Rule("real", "[0, 1)", "SGD momentum")),
    ("model.final_momentum", Rule("real", "[0, 1)", "SGD momentum after 5 epochs; null: momentum", null=True)),
    ("model.init_std", Rule("real", ">= 0", "the initial weights' standard deviation")),
    ("model.pseudocount", Rule("real", ">= 0", "a Beta prior's pseudocount")),
    ("model.alpha", Rule("real", "(0, 0.5)", "the logit transform's margin")),
    ("model.zca_bias", Rule("real", "> 0", "added to the covariance's eigenvalues")),
    ("model.constraints.noise.sigma_*", SIGMA),
    ("model.input_noise model.hidden_noise", SIGMA),
    ("model.unsupervised_weight", Rule("real", ">= 0", "the weight of the real/fake loss beside the labels'")),
    ("model.ema_rate", Rule("real", "(0, 1]", "the moving average's rate per step")),
    ("model.lr_flat_epochs", count("epochs at the full learning rate; null: no decay", 0, null=True)),
    ("model.constraints.clip", Rule("real", "> 0", "the threshold t of |θ| <= t")),
    ("model.constraints.mask.fraction", Rule("real", "[0, 1]", "the fraction of weights removed")),
    (("model.direct model.persistent model.mean_field_positive model.zca model.zca_logdet model.separate_st "
      "model.batch_norm model.weight_norm model.constraints.noise.train"), FLAG),
    ("evaluation.likelihood.seed", replace(SEED, null=True)),
    ("evaluation.likelihood.bound_k", count("importance samples")),
    ("evaluation.likelihood.ais.betas", TEMPERATURES),
    ("evaluation.likelihood.raise.betas", replace(TEMPERATURES, null=True)),
    ("evaluation.likelihood.ais.runs", count("AIS runs")),
    ("evaluation.likelihood.raise.runs", count("RAISE runs; 0: off", 0)),
    ("evaluation.likelihood.raise.examples", count("test examples")),
    ("evaluation.likelihood.parameter_noise.sigma_*", SIGMA),
    ("evaluation.likelihood.parameter_noise.draws", count("noisy parameter draws")),
    ("evaluation.likelihood.validate_ais evaluation.features.balanced", FLAG),
    ("evaluation.modes.*_samples", count("samples")),
    ("evaluation.decoder_ais.temperatures", count("temperatures, 0 and 1 included", 2)),
    (("evaluation.decoder_ais.chains evaluation.decoder_ais.leapfrog_steps evaluation.decoder_ais.examples "
      "evaluation.decoder_ais.max_chains"), count("chains, steps or examples")),
    ("evaluation.decoder_ais.bdmc_examples", count("simulated examples; 0: no BDMC", 0)),
    ("evaluation.decoder_ais.initial_step", Rule("real", "> 0", "the HMC step size")),
    ("evaluation.decoder_ais.observation_variance", Rule("real", "> 0", "σ² around the generator", null=True)),
    ("evaluation.decoder_ais.iwae_k", count("importance samples; null: none", null=True)),
    ("evaluation.every_n_epochs", count("epochs between validation NLLs; 0: none", 0)),
    (("evaluation.features.labelled evaluation.features.repeats evaluation.features.validation "
      "evaluation.features.max_iter"), count("examples, SVMs or iterations")),
    ("evaluation.features.pool", count("training images drawn from; null: all", null=True)),
    ("evaluation.features.log_c", Rule("real", what="log C grid: low, high, count", lists=True)),
    ("logger.wandb", FLAG),
    ("*seed", SEED),
)

OWN_ARGUMENTS = ("model", "data")  # groups whose keys are a user's own class's arguments when name is module:Class


def check_config(config: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming every value in ``config`` (a resolved plain dict) that breaks its rule,
    one clause per value, all on one line."""
    problems = [problem(key, value, rule) for key, value in leaves(config) if (rule := rule_for(key, config))]
    problems = [p for p in problems if p]
    if problems:
        raise ConfigError("; ".join(problems))


def rule_for(key: str, config: dict | None = None) -> Rule | None:
    """The first rule whose pattern matches ``key`` and that applies to ``config`` (any, when None)."""
    for patterns, rule in RULES:
        applies = config is None or rule.when is None or rule.when(config)
        if applies and any(fnmatchcase(key, p) for p in patterns.split()):
            return rule
    return None


def leaves(node: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every value that is not a dict, or that is a dict where a rule expects a value."""
    for name, value in node.items():
        key = f"{prefix}{name}"
        if not prefix and name in OWN_ARGUMENTS and isinstance(value, dict) and ":" in str(value.get("name", "")):
            continue
        if isinstance(value, dict) and rule_for(key) is None:
            yield from leaves(value, f"{key}.")
        else:
            yield key, value


def problem(key: str, value: Any, rule: Rule) -> str | None:
    why = fault(value, rule)
    return why and f"{key}={'null' if value is None else repr(value)} {why}: valid is {describe(rule)}"


def fault(value: Any, rule: Rule) -> str | None:
    """None if ``value`` meets ``rule``, else why not: 'is out of range' or 'is not <a type>'."""
    if value is None:
        why = None if rule.null else f"is not {NOUNS[rule.kind]}"
    elif any(type(value) is type(v) and value == v for v in rule.also):
        why = None
    elif rule.lists and isinstance(value, list):
        faults = [f for f in (fault(v, replace(rule, null=False, alt=None)) for v in value) if f]
        why = next((f for f in faults if f != "is out of range"), faults[0] if faults else None)
    elif not is_kind(value, rule.kind):
        why = "is not an integer" if rule.kind == "int" and is_kind(value, "real") else f"is not {NOUNS[rule.kind]}"
    else:
        why = None if in_range(value, rule.range) else "is out of range"
    if why and rule.alt:
        other = fault(value, rule.alt)
        why = other and ("is out of range" if "is out of range" in (why, other) else why)
    return why


def is_kind(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "choice":
        return False
    if kind == "int":
        return type(value) is int
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def in_range(value: float, text: str) -> bool:
    """Within a range, NaN and infinities never; without one, any number (data checks its own, e.g. NaN means)."""
    if not text:
        return True
    if not math.isfinite(value):
        return False
    low, high, low_open, high_open = bounds(text)
    return (value > low if low_open else value >= low) and (value < high if high_open else value <= high)


@cache
def bounds(text: str) -> tuple[float, float, bool, bool]:
    """(low, high, low open, high open) of a range as printed: '>= 1', '> 0', '[0, 1)', '(0, 0.5)'."""
    if m := re.fullmatch(r"(>=?) (\S+)", text):
        return number(m[2]), math.inf, m[1] == ">", False
    m = re.fullmatch(r"([\[(])(\S+), (\S+)([\])])", text)
    if m is None:
        raise ValueError(f"bad range {text!r} in genbench.runs.schema.RULES")
    return number(m[2]), number(m[3]), m[1] == "(", m[4] == ")"


def number(text: str) -> float:
    base, _, power = text.partition("**")
    return float(base) ** int(power) if power else float(base)


def describe(rule: Rule) -> str:
    """What is valid, as the message says it: "'sm2008' or an integer >= 4 (AIS temperatures ...)"."""
    kind = KINDS[rule.kind]
    if rule.kind == "choice":
        return " or ".join([*map(repr, rule.also), *(["null"] if rule.null else [])]) + f" ({rule.what})"
    if rule.range:
        kind += f" in {rule.range}" if rule.range[0] in "[(" else f" {rule.range}"
    text = " or ".join([*map(repr, rule.also), kind + (" or a list of them" if rule.lists else "")])
    text += " or null" if rule.null else ""
    text += f" ({rule.what})" if rule.what else ""
    return text + (f" or {describe(rule.alt)}" if rule.alt else "")
