"""Speed of the VAE family (``make bench`` (d) and (e)): ratios measured in one call.

* (d) Burda's protocol, −L_5000 of 10,000 binarized MNIST images with the 1-layer model (784-200-200-50): its wall
  time beside the arithmetic floor of the same products (the decoder's three matmuls for every example × sample
  row, the encoder's for every example) in a bare ``torch.mm`` loop over chunks of the same size;
* (e) one training epoch (60,000 images, batch 20, k = 1 and k = 50) through ``lightning.Trainer.fit`` beside a
  bare loop of the same updates (bound, backward, Adam step): Lightning's share of an epoch.

Weights are the model's initial ones: speed does not depend on their values. Real MNIST is used when it is in
the data root, else a Bernoulli(0.13) stand-in of the same shape (recorded in ``data``).
"""

from __future__ import annotations

import os
import time

import torch

from ..models.vae import VAE
from ..nn.vae import flushing_denormals
from ..runs.execute import cpu_name, quiet_lightning
from .rbm import lightning_epoch_seconds, mnist_info, mnist_train_binary


def burda_model(x: torch.Tensor, k: int = 1):
    torch.manual_seed(0)
    return VAE(mnist_info(x), objective="iwae", k=k)


def decoder_flops_per_row(model) -> int:
    """Multiply-adds ×2 of the decoder's linear layers for one latent sample (the rows L_k scores)."""
    return sum(2 * m.in_features * m.out_features for m in _linears(model.decoder))


def _linears(net) -> list[torch.nn.Linear]:
    return [m for m in net.modules() if isinstance(m, torch.nn.Linear)]


def _products_s(linears: list[torch.nn.Linear], rows: int, repeats: int, seed: int = 0) -> float:
    """Seconds for one pass of ``rows`` rows through the layers' products alone (bare ``torch.mm`` into buffers)."""
    g = torch.Generator().manual_seed(seed)
    work = [(torch.randn(rows, m.in_features, generator=g), m.weight.detach().t().contiguous(),
             torch.empty(rows, m.out_features)) for m in linears]
    for a, w, out in work:  # warm-up
        torch.mm(a, w, out=out)
    t0 = time.perf_counter()
    for _ in range(repeats):
        for a, w, out in work:
            torch.mm(a, w, out=out)
    return (time.perf_counter() - t0) / repeats


def benchmark_bound(examples: int = 10_000, k: int = 5000, floor_chunks: int = 40, seed: int = 0) -> dict:
    """Time ``log_prob_bound(x, k)`` on ``examples`` binary images; the floor is the same products per row."""
    x, data = mnist_train_binary(seed)
    x = x[:examples]
    model = burda_model(x)
    rows = model.eval_rows
    t0 = time.perf_counter()
    with torch.no_grad():
        model.log_prob_bound(x, k)
    wall = time.perf_counter() - t0

    decoder, encoder = (_linears(net) for net in (model.decoder, model.encoder))
    floor = _products_s(decoder, rows, floor_chunks) * examples * k / rows + _products_s(encoder, examples, 1)
    flops = decoder_flops_per_row(model) * examples * k
    return {"benchmark": "iwae_bound", "data": data, "examples": examples, "k": k, "rows_per_pass": rows,
            "threads": torch.get_num_threads(), "machine": cpu_name(), "load_average_before": os.getloadavg()[0],
            "wall_time_s": wall, "floor_s": floor, "ratio_to_floor": wall / floor,
            "gflops": flops / wall / 1e9, "floor_gflops": flops / floor / 1e9}


def benchmark_vae_epoch(k: int = 1, batch_size: int = 20, repeats: int = 1, seed: int = 0) -> dict:
    """One epoch of Burda's 1-layer model through Lightning and through a bare loop of the same updates."""
    x, data = mnist_train_binary(seed)

    def run_lightning() -> float:
        return lightning_epoch_seconds(burda_model(x, k), x, batch_size)

    def run_bare() -> float:
        model = burda_model(x, k)
        opt = model.configure_optimizers()
        order = torch.randperm(len(x))
        with flushing_denormals():
            t0 = time.perf_counter()
            for idx in order.split(batch_size):
                loss = -model.bound(x[idx], k).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return time.perf_counter() - t0

    quiet_lightning()
    load = os.getloadavg()[0]
    lightning_s = min(run_lightning() for _ in range(repeats))
    bare_s = min(run_bare() for _ in range(repeats))
    return {"benchmark": "vae_epoch", "data": data, "k": k, "batch_size": batch_size, "updates": -(-len(x) // batch_size),
            "threads": torch.get_num_threads(), "machine": cpu_name(), "load_average_before": load,
            "lightning_s": lightning_s, "bare_s": bare_s, "ratio": lightning_s / bare_s}
