"""TARNet (Shalit, Johansson, Sontag, ICML 2017, "Estimating individual treatment effect:
generalization bounds and algorithms", arXiv 1606.03976): a representation Φ(x) shared by both
treatment arms, then one outcome head per arm, h0(Φ) and h1(Φ). Trained on the factual outcome
only — the squared error of the head of the arm each unit actually received; no IPM term (that
would be CFR) and no re-weighting (Samothrakis et al., IJCNN 2022, train it so: a relatively
large batch, no re-balancing).

Representation and heads are Linear + ELU layers (widths ``model.hidden`` and
``model.head_hidden``), each head ending in a Linear to one output.

The loop's hooks (groklab.train.loop): ``objective`` is the factual MSE; ``metrics`` are the
effect errors against the true potential outcomes carried in y; ``correct`` counts a unit as
right when its estimated effect is within ``tol`` of the true one, so "accuracy" is the share of
units whose individual effect is estimated to ±tol, and the lab's events (memorized_at,
generalized_at, phase) read on it.
"""
from __future__ import annotations

import math
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from groklab.models.hooks import HookedModule, HookPoint


def _layers(widths: list[int]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))


class TARNet(HookedModule):
    """Input x (B, p). Output (B, 2) = [ŷ0, ŷ1], the predicted outcome under each arm.

    ``y`` for the objective and metrics is (B, 4) = [factual Y, treatment W, μ0, μ1]."""

    def __init__(self, d_in: int, hidden: list[int], head_hidden: list[int], tol: float = 0.1,
                 init_scale: float = 1.0, seed: int = 0):
        super().__init__()
        self.tol = tol
        self.rep = _layers([d_in, *hidden])                                  # Φ, shared
        self.heads = nn.ModuleList(_layers([hidden[-1], *head_hidden, 1]) for _ in range(2))
        self.hook_rep = HookPoint()      # (B, hidden[-1]) the representation Φ(x)
        self.reset_parameters(init_scale, seed)
        self.setup_hooks()

    @torch.no_grad()
    def reset_parameters(self, init_scale: float, seed: int) -> None:
        """PyTorch's Linear defaults (U(±1/sqrt(fan_in)), biases too) from ``seed``; × init_scale."""
        g = torch.Generator().manual_seed(seed)
        for lin in self.modules():
            if isinstance(lin, nn.Linear):
                bound = 1 / math.sqrt(lin.in_features)
                for p in (lin.weight, lin.bias):
                    p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound * init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for lin in self.rep:
            h = F.elu(lin(h))
        h = self.hook_rep(h)                               # (B, d_rep)
        outs = []
        for head in self.heads:
            z = h
            for lin in head[:-1]:
                z = F.elu(lin(z))
            outs.append(head[-1](z))                       # (B, 1)
        return torch.cat(outs, 1)                          # (B, 2) [ŷ0, ŷ1]

    @staticmethod
    def effects(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(estimated τ̂ = ŷ1 − ŷ0, true τ = μ1 − μ0), each (B,)."""
        return out[:, 1] - out[:, 0], (y[:, 3] - y[:, 2]).to(out.dtype)

    def objective(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Factual MSE: mean over units of (ŷ_W − Y)²; the other arm's head gets no gradient."""
        arm = y[:, 1].long()
        factual = out.gather(1, arm[:, None]).squeeze(1)   # (B,)
        return ((factual - y[:, 0].to(out.dtype)) ** 2).mean()

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """A unit is right when |τ̂ − τ| < tol."""
        tau_hat, tau = self.effects(out, y)
        return (tau_hat - tau).abs() < self.tol

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """PEHE = sqrt(mean (τ̂ − τ)²) (Hill 2011; Shalit et al. 2017's ε_PEHE, square-rooted)
        and the ATE error |mean τ̂ − mean τ|, over the units given."""
        tau_hat, tau = self.effects(out, y)
        return {"pehe": ((tau_hat - tau) ** 2).mean().sqrt(), "ate_error": (tau_hat.mean() - tau.mean()).abs()}
