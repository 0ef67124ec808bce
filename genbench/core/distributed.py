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
    union of the ranks' minibatches when each rank's is a mean over its own. One all-reduce of one flat buffer
    (per-tensor all-reduces of a small model's many tensors cost more than the step)."""
    n = world_size()
    present = [t for t in tensors if t is not None]
    if n > 1 and present:
        flat = torch.cat([t.reshape(-1) for t in present])
        dist.all_reduce(flat)
        flat.div_(n)
        offset = 0
        for t in present:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def own_gradient_sync(trainer) -> None:
    """For a model that averages its own gradients (:func:`average_across_ranks`): DDP's reducer must not wait for
    a backward pass that never comes (``torch.autograd.grad`` and hand-written gradients bypass its hooks)."""
    wrapped = getattr(trainer.strategy, "model", None)
    if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel):
        wrapped.require_backward_grad_sync = False
