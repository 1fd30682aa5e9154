"""Fused CPU kernels, compiled with Numba, for what eager PyTorch runs as several passes.

Two kernels. Attention's weighted sum over values gathered from a table,
``z[b, h] = sum_k p[h, k, b] * table[rows[b, k], h]``, and its gradient. Nanda's one-layer
model reads its values from a (position, token) table (``Transformer._one_layer_tables``);
eager PyTorch gathers a (B, S, H, dh) copy of the rows, multiplies, sums, and in the backward
multiplies again, sums again and scatters into the table's gradient — six passes over a few
megabytes for a few million multiply-adds. Here the forward and the backward are each one loop
that reads the table in place (≈ 0.5 ms for Nanda's 3,830 examples against ≈ 4 ms of eager
passes, 1 thread, AMD EPYC). The sums are the same sums in a different order: values agree with
the eager path to float rounding (tested), and the backward accumulates in a fixed order, so a
run is reproducible on one machine. And a one-hot pair's first layer, ``table[a] + table[b]``
(Prieto et al.'s MLP on a+b mod p), and its gradient, bit for bit the eager result: one pass
instead of two gathers and an add, one gradient buffer instead of two scattered into and added.

Numba (https://numba.pydata.org) compiles the loops to machine code on first use (about a
second, then cached on disk beside this file or in the user's cache); it is made for exactly
this — numerical loops over arrays without a C toolchain — and is the field's usual choice.
"""
from __future__ import annotations

import functools
import importlib.util

import torch

HAS_NUMBA = importlib.util.find_spec("numba") is not None  # a dependency; without it the eager path runs
FUSED_DTYPES = (torch.float32, torch.float64)


def _wsum_forward(p, table, rows, z):  # pragma: no cover - run compiled (_kernels); tested through the op
    H, S, B = p.shape
    dh = table.shape[2]
    for b in range(B):
        for h in range(H):
            pk, r = p[h, 0, b], rows[b, 0]
            for d in range(dh):
                z[b, h, d] = pk * table[r, h, d]
            for k in range(1, S):
                pk, r = p[h, k, b], rows[b, k]
                for d in range(dh):
                    z[b, h, d] += pk * table[r, h, d]


def _wsum_backward(gz, p, table, rows, gp, gtable, want_table):  # pragma: no cover - compiled
    H, S, B = p.shape
    dh = table.shape[2]
    for b in range(B):
        for k in range(S):
            r = rows[b, k]
            for h in range(H):
                pk = p[h, k, b]
                acc = pk * 0
                for d in range(dh):
                    acc += gz[b, h, d] * table[r, h, d]
                gp[h, k, b] = acc
                if want_table:
                    for d in range(dh):
                        gtable[r, h, d] += pk * gz[b, h, d]


def _pair_forward(table, a, b, h):  # pragma: no cover - run compiled (_kernels); tested through the op
    for i in range(a.shape[0]):
        ra, rb = a[i], b[i]
        for c in range(table.shape[1]):
            h[i, c] = table[ra, c] + table[rb, c]


def _pair_backward(g, a, b, gtable):  # pragma: no cover - compiled
    for idx in (a, b):  # in the order of eager's two index_add_ calls, example by example
        for i in range(idx.shape[0]):
            r = idx[i]
            for c in range(gtable.shape[1]):
                gtable[r, c] += g[i, c]


@functools.cache
def _kernels():
    """The loops above compiled (on first use: importing Numba costs 0.15 s, compiling about a
    second, or a cache read). ``fastmath`` lets the weighted sum's reductions vectorise; the
    pair kernels have none to reorder."""
    import numba

    jit = numba.njit(cache=True, nogil=True, fastmath=True)
    exact = numba.njit(cache=True, nogil=True)
    return jit(_wsum_forward), jit(_wsum_backward), exact(_pair_forward), exact(_pair_backward)


class _GatheredWeightedSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, table, rows):
        z = p.new_empty((p.shape[2], p.shape[0], table.shape[2]))
        _kernels()[0](p.detach().numpy(), table.detach().numpy(), rows.numpy(), z.numpy())
        ctx.save_for_backward(p, table, rows)
        return z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gz):
        p, table, rows = ctx.saved_tensors
        gp = torch.empty_like(p)
        gtable = torch.zeros_like(table)
        _kernels()[1](gz.contiguous().numpy(), p.detach().numpy(), table.detach().numpy(), rows.numpy(),
                       gp.numpy(), gtable.numpy(), ctx.needs_input_grad[1])
        return gp, (gtable if ctx.needs_input_grad[1] else None), None


def can_fuse(*tensors: torch.Tensor) -> bool:
    """The fused kernels apply: Numba present, plain contiguous CPU tensors of float32/float64,
    no ``torch.func`` transform (vmap, grad) active, which a Numba loop could not follow."""
    if not HAS_NUMBA or torch._C._functorch.peek_interpreter_stack() is not None:
        return False
    return all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)


def gathered_weighted_sum(p: torch.Tensor, table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """p (H, S, B), table (R, H, dh), rows (B, S) long -> (B, H, dh):
    ``sum_k p[h, k, b] * table[rows[b, k], h]``, differentiable in p and table.

    The caller checks ``can_fuse`` and that p and table share a dtype in ``FUSED_DTYPES``; rows
    outside the table raise, as indexing does (the compiled loop does not check)."""
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= table.shape[0]):
        raise IndexError(f"rows out of range for a table of {table.shape[0]} rows")
    return _GatheredWeightedSum.apply(p, table, rows)


class _PairRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, a, b):
        h = table.new_empty((a.shape[0], table.shape[1]))
        _kernels()[2](table.detach().numpy(), a.numpy(), b.numpy(), h.numpy())
        ctx.save_for_backward(a, b)
        ctx.n_rows = table.shape[0]
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        gtable = g.new_zeros((ctx.n_rows, g.shape[1]))
        _kernels()[3](g.contiguous().numpy(), a.numpy(), b.numpy(), gtable.numpy())
        return gtable, None, None


def pair_rows(table: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """table (R, w), a and b (B,) long -> ``table[a] + table[b]`` (B, w), differentiable in table:
    a one-hot pair's first layer (Prieto et al.'s MLP) in one pass instead of two gathers and an
    add, and its gradient in one buffer instead of two scattered into and added.

    The same bits as ``take_rows(table, a) + take_rows(table, b)`` when a's and b's rows are
    disjoint (the operands' two halves of the one-hot input): one addition per element forward,
    and each gradient row summed over its examples in order, as ``index_add_`` does (tested).
    The caller checks ``can_fuse`` and the dtype; rows outside the table raise."""
    for idx in (a, b):
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= table.shape[0]):
            raise IndexError(f"rows out of range for a table of {table.shape[0]} rows")
    return _PairRows.apply(table, a, b)
