"""A new model in 30 lines: a fully visible sigmoid belief net (logistic autoregressive model).

    genbench compare model=examples/fvsbn.py:FVSBN table=binary-baselines

p(x) = Π_d Bernoulli(x_d | σ(b_d + Σ_{j<d} W_dj x_j)); exact log_prob, sequential sampling.
"""

import lightning as L
import torch
import torch.nn.functional as F


class FVSBN(L.LightningModule):
    supported_spaces = ("binary",)

    def __init__(self, info, lr: float = 1e-2):
        super().__init__()
        self.shape, d, self.lr = info.shape, info.dim, lr
        self.weight = torch.nn.Parameter(torch.zeros(d, d))
        self.bias = torch.nn.Parameter(torch.logit(info.train_mean.flatten().clamp(0.01, 0.99)))
        self.register_buffer("mask", torch.tril(torch.ones(d, d), diagonal=-1))

    def logits(self, x):
        return x @ (self.weight * self.mask).T + self.bias

    def log_prob(self, x):
        x = x.flatten(1)
        return -F.binary_cross_entropy_with_logits(self.logits(x), x, reduction="none").sum(1)

    def training_step(self, x, _):
        loss = -self.log_prob(x).mean()
        self.log("train/nll", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    @torch.no_grad()
    def sample(self, n):
        x = torch.zeros(n, self.bias.numel(), device=self.bias.device)
        for d in range(x.shape[1]):  # one dimension at a time: the model is sequential by definition
            x[:, d] = torch.bernoulli(torch.sigmoid(self.logits(x)[:, d]))
        return x.reshape(n, *self.shape)
