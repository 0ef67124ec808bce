"""The ``genbench`` command.

    genbench train [experiment=NAME] [KEY=VALUE ...] [-m] [--overwrite]   one run (Hydra; -m: local multirun sweep)
    genbench evaluate CHECKPOINT [--split test]             re-evaluate a saved model
    genbench table NAME [--scale smoke|cpu|paper] [--render-only] [--rows TEXT] [--seeds 0,1]   run a table's missing runs, write it
                 [--launcher local|submitit_local|slurm|ray --workers N]   ... on N worker processes, SLURM jobs or Ray tasks
                 [--logger csv|wandb]                       ... wandb: runs grouped TABLE/SCALE, the render logged as a W&B table
                 [--plan]                                   ... or only project each run's time and memory on this device
    genbench compare model=NAME|module:Class table=NAME [--scale smoke|cpu|paper] [--logger csv|wandb] [KEY=VALUE ...]
    genbench report [--out DIR] [--check] [--screenshots]   the results site (results/site/index.html), from every render
    genbench list [models|capabilities|data|tables|published|experiments]
    genbench demo                                           every model on digits and the 2D mixtures (smoke)
    genbench sweep NAME [--count N] [--backend wandb|optuna] [--storage URL] [--summary]
                                                            a sweep of configs/sweep/NAME.yaml (W&B's format): on the
                                                            W&B server with a W&B key, else offline through Optuna

A mistake is one paragraph (exit status 2); --debug (or HYDRA_FULL_ERROR=1) shows its traceback. Results go under
the results home ($GENBENCH_HOME, else the checkout): results/ and models/ (docs/design.md, "Runs and records").

The modules that import torch and Lightning (a run's execution, the table runner, evaluation, launchers, sweeps)
are imported inside the commands that run something, after the arguments are checked: ``--help``, ``list`` and
every mistake answer in well under a second (``make bench-cli``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import hydra
import yaml
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .core import paths
from .core.errors import CLIError, ConfigError, GenbenchError, closest
from .core.optional import require
from .core.registry import DATA_MODULES, MODELS
from .models.contract import CAPABILITIES
from .published import load_published
from .runs.config import compose, options, paragraph, search_path
from .runs.identity import digest, model_source, slug, train_run_id
from .runs.schema import check_config
from .runs.store import read_record
from .tables.spec import check_selection, load_table, plan, table_names

USAGE = __doc__

LOGGERS = ("csv", "wandb")
"""``--logger`` of ``table`` and ``compare``: the ``logger=`` option of every run (configs/logger/)."""

WRITES = ("train", "evaluate", "table", "compare", "demo", "sweep", "report")
"""Commands that write under the results home: it is checked before any work."""


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user's mistake is one paragraph on stderr and exit status 2; a traceback is for bugs, or
    for everything with ``--debug`` (or ``HYDRA_FULL_ERROR=1``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("HYDRA_FULL_ERROR") == "1"
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "table": cmd_table, "compare": cmd_compare,
                "list": cmd_list, "demo": cmd_demo, "sweep": cmd_sweep, "report": cmd_report}
    if command not in commands:
        print(f"genbench: unknown command {command!r}{closest(command, commands)}; valid: {', '.join(commands)} "
              f"(genbench --help)", file=sys.stderr)
        return 2
    try:
        if command in WRITES and not {"-h", "--help"} & set(rest):
            paths.check_writable()
        return commands[command](rest) or 0
    except user_errors() as e:
        if debug:
            raise
        print(f"genbench {command}: {paragraph(e)}", file=sys.stderr)
        return 2


def user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's to fix (and Hydra's own, raised by ``genbench train``'s multirun path)."""
    return (GenbenchError, HydraException, OmegaConfBaseException)


# -- train -------------------------------------------------------------------------------------------------------------

def cmd_train(args: list[str]) -> int:
    """One run through Hydra's own entry point, so -m sweeps, --cfg job and tab completion all work. A bad override
    is answered before torch is imported; ``--overwrite`` lets a failed attempt replace a finished record."""
    overwrite = "--overwrite" in args
    args = [a for a in args if a != "--overwrite"]
    if "-m" not in args and "--multirun" not in args:
        compose([a for a in args if not a.startswith("-") and not a.startswith("hydra")])
    from .runs.execute import claim_run, train_and_evaluate

    OmegaConf.register_new_resolver("genbench_results", lambda part: str(paths.results_dir(part)), replace=True)
    status = {"code": 0}

    @hydra.main(config_path=str(paths.configs_dir().resolve()), config_name="train", version_base="1.3")
    def task(cfg):
        config = OmegaConf.to_container(cfg, resolve=True)
        try:
            check_config(config)  # a multirun's values were not composed before Hydra
        except ConfigError as e:
            print(f"genbench train: {e}", file=sys.stderr)
            status["code"] = 2
            return
        run_id = train_run_id(config)
        path = paths.results_dir("runs", "train", f"{run_id}.json")
        claim, began = claim_run(path), time.time()
        if not claim.acquire(wait=False):
            print(f"run {run_id} is being trained by {claim.holder() or 'another process'}; waiting for it")
        with claim:  # a run trained meanwhile by the process we waited for is reported, not trained again
            old = read_record(path)
            meanwhile = old is not None and path.stat().st_mtime >= began and old.get("status") != "interrupted"
            rec = old if meanwhile else train_and_evaluate(config, path, run_id, overwrite=overwrite)
        report(rec, rec.get("record_path", path))
        if rec["status"] != "finished":
            status["code"] = 1

    sys.argv = ["genbench train", *search_path(), *args]
    try:
        task()
    except SystemExit as e:  # Hydra exits on composition errors after printing them
        return int(e.code or 0) or 2
    return status["code"]


def report(rec: dict, path) -> None:
    """A run's outcome: status, time, every result (the first is the headline), the checkpoint and the record."""
    print(f"run {rec['run_id']}: {rec['status']} in {rec['wall_time_s']:.1f} s"
          + (f" on {rec['data']['variant']}" if rec.get("data") else ""))
    for key in ("error", "kept_record", "record_error"):
        if rec.get(key):
            print(rec[key], file=sys.stderr)
    from .runs.execute import results_of

    for r in results_of(rec):
        print(f"  {r}")
    if rec.get("checkpoint"):
        print(f"  checkpoint: {paths.located(rec['checkpoint'])}")
    print(f"  record: {path}")


# -- evaluate ----------------------------------------------------------------------------------------------------------

def cmd_evaluate(args: list[str]) -> int:
    p = argparse.ArgumentParser(prog="genbench evaluate", description="Evaluate a saved checkpoint on a split.")
    p.add_argument("checkpoint")
    p.add_argument("--split", default="test")
    p.add_argument("--json", action="store_true", help="print the result records as JSON")
    a = p.parse_args(args)
    checkpoint = Path(a.checkpoint)
    if not checkpoint.is_file() and not checkpoint.is_absolute():  # as a run record names it: under the results home
        checkpoint = paths.located(a.checkpoint)
    if not checkpoint.is_file():
        raise CLIError(f"no checkpoint at {checkpoint}; runs save theirs as models/trained/<training hash>/final.ckpt "
                       f"(each run record names its own)")
    from .evaluation import evaluate
    from .runs.checkpoints import load_checkpoint

    config, model, dm = load_checkpoint(checkpoint)
    named = f"{slug(checkpoint.parent.name)}-{digest(str(checkpoint.resolve()))[:8]}"  # not beside the checkpoint
    figure_dir = paths.results_dir("figures", "evaluate", named)
    results, figures = evaluate(model, dm, config.get("evaluation"), figure_dir, a.split)
    if a.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            print(r)
        for f in figures:
            print(f"figure: {f}")
    return 0


# -- tables ------------------------------------------------------------------------------------------------------------

def cmd_table(args: list[str]) -> int:
    p = argparse.ArgumentParser(prog="genbench table", description="Run a table's missing runs and write it.")
    p.add_argument("name")
    p.add_argument("--scale", default="smoke", help="smoke (CPU, minutes), cpu (the paper protocol cut to ~1 h on a "
                                                    "CPU, where a table has it) or paper")
    p.add_argument("--render-only", action="store_true", help="run nothing; write the table from the runs done so far")
    p.add_argument("--rows", default=None, help="run only the rows whose label contains this text")
    p.add_argument("--seeds", default=None, type=_seed_list, help="run only these seeds, e.g. 0 or 0,1")
    p.add_argument("--overwrite", action="store_true",
                   help="write this render even if the one on disk for this scale has more finished runs, and let "
                        "a failed rerun replace a finished record")
    p.add_argument("--launcher", default="local", help="local (this process, or N single-thread processes forked "
                                                       "from it), submitit_local (N worker processes started by "
                                                       "submitit), slurm (SLURM jobs) or ray (Ray tasks, local or on "
                                                       "a cluster); settings in configs/launcher/")
    p.add_argument("--workers", type=_positive, default=1, help="worker jobs of the launcher; the runs' claims split "
                                                                 "the table between them")
    p.add_argument("--plan", action="store_true", help="train nothing: probe each distinct run for a few steps on "
                                                       "this device and print its projected time and peak memory, "
                                                       "and the total alone and on --workers N")
    p.add_argument("--logger", choices=LOGGERS, default=None,
                   help="csv (results/logs/; the default, configs/train.yaml's) or wandb (also W&B, offline without a "
                        "key: the runs grouped TABLE/SCALE, the render logged as a W&B table with its figures); done "
                        "runs are not rerun for it")
    a = p.parse_args(args)
    if a.plan:
        spec = load_table(a.name)
        check_selection(spec, a.scale, plan(spec, a.scale), a.rows, a.seeds)
        from .bench.plan import plan_table, render_plan

        print(render_plan(plan_table(a.name, a.scale, a.workers, a.launcher, a.rows, a.seeds), a.workers, a.launcher))
        return 0
    _run_table(a.name, a.scale, render_only=a.render_only, rows=a.rows, seeds=a.seeds, overwrite=a.overwrite,
               launcher=a.launcher, workers=a.workers, logger=a.logger)
    return 0


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of seeds (integers >= 0), e.g. 0 "
                                         f"or 0,1")
    return seeds


def _run_table(name, scale, extra_rows=None, output_name=None, launcher="local", workers=1, **kw):
    """Check the table, scale and selection (no torch yet), run it, print its render; returns the render."""
    spec = load_table(name)
    spec["models"] = [*spec["models"], *(extra_rows or [])]
    check_selection(spec, scale, plan(spec, scale), kw.get("rows"), kw.get("seeds"))
    if launcher != "local" or workers > 1:
        from .launchers import launch_table

        written = launch_table(name, scale, launcher, workers, **kw)
    else:
        from .tables.runner import run_table

        written = run_table(name, scale, extra_rows=extra_rows, output_name=output_name, **kw)
    print(written.markdown)
    if not written.kept:
        print("written: " + ", ".join(str(p) for p in written.paths.values()))
    return written


def cmd_compare(args: list[str]) -> int:
    """A user's model under a table's data, evaluators and seeds, ranked among the table's rows."""
    keyed = dict(a.split("=", 1) for a in args if "=" in a and a.split("=", 1)[0] in ("model", "table"))
    scale = args[args.index("--scale") + 1] if "--scale" in args[:-1] else "smoke"
    logger = args[args.index("--logger") + 1] if "--logger" in args[:-1] else None
    extra = [a for a in args if "=" in a and a.split("=", 1)[0] not in ("model", "table")]
    if "model" not in keyed or "table" not in keyed:
        raise CLIError("usage: genbench compare model=NAME|module:Class|file.py:Class table=NAME [--scale smoke|cpu|"
                       "paper] [--logger csv|wandb] [KEY=VALUE ...]")
    if logger not in (None, *LOGGERS):
        raise CLIError(f"unknown --logger {logger!r}{closest(logger, LOGGERS)}; valid: {', '.join(LOGGERS)}")
    row = compared_row(keyed["model"], extra)
    spec = load_table(keyed["table"])
    spec["models"] = [*spec["models"], row]
    for p in plan(spec, scale):  # a bad key or value is answered before the table's runs, without torch
        if p.key == row["id"]:
            compose(p.overrides)
    written = _run_table(keyed["table"], scale, extra_rows=[row],
                         output_name=f"{keyed['table']}--compare-{slug(keyed['model'])}", logger=logger)
    ours = [r for p, r in written.runs if p.key == row["id"]]
    if ours and not any(r.get("status") == "finished" for r in ours):
        errors = sorted({(r.get("error") or r.get("status", "")).splitlines()[0] for r in ours})
        hint = (" A model compares on a table whose data it supports (genbench list tables; docs/design.md, \"Data "
                "spaces\")." if any("IncompatibleDataError" in e for e in errors) else "")
        raise CLIError(f"the compared model finished none of its {len(ours)} runs on table {keyed['table']!r} "
                       f"({scale}): {'; '.join(errors)}. The table's other rows are in the render above.{hint}")
    return 0


def compared_row(model: str, extra: list[str]) -> dict:
    """The row of a compared model: a registered name, or a user's ``file.py:Class`` / ``module:Class``, whose
    record file is named by the class and the resolved source, so two models never share a record."""
    if model in options("model"):  # a config, shipped or in results/configs/model/
        return {"label": f"{model} (compared)", "id": f"{model}-compared", "overrides": [f"model={model}", *extra]}
    if ":" not in model:
        raise CLIError(f"unknown model {model!r}; valid: {', '.join(sorted(MODELS))}, or module:Class / "
                       f"file.py:Class (your own)")
    module, _, cls = model.partition(":")
    source = model_source(model)
    if source is None:
        what = f"the file {Path(module).resolve()} does not exist" if module.endswith(".py") else \
            f"the module {module!r} cannot be found on the Python path (run from the folder that holds it)"
        raise CLIError(f"model {model!r}: {what}; give your model as path/to/file.py:Class or package.module:Class")
    return {"label": f"{cls} (compared, {module})", "id": f"{cls}-compared-{digest(source['path'])[:6]}",
            "overrides": ["model=custom", f"model.name={model}", *extra]}


def cmd_demo(args: list[str]) -> int:
    _run_table("demo", "smoke")
    return 0


def cmd_report(args: list[str]) -> int:
    p = argparse.ArgumentParser(prog="genbench report", description="Write the results site: static HTML built from "
                                "every table render, its run records and the bench results; opens from disk.")
    p.add_argument("--out", type=Path, default=None, help="the site's folder (default results/site/)")
    p.add_argument("--check", action="store_true", help="open every page in the system chromium and list console "
                                                        "errors, broken links and images (needs the browser extra)")
    p.add_argument("--screenshots", action="store_true", help="save screenshots of the index and the first table "
                                                              "page under the site's screenshots/ (browser extra)")
    a = p.parse_args(args)
    from .report import build_site

    site = build_site(a.out)
    print(f"written: {site.index} ({len(site.pages)} pages: the index, the bench page, {site.renders} table renders, "
          f"{site.runs} run records)")
    if a.check or a.screenshots:
        from .report.browser import browser_page, check_page, screenshot

        with browser_page() as page:
            problems = [x for path in site.pages for x in check_page(page, path)] if a.check else []
            if a.screenshots:
                table = next((f for f in site.pages if "/tables/" in str(f)), site.index)
                for name, path in (("index", site.index), ("table", table)):
                    print("screenshot:", screenshot(page, path, site.root / "screenshots" / f"{name}.png"))
        if problems:
            raise GenbenchError(f"{len(problems)} problems in the site: " + "; ".join(problems[:10]))
        if a.check:
            print(f"checked {len(site.pages)} pages in {site.root}: no console error, broken link or image")
    return 0


# -- list, sweep -------------------------------------------------------------------------------------------------------

def cmd_list(args: list[str]) -> int:
    what = args[0] if args else "all"
    sections = {
        "models": lambda: [f"{k:24s} {v}" for k, v in sorted(MODELS.items())],
        "capabilities": lambda: [f"{c.name:16s} {c.needs} -> {c.evaluator}" for c in CAPABILITIES],
        "data": lambda: [f"{k:24s} {v}" for k, v in sorted(DATA_MODULES.items())],
        "tables": lambda: table_names(),
        "experiments": lambda: options("experiment"),
        "published": lambda: [f"{q.id:40s} {q.value:>10g} {q.unit:9s} {q.status}  {q.paper}, {q.table}: {q.model} on {q.variant}"
                              for q in load_published().values()],
    }
    if what != "all" and what not in sections:
        raise CLIError(f"unknown list {what!r}{closest(what, sections)}; valid: {', '.join(sections)}")
    for name in sections if what == "all" else [what]:
        print(f"{name}:")
        for line in sections[name]():
            print(f"  {line}")
    return 0


def cmd_sweep(args: list[str]) -> int:
    """A sweep from configs/sweep/NAME.yaml (W&B's format): on the W&B server when a key is set, else through Optuna."""
    from .loggers import wandb_online
    from .sweeps import load_sweep, run_sweep, summarize, sweep_names

    p = argparse.ArgumentParser(prog="genbench sweep", description="Run a sweep of configs/sweep/NAME.yaml.")
    p.add_argument("name", nargs="?")
    p.add_argument("--count", type=_positive, help="trials for this worker (default: the grid, else the YAML's run_cap)")
    p.add_argument("--backend", choices=("wandb", "optuna"), default=None,
                   help="wandb (the W&B server; default when a W&B key is set) or optuna (offline; the default otherwise)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///results/sweeps/NAME/study.db; "
                                                    "a PostgreSQL or MySQL URL lets machines share the study)")
    p.add_argument("--summary", action="store_true", help="write the summary of the study so far; run nothing")
    a = p.parse_args(args)
    if not a.name:
        raise CLIError("usage: genbench sweep NAME [--count N] [--backend wandb|optuna] [--storage URL] [--summary]; "
                       "sweeps: " + ", ".join(sweep_names()))
    sweep = load_sweep(a.name)
    offline = a.summary or a.storage or not wandb_online()
    if a.backend == "wandb" and (a.summary or a.storage):
        raise CLIError("--summary and --storage belong to the Optuna backend (--backend optuna); the W&B server "
                       "keeps its own sweep state")
    if (a.backend or ("optuna" if offline else "wandb")) == "optuna":
        if a.summary:
            summarize(a.name, a.storage)
        else:
            run_sweep(a.name, count=a.count, storage=a.storage)
        return 0
    if not wandb_online():
        raise CLIError("--backend wandb needs the W&B server: set WANDB_API_KEY (or run `wandb login`), or run the sweep "
                       f"offline with `genbench sweep {a.name}` (Optuna)")
    config = yaml.safe_load(sweep.path.read_text())
    project = config.get("project", "genbench")
    wandb = require("wandb", "genbench sweep --backend wandb")
    sweep_id = wandb.sweep(config, project=project)
    count = ["--count", str(a.count)] if a.count else []
    os.execvp("wandb", ["wandb", "agent", "--project", project, *count, sweep_id])
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer (1, 2, ...)")
    return int(text)


if __name__ == "__main__":
    sys.exit(main())
