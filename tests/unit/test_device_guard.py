"""Device-clean, proved without a GPU: every model trains, samples and is scored by every evaluator it offers on a
simulated non-CPU device (genbench.core.device_guard), with the same numbers as on the CPU."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

import genbench
from genbench.core.device_guard import SIMULATED, DeviceMixError, simulated_device
from genbench.core.devices import module_device
from genbench.core.errors import ConfigError, PrecisionError
from genbench.core.registry import resolve
from genbench.data import build_datamodule
from genbench.evaluation import evaluate
from genbench.evaluation.likelihood import likelihood_records
from genbench.models import MODELS, build_model, capabilities
from genbench.runs.execute import train_and_evaluate
from genbench.runs.identity import NULL_OPTIONS, config_hash, training_hash
from genbench.tables import compose
from test_conformance import DATA_FOR_SPACE, MODEL_CONFIGS, SMALL, data_config

PACKAGE = Path(genbench.__file__).parent
HOT = (PACKAGE / "models", PACKAGE / "nn")  # model code: no CPU tensor may be made there while the guard checks

EVERY_EVALUATOR = {
    "likelihood": {"bound_k": 4, "ais": {"betas": 20, "runs": 4, "seed": 0}, "validate_ais": True,
                   "raise": {"runs": 2, "examples": 8, "betas": 10}},
    "modes": {"ali_samples": 200, "veegan_samples": 100},
    "inference": {"n": 200, "mmd_points": 50},
    "decoder_ais": {"temperatures": 5, "chains": 2, "leapfrog_steps": 2, "examples": 8, "bdmc_examples": 4,
                    "observation_variance": 0.1, "iwae_k": 4},
    "features": {"labelled": 20, "validation": 50, "repeats": 2, "log_c": (-1.0, 1.0, 2), "max_iter": 200},
}
"""Small settings under which evaluate() runs every evaluator that applies to a model."""

EVIDENCE = {"log_prob": "nll", "free_energy": "nll", "log_prob_bound": "nll_elbo", "posterior_mean": "active_units",
            "decoder": "nll_ais", "features": "error_pct", "classify": "test_errors"}
"""The record each capability's evaluator writes (on mixtures also: sample → modes_ali, inference →
reconstruction_error; features need labelled data)."""

COMBINATIONS = [(name, space, ()) for name in MODEL_CONFIGS
                for space in getattr(resolve("model", MODELS, compose([f"model={name}"])["model"]["name"]),
                                     "supported_spaces", ("binary",))]
COMBINATIONS += [("ali", "binary", ("model.arch=dcgan", "model.encoder=gaussian")),  # conv: features apply
                 ("rbm", "binary", ("noise",))]  # "expected AIS": the likelihood averaged over noisy parameters
"""Every model a config names on every data space it supports, ALI's conv encoder (the features evaluator), and the
RBM scored under parameter noise."""

NOISE = {"parameter_noise": {"sigma_w": 0.05, "sigma_b": 0.05, "draws": 2, "seed": 0}}


def settings_for(model, info) -> dict:
    """Every evaluator, less decoder AIS on discrete data for a decoder without its own p(x | z) (refused there)."""
    own = callable(getattr(model, "observation_log_prob", None))
    return EVERY_EVALUATOR if info.space.kind != "discrete" or own else {**EVERY_EVALUATOR, "decoder_ais": None}


ANNEALED = ("log_z_ais", "nll_raise")
"""AIS and RAISE draw their CPU uniforms by a faster generator than on other devices (genbench.core.uniforms):
the same estimator, other draws, so they agree within their standard errors, not exactly."""


def assert_same_numbers(on_device, on_cpu):
    """Every record equal on both devices, except the annealed estimates: within 6 combined standard errors (their
    differences with exact values, log_z_ais_error and nll_raise_gap, follow)."""
    cpu = {(r.metric, r.settings.get("sample_set")): r for r in on_cpu}
    assert set(cpu) == {(r.metric, r.settings.get("sample_set")) for r in on_device}
    for r in on_device:
        c = cpu[(r.metric, r.settings.get("sample_set"))]
        if r.metric in ANNEALED:
            assert abs(r.value - c.value) <= 6 * (r.std_error ** 2 + c.std_error ** 2) ** 0.5, r.metric
        elif not r.metric.startswith(ANNEALED):
            assert r.value == pytest.approx(c.value, rel=1e-6, nan_ok=True), r.metric


def features_apply(model, x) -> bool:
    """Whether the model's features are defined for its architecture (ALI's are for conv encoders only)."""
    try:
        model.features(x[:2].float())
        return True
    except ConfigError:
        return False


@pytest.mark.parametrize("name,space,overrides", COMBINATIONS,
                         ids=[f"{n}-{s}{'-' + o[-1].split('=')[-1] if o else ''}" for n, s, o in COMBINATIONS])
def test_every_model_is_device_clean(name, space, overrides, tmp_path):
    """Training (2 epochs × 2 batches through the real Trainer), sampling, figures and every evaluator it offers run
    on the simulated device with no CPU tensor mixed in or made in model code; evaluation really runs there; and the
    same weights score the same numbers on the CPU."""
    torch.manual_seed(0)
    dm = build_datamodule(data_config(name, space))
    noise = "noise" in overrides
    overrides = [o for o in overrides if o != "noise"]
    model = build_model(compose([f"model={name}", *SMALL.get(name, []), *overrides])["model"], dm.info)
    settings = settings_for(model, dm.info)
    if noise:
        settings = {**settings, "likelihood": {**settings["likelihood"], **NOISE}}
    if "features" in capabilities(model) and not features_apply(model, dm.split("test")):
        settings = {**settings, "features": None}
    with simulated_device(hot=HOT) as guard:
        guard.checking = True
        if getattr(model, "needs_training", True):
            L.Trainer(accelerator="simulated", strategy="simulated", max_epochs=2, limit_train_batches=2,
                      limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False).fit(model, datamodule=dm)
        model.to(SIMULATED)
        before = guard.ops_on_device
        on_device, figures = evaluate(model, dm, settings, figure_dir=tmp_path)  # the sample figures too
        assert guard.ops_on_device > before and module_device(model) == SIMULATED and figures
        model.to("cpu")
    assert not guard.violations
    on_cpu, _ = evaluate(model, dm, settings)
    assert_same_numbers(on_device, on_cpu)

    offered = set(capabilities(model)) - ({"decoder"} if not settings["decoder_ais"] else set()) - (
        {"features"} if dm.labels("test") is None or not settings["features"] else set())  # features need labels
    expected = {EVIDENCE[c] for c in offered if c in EVIDENCE}
    if dm.info.mixture is not None:
        expected |= {"modes_ali"} | ({"reconstruction_error"} if "inference" in offered else set())
    assert expected <= {r.metric for r in on_device}, f"evaluators that did not run: {expected - {r.metric for r in on_device}}"


class Toy(L.LightningModule):
    """A one-layer model whose training step can carry a planted device bug."""

    def __init__(self, bug: str | None = None):
        super().__init__()
        self.layer, self.bug = torch.nn.Linear(4, 1), bug

    def training_step(self, x, i):
        if self.bug == "mixed":
            x = x + torch.randn(x.shape)  # planted: drawn on the CPU
        elif self.bug == "copied":
            x = x + torch.randn(x.shape).to(self.device)  # planted: drawn on the CPU, copied at every step
        return self.layer(x).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit_toy(bug, hot=True):
    data = torch.utils.data.DataLoader(torch.randn(8, 4), batch_size=4)
    model = Toy(bug)
    with simulated_device(hot=(Path(__file__),) if hot else ()) as guard:
        guard.checking = True
        L.Trainer(accelerator="simulated", strategy="simulated", max_epochs=1, logger=False,
                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False).fit(model, data)
    return model, guard


@pytest.mark.parametrize("bug,hot,what", [("mixed", False, "aten.add.Tensor mixes a meta tensor with a CPU tensor"),
                                          ("mixed", True, "aten.randn.default creates a CPU tensor"),
                                          ("copied", True, "aten.randn.default creates a CPU tensor")])
def test_the_guard_catches_a_planted_cpu_tensor(bug, hot, what):
    """A CPU tensor mixed into a device computation fails as on a GPU; in model code (``hot``) the guard fails
    earlier, where the CPU tensor is made, which also catches one copied to the device at every step (a GPU
    accepts that, slowly). Either way the message names this file and the planted line."""
    with pytest.raises(DeviceMixError, match=what) as caught:
        fit_toy(bug, hot)
    assert f"{Path(__file__)}:" in str(caught.value) and "(training_step)" in str(caught.value)


def test_a_copy_outside_model_code_is_allowed():
    """Outside the hot path a copy to the device is what a GPU accepts (a batch moved by the Trainer)."""
    _, guard = fit_toy("copied", hot=False)
    assert not guard.violations


def test_a_clean_toy_trains_on_the_simulated_device():
    """Without the bug the same toy trains there, through the real Trainer: its weights move and stay on the device
    until Lightning's teardown."""
    torch.manual_seed(0)
    initial = Toy().layer.weight.detach().clone()
    torch.manual_seed(0)
    model, guard = fit_toy(None)
    assert guard.ops_on_device > 0 and not guard.violations
    assert not torch.equal(model.layer.weight.detach(), initial)


def test_a_run_evaluates_on_its_training_device():
    """A run trains on the simulated device and is evaluated there (Lightning's teardown moves the model back to the
    CPU: the run moves it back), fresh or from its kept training; the record says where each stage ran."""
    config = compose(["model=vae", "model.hidden=[[16]]", "model.latent=[4]", "trainer.max_epochs=1",
                      "+trainer.limit_train_batches=2", "evaluation.likelihood.bound_k=4"])
    config["trainer"].update(accelerator="simulated", strategy="simulated")
    home = Path(genbench.core.paths.results_dir("runs", "device-check"))
    with simulated_device(hot=HOT) as guard:
        fresh = train_and_evaluate(config, home / "fresh.json", "fresh")
        config["evaluation"]["likelihood"]["bound_k"] = 8
        reused = train_and_evaluate(config, home / "reused.json", "reused")
    assert not guard.violations, guard.violations
    for record in (fresh, reused):
        assert record["status"] == "finished", record.get("error")
        assert record["stages"]["train"]["device"] == "meta" and record["stages"]["evaluate"]["device"] == "meta"
    assert reused["reused_training"] and fresh["stages"]["train"]["precision"] == "32-true"
    assert "cuda_version" in fresh["machine"]


def test_evaluations_refuse_half_precision():
    """Likelihoods and bounds run in float32 or float64: a half-precision model, or one scored under autocast, is
    refused with the reason, not scored with nats lost to rounding."""
    dm = build_datamodule(DATA_FOR_SPACE["binary"])
    model = build_model(compose(["model=vae", "model.hidden=16", "model.latent=4"])["model"], dm.info)
    x = dm.split("test")[:16]
    likelihood_records(model, x, dm.info, settings={"bound_k": 2})  # float32: scored
    with pytest.raises(PrecisionError, match="bfloat16"):
        likelihood_records(model.to(torch.bfloat16), x, dm.info, settings={"bound_k": 2})
    with pytest.raises(PrecisionError, match="autocast"), torch.autocast("cpu", dtype=torch.bfloat16):
        likelihood_records(model.float(), x, dm.info, settings={"bound_k": 2})


def test_precision_options_left_null_keep_the_hashes_of_earlier_trainings():
    """trainer.precision and trainer.deterministic came after trainings were kept: null (the default) leaves a
    config's hashes as they were without them, so kept trainings and records stay current; a value is another run."""
    config = compose([])
    assert config["trainer"]["precision"] is None and config["trainer"]["deterministic"] is None
    before = {**config, "trainer": {k: v for k, v in config["trainer"].items() if k not in NULL_OPTIONS}}
    assert training_hash(config) == training_hash(before) and config_hash(config) == config_hash(before)
    mixed = {**config, "trainer": {**config["trainer"], "precision": "bf16-mixed"}}
    assert training_hash(mixed) != training_hash(config) and config_hash(mixed) != config_hash(config)
