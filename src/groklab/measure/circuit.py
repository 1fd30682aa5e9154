"""Key frequencies, restricted and excluded loss (Nanda et al. 2023, arXiv 2301.05217, §5.1).

All functions are pure: they take grid tensors in a ``Frame``'s coordinate order (row i·n + j
for operand coordinates i, j; see ``groklab.measure.fourier``) and return numbers.

* Key frequencies: each neuron's activation over the n² grid, mean removed, is transformed with
  the 2-D Fourier basis; the neuron belongs to the frequency k whose block {0, cos k, sin k}²
  holds the largest share of its energy, if that share is >= 0.85. K = the set of chosen k.
* Directions: u_k ∝ cos(ω_k(i + s·j)), v_k ∝ sin(ω_k(i + s·j)) on the grid (unit vectors;
  s = the frame's sign), and P_k(L) = u_k u_kᵀ L + v_k v_kᵀ L for every output class.
* Restricted loss: cross-entropy over the whole grid of Σ_{k∈K} P_k(L) + mean over rows of L.
* Excluded loss: cross-entropy over the training pairs of L − Σ_{k∈K} P_k(L).
Losses are float64 and use the true answers (not noisy training labels).
"""
from __future__ import annotations

import math

import torch

from groklab.measure.fourier import Frame, fourier_basis

SHARE = 0.85  # Nanda et al.: a neuron is "clustered" when one frequency explains >= 85 % of it


def neuron_frequency_shares(acts: torch.Tensor, n: int) -> torch.Tensor:
    """Share of each neuron's (mean-removed) activation energy in each frequency block.

    Args: acts (n², N) activations on the grid in frame order; n the group order.
    Returns: (N, n//2) float64: share[neuron, k-1] = energy in rows/cols {0, cos k, sin k} of the
    2-D Fourier transform B A Bᵀ, divided by the total energy (0 for a dead neuron).
    """
    B, freq = fourier_basis(n)
    A = acts.double().T.reshape(-1, n, n)                       # (N, n, n)
    A = A - A.mean(dim=(1, 2), keepdim=True)
    F2 = (B @ A @ B.T).pow(2)                                   # (N, n, n)
    total = F2.sum(dim=(1, 2))
    shares = []
    for k in range(1, n // 2 + 1):
        rows = (freq == k) | (freq == 0)
        shares.append(F2[:, rows][:, :, rows].sum(dim=(1, 2)))
    S = torch.stack(shares, 1)                                  # (N, n//2)
    return torch.where(total[:, None] > 0, S / total.clamp_min(1e-300)[:, None], torch.zeros_like(S))


def neuron_clusters(acts: torch.Tensor, n: int, share: float = SHARE) -> tuple[torch.Tensor, torch.Tensor]:
    """Each neuron's frequency and its share: ((N,) long, 0 = not clustered, (N,) float64)."""
    S = neuron_frequency_shares(acts, n)
    best, k = S.max(dim=1)
    return torch.where(best >= share, k + 1, torch.zeros_like(k)), best


def key_frequencies(acts: torch.Tensor, n: int, share: float = SHARE) -> list[int]:
    """K: the sorted frequencies chosen by at least one neuron (acts (n², N), see module doc)."""
    k, _ = neuron_clusters(acts, n, share)
    return sorted(int(f) for f in k.unique() if f > 0)


def directions(frame: Frame, freqs) -> torch.Tensor:
    """Orthonormal grid directions of the key frequencies: (n², m) float64, m = 2|K| (1 for the
    Nyquist frequency n/2, whose sine vanishes)."""
    n = frame.n
    i, j = torch.cartesian_prod(torch.arange(n), torch.arange(n)).T
    s = ((i + frame.sign * j) % n).double()
    cols = []
    for k in freqs:
        w = 2 * math.pi * k * s / n
        for c in (torch.cos(w), torch.sin(w)):
            nrm = c.norm()
            if nrm > 1e-9 * n:
                cols.append(c / nrm)
    if not cols:
        return torch.zeros(n * n, 0, dtype=torch.float64)
    return torch.stack(cols, 1)


def project(L: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """Σ_k P_k(L) = D Dᵀ L for logits L (n², C) and directions D (n², m): (n², C) float64."""
    L = L.double()
    return D @ (D.T @ L)


def _ce(L: torch.Tensor, y: torch.Tensor) -> float:
    return float(-L.double().log_softmax(-1).gather(-1, y[:, None]).mean())


def restricted_loss(L: torch.Tensor, frame: Frame, freqs) -> tuple[float, float]:
    """(loss, accuracy) over the whole grid of Σ_{k∈K} P_k(L) + the row mean of L.

    L (n², C) logits in frame order with the ``=`` class dropped (C = p)."""
    Lr = project(L, directions(frame, freqs)) + L.double().mean(0, keepdim=True)
    return _ce(Lr, frame.labels), float((Lr.argmax(-1) == frame.labels).double().mean())


def excluded_loss(L: torch.Tensor, frame: Frame, freqs) -> float:
    """Cross-entropy on the training pairs of L − Σ_{k∈K} P_k(L); L as in ``restricted_loss``."""
    Le = L.double() - project(L, directions(frame, freqs))
    return _ce(Le[frame.train], frame.labels[frame.train])


def excluded_loss_per_freq(L: torch.Tensor, frame: Frame, freqs) -> dict[str, float]:
    """Excluded loss with one key frequency removed at a time: {str(k): loss}."""
    return {str(k): excluded_loss(L, frame, [k]) for k in freqs}
