"""The autoregressive family against ground truth: the autoregressive property through autograd, normalization by
enumerating every input, NADE's recurrence against the O(HD²) computation, the mask ensemble against its members
scored alone, samples against log_prob, PixelCNN's blind spot, best-epoch restore and early stopping, and each
model trained on digits against an untrained one and the independent-pixel baseline."""

from __future__ import annotations

import itertools
import math

import lightning as L
import pytest
import torch

from genbench.core.errors import ConfigError
from genbench.data import build_datamodule
from genbench.data.base import DataInfo, DataSpace
from genbench.evaluation.likelihood import likelihood_records
from genbench.models.autoregressive import MADE, NADE, BestValidation, PixelCNN
from genbench.models.baselines import IndependentBernoulli
from genbench.nn.masked import CategoricalPixels, LogisticMixturePixels, pixelcnn_receptive_field
from genbench.nn.nade import nade_logits, nade_logits_naive


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same global stream (MADE draws its mask pool from it), whatever ran before."""
    torch.manual_seed(0)


def info(shape, levels=None, seed=0) -> DataInfo:
    space = DataSpace("discrete" if levels else "binary", tuple(shape), levels)
    g = torch.Generator().manual_seed(seed)
    mean = torch.rand(shape, generator=g) * (levels - 1 if levels else 1)
    return DataInfo("toy", "toy", space, {}, "", train_mean=mean)


def randomized(model, std=0.7, seed=0):
    """The model in float64 with every parameter redrawn N(0, std²): far from the small initial weights, so a leak
    in a mask or an order shows in every check below."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g))
    return model.double().eval()


def every_input(shape, levels=2) -> torch.Tensor:
    d = math.prod(shape)
    return torch.tensor(list(itertools.product(range(levels), repeat=d)), dtype=torch.float64).view(-1, *shape)


def total_probability(log_p: torch.Tensor) -> float:
    return torch.logsumexp(log_p, 0).exp().item()


# -- NADE's recurrence ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", [1, 5, 16, 64])
def test_nade_recurrence_equals_the_naive_quadratic_computation(block):
    g = torch.Generator().manual_seed(0)
    b, d, h = 7, 37, 11  # 37 pixels: the last block is partial for every block size but 1
    x = (torch.rand(b, d, generator=g) < 0.4).double()
    W, c, V = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((h, d), (h,), (d, h)))
    assert torch.allclose(nade_logits(x, W, c, V, block), nade_logits_naive(x, W, c, V), atol=1e-12, rtol=0)


def test_nade_naive_reference_is_the_definition():
    """The O(HD²) reference against the definition written out for one d: σ(c + Σ_{j<d} W_j x_j) · V_d."""
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(3, 9, generator=g) < 0.5).double()
    W, c, V = torch.randn(4, 9, dtype=torch.float64), torch.randn(4, dtype=torch.float64), torch.randn(9, 4, dtype=torch.float64)
    d = 6
    expected = torch.sigmoid(c + x[:, :d] @ W[:, :d].T) @ V[d]
    assert torch.allclose(nade_logits_naive(x, W, c, V)[:, d], expected)


# -- the autoregressive property through gradients --------------------------------------------------------------------

def dependence(fn, x: torch.Tensor) -> torch.Tensor:
    """[D_out, D_in] booleans: does output d (a conditional's parameters, reduced by a fixed random projection)
    have a non-zero gradient with respect to input j on some example of the batch? With enough random inputs
    (ReLU networks: 32) a zero is structural, not a unit that happens to be off."""
    x = x.clone().requires_grad_()
    out = fn(x)  # [B, D_out, P]
    g = torch.Generator().manual_seed(3)
    proj = torch.randn(out.shape[1:], generator=g, dtype=out.dtype)
    rows = []
    for d in range(out.shape[1]):
        (grad,) = torch.autograd.grad((out[:, d] * proj[d]).sum(), x, retain_graph=True)
        rows.append(grad.flatten(1).abs().sum(0) > 0)
    return torch.stack(rows)


def past(order: torch.Tensor) -> torch.Tensor:
    """[D, D]: input j comes before output d in ``order``."""
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order))
    return position[None, :] < position[:, None]


def test_nade_conditional_of_pixel_d_depends_on_exactly_the_pixels_before_it():
    model = randomized(NADE(info((1, 3, 4)), hidden=6))
    x = torch.rand(5, 12, dtype=torch.float64)
    seen = dependence(lambda v: model.logits(v).unsqueeze(2), x)
    assert torch.equal(seen, past(torch.arange(12)))


@pytest.mark.parametrize("direct", [True, False])
def test_every_made_mask_is_autoregressive_in_its_own_order(direct):
    model = randomized(MADE(info((10,)), hidden=[30, 30], masks=5, direct=direct))
    x = torch.rand(5, 10, dtype=torch.float64)
    orders = {tuple(o.tolist()) for o in model.orders}
    assert len(orders) == 5 and tuple(range(10)) in orders  # a pool of distinct orders, the first the raster one
    for k in range(5):
        seen = dependence(lambda v: model.logits(v, k).unsqueeze(2), x)
        allowed = past(model.orders[k])
        assert not (seen & ~allowed).any(), f"mask set {k} sees a pixel at or after its own"
        if direct:  # the direct layer connects every earlier pixel
            assert torch.equal(seen, allowed)


def test_pixelcnn_sees_only_the_past_and_its_field_is_the_masks_minkowski_sum():
    """Each pixel's conditional depends on exactly the past pixels of the receptive field computed from the mask
    shapes alone (blocks = 2, so the field is smaller than the image and the blind spot shows)."""
    h, w = 8, 8
    model = randomized(PixelCNN(info((1, h, w)), features=4, blocks=2, head=8), std=0.3)
    x = torch.rand(32, 1, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    seen = dependence(lambda v: model.conditionals(v).movedim(2, -1).flatten(1, 3), x)  # rows: pixels i·w + j
    field = pixelcnn_receptive_field(7, 3, 2)
    assert all(dr < 0 or (dr == 0 and dc < 0) for dr, dc in field)
    for i, j in itertools.product(range(h), range(w)):
        expected = torch.zeros(h, w, dtype=torch.bool)
        for dr, dc in field:
            if 0 <= i + dr < h and 0 <= j + dc < w:
                expected[i + dr, j + dc] = True
        assert torch.equal(seen[i * w + j].view(h, w), expected), (i, j)


def test_pixelcnn_blind_spot_is_the_documented_wedge():
    """The plain masked stack (kept, as in the model behind 81.30 nats) misses past pixels above-right of the
    pixel: with a 7×7 mask A and two 3×3 mask-B blocks, pixel (4, 2) of an 8×8 image never sees (3, 6), (3, 7)
    and (2, 7), although they come before it in raster order; every other past pixel it sees."""
    field = pixelcnn_receptive_field(7, 3, 2)
    i, j, size = 4, 2, 8
    past_pixels = {(r, c) for r in range(size) for c in range(size) if (r, c) < (i, j)}
    seen = {(i + dr, j + dc) for dr, dc in field} & past_pixels
    assert past_pixels - seen == {(3, 6), (3, 7), (2, 7)}
    # one row up, the field reaches first_kernel // 2 = 3 columns right; each row further up, one more
    assert max(dc for dr, dc in field if dr == -1) == 3 and max(dc for dr, dc in field if dr == -2) == 4


def test_pixelcnn_colour_c_sees_the_colours_before_it_at_its_own_pixel():
    model = randomized(PixelCNN(info((3, 3, 3), levels=4), features=24, blocks=1, head=24), std=0.3)
    x = torch.rand(32, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    seen = dependence(lambda v: model.conditionals(v).movedim(2, -1).flatten(1, 3), x)  # rows: (colour, i, j)
    seen = seen.view(3, 3, 3, 3, 3, 3)  # out colour, i, j; in colour, i', j'
    for c in range(3):
        for i, j in itertools.product(range(3), range(3)):
            at_pixel = seen[c, i, j, :, i, j]
            assert at_pixel.tolist() == [k < c for k in range(3)], (c, i, j)
            later = [(r, q) for r, q in itertools.product(range(3), range(3)) if (r, q) > (i, j)]
            assert not any(seen[c, i, j, :, r, q].any() for r, q in later)
            if (i, j) != (0, 0):  # the pixel to the left (or the row above) is seen in every colour
                r, q = (i, j - 1) if j else (i - 1, j)
                assert seen[c, i, j, :, r, q].all()


# -- normalization by enumeration ---------------------------------------------------------------------------------------

def test_nade_sums_to_one_over_all_inputs():
    model = randomized(NADE(info((1, 2, 5)), hidden=8))
    assert total_probability(model.log_prob(every_input((1, 2, 5)))) == pytest.approx(1, abs=1e-10)


def test_each_made_mask_and_the_ensemble_sum_to_one():
    model = randomized(MADE(info((11,)), hidden=[16, 16], masks=4))
    x = every_input((11,))
    for k in range(4):
        assert total_probability(model.member_log_prob(x, k)) == pytest.approx(1, abs=1e-10)
    assert total_probability(model.log_prob(x)) == pytest.approx(1, abs=1e-10)


@pytest.mark.parametrize("shape,levels,output", [((1, 3, 4), None, "auto"), ((3, 1, 2), 3, "softmax"),
                                                 ((1, 2, 2), 5, "logistic")])
def test_pixelcnn_sums_to_one_over_all_inputs(shape, levels, output):
    model = randomized(PixelCNN(info(shape, levels), features=4, blocks=2, head=8, output=output, components=3), std=0.5)
    x = every_input(shape, levels or 2)
    assert total_probability(model.log_prob(x)) == pytest.approx(1, abs=1e-9)


def test_the_256_way_softmax_and_the_logistic_mixture_sum_to_one_per_pixel():
    g = torch.Generator().manual_seed(0)
    values = torch.arange(256, dtype=torch.float64).view(256, 1, 1, 1)
    soft = CategoricalPixels(256)
    logits = 5 * torch.randn(1, 1, 256, 1, 1, generator=g, dtype=torch.float64)
    assert total_probability(soft.log_prob(values, logits.expand(256, -1, -1, -1, -1)).flatten()) == pytest.approx(1, abs=1e-12)
    mix = LogisticMixturePixels(256, components=4)
    for scale in (-9.0, -3.0, 0.0, 2.0):  # log s below the floor, narrow, wide
        params = torch.cat([torch.randn(4, generator=g), 1.3 * torch.randn(4, generator=g), torch.full((4,), scale)])
        p = params.double().view(1, 1, 12, 1, 1).expand(256, -1, -1, -1, -1)
        assert total_probability(mix.log_prob(values, p).flatten()) == pytest.approx(1, abs=1e-9), scale


# -- the mask ensemble --------------------------------------------------------------------------------------------------

def test_mask_ensemble_is_the_log_of_the_mean_of_its_members_probabilities():
    """Each member is scored by a separate one-mask MADE holding that member's order and degrees and the same
    weights; the ensemble of the first K members is log (1/K) Σ_k p_k(x)."""
    model = randomized(MADE(info((9,)), hidden=[12], masks=4))
    x = (torch.rand(20, 9, generator=torch.Generator().manual_seed(2)) < 0.5).double()
    members = []
    for k in range(4):
        single = MADE(info((9,)), hidden=[12], masks=1).double()
        state = {**model.state_dict(), "orders": model.orders[k:k + 1], "degrees_0": model.degrees_0[k:k + 1]}
        single.load_state_dict(state)
        members.append(single.eval().log_prob(x))
    members = torch.stack(members)
    assert torch.allclose(model.log_prob(x), torch.log(members.exp().mean(0)))
    two = MADE(info((9,)), hidden=[12], masks=4, ensemble=2).double()
    two.load_state_dict(model.state_dict())
    assert torch.allclose(two.eval().log_prob(x), torch.log(members[:2].exp().mean(0)))
    with pytest.raises(ConfigError, match="ensemble"):
        MADE(info((9,)), masks=4, ensemble=5)


# -- samples against log_prob -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["nade", "made", "pixelcnn", "pixelcnn-rgb"])
def test_sample_frequencies_match_log_prob(name):
    """20,000 draws of a 4-pixel (or 2-pixel RGB, 3 levels: 729 values) model against exp(log_prob) of every input:
    the total variation must stay within 1.5× its expected value under correct sampling, ½ Σ_x √(2p(1−p)/(πN))
    (0.01 for 16 values, 0.05 for 729); a sampler that walks the pixels in another order than log_prob's, or
    misreads a conditional, is off by far more."""
    torch.manual_seed(0)
    if name == "nade":
        model, shape, levels = randomized(NADE(info((1, 2, 2)), hidden=5), std=1.5), (1, 2, 2), 2
    elif name == "made":  # an ensemble of three orders: samples come from the mixture
        model, shape, levels = randomized(MADE(info((4,)), hidden=[10], masks=3), std=1.5), (4,), 2
    elif name == "pixelcnn":
        model, shape, levels = randomized(PixelCNN(info((1, 2, 2)), features=4, blocks=1, head=6), std=0.8), (1, 2, 2), 2
    else:
        model, shape, levels = randomized(PixelCNN(info((3, 1, 2), levels=3), features=6, blocks=1, head=6),
                                          std=0.6), (3, 1, 2), 3
    x = every_input(shape, levels)
    with torch.no_grad():
        p = model.log_prob(x).exp()
    draws = model.sample(20_000).flatten(1)
    index = (draws * levels ** torch.arange(draws.shape[1] - 1, -1, -1, dtype=draws.dtype)).sum(1).long()
    freq = torch.bincount(index, minlength=len(x)).double() / len(draws)
    expected = 0.5 * torch.sqrt(2 * p * (1 - p) / (math.pi * len(draws))).sum()
    assert 0.5 * (freq - p).abs().sum() < 1.5 * expected


def test_pixelcnn_strip_gives_the_full_images_conditionals_on_its_last_row():
    """Sampling runs the network on the ``rows_seen`` rows above a pixel only: on that strip's last row its output
    equals the whole image's."""
    model = randomized(PixelCNN(info((3, 12, 6), levels=5), features=6, blocks=2, head=6), std=0.3)
    x = torch.randint(0, 5, (2, 3, 12, 6)).double()
    full = model.conditionals(x)
    r = model.net.rows_seen
    assert r == 3 + 2
    for i in (r, 8, 11):
        strip = model.conditionals(x[:, :, i - r:i + 1])
        assert torch.allclose(strip[..., -1, :], full[..., i, :], atol=1e-12)
    cut = model.conditionals(x[:, :, 11 - r + 1:12])  # one row fewer: the last row changes
    assert not torch.allclose(cut[..., -1, :], full[..., 11, :])


# -- best epoch, early stopping ---------------------------------------------------------------------------------------

class Snapshots(L.Callback):
    """The validation NLL and the parameters after each epoch's validation."""

    def __init__(self):
        self.values, self.states = [], []

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        self.values.append(float(trainer.callback_metrics["val/nll"]))
        self.states.append({k: v.clone() for k, v in pl_module.state_dict().items()})


def digits(variant="fixed"):
    dm = build_datamodule({"name": "digits", "variant": variant})
    dm.setup()
    return dm


def fit(model, dm, epochs, callbacks=()):
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=list(callbacks))
    trainer.fit(model, datamodule=dm)
    return trainer


def test_training_ends_with_the_parameters_of_the_best_validation_epoch():
    """A learning rate high enough that the validation NLL goes up again: the model after training is the epoch
    with the lowest validation NLL, not the last."""
    torch.manual_seed(0)
    dm = digits()
    model = MADE(dm.info, hidden=[500], lr=0.05, patience=None)
    snaps = Snapshots()
    fit(model, dm, 50, [snaps])
    best = min(range(len(snaps.values)), key=snaps.values.__getitem__)
    assert best < len(snaps.values) - 1, f"the last epoch was the best; the test needs one that is not: {snaps.values}"
    for k, v in model.state_dict().items():
        assert torch.equal(v, snaps.states[best][k]), k


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    torch.manual_seed(0)
    dm = digits()
    model = MADE(dm.info, hidden=[20], lr=0.0, patience=2)  # lr 0: the validation NLL never improves on epoch 0
    trainer = fit(model, dm, 20)
    assert trainer.current_epoch == 3  # epoch 0 sets the best, epochs 1 and 2 do not improve, stop


def test_best_validation_state_survives_a_checkpoint():
    cb = BestValidation()
    cb.best, cb.epoch, cb.state = 1.5, 3, {"w": torch.ones(2)}
    restored = BestValidation()
    restored.load_state_dict(cb.state_dict())
    assert (restored.best, restored.epoch) == (1.5, 3) and torch.equal(restored.state["w"], torch.ones(2))


# -- trained on digits -------------------------------------------------------------------------------------------------

def test_nll_evaluator_scores_the_models_as_exact_pmfs():
    model = randomized(MADE(info((1, 2, 5)), hidden=[8], masks=2)).float()
    x = every_input((1, 2, 5)).float()
    recs = {r.metric: r for r in likelihood_records(model, x, info((1, 2, 5)))}
    assert recs["nll"].estimator == "exact" and recs["bits_per_dim"].unit == "bits/dim"
    assert recs["nll"].value == pytest.approx(-model.log_prob(x).double().mean().item(), rel=1e-6)


def test_each_model_trained_on_digits_beats_an_untrained_one_and_independent_pixels():
    """A few seconds of training on the 1,257 fixed-binarized digits: every model's test NLL is 2 nats below its
    untrained value and below the independent-Bernoulli baseline's (27.3 nats: each pixel's frequency; a model that
    ignored the pixels before each one could not beat it). Measured: NADE 23.0, MADE 23.2, PixelCNN 24.6."""
    dm = digits()
    test = dm.split("test").float()

    def nll(model):
        return next(r.value for r in likelihood_records(model, test, dm.info) if r.metric == "nll")

    torch.manual_seed(0)
    baseline = IndependentBernoulli(dm.info)
    fit(baseline, dm, 1)
    independent = nll(baseline)
    models = {"nade": (lambda: NADE(dm.info, hidden=100, lr=1e-2), 30),
              "made": (lambda: MADE(dm.info, hidden=[500], masks=4, lr=0.05), 30),
              "pixelcnn": (lambda: PixelCNN(dm.info, features=16, blocks=2, head=32, lr=1e-2), 20)}
    for name, (make, epochs) in models.items():
        torch.manual_seed(0)
        model = make()
        untrained = nll(model)
        fit(model, dm, epochs)
        trained = nll(model)
        assert trained < min(untrained, independent) - 2, (name, untrained, trained, independent)


# -- what the speed report counts -------------------------------------------------------------------------------------

def test_bench_counts_the_products_of_nade_and_pixelcnn():
    from genbench.bench.ar import conv_flops, nade_flops

    assert nade_flops(784, 500, naive=False) == 4 * 784 * 500
    assert nade_flops(784, 500, naive=True) == 2 * 784 * 784 * 500 + 2 * 784 * 500
    model = PixelCNN(info((1, 28, 28)), features=16, blocks=1, head=32)
    per_pixel = 49 * 1 * 32 + (32 * 16 + 9 * 16 * 16 + 16 * 32) + 32 * 32 + 32 * 1  # 7×7 A, block, head
    assert conv_flops(model, 3, 28, 10) == 2 * per_pixel * 3 * 28 * 10
