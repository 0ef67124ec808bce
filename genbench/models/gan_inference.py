"""Inference for a trained GAN: the two baselines of Dumoulin 2018 §5.2.2 compared with ALI in Fig. 5.8.

Both train in two phases within one run: a GAN for the first ``gan_epochs`` epochs (exactly as
:class:`~genbench.models.gan.GAN` with the same arguments and seed: the encoder is initialised from a
forked random stream, so the GAN phase draws the same numbers), then, for the remaining epochs up to
``trainer.max_epochs``, the generator is frozen (its weights and its batch-norm statistics: it runs in
eval mode, the mode in which it is sampled) and only an encoder (and, post hoc, a new discriminator) learn:

* :class:`GANInverseMapping` ("learned inverse mapping"): the encoder minimizes
  E_{z ~ p(z)} ‖z − G_z(G_x(z))‖², on generator samples only (the data is not used in this phase);
* :class:`GANPostHoc` ("post-hoc learned inference"): the encoder is trained by ALI's procedure
  against a new joint discriminator D'(x, z) on (x, G_z(x)) vs (G_x(z), z), with simultaneous updates.

"The encoders learned for GAN inference have the same architecture as ALI's encoder" (§5.4.5): the same
``encoder`` kinds and sizes as :class:`~genbench.models.ali.ALI`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..core.errors import ConfigError
from ..data.base import DataInfo
from ..nn.adversarial import build_networks
from ..nn.blocks import init_normal_
from .ali import EncodeDecode
from .gan import GAN, apply_step, discriminator_loss, generator_loss


class GANInference(EncodeDecode, GAN):
    """A GAN, then an encoder for its frozen generator (subclasses define the encoder's phase)."""

    def __init__(self, info: DataInfo, gan_epochs: int = 100, encoder: str = "implicit", arch: str = "mlp",
                 latent_dim: int = 2, decoder_hidden: Sequence[int] = (400, 400, 400, 400),
                 encoder_hidden: Sequence[int] = (400, 400), disc_hidden: Sequence[int] = (200, 200, 200),
                 maxout_pieces: int = 5, channels: int = 32, generator_loss: str = "non_saturating",
                 updates: str = "simultaneous", d_steps: int = 1, lr: float = 1e-4, beta1: float = 0.2,
                 beta2: float = 0.999, eps: float = 1e-8, init_std: float = 0.02):
        super().__init__(info, arch=arch, latent_dim=latent_dim, decoder_hidden=decoder_hidden,
                         disc_hidden=disc_hidden, maxout_pieces=maxout_pieces, channels=channels,
                         generator_loss=generator_loss, updates=updates, d_steps=d_steps, lr=lr, beta1=beta1,
                         beta2=beta2, eps=eps, init_std=init_std)
        if gan_epochs < 0:
            raise ConfigError(f"gan_epochs must be >= 0, got {gan_epochs}")
        self.gan_epochs = gan_epochs
        with torch.random.fork_rng(devices=[]):  # the GAN phase sees the same random stream as a plain GAN
            _, enc, disc = build_networks(arch, info.shape, info.space.kind == "continuous", latent_dim, encoder,
                                          joint=True, decoder_hidden=decoder_hidden, encoder_hidden=encoder_hidden,
                                          disc_hidden=disc_hidden, maxout_pieces=maxout_pieces, channels=channels)
            self.encoder = init_normal_(enc, init_std)
            if self.uses_inference_discriminator:
                self.inference_discriminator = init_normal_(disc, init_std)
        self.frozen = False

    uses_inference_discriminator = False

    def generator_parameters(self):
        return list(self.decoder.parameters())

    # -- phases ---------------------------------------------------------------------------------------------------------
    def on_fit_start(self):
        if self.trainer.max_epochs is not None and 0 <= self.trainer.max_epochs <= self.gan_epochs:
            raise ConfigError(f"trainer.max_epochs={self.trainer.max_epochs} leaves no epoch to train the encoder "
                             f"after gan_epochs={self.gan_epochs}; set trainer.max_epochs > model.gan_epochs")

    def on_train_epoch_start(self):
        if self.current_epoch >= self.gan_epochs and not self.frozen:
            self.frozen = True
            self.decoder.requires_grad_(False)
            self.discriminator.requires_grad_(False)
            self.decoder.eval()

    def train(self, mode: bool = True):
        """Lightning puts the module in training mode each epoch; a frozen generator stays in eval mode."""
        super().train(mode)
        if getattr(self, "frozen", False):
            self.decoder.eval()
        return self

    def training_step(self, batch, batch_idx):
        if self.current_epoch < self.gan_epochs:
            return super().training_step(batch, batch_idx)
        loss = self.inference_step(self.scale.to_model(batch))
        self.log("train/loss_encoder", loss, prog_bar=True)
        return loss

    def inference_step(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def configure_optimizers(self):
        opts = [*super().configure_optimizers(), self.adam(self.encoder.parameters())]
        if self.uses_inference_discriminator:
            opts.append(self.adam(self.inference_discriminator.parameters()))
        return opts


class GANInverseMapping(GANInference):
    """GAN + learned inverse mapping: min E_z ‖z − G_z(G_x(z))‖² over the encoder, G_x frozen (thesis §5.2.2)."""

    def inference_step(self, x):
        opt_e = self.optimizers()[2]
        z = self.prior(x.shape[0])
        with torch.no_grad():
            x_fake = self.decoder(z)
        loss = (self.encoder(x_fake) - z).pow(2).sum(1).mean()
        params = list(self.encoder.parameters())
        apply_step(opt_e, params, torch.autograd.grad(loss, params))
        return loss.detach()


class GANPostHoc(GANInference):
    """GAN + post-hoc learned inference: ALI's procedure for the encoder and a new D'(x, z), G_x frozen (§5.2.2)."""

    uses_inference_discriminator = True

    def inference_step(self, x):
        opt_e, opt_d = self.optimizers()[2:4]
        z = self.prior(x.shape[0])
        with torch.no_grad():
            x_fake = self.decoder(z)
        l_q, l_p = self.discriminate(((x, self.encoder(x)), (x_fake, z)), self.inference_discriminator)
        loss_d, loss_e = discriminator_loss(l_q, l_p), generator_loss(l_p, l_q, self.generator_loss_kind)
        d_params, e_params = list(self.inference_discriminator.parameters()), list(self.encoder.parameters())
        grads_d = torch.autograd.grad(loss_d, d_params, retain_graph=True)
        grads_e = torch.autograd.grad(loss_e, e_params)
        apply_step(opt_d, d_params, grads_d)
        apply_step(opt_e, e_params, grads_e)
        return (loss_d + loss_e).detach()
