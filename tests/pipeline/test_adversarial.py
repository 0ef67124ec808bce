"""GAN, ALI, BiGAN and the GAN-inference baselines: losses against their formulas, who D sees, frozen generators."""

from __future__ import annotations

import copy
import math

import lightning as L
import pytest
import torch

from genbench.data import DataSpace, TensorDataModule, build_datamodule
from genbench.models import build_model
from genbench.models.gan import discriminator_loss, generator_loss, value
from genbench.tables import compose

TOY = ["model.decoder_hidden=[32,32]", "model.disc_hidden=[16,16]"]
ENC = ["model.encoder_hidden=[32]"]


def toy_data(train_size=1000):
    return build_datamodule({"name": "gmm2d", "mixture": "grid25", "train_size": train_size, "val_size": 0,
                             "test_size": 200})


def toy_model(name, dm, *overrides):
    extra = ENC if name != "gan" else []
    return build_model(compose([f"model={name}", *TOY, *extra, *overrides])["model"], dm.info)


def fit(model, dm, epochs, callbacks=()):
    L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, callbacks=list(callbacks)).fit(model, datamodule=dm)


# -- losses ------------------------------------------------------------------------------------------------------------

L_REAL = torch.tensor([-3.0, -0.5, 0.0, 2.0, 7.0], dtype=torch.float64)
L_FAKE = torch.tensor([-6.0, -1.0, 0.25, 1.5, 4.0], dtype=torch.float64)


def log_d(logit):  # log D and log(1 − D) through the probability, the textbook way
    return torch.log(torch.sigmoid(logit)), torch.log(1 - torch.sigmoid(logit))


def test_each_loss_equals_its_formula_on_fixed_logits():
    log_d_real, log_1md_real = log_d(L_REAL)
    log_d_fake, log_1md_fake = log_d(L_FAKE)
    # L_d (Algorithm 1, step 4) and V (Eq. 1.21) = −L_d
    expected_ld = -log_d_real.mean() - log_1md_fake.mean()
    assert discriminator_loss(L_REAL, L_FAKE).item() == pytest.approx(expected_ld.item(), rel=1e-12)
    assert value(L_REAL, L_FAKE).item() == pytest.approx(-expected_ld.item(), rel=1e-12)
    # GAN generator: non-saturating −E log D(G(z)) (Eq. 1.23); minimax E log(1 − D(G(z)))
    assert generator_loss(L_FAKE).item() == pytest.approx(-log_d_fake.mean().item(), rel=1e-12)
    assert generator_loss(L_FAKE, kind="minimax").item() == pytest.approx(log_1md_fake.mean().item(), rel=1e-12)
    # ALI L_g (Algorithm 1, step 5): −E log(1 − D(x, G_z(x))) − E log D(G_x(z), z); minimax: V itself
    assert generator_loss(L_FAKE, L_REAL).item() == pytest.approx(
        (-log_1md_real.mean() - log_d_fake.mean()).item(), rel=1e-12)
    assert generator_loss(L_FAKE, L_REAL, "minimax").item() == pytest.approx(-expected_ld.item(), rel=1e-12)
    with pytest.raises(ValueError, match="non_saturating"):
        generator_loss(L_FAKE, kind="wasserstein")


def test_losses_stay_finite_and_non_saturating_where_probabilities_round_off():
    """At logits of ±100, D rounds to 0 or 1 in float32 but the softplus losses stay exact, and the
    non-saturating generator keeps a unit gradient where the minimax one vanishes (why Eq. 1.23 exists)."""
    l_fake = torch.tensor([-100.0], requires_grad=True)
    ns, mm = generator_loss(l_fake), generator_loss(l_fake, kind="minimax")
    assert ns.item() == pytest.approx(100.0) and torch.isfinite(mm)
    assert torch.autograd.grad(ns, l_fake)[0].item() == pytest.approx(-1.0)
    assert abs(torch.autograd.grad(mm, l_fake)[0].item()) < 1e-40
    assert discriminator_loss(torch.tensor([100.0]), torch.tensor([-100.0])).item() == pytest.approx(0, abs=1e-40)


def test_value_is_minus_log_4_when_the_discriminator_is_one_half():
    assert value(torch.zeros(7), torch.zeros(7)).item() == pytest.approx(-math.log(4))
    # the same through a model whose discriminator's output layer is zeroed: D ≡ ½ on every pair
    dm = toy_data()
    for name in ("gan", "ali"):
        model = toy_model(name, dm)
        last = model.discriminator.joint[-1]
        torch.nn.init.zeros_(last.weight), torch.nn.init.zeros_(last.bias)
        loss_d, loss_g = model.losses(model.scale.to_model(dm.split("train")[:64]))
        assert loss_d.item() == pytest.approx(math.log(4), rel=1e-6)  # L_d = −V = log 4
        assert loss_g.item() == pytest.approx(math.log(2) * (2 if name == "ali" else 1), rel=1e-6)


# -- who the discriminator sees --------------------------------------------------------------------------------------

def test_ali_discriminator_receives_encoder_pairs_and_decoder_pairs():
    """D gets (x, G_z(x)) as real and (G_x(z), z) as fake, in one batch (thesis Eq. 5.1, Algorithm 1)."""
    dm = toy_data()
    model = toy_model("ali", dm).eval()  # eval: batch norm with fixed statistics, so recomputing gives the same values
    seen = {}
    model.discriminator.register_forward_hook(lambda mod, args, out: seen.update(x=args[0], z=args[1]))
    x = model.scale.to_model(dm.split("train")[:50])
    z = torch.randn(50, model.latent_dim)
    torch.manual_seed(3)
    l_real, l_fake = model.logits(x, z)
    torch.manual_seed(3)  # the implicit encoder's ε: the same draw again
    z_hat = model.encoder(x)
    assert torch.equal(seen["x"][:50], x) and torch.equal(seen["z"][:50], z_hat)
    assert torch.equal(seen["x"][50:], model.decoder(z)) and torch.equal(seen["z"][50:], z)
    assert torch.allclose(l_real, model.discriminator(x, z_hat), atol=1e-6)
    assert torch.allclose(l_fake, model.discriminator(model.decoder(z), z), atol=1e-6)
    # a GAN's discriminator sees x alone
    gan = toy_model("gan", dm).eval()
    gan.discriminator.register_forward_hook(lambda mod, args, out: seen.update(gan_args=len(args)))
    gan.logits(x, z)
    assert seen["gan_args"] == 2 and gan.discriminator.z_net is None


def test_simultaneous_ali_step_trains_encoder_decoder_and_discriminator():
    dm = toy_data(500)
    model = toy_model("ali", dm)
    before = copy.deepcopy(model.state_dict())
    fit(model, dm, 1)
    for part in ("encoder", "decoder", "discriminator"):
        changed = [not torch.equal(v, before[k]) for k, v in model.state_dict().items()
                   if k.startswith(part) and k.endswith("weight")]
        assert all(changed), part


def test_bigan_encoder_is_deterministic_and_ali_encoders_are_not():
    dm = toy_data()
    x = dm.split("test")[:100]
    bigan = toy_model("bigan", dm).eval()
    assert torch.equal(bigan.encode(x), bigan.encode(x))
    for kind in ("implicit", "gaussian"):
        ali = toy_model("ali", dm, f"model.encoder={kind}").eval()
        assert not torch.equal(ali.encode(x), ali.encode(x))


# -- GAN-inference baselines ------------------------------------------------------------------------------------------

class Snapshot(L.Callback):
    """The model's state at the end of epoch ``epoch``."""

    def __init__(self, epoch):
        self.epoch, self.state = epoch, None

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            self.state = copy.deepcopy(pl_module.state_dict())


@pytest.mark.parametrize("name", ["gan_posthoc", "gan_inverse_mapping"])
def test_inference_phase_leaves_the_generator_unchanged(name):
    dm = toy_data(500)
    model = toy_model(name, dm, "model.gan_epochs=1")
    init = copy.deepcopy(model.state_dict())
    snap = Snapshot(0)
    fit(model, dm, 3, [snap])
    final = model.state_dict()
    generator = [k for k in final if k.startswith("decoder.")]  # weights and batch-norm statistics
    assert any(not torch.equal(snap.state[k], init[k]) for k in generator)  # the GAN phase trained it
    assert all(torch.equal(final[k], snap.state[k]) for k in generator)  # the inference phase did not
    assert all(torch.equal(final[k], snap.state[k]) for k in final if k.startswith("discriminator."))
    assert any(not torch.equal(final[k], snap.state[k]) for k in final if k.startswith("encoder."))


def test_gan_phase_is_the_plain_gan():
    """Same seed and arguments: the inference baselines' GAN phase trains exactly the GAN a GAN row trains."""
    dm = toy_data(500)
    states = []
    for name, extra in (("gan", []), ("gan_inverse_mapping", ["model.gan_epochs=1"]), ("gan_posthoc", ["model.gan_epochs=1"])):
        L.seed_everything(5, verbose=False)
        model = toy_model(name, dm, *extra)
        snap = Snapshot(0)
        fit(model, dm, 1 if name == "gan" else 2, [snap])
        states.append({k: v for k, v in snap.state.items() if k.startswith(("decoder.", "discriminator."))})
    assert all(torch.equal(states[0][k], s[k]) for s in states[1:] for k in states[0])


def test_inverse_mapping_learns_to_invert_the_generator():
    dm = toy_data(2000)
    model = toy_model("gan_inverse_mapping", dm, "model.gan_epochs=2", "model.lr=1e-3", "model.encoder=deterministic")
    z = torch.randn(500, 2)

    def inversion_error():
        return (model.encode(model.decode(z)) - z).pow(2).sum(1).mean().item()

    class AfterGAN(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 1:  # the encoder is still untrained
                self.error = inversion_error()

    after_gan = AfterGAN()
    fit(model, dm, 6, [after_gan])
    assert inversion_error() < 0.5 * after_gan.error


def test_too_few_epochs_for_the_encoder_is_an_error():
    dm = toy_data(200)
    with pytest.raises(ValueError, match="no epoch to train the encoder"):
        fit(toy_model("gan_posthoc", dm, "model.gan_epochs=2"), dm, 2)


# -- data spaces -------------------------------------------------------------------------------------------------------

def test_image_models_sample_integers_in_the_data_space_and_encode_images():
    dm = build_datamodule({"name": "digits", "variant": "integer"})
    for name, extra in (("gan", []), ("ali", ["model.encoder=gaussian"]), ("bigan", [])):
        model = build_model(compose([f"model={name}", "model.arch=dcgan", "model.latent_dim=8", "model.channels=8",
                                     *extra])["model"], dm.info)
        fit(model, dm, 1)
        model.eval()
        s = model.sample(32)
        assert s.shape == (32, 1, 8, 8) and torch.equal(s, s.round()) and s.min() >= 0 and s.max() <= 16
        if name != "gan":
            x = dm.split("test")[:10]
            assert model.encode(x).shape == (10, 8) and model.decode(model.encode(x)).shape == x.shape


def test_architecture_mismatches_are_one_line_errors():
    digits = build_datamodule({"name": "digits", "variant": "integer"}).info
    with pytest.raises(ValueError, match="32x32"):
        build_model({"name": "ali", "arch": "ali_svhn", "latent_dim": 256, "encoder": "gaussian"}, digits)
    with pytest.raises(ValueError, match="mlp only"):
        build_model({"name": "ali", "arch": "dcgan", "encoder": "implicit"}, digits)
    with pytest.raises(ValueError, match="continuous data takes arch=mlp"):
        build_model({"name": "gan", "arch": "dcgan"}, toy_data(100).info)


def test_alternating_updates_take_d_steps_discriminator_steps_per_generator_step():
    dm = toy_data(1000)  # 10 batches
    model = toy_model("gan", dm, "model.updates=alternating", "model.d_steps=2")
    fit(model, dm, 1)
    opt_g, opt_d = (o.optimizer for o in model.optimizers())
    steps = lambda opt: int(next(iter(opt.state.values()))["step"])  # noqa: E731
    assert steps(opt_d) == 10 and steps(opt_g) == 5


# -- the inference evaluator -------------------------------------------------------------------------------------------

class Codes:
    """A known-answer stand-in for an encoder/decoder pair: the evaluator only calls encode, decode, eval, train."""

    training = False

    def __init__(self, encode, decode):
        self.encode, self.decode = encode, decode

    def eval(self):
        return self

    def train(self, mode=True):
        return self


def test_inference_quality_on_known_answers():
    from genbench.evaluation.inference import inference_quality

    dm = build_datamodule({"name": "gmm2d", "mixture": "grid25", "train_size": 10, "val_size": 0, "test_size": 5000})
    mixture, x = dm.info.mixture, dm.split("test")
    # an invertible code: perfect reconstructions, but q(z) (a scaled grid) is far from N(0, I)
    exact = {r.metric: r.value for r in inference_quality(Codes(lambda v: v / 2, lambda z: z * 2), x, mixture)}
    assert exact["reconstruction_error"] == pytest.approx(0, abs=1e-10)
    assert exact["reconstruction_same_mode_pct"] == 100
    assert exact["latent_mmd"] > 0.05 and exact["latent_ks"] > 0.05
    # codes drawn from the prior whatever x, decoded to fresh data: q(z) = p(z), reconstructions land at random
    blind = {r.metric: r.value for r in inference_quality(
        Codes(lambda v: torch.randn(len(v), 2), lambda z: mixture.sample(len(z))), x, mixture)}
    assert abs(blind["latent_mmd"]) < 0.01 and blind["latent_ks"] < 0.05
    assert blind["reconstruction_same_mode_pct"] == pytest.approx(100 / 25, abs=1.5)
    assert blind["reconstruction_error"] == pytest.approx(32, rel=0.1)  # independent x, x': E‖x − x'‖² = 2 tr Cov = 2·(8 + 8)


def test_mmd_is_unbiased_near_zero_for_equal_distributions_and_grows_with_a_shift():
    from genbench.evaluation.inference import mmd2_unbiased

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, 2, generator=g), torch.randn(1000, 2, generator=g)
    assert abs(mmd2_unbiased(a, b)) < 0.01
    assert mmd2_unbiased(a, b + 0.5) > 0.1 > mmd2_unbiased(a, b + 0.1)


# -- the paper-scale image configs, on made-up 32x32 images (SVHN and CIFAR-10 are not on the machine) -------------

class Fake32(TensorDataModule):
    """Labelled 3x32x32 8-bit images: a class-dependent colour plus noise, so a linear probe has something to find."""

    name = "fake32"

    def space(self):
        return DataSpace("discrete", (3, 32, 32), levels=256)

    def load(self):
        g = torch.Generator().manual_seed(0)
        labels = torch.arange(120) % 10
        colour = torch.rand(10, 3, 1, 1, generator=g) * 200
        x = (colour[labels] + 40 * torch.rand(120, 3, 32, 32, generator=g)).round().clamp(0, 255).to(torch.uint8)
        self.split_labels = {"train": labels[:60], "val": labels[60:90], "test": labels[90:]}
        return {"train": x[:60], "val": x[60:90], "test": x[90:]}


@pytest.mark.parametrize("experiment, feature_dim", [("ali_svhn", 4096 + 512 + 512 + 256),
                                                     ("ali_cifar10", 4096 + 512 + 512 + 64)])
def test_paper_image_configs_train_sample_and_feed_the_svm_probe(experiment, feature_dim):
    from genbench.evaluation.features import svm_error

    config = compose([f"experiment={experiment}"])
    assert config["model"]["beta2"] == 0.999 and config["evaluation"]["features"]["repeats"] == 100
    dm = Fake32(batch_size=20)
    model = build_model(config["model"], dm.info)
    fit(model, dm, 1)
    model.eval()
    s = model.sample(3)
    assert s.shape == (3, 3, 32, 32) and torch.equal(s, s.round()) and s.min() >= 0 and s.max() <= 255
    settings = {**config["evaluation"]["features"], "labelled": 20, "repeats": 2, "log_c": (-2.0, 2.0, 3), "pool": None}
    (result,) = svm_error(model, dm, **settings)
    assert result.metric == "error_pct" and 0 <= result.value <= 100
    assert result.settings["feature_dim"] == feature_dim and result.settings["n_validation"] == 30


@pytest.mark.parametrize("shape, dim", [((7, 5, 11), 1), ((3, 4, 2, 5, 5), 2)])
def test_max_over_has_amaxs_value_and_gradient(shape, dim):
    """The maxout max (fully connected and convolutional layouts): amax's forward, and its backward without ties."""
    from genbench.nn.blocks import max_over

    v = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    g = torch.randn(v.amax(dim).shape, dtype=torch.float64)
    ours, = torch.autograd.grad(max_over(v, dim), v, g)
    ref, = torch.autograd.grad(v.amax(dim), v, g)
    assert torch.equal(max_over(v, dim), v.amax(dim)) and torch.equal(ours, ref)
    assert torch.count_nonzero(ours) == g.numel()  # one piece per unit gets the gradient
