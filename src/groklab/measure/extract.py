"""What the progress measures read from a model, in a ``Frame``'s coordinate order.

* Transformer (Nanda et al. 2023): embedding W_E (V, d); neurons = the last block's MLP
  activations at the ``=`` position; neuron-logit map W_L = (W_out W_U)ᵀ (V, d_mlp) (exactly the
  neurons' direct path to the logits; the only path for Nanda's 1-layer model without LayerNorm).
* MLPNet: embedding = the learned W_E (p, d), or for one-hot inputs the first layer's columns of
  operand x and of operand y side by side, (p, 2h) (one-hot input times a matrix *is* an embedding);
  neurons = the last hidden layer; neuron-logit map = the output layer's weight (p, h).
* PairMLP (PAIR 2023): embedding = W_E (p, d); neurons = ``hook_post``; neuron-logit map
  = (W_out U)ᵀ (p, h) with U = W_Eᵀ when tied (else W_U), the only path from a neuron to the logits.
"""
from __future__ import annotations

import torch

from groklab.measure.fourier import Frame
from groklab.models import MLPNet, PairMLP, Transformer


def _check(model) -> None:
    if not isinstance(model, (Transformer, MLPNet, PairMLP)):
        raise ValueError(f"progress measures support Transformer, MLPNet and PairMLP models, "
                         f"not {type(model).__name__}")
    if isinstance(model, MLPNet) and (not model.n_tokens or not len(model.hooks_post)):
        raise ValueError("progress measures need an MLPNet on a token task with at least one hidden layer")


@torch.no_grad()
def embedding(model, frame: Frame) -> torch.Tensor:
    """Token embeddings of the frame's coordinates: (n, d) float64."""
    _check(model)
    t = frame.tokens.to(next(model.parameters()).device)
    if isinstance(model, (Transformer, PairMLP)) or model.embed == "learned":
        return model.W_E[t].double().cpu()
    W = model.layers[0].weight                                   # (h, 2p)
    return torch.cat([W[:, t].T, W[:, model.n_tokens + t].T], 1).double().cpu()


@torch.no_grad()
def neuron_logit_map(model, frame: Frame) -> torch.Tensor:
    """W_L restricted to the frame's classes, rows in frame order: (n, N) float64."""
    _check(model)
    t = frame.tokens.to(next(model.parameters()).device)
    if isinstance(model, Transformer):
        WL = model.blocks[-1].mlp.W_out @ model.W_U              # (d_mlp, V)
        return WL[:, t].T.double().cpu()
    if isinstance(model, PairMLP):
        return (model.W_out @ model.unembed)[:, t].T.double().cpu()  # (n, h)
    return model.layers[-1].weight[t].double().cpu()             # (p, h) -> (n, h)


def neuron_hook(model) -> str:
    _check(model)
    if isinstance(model, Transformer):
        return f"blocks.{len(model.blocks) - 1}.mlp.hook_post"
    if isinstance(model, PairMLP):
        return "hook_post"
    return f"hooks_post.{len(model.hooks_post) - 1}"


@torch.no_grad()
def grid_run(model, frame: Frame, chunk: int = 8192, neurons: bool = True):
    """Logits and neuron activations on the whole grid, in eval mode.

    Returns ``(L, acts)``: L (n², p) float64 logits with the ``=`` class dropped, acts (n², N)
    float64 (None if ``neurons`` is False). Activations at the ``=`` position only.
    """
    _check(model)
    p = next(model.parameters())
    was = model.training
    model.eval()
    hook = neuron_hook(model)
    Ls, As = [], []
    try:
        for s in range(0, len(frame.grid), chunk):
            x = frame.grid[s:s + chunk].to(p.device)
            if neurons:
                logits, cache = model.run_with_cache(x, names=[hook])
                a = cache[hook]
                As.append((a[:, -1] if a.dim() == 3 else a).double().cpu())
            else:
                logits = model(x)
            Ls.append(logits[:, :frame.p].double().cpu())
    finally:
        model.train(was)
    return torch.cat(Ls), (torch.cat(As) if neurons else None)
