"""Per-epoch means of training metrics, logged once per epoch instead of through a ``self.log`` call per step."""

from __future__ import annotations

import torch


class EpochMeans:
    """A LightningModule mixin: ``self.epoch_mean(name, values)`` adds per-example values to running sums, and the
    means are logged when the training epoch ends. ``self.log(..., on_epoch=True)`` on every step costs about
    0.7 ms on a CPU (5–15% of a small flow's update); the sums cost microseconds. (A subclass that defines
    ``on_train_epoch_end`` calls ``super().on_train_epoch_end()``.)"""

    def epoch_mean(self, name: str, values: torch.Tensor, prog_bar: bool = False) -> None:
        sums = self.__dict__.setdefault("_epoch_sums", {})
        total, count, _ = sums.get(name, (0.0, 0, prog_bar))
        sums[name] = (total + values.detach().sum(), count + values.numel(), prog_bar)

    def on_train_epoch_end(self) -> None:
        for name, (total, count, prog_bar) in self.__dict__.pop("_epoch_sums", {}).items():
            self.log(name, total / count, on_step=False, on_epoch=True, prog_bar=prog_bar)
