"""The Optuna side of a sweep: the sampler its method asks for, and the study in its RDB storage (SQLite by
default, PostgreSQL or MySQL to share it between machines), created once however many workers start at once."""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..core import paths
from ..core.errors import ConfigError
from ..core.locks import Claim
from .spec import Sweep

SEED = 0
HEARTBEAT_S, GRACE_S = 30, 120
"""A running trial writes a heartbeat every 30 s; one silent for 2 min is failed and retried by the next worker."""
MAX_RETRY = 3
"""A trial whose process dies more often than this (e.g. killed for memory each time) stays failed."""

def make_sampler(sweep: Sweep):
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
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used with Study.optimize.*")


@contextlib.contextmanager
def _serialized(url: str):
    """Two workers starting on one new SQLite file would race to create its tables: one at a time."""
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


def lost(trial) -> bool:
    """A failed trial without an error of its own: its process died (or was interrupted) and it was queued again."""
    return trial.state == TrialState.FAIL and "error" not in trial.user_attrs


def shown_url(name: str, url: str) -> str:
    """The storage as the summary shows it: the default relative to the results, any password hidden."""
    if url == default_storage(name):
        return f"sqlite:///results/sweeps/{name}/study.db"
    return hidden(url)


def hidden(url: str) -> str:
    """A storage URL with its password hidden: summaries are committed, logs are shared."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
