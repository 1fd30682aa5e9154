"""Bayesian models that grok without a network's usual ingredients (Miller, O'Neill, Bui 2024,
"Grokking without neural networks", arXiv 2310.17247; settings from their code):

* ``LinearPrior`` (``model.arch = "linear"``): y = wᵀφ(x), φ(x) = [x, x², x³, sin 100x], no
  bias, started at w = [0.0005, 0.9, 0.9, 0.9] (fits 2 points with the spurious features);
  objective (SSE / σ² + Σ w² / τ²) / N_train, σ² = 0.002, τ² = 0.5: a Gaussian likelihood and
  a Gaussian prior, i.e. the negative log posterior per training point. Right = the sign of
  the prediction agrees with the target's (their ``accuracy_for_negative_positive``).
* ``BayesMLP`` (``model.arch = "bnn"``): mean-field Gaussian MLP d → hidden → classes (ReLU),
  biases as one more input row, prior N(0, 1), q(w) = N(μ, σ²) with μ ~ N(0, 0.1²), σ = 0.01 at
  init; training samples with the local reparameterisation trick; objective cross-entropy +
  KL(q ‖ p) / N_train. Evaluation uses the mean weights (deterministic, no random draws).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def features(x: torch.Tensor) -> torch.Tensor:
    """(N, 1) -> (N, 4): [x, x², x³, sin 100x] (the authors' spurious features)."""
    return torch.cat([x, x ** 2, x ** 3, torch.sin(100 * x)], 1)


class LinearPrior(torch.nn.Module):
    def __init__(self, n_train: int, w0=(0.0005, 0.9, 0.9, 0.9), noise_var: float = 0.002,
                 prior_var: float = 0.5):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([w0]))  # (1, 4), like a bias-free Linear(4, 1)
        self.n_train, self.noise_var, self.prior_var = n_train, noise_var, prior_var

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return features(x) @ self.w.T  # (N, 1)

    def data_fit(self, out, y) -> torch.Tensor:
        """SSE / σ², per example of (out, y)."""
        return ((out[:, 0] - y.to(out.dtype)) ** 2).sum() / self.noise_var / len(y)

    def complexity(self) -> torch.Tensor:
        """Σ w² / τ² / N_train (the prior's term of the training objective)."""
        return (self.w ** 2).sum() / self.prior_var / self.n_train

    def objective(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.data_fit(out, y) + self.complexity()

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (out[:, 0] > 0) == (y > 0)

    @torch.no_grad()
    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict:
        w = self.w.detach()[0]
        return {"data_fit": self.data_fit(out, y), "complexity": self.complexity(),
                **{f"w_{n}": w[i] for i, n in enumerate(("x", "x2", "x3", "sin"))}}


class GaussianLinear(torch.nn.Module):
    """A mean-field Gaussian linear layer with its bias as the last input row."""

    def __init__(self, d_in: int, d_out: int, gen: torch.Generator, mean_std: float = 0.1,
                 std0: float = 0.01, prior_std: float = 1.0):
        super().__init__()
        # drawn on the CPU from ``gen`` (also when built under torch.device("meta") to count)
        self.mu = torch.nn.Parameter(torch.randn(d_in + 1, d_out, generator=gen, device="cpu") * mean_std)
        self.log_std = torch.nn.Parameter(torch.full((d_in + 1, d_out), math.log(std0)))
        self.prior_std = prior_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x, torch.ones_like(x[:, :1])], 1)  # (N, d_in + 1)
        mean = x @ self.mu
        if not self.training:
            return mean
        var = (x ** 2) @ torch.exp(2 * self.log_std)  # local reparameterisation (Kingma et al. 2015)
        return mean + torch.randn_like(mean) * var.sqrt()

    def kl(self) -> torch.Tensor:
        """Σ KL(N(μ, σ²) ‖ N(0, s²)) = Σ log(s/σ) + (σ² + μ²) / (2s²) − ½."""
        s = self.prior_std
        return (math.log(s) - self.log_std
                + (torch.exp(2 * self.log_std) + self.mu ** 2) / (2 * s ** 2) - 0.5).sum()


class BayesMLP(torch.nn.Module):
    def __init__(self, d_in: int, hidden: int, n_out: int, n_train: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1, self.l2 = GaussianLinear(d_in, hidden, g), GaussianLinear(hidden, n_out, g)
        self.n_train = n_train

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.relu(self.l1(x)))  # (N, n_out) logits

    def kl(self) -> torch.Tensor:
        return self.l1.kl() + self.l2.kl()

    def objective(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y) + self.kl() / self.n_train

    @torch.no_grad()
    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict:
        return {"data_fit": F.cross_entropy(out, y), "complexity": self.kl() / self.n_train}
