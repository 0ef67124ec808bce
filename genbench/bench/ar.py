"""Speed of the autoregressive family (``make bench`` (f), (g), (h)): each against the arithmetic floor of its products.

* (f) NADE (H = 500) scoring binarized MNIST test images with its O(HD) recurrence and with the naive O(HD²)
  computation (every a_d from scratch as one masked matmul); each beside its floor: its multiply-adds at the
  GFLOP/s a bare ``torch.mm`` reaches here (the naive one's products are that matmul);
* (g) MADE's 32-mask ensemble (784-500-784 with direct connections, the ar-mnist cpu row) scoring the 10,000
  test images, beside the same products (three matmuls per mask set and chunk) in a bare ``torch.mm`` loop;
* (h) PixelCNN (7 blocks of h = 16, the ar-mnist cpu row) drawing 100 binary 28×28 images, beside the bare
  convolutions of the same passes (``F.conv2d`` on the same strips, no masks, activations or draws), and the
  products a full-image pass per pixel would have cost.

Weights are the models' initial ones: speed does not depend on their values. The MNIST test images are
Larochelle's when the ``.amat`` files are in the data root, else a Bernoulli(0.13) stand-in (recorded in ``data``).
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F

from ..core.errors import DataUnavailableError
from ..data import build_datamodule
from ..data.base import DataInfo, DataSpace
from ..models.autoregressive import MADE, NADE, PixelCNN
from ..nn.nade import nade_logits_naive
from ..runs.execute import cpu_name

D, SIDE = 784, 28


def _test_images(n: int = 10_000, seed: int = 0) -> tuple[torch.Tensor, str]:
    try:
        x = build_datamodule({"name": "mnist", "variant": "larochelle", "download": False}).split("test")[:n]
        return x.reshape(len(x), -1).float().contiguous(), f"mnist/larochelle test ({len(x):,})"
    except (DataUnavailableError, OSError):
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(n, D, generator=g) < 0.13).float(), f"random Bernoulli(0.13) stand-in, {n:,}×784"


def _info(x: torch.Tensor):
    return DataInfo("mnist", "mnist/larochelle", DataSpace("binary", (1, SIDE, SIDE)), {"test": len(x)}, "bench",
                    train_mean=x.mean(0).view(1, SIDE, SIDE))


def _timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def mm_gflops(m: int, k: int, n: int, repeats: int = 20, seed: int = 0) -> float:
    """GFLOP/s of a bare ``torch.mm`` of [m, k] × [k, n] into a buffer (the rate a floor is priced at)."""
    g = torch.Generator().manual_seed(seed)
    a, b, out = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g), torch.empty(m, n)
    torch.mm(a, b, out=out)
    return 2 * m * k * n * repeats / _timed(lambda: [torch.mm(a, b, out=out) for _ in range(repeats)], 3) / 1e9


def nade_flops(d: int, h: int, naive: bool) -> int:
    """FLOPs per example: the contributions W_j x_j (DH), their running sum (DH), V_d · σ(a_d) (2DH); the naive
    computation replaces the first two by the masked matmul (2D²H)."""
    return (2 * d * d * h if naive else 2 * d * h) + 2 * d * h


def benchmark_nade(examples: int = 1000, hidden: int = 500, chunk: int = 10, seed: int = 0) -> dict:
    """NADE's test log-likelihood of ``examples`` images by the recurrence and by the naive computation."""
    x, data = _test_images(examples, seed)
    torch.manual_seed(seed)
    model = NADE(_info(x), hidden=hidden).eval()
    with torch.no_grad():
        fast = _timed(lambda: model.log_prob(x), 2)
        naive = _timed(lambda: [nade_logits_naive(xs, model.W, model.c, model.V) for xs in x.split(chunk)])
        agree = max((nade_logits_naive(xs, model.W, model.c, model.V) + model.b - model.logits(xs)).abs().max().item()
                    for xs in x[:50].split(chunk))
    rate = mm_gflops(chunk * D, D, hidden)  # the naive masked matmul's shape
    floors = {k: nade_flops(D, hidden, k == "naive") * examples / rate / 1e9 for k in ("fast", "naive")}
    return {"benchmark": "nade_eval", "data": data, "examples": examples, "hidden": hidden, "naive_chunk": chunk,
            "threads": torch.get_num_threads(), "machine": cpu_name(), "load_average_before": os.getloadavg()[0],
            "fast_s": fast, "naive_s": naive, "speedup": naive / fast, "mm_gflops": rate,
            "fast_floor_s": floors["fast"], "naive_floor_s": floors["naive"],
            "fast_ratio_to_floor": fast / floors["fast"], "naive_ratio_to_floor": naive / floors["naive"],
            "fast_gflops": nade_flops(D, hidden, False) * examples / fast / 1e9,
            "naive_gflops": nade_flops(D, hidden, True) * examples / naive / 1e9,
            "max_logit_difference": agree}


def benchmark_made_ensemble(examples: int = 10_000, masks: int = 32, hidden: int = 500, seed: int = 0) -> dict:
    """log (1/32) Σ_k p_k(x) of the test images, beside the bare products of the same passes."""
    x, data = _test_images(examples, seed)
    torch.manual_seed(seed)
    model = MADE(_info(x), hidden=[hidden], masks=masks).eval()
    with torch.no_grad():  # in the evaluator's batches of 1,000
        wall = _timed(lambda: torch.cat([model.log_prob(xs) for xs in x.split(1000)]))
    shapes = [(m.in_features, m.out_features) for m in [*model.net.layers, model.net.direct]]
    g = torch.Generator().manual_seed(seed)
    work = [(torch.randn(1000, i, generator=g), torch.randn(i, o, generator=g), torch.empty(1000, o)) for i, o in shapes]

    def products():
        for _ in range(masks * -(-examples // 1000)):
            for a, w, out in work:
                torch.mm(a, w, out=out)

    floor = _timed(products)
    flops = 2 * sum(i * o for i, o in shapes) * masks * examples
    return {"benchmark": "made_ensemble", "data": data, "examples": examples, "masks": masks, "hidden": hidden,
            "threads": torch.get_num_threads(), "machine": cpu_name(), "load_average_before": os.getloadavg()[0],
            "wall_time_s": wall, "floor_s": floor, "ratio_to_floor": wall / floor, "gflops": flops / wall / 1e9,
            "floor_gflops": flops / floor / 1e9}


def _conv_layers(model) -> list[torch.nn.Conv2d]:
    return [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]


def conv_flops(model, rows: int, cols: int, n: int) -> int:
    """FLOPs of the convolutions of one pass over n images of rows × cols pixels (same padding)."""
    return sum(2 * m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] for m in _conv_layers(model)) \
        * rows * cols * n


def benchmark_pixelcnn_sampling(n: int = 100, features: int = 16, blocks: int = 7, head: int = 32, seed: int = 0) -> dict:
    """``sample(n)`` of 28×28 binary images, beside the bare convolutions of the same strips."""
    x, _ = _test_images(100, seed)
    torch.manual_seed(seed)
    model = PixelCNN(_info(x), features=features, blocks=blocks, head=head).eval()
    wall = _timed(lambda: model.sample(n))
    convs = _conv_layers(model)
    seen = model.net.rows_seen
    g = torch.Generator().manual_seed(seed)
    strips = {}
    for i in range(SIDE):
        rows = min(i, seen) + 1
        strips[rows] = strips.get(rows, 0) + SIDE  # passes of that strip height: one per pixel of the row
    work = {rows: [(torch.randn(n, m.in_channels, rows, SIDE, generator=g), m.weight.detach().clone(), m.padding)
                   for m in convs] for rows in strips}

    def products():
        for rows, passes in strips.items():
            for _ in range(passes):
                for a, w, pad in work[rows]:
                    F.conv2d(a, w, padding=pad)

    floor = _timed(products)
    flops = sum(conv_flops(model, rows, SIDE, n) * passes for rows, passes in strips.items())
    full = conv_flops(model, SIDE, SIDE, n) * SIDE * SIDE
    return {"benchmark": "pixelcnn_sampling", "images": n, "features": features, "blocks": blocks, "head": head,
            "rows_seen": seen, "threads": torch.get_num_threads(), "machine": cpu_name(),
            "load_average_before": os.getloadavg()[0], "wall_time_s": wall, "floor_s": floor,
            "ratio_to_floor": wall / floor, "gflops": flops / wall / 1e9, "floor_gflops": flops / floor / 1e9,
            "strip_flops_share": flops / full}


def markdown(result: dict) -> list[str]:
    """The report's sections (f)–(h), for :func:`genbench.bench.run.markdown`."""
    lines = []
    if result.get("nade_eval"):
        b = result["nade_eval"]
        lines += [f"## (f) NADE (H = {b['hidden']}) scoring {b['examples']:,} binarized MNIST test images", "",
                  "| computation | seconds | arithmetic floor (s) | × floor |", "|---|---|---|---|",
                  f"| O(HD) recurrence | {b['fast_s']:.2f} | {b['fast_floor_s']:.3f} | {b['fast_ratio_to_floor']:.1f} |",
                  f"| naive O(HD²) masked matmul | {b['naive_s']:.2f} | {b['naive_floor_s']:.2f} | "
                  f"{b['naive_ratio_to_floor']:.2f} |", "",
                  f"The recurrence is **{b['speedup']:.1f}×** faster than the naive computation (largest logit "
                  f"difference {b['max_logit_difference']:.1e}). Floors price each computation's operations at the "
                  f"{b['mm_gflops']:.0f} GFLOP/s of a bare `torch.mm` of the naive product's shape. The naive "
                  f"computation is that matmul and runs near it ({b['naive_gflops']:.0f} GFLOP/s); the recurrence does "
                  f"D/2 = 392× fewer operations, but they are cumulative sums, sigmoids and row-wise dot products "
                  f"over [examples, 16, H] blocks, which run at {b['fast_gflops']:.1f} GFLOP/s.", ""]
    if result.get("made_ensemble"):
        b = result["made_ensemble"]
        lines += [f"## (g) MADE's {b['masks']}-mask ensemble (784-{b['hidden']}-784, direct connections) on "
                  f"{b['examples']:,} test images", "",
                  f"{b['wall_time_s']:.1f} s ({b['gflops']:.0f} GFLOP/s) against {b['floor_s']:.1f} s for the same "
                  f"products in a bare `torch.mm` loop ({b['floor_gflops']:.0f} GFLOP/s): **{b['ratio_to_floor']:.2f}×** "
                  "the arithmetic floor. The rest is the masks (rebuilt from the degrees and multiplied into the "
                  "weights for each mask set and batch), ReLU, biases and the Bernoulli log-likelihood.", ""]
    if result.get("pixelcnn_sampling"):
        b = result["pixelcnn_sampling"]
        lines += [f"## (h) PixelCNN ({b['blocks']} blocks, h = {b['features']}) drawing {b['images']} binary 28×28 "
                  "images", "",
                  f"{b['wall_time_s']:.1f} s ({b['gflops']:.1f} GFLOP/s) against {b['floor_s']:.1f} s for the bare "
                  f"convolutions of the same passes ({b['floor_gflops']:.1f} GFLOP/s): **{b['ratio_to_floor']:.2f}×** "
                  f"the floor. Each of the 784 steps runs the network on the {b['rows_seen']} rows above the pixel "
                  f"and its own only: {b['strip_flops_share']:.2f} of the products of a full-image pass per pixel.", ""]
    return lines
