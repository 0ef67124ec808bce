"""A table through forked local workers, submitit's local executor or a local Ray instance: two worker processes split
the runs (each trained once, by either worker) and the render equals a sequential run's, number for number."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import yaml

from genbench import tables
from genbench.cli import main
from genbench.core.errors import ConfigError
from genbench.launchers import launch_table

MOB = {"label": "MoB (K=10)", "overrides": ["model=mixture_of_bernoullis", "model.components=10", "trainer.max_epochs=5"]}
TABLE = {"title": "four runs", "metrics": ["nll"], "models": [MOB],
         "datasets": {"digits": {"label": "digits", "overrides": ["data=digits", "data.variant=dynamic"]}},
         "scales": {"smoke": {"seeds": [0, 1, 2, 3]}}}


@pytest.fixture
def four_runs(configs_copy):
    (configs_copy / "table" / "four.yaml").write_text(yaml.safe_dump(TABLE))
    return configs_copy


def numbers(render) -> pd.Series:
    frame = pd.read_csv(render["csv"])
    return frame[frame["metric"] == "nll"].set_index("row")[["obtained", "obtained_std", "n"]].iloc[0]


@pytest.mark.parametrize("launcher", ["local",  # submitit's interpreters and Ray's start-up: ~20 s and ~30 s
                                      pytest.param("submitit_local", marks=pytest.mark.slow),
                                      pytest.param("ray", marks=pytest.mark.slow)])
def test_two_workers_split_the_runs_and_render_the_sequential_table(launcher, four_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_HOME", str(tmp_path / "sequential"))
    sequential = numbers(tables.run_table("four", "smoke", log=lambda *_: None))
    home = tmp_path / "launched"
    monkeypatch.setenv("GENBENCH_HOME", str(home))
    logged = []
    launched = launch_table("four", "smoke", launcher, 2, log=logged.append)
    assert numbers(launched).tolist() == pytest.approx(sequential.tolist())
    records = [json.loads(p.read_text()) for p in (home / "results" / "runs" / "four" / "smoke").glob("*.json")]
    assert len(records) == 4 and all(r["status"] == "finished" for r in records)
    assert {r["pid"] for r in records} != {os.getpid()}  # trained by the workers, not the launching process
    assert len(list((home / "models" / "trained").iterdir())) == 4  # each run trained once
    assert any(f"2 {launcher} workers" in line for line in logged)
    assert main(["table", "four", "--launcher", launcher, "--workers", "2"]) == 0  # the CLI path: all done before


def test_launcher_choices_are_checked_before_anything_runs(four_runs, genbench_home):
    with pytest.raises(ConfigError, match="valid: local, submitit_local, slurm, ray"):
        launch_table("four", "smoke", "kubernetes", 2)
    with pytest.raises(ConfigError, match="slurm_partition"):
        launch_table("four", "smoke", "slurm", 2)


def test_forked_workers_that_die_are_reported_and_the_table_still_renders(four_runs, genbench_home, monkeypatch):
    monkeypatch.setattr("genbench.launchers.table_worker", lambda *args: os._exit(3))  # the forked child inherits it
    logged = []
    render = launch_table("four", "smoke", "local", 2, log=logged.append)
    assert sum("failed: exit code 3" in line for line in logged) == 2
    assert not list((genbench_home / "results" / "runs" / "four" / "smoke").glob("*.json"))
    assert render.paths["md"].exists() and "missing" in render.markdown  # rendered, the four runs shown as missing
