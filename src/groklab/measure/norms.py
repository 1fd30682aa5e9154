"""Fourier norms, their Gini coefficients, and the sum of squared weights.

Nanda et al. 2023 (arXiv 2301.05217, §5.2): the embedding's and the neuron-logit map's norms in
the Fourier basis become sparse as the circuit forms (their Gini coefficient rises), and the sum
of squared weights falls smoothly during circuit formation and sharply during cleanup.
"""
from __future__ import annotations

import torch

from groklab.measure.fourier import fourier_basis


def fourier_norms(W: torch.Tensor) -> torch.Tensor:
    """Norm of each Fourier component of a map whose rows are indexed by group elements.

    Args: W (n, d): row i belongs to coordinate i (tokens of the embedding, classes of the
    neuron-logit map), already in frame order. Returns (n,) float64: ‖(B W)[f, :]‖₂ for the
    basis rows f = [const, cos 1, sin 1, ...]. This is n_E for W = W_E (Nanda's
    ‖(W_E Bᵀ)[:, f]‖ in his (d, V) layout) and n_L for W = W_L = (W_out W_U)ᵀ.
    """
    B, _ = fourier_basis(W.shape[0])
    return (B @ W.double()).norm(dim=1)


def per_frequency(norms: torch.Tensor) -> torch.Tensor:
    """Combine the cos and sin components of each frequency: (n,) -> (n//2,) float64, entry k-1 =
    sqrt(n[cos k]² + n[sin k]²). The constant component is dropped."""
    n = norms.shape[0]
    _, freq = fourier_basis(n)
    out = torch.zeros(n // 2, dtype=torch.float64)
    return out.index_add_(0, freq[1:] - 1, norms[1:].double() ** 2).sqrt()


def gini(x: torch.Tensor) -> float:
    """Gini coefficient (Hurley & Rickard 2009) of x >= 0, (N,): 0 for equal entries,
    1 - 1/N when one entry holds everything. G = 1 − 2 Σ_i (x_(i)/‖x‖₁)(N − i + ½)/N, x sorted
    ascending, i = 1..N. An all-zero x gives 0."""
    x = x.double().flatten().sort().values
    N, s = x.numel(), x.sum()
    if N == 0 or s <= 0:
        return 0.0
    i = torch.arange(1, N + 1, dtype=torch.float64)
    return float(1 - 2 * ((x / s) * (N - i + 0.5) / N).sum())


def fourier_gini(norms: torch.Tensor) -> float:
    """Gini of a Fourier-norm vector over frequencies 1..n//2 (cos and sin combined per frequency,
    the constant component left out: the circuit uses frequencies, and a shared offset of the
    rows says nothing about sparsity in frequency)."""
    return gini(per_frequency(norms))


@torch.no_grad()
def weight_norms(model: torch.nn.Module) -> dict:
    """Sum of squared weights, total and per tensor (Nanda et al. 2023, §5.2)."""
    per = {n: float((p.double() ** 2).sum()) for n, p in model.named_parameters()}
    return {"sum_sq_weights": sum(per.values()), "sum_sq_per_tensor": per}
