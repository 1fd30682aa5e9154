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
* Weight-norm control (Liu et al. 2022, Omnigrok, arXiv 2210.01117): keep the total weight norm
  fixed; see ``project_weight_norm`` (a parameter projection, applied after the optimiser step).

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
    """Grokfast-EMA: mu <- alpha mu + (1 - alpha) g (mu starts at the first g); g <- g + lamb mu."""

    def init(params):
        return {"mu": None}

    def update(grads, state, params):
        mu = state["mu"]
        if mu is None:
            mu = {k: g.detach() for k, g in grads.items()}
        else:
            mu = {k: alpha * mu[k] + (1 - alpha) * g.detach() for k, g in grads.items()}
        return {k: g + lamb * mu[k] for k, g in grads.items()}, {"mu": mu}

    return GradientTransformation(init, update)


def grokfast_ma(window: int = 100, lamb: float = 5.0) -> GradientTransformation:
    """Grokfast-MA: keep the last ``window`` gradients; once full, g <- g + lamb * mean(window).

    The window is a ring buffer (window, *shape) per parameter plus a running sum, so each step
    costs O(size) rather than O(window * size).
    """

    def init(params):
        return {"buf": None, "sum": None, "count": 0}

    def update(grads, state, params):
        n = state["count"]
        buf, total = state["buf"], state["sum"]
        if buf is None:
            buf = {k: g.new_zeros((window, *g.shape)) for k, g in grads.items()}
            total = {k: torch.zeros_like(g) for k, g in grads.items()}
        i = n % window
        new_buf, new_sum = {}, {}
        for k, g in grads.items():
            gd = g.detach()
            new_sum[k] = total[k] - buf[k][i] + gd
            b = buf[k].clone() if torch.is_grad_enabled() else buf[k]
            b[i] = gd  # the ring buffer is internal state, never an input the caller keeps
            new_buf[k] = b
        n += 1
        if n >= window:
            grads = {k: g + lamb * new_sum[k] / window for k, g in grads.items()}
        return grads, {"buf": new_buf, "sum": new_sum, "count": n}

    return GradientTransformation(init, update)


def orthograd(eps: float = 1e-30) -> GradientTransformation:
    """⊥Grad: g_perp = g - (w.g / w.w) w, then g_perp * ||g|| / ||g_perp||, per tensor."""

    def update(grads, state, params):
        out = {}
        for k, g in grads.items():
            w = params[k].detach()
            wf, gf = w.reshape(-1), g.reshape(-1)
            proj = (wf @ gf) / (wf @ wf + eps)
            gp = g - proj * w
            out[k] = gp * (g.norm() / (gp.norm() + eps))
        return out, state

    return GradientTransformation(lambda params: (), update)


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Scale all gradients by min(1, max_norm / ||g||_2) over the concatenation of every tensor."""

    def update(grads, state, params):
        total = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads.values()))
        scale = torch.clamp(max_norm / (total + 1e-12), max=1.0)
        return {k: g * scale for k, g in grads.items()}, state

    return GradientTransformation(lambda params: (), update)


@torch.no_grad()
def project_weight_norm(params: Tensors, target: float) -> None:
    """Rescale every parameter so the total L2 norm equals ``target`` (Omnigrok's constrained
    runs). In place on the model's tensors: it is a projection, not a gradient transform."""
    total = torch.sqrt(sum((p.double() ** 2).sum() for p in params.values()))
    if total > 0:
        for p in params.values():
            p.mul_(target / total)


def build_transforms(accel, optim) -> GradientTransformation | None:
    """The transform chain an ``AccelConfig`` (+ ``optim.clip``) asks for, or None if empty.

    Order: Grokfast filter, then ⊥Grad, then clipping (the optimiser follows).
    """
    txs = []
    if accel.grokfast == "ema":
        txs.append(grokfast_ema(accel.alpha, accel.lamb))
    elif accel.grokfast == "ma":
        txs.append(grokfast_ma(accel.window, accel.lamb))
    if accel.orthograd:
        txs.append(orthograd())
    if optim.clip > 0:
        txs.append(clip_by_global_norm(optim.clip))
    return chain(*txs) if txs else None
