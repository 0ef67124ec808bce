"""Checkpoints: written atomically, read with ``weights_only`` (no code from a file runs), an unreadable one set
aside, and a run's model rebuilt from its own checkpoint (``genbench evaluate``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from ..core import paths
from ..core.errors import CheckpointError
from ..data import build_datamodule
from ..models import build_model

FINAL_CHECKPOINT, LAST_CHECKPOINT = "final.ckpt", "last.ckpt"
"""In ``models/trained/<training hash>/``: the trained model, and Lightning's end-of-epoch checkpoint to resume from."""


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file and a rename: a reader sees the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint's contents, loaded with ``weights_only`` (tensors and plain data: no code from the file runs)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch reports truncation, foreign pickles and non-torch files in many types
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path} is not a readable genbench checkpoint: torch.load (weights_only) failed with "
                              f"{type(e).__name__}: {why}. A checkpoint cut short by a kill or a full disk, or a file "
                              f"from elsewhere, cannot be used: rerun the run to train it again.") from None


def trusted_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none; an unreadable one is set aside as ``*.corrupt``
    (with a one-line warning) so that it is not tried again."""
    if not path.is_file():
        return None
    try:
        return read_checkpoint(path, mmap=mmap)
    except CheckpointError as e:
        aside = path.with_name(f"{path.name}.corrupt")
        os.replace(path, aside)
        print(f"genbench: {e} Set aside as {aside.name}; training again.", file=sys.stderr)
        return None


def load_checkpoint(path: str | Path):
    """(config, model in eval mode, data module) of a checkpoint written by a genbench run; a relative path that is
    not a file here is read as a record keeps it, relative to the results home (:func:`genbench.core.paths.stored`)."""
    path = Path(path)
    if not path.is_absolute() and not path.is_file():
        path = paths.located(str(path))
    ckpt = read_checkpoint(path)
    if "genbench" not in ckpt:
        raise CheckpointError(f"{path} was not written by a genbench run (it has no 'genbench' config entry)")
    config = ckpt["genbench"]["config"]
    dm = build_datamodule(config["data"])
    model = build_model(config["model"], dm.info)
    model.load_state_dict(ckpt["state_dict"])
    return config, model.eval(), dm
