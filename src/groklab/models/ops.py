"""Small exact kernels the fast paths need."""
from __future__ import annotations

import torch

from groklab.models.fused import can_fuse, few_key_scores, few_key_values


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
        return out.index_add_(0, idx, grad), None


def take_rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` (R, ...) at ``idx`` (any shape) -> (*idx.shape, ...)."""
    flat = _TakeRows.apply(table, idx.reshape(-1))
    return flat.view(*idx.shape, *table.shape[1:])


FEW_KEYS = 16  # attention over at most this many positions takes the CPU paths below


def _few(x: torch.Tensor, n_keys: int) -> bool:
    return x.device.type == "cpu" and n_keys <= FEW_KEYS


def softmax_last(x: torch.Tensor) -> torch.Tensor:
    """``x.softmax(-1)`` for attention's few key positions, about 10x faster on CPU.

    PyTorch's CPU softmax vectorises along the reduced dimension when it is the last one, so over
    3-5 key positions most vector lanes idle (≈ 1 ms for Nanda's (3830, 4, 1, 3) scores, 1 thread).
    Moved to the front, the same reduction vectorises across everything else (≈ 0.07 ms). The
    values agree with ``softmax(-1)`` to float rounding (a few ulp); the result is a view with
    the input's shape, not contiguous.
    """
    if not _few(x, x.shape[-1]):
        return x.softmax(-1)
    return x.movedim(-1, 0).contiguous().softmax(0).movedim(0, -1)


def attention_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """q (B, Sq, H, dh), k (B, S, H, dh) -> q·k (B, H, Sq, S), unscaled.

    Over a few key positions (the grokking tasks' 3-5 tokens) a broadcast product and a sum beat
    ``einsum``'s batched matrix products of 3 x 32 by 32 x 3 on CPU (≈ 3x for Power's layer with
    its backward, 1 thread); the same sums, to float rounding. Where the compiled kernels apply
    (``groklab.models.fused``), one loop computes each score in place without the broadcast.
    """
    if not _few(k, k.shape[1]):
        return torch.einsum("bqhd,bkhd->bhqk", q, k)
    if can_fuse(q, k):
        return few_key_scores(q, k)
    return (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1).permute(0, 3, 1, 2)


def attention_values(pattern: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """pattern (B, H, Sq, S), v (B, S, H, dh) -> sum_k pattern v (B, Sq, H, dh); see
    ``attention_scores`` for why a broadcast product over a few positions (and at one query
    position on any device: ``Sq`` = 1 makes the batched products matrix-vector ones)."""
    if pattern.shape[2] > 1 and not _few(v, v.shape[1]):
        return torch.einsum("bhqk,bkhd->bqhd", pattern, v)
    if can_fuse(v):  # a hook may hand back a broadcastable pattern: made whole for the kernel, a few kB
        whole = pattern.expand(v.shape[0], v.shape[2], -1, v.shape[1]).contiguous()
        if can_fuse(whole, v):
            return few_key_values(whole, v)
    return (pattern.permute(0, 2, 3, 1).unsqueeze(-1) * v.unsqueeze(1)).sum(2)
