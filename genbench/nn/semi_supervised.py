"""The permutation-invariant networks of Salimans et al. (2016)'s semi-supervised MNIST experiment
(``train_mnist_feature_matching.py`` of ``openai/improved-gan``, as ``../shared/reference/ssl-protocols.md`` §2 reads it).

* :class:`NoisyDiscriminator`: x (and, for ALI, z, concatenated) + N(0, σ_in²) → weight-normalized dense layers
  (1000 → 500 → 250 → 250 → 250) with ReLU and + N(0, σ_h²) after each → K logits. Noise only in training mode.
  Weight norm w = g·v/‖v‖ with v ~ N(0, 0.1²): only v trains in the hidden layers, their g and b are set once by
  data-dependent initialization (:meth:`NoisyDiscriminator.initialize`, noise on, as the code's init pass) and kept
  as buffers; the output layer's g and b are initialized the same way and train.
* :func:`salimans_generator`: z (100) → 500 → BN → softplus → 500 → BN → softplus → x, sigmoid, the output layer
  weight-normalized with trainable g (starting at 1) and b (at 0), without the code's data-dependent init.
* :func:`salimans_encoder`: ALI's encoder for the same data, the generator mirrored (ours: the paper has none).

And the CIFAR-10 / SVHN networks of their ``train_{cifar,svhn}_feature_matching.py`` (ssl-protocols.md §3), for
3×32×32 images in [−1, 1]:

* :class:`ConvDiscriminator`: dropout 0.2 on the input → 3×3 convs of w, w, w (stride 2) → dropout 0.5 → 2w, 2w, 2w
  (stride 2) → dropout 0.5 → 3×3 conv 2w (no padding) → two 1×1 convs 2w (NIN) → global mean pool (the
  features) → K logits; leaky ReLU 0.2, every layer weight-normalized (v ~ N(0, 0.05²)), the hidden scales fixed by
  data-dependent initialization; w = 96 for CIFAR-10, 64 for SVHN.
* :func:`conv_generator`: z (100) → dense 4·4·512 → BN → ReLU → 5×5 transposed convs to 256@8², 128@16² (BN, ReLU)
  → 3@32², tanh, the last weight-normalized with trainable scale.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .adversarial import Decoder, Encoder
from .blocks import mlp


class WeightNormDense(nn.Module):
    """y = g ⊙ (x v^T / ‖v‖_rows) + b; ``g`` and ``b`` are parameters when ``train_scale``, else buffers fixed by
    :meth:`initialize` (mean 0 and standard deviation 1 of the outputs on a batch, Salimans & Kingma 2016)."""

    unit_dims = (0,)  # the output's dimensions other than its units: statistics are taken over them

    def __init__(self, d_in: int, d_out: int, train_scale: bool):
        super().__init__()
        self.v = nn.Parameter(torch.randn(d_out, d_in) * 0.1)
        g, b = torch.ones(d_out), torch.zeros(d_out)
        if train_scale:
            self.g, self.b = nn.Parameter(g), nn.Parameter(b)
        else:
            self.register_buffer("g", g)
            self.register_buffer("b", b)

    def direction(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.v / self.v.norm(dim=1, keepdim=True))

    def _per_unit(self, v: torch.Tensor) -> torch.Tensor:
        return v.view(-1, *[1] * (len(self.unit_dims) - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._per_unit(self.g) * self.direction(x) + self._per_unit(self.b)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> torch.Tensor:
        """Set g = 1/std and b = −mean/std of this layer's outputs on ``x``; returns the initialized outputs."""
        t = self.direction(x)
        std = t.std(self.unit_dims).clamp_min(1e-6)
        self.g.copy_(1 / std)
        self.b.copy_(-t.mean(self.unit_dims) / std)
        return self(x)


class WeightNormConv(WeightNormDense):
    """The convolutional :class:`WeightNormDense`: one direction per output channel, g and b per channel."""

    unit_dims = (0, 2, 3)

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0, train_scale: bool = False,
                 transpose: bool = False, std: float = 0.05):
        super().__init__(c_in, c_out, train_scale)
        shape = (c_in, c_out, kernel, kernel) if transpose else (c_out, c_in, kernel, kernel)
        self.v = nn.Parameter(torch.randn(shape) * std)
        self.stride, self.padding, self.transpose = stride, padding, transpose

    def direction(self, x: torch.Tensor) -> torch.Tensor:
        dims = (0, 2, 3) if self.transpose else (1, 2, 3)
        w = self.v / self.v.pow(2).sum(dims, keepdim=True).sqrt()
        if self.transpose:
            return F.conv_transpose2d(x, w, stride=self.stride, padding=self.padding, output_padding=self.stride - 1)
        return F.conv2d(x, w, stride=self.stride, padding=self.padding)


class NoisyDiscriminator(nn.Module):
    """D(x[, z]) → K logits, with :meth:`features` = the last hidden layer (after ReLU, before its noise)."""

    def __init__(self, d_in: int, hidden: Sequence[int], classes: int, input_noise: float, hidden_noise: float):
        super().__init__()
        dims = [d_in, *hidden]
        self.hidden = nn.ModuleList(WeightNormDense(a, b, train_scale=False) for a, b in zip(dims[:-1], dims[1:]))
        self.out = WeightNormDense(dims[-1], classes, train_scale=True)
        self.input_noise, self.hidden_noise = input_noise, hidden_noise
        self.register_buffer("initialized", torch.tensor(False))

    def _noise(self, h: torch.Tensor, sigma: float) -> torch.Tensor:
        return h + sigma * torch.randn_like(h) if self.training and sigma else h

    def _input(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        x = x.flatten(1)
        return self._noise(x if z is None else torch.cat([x, z], 1), self.input_noise)

    def _trunk(self, h: torch.Tensor, init: bool = False) -> torch.Tensor:
        for i, layer in enumerate(self.hidden):
            h = self._noise(h, self.hidden_noise) if i else h
            h = F.relu(layer.initialize(h) if init else layer(h))
        return h

    def features(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return self._trunk(self._input(x, z))

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self._noise(self.features(x, z), self.hidden_noise))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, z: torch.Tensor | None = None) -> None:
        """Data-dependent initialization of every layer on one batch, in order (the code's init pass, noise on)."""
        h = self._trunk(self._input(x, z), init=True)
        self.out.initialize(self._noise(h, self.hidden_noise))
        self.initialized.fill_(True)


def salimans_generator(latent_dim: int, hidden: Sequence[int], shape: Sequence[int]) -> Decoder:
    net = mlp([latent_dim, *hidden, math.prod(shape)], act="softplus", out_act="sigmoid")
    net[-2] = WeightNormDense(net[-2].in_features, net[-2].out_features, train_scale=True)
    return Decoder(net, shape, conv=False)


def salimans_encoder(shape: Sequence[int], hidden: Sequence[int], latent_dim: int) -> Encoder:
    """A Gaussian encoder x → hidden (BN, softplus) → (μ, log σ), the generator's layers in reverse."""
    net = mlp([math.prod(shape), *hidden, 2 * latent_dim], act="softplus")
    return Encoder(net[:-2], net[-2:], "gaussian", latent_dim, conv=False)


class ConvDiscriminator(nn.Module):
    """Salimans et al.'s CIFAR-10/SVHN D(x) → K logits (see the module docstring); :meth:`features` = the pooled
    2w channels. A GAN's discriminator: it takes no z."""

    def __init__(self, channels: int, width: int, classes: int):
        super().__init__()
        w, w2 = width, 2 * width
        spec = [(channels, w, 3, 1, 1, 0.2), (w, w, 3, 1, 1, 0), (w, w, 3, 2, 1, 0), (w, w2, 3, 1, 1, 0.5),
                (w2, w2, 3, 1, 1, 0), (w2, w2, 3, 2, 1, 0), (w2, w2, 3, 1, 0, 0.5), (w2, w2, 1, 1, 0, 0),
                (w2, w2, 1, 1, 0, 0)]  # (in, out, kernel, stride, padding, dropout on the input)
        self.convs = nn.ModuleList(WeightNormConv(a, b, k, st, p) for a, b, k, st, p, _ in spec)
        self.dropouts = [d for *_, d in spec]
        self.out = WeightNormDense(w2, classes, train_scale=True)
        self.out.v.data.mul_(0.5)  # v ~ N(0, 0.05²) as the convs
        self.register_buffer("initialized", torch.tensor(False))

    def _trunk(self, x: torch.Tensor, init: bool = False) -> torch.Tensor:
        for conv, p in zip(self.convs, self.dropouts):
            x = F.dropout(x, p, self.training) if p else x
            x = F.leaky_relu(conv.initialize(x) if init else conv(x), 0.2)
        return x.mean((2, 3))

    def features(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if z is not None:
            raise ValueError("Salimans' conv discriminator is a GAN's: it takes x alone")
        return self._trunk(x)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.features(x, z))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, z: torch.Tensor | None = None) -> None:
        self.out.initialize(self._trunk(x, init=True))
        self.initialized.fill_(True)


def conv_generator(latent_dim: int, shape: Sequence[int]) -> Decoder:
    """Salimans et al.'s CIFAR-10/SVHN G for 3×32×32 images in [−1, 1] (see the module docstring)."""
    net = nn.Sequential(
        nn.Linear(latent_dim, 4 * 4 * 512), nn.BatchNorm1d(4 * 4 * 512), nn.ReLU(), nn.Unflatten(1, (512, 4, 4)),
        nn.ConvTranspose2d(512, 256, 5, 2, 2, output_padding=1), nn.BatchNorm2d(256), nn.ReLU(),
        nn.ConvTranspose2d(256, 128, 5, 2, 2, output_padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        WeightNormConv(128, shape[0], 5, 2, 2, train_scale=True, transpose=True), nn.Tanh())
    return Decoder(net, shape, conv=False)
