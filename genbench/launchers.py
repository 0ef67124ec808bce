"""A table over several processes or machines: ``genbench table NAME --launcher local|submitit_local|slurm|ray
--workers N``.

``local`` forks N single-thread worker processes from the launching one (this machine; they start at once, without
a new interpreter's 4-5 s of imports); submitit starts N worker jobs (local processes, or SLURM jobs with the
resources of ``configs/launcher/NAME.yaml``); Ray starts N worker tasks (on a local Ray instance, or on the cluster
``configs/launcher/ray.yaml`` names).
Each worker runs the table's missing runs; the runs' claims (one lock per run, :func:`genbench.runs.execute.claim_run`)
split them between the workers, so no run is trained twice, and a run whose worker died is left unfinished for the
next launch (its training resumes from its last epoch). The table renders in the launching process once every
worker has ended. Workers rather than one job per run: submitit's local executor starts every job at once, and a
worker holds one run's resources however many runs the table has. The records, checkpoints and claims must be on a
filesystem every worker sees (``GENBENCH_HOME``, :mod:`genbench.core.paths`).
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import torch
import yaml

from .core import paths
from .core.errors import ConfigError
from .core.optional import require
from .tables import Render, load_table, plan, run_table

LAUNCHERS = ("local", "submitit_local", "slurm", "ray")


def launch_table(name: str, scale: str, launcher: str = "local", workers: int = 1, log=print, render_only: bool = False,
                 rows: str | None = None, seeds: list[int] | None = None, overwrite: bool = False,
                 logger: str | None = None) -> Render:
    """Run the table's missing runs on ``workers`` workers of ``launcher``, then write its render (``logger``: the
    runs' ``logger=``, given to every worker; :func:`genbench.tables.run_table`)."""
    if launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher {launcher!r}; valid: {', '.join(LAUNCHERS)} (settings in configs/launcher/)")
    if (launcher == "local" and workers == 1) or render_only:
        return run_table(name, scale, log=log, render_only=render_only, rows=rows, seeds=seeds, overwrite=overwrite,
                         logger=logger)
    plan(load_table(name), scale)  # a bad table or scale fails here, not in every worker
    picked = {"rows": rows, "seeds": seeds, "logger": logger}
    run_workers = {"local": forked_workers, "ray": ray_workers}.get(launcher, submitit_workers)
    for worker, error in run_workers(launcher, name, scale, workers, picked, log):
        # a worker's failure (killed, out of memory) leaves its run for the next launch
        log(f"worker {worker} failed: {(str(error).strip().splitlines() or [type(error).__name__])[-1][:300]}")
    return run_table(name, scale, log=log, render_only=True, overwrite=overwrite, logger=logger)


def forked_workers(launcher: str, name: str, scale: str, workers: int, picked: dict[str, Any], log):
    """Run the workers as processes forked from this one; yields (pid, error) of each that failed (its traceback is
    on stderr). One torch thread each, as PyTorch's own forked data-loader workers: the OpenMP thread pool of a
    process that has multiplied in parallel does not survive a fork, and a forked child that starts a parallel
    region hangs (measured here). Many small runs use the cores best one per core anyway; multi-thread workers are
    submitit_local's (new interpreters)."""
    fork = multiprocessing.get_context("fork")
    procs = [fork.Process(target=table_worker, name=f"genbench-worker-{i}",
                          args=(name, scale, paths.environment(), 1, picked)) for i in range(workers)]
    for proc in procs:
        proc.start()
    log(f"{name} ({scale}): {workers} local workers of one thread each, processes "
        f"{', '.join(str(p.pid) for p in procs)}")
    for proc in procs:
        proc.join()
        if proc.exitcode:
            yield f"process {proc.pid}", RuntimeError(f"exit code {proc.exitcode}")


def submitit_workers(launcher: str, name: str, scale: str, workers: int, picked: dict[str, Any], log):
    """Run the workers as submitit jobs; yields (job id, error) of each failed one."""
    executor = executor_for(launcher, name, scale)
    jobs = [executor.submit(table_worker, name, scale, paths.environment(),
                            local_threads(workers) if launcher == "submitit_local" else None, picked)
            for _ in range(workers)]
    log(f"{name} ({scale}): {workers} {launcher} workers, jobs {', '.join(j.job_id for j in jobs)}; logs in {executor.folder}")
    for job in jobs:
        try:
            job.result()
        except Exception as e:
            yield job.job_id, e


def ray_workers(launcher: str, name: str, scale: str, workers: int, picked: dict[str, Any], log):
    """Run the workers as Ray tasks: on a local Ray instance (``address: null``, the machine's cores shared out), or
    on the cluster at ``address``, each task with ``num_cpus``/``num_gpus`` of ``configs/launcher/ray.yaml``."""
    ray = require("ray", "the ray launcher")

    settings = launcher_settings("ray")
    address = settings.pop("address", None)
    cpus = settings.pop("num_cpus", None) or (local_threads(workers) if address is None else 1)
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=os.cpu_count() if address is None else None, include_dashboard=False,
                 logging_level="WARNING", log_to_driver=False)
    try:
        task = ray.remote(num_cpus=cpus, max_retries=0, **settings)(table_worker)
        refs = [task.remote(name, scale, paths.environment(), cpus, picked) for _ in range(workers)]
        log(f"{name} ({scale}): {workers} ray workers of {cpus} CPU(s) on {address or 'a local Ray instance'}; "
            "worker logs in Ray's session directory (/tmp/ray/session_latest/logs on the head node)")
        for i, ref in enumerate(refs):
            try:
                ray.get(ref)
            except Exception as e:
                yield f"ray task {i}", e
    finally:
        if started:
            ray.shutdown()


def table_worker(name: str, scale: str, env: dict[str, str], threads: int | None, picked: dict[str, Any]) -> None:
    """One worker: the table's runs that no other worker has claimed (runs in the worker's own process). ``env``:
    the launching process's results home and folders (:func:`genbench.core.paths.environment`; a SLURM job may start
    elsewhere)."""
    os.environ.update(env)
    if threads:
        torch.set_num_threads(threads)
    run_table(name, scale, render=False, **picked)


def local_threads(workers: int) -> int:
    """Torch threads per worker on this machine: the cores shared out (workers with all cores each slow each other
    many-fold)."""
    return max(1, (os.cpu_count() or 1) // workers)


def launcher_settings(launcher: str) -> dict[str, Any]:
    """``configs/launcher/LAUNCHER.yaml`` without its unset (null) keys."""
    path = paths.configs_dir() / "launcher" / f"{launcher}.yaml"
    return {k: v for k, v in (yaml.safe_load(path.read_text()) or {}).items() if v is not None}


def executor_for(launcher: str, name: str, scale: str):
    """submitit's executor with ``configs/launcher/LAUNCHER.yaml``; job folders under ``results/launcher/``."""
    submitit = require("submitit", f"the {launcher} launcher")

    settings = launcher_settings(launcher)
    if launcher == "slurm" and not settings.get("slurm_partition"):
        path = paths.configs_dir() / "launcher" / "slurm.yaml"
        raise ConfigError(f"set slurm_partition in {path} (your cluster's partition) before launching on SLURM")
    executor = submitit.AutoExecutor(folder=paths.results_dir("launcher", name, scale, "%j"),
                                     cluster="local" if launcher == "submitit_local" else "slurm")
    executor.update_parameters(name=f"genbench-{name}-{scale}", **settings)
    return executor
