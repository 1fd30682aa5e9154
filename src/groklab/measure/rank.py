"""Feature rank per layer (Fan, Pascanu, Jaggi 2024, "Deep Grokking", arXiv 2405.19454).

The feature rank of a layer is the numerical rank of the covariance of its outputs over
held-out inputs: ``torch.linalg.matrix_rank(torch.cov(H.T))`` with the default tolerance, H the
(N, d) pre-activation outputs of one Linear layer (their code: a forward hook on every
``nn.Linear``, over the test images, in eval mode). In deep MLPs it falls at the generalization
transition, the paper's indicator of grokking.
"""
from __future__ import annotations

import torch

__all__ = ["feature_rank", "feature_ranks", "linear_outputs", "rank_subsample"]


def feature_rank(h: torch.Tensor) -> int:
    """Numerical rank of the centred covariance of ``h`` (N, d) -> int in [0, min(N - 1, d)].

    Constant outputs give a zero covariance and rank 0; outputs A @ B with inner dimension r
    give rank r (up to the default tolerance of ``matrix_rank``)."""
    if h.dim() != 2 or h.shape[0] < 2:
        raise ValueError(f"feature_rank needs (N >= 2, d) outputs, got shape {tuple(h.shape)}")
    d = h.shape[1]
    # shifting by one row leaves the covariance unchanged in exact arithmetic and makes constant
    # columns exactly 0 (a rounded mean would leave ~1e-8 noise that the relative default
    # tolerance of matrix_rank counts as rank)
    cov = torch.cov((h - h[:1]).T).reshape(d, d)  # torch.cov of one variable is 0-d
    return int(torch.linalg.matrix_rank(cov))


@torch.no_grad()
def linear_outputs(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of every Linear layer of an ``MLPNet`` on ``x`` in eval mode:
    ``{"L1": (N, hidden[0]), ..., "Ln": (N, n_out)}``, n = len(hidden) + 1, before the ReLU.

    Read at the model's hook points (``hooks_pre.{i}`` and ``hook_logits``), so the first
    layer's gather path on one-hot tokens counts as its Linear too."""
    if not hasattr(model, "hooks_pre"):
        raise ValueError(f"feature rank is defined for MLPs, not {type(model).__name__}")
    names = [f"hooks_pre.{i}" for i in range(len(model.hooks_pre))] + ["hook_logits"]
    was = model.training
    model.eval()
    try:
        _, cache = model.run_with_cache(x, names=names)
    finally:
        model.train(was)
    return {f"L{i + 1}": cache[n] for i, n in enumerate(names)}


def feature_ranks(model: torch.nn.Module, x: torch.Tensor) -> dict[str, int]:
    """``{"rank_L1": r1, ..., "rank_Ln": rn}``: ``feature_rank`` of each Linear layer on ``x``."""
    return {f"rank_{k}": feature_rank(h) for k, h in linear_outputs(model, x).items()}


def rank_subsample(x: torch.Tensor, max_n: int = 1000, seed: int = 0) -> torch.Tensor:
    """At most ``max_n`` rows of ``x``, a seeded random choice (the same at every step of a run)."""
    if len(x) <= max_n:
        return x
    g = torch.Generator().manual_seed(seed)
    return x[torch.randperm(len(x), generator=g)[:max_n].sort().values]
