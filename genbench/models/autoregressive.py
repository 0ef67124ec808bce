"""The autoregressive family: NADE, MADE and PixelCNN, each an exact pmf p(x) = Π_d p(x_d | x_<d).

* :class:`NADE` (Larochelle & Murray 2011): one sigmoid hidden layer shared by the D conditionals through the
  running pre-activation (:mod:`genbench.nn.nade`, O(HD) per example), raster pixel order.
* :class:`MADE` (Germain et al. 2015): a masked MLP (:mod:`genbench.nn.masked`), 1 or more hidden layers and the
  direct input → output layer; order- and connectivity-agnostic training over a fixed pool of ``masks`` mask sets
  (input order and hidden degrees), the minibatches cycling through the pool as the authors' code does; at test
  time the ensemble p(x) = (1/K) Σ_k p_k(x) over the first K = ``ensemble`` sets (default: the whole pool).
* :class:`PixelCNN` (van den Oord et al. 2016): a 7×7 mask-A convolution, residual blocks with 3×3 mask-B
  convolutions and a 1×1 head, with a Bernoulli output on binary data and, on L-level data, an L-way softmax
  (256-way on 8-bit images) or a mixture of discretized logistics (``output: logistic``). The plain masked stack
  keeps its blind spot, as the model behind the published 81.30 nats had it
  (:func:`genbench.nn.masked.pixelcnn_receptive_field` says which pixels it misses).

All three have ``log_prob`` (exact, nats; a pmf on the integers, so ``discrete_log_prob``) and ``sample(n)``,
batched over the n examples and sequential over pixels. They train on the mean NLL of a minibatch, log the
validation NLL (``val/nll``, nats) every epoch when the data has a validation split, keep the parameters of the
epoch with the lowest one and load them back when training ends (:class:`BestValidation`), so the model genbench
saves and scores is the best-validation one; ``patience`` (epochs without improvement) stops training early
through Lightning's ``EarlyStopping``.
"""

from __future__ import annotations

import math
from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping
from torch import nn

from ..core.bernoulli import base_rates, bernoulli
from ..core.errors import ConfigError
from ..data.base import DataInfo
from ..nn.flows import evaluating
from ..nn.masked import (BernoulliPixels, CategoricalPixels, LogisticMixturePixels, MaskedMLP, PixelCNNNet,
                         input_degrees, made_degrees, made_masks)
from ..nn.nade import nade_logits
from ..nn.vae import BernoulliObservation
from .epoch_means import EpochMeans

VALIDATION_METRIC = "val/nll"


class BestValidation(L.Callback):
    """Keeps a copy of the parameters of the epoch with the lowest validation NLL and loads it back when training
    ends (also after early stopping), so the saved and scored model is that epoch's. Its state (best value, its
    epoch, the parameters) is part of every Lightning checkpoint: a resumed training keeps its best epoch."""

    def __init__(self, monitor: str = VALIDATION_METRIC):
        self.monitor, self.best, self.epoch, self.state = monitor, math.inf, -1, None

    def on_validation_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or not float(value) < self.best:
            return
        self.best, self.epoch = float(value), trainer.current_epoch
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_train_end(self, trainer, pl_module):
        if self.state is None:
            return
        pl_module.load_state_dict(self.state)
        for logger in trainer.loggers:  # the learning curve's CSV says which epoch was kept
            logger.log_metrics({"val/best_nll": self.best, "val/best_epoch": self.epoch}, step=trainer.global_step)

    def state_dict(self):
        return {"best": self.best, "epoch": self.epoch, "state": self.state}

    def load_state_dict(self, state):
        self.best, self.epoch, self.state = state["best"], state["epoch"], state["state"]


OPTIMIZERS = ("adam", "adagrad", "rmsprop", "sgd")


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """``adam`` (PyTorch defaults), ``adagrad`` (ε = 1e-6, the MADE code's), ``rmsprop`` (PyTorch defaults; the
    PixelRNN paper's optimizer), ``sgd`` (Nesterov momentum 0.9, the NADE JMLR code's). Fused where PyTorch has the
    kernel (all but RMSprop): one pass over all parameters, 1.7-2.5x faster per step on a CPU than the loop."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, fused=True)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=1e-6, fused=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, fused=True)
    raise ConfigError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


class Autoregressive(EpochMeans, L.LightningModule):
    """What the three models share: training on the mean NLL, the validation NLL, best-epoch restore and early
    stopping, the optimizer. A subclass gives ``log_prob`` (and ``training_log_prob`` if training scores differently)."""

    supported_spaces = ("binary",)
    discrete_log_prob = True
    eval_batch = 100
    """Examples per network pass when scoring without gradients (the evaluator hands over 1,000): NADE's
    [examples, 16, H] blocks stay in cache (1.7× faster than 1,000 at once, measured), and a 256-way softmax over
    CIFAR-10's 3,072 pixels takes 3 MB per image."""

    def __init__(self, info: DataInfo, optimizer: str, lr: float, patience: int | None):
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if patience is not None and int(patience) < 1:
            raise ConfigError(f"patience (epochs without a better validation NLL before stopping) must be >= 1 or "
                              f"null (never stop early), got {patience}")
        self.shape, self.dim = tuple(info.shape), info.dim
        self.optimizer_name, self.lr, self.patience = optimizer, lr, patience

    def training_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_prob(x)

    def _scored(self, fn, x: torch.Tensor) -> torch.Tensor:
        """``fn`` on chunks of :attr:`eval_batch` examples when no gradient is taken, else on x at once."""
        if torch.is_grad_enabled() or len(x) <= self.eval_batch:
            return fn(x)
        return torch.cat([fn(xs) for xs in x.split(self.eval_batch)])

    def training_step(self, batch, batch_idx):
        nll = -self.training_log_prob(batch)
        self.epoch_mean("train/nll", nll, prog_bar=True)
        return nll.mean()

    def validation_step(self, batch, batch_idx):
        self.log(VALIDATION_METRIC, -self.log_prob(batch).mean(), on_step=False, on_epoch=True, batch_size=len(batch))

    def configure_callbacks(self):
        callbacks = [BestValidation()]
        if self.patience is not None:
            callbacks.append(EarlyStopping(VALIDATION_METRIC, patience=int(self.patience), mode="min", strict=False,
                                           check_on_train_epoch_end=False))
        return callbacks

    def configure_optimizers(self):
        return make_optimizer(self.optimizer_name, self.parameters(), self.lr)


class NADE(Autoregressive):
    """NADE with ``hidden`` sigmoid units in raster order. As the NADE JMLR code: W, V ~ N(0, 0.01²), c = 0,
    b = logit of the training pixel means (clamped to [1e-3, 1 − 1e-3])."""

    def __init__(self, info: DataInfo, hidden: int = 500, optimizer: str = "adam", lr: float = 1e-3,
                 patience: int | None = 30):
        super().__init__(info, optimizer, lr, patience)
        d = self.dim
        self.W = nn.Parameter(0.01 * torch.randn(hidden, d))
        self.c = nn.Parameter(torch.zeros(hidden))
        self.V = nn.Parameter(0.01 * torch.randn(d, hidden))
        mean = info.train_mean.flatten() if info.train_mean is not None else torch.full((d,), 0.5)
        self.b = nn.Parameter(torch.logit(base_rates(mean)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """logit p(x_d = 1 | x_<d), [B, D], for x [B, ...] (differentiable in x)."""
        return nade_logits(x.flatten(1).to(self.W.dtype), self.W, self.c, self.V) + self.b

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1).to(self.W.dtype)
        return self._scored(lambda xs: BernoulliObservation().log_prob(xs, self.logits(xs)), x)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n draws, pixel by pixel: a_{d+1} = a_d + W_{:,d} x_d, O(HD) per draw."""
        x = torch.zeros(n, self.dim, device=self.W.device, dtype=self.W.dtype)
        a = self.c.expand(n, -1).clone()
        for d in range(self.dim):
            x[:, d] = bernoulli(torch.sigmoid(self.b[d] + torch.sigmoid(a) @ self.V[d]))
            a += x[:, d:d + 1] * self.W[:, d]
        return x.view(n, *self.shape)


class MADE(Autoregressive):
    """MADE with a pool of ``masks`` mask sets; see the module docstring.

    Mask set 0 has the raster order, the others random orders (the authors' code starts from the natural order
    too); each set draws its own hidden degrees. The pool (orders and degrees) is drawn from the run's seeded
    stream at construction and kept in buffers, so a saved model scores with the masks it was trained with.
    Minibatch t trains mask set t mod ``masks``. As the MADE code's best MNIST run: ReLU, orthogonal weights,
    zero biases, Adagrad (lr 0.01, ε = 1e-6), direct input → output connections.
    """

    def __init__(self, info: DataInfo, hidden: Sequence[int] = (500,), masks: int = 1, ensemble: int | None = None,
                 direct: bool = True, activation: str = "relu", optimizer: str = "adagrad", lr: float = 0.01,
                 patience: int | None = 30):
        super().__init__(info, optimizer, lr, patience)
        hidden = [int(h) for h in hidden]
        if not hidden or int(masks) < 1:
            raise ConfigError(f"MADE needs at least one hidden layer and one mask, got hidden={hidden}, masks={masks}")
        if ensemble is not None and not 1 <= int(ensemble) <= int(masks):
            raise ConfigError(f"ensemble (mask sets averaged at test time) must be in 1..masks={masks} or null "
                              f"(all of them), got {ensemble}")
        self.masks, self.ensemble = int(masks), int(ensemble or masks)
        self.direct = bool(direct)
        d = self.dim
        self.net = MaskedMLP(d, hidden, self.direct, activation)
        for m in self.net.modules():
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        orders = torch.stack([torch.arange(d) if k == 0 else torch.randperm(d) for k in range(self.masks)])
        degrees = [made_degrees(order, hidden)[1:] for order in orders]
        self.register_buffer("orders", orders)
        for layer in range(len(hidden)):
            self.register_buffer(f"degrees_{layer}", torch.stack([deg[layer] for deg in degrees]))
        self.hidden_sizes = hidden

    def mask_set(self, k: int) -> list[torch.Tensor]:
        """The masks of pool member k, built on the model's device from its degrees, in the weights' dtype."""
        degrees = [input_degrees(self.orders[k]), *(getattr(self, f"degrees_{l}")[k] for l in range(len(self.hidden_sizes)))]
        return [m.to(self.net.layers[0].weight.dtype) for m in made_masks(degrees, self.direct)]

    def logits(self, x: torch.Tensor, k: int = 0) -> torch.Tensor:
        """logit p(x_d = 1 | x before d in order k), [B, D], under mask set k (differentiable in x)."""
        return self.net(x.flatten(1).to(self.net.layers[0].weight.dtype), self.mask_set(k))

    def member_log_prob(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """log p_k(x), [B]: the model under mask set k alone."""
        x = x.flatten(1).to(self.net.layers[0].weight.dtype)
        return BernoulliObservation().log_prob(x, self.logits(x, k))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log (1/K) Σ_k p_k(x) over the first K = ``ensemble`` mask sets (K = 1: mask set 0 alone)."""
        members = torch.stack([self.member_log_prob(x, k) for k in range(self.ensemble)])
        return torch.logsumexp(members, 0) - math.log(self.ensemble)

    def training_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.member_log_prob(x, self.global_step % self.masks)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n draws from the ensemble (a uniform mixture of its members): each draw picks a member, then its pixels
        in that member's order; draws of one member are batched."""
        w = self.net.layers[0].weight
        member = torch.randint(self.ensemble, (n,), device=w.device)
        x = torch.zeros(n, self.dim, device=w.device, dtype=w.dtype)
        with evaluating(self):
            for k in member.unique().tolist():
                rows, masks = (member == k).nonzero().squeeze(1), self.mask_set(k)
                xk = x[rows]
                for d in self.orders[k].tolist():
                    xk[:, d] = bernoulli(torch.sigmoid(self.net(xk, masks)[:, d]))
                x[rows] = xk
        return x.view(n, *self.shape)


class PixelCNN(Autoregressive):
    """PixelCNN on images [C, H, W] in raster order, colours R → G → B within a pixel; see the module docstring.

    ``features`` is h (the residual stream has 2h maps), ``blocks`` the residual blocks, ``head`` the maps of the
    1×1 output layer. ``output``: ``auto`` (Bernoulli on binary data, softmax on L-level data), ``softmax`` or
    ``logistic`` (a mixture of ``components`` discretized logistics). The network sees binary pixels as 0/1 and
    L-level ones rescaled to [−1, 1]. PyTorch's default initialisation, except on binary data the output bias of
    each colour at the logit of its mean training intensity (our choice: training starts from the mean pixel rate).
    """

    supported_spaces = ("binary", "discrete")

    def __init__(self, info: DataInfo, features: int = 16, blocks: int = 7, head: int = 32, output: str = "auto",
                 components: int = 5, optimizer: str = "adam", lr: float = 1e-3, patience: int | None = 30):
        super().__init__(info, optimizer, lr, patience)
        if len(self.shape) != 3:
            raise ConfigError(f"PixelCNN models images [C, H, W]; {info.variant} has shape {self.shape}")
        space = info.space
        outputs = ("auto", "softmax", "logistic")
        if output not in outputs:
            raise ConfigError(f"unknown output {output!r}; valid: {', '.join(outputs)}")
        if space.kind == "binary" and output not in ("auto",):
            raise ConfigError(f"binary data has a Bernoulli output; output={output!r} is for L-level data "
                              f"(leave output=auto)")
        if space.kind == "binary":
            self.pixels, self.levels = BernoulliPixels(), 2
        elif output == "logistic":
            self.pixels, self.levels = LogisticMixturePixels(space.levels, components), space.levels
        else:
            self.pixels, self.levels = CategoricalPixels(space.levels), space.levels
        self.binary = space.kind == "binary"
        self.net = PixelCNNNet(self.shape[0], self.pixels.params, features, blocks, head)
        if self.binary and info.train_mean is not None:  # start at the independent-pixel model's mean rate
            with torch.no_grad():
                self.net.net[-1].bias.copy_(torch.logit(base_rates(info.train_mean.view(self.shape[0], -1).mean(1))))

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.net.net[0].weight.dtype)
        return x if self.binary else x * (2 / (self.levels - 1)) - 1

    def conditionals(self, x: torch.Tensor) -> torch.Tensor:
        """The parameters of p(x_{c,i,j} | everything before it), [B, C, P, H, W], for images x [B, C, H, W] (or a
        strip of their rows; differentiable in x)."""
        return self.net(self.to_input(x))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(len(x), *self.shape).to(self.net.net[0].weight.dtype)
        return self._scored(lambda xs: self.pixels.log_prob(xs, self.conditionals(xs)).flatten(1).sum(1), x)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n draws, pixel by pixel and colour by colour. A pixel of row i depends on at most ``rows_seen`` rows
        above it, so each step runs the network on that strip only (its outputs on row i equal the full image's)."""
        c, h, w = self.shape
        weight = self.net.net[0].weight
        x = torch.zeros(n, c, h, w, device=weight.device, dtype=weight.dtype)
        with evaluating(self):
            for i in range(h):
                top = max(0, i - self.net.rows_seen)
                for j in range(w):
                    for ch in range(c):
                        p = self.conditionals(x[:, :, top:i + 1])[:, ch, :, i - top, j]
                        x[:, ch, i, j] = self.pixels.sample(p)
        return x
