"""The networks of the adversarial family by architecture name: decoder G_x, encoder G_z, discriminator D.

Architectures (``arch``):

* ``mlp``: the ALI code's 2D toy (``experiments/ali_mixture.py``) when used with its sizes: decoder
  z → 400 → 400 → 400 → 400 → x with BN + ReLU, implicit encoder [x, ε] → 400 → 400 → z, discriminator of
  three maxout layers (200 units × 5 pieces) then a logit. Sizes are arguments; images are flattened.
* ``dcgan``: a small DCGAN-style pair for MNIST/digits-sized images (side divisible by 4): two stride-2
  (transposed) convs of width ``channels`` and 2·``channels`` around a ``side/4`` kernel to/from 1×1.
* ``ali_svhn`` / ``ali_cifar10``: Tables 5.4 / 5.3 of the thesis (3×32×32 input, |z| = 256 / 64),
  "valid" convs, a sigmoid decoder output with a per-pixel bias, D(x) and D(z) trunks joined by 1×1 convs.
  Table 5.3's maxout follows the ALI code: a conv of N maps then a channel maxout of 2 pieces (N/2 outputs),
  so its D(x, z) input has 512 channels where the table prints 1024.

The latent code is always a flat [B, |z|] tensor; conv nets see it as [B, |z|, 1, 1]. A discriminator
returns one logit per pair, [B]; without a z trunk (``joint=False``) it is a GAN's D(x).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..core.errors import ConfigError
from .blocks import ConvBlock, UntiedBias, maxout_mlp, mlp

ARCHS = ("mlp", "dcgan", "ali_svhn", "ali_cifar10")
ENCODERS = ("implicit", "gaussian", "deterministic")

# (transposed?, kernel, stride, padding, maps, batch norm, dropout on the input, activation); maps "z" = the latent
# code's width (×2 for a Gaussian encoder's μ and log σ), "x" = the image channels, "out" = D's outputs (1 logit, or K
# for a semi-supervised D).
_T = True
_ENCODER = [(0, 5, 1, 0, 32, 1, 0, "lrelu"), (0, 4, 2, 0, 64, 1, 0, "lrelu"), (0, 4, 1, 0, 128, 1, 0, "lrelu"),
            (0, 4, 2, 0, 256, 1, 0, "lrelu"), (0, 4, 1, 0, 512, 1, 0, "lrelu"), (0, 1, 1, 0, 512, 1, 0, "lrelu"),
            (0, 1, 1, 0, "z", 0, 0, "linear")]  # G_z and G_x are the same in Tables 5.3 and 5.4
_DECODER = [(_T, 4, 1, 0, 256, 1, 0, "lrelu"), (_T, 4, 2, 0, 128, 1, 0, "lrelu"), (_T, 4, 1, 0, 64, 1, 0, "lrelu"),
            (_T, 4, 2, 0, 32, 1, 0, "lrelu"), (_T, 5, 1, 0, 32, 1, 0, "lrelu"), (0, 1, 1, 0, 32, 1, 0, "lrelu"),
            (0, 1, 1, 0, "x", 0, 0, "sigmoid")]
ALI_TABLES = {
    "ali_svhn": {  # Table 5.4: leaky ReLU slope 0.01, |z| = 256
        "latent_dim": 256, "slope": 0.01, "pieces": 2,
        "encoder": _ENCODER, "decoder": _DECODER,
        "disc_x": [(0, 5, 1, 0, 32, 0, 0.2, "lrelu"), (0, 4, 2, 0, 64, 1, 0.2, "lrelu"), (0, 4, 1, 0, 128, 1, 0.2, "lrelu"),
                   (0, 4, 2, 0, 256, 1, 0.2, "lrelu"), (0, 4, 1, 0, 512, 1, 0.2, "lrelu")],
        "disc_z": [(0, 1, 1, 0, 512, 0, 0.2, "lrelu"), (0, 1, 1, 0, 512, 0, 0.2, "lrelu")],
        "disc_joint": [(0, 1, 1, 0, 1024, 0, 0.2, "lrelu"), (0, 1, 1, 0, 1024, 0, 0.2, "lrelu"),
                       (0, 1, 1, 0, "out", 0, 0.2, "linear")],
    },
    "ali_cifar10": {  # Table 5.3: leaky ReLU slope 0.1, maxout with 2 pieces in D, |z| = 64
        "latent_dim": 64, "slope": 0.1, "pieces": 2,
        "encoder": _ENCODER, "decoder": _DECODER,
        "disc_x": [(0, 5, 1, 0, 32, 0, 0.2, "maxout"), (0, 4, 2, 0, 64, 0, 0.5, "maxout"),
                   (0, 4, 1, 0, 128, 0, 0.5, "maxout"), (0, 4, 2, 0, 256, 0, 0.5, "maxout"),
                   (0, 4, 1, 0, 512, 0, 0.5, "maxout")],
        "disc_z": [(0, 1, 1, 0, 512, 0, 0.2, "maxout"), (0, 1, 1, 0, 512, 0, 0.5, "maxout")],
        "disc_joint": [(0, 1, 1, 0, 1024, 0, 0.5, "maxout"), (0, 1, 1, 0, 1024, 0, 0.5, "maxout"),
                       (0, 1, 1, 0, "out", 0, 0.5, "linear")],
    },
}


def dcgan_spec(side: int, width: int) -> dict:
    """The small DCGAN-style pair for ``side``×``side`` images (side divisible by 4): 1×1 ↔ side/4 ↔ side/2 ↔ side."""
    if side % 4:
        raise ConfigError(f"the dcgan architecture needs an image side divisible by 4, got {side}")
    s0, w = side // 4, width
    return {
        "slope": 0.2, "pieces": 2,
        "encoder": [(0, 4, 2, 1, w, 1, 0, "lrelu"), (0, 4, 2, 1, 2 * w, 1, 0, "lrelu"), (0, s0, 1, 0, "z", 0, 0, "linear")],
        "decoder": [(_T, s0, 1, 0, 2 * w, 1, 0, "relu"), (_T, 4, 2, 1, w, 1, 0, "relu"), (_T, 4, 2, 1, "x", 0, 0, "tanh")],
        "disc_x": [(0, 4, 2, 1, w, 0, 0, "lrelu"), (0, 4, 2, 1, 2 * w, 1, 0, "lrelu"), (0, s0, 1, 0, 4 * w, 0, 0, "lrelu")],
        "disc_z": [(0, 1, 1, 0, 4 * w, 0, 0, "lrelu")],
        "disc_joint": [(0, 1, 1, 0, 4 * w, 0, 0, "lrelu"), (0, 1, 1, 0, "out", 0, 0, "linear")],
    }


def conv_stack(spec: Sequence[tuple], c_in: int, slope: float, pieces: int, maps: dict[str, int]) -> tuple[nn.Sequential, int]:
    """ConvBlocks from spec rows; returns the stack and its output channels (a maxout divides them by ``pieces``)."""
    blocks = []
    for transpose, k, s, p, c_out, bn, drop, act in spec:
        c_out = maps.get(c_out, c_out)
        blocks.append(ConvBlock(c_in, c_out, k, s, p, bool(bn), act, drop, bool(transpose), slope, pieces))
        c_in = c_out // pieces if act == "maxout" else c_out
    return nn.Sequential(*blocks), c_in


def output_activation(arch: str, continuous: bool) -> str:
    """The decoder's last nonlinearity: ``linear`` on continuous data, else the architecture's (tanh | sigmoid)."""
    if continuous:
        if arch != "mlp":
            raise ConfigError(f"arch {arch!r} is for images; continuous data takes arch=mlp")
        return "linear"
    return "sigmoid" if arch in ALI_TABLES else "tanh"


class Decoder(nn.Module):
    """G_x: z [B, |z|] → x [B, *shape] in the model's space."""

    def __init__(self, net: nn.Module, shape: Sequence[int], conv: bool):
        super().__init__()
        self.net, self.shape, self.conv = net, tuple(shape), conv

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None] if self.conv else z).reshape(z.shape[0], *self.shape)


class Encoder(nn.Module):
    """G_z: x → z [B, |z|]; ``kind`` implicit (MLP on [x, ε]), gaussian (μ + σ ε) or deterministic (BiGAN)."""

    def __init__(self, trunk: nn.Module, head: nn.Module, kind: str, latent_dim: int, conv: bool):
        super().__init__()
        self.trunk, self.head, self.kind, self.latent_dim, self.conv = trunk, head, kind, latent_dim, conv

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        x = x if self.conv else x.flatten(1)
        if self.kind == "implicit":
            x = torch.cat([x, torch.randn(x.shape[0], self.latent_dim, device=x.device, dtype=x.dtype)], 1)
        return self.head(self.trunk(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._out(x)
        if self.kind == "gaussian":
            mu, log_sigma = out.chunk(2, dim=1)
            return mu + log_sigma.exp() * torch.randn_like(mu)
        return out

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """μ(x) of a Gaussian encoder, G_z(x) of a deterministic one (no noise drawn)."""
        return self._out(x)[:, : self.latent_dim]

    def features(self, x: torch.Tensor, layers: int = 3) -> torch.Tensor:
        """The pre-activations of the last ``layers`` hidden blocks and the output's mean, flattened and concatenated.

        The L2-SVM features of the ALI code (``scripts/preprocess_representations``: the batch-norm outputs
        of the last three hidden conv layers and μ). Conv encoders only.
        """
        if not self.conv or self.kind == "implicit":
            raise ConfigError("encoder features are defined for conv encoders with a Gaussian or deterministic output")
        kept, n = [], len(self.trunk)
        for i, block in enumerate(self.trunk):
            x, pre = block.forward_with_pre_activation(x)
            if i >= n - layers:
                kept.append(pre.flatten(1))
        out = self.head(x).flatten(1)
        kept.append(out[:, : self.latent_dim])  # μ of a Gaussian encoder, z of a deterministic one
        return torch.cat(kept, 1)


class Discriminator(nn.Module):
    """D(x[, z]) → logit [B] (or K logits [B, K]): an x trunk, an optional z trunk, and a joint network on their
    concatenation, whose input is :meth:`features`."""

    def __init__(self, x_net: nn.Module, z_net: nn.Module | None, joint: nn.Module, conv: bool):
        super().__init__()
        self.x_net, self.z_net, self.joint, self.conv = x_net, z_net, joint, conv

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        out = self.joint(self._trunks(x, z)).flatten(1)
        return out[:, 0] if out.shape[1] == 1 else out

    def features(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """The joint network's input, flattened: what feature matching compares."""
        return self._trunks(x, z).flatten(1)

    def _trunks(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        if (z is None) != (self.z_net is None):
            raise ConfigError("a joint discriminator takes (x, z); a GAN discriminator takes x alone")
        h = self.x_net(x if self.conv else x.flatten(1))
        if z is not None:
            h = torch.cat([h, self.z_net(z[:, :, None, None] if self.conv else z)], 1)
        return h


def build_networks(arch: str, shape: Sequence[int], continuous: bool, latent_dim: int, encoder: str | None,
                   joint: bool, decoder_hidden: Sequence[int] = (400, 400, 400, 400),
                   encoder_hidden: Sequence[int] = (400, 400), disc_hidden: Sequence[int] = (200, 200, 200),
                   maxout_pieces: int = 5, channels: int = 32, disc_out: int = 1):
    """(decoder, encoder or None, discriminator) for ``arch`` on data of ``shape``; D has ``disc_out`` outputs.

    ``encoder``: None (a GAN), or one of :data:`ENCODERS`. ``joint``: the discriminator sees (x, z).
    The mlp sizes (``*_hidden``, ``maxout_pieces``) apply to ``mlp``, ``channels`` to ``dcgan``; the
    ``ali_*`` tables fix everything, including |z|, which must match ``latent_dim``.
    """
    if arch not in ARCHS:
        raise ConfigError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")
    if encoder is not None and encoder not in ENCODERS:
        raise ConfigError(f"unknown encoder {encoder!r}; valid: {', '.join(ENCODERS)}")
    out_act = output_activation(arch, continuous)
    z_out = latent_dim * (2 if encoder == "gaussian" else 1)
    if arch == "mlp":
        d = math.prod(shape)
        dec = Decoder(mlp([latent_dim, *decoder_hidden, d], out_act=out_act), shape, conv=False)
        enc = None
        if encoder is not None:
            d_in = d + (latent_dim if encoder == "implicit" else 0)
            net = mlp([d_in, *encoder_hidden, z_out])
            enc = Encoder(net[:-2], net[-2:], encoder, latent_dim, conv=False)
        disc = Discriminator(nn.Identity(), nn.Identity() if joint else None,
                             maxout_mlp(d + (latent_dim if joint else 0), disc_hidden, maxout_pieces, disc_out),
                             conv=False)
        return dec, enc, disc

    if len(shape) != 3:
        raise ConfigError(f"arch {arch!r} needs image data [C, H, W], got shape {tuple(shape)}")
    c, h, w = shape
    if arch == "dcgan":
        if h != w:
            raise ConfigError(f"the dcgan architecture needs square images, got {h}x{w}")
        spec = dcgan_spec(h, channels)
    else:
        spec = ALI_TABLES[arch]
        if (h, w) != (32, 32):
            raise ConfigError(f"arch {arch!r} is for 32x32 images (Tables 5.3/5.4), got {h}x{w}")
        if latent_dim != spec["latent_dim"]:
            raise ConfigError(f"arch {arch!r} has |z| = {spec['latent_dim']} (its table), got latent_dim={latent_dim}")
    if encoder == "implicit":
        raise ConfigError("the implicit encoder (an MLP on [x, ε]) exists for arch=mlp only; use gaussian or deterministic")
    slope, pieces = spec["slope"], spec["pieces"]
    maps = {"z": z_out, "x": c, "out": disc_out}
    dec_net, _ = conv_stack([(*row[:7], out_act if row[4] == "x" else row[7]) for row in spec["decoder"]],
                            latent_dim, slope, pieces, maps)
    if arch in ALI_TABLES:  # the code's per-pixel output bias (log-odds of the pixel marginals, set by the model)
        dec_net[-1][0].bias = None
        dec_net[-1].insert(1, UntiedBias(shape))
    dec = Decoder(dec_net, shape, conv=True)
    enc = None
    if encoder is not None:
        stack, _ = conv_stack(spec["encoder"], c, slope, pieces, maps)
        enc = Encoder(stack[:-1], stack[-1], encoder, latent_dim, conv=True)
    x_net, cx = conv_stack(spec["disc_x"], c, slope, pieces, maps)
    z_net, cz = conv_stack(spec["disc_z"], latent_dim, slope, pieces, maps) if joint else (None, 0)
    joint_net, _ = conv_stack(spec["disc_joint"], cx + cz, slope, pieces, maps)
    return dec, enc, Discriminator(x_net, z_net, joint_net, conv=True)
