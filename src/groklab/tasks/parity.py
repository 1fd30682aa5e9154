"""Sparse parity (Barak et al. 2022, arXiv 2207.08799): y = parity of k of n random bits.

Inputs are ±1 vectors; the relevant bits are the first k (a fixed choice loses no generality:
the model is permutation-equivariant over inputs at initialisation).
"""
from __future__ import annotations

import torch

from groklab.tasks.base import Task, add_label_noise, split_indices


def parity_task(n_bits: int, k: int, n_samples: int, frac: float, seed: int,
                label_noise: int = 0) -> Task:
    g = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (n_samples, n_bits), generator=g)
    y = bits[:, :k].sum(1) % 2
    x = (2 * bits - 1).float()
    tr, va = split_indices(n_samples, frac, seed)
    y_train = add_label_noise(y[tr], label_noise, 2, seed)
    return Task(name=f"parity {k} of {n_bits}", x_train=x[tr], y_train=y_train, x_val=x[va],
                y_val=y[va], n_classes=2, kind="vectors", d_in=n_bits,
                meta={"family": "parity", "n_bits": n_bits, "k": k, "n_samples": n_samples})
