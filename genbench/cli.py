"""The ``genbench`` command.

    genbench train [experiment=NAME] [KEY=VALUE ...] [-m]   one run (Hydra; -m: local multirun sweep)
    genbench evaluate CHECKPOINT [--split test]             re-evaluate a saved model
    genbench table NAME [--scale smoke|cpu|paper] [--render-only] [--rows TEXT] [--seeds 0,1]   run a table's missing runs, write it
                 [--launcher local|submitit_local|slurm|ray --workers N]   ... on N worker processes, SLURM jobs or Ray tasks
    genbench compare model=NAME|module:Class table=NAME [--scale smoke|cpu|paper] [KEY=VALUE ...]
    genbench list [models|data|tables|published|experiments]
    genbench demo                                           every model on digits and the 2D mixtures (smoke)
    genbench sweep NAME [--count N] [--backend wandb|optuna] [--storage URL] [--summary]
                                                            a sweep of configs/sweep/NAME.yaml (W&B's format): on the
                                                            W&B server with a W&B key, else offline through Optuna
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

USAGE = __doc__


class CLIError(Exception):
    """A user error: printed as one paragraph, exit status 2."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "table": cmd_table, "compare": cmd_compare,
                "list": cmd_list, "demo": cmd_demo, "sweep": cmd_sweep}
    if command not in commands:
        print(f"genbench: unknown command {command!r}; valid: {', '.join(commands)}", file=sys.stderr)
        return 2
    try:
        return commands[command](rest) or 0
    except CLIError as e:
        print(f"genbench {command}: {e}", file=sys.stderr)
        return 2


def user_errors():
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .errors import GenbenchError

    return (HydraException, OmegaConfBaseException, GenbenchError)


def clean(e: Exception) -> str:
    """A Hydra composition error as one short paragraph (without its stack)."""
    text = str(e).strip()
    return text.split("\n\nSet the environment variable HYDRA_FULL_ERROR")[0]


# -- train -------------------------------------------------------------------------------------------------------------

def cmd_train(args: list[str]) -> int:
    """One run through Hydra's own entry point, so -m sweeps, --cfg job and tab completion all work."""
    import hydra
    from omegaconf import OmegaConf

    from . import paths
    from .runs import claim_run, config_hash, read_record, train_and_evaluate

    if "-m" not in args and "--multirun" not in args:
        check_overrides([a for a in args if not a.startswith("-") and not a.startswith("hydra")])
    status = {"code": 0}

    @hydra.main(config_path=str(paths.configs_dir().resolve()), config_name="train", version_base="1.3")
    def task(cfg):
        config = OmegaConf.to_container(cfg, resolve=True)
        run_id = f"{config['name']}--s{config['seed']}--{config_hash(config)[:8]}"
        path = paths.results_dir("runs", "train", f"{run_id}.json")
        claim, began = claim_run(path), time.time()
        if not claim.acquire(wait=False):
            print(f"run {run_id} is being trained by {claim.holder() or 'another process'}; waiting for it")
        with claim:  # a run trained meanwhile by the process we waited for is reported, not trained again
            old = read_record(path)
            meanwhile = old is not None and path.stat().st_mtime >= began and old.get("status") != "interrupted"
            rec = old if meanwhile else train_and_evaluate(config, path, run_id)
        report(rec)
        if rec["status"] != "finished":
            status["code"] = 1

    sys.argv = ["genbench train", *args]
    try:
        task()
    except SystemExit as e:  # Hydra exits on composition errors after printing them
        return int(e.code or 0) or 2
    return status["code"]


GROUPS = ("data", "model", "trainer", "logger", "experiment")


def check_overrides(overrides: list[str]) -> None:
    """Compose once before Hydra does, to turn a bad name or key into one line listing the valid choices."""
    from omegaconf import OmegaConf

    from . import paths
    from .tables import compose

    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if key in GROUPS:
            valid = sorted(p.stem for p in (paths.configs_dir() / key).glob("*.yaml"))
            if value not in valid:
                raise CLIError(f"unknown {key} {value!r}; valid: {', '.join(valid)}")
    try:
        compose(overrides)
    except user_errors() as e:
        bad = next((o for o in overrides if o.split("=")[0] in str(e)), None)
        if bad is None or bad.startswith("+"):
            raise CLIError(clean(e)) from None
        key = bad.split("=")[0]
        parent, _, leaf = key.rpartition(".")
        base = compose([o for o in overrides if o != bad])
        node = OmegaConf.select(OmegaConf.create(base), parent) if parent else base
        valid = ", ".join(sorted(node)) if isinstance(node, dict) or OmegaConf.is_dict(node) else "?"
        raise CLIError(f"unknown key {key!r}; valid keys{' under ' + parent if parent else ''}: {valid} "
                       f"(add a new key with +{key}=...)") from None


def report(rec: dict) -> None:
    from .runs import results_of

    print(f"run {rec['run_id']}: {rec['status']} in {rec['wall_time_s']:.1f} s"
          + (f" on {rec['data']['variant']}" if rec.get("data") else ""))
    if rec.get("error"):
        print(rec["error"], file=sys.stderr)
    for r in results_of(rec):
        print(f"  {r}")
    if rec.get("checkpoint"):
        print(f"  checkpoint: {rec['checkpoint']}")


# -- evaluate ----------------------------------------------------------------------------------------------------------

def cmd_evaluate(args: list[str]) -> int:
    p = argparse.ArgumentParser(prog="genbench evaluate", description="Evaluate a saved checkpoint on a split.")
    p.add_argument("checkpoint")
    p.add_argument("--split", default="test")
    p.add_argument("--json", action="store_true", help="print the result records as JSON")
    a = p.parse_args(args)
    from .evaluation import evaluate
    from .runs import load_checkpoint

    if not Path(a.checkpoint).is_file():
        raise CLIError(f"no checkpoint at {a.checkpoint}; runs save theirs as models/trained/<training hash>/final.ckpt")
    try:
        config, model, dm = load_checkpoint(a.checkpoint)
        results, figures = evaluate(model, dm, config.get("evaluation"), Path(a.checkpoint).parent / "figures", a.split)
    except user_errors() as e:
        raise CLIError(clean(e)) from None
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
    p.add_argument("--scale", default="smoke", help="smoke (CPU, minutes), cpu (the paper protocol cut to ~1 h on a CPU, where a table has it) or paper")
    p.add_argument("--render-only", action="store_true", help="run nothing; write the table from the runs done so far")
    p.add_argument("--rows", default=None, help="run only the rows whose label contains this text")
    p.add_argument("--seeds", default=None, type=_seed_list, help="run only these seeds, e.g. 0 or 0,1")
    p.add_argument("--overwrite", action="store_true",
                   help="write this render even if the one on disk for this scale has more finished runs")
    p.add_argument("--launcher", default="local", help="local (this process, or N single-thread processes forked from it), "
                                                       "submitit_local (N worker processes started by submitit), "
                                                       "slurm (SLURM jobs) or ray (Ray tasks, local or on a cluster); "
                                                       "settings in configs/launcher/")
    p.add_argument("--workers", type=_positive, default=1, help="worker jobs of the launcher; the runs' claims split "
                                                                 "the table between them")
    a = p.parse_args(args)
    return _run_table(a.name, a.scale, render_only=a.render_only, rows=a.rows, seeds=a.seeds, overwrite=a.overwrite,
                      launcher=a.launcher, workers=a.workers)


def _seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of seeds, e.g. 0 or 0,1") from None


def _run_table(name, scale, extra_rows=None, output_name=None, launcher="local", workers=1, **kw) -> int:
    from .launchers import launch_table
    from .tables import run_table

    try:
        if launcher != "local" or workers > 1:
            written = launch_table(name, scale, launcher, workers, **kw)
        else:
            written = run_table(name, scale, extra_rows=extra_rows, output_name=output_name, **kw)
    except user_errors() as e:
        raise CLIError(clean(e)) from None
    print(written.markdown)
    if not written.kept:
        print("written: " + ", ".join(str(p) for p in written.paths.values()))
    return 0


def cmd_compare(args: list[str]) -> int:
    """A user's model under a table's data, evaluators and seeds, ranked among the table's rows."""
    from . import paths
    from .tables import slug

    keyed = dict(a.split("=", 1) for a in args if "=" in a and a.split("=", 1)[0] in ("model", "table"))
    scale = "smoke"
    if "--scale" in args:
        scale = args[args.index("--scale") + 1]
    extra = [a for a in args if "=" in a and a.split("=", 1)[0] not in ("model", "table")]
    if "model" not in keyed or "table" not in keyed:
        raise CLIError("usage: genbench compare model=NAME|module:Class|file.py:Class table=NAME [--scale smoke|cpu|paper] "
                       "[KEY=VALUE ...]")
    model = keyed["model"]
    if (paths.configs_dir() / "model" / f"{model}.yaml").is_file():
        overrides = [f"model={model}"]
    elif ":" in model:
        overrides = ["model=custom", f"model.name={model}"]
    else:
        from .models import MODELS

        raise CLIError(f"unknown model {model!r}; valid: {', '.join(sorted(MODELS))}, or module:Class / file.py:Class")
    row = {"label": f"{model.split(':')[-1]} (compared)", "overrides": overrides + extra}
    return _run_table(keyed["table"], scale, extra_rows=[row], output_name=f"{keyed['table']}--compare-{slug(model)}")


def cmd_demo(args: list[str]) -> int:
    return _run_table("demo", "smoke")


# -- list, sweep -------------------------------------------------------------------------------------------------------

def cmd_list(args: list[str]) -> int:
    from . import paths
    from .data import DATA_MODULES
    from .models import MODELS
    from .published import load_published
    from .tables import table_names

    what = args[0] if args else "all"
    sections = {
        "models": lambda: [f"{k:24s} {v}" for k, v in sorted(MODELS.items())],
        "data": lambda: [f"{k:24s} {v}" for k, v in sorted(DATA_MODULES.items())],
        "tables": lambda: table_names(),
        "experiments": lambda: sorted(p.stem for p in (paths.configs_dir() / "experiment").glob("*.yaml")),
        "published": lambda: [f"{q.id:40s} {q.value:>10g} {q.unit:9s} {q.status}  {q.paper}, {q.table}: {q.model} on {q.variant}"
                              for q in load_published().values()],
    }
    if what != "all" and what not in sections:
        raise CLIError(f"unknown list {what!r}; valid: {', '.join(sections)}")
    for name in sections if what == "all" else [what]:
        print(f"{name}:")
        for line in sections[name]():
            print(f"  {line}")
    return 0


def cmd_sweep(args: list[str]) -> int:
    """A sweep from configs/sweep/NAME.yaml (W&B's format): on the W&B server when a key is set, else through Optuna."""
    from .logging import wandb_online
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
    try:
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
    except user_errors() as e:
        raise CLIError(clean(e)) from None
    if not wandb_online():
        raise CLIError("--backend wandb needs the W&B server: set WANDB_API_KEY (or run `wandb login`), or run the sweep "
                       f"offline with `genbench sweep {a.name}` (Optuna)")
    import wandb
    import yaml

    config = yaml.safe_load(sweep.path.read_text())
    project = config.get("project", "genbench")
    sweep_id = wandb.sweep(config, project=project)
    count = ["--count", str(a.count)] if a.count else []
    os.execvp("wandb", ["wandb", "agent", "--project", project, *count, sweep_id])
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of trials")
    return int(text)


if __name__ == "__main__":
    sys.exit(main())
