"""Concealed tasks (Miller, O'Neill, Bui 2024, "Grokking without neural networks",
arXiv 2310.17247): a small task whose inputs are padded with random bits that carry no
signal. The more bits conceal the task, the longer the grokking gap.

* ``concealed_parity_task``: y = parity of the first ``k`` of ``k + n_concealed`` bits; the
  authors' code keeps the bits in {0, 1} (also the padding), 1,000 train / 100 validation.
* ``concealed_modular_task``: one-hot a, one-hot b of a ∘ b mod p, plus ``n_concealed`` random
  bits; the examples are drawn with replacement from the p² pairs (their MLP concealment
  experiment: p = 7, 600 / 200, 0-40 bits), so pairs repeat with fresh padding.
"""
from __future__ import annotations

import torch

from groklab.tasks.base import Task
from groklab.tasks.modular import operation_table


def concealed_parity_task(k: int, n_concealed: int, n_train: int, n_val: int, seed: int) -> Task:
    """(n_train + n_val) independent rows of k + n_concealed bits in {0, 1}; y = sum of the
    first k bits mod 2 (the parity bits come first; the models are symmetric in the inputs)."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_val
    x = torch.randint(0, 2, (n, k + n_concealed), generator=g)
    y = x[:, :k].sum(1) % 2
    x = x.float()
    return Task(name=f"parity of {k} bits concealed by {n_concealed}", x_train=x[:n_train],
                y_train=y[:n_train], x_val=x[n_train:], y_val=y[n_train:], n_classes=2,
                kind="vectors", d_in=k + n_concealed,
                meta={"family": "concealed_parity", "k": k, "n_concealed": n_concealed})


def concealed_modular_task(op: str, p: int, n_concealed: int, n_train: int, n_val: int,
                           seed: int) -> Task:
    """Rows [onehot(a), onehot(b), n_concealed random bits] -> a ∘ b mod p, (a, b) drawn
    uniformly with replacement from the p² pairs (train and validation alike)."""
    a, b, c = operation_table(op, p)
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_val
    idx = torch.randint(0, len(c), (n,), generator=g)
    eye = torch.eye(p)
    noise = torch.randint(0, 2, (n, n_concealed), generator=g).float()
    x = torch.cat([eye[a[idx]], eye[b[idx]], noise], 1)
    y = c[idx]
    return Task(name=f"{op} mod {p} concealed by {n_concealed}", x_train=x[:n_train],
                y_train=y[:n_train], x_val=x[n_train:], y_val=y[n_train:], n_classes=p,
                kind="vectors", d_in=2 * p + n_concealed,
                meta={"family": "concealed_modular", "op": op, "p": p, "n_concealed": n_concealed})
