"""Models: Nanda's and Power's transformers, MLPs, PAIR's tied-embedding MLP; named hook points
for analyses."""
from __future__ import annotations

import torch

from groklab.models.hooks import HookedModule, HookPoint
from groklab.models.mlp import MLPNet
from groklab.models.pair import PairMLP
from groklab.models.tarnet import TARNet
from groklab.models.transformer import Transformer


def build_model(cfg, task, fast: bool | None = None):
    """The model a ``ModelConfig`` describes, shaped for ``task``; init from ``train.seed``."""
    m, seed = cfg.model, cfg.train.seed
    fast = cfg.train.fast if fast is None else fast
    if m.arch == "transformer":
        if task.kind != "tokens":
            raise ValueError(f"model.arch='transformer' needs a token task, not {task.name!r}")
        return Transformer(d_vocab=task.vocab, d_vocab_out=task.vocab, n_ctx=task.x_train.shape[1],
                           n_layers=m.n_layers, d_model=m.d_model, n_heads=m.n_heads, d_mlp=m.d_mlp,
                           act=m.act, norm=m.norm, dropout=m.dropout, causal=m.causal, init=m.init,
                           init_scale=m.init_scale, fast=fast, seed=seed)
    if m.arch == "pair":
        if task.kind != "tokens":
            raise ValueError(f"model.arch='pair' needs a token task, not {task.name!r}")
        return PairMLP(n_tokens=task.n_classes, d_embed=m.d_model, d_hidden=m.d_mlp, act=m.act,
                       init_scale=m.init_scale, seed=seed, tied=m.tied)
    if m.arch == "tarnet":
        if task.meta.get("family") != "causal":
            raise ValueError(f"model.arch='tarnet' needs task.name='causal', not {task.name!r}")
        return TARNet(d_in=task.d_in, hidden=m.hidden, head_hidden=m.head_hidden, tol=m.tol,
                      init_scale=m.init_scale, seed=seed)
    if m.arch in ("gp", "gp-regression", "linear", "bnn"):
        return nonneural_model(cfg, task)
    if task.kind == "tokens":
        return MLPNet(n_out=task.n_classes, hidden=m.hidden, n_tokens=task.n_classes, embed=m.embed,
                      d_embed=m.d_model, act=m.act, bias=m.bias, dropout=m.dropout,
                      init_scale=m.init_scale, seed=seed)
    return MLPNet(n_out=task.n_classes, hidden=m.hidden, d_in=task.d_in, act=m.act, bias=m.bias,
                  dropout=m.dropout, init_scale=m.init_scale, seed=seed)


def nonneural_model(cfg, task):
    """Miller et al. 2024's models (models.gp needs GPyTorch: pip install 'groklab[gp]')."""
    m, seed, n = cfg.model, cfg.train.seed, task.n_train
    if m.arch == "linear":
        from groklab.models.bayes import LinearPrior
        return LinearPrior(n_train=n)
    if m.arch == "bnn":
        from groklab.models.bayes import BayesMLP
        return BayesMLP(d_in=task.d_in, hidden=m.hidden[0], n_out=task.n_classes, n_train=n, seed=seed)
    try:
        from groklab.models import gp
    except ModuleNotFoundError as e:
        raise ValueError(f"model.arch={m.arch!r} needs GPyTorch ({e.name} is missing): "
                         f"pip install 'groklab[gp]'") from None
    with torch.device("cpu"):  # GPyTorch cannot build on the meta device (its checks read values)
        if m.arch == "gp":
            return gp.GPClassifier(task.x_train, n_signal=task.meta.get("k", 0), seed=seed)
        return gp.GPRegressor(task.x_train, task.y_train, tol=2 * task.meta.get("noise", 0.1) or 0.2)
__all__ = ["HookPoint", "HookedModule", "MLPNet", "PairMLP", "TARNet", "Transformer", "build_model"]
