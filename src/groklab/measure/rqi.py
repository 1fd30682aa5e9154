"""Representation Quality Index (Liu et al. 2022, arXiv 2205.10343, §3).

For embeddings E_0..E_{p-1} of the operands of an addition, a parallelogram (i, j, m, n) with
i < j <= m < n and i + n = j + m "exists" when mean(((E_i + E_n) − (E_j + E_m))²) < δ on
embeddings normalised per dimension (zero mean, unit standard deviation). RQI = existing / ideal,
ideal = the number of such quadruples. A linear representation E_i = i·v + c scores 1.

The sums are integer sums, as in Liu's toy addition: for modular tasks this asks whether the
embedding is *linear* in the token; the circular Fourier representation that Nanda's transformer
learns satisfies few of these parallelograms, so its RQI stays low even after grokking.
"""
from __future__ import annotations

import torch

DELTA = 0.01


def rqi(E: torch.Tensor, delta: float = DELTA) -> float:
    """RQI of embeddings E (p, d), rows in operand order 0..p-1. Returns a float in [0, 1]."""
    E = E.double()
    E = (E - E.mean(0)) / E.std(0, unbiased=False).clamp_min(1e-12)
    p = E.shape[0]
    found = ideal = 0
    # group quadruples by their sum s = i + n = j + m: pairs (a, s-a) with a <= s-a
    for s in range(1, 2 * p - 2):
        a = torch.arange(max(0, s - p + 1), s // 2 + 1)
        if len(a) < 2:
            continue
        S = E[a] + E[s - a]                                    # (P, d) pair sums
        D = torch.cdist(S, S).pow(2) / E.shape[1]              # mean squared difference
        iu = torch.triu_indices(len(a), len(a), offset=1)      # a1 < a2: the outer and inner pair
        found += int((D[iu[0], iu[1]] < delta).sum())
        ideal += iu.shape[1]
    return found / ideal if ideal else 0.0
