"""Where genbench reads data and configs, and where it writes what it measures.

* **The results home** (``$GENBENCH_HOME``, else the checkout genbench runs from, else the current directory) holds
  a user's ``results/`` (run records, tables, figures, logs, sweeps) and ``models/`` (checkpoints). Both are
  untracked: a user's command never changes a file the repository tracks.
* **The reference results** (``reference/`` in the checkout, committed) are what the project itself measured, in the
  same layout as ``results/``. They are read beside the home's (a finished reference run is not trained again, and
  ``--render-only`` on a fresh clone rebuilds a committed table) and written only when ``$GENBENCH_RESULTS`` points
  at them (``make reference-renders``). ``GENBENCH_REFERENCE=none`` reads none.
* **The data root**: the ``root`` given in config, else ``$GENBENCH_DATA``, else the home's ``datasets/``.

Every output path is built by :func:`results_dir` or :func:`models_dir` from plain name parts: a part that could
climb out of its folder (an absolute path, a separator, ``..``) is a bug and raises, so no name a user chose (a
model file's path, a row label) can send a record elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def checkout() -> Path | None:
    """The source tree genbench runs from (it has ``configs/`` beside the package), or None for an installed copy."""
    return PACKAGE_PARENT if (PACKAGE_PARENT / "configs").is_dir() else None


def home() -> Path:
    env = os.environ.get("GENBENCH_HOME")
    if env:
        return Path(env)
    return checkout() or Path(".")


def results_root() -> Path:
    env = os.environ.get("GENBENCH_RESULTS")
    return Path(env) if env else home() / "results"


def reference_root() -> Path | None:
    """The committed results read beside the home's, or None (none configured, absent, or the results root itself)."""
    env = os.environ.get("GENBENCH_REFERENCE")
    if env is not None and env.strip().lower() in ("", "none", "off"):
        return None
    root = Path(env) if env else (checkout() or Path(".")) / "reference"
    if not root.is_dir() or root.resolve() == results_root().resolve():
        return None
    return root


def _checked(parts: tuple[str, ...]) -> tuple[str, ...]:
    for part in parts:
        text = str(part)
        if not text or text in (".", "..") or "/" in text or os.sep in text or Path(text).is_absolute():
            raise ValueError(f"bug: the output path part {text!r} is not a plain file or folder name; names chosen by "
                             f"users must pass through genbench.runs.identity.slug before they name a file")
    return parts


def results_dir(*parts: str) -> Path:
    return results_root().joinpath(*_checked(parts))


def reference_dir(*parts: str) -> Path | None:
    root = reference_root()
    return None if root is None else root.joinpath(*_checked(parts))


def stored(path: Path) -> str:
    """A path as a run record keeps it: relative to the results home when it is under it, so committed records
    name their figures wherever the checkout is."""
    try:
        return str(Path(path).resolve().relative_to(home().resolve()))
    except ValueError:
        return str(Path(path).resolve())


def located(text: str, base: Path | None = None) -> Path:
    """A path a record keeps (:func:`stored`), as a file here: a relative one is under ``base`` (the home of the
    results it was read from; default this home)."""
    path = Path(text)
    return path if path.is_absolute() else (base if base is not None else home()) / path


def models_dir(*parts: str) -> Path:
    return home().joinpath("models", *_checked(parts))


def data_root(root: str | os.PathLike | None = None) -> Path:
    if root:
        return Path(root)
    if os.environ.get("GENBENCH_DATA"):
        return Path(os.environ["GENBENCH_DATA"])
    return home() / "datasets"


def configs_dir() -> Path:
    """The Hydra config tree shipped beside the package (repository ``configs/``)."""
    env = os.environ.get("GENBENCH_CONFIGS")
    if env:
        return Path(env)
    here = PACKAGE_PARENT / "configs"
    if here.is_dir():
        return here
    raise FileNotFoundError("genbench's configs/ folder was not found; set GENBENCH_CONFIGS to it")


def environment() -> dict[str, str]:
    """The variables that make another process (a worker, a SLURM job) read and write where this one does."""
    reference = reference_root()
    return {"GENBENCH_HOME": str(home().resolve()), "GENBENCH_RESULTS": str(results_root().resolve()),
            "GENBENCH_REFERENCE": str(reference.resolve()) if reference is not None else "none",
            "GENBENCH_DATA": str(data_root().resolve())}


def check_writable() -> None:
    """Fail with one paragraph, before any work, when the results home cannot hold results."""
    where = results_root()
    try:
        where.mkdir(parents=True, exist_ok=True)
        probe = where / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        named = "GENBENCH_RESULTS" if os.environ.get("GENBENCH_RESULTS") else "GENBENCH_HOME"
        raise ConfigError(f"cannot write results to {where} ({e.strerror or e}): {named}="
                          f"{os.environ.get(named, home())} must be a folder you can write (or unset "
                          f"GENBENCH_HOME to write under the checkout, {checkout() or Path('.').resolve()})") from None
