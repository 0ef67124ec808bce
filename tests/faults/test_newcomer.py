"""What a newcomer breaks in the first hour (issue 22), one section per class of defect.

1. results land where they belong (the results home), never beside a user's model file or in tracked files;
2. a finished record is never lost to a failed rerun, and two models never share a record;
3. numbers are checked (tests/unit/test_schema.py has the rules; here: as a user meets them on the command line);
4. every mistake is one paragraph (the fault table below), a traceback only with --debug;
5. non-results are errors or statuses with their reason, never silent;
6. errors and `list` answer without importing torch, and long reasons are kept whole in the CSV;
7. figures (tests/unit/test_figures.py) and the README's numbers (tests/unit/test_readme.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from genbench.cli import main
from genbench.core import paths
from genbench.core.paths import results_dir
from genbench.runs.config import compose
from genbench.runs.execute import train_and_evaluate
from genbench.runs.store import read_record
from helpers import REPO


TINY = """
title: tiny
datasets:
  digits: {label: digits, overrides: [data=digits, data.variant=dynamic]}
models:
  - {label: independent Bernoulli, overrides: [model=independent_bernoulli, trainer.max_epochs=1]}
metrics: [nll]
scales:
  smoke: {seeds: [0]}
"""

MODEL = '''
import os

import lightning as L
import torch


class {name}(L.LightningModule):
    """Independent pixels{extra}."""

    def __init__(self, info):
        super().__init__()
        self.logit = torch.nn.Parameter(torch.zeros(info.dim))

    def log_prob(self, x):
        if os.environ.get("BREAK_MODEL"):
            raise RuntimeError("a broken environment")
        x = x.flatten(1)
        value = -torch.nn.functional.binary_cross_entropy_with_logits(self.logit.expand_as(x), x, reduction="none")
        return value.sum(1) * (1.0 if self.training else {scale})  # the scale applies to scoring only

    def training_step(self, x, _):
        return -self.log_prob(x).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
'''


def model_file(folder: Path, name: str = "Mine", scale: str = "1.0", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "my_model.py"
    path.write_text(MODEL.format(name=name, scale=scale, extra=extra))
    return path


@pytest.fixture
def tiny(configs_copy):
    (configs_copy / "table" / "tiny.yaml").write_text(TINY)
    return "tiny"


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# -- 1. where results go ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("given", ["absolute", "relative"])
def test_a_users_model_file_never_decides_where_results_go(given, tmp_path, genbench_home, capsys, monkeypatch):
    """Before: the run name embedded the path, so an absolute one sent the record beside the model file and a
    relative one made folders with ':' in their names."""
    source = model_file(tmp_path / "elsewhere" / "deep")
    monkeypatch.chdir(tmp_path)
    name = str(source) if given == "absolute" else "elsewhere/deep/my_model.py"
    code, out, _ = cli(capsys, "train", "model=custom", f"model.name={name}:Mine", "trainer.max_epochs=1")
    assert code == 0, out
    assert files_under(source.parent) == {source}  # nothing written beside the user's file
    written = files_under(genbench_home)
    assert any(p.parent == results_dir("runs", "train") for p in written)
    assert not [p for p in written if ":" in str(p.relative_to(genbench_home))]


def test_a_sweep_writes_its_best_config_under_the_results_home_not_into_configs(configs_copy, capsys):
    (configs_copy / "sweep" / "two.yaml").write_text(
        "method: grid\nmetric: {name: test/nll, goal: minimize}\nparameters:\n  model.components: {values: [2, 3]}\n"
        'command: [genbench, train, experiment=mob_digits, trainer.max_epochs=1, logger=wandb, "${args_no_hyphens}"]\n')
    before = {p: p.read_bytes() for p in files_under(configs_copy)}
    code, out, err = cli(capsys, "sweep", "two")
    assert code == 0, err
    assert {p: p.read_bytes() for p in files_under(configs_copy)} == before  # shipped configs are untouched
    best = results_dir("configs", "experiment", "sweep_two_best.yaml")
    assert best.is_file()
    assert compose(["experiment=sweep_two_best"])["model"]["components"] in (2, 3)  # found where Hydra looks


def clone_of_the_working_tree(tmp_path: Path) -> Path:
    """A git checkout of the tracked files as they are now (committed or not), with the project's data links."""
    clone = tmp_path / "clone"
    listed = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]  # what a commit of it would hold
    tracked = subprocess.run(listed, cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for rel in filter(None, (t.decode() for t in tracked)):
        if (REPO / rel).is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, clone / rel)
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"]):
        subprocess.run(["git", *cmd], cwd=clone, check=True, capture_output=True)
    return clone


def test_a_users_table_run_leaves_the_checkout_clean(tmp_path):
    """Before: `make demo` rewrote 18 tracked files (the committed render and figures). Now a user's run writes the
    untracked results/ of the checkout; the committed reference/ changes only with GENBENCH_RESULTS=reference."""
    clone = clone_of_the_working_tree(tmp_path)
    (clone / "configs" / "table" / "tiny.yaml").write_text(TINY)
    subprocess.run(["git", "commit", "-qam", "tiny", "--allow-empty"], cwd=clone, check=True, capture_output=True)
    subprocess.run(["git", "add", "configs/table/tiny.yaml"], cwd=clone, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"], cwd=clone, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENBENCH_")}
    env.update(PYTHONPATH=str(clone), OMP_NUM_THREADS="1", CI="1", WANDB_MODE="offline")
    for table in ("tiny", "demo") if os.environ.get("GENBENCH_SLOW_CLONE") else ("tiny",):
        run = subprocess.run([sys.executable, "-m", "genbench.cli", "table", table], cwd=clone, env=env, text=True,
                             capture_output=True, timeout=900)
        assert run.returncode == 0, run.stderr[-2000:]
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
    assert status == ""
    assert (clone / "results" / "tables" / "tiny" / "smoke.md").is_file()


# -- 2. nothing lost ----------------------------------------------------------------------------------------------------

def test_a_failed_rerun_keeps_the_finished_record_beside_its_own(tmp_path, monkeypatch, capsys):
    """Before: the same run rerun in a broken environment (a corrupt data root, here a model that breaks) replaced
    its finished record with `failed`."""
    source = model_file(tmp_path / "m")
    config = compose(["model=custom", f"model.name={source}:Mine", "trainer.max_epochs=1"])
    path = results_dir("runs", "train", "mine.json")
    first = train_and_evaluate(config, path, "mine")
    assert first["status"] == "finished"
    monkeypatch.setenv("BREAK_MODEL", "1")
    second = train_and_evaluate(config, path, "mine")
    assert second["status"] == "failed" and "kept" in second["kept_record"]
    assert read_record(path)["status"] == "finished" and read_record(path)["results"] == first["results"]
    aside = path.with_name("mine.failed.json")
    assert read_record(aside)["status"] == "failed" and "the finished record" in capsys.readouterr().err
    third = train_and_evaluate(config, path, "mine", overwrite=True)  # the user asks: replaced
    assert third["status"] == "failed" and read_record(path)["status"] == "failed"


def test_two_models_with_one_class_name_keep_their_own_records(tiny, tmp_path, capsys):
    """Before: two compare files defining a class of one name shared a run id and overwrote each other."""
    a = model_file(tmp_path / "a", scale="1.0")
    b = model_file(tmp_path / "b", scale="1.0", extra=" (the same model, another file)")
    for source in (a, b):
        assert cli(capsys, "compare", f"model={source}:Mine", f"table={tiny}")[0] == 0
    records = sorted(results_dir("runs", tiny, "smoke").glob("mine-compared-*.json"))
    assert len(records) == 2 and all(read_record(r)["status"] == "finished" for r in records)
    sources = {read_record(r)["model_source"]["path"] for r in records}
    assert sources == {str(a.resolve()), str(b.resolve())}
    started = [read_record(r)["started"] for r in records]
    code, out, _ = cli(capsys, "compare", f"model={a}:Mine", f"table={tiny}")
    assert code == 0 and out.count("done before") == 2  # the baseline and `a`: nothing trains again
    assert [read_record(r)["started"] for r in records] == started


def test_an_edited_model_file_is_run_again(tiny, tmp_path, capsys):
    source = model_file(tmp_path / "m")
    assert cli(capsys, "compare", f"model={source}:Mine", f"table={tiny}")[0] == 0
    [record] = results_dir("runs", tiny, "smoke").glob("mine-compared-*.json")
    before = read_record(record)
    model_file(tmp_path / "m", scale="0.5")  # the user changes the model: the old numbers no longer stand
    assert cli(capsys, "compare", f"model={source}:Mine", f"table={tiny}")[0] == 0
    after = read_record(record)
    assert after["config_hash"] != before["config_hash"] and after["model_source"] != before["model_source"]


# -- 4. one paragraph per mistake ---------------------------------------------------------------------------------------

BAD_INPUTS = {
    # numbers (genbench/runs/schema.py)
    "epochs -1": (["train", "trainer.max_epochs=-1"], "trainer.max_epochs=-1"),
    "epochs 0": (["train", "trainer.max_epochs=0"], "trainer.max_epochs=0"),
    "epochs a word": (["train", "trainer.max_epochs=two"], "trainer.max_epochs='two'"),
    "batch 0": (["train", "data.batch_size=0"], "data.batch_size=0"),
    "batch -5": (["train", "data.batch_size=-5"], "data.batch_size=-5"),
    "eval batch a word": (["train", "data.eval_batch_size=abc"], "data.eval_batch_size"),
    "lr 0": (["train", "model=vae", "model.lr=0"], "model.lr=0"),
    "lr negative": (["train", "model=vae", "model.lr=-1e-3"], "model.lr"),
    "k 0": (["train", "model=vae", "model.k=0"], "model.k=0"),
    "seed -1": (["train", "seed=-1"], "seed=-1"),
    "seed 1.5": (["train", "seed=1.5"], "seed=1.5"),
    "bound_k 0": (["train", "evaluation.likelihood.bound_k=0"], "bound_k=0"),
    "ais runs 0": (["train", "evaluation.likelihood.ais.runs=0"], "ais.runs=0"),
    "ais betas 1": (["train", "evaluation.likelihood.ais.betas=1"], "ais.betas=1"),
    "gibbs k 0": (["train", "model=rbm", "model.k=0"], "model.k=0"),
    "chains 0": (["train", "model=rbm", "model.n_chains=0"], "model.n_chains=0"),
    "train size 0": (["train", "data=gmm2d", "data.train_size=0"], "data.train_size=0"),
    "devices 0": (["train", "trainer.devices=0"], "trainer.devices=0"),
    "beta1 1.5": (["train", "model=gan", "data=gmm2d", "model.beta1=1.5"], "model.beta1=1.5"),
    "workers 0": (["table", "gmm-baselines", "--workers", "0"], "not a positive integer"),
    "seeds a word": (["table", "gmm-baselines", "--seeds", "x"], "comma-separated list of seeds"),
    "seeds none planned": (["table", "gmm-baselines", "--seeds", "99"], "matches no seed"),
    # names
    "model misspelled": (["train", "model=vaee"], "did you mean vae"),
    "data misspelled": (["train", "data=mnst"], "did you mean mnist"),
    "experiment unknown": (["train", "experiment=nope"], "valid experiment choices"),
    "logger unknown": (["train", "logger=tensorboard"], "valid logger choices"),
    "key under a group": (["train", "model=vae", "model.latnet=10"], "did you mean model.latent"),
    "key deep": (["train", "evaluation.likelihod.bound_k=3"], "did you mean evaluation.likelihood"),
    "key at the top": (["train", "fooo=3"], "unknown key 'fooo'"),
    "delete a missing key": (["train", "~model.lr"], "unknown key 'model.lr'"),
    "custom without name": (["train", "model=custom"], "model.name has no value"),
    "unreadable override": (["train", "trainer.max_epochs=[1"], "cannot read the override"),
    "compare key": (["compare", "model=zuko", "table=flows-2d", "model.flw=3"], "did you mean model.flow"),
    "compare number": (["compare", "model=vae", "table=gmm-baselines", "model.k=0"], "model.k=0"),
    "compare unknown model": (["compare", "model=nope", "table=gmm-baselines"], "unknown model 'nope'"),
    "compare no file": (["compare", "model=/nonexistent/m.py:M", "table=gmm-baselines"], "does not exist"),
    "compare no module": (["compare", "model=no_such_pkg.mod:M", "table=gmm-baselines"], "cannot be found"),
    "compare no table": (["compare", "model=vae"], "usage: genbench compare"),
    "table unknown": (["table", "gmm-baselnes"], "did you mean gmm-baselines"),
    "scale unknown": (["table", "gmm-baselines", "--scale", "huge"], "unknown scale 'huge'"),
    "scale absent": (["table", "demo", "--scale", "paper"], "has no 'paper' scale"),
    "rows none": (["table", "gmm-baselines", "--rows", "zzz"], "matches no row"),
    "list section": (["list", "modelz"], "did you mean models"),
    "command": (["tabel"], "did you mean table"),
    "checkpoint": (["evaluate", "/nonexistent.ckpt"], "no checkpoint at"),
    "sweep": (["sweep", "nope"], "nope"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_every_mistake_is_one_paragraph_without_a_traceback(case, capsys):
    args, expected = BAD_INPUTS[case]
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own errors (its usage line, then one line)
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("usage:", " "))]
    assert len(lines) == 1, err


@pytest.mark.parametrize("home", ["a file", "under a file"])
def test_a_home_that_cannot_hold_results_is_one_paragraph(home, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("GENBENCH_HOME", str(blocker if home == "a file" else blocker / "sub"))
    code, _, err = cli(capsys, "table", "demo")
    assert code == 2 and "GENBENCH_HOME" in err and "cannot write results" in err and "Traceback" not in err


def test_debug_shows_the_traceback(capsys):
    from genbench.core.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["train", "model=vae", "model.latnet=10", "--debug"])


# -- 5. no silent non-results -------------------------------------------------------------------------------------------

def test_a_nan_score_is_diverged_with_its_reason_in_the_record_and_the_table(tiny, tmp_path, capsys):
    source = model_file(tmp_path / "nan", scale="float('nan')")
    code, _, err = cli(capsys, "compare", f"model={source}:Mine", f"table={tiny}")
    assert code == 2 and "non-finite score" in err  # its only run did not finish
    [record] = results_dir("runs", tiny, "smoke").glob("mine-compared-*.json")
    rec = read_record(record)
    assert rec["status"] == "diverged" and "nll = nan" in rec["error"]
    [render] = results_dir("tables").glob("tiny--compare-*/smoke.csv")
    status = pd.read_csv(render).set_index("row")["status"]
    assert "diverged" in status.filter(like="Mine").iloc[0] and "non-finite score" in status.filter(like="Mine").iloc[0]


def test_a_model_with_nothing_to_score_fails_before_training(tmp_path, capsys):
    (tmp_path / "mute.py").write_text(textwrap.dedent('''
        import lightning as L
        import torch

        class Mute(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(torch.zeros(1))

            def training_step(self, x, _):
                return (self.w ** 2).sum()

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)
    '''))
    code, out, err = cli(capsys, "train", "model=custom", f"model.name={tmp_path / 'mute.py'}:Mute")
    assert code == 1 and "failed" in out and "offers nothing the evaluators score" in err
    rec = json.loads(next(results_dir("runs", "train").glob("*.json")).read_text())
    assert rec["status"] == "failed" and "epochs" not in rec  # it never trained


def test_a_compare_that_fits_no_dataset_is_an_error(tiny, capsys):
    code, _, err = cli(capsys, "compare", "model=true_mixture", f"table={tiny}")
    assert code == 2 and "finished none of its 1 runs" in err and "supports continuous data" in err


def test_train_prints_where_its_record_went_and_its_headline(capsys):
    code, out, _ = cli(capsys, "train", "experiment=mob_digits", "trainer.max_epochs=1")
    assert code == 0
    record = next(results_dir("runs", "train").glob("*.json"))
    assert f"record: {record}" in out and "nll = " in out and "nats" in out


# -- 6. fast answers, whole reasons --------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["list"], ["train", "model=vae", "model.latnet=1"], ["table", "nope"], ["--help"]])
def test_lists_and_mistakes_answer_without_importing_torch(args):
    """`make bench-cli` times them; here: what makes them slow (torch, Lightning) is not imported at all."""
    code = (f"import sys; from genbench.cli import main; main({args!r}); "
            "heavy = [m for m in ('torch', 'lightning', 'pandas', 'matplotlib', 'wandb', 'ray') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "GENBENCH_HOME": str(paths.home())})
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_long_reason_is_whole_in_the_csv_and_shortened_in_the_markdown(tiny, tmp_path, capsys):
    reason = "a very long reason " * 30 + "THE END"
    (tmp_path / "loud.py").write_text(textwrap.dedent(f'''
        from genbench.core.errors import GenbenchError

        class Loud:
            def __init__(self, info):
                raise GenbenchError({reason!r})
    '''))
    cli(capsys, "compare", f"model={tmp_path / 'loud.py'}:Loud", f"table={tiny}")
    [csv] = results_dir("tables").glob("tiny--compare-*/smoke.csv")
    status = pd.read_csv(csv).set_index("row")["status"].filter(like="Loud").iloc[0]
    assert "THE END" in status
    md = csv.with_suffix(".md").read_text()
    assert "THE END" not in md and "whole reason: smoke.csv, runs/tiny/smoke/loud-compared-" in md
