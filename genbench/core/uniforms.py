"""Fast U[0, 1) numbers for the Bernoulli draws of Gibbs chains (AIS, RBM training)."""

from __future__ import annotations

import numpy as np
import torch


class Uniforms:
    """Fills buffers with U[0, 1) numbers, e.g. for :func:`genbench.core.bernoulli.bernoulli`.

    On CPU, torch's ``rand`` (mt19937, serial) costs ~2.7 ns a number: a third of an
    AIS step at 784×500 with 100 runs, where each step needs 128k of them, and ~10%
    of a PCD-1 update. For float32 on CPU we instead draw 64-bit words from numpy's
    PCG64DXSM and cut each into two 24-bit uniforms (the resolution of torch's float32
    ``rand``): ~1.3 ns a number. The bit generator is seeded from ``generator`` (or
    torch's global RNG), so runs stay reproducible under ``torch.manual_seed`` or a
    seeded generator. float64 and other devices use ``torch.rand`` (53-bit uniforms
    for float64).
    """

    def __init__(self, generator: torch.Generator | None, dtype: torch.dtype, device: torch.device,
                 state: dict | None = None):
        self.generator, self.fast = generator, (device.type == "cpu" and dtype == torch.float32)
        if self.fast:
            seed = 0 if state else torch.randint(0, 2**62, (1,), generator=generator, device="cpu").item()
            self.bits = np.random.PCG64DXSM(seed)
            if state:
                self.bits.state = state

    def state(self) -> dict | None:
        """The bit generator's state (plain ints), for a checkpoint; None when the draws come from torch's RNG."""
        return self.bits.state if self.fast else None

    def fill(self, out: torch.Tensor) -> torch.Tensor:
        if not self.fast:
            return torch.rand(out.shape, generator=self.generator, dtype=out.dtype, device=out.device, out=out)
        n = out.numel()
        words = torch.from_numpy(self.bits.random_raw((n + 1) // 2)).view(torch.int32)[:n]
        # an int-to-float copy, then a float scaling: ~10% faster than one mixed-type multiply, the same numbers
        return out.copy_(words.bitwise_and_(0xFFFFFF).view(out.shape)).mul_(2.0**-24)

    def like(self, p: torch.Tensor) -> torch.Tensor:
        """A new tensor of U[0, 1) numbers with p's shape, dtype and device."""
        return self.fill(torch.empty_like(p))
