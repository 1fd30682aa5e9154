"""Per-layer linear-probe accuracy (Fan, Pascanu, Jaggi 2024, "Deep Grokking", arXiv 2405.19454).

A linear classifier trained on the frozen outputs of one layer (their code: Adam lr 1e-3, 30
epochs); its held-out accuracy says how linearly separable the classes are at that depth.
Choices of ours, not checked against their code: features standardised by the training
features' mean and std (the ×8 init makes raw outputs of deep layers ~1e6), batch 200,
cross-entropy, float64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["layer_probe_accuracies", "linear_probe_accuracy"]


def linear_probe_accuracy(h_train: torch.Tensor, y_train: torch.Tensor, h_test: torch.Tensor,
                          y_test: torch.Tensor, n_classes: int, epochs: int = 30, lr: float = 1e-3,
                          batch_size: int = 200, seed: int = 0) -> float:
    """Held-out accuracy of a linear softmax probe.

    Args: h_train (N, d), y_train (N,), h_test (M, d), y_test (M,) features and labels;
    ``seed`` fixes the probe's init and minibatch order. Returns accuracy in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    mu, sd = h_train.mean(0), h_train.std(0).clamp_min(1e-12)
    xtr, xte = ((h_train - mu) / sd).double(), ((h_test - mu) / sd).double()
    W = torch.zeros(xtr.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(xtr), generator=g).split(batch_size):
            loss = F.cross_entropy(xtr[idx] @ W + b, y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return float(((xte @ W + b).argmax(-1) == y_test).double().mean())


def layer_probe_accuracies(model: torch.nn.Module, task, max_n: int = 1000, **kw) -> dict[str, float]:
    """``{"probe_L1": acc, ...}``: a probe per Linear layer of an MLP, trained on the outputs for
    the task's training inputs and scored on at most ``max_n`` held-out inputs."""
    from groklab.measure.rank import linear_outputs, rank_subsample
    p = next(model.parameters())
    cast = lambda x: x.to(p.device, p.dtype) if x.is_floating_point() else x.to(p.device)
    idx = rank_subsample(torch.arange(len(task.x_val)), max_n)
    tr = linear_outputs(model, cast(task.x_train))
    te = linear_outputs(model, cast(task.x_val[idx]))
    return {f"probe_{k}": linear_probe_accuracy(tr[k].cpu(), task.y_train, te[k].cpu(), task.y_val[idx],
                                                task.n_classes, **kw) for k in tr}
