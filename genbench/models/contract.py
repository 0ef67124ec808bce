"""What a model may offer the evaluators, in one place.

A model is a ``LightningModule`` that trains itself (``training_step``, ``configure_optimizers``); everything else
is optional. Each capability below is a ``Protocol`` whose docstrings are the contract its evaluator relies on, and
one entry of :data:`CAPABILITIES` says which evaluator turns it into numbers and how one call on two examples is
checked. ``evaluate`` (which evaluators apply, the contract check), a run's pre-check (a model must offer something
that is scored), ``compare``, the conformance test and ``genbench list capabilities`` all read this table: a
capability added here is picked up by each of them. No torch here: the table is read without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol


class ExactLikelihood(Protocol):
    def log_prob(self, x):
        """log p(x) in nats, one number per example (shape [B]). On discrete data a density is scored on the
        dequantized x in pixel units, unless the class sets ``discrete_log_prob = True`` (a pmf on the integers)."""


class LikelihoodBound(Protocol):
    def log_prob_bound(self, x, k: int):
        """A stochastic lower bound on log p(x) in nats from ``k`` importance samples, shape [B]."""


class EnergyModel(Protocol):
    W: Any
    b: Any
    c: Any

    def free_energy(self, v, params=None):
        """F(v) of a Bernoulli–Bernoulli RBM with parameters ``W``, ``b``, ``c`` (or a draw ``params``), shape [B];
        log Z by the model's own ``log_partition_exact`` when ``exact_partition_feasible``, else by AIS."""


class Sampler(Protocol):
    def sample(self, n: int):
        """``n`` draws in the data space, shaped like the data ([n, *shape] or flat [n, D])."""


class Autoencoder(Protocol):
    def encode(self, x):
        """Codes z for data x (a draw from q(z | x) or its mean), first dimension B."""

    def decode(self, z):
        """Data-space reconstructions of codes z, shaped like the data."""


class PosteriorMean(Protocol):
    def posterior_mean(self, x):
        """E_q[z | x], shape [B, d]."""


class DecoderMean(Protocol):
    latent_dim: int

    def decode_mean(self, z):
        """The generator's output for z ~ N(0, I) in data units, not rounded, differentiable in z (GAN, ALI)."""


class DecoderLikelihood(Protocol):
    latent_dim: int

    def observation_log_prob(self, x, z):
        """log p(x | z) in nats, shape [B], differentiable in z (with ``observation_sample(z)`` for BDMC)."""


class FeatureExtractor(Protocol):
    def features(self, x):
        """A representation of x, shape [B, d], probed by a linear classifier."""


class Classifier(Protocol):
    def classify(self, x):
        """Class logits (or any scores whose argmax is the predicted class), shape [B, K]; a semi-supervised
        model's prediction for data-space x."""


def members(protocol: type) -> list[str]:
    """The methods and attributes a protocol asks for."""
    methods = [k for k, v in vars(protocol).items() if callable(v) and not k.startswith("_")]
    return methods + list(getattr(protocol, "__annotations__", {}))


def one_per_example(out, x, info) -> str | None:
    if tuple(out.shape) == (len(x),):
        return None
    return (f"returned shape {tuple(out.shape)} for a batch of {len(x)} examples of shape {tuple(x.shape[1:])}; it "
            f"must return one number per example, shape ({len(x)},) (e.g. sum the per-dimension terms over every "
            f"axis but the first)")


def shaped_like_data(out, x, info) -> str | None:
    if tuple(out.shape) in ((2, *info.shape), (2, info.dim)):
        return None
    return f"returned shape {tuple(out.shape)}; it must return 2 draws shaped like the data, {(2, *info.shape)} " \
           f"(or flat, {(2, info.dim)})"


def one_row_per_example(out, x, info) -> str | None:
    if out.ndim == 2 and out.shape[0] == len(x) and out.shape[1] == info.classes:
        return None
    return (f"returned shape {tuple(out.shape)} for a batch of {len(x)} examples; it must return one score per "
            f"class for each example, shape ({len(x)}, {info.classes})")


@dataclass(frozen=True)
class Capability:
    """One capability: the protocols a model may follow to offer it (any one), the evaluator that scores it, whether
    that evaluator runs on every run (``scored``) or on request, and how one call is checked (``call`` on two
    examples, its output judged by ``expect``: a problem, or None)."""

    name: str
    protocols: tuple[type, ...]
    evaluator: str
    scored: bool
    call: str | None = None
    probe: Callable[[Any, Any], Any] | None = None
    expect: Callable[[Any, Any, Any], str | None] | None = None

    @property
    def needs(self) -> str:
        """What a model defines to offer it: ``encode + decode``; alternatives joined by ``|``."""
        return " | ".join(" + ".join(members(p)) for p in self.protocols)


CAPABILITIES = (
    Capability("log_prob", (ExactLikelihood,), "exact test NLL in nats and bits/dim (evaluation.likelihood)", True,
               "log_prob(x)", lambda m, x: m.log_prob(x), one_per_example),
    Capability("free_energy", (EnergyModel,), "test NLL with log Z by enumeration or AIS, RAISE on request "
               "(evaluation.likelihood, evaluation.ais)", True,
               "free_energy(x)", lambda m, x: m.free_energy(x), one_per_example),
    Capability("log_prob_bound", (LikelihoodBound,), "the importance-weighted bound −L_k and the ELBO "
               "(evaluation.likelihood)", True,
               "log_prob_bound(x, 2)", lambda m, x: m.log_prob_bound(x, 2), one_per_example),
    Capability("sample", (Sampler,), "mode coverage on 2D mixtures, sample figures (evaluation.modes, .samples)",
               True, "sample(2)", lambda m, x: m.sample(2), shaped_like_data),
    Capability("posterior_mean", (PosteriorMean,), "active units (evaluation.likelihood)", False),
    Capability("inference", (Autoencoder,), "reconstructions and q(z) against the prior on 2D mixtures "
               "(evaluation.inference)", False),
    Capability("decoder", (DecoderMean, DecoderLikelihood), "AIS over the decoder with BDMC, on request "
               "(evaluation.decoder_ais)", False),
    Capability("features", (FeatureExtractor,), "an L2-SVM on the features, on request (evaluation.features)", False),
    Capability("classify", (Classifier,), "test error rate in % on labelled data (evaluation.classification)", True,
               "classify(x)", lambda m, x: m.classify(x), one_row_per_example),
)
"""Every capability, in the likelihood evaluator's order of preference for the first three."""

EVALUATORS = {c.name: c.evaluator for c in CAPABILITIES}
SCORED = tuple(c.name for c in CAPABILITIES if c.scored)
"""Capabilities an evaluator turns into a number on every run: a model must offer one of them."""


def follows(model, protocol: type) -> bool:
    """Whether ``model`` has every method (callable) and attribute the protocol asks for."""
    methods = {k for k, v in vars(protocol).items() if callable(v) and not k.startswith("_")}
    return all(callable(getattr(model, n, None)) if n in methods else hasattr(model, n) for n in members(protocol))


def offers(model, name: str) -> bool:
    capability = next(c for c in CAPABILITIES if c.name == name)
    return any(follows(model, p) for p in capability.protocols)


def capabilities(model) -> list[str]:
    """The capabilities a model offers, in :data:`CAPABILITIES` order."""
    return [c.name for c in CAPABILITIES if offers(model, c.name)]
