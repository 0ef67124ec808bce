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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError

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
