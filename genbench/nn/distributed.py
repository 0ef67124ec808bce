"""Means across the ranks of a multi-device training (``trainer.strategy=ddp``), for the updates DDP's
gradient hooks do not see: gradients written by hand (the RBM's closed form, the adversarial models'
``torch.autograd.grad``). On one device they do nothing."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def average_across_ranks(tensors) -> None:
    """Each tensor (None skipped) becomes its mean over the ranks, in place: a gradient of the mean loss over the
    union of the ranks' minibatches when each rank's is a mean over its own."""
    n = world_size()
    if n > 1:
        for t in tensors:
            if t is not None:
                dist.all_reduce(t)
                t.div_(n)


def own_gradient_sync(trainer) -> None:
    """For a model that averages its own gradients (:func:`average_across_ranks`): DDP's reducer must not wait for
    a backward pass that never comes (``torch.autograd.grad`` and hand-written gradients bypass its hooks)."""
    wrapped = getattr(trainer.strategy, "model", None)
    if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel):
        wrapped.require_backward_grad_sync = False
