"""The Task: train and validation tensors plus what a model needs to know about them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Task:
    """A supervised dataset split into train and validation.

    Token tasks have ``x`` of shape (N, 3) holding ``[x, y, =]`` (the ``=`` token is
    ``n_classes``, so ``vocab = n_classes + 1``); vector tasks have ``x`` of shape (N, d_in).
    ``y`` is (N,) class indices. ``table_index`` maps every example of a full operation table
    to its row (used by the progress measures); ``meta`` records how the task was made.
    """
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int
    kind: str                      # "tokens" | "vectors"
    vocab: int = 0                 # token tasks: n_classes + 1
    d_in: int = 0                  # vector tasks: input width
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_val(self) -> int:
        return len(self.y_val)


def split_indices(n: int, frac: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random permutation of range(n) cut at int(frac * n): (train_idx, val_idx).

    Reproducible from ``seed`` alone. Raises ValueError if either side would be empty.
    """
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    cut = int(frac * n)
    if cut < 1 or cut >= n:
        raise ValueError(f"task.frac={frac} leaves an empty train or validation set for {n} examples")
    return perm[:cut], perm[cut:]


def add_label_noise(y: torch.Tensor, n_noisy: int, n_classes: int, seed: int) -> torch.Tensor:
    """Replace ``n_noisy`` answers (chosen at random) by a random *different* answer (Power et al.)."""
    if n_noisy > len(y):
        raise ValueError(f"task.label_noise={n_noisy} exceeds the {len(y)} training examples")
    if n_noisy == 0:
        return y
    g = torch.Generator().manual_seed(seed + 1_000_003)
    idx = torch.randperm(len(y), generator=g)[:n_noisy]
    shift = torch.randint(1, n_classes, (n_noisy,), generator=g)
    y = y.clone()
    y[idx] = (y[idx] + shift) % n_classes
    return y


def token_task(name: str, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, n_classes: int,
               frac: float, seed: int, label_noise: int, meta: dict[str, Any]) -> Task:
    """Build a ``[a, b, =] -> c`` token task from full tables of operands and answers."""
    eq = torch.full_like(a, n_classes)
    x = torch.stack([a, b, eq], dim=1)
    tr, va = split_indices(len(c), frac, seed)
    y_train = add_label_noise(c[tr], label_noise, n_classes, seed)
    return Task(name=name, x_train=x[tr], y_train=y_train, x_val=x[va], y_val=c[va],
                n_classes=n_classes, kind="tokens", vocab=n_classes + 1,
                meta={**meta, "train_idx": tr, "val_idx": va})
