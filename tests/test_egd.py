"""Egalitarian gradient descent (Pasand & Dohmatob 2025, arXiv 2510.04930): G -> (G Gᵀ)^(-1/2) G = U Vᵀ."""
import pytest
import torch

import groklab
from groklab.accel.transforms import build_transforms, egalitarian
from groklab.train.loop import Trainer


def inverse_root_times(G: torch.Tensor) -> torch.Tensor:
    """(G Gᵀ)^(-1/2) G from the eigendecomposition of G Gᵀ (pseudo-inverse on its null space)."""
    w, Q = torch.linalg.eigh(G @ G.T)
    inv = torch.where(w > 1e-10 * w.max(), w.clamp_min(1e-300).rsqrt(), torch.zeros_like(w))
    return (Q * inv) @ Q.T @ G


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4)])
def test_egd_is_the_inverse_root_whitening_with_unit_singular_values(shape):
    g = torch.Generator().manual_seed(0)
    G = torch.randn(shape, generator=g, dtype=torch.float64) * torch.logspace(-2, 2, shape[1], dtype=torch.float64)
    before = G.clone()
    out, _ = egalitarian().update({"W": G, "b": torch.ones(3, dtype=torch.float64)}, (), {})
    assert torch.allclose(out["W"], inverse_root_times(G), atol=1e-9)
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    assert torch.allclose(out["W"], U @ Vh, atol=1e-9)
    assert torch.allclose(torch.linalg.svdvals(out["W"]), torch.ones(min(shape), dtype=torch.float64))
    assert torch.equal(G, before) and torch.equal(out["b"], torch.ones(3, dtype=torch.float64))


def test_egd_of_a_rank_one_gradient_is_its_normalised_outer_product():
    u, v = torch.tensor([3.0, 4.0, 0.0], dtype=torch.float64), torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    out, _ = egalitarian().update({"W": 7 * torch.outer(u, v)}, (), {})
    assert torch.allclose(out["W"], torch.outer(u / 5, v), atol=1e-12)
    zero, _ = egalitarian().update({"W": torch.zeros(3, 2)}, (), {})
    assert torch.equal(zero["W"], torch.zeros(3, 2))


def test_an_egd_run_step_is_sgd_on_whitened_gradients_plus_l2():
    """The mlp-egd recipe: W <- W - lr (U Vᵀ(dL/dW) + wd W) for every matrix (plain SGD, coupled L2)."""
    cfg = groklab.resolve("mlp-egd", overrides=["task.p=11", "model.hidden=8,6", "optim.warmup=0"])
    assert build_transforms(cfg.accel, cfg.optim) is not None
    tr = Trainer.build(cfg)
    w0 = {k: p.detach().clone() for k, p in tr.params.items()}
    loss = tr.forward()[0]
    grads = torch.autograd.grad(loss, list(tr.params.values()), retain_graph=True)
    tr.update(loss)
    lr, wd = cfg.optim.lr, cfg.optim.wd
    for (k, p), g in zip(tr.params.items(), grads):
        U, _, Vh = torch.linalg.svd(g, full_matrices=False)
        assert torch.allclose(p.detach(), w0[k] - lr * (U @ Vh + wd * w0[k]), atol=1e-5), k
