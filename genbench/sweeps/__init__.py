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

Each trial is an ordinary run (:func:`genbench.runs.execute.train_and_evaluate`) whose record is
``results/runs/sweep/NAME/RUN_ID.json``, RUN_ID derived from the trial's parameters: a trial with the parameters
of a current finished record reuses it. The study lives in an Optuna RDB storage (default
``results/sweeps/NAME/study.db``; a PostgreSQL or MySQL URL lets machines share it). A trial whose process
died is failed and queued again: at once when it ran on this host (its run claim is free, see
:mod:`genbench.core.locks`), after the heartbeat's grace period otherwise. The summary (``summary.md``, ``summary.png``)
and the best trial as ``results/configs/experiment/sweep_NAME_best.yaml`` (in the results home, found by
``experiment=sweep_NAME_best``) are written after every sweep.

Homes: :mod:`.spec` (the YAML), :mod:`.study` (samplers, the Optuna study and its storage), :mod:`.agent` (running
trials), :mod:`.summary` (what the sweep found).
"""

from .agent import check_composes, grid_twin, reap_dead_trials, run_sweep
from .spec import load_sweep, parse_sweep, run_id, sweep_names
from .study import default_storage, make_sampler, open_study
from .summary import summarize

__all__ = ["check_composes", "default_storage", "grid_twin", "load_sweep", "make_sampler", "open_study", "parse_sweep",
           "reap_dead_trials", "run_id", "run_sweep", "summarize", "sweep_names"]
