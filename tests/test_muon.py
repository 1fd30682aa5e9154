"""Muon on the 2-D weights, AdamW on the rest (optim.name=muon; Tveit et al. 2025, arXiv 2504.16041)."""
import math

import torch

import groklab
from groklab.train.optim import Optimizers, build_optimizer, set_lr

A, B, C = 3.4445, -4.7750, 2.0315  # the quintic Newton–Schulz coefficients of Muon (Jordan 2024)


def newton_schulz(M: torch.Tensor, steps: int = 5, eps: float = 1e-7, dtype=torch.bfloat16) -> torch.Tensor:
    """Muon's orthogonalisation written from its definition: X = M/‖M‖_F, then
    X <- aX + (b XXᵀ + c (XXᵀ)²) X, on the wide orientation, in bfloat16 as Muon runs it."""
    M = M.to(dtype)
    X = M / M.norm().clamp_min(eps)
    tall = X.shape[0] > X.shape[1]
    X = X.T if tall else X
    for _ in range(steps):
        S = X @ X.T
        X = A * X + (B * S + C * S @ S) @ X
    return X.T if tall else X


def reference_muon(theta, grads, lr, wd, mu):
    """θ_t = θ(1 − lr·wd) − lr·sqrt(max(1, rows/cols))·NS(g + μ B_t), B_t = μ B_{t-1} + g (Nesterov)."""
    buf = torch.zeros_like(theta)
    for g in grads:
        buf = mu * buf + g
        ortho = newton_schulz(g + mu * buf).float()
        theta = theta * (1 - lr * wd) - lr * math.sqrt(max(1.0, theta.shape[0] / theta.shape[1])) * ortho
    return theta


def test_muon_steps_match_the_definition_and_the_rest_get_adamw():
    cfg = groklab.resolve("mlp-muon").optim
    cfg.lr, cfg.wd, cfg.aux_lr = 0.05, 0.1, 1e-3
    g = torch.Generator().manual_seed(1)
    W = torch.nn.Parameter(torch.randn(6, 4, generator=g))
    b = torch.nn.Parameter(torch.randn(4, generator=g))
    opt = build_optimizer([W, b], cfg)
    assert isinstance(opt, Optimizers)
    assert isinstance(opt.opts[0], torch.optim.Muon) and opt.opts[0].param_groups[0]["params"] == [W]
    assert isinstance(opt.opts[1], torch.optim.AdamW) and opt.opts[1].param_groups[0]["params"] == [b]
    set_lr(opt, cfg.lr)
    assert [gr["lr"] for gr in opt.param_groups] == [0.05, 1e-3]  # the AdamW group keeps its ratio
    W0, b0 = W.detach().clone(), b.detach().clone()
    grads = [torch.randn(6, 4, generator=g) for _ in range(3)]
    for gW in grads:
        W.grad, b.grad = gW.clone(), torch.ones(4)
        opt.step()
    want = reference_muon(W0, grads, cfg.lr, cfg.wd, cfg.momentum)
    # Muon orthogonalises in bfloat16 (8-bit mantissa): the same update up to ~1 % rounding;
    # a missing Nesterov term, shape factor sqrt(6/4) or weight decay is off by far more
    assert (W.detach() - want).norm() / (want - W0).norm() < 0.03
    # AdamW with a constant gradient moves each coordinate by ~lr per step (plus decoupled decay)
    assert torch.allclose(b.detach(), b0 * (1 - 1e-3 * 0.1) ** 3 - 3e-3, atol=2e-4)


def test_newton_schulz_output_is_nearly_orthogonal():
    M = torch.randn(8, 5, generator=torch.Generator().manual_seed(0)) @ torch.diag(torch.logspace(-1, 1, 5))
    s = torch.linalg.svdvals(newton_schulz(M, dtype=torch.float64))
    assert s.min() > 0.6 and s.max() < 1.25  # the quintic's band, not exactly 1 (Jordan 2024)


def test_a_muon_run_resumes_its_optimizer_state(tmp_path):
    over = ["task.p=11", "model.hidden=8,6", "train.steps=20", "train.save_every=10", "train.n_checkpoints=0"]
    one = groklab.run(groklab.resolve("mlp-muon", overrides=over), out=tmp_path / "one", report=False)
    half = groklab.resolve("mlp-muon", overrides=over)
    half.train.steps = 10
    groklab.run(half, out=tmp_path / "two", report=False)
    two = groklab.resume(tmp_path / "two", overrides=["train.steps=20"], report=False)
    for k, p in one.model.state_dict().items():
        assert torch.equal(p, two.model.state_dict()[k]), k
