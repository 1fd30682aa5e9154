"""The differentiable inner loop of a GTN and its meta-gradient, plain or checkpointed.

Inner step t (Such et al. 2020, arXiv 1912.07768, §3; SGD with momentum and a learned
learning rate η_t = exp(log_lr[t]) and momentum μ_t = exp(log_mom[t]) per step):

    x_t = G(z_t, y_t);   g_t = ∇_θ CE(f_θ(x_t), y_t);   m ← μ_t m + g_t;   θ ← θ − η_t m

The meta-loss is the mean real-data cross-entropy of the learner after the steps in
``loss_steps`` (the last step, plus every ``inner.intermediate``-th: "intermediate losses").
Its gradient flows back through every θ update into G, the curriculum and the step sizes:
``torch.autograd.grad(create_graph=True)`` inside ``torch.func.functional_call``.

``meta_backward_plain`` keeps the whole unrolled graph (memory grows with T). ``meta_backward
_checkpointed`` runs the T steps once without a graph, keeping only the learner state at every
``block``-th step, then walks the blocks backwards: recompute one block with its graph,
backpropagate the block's own losses plus the adjoint arriving from the next block, and pass
the adjoint of the block's input state on. Memory: T/block states plus one block's graph.
Both accumulate the same meta-gradient into the ``.grad`` of the meta-parameters.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.func import functional_call

from groklab.gtn.learners import Learner

State = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[torch.Tensor]]  # θ, m, running


def sgd_momentum_step(learner: Learner, state: State, x: torch.Tensor, y: torch.Tensor, t: int,
                      lr: torch.Tensor, mom: torch.Tensor, create_graph: bool
                      ) -> tuple[State, torch.Tensor]:
    """One inner step on a batch x (B, *shape) with targets y: labels (B,) or class
    probabilities (B, C) (learned soft labels). Returns the new state and the loss.
    Without ``create_graph`` the new state is detached (plain training, the recording pass)."""
    params, moms, running = state
    logits, means = functional_call(learner, params, (x,))
    loss = F.cross_entropy(logits, y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
    new_m, new_p = {}, {}
    for (k, p), gk in zip(params.items(), grads):
        new_m[k] = mom * moms[k] + gk
        new_p[k] = p - lr * new_m[k]
    # cumulative average of the batch means: BatchNorm's momentum=None running statistics
    new_r = [r + (m - r) / (t + 1) for r, m in zip(running, means)]
    if not create_graph:
        new_p = {k: v.detach().requires_grad_() for k, v in new_p.items()}
        new_m = {k: v.detach() for k, v in new_m.items()}
        new_r = [r.detach() for r in new_r]
    return (new_p, new_m, new_r), loss


def initial_state(learner: Learner, params: dict[str, torch.Tensor]) -> State:
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    moms = {k: torch.zeros_like(v) for k, v in params.items()}
    dtype = next(iter(params.values())).dtype
    running = [torch.zeros(w, dtype=dtype) for w in learner.spec.widths] if learner.spec.norm == "meanbn" else []
    return params, moms, running


def real_loss(learner: Learner, state: State, x: torch.Tensor, y: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and accuracy of the learner on real data, BN in eval mode (running means)."""
    params, _, running = state
    logits, _ = functional_call(learner, params, (x, running or None))
    return F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()


@dataclass
class Unroll:
    """Everything one outer step's unroll needs; the random parts are drawn beforehand so a
    recomputed step sees identical inputs.

    ``real_x[i], real_y[i]`` is the real batch evaluated after inner step ``loss_steps[i]``
    (1-based: after the update of step t-1)."""
    learner: Learner
    params0: dict[str, torch.Tensor]
    generator: torch.nn.Module
    curriculum: torch.nn.Module
    log_lr: torch.Tensor            # (T,)
    log_mom: torch.Tensor           # (T,)
    plan: dict[str, torch.Tensor]
    loss_steps: list[int]
    real_x: list[torch.Tensor]
    real_y: list[torch.Tensor]
    stats: dict = field(default_factory=dict)
    weight: float = 1.0             # this learner's share of the meta-loss (1 / meta.learners)

    @property
    def steps(self) -> int:
        return self.log_lr.shape[0]

    def batch(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The generated batch x (B, *shape) and its training target: labels (B,) or soft (B, C)."""
        z, y = self.curriculum.inputs(t, self.plan)
        return self.generator(z.to(self.log_lr.dtype), y), self.curriculum.target(t, self.plan, y)

    def step(self, t: int, state: State, create_graph: bool) -> tuple[State, torch.Tensor]:
        x, y = self.batch(t)
        return sgd_momentum_step(self.learner, state, x, y, t, self.log_lr[t].exp(),
                                 self.log_mom[t].exp(), create_graph)

    def losses_after(self, t_done: int, state: State) -> torch.Tensor | None:
        """Sum of the real losses due after ``t_done`` steps, divided by their total count."""
        out = None
        for i, s in enumerate(self.loss_steps):
            if s == t_done:
                loss, acc = real_loss(self.learner, state, self.real_x[i], self.real_y[i])
                if s == self.steps:
                    self.stats.update(final_loss=loss.item(), final_acc=acc.item())
                loss = loss / len(self.loss_steps)
                if self.weight != 1.0:
                    loss = loss * self.weight
                out = loss if out is None else out + loss
        return out


def meta_loss_plain(u: Unroll) -> torch.Tensor:
    """The meta-loss with the whole unrolled graph kept (call ``.backward()`` on it)."""
    state = initial_state(u.learner, u.params0)
    total = None
    for t in range(u.steps):
        state, inner = u.step(t, state, create_graph=True)
        u.stats["inner_loss"] = inner.item()
        term = u.losses_after(t + 1, state)
        if term is not None:
            total = term if total is None else total + term
    return total


def meta_backward_plain(u: Unroll) -> float:
    loss = meta_loss_plain(u)
    loss.backward()
    return loss.item()


def _tensors(state: State) -> list[torch.Tensor]:
    p, m, r = state
    return [*p.values(), *m.values(), *r]


def _leaf(state: State) -> State:
    p, m, r = state
    return ({k: v.detach().requires_grad_() for k, v in p.items()},
            {k: v.detach().requires_grad_() for k, v in m.items()},
            [v.detach().requires_grad_() for v in r])


def meta_backward_checkpointed(u: Unroll, block: int) -> float:
    """Accumulate the meta-gradient into ``.grad`` keeping one block of ``block`` steps' graph
    at a time; returns the meta-loss. Equal to ``meta_backward_plain`` up to rounding."""
    T = u.steps
    starts = list(range(0, T, block))
    saved: dict[int, State] = {}
    state = initial_state(u.learner, u.params0)
    total = 0.0
    for t in range(T):                              # forward: no meta-graph, keep block inputs
        if t in starts:
            saved[t] = state
        with torch.no_grad():
            x, y = u.batch(t)
        state, inner = sgd_momentum_step(u.learner, state, x, y, t, u.log_lr[t].detach().exp(),
                                         u.log_mom[t].detach().exp(), create_graph=False)
        u.stats["inner_loss"] = inner.item()
        with torch.no_grad():
            term = u.losses_after(t + 1, state)
        total += 0.0 if term is None else term.item()
    adjoint: list[torch.Tensor] | None = None
    for b0 in reversed(starts):                     # backward: one block's graph at a time
        s_in = _leaf(saved.pop(b0))
        s = s_in
        block_loss = None
        for t in range(b0, min(b0 + block, T)):
            s, _ = u.step(t, s, create_graph=True)
            term = u.losses_after(t + 1, s)
            if term is not None:
                block_loss = term if block_loss is None else block_loss + term
        outs, grads = [], []
        if block_loss is not None:
            outs.append(block_loss)
            grads.append(torch.ones_like(block_loss))
        if adjoint is not None:
            for o, a in zip(_tensors(s), adjoint):
                if o.requires_grad:
                    outs.append(o)
                    grads.append(a)
        torch.autograd.backward(outs, grads)
        adjoint = [v.grad if v.grad is not None else torch.zeros_like(v) for v in _tensors(s_in)]
    return total
