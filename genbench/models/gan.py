"""Generative adversarial networks (Goodfellow et al. 2014; Dumoulin 2018 §1.3), and what ALI shares with them.

A discriminator D outputs a logit l, D = σ(l), with real data labelled 1 (thesis Eq. 1.20). Every loss is
written on logits with softplus, log σ(l) = −softplus(−l) and log(1 − σ(l)) = −softplus(l), so no
probability is ever rounded to 0 or 1:

* V(D, G) = E_q[log D(x)] + E_p[log(1 − D(G(z)))] (Eq. 1.21) = −L_d;
* L_d = mean softplus(−l_real) + mean softplus(l_fake) (:func:`discriminator_loss`);
* generator, ``non_saturating`` (Eq. 1.23, default): maximize E_p[log D(G(z))], i.e. minimize
  mean softplus(−l_fake); ``minimax``: minimize V's generator term, mean −softplus(l_fake)
  (:func:`generator_loss`; ALI adds the encoder pairs' term, Eq. 5.4 and Algorithm 1).

Updates (``updates``): ``simultaneous``, as the ALI code (one forward pass, both players' gradients taken
from it, then both Adam steps); or ``alternating``: a discriminator step on every batch (generator
outputs detached), and a generator step with a fresh z after every ``d_steps``-th one.

Data spaces. Continuous data is modelled as is (linear decoder output). Discrete data with L levels
(binary: L = 2) is mapped x ↦ x/(L−1) onto the decoder's output range ([−1, 1] under tanh, [0, 1] under
sigmoid), and :meth:`Adversarial.sample` maps back and rounds to the nearest level, so samples are
integers in [0, L). GANs have no likelihood: there is no ``log_prob``.
"""

from __future__ import annotations

from typing import Sequence

import lightning as L
import torch
import torch.nn.functional as F

from ..core.bernoulli import base_rates
from ..core.distributed import average_across_ranks, own_gradient_sync
from ..core.errors import ConfigError
from ..data.base import DataInfo, DataSpace
from ..nn.adversarial import ALI_TABLES, build_networks, output_activation
from ..nn.blocks import init_normal_

GENERATOR_LOSSES = ("non_saturating", "minimax")
UPDATES = ("simultaneous", "alternating")


# -- losses ------------------------------------------------------------------------------------------------------------

def discriminator_loss(l_real: torch.Tensor, l_fake: torch.Tensor) -> torch.Tensor:
    """L_d = −E[log D(real)] − E[log(1 − D(fake))] on logits (Algorithm 1, step 4)."""
    return F.softplus(-l_real).mean() + F.softplus(l_fake).mean()


def value(l_real: torch.Tensor, l_fake: torch.Tensor) -> torch.Tensor:
    """V(D, G) = E[log D(real)] + E[log(1 − D(fake))] (Eq. 1.21 / 5.1); −log 4 when D ≡ ½."""
    return -discriminator_loss(l_real, l_fake)


def generator_loss(l_fake: torch.Tensor, l_real: torch.Tensor | None = None,
                   kind: str = "non_saturating") -> torch.Tensor:
    """The generator's loss; ``l_real`` is given when the "real" side also depends on the generator (ALI's encoder).

    ``non_saturating``: −E[log D(fake)] [− E[log(1 − D(real))]] (Eq. 1.23; ALI's L_g, Algorithm 1 step 5, Eq. 5.4).
    ``minimax``: E[log(1 − D(fake))] [+ E[log D(real)]], the generator's terms of V.
    """
    if kind == "non_saturating":
        loss = F.softplus(-l_fake).mean()
        return loss if l_real is None else loss + F.softplus(l_real).mean()
    if kind == "minimax":
        loss = -F.softplus(l_fake).mean()
        return loss if l_real is None else loss - F.softplus(-l_real).mean()
    raise ConfigError(f"unknown generator_loss {kind!r}; valid: {', '.join(GENERATOR_LOSSES)}")


# -- data space ----------------------------------------------------------------------------------------------------------

class DataScale:
    """Data space ↔ model space: identity on continuous data; x/(L−1) onto [lo, hi] for L levels (and back, rounded)."""

    def __init__(self, space: DataSpace, out_act: str):
        self.continuous = space.kind == "continuous"
        self.levels = space.levels or 2
        self.lo, self.hi = (0.0, 1.0) if out_act == "sigmoid" else (-1.0, 1.0)

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return x if self.continuous else self.lo + (self.hi - self.lo) * x / (self.levels - 1)

    def to_mean(self, y: torch.Tensor) -> torch.Tensor:
        """Model space → data units, not rounded (differentiable; on binary data: the Bernoulli means in [0, 1])."""
        return y if self.continuous else (y - self.lo) / (self.hi - self.lo) * (self.levels - 1)

    def to_data(self, y: torch.Tensor) -> torch.Tensor:
        if self.continuous:
            return y
        return torch.round(self.to_mean(y)).clamp_(0, self.levels - 1)


def in_chunks(fn, x: torch.Tensor, size: int) -> torch.Tensor:
    """fn over ``x`` in chunks of ``size`` rows (bounded memory for 10,000-sample evaluations on images)."""
    return torch.cat([fn(part) for part in x.split(size)]) if x.shape[0] > size else fn(x)


# -- the shared model -----------------------------------------------------------------------------------------------

class Adversarial(L.LightningModule):
    """Decoder G_x, optional encoder G_z, discriminator D, the prior N(0, I), and the two-player training loop.

    Subclasses say what D compares through :meth:`pairs`: ((x_real, z_real), (x_fake, z_fake)), z None for a GAN.
    """

    supported_spaces = ("continuous", "discrete", "binary")
    sample_chunk = 1000

    def __init__(self, info: DataInfo, *, encoder: str | None, joint: bool, arch: str, latent_dim: int,
                 decoder_hidden: Sequence[int], encoder_hidden: Sequence[int], disc_hidden: Sequence[int],
                 maxout_pieces: int, channels: int, generator_loss: str, updates: str, d_steps: int,
                 lr: float, beta1: float, beta2: float, eps: float, init_std: float):
        super().__init__()
        if generator_loss not in GENERATOR_LOSSES:
            raise ConfigError(f"unknown generator_loss {generator_loss!r}; valid: {', '.join(GENERATOR_LOSSES)}")
        if updates not in UPDATES:
            raise ConfigError(f"unknown updates {updates!r}; valid: {', '.join(UPDATES)}")
        if d_steps < 1:
            raise ConfigError(f"d_steps must be >= 1, got {d_steps}")
        self.automatic_optimization = False
        self.joint, self.shape, self.latent_dim = joint, tuple(info.shape), latent_dim
        self.generator_loss_kind, self.updates, self.d_steps = generator_loss, updates, d_steps
        self.lr, self.betas, self.eps = lr, (beta1, beta2), eps
        continuous = info.space.kind == "continuous"
        self.scale = DataScale(info.space, output_activation(arch, continuous))
        self.decoder, self.encoder, self.discriminator = build_networks(
            arch, info.shape, continuous, latent_dim, encoder, joint, decoder_hidden=decoder_hidden,
            encoder_hidden=encoder_hidden, disc_hidden=disc_hidden, maxout_pieces=maxout_pieces, channels=channels)
        for net in (self.decoder, self.encoder, self.discriminator):
            if net is not None:
                init_normal_(net, init_std)
        if arch in ALI_TABLES and info.train_mean is not None:
            self._init_output_bias(info.train_mean)

    @torch.no_grad()
    def _init_output_bias(self, train_mean: torch.Tensor) -> None:
        """The ALI code's decoder output bias: the log-odds of the training pixel means (in the sigmoid's [0, 1]),
        i.e. the decoder starts at the base-rate model."""
        p = base_rates(self.scale.to_model(train_mean.reshape(self.shape)))
        self.decoder.net[-1][1].bias.copy_(torch.logit(p))

    # -- what subclasses define ----------------------------------------------------------------------------------------
    def pairs(self, x: torch.Tensor, z: torch.Tensor):
        """((x_real, z_real), (x_fake, z_fake)) for the discriminator, in the model space."""
        raise NotImplementedError

    def generator_parameters(self) -> list[torch.nn.Parameter]:
        return [*self.decoder.parameters(), *(self.encoder.parameters() if self.encoder is not None else [])]

    # -- generation ----------------------------------------------------------------------------------------------------
    def prior(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self.device)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n draws G_x(z), z ~ N(0, I), in the data space (rounded to the data's levels on discrete data)."""
        return in_chunks(lambda z: self.scale.to_data(self.decoder(z)), self.prior(n), self.sample_chunk)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """G_x(z) in the data's units, not rounded and differentiable in z: the observation mean that decoder AIS
        (:mod:`genbench.evaluation.decoder_ais`) puts its Gaussian (or, on binary data, Bernoulli) noise around."""
        return self.scale.to_mean(self.decoder(z.to(self.device)))

    # -- training --------------------------------------------------------------------------------------------------------
    def discriminate(self, pairs, discriminator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(l_real, l_fake) of ``pairs``: both sides through D in one batch (as the ALI code, so D's batch norm sees both)."""
        (xr, zr), (xf, zf) = pairs
        out = (discriminator or self.discriminator)(torch.cat([xr, xf]), None if zr is None else torch.cat([zr, zf]))
        return out[: xr.shape[0]], out[xr.shape[0]:]

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.discriminate(self.pairs(x, z))

    def losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_d, L_g) on one batch; the real side enters L_g when it depends on the generator (ALI's encoder)."""
        l_real, l_fake = self.logits(x, self.prior(x.shape[0]))
        return (discriminator_loss(l_real, l_fake),
                generator_loss(l_fake, l_real if self.joint else None, self.generator_loss_kind))

    def training_step(self, batch, batch_idx):
        loss_d, loss_g = self.update(batch, batch_idx, *self.optimizers()[:2])
        every = self.trainer.log_every_n_steps
        if every and batch_idx % every == 0:  # two log calls cost ~1.3 ms, a tenth of a toy update: not every step
            self.log("train/loss_d", loss_d.detach(), on_step=True, on_epoch=False, prog_bar=True)
            if loss_g is not None:
                self.log("train/loss_g", loss_g.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return (loss_d if loss_g is None else loss_d + loss_g).detach()  # the divergence guard watches it

    def update(self, batch, batch_idx: int, opt_g, opt_d) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One training update on ``batch`` (data space); returns (L_d, L_g or None when G took no step)."""
        x = self.scale.to_model(batch)
        d_params, g_params = list(self.discriminator.parameters()), self.generator_parameters()
        loss_g = None
        if self.updates == "simultaneous":  # both gradients from one graph, then both steps
            loss_d, loss_g = self.losses(x)
            grads_d = torch.autograd.grad(loss_d, d_params, retain_graph=True)
            grads_g = torch.autograd.grad(loss_g, g_params, allow_unused=True)
            apply_step(opt_d, d_params, grads_d)
            apply_step(opt_g, g_params, grads_g)
        else:  # a D step on detached generator outputs; a G step after every d_steps-th
            with torch.no_grad():
                pairs = self.pairs(x, self.prior(x.shape[0]))
            loss_d = discriminator_loss(*self.discriminate(pairs))
            apply_step(opt_d, d_params, torch.autograd.grad(loss_d, d_params))
            if (batch_idx + 1) % self.d_steps == 0:
                _, loss_g = self.losses(x)
                apply_step(opt_g, g_params, torch.autograd.grad(loss_g, g_params, allow_unused=True))
        return loss_d, loss_g

    def adam(self, params) -> torch.optim.Adam:
        """Adam with the model's settings (fused: one kernel for all parameters, ~2.5x faster on CPU than the loop)."""
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas, eps=self.eps, fused=True)

    def configure_optimizers(self):
        return [self.adam(self.generator_parameters()), self.adam(self.discriminator.parameters())]

    def on_train_start(self):
        own_gradient_sync(self.trainer)  # apply_step averages the gradients over the ranks itself


def apply_step(optimizer, params: list[torch.nn.Parameter], grads) -> None:
    """Write ``grads`` into ``params`` and take one optimizer step (a parameter without a gradient keeps none); on
    several devices the gradients are averaged over the ranks first (``torch.autograd.grad`` bypasses DDP's hooks)."""
    grads = list(grads)
    average_across_ranks(grads)
    for p, g in zip(params, grads):
        p.grad = g
    optimizer.step()


class GAN(Adversarial):
    """A GAN: D(x) tells data from G_x(z), z ~ N(0, I) (see the module docstring).

    Architecture arguments: ``arch`` (mlp | dcgan | ali_svhn | ali_cifar10, :mod:`genbench.nn.adversarial`),
    ``latent_dim``, the mlp sizes ``decoder_hidden`` / ``disc_hidden`` / ``maxout_pieces``, the dcgan width
    ``channels``. Training: ``generator_loss`` (non_saturating | minimax), ``updates`` (simultaneous |
    alternating, with ``d_steps`` discriminator steps per generator step), Adam's ``lr``, ``beta1``,
    ``beta2``, ``eps`` (both players), and ``init_std`` (weights ~ N(0, init_std²), biases 0).
    """

    def __init__(self, info: DataInfo, arch: str = "mlp", latent_dim: int = 2,
                 decoder_hidden: Sequence[int] = (400, 400, 400, 400), disc_hidden: Sequence[int] = (200, 200, 200),
                 maxout_pieces: int = 5, channels: int = 32, generator_loss: str = "non_saturating",
                 updates: str = "simultaneous", d_steps: int = 1, lr: float = 1e-4, beta1: float = 0.2,
                 beta2: float = 0.999, eps: float = 1e-8, init_std: float = 0.02):
        super().__init__(info, encoder=None, joint=False, arch=arch, latent_dim=latent_dim,
                         decoder_hidden=decoder_hidden, encoder_hidden=(), disc_hidden=disc_hidden,
                         maxout_pieces=maxout_pieces, channels=channels, generator_loss=generator_loss,
                         updates=updates, d_steps=d_steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps, init_std=init_std)

    def pairs(self, x, z):
        return (x, None), (self.decoder(z), None)
