"""Run records on disk: atomic writes, reading, and the rule that measured numbers are never lost.

A run record (JSON) is written through a temporary file and a rename, so a reader sees the old record or the whole
new one. A finished record is data: a later attempt that fails, diverges, is interrupted or pruned is kept beside it
(``RUN_ID.STATUS.json``) instead of replacing it, unless the user asks (``--overwrite``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..core import paths


def git_commit() -> str | None:
    """The commit genbench runs from, ``-dirty`` when tracked files differ from it; None outside a git checkout."""
    here = paths.PACKAGE_PARENT
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if sha.returncode != 0:
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` so that it holds either the old or the new content, never a part; no temporary file is
    left behind when the write fails (e.g. a full disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=str))


WORSE_THAN_FINISHED = ("failed", "diverged", "interrupted", "pruned")
"""Outcomes that never replace a finished record unless the user asks (``--overwrite``): measured numbers are data."""


def attempt_path(path: Path, status: str) -> Path:
    """Where an attempt that did not replace a finished record is kept: beside it, ``RUN_ID.STATUS.json``."""
    return Path(path).with_name(f"{Path(path).stem}.{status}.json")


def save_record(path: Path, record: dict[str, Any], overwrite: bool = False) -> Path:
    """Write a run record; returns where it went.

    A finished record is never replaced by a worse outcome (failed, diverged, interrupted, pruned) unless
    ``overwrite``: the attempt is written beside it (:func:`attempt_path`), says so in ``kept_record``, and the
    reason is printed. A failed write keeps the previous record and is reported in ``record_error`` (and on
    stderr) beside the run's own outcome.
    """
    old = read_record(path)
    if (not overwrite and old is not None and old.get("status") == "finished"
            and record.get("status") in WORSE_THAN_FINISHED):
        aside = attempt_path(path, record["status"])
        headline = next((f"{r['metric']} = {r['value']:.6g} {r['unit']}" for r in old.get("results", [])), "no result")
        record["kept_record"] = (f"the finished record at {path} ({headline}) is kept; this {record['status']} attempt "
                                 f"is at {aside.name} beside it (rerun with --overwrite to replace the finished one)")
        print(f"genbench: run {record.get('run_id')} {record['status']}: {record['kept_record']}", file=sys.stderr)
        path = aside
    try:
        write_json_atomic(path, record)
    except OSError as e:
        record["record_error"] = f"the run record could not be written ({e}); the previous record at {path} is unchanged"
        print(f"genbench: run {record.get('run_id')} {record.get('status')}, but {record['record_error']}", file=sys.stderr)
    return path


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
