"""A tiny GTN problem shared by the GTN tests (float64, seconds to run)."""
from __future__ import annotations

import pytest
import torch

from groklab.gtn.config import resolve
from groklab.gtn.data import GTNData


def tiny_data(n: int = 60, d: int = 5, c: int = 3, seed: int = 0) -> GTNData:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(c, d, generator=g) * 2
    y = torch.arange(n) % c
    x = centers[y] + torch.randn(n, d, generator=g)
    return GTNData("tiny", x, y, x.clone(), y.clone(), (d,), c, 0.0, 1.0)


def tiny_cfg(*overrides: str):
    base = ["generator.kind=mlp", "generator.z_dim=4", "generator.hidden=8", "learner.hidden=4",
            "inner.steps=3", "inner.batch=6", "meta.real_batch=10", "meta.dtype=float64",
            "meta.steps=6", "meta.log_every=1", "meta.checkpoint_every=3", "eval.learners=2",
            "eval.lrs=0.1,0.3"]
    return resolve(overrides=[*base, *overrides])


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny problems are dominated by per-op overhead; several threads on a shared CPU
    only oversubscribe it (20× slower measured on 2 busy cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
