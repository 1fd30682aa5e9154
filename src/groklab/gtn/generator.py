"""Weight-normalised layers and the GTN generators G(z, y) -> x.

Weight normalisation (Salimans & Kingma 2016, arXiv 1602.07868) reparameterises every output
unit's weight vector as w = g · v / ‖v‖; Such et al. (2020, arXiv 1912.07768, §3) call it
critical for stable meta-training, so both generator and learners can switch it on.

The released MNIST generator is [z, onehot(y)] → WN-Linear 1024 → BN → LeakyReLU(0.1) →
WN-Linear 128·(W/4)² → BN → LeakyReLU → reshape → 2 × (nearest upsample ×2, reflection pad 1,
WN conv 3×3) → 2·tanh. ``ConvGenerator`` follows it with configurable channels (BN between the
two conv stages); ``MLPGenerator`` is the same head without the convolutions, for vectors.
BatchNorm here always uses the statistics of the generated batch (no running buffers), so a
batch is a pure function of (weights, z, y) — the checkpointed unroll recomputes it exactly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class WNLinear(nn.Module):
    """y = x (g · v/‖v‖)ᵀ + b, the norm taken per output unit. x (B, in) → (B, out)."""

    def __init__(self, d_in: int, d_out: int, weight_norm: bool = True, bias: bool = True):
        super().__init__()
        self.weight_norm = weight_norm
        bound = 1 / math.sqrt(d_in)
        self.v = nn.Parameter(torch.empty(d_out, d_in).uniform_(-bound, bound))
        # g starts at ‖v‖ so the layer starts as the plain Linear it normalises
        self.g = nn.Parameter(self.v.detach().norm(dim=1)) if weight_norm else None
        self.b = nn.Parameter(torch.zeros(d_out)) if bias else None

    def weight(self) -> torch.Tensor:
        if not self.weight_norm:
            return self.v
        return self.v * (self.g / self.v.norm(dim=1)).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(), self.b)


class WNConv(nn.Module):
    """Weight-normalised convolution (1-D or 2-D), the norm per output channel over (in, *k).
    x (B, in, *S) → (B, out, *S') with ``padding`` zeros on each side."""

    def __init__(self, c_in: int, c_out: int, k: int, dims: int = 2, weight_norm: bool = True,
                 padding: int = 0, stride: int = 1):
        super().__init__()
        self.weight_norm, self.padding, self.stride = weight_norm, padding, stride
        self.conv = F.conv2d if dims == 2 else F.conv1d
        bound = 1 / math.sqrt(c_in * k ** dims)
        self.v = nn.Parameter(torch.empty(c_out, c_in, *([k] * dims)).uniform_(-bound, bound))
        self.g = nn.Parameter(self.v.detach().flatten(1).norm(dim=1)) if weight_norm else None
        self.b = nn.Parameter(torch.zeros(c_out))

    def weight(self) -> torch.Tensor:
        if not self.weight_norm:
            return self.v
        scale = self.g / self.v.flatten(1).norm(dim=1)
        return self.v * scale.view(-1, *([1] * (self.v.dim() - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.weight(), self.b, stride=self.stride, padding=self.padding)


def _bn(n: int) -> nn.Module:
    return nn.BatchNorm1d(n, track_running_stats=False)


class MLPGenerator(nn.Module):
    """[z (N, z_dim), onehot(y)] → WN-Linear → BN → LeakyReLU(0.1) → WN-Linear → BN → LeakyReLU
    → WN-Linear → out_scale·tanh → x (N, *shape)."""

    def __init__(self, z_dim: int, n_classes: int, shape: tuple[int, ...], hidden: int = 1024,
                 weight_norm: bool = True, out_scale: float = 2.0):
        super().__init__()
        self.n_classes, self.shape, self.out_scale = n_classes, tuple(shape), out_scale
        d_out = math.prod(shape)
        self.fc1 = WNLinear(z_dim + n_classes, hidden, weight_norm)
        self.bn1 = _bn(hidden)
        self.fc2 = WNLinear(hidden, hidden, weight_norm)
        self.bn2 = _bn(hidden)
        self.out = WNLinear(hidden, d_out, weight_norm)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, F.one_hot(y, self.n_classes).to(z.dtype)], 1)   # (N, z_dim + C)
        h = F.leaky_relu(self.bn1(self.fc1(h)), 0.1)                      # (N, hidden)
        h = F.leaky_relu(self.bn2(self.fc2(h)), 0.1)
        x = self.out(h)                                                   # (N, prod(shape))
        x = self.out_scale * torch.tanh(x) if self.out_scale else x
        return x.view(-1, *self.shape)


class ConvGenerator(nn.Module):
    """The released MNIST generator: x (N, C, H, W) with H and W divisible by 4."""

    def __init__(self, z_dim: int, n_classes: int, shape: tuple[int, int, int], hidden: int = 1024,
                 channels: tuple[int, int] = (64, 32), weight_norm: bool = True,
                 out_scale: float = 2.0):
        super().__init__()
        c, h, w = shape
        if h % 4 or w % 4:
            raise ValueError(f"the conv generator needs image sides divisible by 4, not {h}×{w}")
        self.n_classes, self.out_scale, self.c0 = n_classes, out_scale, channels[0]
        self.h0, self.w0 = h // 4, w // 4
        self.fc1 = WNLinear(z_dim + n_classes, hidden, weight_norm)
        self.bn1 = _bn(hidden)
        self.fc2 = WNLinear(hidden, channels[0] * self.h0 * self.w0, weight_norm)
        self.bn2 = _bn(channels[0] * self.h0 * self.w0)
        self.conv1 = WNConv(channels[0], channels[1], 3, 2, weight_norm)
        self.bn3 = nn.BatchNorm2d(channels[1], track_running_stats=False)
        self.conv2 = WNConv(channels[1], c, 3, 2, weight_norm)

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1), mode="reflect")

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, F.one_hot(y, self.n_classes).to(z.dtype)], 1)
        h = F.leaky_relu(self.bn1(self.fc1(h)), 0.1)
        h = F.leaky_relu(self.bn2(self.fc2(h)), 0.1)
        h = h.view(-1, self.c0, self.h0, self.w0)                        # (N, c0, H/4, W/4)
        h = F.leaky_relu(self.bn3(self.conv1(self._up(h))), 0.1)          # (N, c1, H/2, W/2)
        x = self.conv2(self._up(h))                                       # (N, C, H, W)
        return self.out_scale * torch.tanh(x) if self.out_scale else x


class Pixels(nn.Module):
    """No generator: the curriculum's learned inputs (N, prod(shape)) *are* the examples — the
    learned-pixels baseline (dataset distillation, Wang et al. 2018, arXiv 1811.10959, trained
    through the same unroll). No parameters; x (N, *shape)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return z.view(-1, *self.shape)


def build_generator(cfg, data) -> nn.Module:
    """The generator a ``GeneratorConfig`` names for ``data`` (a GTNData)."""
    kind = cfg.kind if cfg.kind != "auto" else ("conv" if data.is_image else "mlp")
    if kind == "pixels":
        return Pixels(data.shape)
    if kind == "conv":
        if not data.is_image:
            raise ValueError(f"generator.kind='conv' needs image data, not data.name={data.name!r}")
        return ConvGenerator(cfg.z_dim, data.n_classes, data.shape, cfg.hidden, tuple(cfg.channels),
                             cfg.weight_norm, cfg.out_scale)
    return MLPGenerator(cfg.z_dim, data.n_classes, data.shape, cfg.hidden, cfg.weight_norm,
                        cfg.out_scale)
