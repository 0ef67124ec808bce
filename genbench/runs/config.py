"""A run's config: composed from ``configs/train.yaml`` and Hydra overrides, and every mistake in one paragraph.

Every caller (``genbench train``, tables, ``compare``, sweeps) composes through :func:`compose`, so a misspelled
key, an unknown group option, a missing mandatory value, an unreadable override or a number out of its range
(:mod:`genbench.runs.schema`) gets the same answer: what was given, the closest valid names or the valid range,
and the file they come from. Only Hydra and OmegaConf are imported here (no torch), so a mistake is answered in a
fraction of a second.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..core import paths
from ..core.errors import ConfigError, closest
from .schema import check_config

GROUPS = ("data", "model", "trainer", "logger", "experiment")
"""The config groups (folders of ``configs/``) a run is composed from."""


def compose(overrides: list[str]) -> dict[str, Any]:
    """The resolved config of ``configs/train.yaml`` under Hydra overrides, its values checked
    (:func:`genbench.runs.schema.check_config`); a bad override or value raises :class:`ConfigError` in one paragraph
    (:func:`explain`)."""
    try:
        with initialize_config_dir(config_dir=str(paths.configs_dir().resolve()), version_base="1.3"):
            cfg = hydra_compose(config_name="train", overrides=[*search_path(), *overrides])
        config = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(explain(list(overrides), e)) from None
    check_config(config)
    return config


def config_dirs() -> list[Path]:
    """Where configs are found: the shipped ``configs/``, then the results home's ``results/configs/`` (a user's
    sweep writes its best config there), then the reference's (the configs the project's own sweeps found)."""
    extra = [paths.results_dir("configs"), paths.reference_dir("configs")]
    return [paths.configs_dir(), *(d for d in extra if d is not None and d.is_dir())]


def search_path() -> list[str]:
    """The Hydra override that adds :func:`config_dirs` beyond the shipped one (none when there are none)."""
    extra = config_dirs()[1:]
    return [f"hydra.searchpath=[{','.join(f'file://{d.resolve()}' for d in extra)}]"] if extra else []


def explain(overrides: list[str], error: Exception) -> str:
    """A Hydra or OmegaConf composition error as one paragraph naming the override and the valid choices."""
    text = str(error).strip().split(HYDRA_POINTER)[0]
    if m := re.search(r"Could not find '([^/']+)/([^']+)'", text):
        return unknown_option(m.group(1), m.group(2))
    if m := re.search(r"Could not override '([^']+)'|Could not delete from config\. '([^']+)' does not exist", text):
        return unknown_key(overrides, m.group(1) or m.group(2))
    if m := re.search(r"Missing mandatory value: ([\w.]+)", text):
        return missing_value(overrides, m.group(1))
    if "override_grammar" in text or type(error).__name__ == "OverrideParseException":
        return unreadable(overrides, text)
    return paragraph(error)


HYDRA_POINTER = "\n\nSet the environment variable HYDRA_FULL_ERROR"


def paragraph(error: Exception) -> str:
    """An error's message as one paragraph: lines joined, without Hydra's pointer to HYDRA_FULL_ERROR."""
    text = str(error).strip().split(HYDRA_POINTER)[0]
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def options(group: str) -> list[str]:
    """The choices of a config group in every config folder."""
    return sorted({p.stem for d in config_dirs() for p in (d / group).glob("*.yaml")})


def unknown_option(group: str, name: str) -> str:
    valid = options(group)
    return (f"unknown {group} {name!r}{closest(name, valid)}; valid {group} choices (configs/{group}/): "
            f"{', '.join(valid)}")


def unknown_key(overrides: list[str], key: str) -> str:
    """A key the composed config does not have: name the first missing part, its closest siblings, and the keys
    that exist there."""
    given = next((o for o in overrides if o.lstrip("~+").split("=")[0] == key), key)
    rest = [o for o in overrides if o != given]
    try:
        base = compose(rest)
    except ConfigError:
        base = {}
    node, parts = base, key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
    parent, missing = ".".join(parts[:depth]), ".".join(parts[: depth + 1])
    valid = sorted(node) if isinstance(node, dict) else []
    near = [f"{parent}.{n}" if parent else n for n in difflib.get_close_matches(parts[depth], valid, n=3, cutoff=0.6)]
    where = f" under {parent}{source(parent, overrides, base)}" if parent else ""
    hint = f" (did you mean {' or '.join(near)}?)" if near else ""
    keys = f"; keys{where}: {', '.join(valid)}" if valid else ""
    add = f". A key the config does not have is added with a leading +: +{given.lstrip('~+')}" if "=" in given else ""
    return f"unknown key {missing!r} in {given!r}{hint}{keys}{add}"


def source(parent: str, overrides: list[str], base: dict[str, Any]) -> str:
    """`` (model=vae)``: the group option a key's parent comes from, as chosen on the command line or by default."""
    group = parent.split(".")[0]
    if group not in GROUPS:
        return " (configs/train.yaml)"
    chosen = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").split("=")[0] == group), None)
    name = (base.get(group) or {}).get("name") if isinstance(base.get(group), dict) else None
    return f" ({group}={chosen or name})" if chosen or isinstance(name, str) else f" (configs/{group}/)"


def missing_value(overrides: list[str], key: str) -> str:
    """A ``???`` value nobody gave; the group file's opening comment says what it is for."""
    group = key.split(".")[0]
    chosen = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").split("=")[0] == group), None)
    path = paths.configs_dir() / group / f"{chosen}.yaml" if chosen else None
    comment = ""
    if path is not None and path.is_file():
        lines = [ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")]
        comment = f" configs/{group}/{chosen}.yaml says: {' '.join(lines)}" if lines else ""
    return f"{key} has no value: give {key}=...{comment}"


def unreadable(overrides: list[str], text: str) -> str:
    parser = OverridesParser.create()
    bad = []
    for o in overrides:
        try:
            parser.parse_override(o)
        except HydraException:
            bad.append(o)
    why = text.splitlines()[0]
    return (f"cannot read the override {' '.join(repr(b) for b in bad) or ''} ({why}); an override is KEY=VALUE with "
            f"a number, a word, a quoted string or a list [a,b] as the value "
            f"(https://hydra.cc/docs/advanced/override_grammar/basic/)").replace("override  (", "override (")
