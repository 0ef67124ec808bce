"""Where a model's tensors live, and the random streams of that device.

Evaluators take a data split on the CPU (it may not fit on the device) and move each batch to
:func:`module_device` of the model; anything a model draws lives there too. A model without parameters (the true
mixture, the baselines that learn buffers) keeps its tensors as registered buffers, so ``.to(device)`` moves them
and this function finds them.
"""

from __future__ import annotations

import torch

from .errors import PrecisionError

REDUCED_PRECISION = (torch.float16, torch.bfloat16)


def module_device(module) -> torch.device:
    """The device of a module's first parameter, else of its first buffer, else the CPU."""
    for tensor in (*module.parameters(), *module.buffers()) if hasattr(module, "parameters") else ():
        return tensor.device
    return torch.device("cpu")


def forked_rng(device: torch.device):
    """``torch.random.fork_rng`` over the global stream that draws on ``device`` (the CPU's, plus CUDA's for a CUDA
    device): seeding inside leaves the caller's streams as they were, on any device."""
    device = torch.device(device)
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def full_precision(module, what: str) -> None:
    """Refuse to score ``module`` in half precision: likelihoods, bounds and AIS sum thousands of log-terms, and
    float16/bfloat16 lose whole nats. Training may use mixed precision (its parameters stay float32)."""
    reduced = sorted({str(t.dtype) for t in (*module.parameters(), *module.buffers()) if t.dtype in REDUCED_PRECISION})
    autocast = [d for d in ("cpu", "cuda") if torch.is_autocast_enabled(d)]
    if reduced or autocast:
        cause = f"its tensors are {', '.join(reduced)}" if reduced else f"autocast is on for {', '.join(autocast)}"
        raise PrecisionError(f"{what} runs in float32 or float64 only, but {cause}. Train with "
                             f"trainer.precision=32, bf16-mixed or 16-mixed (mixed precision keeps float32 "
                             f"parameters), not bf16-true or 16-true, and evaluate outside torch.autocast.")

