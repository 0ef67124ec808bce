"""Fault injection: a kill, a second process, a bad checkpoint, a full disk, bad data and a broken model.

Each test injects a real fault (SIGKILL, two real processes, a truncated file, ENOSPC from /dev/full, NaN in the
data, a model that breaks its contract) and checks that no run is lost or done twice and that the error says why.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from genbench import tables
from genbench.cli import main
from genbench.core.paths import models_dir, results_dir
from genbench.runs.checkpoints import FINAL_CHECKPOINT, LAST_CHECKPOINT
from genbench.runs.execute import train_and_evaluate
from genbench.runs.store import read_record
from genbench.tables import compose
from helpers import REPO

FLOW_2D = ["data=gmm2d", "data.mixture=ring8", "data.train_size=4000", "data.batch_size=50", "model=realnvp",
           "model.couplings=4", "model.hidden=32", "trainer.max_epochs=6", "name=resumable"]


def genbench(*args: str, home: Path, **kw) -> subprocess.Popen:
    env = dict(os.environ, GENBENCH_HOME=str(home), OMP_NUM_THREADS="1", CI="1", WANDB_MODE="offline")
    return subprocess.Popen([sys.executable, "-m", "genbench.cli", *args], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def values(record: dict) -> dict[str, float]:
    return {r["metric"]: r["value"] for r in record["results"]}


def test_a_killed_training_resumes_from_its_last_epoch_to_the_same_record(genbench_home, tmp_path):
    whole = train_and_evaluate(compose(FLOW_2D), tmp_path / "whole.json", "whole")  # never interrupted
    assert whole["status"] == "finished"
    home = tmp_path / "killed"
    proc = genbench("train", *FLOW_2D, home=home)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:  # kill once two epochs are checkpointed
        last = next(iter(models_dir_of(home).glob(f"*/{LAST_CHECKPOINT}")), None)
        state = torch.load(last, weights_only=True, mmap=True) if last is not None else None
        if state is not None and state["epoch"] >= 1:
            proc.send_signal(signal.SIGKILL)
            trained_before_kill = state["callbacks"]["TrainingClock"]["seconds"]
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the training ended before it could be killed"
    resumed = genbench("train", *FLOW_2D, home=home)
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    record = json.loads(next((home / "results" / "runs" / "train").glob("*.json")).read_text())
    assert record["status"] == "finished" and record["resumed_from_epoch"] >= 2 and record["epochs"] == 6
    assert record["train_time_s"] > trained_before_kill > 0  # the training's whole cost, both processes' parts
    ours, reference = values(record), values(whole)
    assert ours.keys() == reference.keys()
    for metric, v in reference.items():
        assert ours[metric] == pytest.approx(v, rel=1e-4, abs=1e-6), metric
    assert not list(models_dir_of(home).glob(f"*/{LAST_CHECKPOINT}"))  # superseded by final.ckpt


def models_dir_of(home: Path) -> Path:
    return home / "models" / "trained"


TWO_PROCESS_TABLE = """
title: two processes
datasets:
  digits: {label: digits, overrides: [data=digits]}
models:  # the first run takes seconds: the process that starts second always finds runs left to claim
  - {label: MoB 5, overrides: [model=mixture_of_bernoullis, model.components=5, trainer.max_epochs=300]}
  - {label: independent Bernoulli, overrides: [model=independent_bernoulli, trainer.max_epochs=1]}
  - {label: MoB 3, overrides: [model=mixture_of_bernoullis, model.components=3, trainer.max_epochs=3]}
metrics: [nll]
scales:
  smoke: {seeds: [0, 1]}
"""


def test_two_processes_on_one_table_train_each_run_once(configs_copy, tmp_path):
    (configs_copy / "table" / "two.yaml").write_text(TWO_PROCESS_TABLE)
    home = tmp_path / "shared"
    env = {"env": dict(os.environ, GENBENCH_HOME=str(home), GENBENCH_CONFIGS=str(configs_copy), OMP_NUM_THREADS="1",
                       CI="1", WANDB_MODE="offline")}
    procs = [subprocess.Popen([sys.executable, "-m", "genbench.cli", "table", "two"], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **env) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trained = [line.split(": running")[0].split("] ")[1] for out in outs for line in out.splitlines()
               if line.endswith(": running")]
    assert sorted(trained) == sorted(set(trained)) and len(trained) == 6, trained  # 3 rows × 2 seeds, once each
    for out in outs:  # both renders are complete
        assert "6 finished of 6 planned runs" in out and "missing" not in out
    pids = {read_record(p)["pid"] for p in (home / "results" / "runs" / "two" / "smoke").glob("*.json")}
    assert len(pids) == 2, "both processes should have taken a share of the runs"
    assert not list((home / "results" / "runs" / "two" / "smoke").glob("*.lock"))


TINY = """
title: tiny
datasets:
  digits: {label: digits, overrides: [data=digits, data.variant=dynamic]}
models:
  - {label: MoB 3, overrides: [model=mixture_of_bernoullis, model.components=3, trainer.max_epochs=3]}
  - {label: independent Bernoulli, overrides: [model=independent_bernoulli, trainer.max_epochs=1]}
metrics: [nll]
scales:
  smoke: {seeds: [0]}
"""


@pytest.fixture
def tiny(configs_copy):
    (configs_copy / "table" / "tiny.yaml").write_text(TINY)
    return configs_copy / "table" / "tiny.yaml"


def test_a_truncated_checkpoint_is_set_aside_and_its_run_trains_again(tiny, capsys):
    first = pd.read_csv(tables.run_table("tiny", log=lambda *_: None)["csv"])
    final = next(models_dir("trained").glob(f"*/{FINAL_CHECKPOINT}"))
    final.write_bytes(final.read_bytes()[:200])  # cut short, as by a kill or a full disk
    for ckpt in models_dir("trained").glob(f"*/{FINAL_CHECKPOINT}"):
        if ckpt != final:
            ckpt.write_bytes(final.read_bytes())
    # a rerun that differs only in evaluation settings reuses the training: it meets the truncated file
    tiny.write_text(TINY.replace(
        "smoke: {seeds: [0]}", "smoke: {seeds: [0], overrides: [evaluation.likelihood.seed=1]}"))
    again = tables.run_table("tiny", log=lambda *_: None)
    frame = pd.read_csv(again["csv"])
    assert (frame["status"] == "1 finished").all(), frame["status"].tolist()
    assert frame["obtained"].tolist() == pytest.approx(first["obtained"].tolist())  # retrained: the same models
    err = capsys.readouterr().err
    assert err.count("is not a readable genbench checkpoint") == 2 and "Set aside" in err
    assert len(list(models_dir("trained").glob(f"*/{FINAL_CHECKPOINT}.corrupt"))) == 2


class Payload:
    """Unpickling this would create a file: weights_only loading must refuse it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize("content", ["truncated", "text", "foreign pickle"])
def test_evaluate_gives_one_clear_line_for_a_file_that_is_not_a_checkpoint(tmp_path, capsys, content):
    bad, witness = tmp_path / "model.ckpt", tmp_path / "code-ran"
    if content == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(1000)}, "genbench": {"config": {}}}, bad)
        bad.write_bytes(bad.read_bytes()[:300])
    elif content == "text":
        bad.write_text("not a checkpoint\n")
    else:
        torch.save({"state_dict": {}, "genbench": {"config": Payload(witness)}}, bad)
    assert main(["evaluate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a readable genbench checkpoint" in err and str(bad) in err
    assert "Traceback" not in err and not witness.exists()


def test_a_full_disk_keeps_the_previous_record_and_reports_both_outcomes(tiny, capsys):
    tables.run_table("tiny", log=lambda *_: None)
    path = results_dir("runs", "tiny", "smoke", "mob-3--digits--s0.json")
    before = path.read_text()
    tiny.write_text(TINY.replace("smoke: {seeds: [0]}", "smoke: {seeds: [0], overrides: [evaluation.likelihood.seed=2]}"))
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.symlink_to("/dev/full")  # the record's temporary file: every write to it fails with ENOSPC
    lines = []
    render = tables.run_table("tiny", log=lines.append)
    assert path.read_text() == before  # the previous record is intact
    assert not tmp.exists() and not tmp.is_symlink()  # no stray temporary file
    assert any("finished" in line and "No space left on device" in line for line in lines), lines
    assert "No space left on device" in capsys.readouterr().err
    frame = pd.read_csv(render["csv"])  # the table went on: the other row was written and both are shown
    assert set(frame["row"]) == {"MoB 3", "independent Bernoulli"}
    assert "No space left on device" in frame.loc[frame["row"] == "MoB 3", "status"].iloc[0]


WRONG_SHAPE = '''
import lightning as L
import torch


class WrongShape(L.LightningModule):
    """Forgets to sum its log-likelihood over dimensions."""

    def __init__(self, info):
        super().__init__()
        self.logit = torch.nn.Parameter(torch.zeros(info.dim))

    def log_prob(self, x):
        x = x.flatten(1)
        return -torch.nn.functional.binary_cross_entropy_with_logits(self.logit.expand_as(x), x, reduction="none")

    def training_step(self, x, _):
        return -self.log_prob(x).sum(1).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
'''


def test_compare_names_the_cause_of_a_wrong_shaped_model_and_of_nan_data(tiny, tmp_path, capsys):
    (tmp_path / "wrong.py").write_text(WRONG_SHAPE)
    code = main(["compare", f"model={tmp_path / 'wrong.py'}:WrongShape", "table=tiny", "trainer.max_epochs=1"])
    assert code == 2  # the compared model finished nothing: an error, with the cause in one paragraph
    err = capsys.readouterr().err
    assert "finished none of its 1 runs" in err and "WrongShape.log_prob(x) returned shape (2, 64)" in err
    status = pd.read_csv(results_dir("tables", f"tiny--compare-{tables.slug(str(tmp_path / 'wrong.py') + ':WrongShape')}",
                                     "smoke.csv"))
    line = status.loc[status["row"] == f"WrongShape (compared, {tmp_path / 'wrong.py'})", "status"].iloc[0]
    assert "1 failed" in line and "ModelContractError" in line and "WrongShape.log_prob(x) returned shape (2, 64)" in line
    [path] = results_dir("runs", "tiny", "smoke").glob("wrongshape-compared-*--digits--s0.json")
    assert "traceback" not in read_record(path)  # a user's mistake, explained in one paragraph

    nan_mixture = ["data=gmm2d", "data.mixture=custom", "+data.means=[[nan,0.0],[1.0,1.0]]", "+data.std=0.1",
                   "model=true_mixture"]
    record = train_and_evaluate(compose(nan_mixture), tmp_path / "nan.json", "nan")
    assert record["status"] == "failed" and "DataError" in record["error"] and "non-finite" in record["error"]
    assert "means" in record["error"] and "traceback" not in record


def test_a_bug_keeps_its_traceback_and_a_user_error_does_not(tmp_path):
    (tmp_path / "buggy.py").write_text(textwrap.dedent('''
        import lightning as L
        class Buggy(L.LightningModule):
            def __init__(self, info):
                super().__init__()
                raise KeyError("an internal lookup that went wrong")
    '''))
    bug = train_and_evaluate(compose(["model=custom", f"model.name={tmp_path / 'buggy.py'}:Buggy"]),
                             tmp_path / "bug.json", "bug")
    assert bug["status"] == "failed" and "KeyError" in bug["error"] and "raise KeyError" in bug["traceback"]
    user = train_and_evaluate(compose(["model=true_mixture"]), tmp_path / "user.json", "user")  # digits: no mixture
    assert user["status"] == "failed" and "supports continuous data" in user["error"] and "data=gmm2d" in user["error"]
    assert "traceback" not in user


FAMILIES = {
    "mixture of Bernoullis (EM)": ["model=mixture_of_bernoullis", "model.components=3", "trainer.max_epochs=2"],
    "RBM (PCD)": ["model=rbm", "model.hidden=8", "trainer.max_epochs=2"],
    "GAN": ["data=gmm2d", "data.train_size=2000", "model=gan", "trainer.max_epochs=1",
            "evaluation.modes.ali_samples=500", "evaluation.modes.veegan_samples=500"],
    "ALI": ["data=gmm2d", "data.train_size=2000", "model=ali", "trainer.max_epochs=1",
            "evaluation.modes.ali_samples=500", "evaluation.modes.veegan_samples=500"],
    "Real NVP": ["data=digits", "data.variant=integer", "model=realnvp", "model.blocks=1", "model.features=4",
                 "trainer.max_epochs=1"],
}


@pytest.mark.parametrize("family", FAMILIES)
def test_the_same_seed_gives_the_same_numbers(family, tmp_path, monkeypatch):
    runs = []
    for attempt in ("a", "b"):  # separate homes: the second run trains again instead of reusing the first
        monkeypatch.setenv("GENBENCH_HOME", str(tmp_path / attempt))
        runs.append(train_and_evaluate(compose([*FAMILIES[family], "seed=3"]), tmp_path / f"{attempt}.json", attempt))
    assert [r["status"] for r in runs] == ["finished", "finished"]
    assert values(runs[0]) == values(runs[1]) and values(runs[0])
