"""Adversarially learned inference (ALI; Dumoulin et al. 2017, Dumoulin 2018 ch. 4–5) and BiGAN (Donahue et al. 2017).

Two joint distributions over (x, z): the encoder's q(x, z) = q(x) q(z | x) with q(x) the data, and the
decoder's p(x, z) = p(z) p(x | z) with p(z) = N(0, I). The discriminator D(x, z) receives the pairs
(x, G_z(x)) labelled real and (G_x(z), z) labelled fake (Eq. 5.1; the thesis' "ẑ = G_x(x)" is a typo),
and Algorithm 1's losses are, on logits l_q = D(x, G_z(x)) and l_p = D(G_x(z), z):

* L_d = mean softplus(−l_q) + mean softplus(l_p);
* L_g = mean softplus(l_q) + mean softplus(−l_p) (non-saturating, Eq. 5.4), trained into both
  G_z and G_x; ``generator_loss=minimax`` uses −L_d instead.

Encoders (``encoder``): ``implicit``, an MLP on [x, ε] with ε ~ N(0, I) of the latent's width (what the
toy experiment's code used, thesis §4.4); ``gaussian``, μ(x) + σ(x) ⊙ ε with the reparametrization trick
(Eq. 5.2, the image experiments); ``deterministic``, BiGAN's z = G_z(x).

:meth:`EncodeDecode.encode` draws z ~ q(z | x) for data-space x; :meth:`EncodeDecode.decode` maps z to
the data space; a reconstruction is decode(encode(x)), as in the thesis' figures.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..data.base import DataInfo
from .gan import Adversarial, in_chunks


class EncodeDecode:
    """``encode`` / ``decode`` / ``features`` on data-space tensors, for any model with an encoder and decoder."""

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z ~ q(z | x) [B, |z|] for data-space x (a deterministic encoder returns G_z(x))."""
        x = x.to(self.device)
        return in_chunks(lambda v: self.encoder(self.scale.to_model(v)), x, self.sample_chunk)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G_x(z) in the data space (rounded to the data's levels on discrete data)."""
        return in_chunks(lambda v: self.scale.to_data(self.decoder(v)), z.to(self.device), self.sample_chunk)

    @torch.no_grad()
    def features(self, x: torch.Tensor, layers: int = 3) -> torch.Tensor:
        """Encoder features for a linear probe (:mod:`genbench.evaluation.features`); conv encoders only."""
        x = x.to(self.device)
        return in_chunks(lambda v: self.encoder.features(self.scale.to_model(v), layers), x, self.sample_chunk)


class ALI(EncodeDecode, Adversarial):
    """ALI (see the module docstring). Arguments as :class:`~genbench.models.gan.GAN`'s, plus ``encoder``
    (implicit | gaussian | deterministic) and the mlp encoder's ``encoder_hidden`` sizes."""

    def __init__(self, info: DataInfo, arch: str = "mlp", latent_dim: int = 2, encoder: str = "implicit",
                 decoder_hidden: Sequence[int] = (400, 400, 400, 400), encoder_hidden: Sequence[int] = (400, 400),
                 disc_hidden: Sequence[int] = (200, 200, 200), maxout_pieces: int = 5, channels: int = 32,
                 generator_loss: str = "non_saturating", updates: str = "simultaneous", d_steps: int = 1,
                 lr: float = 1e-4, beta1: float = 0.2, beta2: float = 0.999, eps: float = 1e-8,
                 init_std: float = 0.02):
        super().__init__(info, encoder=encoder, joint=True, arch=arch, latent_dim=latent_dim,
                         decoder_hidden=decoder_hidden, encoder_hidden=encoder_hidden, disc_hidden=disc_hidden,
                         maxout_pieces=maxout_pieces, channels=channels, generator_loss=generator_loss,
                         updates=updates, d_steps=d_steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps, init_std=init_std)

    def pairs(self, x, z):
        """((x, G_z(x)), (G_x(z), z)): the encoder's joint sample is the "real" one."""
        return (x, self.encoder(x)), (self.decoder(z), z)


class BiGAN(ALI):
    """BiGAN: ALI with the deterministic encoder z = G_z(x) (Donahue et al. 2017)."""

    def __init__(self, info: DataInfo, arch: str = "mlp", latent_dim: int = 2,
                 decoder_hidden: Sequence[int] = (400, 400, 400, 400), encoder_hidden: Sequence[int] = (400, 400),
                 disc_hidden: Sequence[int] = (200, 200, 200), maxout_pieces: int = 5, channels: int = 32,
                 generator_loss: str = "non_saturating", updates: str = "simultaneous", d_steps: int = 1,
                 lr: float = 1e-4, beta1: float = 0.2, beta2: float = 0.999, eps: float = 1e-8,
                 init_std: float = 0.02):
        super().__init__(info, arch=arch, latent_dim=latent_dim, encoder="deterministic",
                         decoder_hidden=decoder_hidden, encoder_hidden=encoder_hidden, disc_hidden=disc_hidden,
                         maxout_pieces=maxout_pieces, channels=channels, generator_loss=generator_loss,
                         updates=updates, d_steps=d_steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps, init_std=init_std)
