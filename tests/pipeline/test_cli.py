"""The genbench command: its errors, train → evaluate round trip, W&B offline, data errors."""

from __future__ import annotations

import gzip
import json
import urllib.error

import pytest

import genbench.data.files as files
from genbench.cli import main
from genbench.core.paths import results_dir


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_unknown_model_lists_the_valid_choices(capsys):
    code, _, err = run(capsys, "train", "model=nope")
    assert code == 2 and "unknown model 'nope'" in err and "mixture_of_bernoullis" in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_key_lists_the_valid_keys(capsys):
    code, _, err = run(capsys, "train", "trainer.max_epoch=3")
    assert code == 2 and "unknown key 'trainer.max_epoch'" in err and "max_epochs" in err


def test_unknown_table_scale_and_command(capsys):
    code, _, err = run(capsys, "table", "nope")
    assert code == 2 and "gmm-baselines" in err
    code, _, err = run(capsys, "table", "gmm-baselines", "--scale", "huge")
    assert code == 2 and "smoke, cpu, paper" in err
    assert main(["frobnicate"]) == 2


def test_list(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for expected in ("true_mixture", "gmm2d", "binary-baselines", "sm08-mob-500", "mob_digits"):
        assert expected in out


def test_train_then_evaluate_the_checkpoint(capsys):
    code, out, _ = run(capsys, "train", "experiment=mob_digits", "trainer.max_epochs=3")
    assert code == 0 and "finished" in out
    [record_path] = results_dir("runs", "train").glob("mob10-digits--s0--*.json")
    record = json.loads(record_path.read_text())
    nll = next(r for r in record["results"] if r["metric"] == "nll")
    code, out, _ = run(capsys, "evaluate", record["checkpoint"], "--json")
    again = next(r for r in json.loads(out) if r["metric"] == "nll")
    assert code == 0 and again["value"] == pytest.approx(nll["value"]) and again["estimator"] == "exact"


def test_wandb_logging_runs_offline_and_is_recorded(capsys):
    code, _, _ = run(capsys, "train", "experiment=true_grid25", "logger=wandb", "data.train_size=1000")
    assert code == 0
    [record_path] = results_dir("runs", "train").glob("true-grid25--*.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "finished" and record["wandb_run_id"]
    assert any(results_dir("wandb").rglob(f"*{record['wandb_run_id']}*"))


def test_missing_mnist_offline_prints_the_clear_paragraph(capsys, tmp_path, monkeypatch):
    def offline(url, path, timeout=60):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(files, "download_file", offline)
    code, _, err = run(capsys, "train", "data=mnist", f"data.root={tmp_path / 'empty'}")
    assert code == 1
    assert "train-images-idx3-ubyte.gz" in err and "MNIST/raw" in err and "http" in err and "GENBENCH_DATA" in err
    assert "Traceback" not in err


def test_corrupt_mnist_names_the_file(capsys, tmp_path, monkeypatch):
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in files_of_mnist():
        with gzip.open(raw / name, "wb") as f:
            f.write(b"not mnist")
    code, _, err = run(capsys, "train", "data=mnist", f"data.root={tmp_path / 'root'}")
    assert code == 1 and "ChecksumError" in err and "-ubyte.gz" in err and "Traceback" not in err


def files_of_mnist():
    from genbench.data.mnist import MNIST_FILES

    return list(MNIST_FILES)


def test_sweep_definitions_compose():
    """Every W&B sweep's fixed overrides and first trial compose (tests/pipeline/test_sweeps.py checks the translation)."""
    from genbench.sweeps import check_composes, load_sweep, sweep_names

    assert "mob_digits" in sweep_names()
    for name in sweep_names():
        check_composes(load_sweep(name))


def test_sweep_runs_offline_without_a_wandb_key(capsys, configs_copy):
    """`genbench sweep` without a key runs the Optuna backend (WANDB_MODE=offline here); --backend wandb refuses."""
    (configs_copy / "sweep" / "two.yaml").write_text(
        "method: grid\nmetric: {name: test/nll, goal: minimize}\nparameters:\n  model.components: {values: [2, 5]}\n"
        'command: [genbench, train, experiment=mob_digits, trainer.max_epochs=2, logger=wandb, "${args_no_hyphens}"]\n')
    code, out, _ = run(capsys, "sweep", "two")
    assert code == 0 and "the grid is done (2 points)" in out and "best trial" in out
    code, _, err = run(capsys, "sweep", "two", "--backend", "wandb")
    assert code == 2 and "WANDB_API_KEY" in err
