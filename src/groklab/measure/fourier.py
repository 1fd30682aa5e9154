"""The Fourier basis of Z_n and the grid of a modular task in the coordinates where it is addition.

Nanda et al. 2023 (arXiv 2301.05217, §3 and appendix) analyse x+y mod p in the Fourier basis of
Z_p: rows B[0] = 1/√p, B[2k-1] ∝ cos(2πkx/p), B[2k] ∝ sin(2πkx/p), k = 1..⌊p/2⌋. We go beyond
the paper for ``x*y`` and ``x/y`` (p prime): the nonzero residues form a cyclic group of order
p-1, and writing a = g^i (g a primitive root, i = discrete log of a) turns multiplication into
addition of logs mod p-1. The same analysis then runs in the Fourier basis of Z_{p-1}
("discrete-logarithm basis"); pairs with a 0 operand are left out of the grid.

A ``Frame`` holds what every measure needs: the group order n, the sign s of the second operand
(the answer's coordinate is i + s·j mod n: s = +1 for x+y and x*y, -1 for x-y and x/y), the token
(= class index) of each coordinate, and the n² grid of operand pairs in coordinate order
(row i·n + j).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: ops the progress measures support, with (basis, sign)
SUPPORTED_OPS = {"x+y": ("fourier", 1), "x-y": ("fourier", -1),
                 "x*y": ("dlog", 1), "x/y": ("dlog", -1)}


def fourier_basis(n: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal real Fourier basis of Z_n.

    Returns ``(B, freq)``: B (n, n) with orthonormal rows [const, cos 1, sin 1, cos 2, sin 2, ...]
    (for even n the last row is cos(πx), the Nyquist term, which has no sine), and freq (n,) long,
    the frequency k of each row (0 for the constant).
    """
    x = torch.arange(n, dtype=dtype)
    rows, freq = [torch.ones(n, dtype=dtype)], [0]
    for k in range(1, n // 2 + 1):
        w = 2 * math.pi * k * x / n
        rows.append(torch.cos(w))
        freq.append(k)
        if 2 * k != n:
            rows.append(torch.sin(w))
            freq.append(k)
    B = torch.stack(rows)
    return B / B.norm(dim=1, keepdim=True), torch.tensor(freq)


def primitive_root(p: int) -> int:
    """Smallest generator of the multiplicative group mod prime p."""
    if p == 2:
        return 1
    phi = p - 1
    factors = {q for q in range(2, phi + 1) if phi % q == 0 and all(q % r for r in range(2, int(q ** 0.5) + 1))}
    for g in range(2, p):
        if all(pow(g, phi // q, p) != 1 for q in factors):
            return g
    raise ValueError(f"{p} has no primitive root (not prime)")


@dataclass
class Frame:
    """The grid of a modular task in additive coordinates (see module doc).

    ``tokens`` (n,) long: the residue with coordinate i (identity for x±y, g^i for x*y, x/y);
    ``grid`` (n², 3) long: model inputs ``[a, b, =]`` for every coordinate pair, row i·n + j;
    ``labels`` (n²,) long: true answers (class indices); ``train`` (n²,) bool: the pair is a
    training example; ``p`` classes (the ``=`` class is dropped from logits).
    """
    op: str
    p: int
    n: int
    sign: int
    basis: str
    tokens: torch.Tensor
    grid: torch.Tensor
    labels: torch.Tensor
    train: torch.Tensor
    generator: int | None = None

    @property
    def n_freqs(self) -> int:
        return self.n // 2

    def fourier(self) -> tuple[torch.Tensor, torch.Tensor]:
        return fourier_basis(self.n)


def frame_for(task) -> Frame:
    """The Frame of a modular task. Raises ValueError naming what is supported otherwise."""
    meta = task.meta
    op = meta.get("op") if meta.get("family") == "modular" else None
    if op not in SUPPORTED_OPS:
        raise ValueError(f"progress measures support modular tasks {', '.join(SUPPORTED_OPS)}; "
                         f"this run's task is {task.name!r}")
    p = int(meta["p"])
    basis, sign = SUPPORTED_OPS[op]
    g = None
    if basis == "dlog":
        if not all(p % d for d in range(2, int(p ** 0.5) + 1)) or p < 3:
            raise ValueError(f"the discrete-log basis for {op!r} needs a prime task.p >= 3, not {p}")
        g, n = primitive_root(p), p - 1
        tokens = torch.tensor([pow(g, i, p) for i in range(n)])
    else:
        n, tokens = p, torch.arange(p)
    i, j = torch.cartesian_prod(torch.arange(n), torch.arange(n)).T
    a, b = tokens[i], tokens[j]
    grid = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    labels = tokens[(i + sign * j) % n]
    pos = {(int(x), int(y)): r for r, (x, y) in enumerate(zip(a.tolist(), b.tolist()))}
    train = torch.zeros(n * n, dtype=torch.bool)
    for x, y in task.x_train[:, :2].tolist():
        r = pos.get((x, y))
        if r is not None:
            train[r] = True
    return Frame(op=op, p=p, n=n, sign=sign, basis=basis, tokens=tokens, grid=grid, labels=labels,
                 train=train, generator=g)
