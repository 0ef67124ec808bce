"""Semi-supervised adversarial learning: a discriminator that doubles as a (K+1)-class classifier (Salimans et al.
2016, §5; used by Dumoulin et al. 2017 for ALI, thesis §5.4.3).

The discriminator outputs K logits l_1..l_K; the (K+1)-th class, "generated", has its logit fixed at 0, which loses
nothing (the softmax is unchanged by subtracting any f(x) from every logit). With s(x) = logsumexp_k l_k(x) and
Z = exp s, the real/fake probability is D(x) = Z/(Z + 1), so log D = s − softplus(s) and log(1 − D) = −softplus(s),
computed without rounding a probability (``../shared/reference/ssl-protocols.md`` §1):

* :func:`supervised_loss` L_sup = −E log p(y | x, y ≤ K): the K-class cross-entropy, unchanged by adding a constant
  to all K logits;
* :func:`unsupervised_loss` L_unsup = −E_data log D(x) − E_G log(1 − D(G(z))), the GAN game on D = Z/(Z+1), which
  a constant added to all K logits does change (it moves Z);
* :func:`feature_matching_loss`: the generator's loss, the distance between the mean discriminator features of a
  real and a generated batch (§3.1): squared (the authors' MNIST code) or absolute (their CIFAR-10/SVHN code).

Salimans' code weights L_unsup by ½ (``0.5·mean_unl + 0.5·mean_fake``) against the paper's equation; the models
here take the paper's L_unsup with a weight (``unsupervised_weight``) whose default, ½, is the code's.

Two models, one training loop (:class:`SemiSupervisedAdversarial`): per step, one discriminator update on a labelled,
an unlabelled and a generated batch (L_sup + w·L_unsup), then one update of the generator (and encoder):

* :class:`SemiSupervisedGAN` (``model=ssl_gan``, Salimans et al. 2016): the generator by feature matching against a
  second unlabelled batch; D(x) alone.
* :class:`SemiSupervisedALI` (``model=ali_ssl``, Dumoulin et al. 2017 §4.3): D(x, z) on encoder pairs (x, E(x)),
  "real", and decoder pairs (G(z), z), "generated"; labelled encoder pairs must get their label. No feature matching:
  the decoder and encoder take ALI's non-saturating loss on D's real/fake logit s, mean softplus(−s(G(z), z)) +
  mean softplus(s(x, E(x))) over the unlabelled batch (the paper states none; ours, said in the tables' notes).

Predictions (``classify``) use an exponential moving average of the discriminator's parameters (and, for ALI, the
encoder's), rate ``ema_rate`` per step, started at 0 as Salimans' code does and divided by 1 − (1 − rate)^t (bias
correction: for the weight-normalized D of the code the argmax is the same either way, since the average only
rescales the output layer's g and b together; for an encoder with batch norm it is not). ALI predicts with
argmax_k l_k(x, μ(x)), the averaged D on the averaged encoder's mean. Networks: ``arch=salimans``
(:mod:`genbench.nn.semi_supervised`, permutation-invariant MNIST) or an adversarial architecture of
:mod:`genbench.nn.adversarial` (``dcgan``, ``ali_svhn``, ``ali_cifar10``) with K outputs, whose features for feature
matching are the input of D's joint network; or, for the GAN on CIFAR-10 and SVHN, Salimans' conv networks
(``salimans_cifar10``, ``salimans_svhn``, features: the pooled last conv layer).
"""

from __future__ import annotations

import copy
from typing import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ConfigError, IncompatibleDataError
from ..data.base import DataInfo
from ..nn.adversarial import ARCHS, build_networks, output_activation
from ..nn.blocks import init_normal_
from ..nn.semi_supervised import (ConvDiscriminator, NoisyDiscriminator, conv_generator, salimans_encoder,
                                  salimans_generator)
from .gan import DataScale, apply_step, in_chunks

FEATURE_DISTANCES = ("squared", "absolute")


def real_logit(logits: torch.Tensor) -> torch.Tensor:
    """s(x) = logsumexp_k l_k(x), the logit of D(x) = Z/(Z + 1) (the generated class's logit being 0)."""
    return torch.logsumexp(logits, dim=-1)


def supervised_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L_sup = −mean log p(y | x, y ≤ K), the K-class softmax cross-entropy."""
    return F.cross_entropy(logits, y)


def unsupervised_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """L_unsup = −mean log D(x_real) − mean log(1 − D(x_fake)) with D = Z/(Z + 1)."""
    s_real, s_fake = real_logit(logits_real), real_logit(logits_fake)
    return (F.softplus(s_real) - s_real).mean() + F.softplus(s_fake).mean()


def feature_matching_loss(features_real: torch.Tensor, features_fake: torch.Tensor,
                          distance: str = "squared") -> torch.Tensor:
    """Mean over units of the squared (or absolute) difference between the batch means of the real and generated
    features. The real side is detached: the loss moves the generator only, never the discriminator's features."""
    gap = features_real.detach().mean(0) - features_fake.mean(0)
    if distance == "squared":
        return gap.pow(2).mean()
    if distance == "absolute":
        return gap.abs().mean()
    raise ConfigError(f"unknown feature-matching distance {distance!r}; valid: {', '.join(FEATURE_DISTANCES)}")


# -- the models ------------------------------------------------------------------------------------------------------

PRIORS = ("uniform", "normal")
SALIMANS_CONV = {"salimans_cifar10": 96, "salimans_svhn": 64}
"""Salimans et al.'s conv GAN for CIFAR-10 and SVHN, by the width of its discriminator's first convs."""


class ParameterAverage(nn.Module):
    """A copy of a module whose weights are the exponential moving average of the module's parameters (started at 0
    and bias-corrected) and whose other buffers (batch-norm statistics, data-dependent scales) are the module's
    latest. Everything here is a buffer: saved, restored and moved with the model, never a parameter to train."""

    def __init__(self, module: nn.Module, rate: float):
        super().__init__()
        self.rate = rate
        self.module = copy.deepcopy(module)
        for part in self.module.modules():  # the copy's parameters become buffers of the same names
            for name, p in [(n, p) for n, p in part._parameters.items() if p is not None]:
                del part._parameters[name]
                part.register_buffer(name, p.detach().clone())
        self.sums = nn.Module()  # the running sums, keyed by position (state-dict keys sums.0, sums.1, ...)
        for i, p in enumerate(module.parameters()):
            self.sums.register_buffer(str(i), torch.zeros_like(p.detach()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.steps += 1
        correction = 1 - (1 - self.rate) ** self.steps.double()  # a tensor: no device sync per step
        averaged = dict(self.module.named_buffers())
        for (name, p), raw in zip(module.named_parameters(), self.sums.buffers()):
            averaged[name].copy_(raw.lerp_(p, self.rate) / correction)
        for name, b in module.named_buffers():
            averaged[name].copy_(b)


class SemiSupervisedAdversarial(L.LightningModule):
    """Generator, optional encoder and a K-logit discriminator; trained on :class:`~genbench.data.labels.
    SemiSupervisedBatch` batches (``data.labels_per_class``). Subclasses define :meth:`pairs` and
    :meth:`generator_loss`."""

    semi_supervised = True
    supported_spaces = ("binary", "discrete")
    sample_chunk = 1000
    joint = False

    def __init__(self, info: DataInfo, arch: str, latent_dim: int, prior: str, generator_hidden: Sequence[int],
                 encoder_hidden: Sequence[int], disc_hidden: Sequence[int], input_noise: float,
                 hidden_noise: float, channels: int, init_std: float, lr: float, beta1: float, beta2: float,
                 unsupervised_weight: float, ema_rate: float, lr_flat_epochs: int | None):
        super().__init__()
        if not info.classes:
            raise IncompatibleDataError(f"{type(self).__name__} learns to classify, but {info.variant} has no "
                                        f"labels; choose labelled data (digits, mnist, cifar10, svhn)")
        if prior not in PRIORS:
            raise ConfigError(f"unknown prior {prior!r}; valid: {', '.join(PRIORS)}")
        if not 0 < ema_rate <= 1:
            raise ConfigError(f"ema_rate must be in (0, 1], got {ema_rate}")
        self.automatic_optimization = False
        self.latent_dim, self.prior_kind = latent_dim, prior
        self.lr, self.betas, self.unsupervised_weight = lr, (beta1, beta2), unsupervised_weight
        self.lr_flat_epochs = lr_flat_epochs
        self.decoder, self.encoder, self.discriminator = self._networks(
            info, arch, generator_hidden, encoder_hidden, disc_hidden, input_noise, hidden_noise, channels, init_std)
        self.scale = DataScale(info.space, {"salimans": "sigmoid", **dict.fromkeys(SALIMANS_CONV, "tanh")}.get(
            arch) or output_activation(arch, False))
        self.disc_average = ParameterAverage(self.discriminator, ema_rate)
        self.encoder_average = ParameterAverage(self.encoder, ema_rate) if self.encoder is not None else None

    def _networks(self, info, arch, generator_hidden, encoder_hidden, disc_hidden, input_noise, hidden_noise,
                  channels, init_std):
        if arch == "salimans":
            encoder = salimans_encoder(info.shape, encoder_hidden, self.latent_dim) if self.joint else None
            disc = NoisyDiscriminator(info.dim + (self.latent_dim if self.joint else 0), disc_hidden, info.classes,
                                      input_noise, hidden_noise)
            return salimans_generator(self.latent_dim, generator_hidden, info.shape), encoder, disc
        if arch in SALIMANS_CONV:
            if self.joint or tuple(info.shape) != (3, 32, 32):
                raise ConfigError(f"arch {arch!r} is Salimans et al.'s GAN for 3x32x32 images (CIFAR-10, SVHN); "
                                  f"got {'a joint (ALI) model' if self.joint else f'images of shape {info.shape}'}")
            return (conv_generator(self.latent_dim, info.shape), None,
                    ConvDiscriminator(info.shape[0], SALIMANS_CONV[arch], info.classes))
        if arch not in ARCHS:
            raise ConfigError(f"unknown arch {arch!r}; valid: salimans, {', '.join(SALIMANS_CONV)}, {', '.join(ARCHS)}")
        nets = build_networks(arch, info.shape, False, self.latent_dim, "gaussian" if self.joint else None,
                              self.joint, decoder_hidden=generator_hidden, encoder_hidden=encoder_hidden,
                              disc_hidden=disc_hidden, channels=channels, disc_out=info.classes)
        for net in nets:
            if net is not None:
                init_normal_(net, init_std)
        return nets

    # -- what subclasses define ----------------------------------------------------------------------------------------
    def pairs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(x, z) as D sees data x: z = E(x) for ALI, None for a GAN."""
        raise NotImplementedError

    def generator_loss(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.decoder.parameters(), *(self.encoder.parameters() if self.encoder is not None else [])]

    # -- generation and prediction -------------------------------------------------------------------------------------
    def prior(self, n: int) -> torch.Tensor:
        """z ~ U[0, 1)^|z| (Salimans' code) or N(0, I) (ALI)."""
        if self.prior_kind == "uniform":
            return torch.rand(n, self.latent_dim, device=self.device)
        return torch.randn(n, self.latent_dim, device=self.device)

    def generated(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(G(z), z) for ALI, (G(z), None) for a GAN, in the model space."""
        z = self.prior(n)
        return self.decoder(z), (z if self.joint else None)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n draws G(z) in the data space (rounded to the data's levels)."""
        return in_chunks(lambda z: self.scale.to_data(self.decoder(z)), self.prior(n), self.sample_chunk)

    predictor = "argmax of the moving-average discriminator's K logits"

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The K logits of the averaged discriminator on data-space x (for ALI on (x, μ(x)) of the averaged
        encoder); noise and dropout off, batch norm on its population statistics."""
        x = self.scale.to_model(x.to(self.device))
        z = self.encoder_average.module.mean(x) if self.encoder_average is not None else None
        return self.disc_average.module(x, z)

    # -- training --------------------------------------------------------------------------------------------------------
    def discriminator_loss(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L_sup + w·L_unsup, L_sup, L_unsup) on one batch; the generator's and encoder's outputs are detached."""
        with torch.no_grad():
            x_lab, z_lab = self.pairs(self.scale.to_model(batch.labelled))
            x_unl, z_unl = self.pairs(self.scale.to_model(batch.unlabelled))
            x_fake, z_fake = self.generated(len(x_unl))
        z = None if z_fake is None else torch.cat([z_lab, z_unl, z_fake])
        logits = self.discriminator(torch.cat([x_lab, x_unl, x_fake]), z)
        n_lab, n_unl = len(x_lab), len(x_unl)
        sup = supervised_loss(logits[:n_lab], batch.labels)
        unsup = unsupervised_loss(logits[n_lab:n_lab + n_unl], logits[n_lab + n_unl:])
        return sup + self.unsupervised_weight * unsup, sup, unsup

    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self.optimizers()
        if hasattr(self.discriminator, "initialize") and not self.discriminator.initialized:
            x = self.scale.to_model(batch.unlabelled)
            with torch.no_grad():
                self.discriminator.initialize(*self.pairs(x))
        d_params, g_params = list(self.discriminator.parameters()), self.generator_parameters()
        loss_d, sup, unsup = self.discriminator_loss(batch)
        apply_step(opt_d, d_params, torch.autograd.grad(loss_d, d_params))
        self.disc_average.update(self.discriminator)
        loss_g = self.generator_loss(batch)
        apply_step(opt_g, g_params, torch.autograd.grad(loss_g, g_params, allow_unused=True))
        if self.encoder_average is not None:
            self.encoder_average.update(self.encoder)
        every = self.trainer.log_every_n_steps
        if every and batch_idx % every == 0:
            self.log_dict({"train/loss_sup": sup.detach(), "train/loss_unsup": unsup.detach(),
                           "train/loss_g": loss_g.detach()}, on_step=True, on_epoch=False, prog_bar=True)
        return (loss_d + loss_g).detach()  # the divergence guard watches it

    def configure_optimizers(self):
        adam = lambda params: torch.optim.Adam(params, lr=self.lr, betas=self.betas, fused=True)  # noqa: E731
        optimizers = [adam(self.generator_parameters()), adam(self.discriminator.parameters())]
        if self.lr_flat_epochs is None:
            return optimizers
        return optimizers, [torch.optim.lr_scheduler.LambdaLR(o, self.lr_factor) for o in optimizers]

    def lr_factor(self, epoch: int) -> float:
        """Salimans' CIFAR-10/SVHN schedule: the learning rate flat for ``lr_flat_epochs``, then linearly to 0 at
        the last epoch (CIFAR-10: min(3 − epoch/400, 1) over 1,200 epochs)."""
        last = self.trainer.max_epochs
        return min(1.0, max(0.0, (last - epoch) / max(1, last - self.lr_flat_epochs)))

    def on_train_epoch_end(self):
        if self.lr_flat_epochs is not None:  # manual optimization: Lightning steps no scheduler itself
            for scheduler in self.lr_schedulers():
                scheduler.step()


class SemiSupervisedGAN(SemiSupervisedAdversarial):
    """Salimans et al. (2016)'s semi-supervised GAN: D(x) with K logits, G trained by feature matching (the mean of
    D's last hidden layer, noise on, over a generated batch against a second unlabelled batch; ``feature_distance``
    squared as their MNIST code, absolute as their CIFAR-10/SVHN code). Defaults: their MNIST script."""

    def __init__(self, info: DataInfo, arch: str = "salimans", latent_dim: int = 100, prior: str = "uniform",
                 generator_hidden: Sequence[int] = (500, 500), disc_hidden: Sequence[int] = (1000, 500, 250, 250, 250),
                 input_noise: float = 0.3, hidden_noise: float = 0.5, channels: int = 32, init_std: float = 0.02,
                 feature_distance: str = "squared", lr: float = 3e-3, beta1: float = 0.5, beta2: float = 0.999,
                 unsupervised_weight: float = 0.5, ema_rate: float = 1e-4, lr_flat_epochs: int | None = None):
        if feature_distance not in FEATURE_DISTANCES:
            raise ConfigError(f"unknown feature_distance {feature_distance!r}; valid: {', '.join(FEATURE_DISTANCES)}")
        self.feature_distance = feature_distance
        super().__init__(info, arch, latent_dim, prior, generator_hidden, (), disc_hidden, input_noise, hidden_noise,
                         channels, init_std, lr, beta1, beta2, unsupervised_weight, ema_rate, lr_flat_epochs)

    def pairs(self, x):
        return x, None

    def generator_loss(self, batch) -> torch.Tensor:
        """Feature matching; its gradient is taken for the generator's parameters only, so D's features stay put."""
        real = self.discriminator.features(self.scale.to_model(batch.unlabelled_again))
        fake = self.discriminator.features(self.generated(len(batch.unlabelled_again))[0])
        return feature_matching_loss(real, fake, self.feature_distance)


class SemiSupervisedALI(SemiSupervisedAdversarial):
    """ALI with a (K+1)-class joint discriminator (Dumoulin et al. 2017 §4.3; see the module docstring). Defaults:
    Salimans' MNIST networks with D on the concatenation [x, z], a Gaussian encoder mirroring the generator and the
    prior N(0, I) of ALI; the paper states none of these."""

    joint = True

    def __init__(self, info: DataInfo, arch: str = "salimans", latent_dim: int = 100, prior: str = "normal",
                 generator_hidden: Sequence[int] = (500, 500), encoder_hidden: Sequence[int] = (500, 500),
                 disc_hidden: Sequence[int] = (1000, 500, 250, 250, 250), input_noise: float = 0.3,
                 hidden_noise: float = 0.5, channels: int = 32, init_std: float = 0.02, lr: float = 3e-3,
                 beta1: float = 0.5, beta2: float = 0.999, unsupervised_weight: float = 0.5, ema_rate: float = 1e-4,
                 lr_flat_epochs: int | None = None):
        super().__init__(info, arch, latent_dim, prior, generator_hidden, encoder_hidden, disc_hidden, input_noise,
                         hidden_noise, channels, init_std, lr, beta1, beta2, unsupervised_weight, ema_rate,
                         lr_flat_epochs)

    predictor = "argmax of the moving-average joint discriminator's K logits at (x, μ(x)), μ of the averaged encoder"

    def pairs(self, x):
        return x, self.encoder(x)

    def generator_loss(self, batch) -> torch.Tensor:
        """ALI's non-saturating loss on s = logsumexp of D's logits: encoder pairs pushed towards "generated",
        decoder pairs towards "real"; its gradient is taken for the decoder's and encoder's parameters only."""
        x = self.scale.to_model(batch.unlabelled)
        x_fake, z_fake = self.generated(len(x))
        s = real_logit(self.discriminator(torch.cat([x, x_fake]), torch.cat([self.encoder(x), z_fake])))
        return F.softplus(s[:len(x)]).mean() + F.softplus(-s[len(x):]).mean()
