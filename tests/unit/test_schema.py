"""The config schema: each mistake is one line naming the key, the value and what is valid; nothing shipped is
refused; every number in the shipped configs has a rule."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from genbench.core.errors import ConfigError
from genbench.core.paths import configs_dir
from genbench.runs import schema
from genbench.tables.spec import compose, load_table, plan, table_names

MISTAKES = [  # (overrides, what the message says)
    (["trainer.max_epochs=-1"], "trainer.max_epochs=-1 is out of range: valid is an integer >= 1 (passes over"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0 is out of range: valid is an integer >= 1"),
    (["trainer.max_epochs=two"], "trainer.max_epochs='two' is not a number: valid is an integer >= 1"),
    (["trainer.max_epochs=2.5"], "trainer.max_epochs=2.5 is not an integer"),
    (["trainer.max_epochs=true"], "trainer.max_epochs=True is not a number"),
    (["trainer.max_epochs=null"], "trainer.max_epochs=null is not a number"),
    (["+trainer.max_steps=0"], "trainer.max_steps=0 is out of range: valid is -1 or an integer >= 1"),
    (["trainer.devices=0"], "trainer.devices=0 is out of range: valid is 'auto' or an integer >= 1"),
    (["data.batch_size=0"], "data.batch_size=0 is out of range: valid is an integer >= 1"),
    (["data.batch_size=-5"], "data.batch_size=-5 is out of range"),
    (["model=vae", "model.lr=0"], "model.lr=0 is out of range: valid is a number > 0"),
    (["model=vae", "model.lr=-1e-3"], "model.lr=-0.001 is out of range"),
    (["model=vae", "model.beta2=1.0"], "model.beta2=1.0 is out of range: valid is a number in [0, 1)"),
    (["model=vae", "model.k=0"], "model.k=0 is out of range"),
    (["model=made", "model.hidden=[500,0]"], "model.hidden=[500, 0] is out of range"),
    (["seed=-1"], "seed=-1 is out of range: valid is an integer in [0, 2**32)"),
    (["evaluation.likelihood.ais.betas=1"], "evaluation.likelihood.ais.betas=1 is out of range: valid is 'sm2008' or"),
    (["evaluation.likelihood.bound_k=0"], "evaluation.likelihood.bound_k=0 is out of range"),
    (["model=rbm", "model.constraints={mask:{kind:random,fraction:1.5,seed:0}}"],
     "model.constraints.mask.fraction=1.5 is out of range: valid is a number in [0, 1]"),
    (["data=cifar10", "data.hflip=1"], "data.hflip=1 is not true or false"),
    (["+trainer.limit_train_batches=1.5"], "trainer.limit_train_batches=1.5 is out of range"),
    (["trainer.precision=16-true"], "trainer.precision='16-true' is not one of the valid values: valid is 32 or 64 or "
                                    "'32-true'"),
    (["trainer.precision=bf16-true"], "half-precision parameters (16-true, bf16-true) are refused"),
    (["trainer.deterministic=yes"], "trainer.deterministic='yes' is not true or false"),
]


@pytest.mark.parametrize("overrides, says", MISTAKES, ids=[" ".join(o) for o, _ in MISTAKES])
def test_a_mistake_is_one_line_naming_the_key_the_value_and_what_is_valid(overrides, says):
    with pytest.raises(ConfigError) as e:
        compose(overrides)
    message = str(e.value)
    assert says in message and "\n" not in message


def test_every_mistake_is_named_on_the_same_line():
    with pytest.raises(ConfigError) as e:
        compose(["data.batch_size=0", "seed=-3"])
    assert "data.batch_size=0 is out of range" in str(e.value) and "seed=-3 is out of range" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def default():
    return compose([])


def setting(config: dict, key: str, value) -> dict:
    config = copy.deepcopy(config)
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return config


@pytest.mark.parametrize("key, value", [
    ("trainer.max_steps", -1), ("trainer.devices", "auto"), ("trainer.limit_train_batches", 0.25),
    ("trainer.limit_val_batches", 0), ("trainer.gradient_clip_val", None), ("seed", 2**32 - 1),
    ("evaluation.likelihood.seed", None), ("evaluation.likelihood.ais.betas", 4), ("model.hidden", [[200, 200], []]),
    ("trainer.precision", "bf16-mixed"), ("trainer.precision", 32), ("trainer.deterministic", True),
])
def test_edges_of_the_valid_ranges_pass(default, key, value):
    schema.check_config(setting(default, key, value))


def test_an_untrained_run_is_named_so_or_fitted_at_initialization(default):
    zero = setting(default, "trainer.max_epochs", 0)
    with pytest.raises(ConfigError, match="trainer.max_epochs=0"):
        schema.check_config(zero)
    schema.check_config({**zero, "name": "gan-untrained"})
    schema.check_config(setting(zero, "model.initialize", "random"))


def test_a_users_own_model_takes_its_own_arguments():
    compose(["model=custom", "model.name=my_module:MyModel", "+model.lr=-1", "+model.hidden=wide"])


def test_every_rule_reads_as_a_valid_range():
    for patterns, rule in schema.RULES:
        for r in (rule, rule.alt) if rule.alt else (rule,):
            assert r.kind in schema.KINDS, patterns
            if r.range:
                schema.bounds(r.range)
            assert schema.describe(r) and "\n" not in schema.describe(r)


def numeric_leaves(node, prefix: str = ""):
    """(dotted key, value) of every number, boolean or list of numbers in a YAML tree."""
    if isinstance(node, dict):
        for name, value in node.items():
            yield from numeric_leaves(value, f"{prefix}.{name}" if prefix else str(name))
    elif isinstance(node, (int, float)) or (isinstance(node, list) and node and all(numbers(v) for v in node)):
        yield prefix, node


def numbers(value) -> bool:
    if isinstance(value, list):
        return all(numbers(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def shipped_leaves():
    root = configs_dir()
    for group in ("model", "data", "trainer"):
        for path in sorted((root / group).glob("*.yaml")):
            yield from ((f"{path.name}: {k}", k) for k, _ in numeric_leaves(yaml.safe_load(path.read_text()), group))
    train = yaml.safe_load((root / "train.yaml").read_text())
    yield from ((f"train.yaml: {k}", k) for k, _ in numeric_leaves(train["evaluation"], "evaluation"))
    for path in sorted((root / "experiment").glob("*.yaml")):
        spec = {k: v for k, v in (yaml.safe_load(path.read_text()) or {}).items() if k not in ("defaults", "name")}
        yield from ((f"experiment/{path.name}: {k}", k) for k, _ in numeric_leaves(spec))


def test_every_number_in_the_shipped_configs_has_a_rule():
    """A new numeric key in configs/model, data, trainer, train.yaml's evaluation or an experiment needs a rule."""
    leaves = list(shipped_leaves())
    assert len(leaves) > 100
    uncovered = [where for where, key in leaves if schema.rule_for(key) is None]
    assert not uncovered, f"numbers without a rule in genbench.runs.schema.RULES: {uncovered}"


def one_run_per_row_and_dataset(name: str):
    spec = load_table(name)
    for scale in spec["scales"]:
        seen = set()
        for run in plan(spec, scale):
            if (run.row, run.dataset) not in seen:
                seen.add((run.row, run.dataset))
                yield scale, run


@pytest.mark.slow
@pytest.mark.parametrize("name", table_names())
def test_every_table_composes_at_every_scale(name):
    for scale, run in one_run_per_row_and_dataset(name):
        try:
            compose(run.overrides)
        except ConfigError as e:
            pytest.fail(f"{name} at {scale}, {run.run_id}: {e}")


def test_a_table_with_a_corrupted_value_no_longer_composes(configs_copy):
    path = configs_copy / "table" / "rbm-constraints.yaml"
    text = path.read_text()
    assert text.count("- model.k=1\n") == 1
    path.write_text(text.replace("- model.k=1\n", "- model.k=0\n"))
    run = plan(load_table("rbm-constraints"), "smoke")[0]
    with pytest.raises(ConfigError, match=r"^model\.k=0 is out of range"):
        compose(run.overrides)


def test_the_schema_imports_nothing_heavy():
    code = ("import sys, genbench.runs.schema; heavy = {'torch', 'numpy', 'lightning', 'hydra', 'omegaconf', 'yaml'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
