"""``genbench table NAME --plan``: runs probed once per distinct cost, shared trainings and done runs cost nothing,
nothing is written, and the shrunk evaluation cuts every counted size by one factor. (How close a plan comes to
the actual cost is measured in ``make bench``, not here: no timed tests.)"""

from __future__ import annotations

import json

import pytest
import yaml

from genbench.bench.plan import TablePlan, RunCost, cost_key, plan_table
from genbench.bench.probe import shrink_factor, shrunk_settings
from genbench.cli import main
from genbench.core.paths import configs_dir
from genbench.tables.runner import run_table

RBM = ["model=rbm", "model.hidden=25", "trainer.max_epochs=2", "evaluation.likelihood.ais.betas=300",
       "evaluation.likelihood.ais.runs=10"]
TABLE = {
    "title": "plan test", "datasets": {"digits": {"label": "digits", "overrides": ["data=digits"]}},
    "models": [{"label": "rbm", "overrides": RBM},
               {"label": "rbm noisy", "overrides": [*RBM, "evaluation.likelihood.parameter_noise.sigma_w=0.1",
                                                    "evaluation.likelihood.parameter_noise.draws=2"]},
               {"label": "rbm lr", "overrides": [*RBM, "model.lr=0.0123"]}],
    "metrics": ["nll"], "scales": {"smoke": {"seeds": [0, 1]}},
}


@pytest.fixture
def table(configs_copy):
    (configs_copy / "table" / "plan-test.yaml").write_text(yaml.safe_dump(TABLE, allow_unicode=True))
    return "plan-test"


def files_under(home):
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())


def test_plan_probes_each_distinct_cost_once_shares_trainings_and_writes_nothing(table, genbench_home):
    said = []
    p = plan_table(table, "smoke", log=said.append)
    assert files_under(genbench_home) == []  # a plan trains nothing and keeps nothing
    # 6 runs; one training probe (seeds and a learning rate do not change the arithmetic), two evaluations
    assert len(p.runs) == 6
    assert sum("probing the training" in s for s in said) == 1
    assert sum("probing the evaluation" in s for s in said) == 2
    by_id = {r.run_id: r for r in p.runs}
    shared = by_id["rbm-noisy--digits--s0"]
    assert shared.shares_with == "rbm--digits--s0" and shared.train_s == 0 and shared.eval_s > 0
    own = by_id["rbm-lr--digits--s0"]  # another learning rate: its own training, the same probe
    assert own.shares_with is None and own.train_s == by_id["rbm--digits--s0"].train_s > 0
    assert all(r.status == "to run" and r.device == "cpu" and (r.peak_mib is None or r.peak_mib > 0) for r in p.runs)
    assert p.total_s == pytest.approx(sum(r.train_s + r.eval_s for r in p.runs))


def test_done_runs_and_kept_trainings_cost_nothing(table):
    run_table(table, "smoke", seeds=[0], rows="rbm noisy", log=lambda *_: None)  # trains rbm s0's training too
    p = plan_table(table, "smoke", log=lambda *_: None)
    by_id = {r.run_id: r for r in p.runs}
    assert by_id["rbm-noisy--digits--s0"].status == "done" and by_id["rbm-noisy--digits--s0"].seconds == 0
    kept = by_id["rbm--digits--s0"]  # its training was kept by the noisy row's run: only its evaluation is left
    assert kept.status == "training kept" and kept.train_s == 0 and kept.eval_s > 0
    assert by_id["rbm--digits--s1"].status == "to run" and by_id["rbm--digits--s1"].train_s > 0
    copy = configs_dir() / "table" / "plan-test-copy.yaml"  # another table with the same runs: copied when run
    copy.write_text((configs_dir() / "table" / "plan-test.yaml").read_text())
    again = {r.run_id: r for r in plan_table("plan-test-copy", "smoke", log=lambda *_: None).runs}
    assert again["rbm-noisy--digits--s0"].status == "done" and again["rbm-noisy--digits--s1"].status == "to run"


def test_makespan_keeps_a_training_and_its_evaluations_on_one_worker():
    runs = [RunCost("a", "t1", "to run", train_s=10, eval_s=1), RunCost("b", "t1", "to run", eval_s=1),
            RunCost("c", "t2", "to run", train_s=6, eval_s=1), RunCost("d", "t3", "to run", train_s=5, eval_s=0)]
    p = TablePlan("x", "smoke", "cpu", 1, runs)
    assert p.total_s == 24
    assert p.makespan(1) == 24 and p.makespan(2) == 12 and p.makespan(8) == 12  # the 12-s job cannot be split


def test_cost_key_keeps_switches_and_shapes_but_not_float_values():
    assert cost_key({"lr": 0.1, "hidden": 500}) == cost_key({"lr": 0.001, "hidden": 500})
    assert cost_key({"sigma": 0.0}) != cost_key({"sigma": 0.1})
    assert cost_key({"hidden": [500, 500]}) != cost_key({"hidden": [500]})


def test_shrunk_evaluation_cuts_every_counted_size_by_one_factor():
    settings = {"likelihood": {"ais": {"betas": "sm2008", "runs": 100}, "raise": {"runs": 5, "examples": 1000},
                               "bound_k": 5000},
                "decoder_ais": {"temperatures": 10_000, "examples": 1000, "bdmc_examples": 0, "chains": 16}}
    s = shrunk_settings(settings, factor=100, test=10_000)
    assert s["likelihood"]["ais"] == {"betas": 146, "runs": 100}  # 14,503 temperatures: 14,502 steps / 100 + 1
    assert s["likelihood"]["raise"] == {"runs": 5, "examples": 10} and s["likelihood"]["bound_k"] == 5000
    assert s["decoder_ais"] == {"temperatures": 101, "examples": 10, "bdmc_examples": 0, "chains": 16}
    assert settings["likelihood"]["ais"]["betas"] == "sm2008"  # the run's own settings are left as they were
    assert shrunk_settings(settings, 10, test=500)["likelihood"]["raise"]["examples"] == 50  # capped by the test split
    assert shrink_factor(settings, 10_000, 100) == 100  # the test split to 100 examples
    settings["likelihood"]["raise"]["examples"] = 40  # a size below the cut lowers the factor: none is cut to 0
    assert shrink_factor(settings, 10_000, 100) == 40
    settings["likelihood"]["raise"]["runs"] = 0  # RAISE off: its sizes count for nothing
    assert shrink_factor(settings, 10_000, 100) == 100 and shrink_factor(settings, 50, 100) == 1
    simulated = {"decoder_ais": {"temperatures": 1001, "examples": 1000, "bdmc_examples": 1000}}
    assert shrunk_settings(simulated, 5, test=100)["decoder_ais"]["bdmc_examples"] == 200  # simulated: not capped


def test_cli_plan_prints_each_run_and_the_totals(table, capsys, genbench_home):
    assert main(["table", table, "--scale", "smoke", "--plan", "--workers", "2", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "Plan of plan-test at smoke scale: 3 runs" in out
    assert "rbm-noisy--digits--s1" in out and "rbm--digits--s0" not in out
    assert "in one process;" in out and "on 2 local workers" in out
    assert files_under(genbench_home) == []
    assert main(["table", table, "--plan", "--rows", "nothing like it"]) == 2  # a selection of no run is a mistake


def test_a_probe_counts_the_step_s_products_and_the_gpu_estimate_follows_them(table):
    from genbench.bench.probe import gpu_step_seconds, probe_training
    from genbench.runs.config import compose

    probe, model, _ = probe_training(compose([*RBM, "data=digits"]))
    limited, _, _ = probe_training(compose([*RBM, "data=digits", "+trainer.limit_train_batches=3"]))
    assert limited.steps_per_epoch == 3 and probe.steps_per_epoch > 3  # the run's own limit is what it runs
    assert probe.periodic_every == 0 and probe.periodic_s == 0
    flow, _, _ = probe_training(compose(["model=realnvp", "data=gmm2d", "trainer.max_epochs=4",
                                         "evaluation.every_n_epochs=2"]))
    assert flow.periodic_every == 2 and flow.periodic_s > 0  # two validation NLLs in its four epochs
    batch, visible, hidden = 100, 64, 25
    assert probe.flops_per_step >= 3 * 2 * batch * visible * hidden  # positive phase, a Gibbs step, the gradient
    assert probe.ops_per_step > 10 and probe.steps == 2 * -(-model_train_size() // batch)
    assert gpu_step_seconds(10**12, 1) == pytest.approx(1 / (67 * 0.3))  # compute-bound at 30% of 67 TFLOP/s
    assert gpu_step_seconds(1, 1000) == pytest.approx(5e-3)  # launch-bound: 1,000 kernels at 5 µs
    faster = probe.projected(probe.seconds_per_step / 10, speedup=10)  # steps and validation 10× faster
    assert faster < probe.seconds and probe.projected(probe.seconds_per_step) == probe.seconds


def model_train_size() -> int:
    from genbench.data import build_datamodule
    from genbench.runs.config import compose

    return build_datamodule(compose(["data=digits"])["data"]).info.sizes["train"]


def test_paper_costs_are_computed_and_written(tmp_path):
    from genbench.bench.paper_costs import main as paper_costs

    assert paper_costs(["--tables", "ali-mode-coverage", "--workers", "2", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "paper-costs.md").read_text()
    assert "| ali-mode-coverage | 20 | 20 |" in text and "**estimate**" in text
    costs = json.loads((tmp_path / "paper-costs.json").read_text())["tables"][0]
    assert costs["cpu_wall_s"] < costs["cpu_s"] and costs["gpu_s"] > 0


def test_a_shrunk_evaluation_is_scaled_up_stage_by_stage():
    """F^dims for each stage that spans the cut sizes, the rest (checks, mode counts) as measured."""
    from genbench.bench.probe import scaled_up
    from genbench.core.progress import Stage

    stages = [Stage("scores", 100, 1, 2.0), Stage("RAISE", 50, 2, 0.5), Stage("draws", 5, 0, 1.0)]
    assert scaled_up(10.0, stages, 10.0) == pytest.approx(6.5 + 2.0 * 10 + 0.5 * 100 + 1.0)
    assert scaled_up(10.0, stages, 1.0) == 10.0  # nothing cut: as measured
