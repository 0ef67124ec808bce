"""One conformance test over every registered model (as zuko does over its flows)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from genbench.core.paths import configs_dir
from genbench.core.registry import resolve
from genbench.data import build_datamodule
from genbench.evaluation import check_capabilities
from genbench.models import MODELS, SCORED, build_model, capabilities
from genbench.models.contract import CAPABILITIES, EVALUATORS
from genbench.tables import compose

DATA_FOR_SPACE = {"binary": {"name": "digits", "variant": "dynamic"},
                  "continuous": {"name": "gmm2d", "mixture": "ring8", "train_size": 2000, "val_size": 0, "test_size": 500},
                  "discrete": {"name": "digits", "variant": "integer"}}


MODEL_CONFIGS = sorted(p.stem for p in (configs_dir() / "model").glob("*.yaml") if p.stem != "custom")
"""Every model a config names (``model=NAME``): the registry's, and any added by a config alone
(``name: module:Class``, docs/adding-a-model.md). The conformance test runs over all of them."""


def data_config(name: str, space: str) -> dict:
    """The test data of a space for a model config; a semi-supervised model gets 3 labels per class beside it."""
    cls = resolve("model", MODELS, compose([f"model={name}"])["model"]["name"])
    return {**DATA_FOR_SPACE[space], **({"labels_per_class": 3} if getattr(cls, "semi_supervised", False) else {})}


def model_and_data(name):
    config = compose([f"model={name}", *SMALL.get(name, [])])["model"]
    spaces = getattr(resolve("model", MODELS, config["name"]), "supported_spaces", ("binary",))
    dm = build_datamodule(data_config(name, spaces[0]))
    return build_model(config, dm.info), dm


def test_every_registered_model_has_a_config():
    assert set(MODELS) <= set(MODEL_CONFIGS)


SMALL = {"rbm": ["model.hidden=10"],  # small enough for exact likelihoods
         "nice": ["model.hidden=32", "model.layers=1"],
         "realnvp": ["model.features=4", "model.blocks=1"],
         **{name: ["model.decoder_hidden=[32,32]", "model.disc_hidden=[16,16]",
                   *([] if name == "gan" else ["model.encoder_hidden=[32]"]),
                   *(["model.gan_epochs=1"] if name.startswith("gan_") else [])]  # 1 GAN epoch, 1 encoder epoch
            for name in ("gan", "ali", "bigan", "gan_inverse_mapping", "gan_posthoc")},
         **{name: ["model.latent_dim=8", "model.generator_hidden=[32]", "model.disc_hidden=[32,16]",
                   "model.ema_rate=0.1", *(["model.encoder_hidden=[32]"] if name == "ali_ssl" else [])]
            for name in ("ssl_gan", "ali_ssl")},
         }


def log_p(model, x, info):
    """log p(x) per example through the likelihood evaluator's own estimator: exact for these sizes, or an
    importance-weighted bound whose samples come from the evaluator's seeded stream (so it repeats exactly)."""
    from genbench.evaluation.likelihood import ESTIMATORS, choose_estimator

    name = choose_estimator(model)
    prepared = ESTIMATORS[name][1](model, x, info, {})
    assert prepared.kind == "exact" or name == "importance-weighted bound", f"{name} is not exact here"
    return prepared.log_prob(x)


LIKELIHOOD = [name for name in SCORED if name not in ("sample", "classify")]  # those the likelihood evaluator uses


def draw(model, n, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.sample(n)


def assert_in_space(x, space):
    """Finite, and on the space's values: {0, 1} for binary, the integers 0..levels-1 for discrete."""
    assert torch.isfinite(x).all()
    if space.kind == "binary":
        assert set(x.unique().tolist()) <= {0.0, 1.0}
    elif space.kind == "discrete":
        assert torch.equal(x, x.round()) and x.min() >= 0 and x.max() <= space.levels - 1


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_model_conformance(name, tmp_path):
    """build → 2 epochs → samples in the data space → save/load; likelihood and encode/decode where the model has them."""
    torch.manual_seed(0)
    model, dm = model_and_data(name)
    info = dm.info
    caps = set(capabilities(model))
    assert "sample" in caps and caps & set(SCORED)
    has_likelihood = bool(caps & set(LIKELIHOOD))

    if getattr(model, "needs_training", True):
        L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False).fit(model, datamodule=dm)

    model.eval()
    x = dm.split("test")[:64].float()
    check_capabilities(model, x[:2], info)  # every capability it offers keeps its contract (one call each)
    s = draw(model, 16, seed=1)
    assert s.shape == (16, *info.shape)
    assert_in_space(s, info.space)
    if has_likelihood:
        with torch.no_grad():
            lp = log_p(model, x, info)
        assert lp.shape == (64,) and torch.isfinite(lp).all()
        if info.space.kind == "binary":
            assert (lp <= 0).all()  # a pmf
    if "inference" in caps:
        z = model.encode(x)
        assert z.shape[0] == 64 and torch.isfinite(z).all()
        recon = model.decode(z)
        assert recon.shape == x.shape and torch.isfinite(recon).all()

    # save/load round-trip: a fresh instance with the saved state samples (and scores) identically
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    fresh, _ = model_and_data(name)
    fresh.load_state_dict(torch.load(path))
    fresh.eval()
    assert torch.equal(draw(fresh, 16, seed=1), s)
    if not has_likelihood:
        return
    with torch.no_grad():
        assert torch.allclose(log_p(fresh, x, info), lp)

    # no train-time randomness in scoring: train and eval mode agree
    model.train()
    with torch.no_grad():
        assert torch.allclose(log_p(model, x, info), lp)


# -- every parameter trains -------------------------------------------------------------------------------------------

class GradientRecorder(L.Callback):
    """The optimized parameters, and those whose gradient was non-zero at some optimizer step (automatic or manual
    optimization alike: Lightning calls this hook on every step; a hand-written update such as the RBM's CD
    gradient counts, since it is written into ``.grad`` before the step)."""

    def __init__(self):
        self.optimized, self.nonzero = set(), set()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        for group in optimizer.param_groups:
            for p in group["params"]:
                self.optimized.add(id(p))
                if p.grad is not None and bool((p.grad != 0).any()):
                    self.nonzero.add(id(p))


def learned_state(model) -> dict[str, torch.Tensor]:
    """What training fits: the parameters, or, for a model that learns without any (EM writes the mixture of
    Bernoullis into buffers), its floating-point buffers."""
    params = dict(model.named_parameters())
    return params or {n: b for n, b in model.named_buffers() if b.is_floating_point()}


def declared_frozen(model, name: str) -> bool:
    return any(name == key or name.startswith(key + ".") for key in getattr(type(model), "frozen_parameters", {}))


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_training_moves_every_parameter(name):
    """A few steps (2 epochs × 3 batches: gan_posthoc's encoder trains in the second) move every parameter, unless
    the class declares it in ``frozen_parameters``; every optimized one also had a non-zero gradient at some step.

    Catches exact fixed points such as λ = 0 on a zero-initialized s/t output (Real NVP's couplings silently
    additive). Gradients are not required non-zero at the first step: a zero-initialized output layer (every flow
    coupling starts at the identity) gives the layers below it no gradient until that layer has moved once. The
    gradient check catches what movement alone would not, e.g. a parameter moved only by weight decay.
    """
    torch.manual_seed(0)
    model, dm = model_and_data(name)
    frozen = getattr(type(model), "frozen_parameters", {})
    assert all(isinstance(why, str) and why for why in frozen.values()), "frozen_parameters: name or prefix → reason"
    state = learned_state(model)
    stale = [key for key in frozen if not any(n == key or n.startswith(key + ".") for n in state)]
    assert not stale, f"frozen_parameters names nothing the model has: {stale}"
    if not getattr(model, "needs_training", True):
        saved = model.state_dict()  # buffers it derives from the data (the true mixture's) are not saved state
        assert not saved, f"{name} is never trained but has learned state: {sorted(saved)}"
        return
    assert state, f"{name} trains but has no parameters or buffers to learn"
    initial = {n: v.detach().clone() for n, v in state.items()}
    grads = GradientRecorder()
    trainer = L.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[grads])
    trainer.fit(model, datamodule=dm)
    stepped = {id(p) for opt in trainer.optimizers for group in opt.param_groups for p in group["params"]}
    assert grads.optimized == stepped, "the gradient hook did not see every optimizer step"

    checked = {n: v for n, v in learned_state(model).items() if not declared_frozen(model, n)}
    problems = {"never moved": [n for n, v in checked.items() if torch.equal(v.detach(), initial[n])],
                "zero gradient at every step": [n for n, v in checked.items()
                                                if id(v) in grads.optimized and id(v) not in grads.nonzero]}
    assert not any(problems.values()), f"{name}: {problems}"


def test_the_contract_is_one_table_that_every_reader_uses():
    """Each capability has an evaluator, the likelihood evaluator's estimators are the contract's scored
    likelihoods, and a model that follows a protocol is seen to offer it (and one that misses a member is not)."""
    from genbench.evaluation.likelihood import ESTIMATORS

    names = [c.name for c in CAPABILITIES]
    assert len(names) == len(set(names)) and set(EVALUATORS) == set(names)
    assert {"log_prob", "free_energy", "log_prob_bound", "sample"} <= set(SCORED)

    class Half:
        def encode(self, x):
            return x

    class Whole(Half):
        def decode(self, z):
            return z

    assert capabilities(Whole()) == ["inference"] and capabilities(Half()) == []
    assert len(ESTIMATORS) == 3 and all(applies(Whole()) is False for applies, _ in ESTIMATORS.values())

