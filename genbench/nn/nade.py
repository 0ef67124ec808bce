"""NADE's conditionals (Larochelle & Murray 2011): the weight-sharing recurrence in O(HD) per example.

In a fixed order, p(x_d = 1 | x_<d) = σ(b_d + V_d · σ(a_d)) with the running pre-activation
a_1 = c, a_{d+1} = a_d + W_{:,d} x_d: the hidden layers of the D conditionals share W, so all of them cost
O(HD) instead of the O(HD²) of D separate networks (:func:`nade_logits_naive`, kept as the reference the tests
and ``make bench`` compare against). W is H × D, c ∈ R^H, V is D × H, b ∈ R^D; x is [B, D] in the model's order.
"""

from __future__ import annotations

import torch

BLOCK = 16
"""Pixels per step of the running pre-activation. Inside a block a_d is a cumulative sum over the block's
[B, 16, H] contributions; across blocks it is carried. One cumulative sum over all D (a [B, D, H] tensor per
operation) gives the same numbers but measured 2.5× slower on one core (B = 100, D = 784, H = 500), because its
tensors do not stay in cache."""


def nade_logits(x: torch.Tensor, W: torch.Tensor, c: torch.Tensor, V: torch.Tensor,
                block: int = BLOCK) -> torch.Tensor:
    """V_d · σ(a_d) for every d, [B, D] (add b for the logits): a_d = c + Σ_{j<d} W_{:,j} x_j, every operation
    batched over examples × pixels of a block × hidden units; differentiable in x, W, c and V."""
    Wt = W.t()
    carry = c.expand(x.shape[0], -1)  # a at the block's first pixel
    out = []
    for s in range(0, x.shape[1], block):
        xs, ws = x[:, s:s + block], Wt[s:s + block]
        # a over the block: the carry, then + W_j x_j for each pixel j before the block's last, summed in order
        a = torch.cat([carry.unsqueeze(1), xs[:, :-1].unsqueeze(2) * ws[:-1]], 1).cumsum(1)  # [B, k, H]
        carry = a[:, -1] + xs[:, -1:] * ws[-1]
        out.append(torch.einsum("bkh,kh->bk", torch.sigmoid(a), V[s:s + block]))
    return torch.cat(out, 1)


def nade_logits_naive(x: torch.Tensor, W: torch.Tensor, c: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """The same as :func:`nade_logits` with each a_d computed from scratch, c + W (x ⊙ 1[j < d]): O(HD²) per example
    (a [B, D, D] masked input times W^T). The reference for the recurrence, not for use."""
    d = x.shape[1]
    below = torch.ones(d, d, dtype=x.dtype, device=x.device).tril(-1)  # row d: the pixels j < d
    a = (x.unsqueeze(1) * below) @ W.t() + c  # [B, D, H]
    return (torch.sigmoid(a) * V).sum(-1)
