"""Binary operations mod p (Power et al. 2022, arXiv 2201.02177, appendix A.1.1).

Every pair (x, y) is one example; division pairs skip y = 0. Ops are named by what they compute.
"""
from __future__ import annotations

from typing import Callable

import torch

from groklab.tasks.base import Task, token_task

Op = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def inverse_mod(y: torch.Tensor, p: int) -> torch.Tensor:
    """Multiplicative inverse mod prime p by Fermat: y^(p-2) mod p (y != 0)."""
    return torch.tensor([pow(int(v), p - 2, p) for v in y.tolist()], dtype=torch.long)


def _div(x, y, p):
    return (x * inverse_mod(y, p)) % p


def _div_odd(x, y, p):
    return torch.where(y % 2 == 1, _div(x, y.clamp(min=1), p), (x - y) % p)


OPS: dict[str, Op] = {
    "x+y": lambda x, y, p: (x + y) % p,
    "x-y": lambda x, y, p: (x - y) % p,
    "x*y": lambda x, y, p: (x * y) % p,
    "x/y": _div,
    "x/y if y odd else x-y": _div_odd,
    "x^2+y^2": lambda x, y, p: (x * x + y * y) % p,
    "x^2+xy+y^2": lambda x, y, p: (x * x + x * y + y * y) % p,
    "x^2+xy+y^2+x": lambda x, y, p: (x * x + x * y + y * y + x) % p,
    "x^3+xy": lambda x, y, p: (x ** 3 + x * y) % p,
    "x^3+xy^2+y": lambda x, y, p: (x ** 3 + x * y * y + y) % p,
    "x^2+y": lambda x, y, p: (x * x + y) % p,
    "x^3+y": lambda x, y, p: (x ** 3 + y) % p,
}
NEEDS_PRIME = {"x/y", "x/y if y odd else x-y"}
NONZERO_Y = {"x/y"}


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, int(n ** 0.5) + 1))


def operation_table(op: str, p: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All operand pairs and answers of ``op`` mod ``p``: (x, y, x∘y), each (N,) long.

    Pairs are in row-major order (x major); for ``x/y`` the pairs with y = 0 are left out.
    """
    if op not in OPS:
        raise ValueError(f"unknown task.op {op!r}; modular ops are: {', '.join(OPS)}")
    if op in NEEDS_PRIME and not is_prime(p):
        raise ValueError(f"task.p={p} is not prime; {op!r} needs a prime modulus")
    x, y = torch.cartesian_prod(torch.arange(p), torch.arange(p)).T
    if op in NONZERO_Y:
        keep = y != 0
        x, y = x[keep], y[keep]
    # int64 holds x^3 + x*y^2 for p up to ~2e6; beyond that answers would overflow.
    if p > 2_000_000:
        raise ValueError(f"task.p={p} is too large; allowed: 2 <= p <= 2000000")
    return x, y, OPS[op](x, y, p)


def modular_task(op: str, p: int, frac: float, seed: int, label_noise: int = 0,
                 pairs: str = "all") -> Task:
    """``pairs="a<=b"`` keeps only the pairs with x <= y (p(p+1)/2 of them, row-major): each
    unordered pair once, as in PAIR's explorable (Pearce et al. 2023; 2,278 pairs for p = 67)."""
    if pairs not in ("all", "a<=b"):
        raise ValueError(f"unknown task.pairs {pairs!r}; allowed: all, a<=b")
    x, y, c = operation_table(op, p)
    name = f"{op} mod {p}"
    if pairs == "a<=b":
        # rows of the a <= b pairs from their indices, not a boolean mask: the shapes then do not
        # depend on data, so the task also builds on the meta device (resume's shape check)
        i, j = torch.triu_indices(p, p)
        if op in NONZERO_Y:
            i, j = i[1:], j[1:]                    # (0, 0) left out; rows are a·(p-1) + b-1
        rows = i * (p - 1) + j - 1 if op in NONZERO_Y else i * p + j
        x, y, c = (t.index_select(0, rows) for t in (x, y, c))
        name = f"{name} (a<=b)"
    return token_task(name, x, y, c, n_classes=p, frac=frac, seed=seed, label_noise=label_noise,
                      meta={"family": "modular", "op": op, "p": p, "pairs": pairs})
