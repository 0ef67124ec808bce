"""Building blocks of the adversarial family: MLPs with batch norm, maxout, DCGAN-style conv blocks, initialisation.

Conventions follow the ALI code (Dumoulin et al. 2017) where it is the source:

* batch norm keeps population statistics as ``m·0.05 + p·0.95``, i.e. PyTorch momentum 0.05
  (:data:`BN_MOMENTUM`); a layer followed by batch norm has no bias (the norm's shift replaces it);
* maxout (Goodfellow et al. 2013) takes the max over ``pieces`` linear pieces; a fully connected
  maxout layer of ``units`` units has ``units × pieces`` linear outputs, while the convolutional one
  (:class:`ConvMaxout`) follows the ALI code and *reduces* the channels of the conv before it by ``pieces``;
* dropout acts on a layer's *input*, as the code's ``apply_dropout`` on ``INPUT`` roles;
* weights ~ N(0, std²), biases 0, batch-norm scale 1 and shift 0 (:func:`init_normal_`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ..core.errors import ConfigError

BN_MOMENTUM = 0.05
"""PyTorch momentum of the population statistics (running ← 0.95·running + 0.05·batch), as in the ALI code."""


def activation(name: str, slope: float = 0.2) -> nn.Module:
    """``relu`` | ``lrelu`` (negative slope ``slope``) | ``softplus`` | ``tanh`` | ``sigmoid`` | ``linear``."""
    table = {"relu": nn.ReLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "linear": nn.Identity}
    if name == "lrelu":
        return nn.LeakyReLU(slope)
    if name not in table:
        raise ConfigError(f"unknown activation {name!r}; valid: lrelu, {', '.join(table)}")
    return table[name]()


def mlp(dims: Sequence[int], act: str = "relu", batch_norm: bool = True, out_act: str = "linear") -> nn.Sequential:
    """Linear → [BN] → act for each hidden layer, then a linear output layer with bias and ``out_act``.

    With batch norm, hidden linears have no bias (the ALI code's ``use_bias=False``).
    """
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims[:-2], dims[1:-1]):
        layers.append(nn.Linear(d_in, d_out, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(d_out, momentum=BN_MOMENTUM))
        layers.append(activation(act))
    layers += [nn.Linear(dims[-2], dims[-1]), activation(out_act)]
    return nn.Sequential(*layers)


class _MaxOver(torch.autograd.Function):
    """max over one dimension, with a mask backward (about 2x faster on CPU than ``amax``'s, which divides among ties).

    The gradient goes to every piece equal to the max; exact ties of float activations have probability 0.
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, dim: int) -> torch.Tensor:
        out = v.amax(dim)
        ctx.save_for_backward(v, out)
        ctx.dim = dim
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        v, out = ctx.saved_tensors
        # the comparison written straight into floats: 3x faster on a CPU than a bool mask converted afterwards
        return torch.eq(v, out.unsqueeze(ctx.dim), out=torch.empty_like(v)).mul_(grad.unsqueeze(ctx.dim)), None


def max_over(v: torch.Tensor, dim: int) -> torch.Tensor:
    """``v.amax(dim)`` with a cheaper backward (see :class:`_MaxOver`)."""
    return _MaxOver.apply(v, dim)


class Maxout(nn.Module):
    """A fully connected maxout layer: ``units`` outputs, each the max of ``pieces`` linear pieces.

    The linear outputs are laid out piece-major ([pieces, units]), so the max runs over a middle dimension
    of contiguous rows, the fastest layout on CPU.
    """

    def __init__(self, d_in: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(d_in, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_over(self.linear(x).view(x.shape[0], self.pieces, self.units), 1)


def maxout_mlp(d_in: int, hidden: Sequence[int], pieces: int, d_out: int = 1, dropout: float = 0.0) -> nn.Sequential:
    """Maxout layers of ``hidden`` units then a linear output (a discriminator's logit); dropout on layer inputs."""
    layers: list[nn.Module] = []
    for i, units in enumerate(hidden):
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(Maxout(d_in if i == 0 else hidden[i - 1], units, pieces))
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden[-1] if hidden else d_in, d_out))
    return nn.Sequential(*layers)


class ConvMaxout(nn.Module):
    """Max over groups of ``pieces`` consecutive channels: C channels in, C / pieces out (the ALI code's ``ConvMaxout``)."""

    def __init__(self, pieces: int):
        super().__init__()
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return max_over(x.view(b, c // self.pieces, self.pieces, h, w), 2)


class ConvBlock(nn.Sequential):
    """[Dropout on the input] → (transposed) conv → [BN] → activation; ``pre_activation`` exposes the conv/BN output.

    ``act`` ``maxout`` applies :class:`ConvMaxout` with ``pieces``. A conv followed by batch norm has no bias.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0, bn: bool = False,
                 act: str = "lrelu", dropout: float = 0.0, transpose: bool = False, slope: float = 0.2,
                 pieces: int = 2, bias: bool | None = None):
        conv = nn.ConvTranspose2d if transpose else nn.Conv2d
        layers = [nn.Dropout(dropout)] if dropout else []
        layers.append(conv(c_in, c_out, kernel, stride, padding, bias=not bn if bias is None else bias))
        if bn:
            layers.append(nn.BatchNorm2d(c_out, momentum=BN_MOMENTUM))
        layers.append(ConvMaxout(pieces) if act == "maxout" else activation(act, slope))
        super().__init__(*layers)

    def forward_with_pre_activation(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, the input of the activation): the encoder features of the L2-SVM protocol are the latter."""
        *body, act = self
        for layer in body:
            x = layer(x)
        return act(x), x


class UntiedBias(nn.Module):
    """A per-position bias of a given shape (the ALI decoder's output bias with ``tied_biases=False``)."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(*shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


@torch.no_grad()
def init_normal_(module: nn.Module, std: float) -> nn.Module:
    """Weights of linear and conv layers ~ N(0, std²), their biases and :class:`UntiedBias` 0; batch norm γ = 1, β = 0."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            m.weight.normal_(0.0, std)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.weight.fill_(1.0)
            m.bias.zero_()
        elif isinstance(m, UntiedBias):
            m.bias.zero_()
    return module
