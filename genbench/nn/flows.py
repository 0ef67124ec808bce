"""Bijective layers for NICE and Real NVP (Dinh 2018, ch. 5), each with its log-determinant and inverse.

Every layer maps data to latent (the thesis' "unmixing function" f):
``forward(x) -> (y, logdet)`` with ``logdet[b] = log|det ∂y_b/∂x_b|`` per example, and
``inverse(y) -> x``. A density is then ``log p(x) = log p_Z(f(x)) + Σ logdet`` (§5.1.1).

* :class:`Coupling`: y₂ = (x₂ + t(x₁)) ⊙ exp(s(x₁)), the thesis' form (§5.1.2; the official code's
  ``res += shift; res *= exp(log_rescaling)``), log-det Σ s. ``additive=True`` is NICE's s = 0. The scale is
  bounded as s = λ·tanh(ŝ) with one learned scalar λ per coupling (the official code's ``rescaling_scale``):
  an unbounded exp(s) is what makes affine couplings blow up early in training.
* Partitions (x₁, x₂) of a coupling: :class:`IndexPartition` (vectors: alternating odd/even components),
  :class:`CheckerboardPartition` (images, by pixel parity; the mask is also fed to the s/t network as an extra
  channel, as in the official code) and :class:`ChannelPartition` (images, first/second half of the channels).
* :class:`Squeeze` (2×2×c → 1×1×4c, a permutation) and the multi-scale :class:`MultiScaleFlow`, which factors
  out half of the channels after each scale; the factored-out parts join the latent vector, so the prior scores
  them exactly like the last scale's output.
* :class:`BatchNormFlow`: batch normalization as a diagonal affine bijection (§5.3), log-det −½ Σ log(σ̂² + ν);
  batch statistics in training, running averages in evaluation.
* :class:`DiagonalScaling` (NICE's exp(γ) layer), data transforms (:class:`Rescale`, :class:`Logit`,
  :class:`ZCA`), priors (:class:`StandardNormal`, :class:`StandardLogistic`) and the s/t networks
  (:class:`MLP`, :class:`ResNet`, optionally weight-normalized).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from ..core.errors import ConfigError
from ..core.transforms import inverse_logit_transform, logit_transform, rescale


def _zeros(x: torch.Tensor) -> torch.Tensor:
    return x.new_zeros(x.shape[0])


class FlowSequence(nn.Module):
    """A composition of flow layers: log-dets add up, the inverse runs the layers backwards."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        logdet = _zeros(x)
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y):
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


@contextlib.contextmanager
def evaluating(module: nn.Module):
    """Run ``module`` in evaluation mode (batch norm on running averages), restoring its mode afterwards.

    A batch-statistics layer couples the examples of a batch, so a per-example density exists only with fixed
    statistics: the models score and sample under this context whatever their mode.
    """
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)


# -- partitions of a coupling ---------------------------------------------------------------------------------------

class IndexPartition(nn.Module):
    """Vectors [B, D]: x₁ = the components of one parity (``parity`` 0: even indices), x₂ = the others.

    Strided views split (no copy, no index kernel); merging interleaves by one ``stack`` when D is even."""

    def __init__(self, dim: int, parity: int):
        super().__init__()
        self.parity, self.dim = parity, dim
        self.sizes = (len(range(parity, dim, 2)), len(range(1 - parity, dim, 2)))

    def split(self, x):
        return x[:, self.parity::2], x[:, 1 - self.parity::2]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for old in ("idx1", "idx2", "order"):  # index buffers of checkpoints from before the strided split
            state_dict.pop(prefix + old, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def merge(self, x1, x2):
        even, odd = (x1, x2) if self.parity == 0 else (x2, x1)
        if self.dim % 2 == 0:
            return torch.stack([even, odd], 2).flatten(1)
        return torch.cat([torch.stack([even[:, :-1], odd], 2).flatten(1), even[:, -1:]], 1)

    def restrict(self, v):
        return v

    def condition(self, x1):
        return x1


class CheckerboardPartition(nn.Module):
    """Images [B, C, H, W]: x₁ = b ⊙ x with b = 1 where (i + j) % 2 == parity, x₂ = (1 − b) ⊙ x (full-size tensors)."""

    def __init__(self, height: int, width: int, parity: int):
        super().__init__()
        i, j = torch.arange(height)[:, None], torch.arange(width)[None, :]
        self.register_buffer("mask", ((i + j) % 2 == parity).float()[None, None])

    def split(self, x):
        return x * self.mask, x * (1 - self.mask)

    def merge(self, x1, x2):
        return x1 * self.mask + x2 * (1 - self.mask)

    def restrict(self, v):
        return v * (1 - self.mask)

    def condition(self, x1):
        """x₁ and the mask as one more channel: a zero in x₁ then means "masked", not a pixel value of 0."""
        return torch.cat([x1, self.mask.expand(x1.shape[0], 1, *x1.shape[2:]).to(x1.dtype)], 1)


class ChannelPartition(nn.Module):
    """Images [B, C, H, W]: x₁ = one half of the channels (``first``: channels [0, C/2)), x₂ = the other half."""

    def __init__(self, first: bool):
        super().__init__()
        self.first = first

    def split(self, x):
        a, b = x.chunk(2, dim=1)
        return (a, b) if self.first else (b, a)

    def merge(self, x1, x2):
        return torch.cat([x1, x2] if self.first else [x2, x1], 1)

    def restrict(self, v):
        return v

    def condition(self, x1):
        return x1


# -- couplings ----------------------------------------------------------------------------------------------------------

class Coupling(nn.Module):
    """y₁ = x₁, y₂ = (x₂ + t(x₁)) ⊙ exp(s(x₁)) with s = λ·tanh(ŝ); additive (NICE): y₂ = x₂ + t(x₁).

    ``net`` maps ``partition.condition(x₁)`` to t (additive) or to (ŝ, t) stacked along dim 1, each shaped like x₂.
    ``scale_init`` is λ's initial value. Our s/t networks start with a zero output layer (the coupling starts at
    the identity), so λ must start non-zero: with λ = 0 and ŝ ≡ 0, ∂s/∂λ = tanh(ŝ) = 0 and ∂s/∂ŝ = λ = 0, an exact
    fixed point at which the coupling stays additive forever. The official code starts checkerboard λ at 0 but
    its last layer random; we keep the zero layer and start every λ at 1 (on digits this also trained better).
    """

    def __init__(self, partition: nn.Module, net: nn.Module, additive: bool = False, scale_init: float = 1.0):
        super().__init__()
        self.partition, self.net, self.additive = partition, net, additive
        if not additive:
            if scale_init == 0 and getattr(net, "starts_at_zero", False):
                raise ValueError("scale_init = 0 with a zero-initialized s/t network never trains s (a fixed point)")
            self.s_scale = nn.Parameter(torch.tensor(float(scale_init)))

    def _shift_and_log_scale(self, x1):
        h = self.net(self.partition.condition(x1))
        if self.additive:
            return self.partition.restrict(h), None
        raw, t = h.chunk(2, dim=1)
        return self.partition.restrict(t), self.partition.restrict(self.s_scale * torch.tanh(raw))

    def forward(self, x):
        x1, x2 = self.partition.split(x)
        t, s = self._shift_and_log_scale(x1)
        if s is None:
            return self.partition.merge(x1, x2 + t), _zeros(x)
        return self.partition.merge(x1, (x2 + t) * torch.exp(s)), s.flatten(1).sum(1)

    def inverse(self, y):
        y1, y2 = self.partition.split(y)
        t, s = self._shift_and_log_scale(y1)
        x2 = (y2 if s is None else y2 * torch.exp(-s)) - t
        return self.partition.merge(y1, x2)


class TwoNets(nn.Module):
    """Separate s and t networks (as in the lecture notes' 2D Real NVP), outputs stacked as (ŝ, t)."""

    def __init__(self, s_net: nn.Module, t_net: nn.Module):
        super().__init__()
        self.s_net, self.t_net = s_net, t_net
        self.starts_at_zero = getattr(s_net, "starts_at_zero", False)

    def forward(self, x):
        return torch.cat([self.s_net(x), self.t_net(x)], 1)


# -- other bijections ---------------------------------------------------------------------------------------------

SQUEEZE_ORDER = (0, 3, 1, 2)
"""Squeeze's channel groups, by position in the 2×2 block (k = 2i + j): (0,0), (1,1), (0,1), (1,0).
The first half of the output channels is then one checkerboard colour, so factoring out the second half after a
squeeze keeps a checkerboard-complementary half (as the official ``squeeze_2x2_ordered``)."""


class Squeeze(nn.Module):
    """[B, C, H, W] → [B, 4C, H/2, W/2]: each 2×2×C block becomes a 1×1×4C vector; a permutation, log-det 0."""

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(b, 4, c, h // 2, w // 2)
        return x[:, list(SQUEEZE_ORDER)].reshape(b, 4 * c, h // 2, w // 2), _zeros(x)

    def inverse(self, y):
        b, c4, h, w = y.shape
        c = c4 // 4
        inv = sorted(range(4), key=SQUEEZE_ORDER.__getitem__)
        y = y.reshape(b, 4, c, h, w)[:, inv].reshape(b, 2, 2, c, h, w)
        return y.permute(0, 3, 4, 1, 5, 2).reshape(b, c, 2 * h, 2 * w)


class BatchNormFlow(nn.Module):
    """x ↦ (x − μ̂) / √(σ̂² + ν) per feature (dim 1; images: per channel over batch and positions), Dinh §5.3.

    Log-det −½ Σ_i log(σ̂²_i + ν) (summed over every position of a feature). Training: the batch's statistics
    (gradients flow through them, as in Ioffe & Szegedy), folded into running averages with ``momentum``
    (0.1: the official code's ``mean -= 0.1 (mean − batch mean)``); evaluation: the running averages.
    In training mode the inverse undoes the map of the last batch seen (its statistics are kept), so the layer
    is a bijection in both modes. No learned affine part (as the official code; the couplings follow).
    ν = ``eps`` = 1e-4 is the official code's value (the thesis does not state it).
    """

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-4):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def _view(self, v, x):
        return v.reshape(1, -1, *([1] * (x.ndim - 2)))

    def forward(self, x):
        positions = x.numel() // (x.shape[0] * x.shape[1])
        if self.training:  # the batch's statistics, with the backward written out (one node instead of ~15)
            y, log_var_sum, mean, var = _Normalize.apply(x, self.eps)
            with torch.no_grad():
                torch._foreach_lerp_([self.running_mean, self.running_var],
                                     [mean.to(self.running_mean), var.to(self.running_var)], self.momentum)
            self._batch = (mean, var)
        else:
            var = self.running_var + self.eps
            y = (x - self._view(self.running_mean, x)) * self._view(var.rsqrt(), x)
            log_var_sum = var.log().sum()
        return y, (-0.5 * positions * log_var_sum).expand(x.shape[0])

    def inverse(self, y):
        if self.training and self._batch is None:
            raise RuntimeError("BatchNormFlow.inverse in training mode needs a forward pass first (its batch statistics)")
        mean, var = self._batch if self.training else (self.running_mean, self.running_var)
        return y * torch.sqrt(self._view(var, y) + self.eps) + self._view(mean, y)


class _Normalize(torch.autograd.Function):
    """x ↦ (y = (x − μ) r, Σ log(σ² + ν), μ, σ²) per feature (dim 1) over the batch and positions, r = (σ² + ν)^−½.

    Backward, with n values per feature, g the gradient of Σ log(σ² + ν) (∂σ²/∂x = 2y/(rn)):
    ∂L/∂x = (r/n) (n ∂L/∂y − Σ ∂L/∂y − y (Σ y ∂L/∂y − 2g)), the batch-norm backward plus the log-det's term.
    """

    @staticmethod
    def forward(ctx, x, eps):
        dims = [0, *range(2, x.ndim)]
        var, mean = torch.var_mean(x, dims, correction=0, keepdim=True)
        r = (var + eps).rsqrt()
        y = (x - mean) * r
        ctx.save_for_backward(y, r)
        mean, var = mean.flatten(), var.flatten()
        ctx.mark_non_differentiable(mean, var)
        return y, -2.0 * r.log().sum(), mean, var

    @staticmethod
    def backward(ctx, dy, g, _mean, _var):
        y, r = ctx.saved_tensors
        dims, n = [0, *range(2, y.ndim)], y.numel() // r.numel()
        dy = torch.zeros_like(y) if dy is None else dy
        s_y = (y * dy).sum(dims, keepdim=True)
        if g is not None:
            s_y = s_y - 2.0 * g
        return (r / n) * (n * dy - dy.sum(dims, keepdim=True) - y * s_y), None


class DiagonalScaling(nn.Module):
    """NICE's last layer y = x ⊙ exp(γ) (additive couplings preserve volume; this one does not), log-det Σ γ."""

    def __init__(self, shape):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(shape))

    def forward(self, x):
        return x * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, y):
        return y * torch.exp(-self.log_scale)


class Rescale(nn.Module):
    """y = scale·x + shift (pixel units [0, L) → [0, 1) or [−1, 1)), via :func:`genbench.core.transforms.rescale`."""

    def __init__(self, scale: float, shift: float = 0.0):
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x):
        return rescale(x, self.scale, self.shift)

    def inverse(self, y):
        return (y - self.shift) / self.scale


class Logit(nn.Module):
    """y = logit(α + (1 − 2α) x) on [0, 1) (Real NVP's bounded support; α = 0.05), via ``logit_transform``.

    The symmetric form of the official code (``data_constraint = 0.9``), p ∈ [α, 1 − α]; the thesis prints
    α + (1 − α) x. Both are bijections with exact log-dets; they give slightly different bits/dim.
    """

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return logit_transform(x, self.alpha)

    def inverse(self, y):
        return inverse_logit_transform(y, self.alpha)


class ZCA(nn.Module):
    """ZCA whitening y = (x − μ) U diag((λ + ε)^−½) Uᵀ of flat data [B, D], fitted on training data by :meth:`fit`.

    NICE whitens TFD, SVHN and CIFAR-10 (Table 5.1) and its bits/dim leave this layer's Jacobian out:
    ``include_logdet=False`` reproduces that convention (the score is then a density of the *whitened* data, not
    of the pixels, and must be labelled so); ``True`` keeps log p a density of the pixels. ``bias`` ε regularizes
    the small eigenvalues (our choice; the thesis does not state it). Unfitted, the layer is the identity.
    """

    def __init__(self, dim: int, bias: float = 0.1, include_logdet: bool = True):
        super().__init__()
        self.bias, self.include_logdet = bias, include_logdet
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("eigvecs", torch.eye(dim))
        self.register_buffer("eigvals", torch.full((dim,), 1.0 - bias))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, data: torch.Tensor, prepare=lambda x: x, chunk: int = 5000) -> None:
        """Fit on the rows of ``data`` after ``prepare`` (e.g. dequantize and rescale), a chunk at a time."""
        n, total, outer = 0, 0.0, 0.0
        for i in range(0, len(data), chunk):
            x = prepare(data[i : i + chunk]).flatten(1).double()
            n, total, outer = n + len(x), total + x.sum(0), outer + x.T @ x
        mean = total / n
        cov = outer / n - torch.outer(mean, mean)
        vals, vecs = torch.linalg.eigh(cov)
        self.mean.copy_(mean)
        self.eigvecs.copy_(vecs)
        self.eigvals.copy_(vals.clamp_min(0))
        self.fitted.fill_(True)

    def _scales(self):
        return torch.rsqrt(self.eigvals + self.bias)

    def forward(self, x):
        y = ((x - self.mean) @ self.eigvecs * self._scales()) @ self.eigvecs.T
        logdet = torch.log(self._scales()).sum() if self.include_logdet else x.new_zeros(())
        return y, logdet.to(x.dtype).expand(x.shape[0])

    def inverse(self, y):
        return ((y @ self.eigvecs) / self._scales()) @ self.eigvecs.T + self.mean


# -- priors ---------------------------------------------------------------------------------------------------------------

class StandardNormal(nn.Module):
    """N(0, I): log p(z) = −½ Σ (z² + log 2π)."""

    def log_prob(self, z):
        return -0.5 * (z.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)

    def sample(self, shape, device=None, generator=None):
        return torch.randn(shape, device=device, generator=generator)


class StandardLogistic(nn.Module):
    """Standard logistic p(z) = σ(z) σ(−z) per component (NICE's prior): log p(z) = −softplus(z) − softplus(−z)."""

    def log_prob(self, z):
        return -(F.softplus(z) + F.softplus(-z)).flatten(1).sum(1)

    def sample(self, shape, device=None, generator=None):
        u = torch.rand(shape, device=device, generator=generator).clamp(1e-7, 1 - 1e-7)
        return torch.log(u) - torch.log1p(-u)


PRIORS = {"gaussian": StandardNormal, "logistic": StandardLogistic}


def build_prior(name: str) -> nn.Module:
    if name not in PRIORS:
        raise ConfigError(f"unknown prior {name!r}; valid: {', '.join(PRIORS)}")
    return PRIORS[name]()


# -- s/t networks ----------------------------------------------------------------------------------------------------------

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def _maybe_wn(module: nn.Module, on: bool) -> nn.Module:
    return _weight_norm(module) if on else module


def _zero_output(layer: nn.Module) -> None:
    """Start a coupling at the identity: the network's last layer outputs 0 (g = 0 under weight norm)."""
    with torch.no_grad():
        if hasattr(layer, "parametrizations"):
            layer.parametrizations.weight.original0.zero_()
        else:
            layer.weight.zero_()
        layer.bias.zero_()


class MLP(nn.Sequential):
    """in → [Linear → activation] × ``layers`` → Linear → out, the last layer zero-initialized unless
    ``zero_output`` is false (then PyTorch's default init, see :class:`genbench.models.flows.NICE`).

    NICE's t network is this with ReLU and a linear output (§5.2); ``weight_norm`` applies Salimans & Kingma's
    reparametrization to every linear layer.
    """

    def __init__(self, inputs: int, outputs: int, hidden: int, layers: int, activation: str = "relu",
                 weight_norm: bool = False, zero_output: bool = True):
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        sizes = [inputs] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:]):
            mods += [_maybe_wn(nn.Linear(a, b), weight_norm), ACTIVATIONS[activation]()]
        mods.append(_maybe_wn(nn.Linear(sizes[-1], outputs), weight_norm))
        super().__init__(*mods)
        self.starts_at_zero = zero_output  # its output starts at 0: a Coupling on it refuses λ = 0 (a fixed point)
        if zero_output:
            _zero_output(mods[-1])


class ResidualBlock(nn.Module):
    """h + conv(relu(bn(conv(relu(bn(h)))))) with 3×3 convolutions (the official code's block; BN ε = 1e-4)."""

    def __init__(self, features: int, weight_norm: bool = True):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(features, eps=1e-4), nn.ReLU(),
            _maybe_wn(nn.Conv2d(features, features, 3, padding=1), weight_norm),
            nn.BatchNorm2d(features, eps=1e-4), nn.ReLU(),
            _maybe_wn(nn.Conv2d(features, features, 3, padding=1), weight_norm))

    def forward(self, h):
        return h + self.body(h)


class ResNet(nn.Sequential):
    """Real NVP's s/t network (§5.3): 3×3 conv in → ``blocks`` residual blocks → BN → ReLU → 1×1 conv out (zero-init).

    The official code also sums 1×1 "skip" convolutions of every block into the output; we leave them out
    (a plain ResNet, as the thesis describes it).
    """

    starts_at_zero = True  # its output starts at 0: a Coupling on it refuses λ = 0 (a fixed point)

    def __init__(self, inputs: int, outputs: int, features: int, blocks: int, weight_norm: bool = True):
        out = _maybe_wn(nn.Conv2d(features, outputs, 1), weight_norm)
        super().__init__(_maybe_wn(nn.Conv2d(inputs, features, 3, padding=1), weight_norm),
                         *[ResidualBlock(features, weight_norm) for _ in range(blocks)],
                         nn.BatchNorm2d(features, eps=1e-4), nn.ReLU(), out)
        _zero_output(out)


def weight_scales(module: nn.Module) -> list[nn.Parameter]:
    """The parameters Real NVP's L2 penalty applies to: weight-norm magnitudes g and the couplings' tanh scales λ
    (the official code regularizes both ``magnitude`` and ``rescaling_scale``)."""
    return [p for n, p in module.named_parameters()
            if n.endswith("parametrizations.weight.original0") or n.endswith("s_scale")]


# -- architectures -----------------------------------------------------------------------------------------------------

def coupling_stack(dim: int, couplings: int, hidden: int, layers: int, additive: bool, activation: str = "relu",
                   weight_norm: bool = False, batch_norm: bool = False, separate_st: bool = False,
                   zero_output: bool = True) -> list[nn.Module]:
    """Couplings with MLP networks on vectors [B, D], alternating which parity of the components is transformed;
    ``zero_output: false`` leaves the additive (NICE) networks' output layers at PyTorch's default init."""
    mods: list[nn.Module] = []
    for k in range(couplings):
        part = IndexPartition(dim, parity=k % 2)
        d1, d2 = part.sizes
        if additive:
            net = MLP(d1, d2, hidden, layers, activation, weight_norm, zero_output=zero_output)
        elif separate_st:
            net = TwoNets(MLP(d1, d2, hidden, layers, activation, weight_norm),
                          MLP(d1, d2, hidden, layers, activation, weight_norm))
        else:
            net = MLP(d1, 2 * d2, hidden, layers, activation, weight_norm)
        mods.append(Coupling(part, net, additive=additive))
        if batch_norm:
            mods.append(BatchNormFlow(dim))
    return mods


class MultiScaleFlow(nn.Module):
    """Real NVP's multi-scale architecture (§5.3; Dinh et al. 2017 §3.6): images [B, C, H, W] → latent [B, D].

    Each scale but the last: 3 affine couplings with alternating checkerboard masks, a squeeze, 3 with alternating
    channel-wise masks, then half of the channels is factored out (it goes straight to the latent vector, scored
    by the prior) and the other half goes on to the next scale. The last scale: 4 checkerboard couplings. The s/t
    ResNets have ``features`` maps at the first scale, doubled after each squeeze (the channel-wise couplings of a
    scale run after its squeeze, so they get twice the scale's maps, as in the official code). ``batch_norm`` adds
    a :class:`BatchNormFlow` after every coupling. The latent is the concatenation, in order, of the factored-out
    parts and the last scale's output, flattened. Every coupling starts at the identity with λ = 1 (see
    :class:`Coupling` for why not the official code's λ = 0 on checkerboard couplings).
    """

    def __init__(self, shape, scales: int = 2, blocks: int = 8, features: int = 64, batch_norm: bool = True,
                 weight_norm: bool = True):
        super().__init__()
        c, h, w = shape
        if scales < 1 or h % 2 ** (scales - 1) or w % 2 ** (scales - 1):
            raise ConfigError(f"{scales} scales need H and W divisible by 2^{scales - 1}; the images are {h}x{w}")
        levels, self.factored = [], []
        for i in range(scales):
            f = features * 2 ** i
            last = i == scales - 1

            def coupling(part, channels, inputs, outputs, maps):
                net = ResNet(inputs, 2 * outputs, maps, blocks, weight_norm)
                return [Coupling(part, net, scale_init=1.0)] + ([BatchNormFlow(channels)] if batch_norm else [])

            mods = []
            for k in range(4 if last else 3):
                mods += coupling(CheckerboardPartition(h, w, k % 2), c, c + 1, c, f)
            if not last:
                mods.append(Squeeze())
                c, h, w = 4 * c, h // 2, w // 2
                for k in range(3):
                    mods += coupling(ChannelPartition(first=k % 2 == 0), c, c // 2, c // 2, 2 * f)
                c //= 2
                self.factored.append((c, h, w))
            levels.append(FlowSequence(*mods))
        self.levels = nn.ModuleList(levels)
        self.final = (c, h, w)

    def forward(self, x):
        zs, logdet = [], _zeros(x)
        for level in self.levels[:-1]:
            x, ld = level(x)
            x, z = x.chunk(2, dim=1)
            zs.append(z.flatten(1))
            logdet = logdet + ld
        x, ld = self.levels[-1](x)
        zs.append(x.flatten(1))
        return torch.cat(zs, 1), logdet + ld

    def split_latent(self, z):
        """The latent's parts by scale: the factored-out tensors, then the last scale's output."""
        shapes = [*self.factored, self.final]
        parts = z.split([math.prod(s) for s in shapes], dim=1)
        return [p.reshape(-1, *s) for p, s in zip(parts, shapes)]

    def inverse(self, z):
        *outs, h = self.split_latent(z)
        h = self.levels[-1].inverse(h)
        for level, out in zip(reversed(self.levels[:-1]), reversed(outs)):
            h = level.inverse(torch.cat([h, out], 1))
        return h
