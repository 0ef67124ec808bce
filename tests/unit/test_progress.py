"""The progress display: where it shows, how often, and its ETA, on a fake clock."""

from __future__ import annotations

import io
import logging

import pytest
import torch

from genbench.core import progress as P
from genbench.data.base import DataInfo, DataSpace
from genbench.evaluation.ais import ais_log_z, raise_log_prob, schedule
from genbench.evaluation.likelihood import likelihood_records


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="genbench.core.progress")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "genbench.core.progress"]


@pytest.fixture(autouse=True)
def not_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)


def run(total, seconds_per_step, stream=None, clock=None):
    clock = clock or Clock()
    with P.Progress("stage", total, clock=clock, stream=stream or io.StringIO()) as bar:
        for _ in range(total):
            clock.t += seconds_per_step
            bar.update()
    return bar


def test_log_lines_every_tenth_with_an_eta(lines):
    bar = run(100, 1.0)
    assert bar.mode == "log"
    got = lines()
    assert len(got) == 11  # 10%, 20%, …, 100%, then "done"
    assert got[0] == "stage: 10% (10/100), 10s elapsed, ETA 1m30s"
    assert got[4] == "stage: 50% (50/100), 50s elapsed, ETA 50s"
    assert got[-1] == "stage: done, 100 in 1m40s"


def test_log_lines_every_30_seconds_in_a_slow_stage(lines):
    run(1000, 1.0)  # 10% takes 100 s: a line at every 30 s in between
    got = lines()
    assert got[:4] == [f"stage: {p}% ({n}/1000), {t}, ETA {e}" for p, n, t, e in [
        (3, 30, "30s elapsed", "16m10s"), (6, 60, "1m00s elapsed", "15m40s"),
        (9, 90, "1m30s elapsed", "15m10s"), (10, 100, "1m40s elapsed", "15m00s")]]
    assert len(got) == 41  # per tenth: at 30, 60, 90 and 100 s into it; then "done"


def test_quick_stages_stay_silent(lines):
    stream = io.StringIO()
    run(100, 0.01, stream)  # 1 s in all, under DELAY_S
    assert lines() == [] and stream.getvalue() == ""


def test_a_terminal_gets_a_bar_and_no_log_lines(lines):
    term = Terminal()
    bar = run(100, 1.0, term)
    assert bar.mode == "bar" and lines() == []
    out = term.getvalue()
    assert out.startswith("\rstage |") and "ETA 1m37s" in out and out.endswith("\n")
    assert "100% (100/100)" in out.splitlines()[-1]


def test_everything_off_under_ci(lines, monkeypatch):
    monkeypatch.setenv("CI", "true")
    term = Terminal()
    assert run(100, 1.0, term).mode == "off"
    assert run(100, 1.0).mode == "off"
    assert lines() == [] and term.getvalue() == ""


def test_without_logging_configured_the_lines_go_to_stderr(monkeypatch):
    monkeypatch.setattr(P.log, "hasHandlers", lambda: False)
    stream = io.StringIO()
    run(20, 1.0, stream)
    assert stream.getvalue().splitlines()[0] == "stage: 10% (2/20), 2s elapsed, ETA 18s"


def test_ais_raise_and_the_bound_estimator_report_their_stages(lines, monkeypatch):
    monkeypatch.setattr(P, "DELAY_S", -1.0)  # show even these quick stages
    g = torch.Generator().manual_seed(0)
    W, b, c = torch.randn(3, 5, generator=g), torch.zeros(5), torch.zeros(3)
    ais_log_z(W, b, c, None, schedule(50), n_runs=4, generator=g)
    raise_log_prob(torch.ones(6, 5), W, b, c, None, schedule(50), n_runs=2, max_chains=4)

    class Bounded(torch.nn.Module):
        def log_prob_bound(self, x, k):
            return -x.sum(1)

    info = DataInfo("t", "t/binary", DataSpace("binary", (5,)), {}, "x")
    likelihood_records(Bounded(), torch.ones(30, 5), info, settings={"bound_k": 5000}, batch_size=10)
    got = lines()
    assert "AIS log Z (50 temperatures, 4 runs): done, 49 in 0s" in got
    assert "RAISE (6 examples × 2 runs, 50 temperatures): done, 147 in 0s" in got  # 3 groups × 49 steps
    assert any(line.startswith("NLL (importance-weighted bound, k=5000) on 30 examples: 33% (10/30)") for line in got)


def test_watchers_get_every_closed_stage_with_the_sizes_its_total_spans():
    """The planner scales a stage by F^dims (genbench/bench/probe.py): AIS's log Z spans the temperatures, RAISE
    the examples × temperatures; a stage is reported once, to every watcher open when it closes."""
    g = torch.Generator().manual_seed(0)
    W, b, c = 0.1 * torch.randn(6, 8, generator=g), torch.zeros(8), torch.zeros(6)
    v = (torch.rand(5, 8, generator=g) < 0.5).float()
    with P.timed_stages() as outer:
        ais_log_z(W, b, c, betas=schedule(50), n_runs=4, generator=g)
        with P.timed_stages() as inner:
            raise_log_prob(v, W, b, c, betas=schedule(30), n_runs=3, generator=g)
    assert [(s.total, s.dims) for s in outer] == [(49, 1), (29, 2)]
    assert [(s.total, s.dims) for s in inner] == [(29, 2)]
    assert all(s.seconds >= 0 for s in outer)
    bar = P.Progress("x", 3, dims=0, stream=io.StringIO())
    with P.timed_stages() as after:
        bar.close()
        bar.close()  # closing twice reports once
    assert [(s.label, s.dims) for s in after] == [("x", 0)]
