"""Masks of a grokking ticket: one global magnitude threshold over the weight matrices.

Minegishi, Iwasawa, Matsuo 2024, "Bridging Lottery Ticket and Grokking" (arXiv 2310.19470):
keep the largest-|w| fraction of all matrix entries of a trained network (one threshold over
every matrix together, not per layer), reset the kept entries to their initial values, and
retrain with the mask held. Vectors (biases, LayerNorm gains) are never masked.

All functions are pure: they take ``{name: tensor}`` and return new tensors.
"""
from __future__ import annotations

import math

import torch


def maskable(weights: dict[str, torch.Tensor]) -> list[str]:
    """The names of the masked tensors: the floating-point ones with >= 2 dimensions (matrices;
    a transformer's per-head (heads, d, d_head) stacks count as matrices)."""
    return [k for k, v in weights.items() if v.dim() >= 2 and v.is_floating_point()]


def n_kept(total: int, keep: float) -> int:
    """How many of ``total`` entries a fraction ``keep`` in (0, 1] keeps (at least one)."""
    return min(total, max(1, round(keep * total)))


def _split(flat: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for k, v in like.items():
        out[k] = flat[i:i + v.numel()].reshape(v.shape)
        i += v.numel()
    return out


def magnitude_mask(weights: dict[str, torch.Tensor], keep: float) -> tuple[dict[str, torch.Tensor], float]:
    """Keep exactly ``n_kept(N, keep)`` of the N matrix entries, the largest by |w| over all
    matrices together. Returns ({name: bool mask}, the threshold: the smallest kept |w|).
    Entries tied at the threshold are split by position (``torch.topk``), so the count is exact."""
    mats = {k: weights[k].detach().cpu() for k in maskable(weights)}
    mag = torch.cat([v.abs().flatten().double() for v in mats.values()])  # (N,)
    top = torch.topk(mag, n_kept(mag.numel(), keep))
    flat = torch.zeros(mag.numel(), dtype=torch.bool)
    flat[top.indices] = True
    return _split(flat, mats), float(top.values.min())


def random_mask(shapes: dict[str, torch.Size], keep: float, seed: int) -> dict[str, torch.Tensor]:
    """The random control: the same global count ``n_kept(N, keep)`` at uniformly random
    positions over all matrices, from ``seed``."""
    total = sum(math.prod(s) for s in shapes.values())
    g = torch.Generator().manual_seed(seed)
    flat = torch.zeros(total, dtype=torch.bool)
    flat[torch.randperm(total, generator=g)[:n_kept(total, keep)]] = True
    return _split(flat, {k: torch.empty(s) for k, s in shapes.items()})


def apply_mask(weights: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weights`` with the masked-out entries of the masked tensors set to exactly 0."""
    return {k: v.masked_fill(~mask[k].to(v.device), 0) if k in mask else v.clone() for k, v in weights.items()}


def matrix_norm(weights: dict[str, torch.Tensor]) -> float:
    """The L2 norm of all matrix entries together."""
    return math.sqrt(sum(float(weights[k].double().pow(2).sum()) for k in maskable(weights)))


def same_norm(init: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same-norm control: the dense ``init`` with its matrices scaled by ||init ⊙ mask|| / ||init||.
    Vectors are the same in both, so the total norm then equals the ticket's total norm."""
    s = matrix_norm(apply_mask(init, mask)) / matrix_norm(init)
    return {k: v * s if k in mask else v.clone() for k, v in init.items()}


def sparsity(mask: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Per tensor: entries kept, entries in all, kept fraction."""
    return {k: {"kept": int(m.sum()), "total": m.numel(), "fraction": round(float(m.float().mean()), 6)}
            for k, m in mask.items()}


def projection(mask: dict[str, torch.Tensor]):
    """The after-step projection (``Trainer.project``) that holds the masked entries at 0
    (give it the mask on the parameters' device)."""
    off = {k: ~m for k, m in mask.items()}

    def project(params: dict[str, torch.Tensor]) -> None:
        for k, o in off.items():
            params[k].masked_fill_(o, 0)
    return project
