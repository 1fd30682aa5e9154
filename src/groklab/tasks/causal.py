"""Treatment-effect estimation on the synthetic setups A–D of Nie & Wager (2021), "Quasi-oracle
estimation of heterogeneous treatment effects", Biometrika 108(2) (arXiv 1712.04912), §6:

    Y = b(X) + (W − ½)·τ(X) + σ·ε,   W ~ Bernoulli(e(X)),   ε ~ N(0, 1)

so the potential outcomes are μ0 = b − τ/2 and μ1 = b + τ/2.

    A  X ~ U[0,1]^p  b = sin(πX1X2) + 2(X3 − ½)² + X4 + ½X5   e = clip(sin(πX1X2), 0.1, 0.9)
                     τ = (X1 + X2)/2                          (hard nuisance, easy effect)
    B  X ~ N(0, I)   b = max(X1+X2, X3, 0) + max(X4+X5, 0)    e = ½
                     τ = X1 + log(1 + e^X2)                   (a randomised trial)
    C  X ~ N(0, I)   b = 2 log(1 + e^(X1+X2+X3))             e = 1/(1 + e^(X2+X3))
                     τ = 1                                    (easy propensity, hard baseline)
    D  X ~ N(0, I)   b = (max(X1+X2+X3, 0) + max(X4+X5, 0))/2  e = 1/(1 + e^−X1 + e^−X2)
                     τ = max(X1+X2+X3, 0) − max(X4+X5, 0)      (unrelated arms)

These are the generators ``causalml.dataset.synthetic_data`` (modes 1–4) ships, written here from
the paper's formulas (causalml would pull the CUDA xgboost wheel, shap, numba and lightgbm in for
twenty lines; docs/beyond.md). One deliberate difference: causalml's setup B computes
``np.maximum(0, X1+X2, X3)``, whose third argument is numpy's ``out=``, so it drops X3 from b and
overwrites the covariate X3 with max(X1+X2, 0); here b is the paper's max(X1+X2, X3, 0).

The task's ``y`` is (N, 4) = [factual outcome Y, treatment W, μ0, μ1]: a model trains on the
first two columns only; the true potential outcomes are there for the effect metrics (PEHE).
"""
from __future__ import annotations

import numpy as np
import torch

from groklab.tasks.base import Task, split_indices

SETUPS = ("A", "B", "C", "D")


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)  # log(1 + e^z) without overflow


def nie_wager(setup: str, n: int, p: int, sigma: float, seed: int) -> dict[str, np.ndarray]:
    """Draw ``n`` units of setup ``setup`` with ``p`` covariates (p ≥ 5) and noise std ``sigma``.

    Returns float64 arrays: X (n, p), w (n,) in {0, 1}, e, b, tau, mu0, mu1, y (n,).
    Reproducible from ``seed`` alone (numpy's PCG64)."""
    if setup not in SETUPS:
        raise ValueError(f"task.setup={setup!r}; allowed: {', '.join(SETUPS)}")
    if p < 5:
        raise ValueError(f"task.covariates={p}: setups A-D read X1..X5, at least 5 needed")
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, p)) if setup == "A" else rng.standard_normal((n, p))
    x1, x2, x3, x4, x5 = X[:, :5].T
    if setup == "A":
        b = np.sin(np.pi * x1 * x2) + 2 * (x3 - 0.5) ** 2 + x4 + 0.5 * x5
        e = np.clip(np.sin(np.pi * x1 * x2), 0.1, 0.9)
        tau = (x1 + x2) / 2
    elif setup == "B":
        b = np.maximum.reduce([x1 + x2, x3, np.zeros(n)]) + np.maximum(x4 + x5, 0)
        e = np.full(n, 0.5)
        tau = x1 + _softplus(x2)
    elif setup == "C":
        b = 2 * _softplus(x1 + x2 + x3)
        e = 1 / (1 + np.exp(x2 + x3))
        tau = np.ones(n)
    else:
        b = (np.maximum(x1 + x2 + x3, 0) + np.maximum(x4 + x5, 0)) / 2
        e = 1 / (1 + np.exp(-x1) + np.exp(-x2))
        tau = np.maximum(x1 + x2 + x3, 0) - np.maximum(x4 + x5, 0)
    w = (rng.uniform(size=n) < e).astype(np.float64)
    y = b + (w - 0.5) * tau + sigma * rng.standard_normal(n)
    return {"X": X, "w": w, "e": e, "b": b, "tau": tau, "mu0": b - tau / 2, "mu1": b + tau / 2, "y": y}


def causal_task(setup: str, n_samples: int, covariates: int, noise: float, frac: float,
                seed: int) -> Task:
    """Setup ``setup`` with ``n_samples`` units, split by ``frac`` into train / validation.

    x: (N, p) covariates; y: (N, 4) = [Y, W, μ0, μ1] (float32). ``seed`` draws the data and the split."""
    d = nie_wager(setup, n_samples, covariates, noise, seed)
    x = torch.tensor(d["X"], dtype=torch.float32)
    y = torch.tensor(np.stack([d["y"], d["w"], d["mu0"], d["mu1"]], 1), dtype=torch.float32)
    tr, va = split_indices(n_samples, frac, seed)
    return Task(name=f"causal setup {setup}", x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va],
                n_classes=2, kind="vectors", d_in=covariates,
                meta={"family": "causal", "setup": setup, "n_samples": n_samples,
                      "covariates": covariates, "noise": noise, "treated": float(d["w"].mean()),
                      "train_idx": tr, "val_idx": va})
