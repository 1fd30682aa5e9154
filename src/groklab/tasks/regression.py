"""One-dimensional regression tasks of Miller, O'Neill, Bui 2024 (arXiv 2310.17247), where
grokking appears without a network:

* ``sine_task``: y = sin(2x) + N(0, noise²), x ~ U(-1.5, 1.5), 50 / 50 (their exact-GP run).
* ``line_task``: y = 0.3 x, x ~ U(-0.5, 0.5), 2 train / 98 validation (their linear
  regression on spurious features).

``y`` is a float tensor; ``n_classes`` is 0 (no classes: each model's own ``correct`` rule
says what counts as right).
"""
from __future__ import annotations

import torch

from groklab.tasks.base import Task


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, 1, generator=g)  # (n, 1)


def sine_task(n_train: int, n_val: int, noise: float, seed: int) -> Task:
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_val
    x = _uniform(n, -1.5, 1.5, g)
    y = torch.sin(2 * x[:, 0]) + noise * torch.randn(n, generator=g)
    return Task(name="sin 2x + noise", x_train=x[:n_train], y_train=y[:n_train], x_val=x[n_train:],
                y_val=y[n_train:], n_classes=0, kind="vectors", d_in=1,
                meta={"family": "sine", "noise": noise})


def line_task(n_train: int, n_val: int, seed: int, slope: float = 0.3) -> Task:
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_val
    x = _uniform(n, -0.5, 0.5, g)
    y = slope * x[:, 0]
    return Task(name=f"y = {slope} x", x_train=x[:n_train], y_train=y[:n_train], x_val=x[n_train:],
                y_val=y[n_train:], n_classes=0, kind="vectors", d_in=1,
                meta={"family": "line", "slope": slope, "noise": 0.0})
