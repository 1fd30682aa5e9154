"""Gradient transforms in the optax style: ``init(params) -> state`` and
``update(grads, state, params) -> (grads, state)``, composed with ``chain``.

Params, grads and states are dicts of tensors keyed by parameter name. No transform modifies
its inputs in place, so the same pieces run inside a differentiable inner loop (GTN).

References:
* Grokfast (Lee et al. 2024, arXiv 2405.20233): EMA and moving-average gradient filters.
  Adding lambda times the slow component multiplies the effective step along it by about
  (1 + lambda): compare learning rates with that in mind.
* ⊥Grad (Prieto et al. 2025, arXiv 2501.04697): remove the gradient's component along the
  weights, then rescale to the original norm.
* Egalitarian gradient descent (Pasand & Dohmatob 2025, arXiv 2510.04930): each weight
  matrix's gradient G = U S Vᵀ becomes (G Gᵀ)^(-1/2) G = U Vᵀ, every singular direction at the
  same speed.
* Weight-norm control (Liu et al. 2022, Omnigrok, arXiv 2210.01117): keep the total weight norm
  fixed; see ``scale_to_norm`` / ``project_weight_norm`` (a parameter projection, applied after
  the optimiser step, not a gradient transform).

Example:
    >>> tx = chain(grokfast_ema(alpha=0.98, lamb=2.0), clip_by_global_norm(1.0))
    >>> state = tx.init(params)
    >>> grads, state = tx.update(grads, state, params)
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch

Tensors = dict[str, torch.Tensor]


class GradientTransformation(NamedTuple):
    init: Callable[[Tensors], Any]
    update: Callable[[Tensors, Any, Tensors], tuple[Tensors, Any]]


def identity() -> GradientTransformation:
    return GradientTransformation(lambda params: (), lambda g, s, p: (g, s))


def chain(*txs: GradientTransformation) -> GradientTransformation:
    """Apply transforms left to right; the state is the tuple of their states."""

    def init(params):
        return tuple(t.init(params) for t in txs)

    def update(grads, state, params):
        new = []
        for t, s in zip(txs, state):
            grads, s = t.update(grads, s, params)
            new.append(s)
        return grads, tuple(new)

    return GradientTransformation(init, update)


def grokfast_ema(alpha: float = 0.98, lamb: float = 2.0) -> GradientTransformation:
    """Grokfast-EMA (Lee et al. 2024, arXiv 2405.20233, Algorithm 2), per parameter tensor:
    mu <- alpha mu + (1 - alpha) g (mu starts at the first g); g <- g + lamb mu.

    Args:
        alpha: EMA momentum (paper default 0.98; 0.8-0.99 in its Fig. 5).
        lamb: amplification of the slow component (paper default 2).
    Returns:
        a ``GradientTransformation`` whose state is ``{"mu": {name: tensor like the param} | None}``.
    The EMA keeps the autograd graph of gradients that carry one (a differentiable inner loop);
    plain ``.grad`` tensors carry none, so the normal loop stores plain tensors.
    """

    def init(params):
        return {"mu": None}

    def update(grads, state, params):
        mu = state["mu"]
        if mu is None:
            mu = {k: g.clone() for k, g in grads.items()}  # a copy: the caller may reuse its .grad
        else:
            mu = {k: alpha * mu[k] + (1 - alpha) * g for k, g in grads.items()}
        return {k: g + lamb * mu[k] for k, g in grads.items()}, {"mu": mu}

    return GradientTransformation(init, update)


def grokfast_ma(window: int = 100, lamb: float = 5.0) -> GradientTransformation:
    """Grokfast-MA (Lee et al. 2024, arXiv 2405.20233, Algorithm 1): keep the last ``window``
    gradients; once the window is full, g <- g + lamb * mean(window).

    Args:
        window: number of past gradients averaged (paper default 100).
        lamb: amplification (paper default 5).
    Returns:
        a ``GradientTransformation``; state ``{"buf": (grads_dict, ...) oldest first,
        "sum": {name: tensor}, "count": int}``.
    The window is a tuple of the gradient dicts themselves (no copy of the whole window per step)
    plus a running sum, so a step costs O(size), not O(window * size). The running sum is
    recomputed exactly whenever the window has turned over once (every ``window`` steps) so its
    float rounding cannot drift over 10^5 steps.
    """

    def init(params):
        return {"buf": (), "sum": None, "count": 0}

    def update(grads, state, params):
        n, buf, total = state["count"] + 1, state["buf"], state["sum"]
        new = {k: g.clone() for k, g in grads.items()}  # a copy: the caller may reuse its .grad
        if len(buf) == window:
            oldest, buf = buf[0], buf[1:]
        else:
            oldest = None
        buf = (*buf, new)
        if total is None or n % window == 0:
            total = {k: sum(b[k] for b in buf) for k in new}
        elif oldest is None:
            total = {k: total[k] + new[k] for k in new}
        else:
            total = {k: total[k] - oldest[k] + new[k] for k in new}
        if len(buf) == window:
            grads = {k: g + lamb * total[k] / window for k, g in grads.items()}
        return grads, {"buf": buf, "sum": total, "count": n}

    return GradientTransformation(init, update)


def orthograd(eps: float = 1e-30) -> GradientTransformation:
    """⊥Grad (Prieto et al. 2025, arXiv 2501.04697, §6, eq. 8), per parameter tensor w with
    gradient g (both flattened): g_perp = g - (w.g / w.w) w, then g_perp <- g_perp ||g|| / ||g_perp||.

    The base optimiser follows (⊥AdamW, ⊥SGD). Removing the radial component stops the
    "naive loss minimisation" direction that only scales the logits up (the road to softmax
    collapse). ``eps`` (as in the paper's code) makes w = 0 pass g through and g = 0 stay 0.
    The weights enter as constants unless the gradient carries a graph.
    """

    def update(grads, state, params):
        out = {}
        for k, g in grads.items():
            w = params[k] if g.requires_grad else params[k].detach()
            wf, gf = w.reshape(-1), g.reshape(-1)
            proj = (wf @ gf) / (wf @ wf + eps)
            gp = g - proj * w
            out[k] = gp * (g.norm() / (gp.norm() + eps))
        return out, state

    return GradientTransformation(lambda params: (), update)


def egalitarian(rel_eps: float = 1e-6) -> GradientTransformation:
    """Egalitarian gradient descent (Pasand & Dohmatob 2025, arXiv 2510.04930, eq. 3): every
    2-D gradient G (a weight matrix's) is replaced by its whitened form
    (G Gᵀ)^(-1/2) G = U Vᵀ, where G = U S Vᵀ is its reduced SVD: the same singular vectors, every
    singular value 1. Singular values at or below ``rel_eps`` × the largest are dropped (the
    Moore–Penrose form of the inverse root for a rank-deficient G); an all-zero G stays 0.
    Vectors and 3-D tensors pass unchanged. The base optimiser follows (the paper: SGD)."""

    def whiten(g: torch.Tensor) -> torch.Tensor:
        U, S, Vh = torch.linalg.svd(g, full_matrices=False)  # (m, r), (r,), (r, n)
        keep = (S > rel_eps * S.max()).to(g.dtype) if S.numel() else S
        return (U * keep) @ Vh

    def update(grads, state, params):
        return {k: whiten(g) if g.dim() == 2 else g for k, g in grads.items()}, state

    return GradientTransformation(lambda params: (), update)


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Scale all gradients by min(1, max_norm / ||g||_2) over the concatenation of every tensor."""

    def update(grads, state, params):
        total = global_norm(grads)
        scale = torch.clamp(max_norm / (total + 1e-12), max=1.0)
        return {k: g * scale.to(g.dtype) for k, g in grads.items()}, state

    return GradientTransformation(lambda params: (), update)


def global_norm(tensors: Tensors) -> torch.Tensor:
    """sqrt(sum of squares over every tensor), in float64 (a 0-dim tensor)."""
    return torch.sqrt(sum((t.double() ** 2).sum() for t in tensors.values()))


def scale_to_norm(params: Tensors, target: float) -> Tensors:
    """New tensors: every parameter times target / ||params||, the L2 norm over all of them
    together (Liu et al. 2022, Omnigrok, arXiv 2210.01117, §3 "constrained" runs). Pure, so a
    differentiable inner loop can use it; all-zero parameters are returned unchanged."""
    total = global_norm(params)
    if float(total) == 0:
        return dict(params)
    return {k: p * (target / total).to(p.dtype) for k, p in params.items()}


@torch.no_grad()
def project_weight_norm(params: Tensors, target: float) -> None:
    """``scale_to_norm`` in place on the model's tensors, applied after the optimiser step.
    A projection, not a gradient transform (the loop calls it when accel.weight_norm > 0)."""
    total = float(global_norm(params))
    if total > 0:
        for p in params.values():
            p.mul_(target / total)


def build_transforms(accel, optim) -> GradientTransformation | None:
    """The transform chain an ``AccelConfig`` (+ ``optim.clip``) asks for, or None if empty.

    Order: Grokfast filter, then ⊥Grad, then EGD, then clipping (the optimiser follows).
    """
    txs = []
    if accel.grokfast == "ema":
        txs.append(grokfast_ema(accel.alpha, accel.lamb))
    elif accel.grokfast == "ma":
        txs.append(grokfast_ma(accel.window, accel.lamb))
    if accel.orthograd:
        txs.append(orthograd())
    if accel.egd:
        txs.append(egalitarian())
    if optim.clip > 0:
        txs.append(clip_by_global_norm(optim.clip))
    return chain(*txs) if txs else None
