"""Composition in the symmetric group S_n (Power et al. 2022: x·y, x·y·x⁻¹, x·y·x on S5).

Permutations are indexed in lexicographic order of ``itertools.permutations(range(n))``;
``(x·y)(i) = x[y[i]]`` (apply y first).
"""
from __future__ import annotations

import itertools

import torch

from groklab.tasks.base import Task, token_task

PERM_OPS = ("x*y", "x*y*x^-1", "x*y*x")


def permutations(n: int) -> torch.Tensor:
    """All n! permutations of range(n), (n!, n) long, lexicographic."""
    return torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long)


def compose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(a·b)[..., i] = a[..., b[..., i]] for batches of permutations (..., n)."""
    return torch.gather(a, -1, b)


def invert(a: torch.Tensor) -> torch.Tensor:
    return torch.argsort(a, dim=-1)


def perm_table(op: str, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if op not in PERM_OPS:
        raise ValueError(f"unknown task.op {op!r} for permutations; allowed: {', '.join(PERM_OPS)}")
    perms = permutations(n)
    m = len(perms)
    index = {tuple(p): i for i, p in enumerate(perms.tolist())}
    xi, yi = torch.cartesian_prod(torch.arange(m), torch.arange(m)).T
    x, y = perms[xi], perms[yi]
    if op == "x*y":
        z = compose(x, y)
    elif op == "x*y*x^-1":
        z = compose(compose(x, y), invert(x))
    else:
        z = compose(compose(x, y), x)
    # rank of each result permutation: a lookup through a dict is fast enough for n <= 6
    zi = torch.tensor([index[tuple(r)] for r in z.tolist()], dtype=torch.long)
    return xi, yi, zi


def permutation_task(op: str, n: int, frac: float, seed: int, label_noise: int = 0) -> Task:
    x, y, z = perm_table(op, n)
    m = len(permutations(n))
    return token_task(f"{op} in S{n}", x, y, z, n_classes=m, frac=frac, seed=seed,
                      label_noise=label_noise, meta={"family": "permutation", "op": op, "n": n})
