"""What names a run: its file name (a slug), its config hash and the source of a user's model.

A run's identity decides where its record lives and whether an earlier record still stands for it. Names a user
chooses (a row label, a model given as ``path/to/file.py:Class``) become file names only through :func:`slug`, so
they never climb out of the results folder; a user's model enters the config hash through its file's content, so
two different models never share a record and an edited model is run again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from ..core.registry import MODELS

VOLATILE_KEYS = ("logger", "name")
"""Config keys that do not change a run's numbers (left out of its hash)."""

TRAINING_KEYS = ("data", "model", "trainer", "seed")
"""Config keys that decide the trained model: runs that differ only in evaluation share one training."""

NULL_OPTIONS = ("precision", "deterministic")
"""Trainer options added after trainings were kept, null by default: left out of the hashes while null, so a
model trained before they existed is found again (``trainer.precision=bf16-mixed`` is another training)."""

SLUG_MAX = 120


def slug(text: str) -> str:
    """``text`` as a file name: lower-case letters, digits and dashes; a long one keeps its start and a hash."""
    s = re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-").lower() or "run"
    if len(s) > SLUG_MAX:
        s = f"{s[:SLUG_MAX - 9].rstrip('-')}-{digest(text)[:8]}"
    return s


def digest(obj: Any) -> str:
    """sha1 of ``obj`` as sorted JSON: equal configs hash equal whatever their key order."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def model_source(name: str | None) -> dict[str, str] | None:
    """The file a user's model (``file.py:Class`` or ``module:Class``) is defined in and its content's sha256;
    None for a registered model (its source is the genbench commit in the record) or a file not found."""
    if not name or name in MODELS or ":" not in name:
        return None
    module = name.partition(":")[0]
    if module.endswith(".py"):
        path = Path(module).resolve()
    else:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
        path = Path(spec.origin) if spec is not None and spec.origin else None
    if path is None or not path.is_file():
        return None
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def config_hash(config: dict[str, Any]) -> str:
    """The hash of what decides a run's numbers: the config without its volatile keys and, for a user's model, the
    content of its file (a registered model's hash is its config's alone, so committed records stay current)."""
    keyed = {k: v for k, v in config.items() if k not in VOLATILE_KEYS}
    if "trainer" in keyed:
        keyed["trainer"] = without_null_options(keyed["trainer"])
    source = model_source((config.get("model") or {}).get("name"))
    if source is not None:
        keyed["model_source"] = source["sha256"]
    return digest(keyed)[:12]


def training_hash(config: dict[str, Any]) -> str:
    """Names ``models/trained/<hash>/final.ckpt``: train once, evaluate under many settings (e.g. noise levels)."""
    keyed = {k: config.get(k) for k in TRAINING_KEYS}
    keyed["trainer"] = without_null_options(keyed["trainer"])
    source = model_source((config.get("model") or {}).get("name"))
    if source is not None:
        keyed["model_source"] = source["sha256"]
    return digest(keyed)[:12]


def without_null_options(trainer: dict | None) -> dict | None:
    if not isinstance(trainer, dict):
        return trainer
    return {k: v for k, v in trainer.items() if not (k in NULL_OPTIONS and v is None)}


def _without_added_nulls(new: Any, old: Any) -> Any:
    """``new`` without the keys ``old`` lacks whose value is null (recursively)."""
    if not isinstance(new, dict) or not isinstance(old, dict):
        return new
    return {k: _without_added_nulls(v, old[k]) if k in old else v
            for k, v in new.items() if k in old or v is not None}


def is_current(record: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether a run record was made under ``config``.

    An option added to the configs later with a null default (off) leaves
    earlier runs current, so adding an option does not rerun every table.
    """
    old = record.get("config") or {}
    return record.get("config_hash") in (config_hash(config), config_hash(_without_added_nulls(config, old)))


def train_run_id(config: dict[str, Any]) -> str:
    """The id of a ``genbench train`` run: its name as a slug, its seed and its config hash."""
    return f"{slug(config['name'])}--s{config['seed']}--{config_hash(config)[:8]}"
