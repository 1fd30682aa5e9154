"""Small exact kernels the fast paths need."""
from __future__ import annotations

import torch


class _TakeRows(torch.autograd.Function):
    """``table[idx]`` whose backward is ``index_add_`` instead of autograd's accumulating
    ``index_put_``: the same sums, about 20x faster on CPU for a few thousand rows."""

    generate_vmap_rule = True  # usable under torch.func.vmap / grad (the ensemble trainer)

    @staticmethod
    def forward(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return table.index_select(0, idx)

    @staticmethod
    def setup_context(ctx, inputs, output):
        table, idx = inputs
        ctx.save_for_backward(idx)
        ctx.n_rows = table.shape[0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (idx,) = ctx.saved_tensors
        out = grad.new_zeros((ctx.n_rows, *grad.shape[1:]))
        return out.index_add(0, idx, grad), None


def take_rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` (R, ...) at ``idx`` (any shape) -> (*idx.shape, ...)."""
    flat = _TakeRows.apply(table, idx.reshape(-1))
    return flat.view(*idx.shape, *table.shape[1:])
