"""Optimisers and learning-rate schedules.

* ``adamw``: decoupled weight decay (Loshchilov & Hutter), as in Nanda's and Power's recipes.
* ``adam``: Adam with *coupled* L2 (``weight_decay`` added to the gradient), as in Grokfast's.
* ``sgd``: SGD with momentum, coupled L2.
"""
from __future__ import annotations

import math

import torch


def build_optimizer(params, cfg) -> torch.optim.Optimizer:
    """The optimiser an ``OptimConfig`` names, over ``params``; lr is set per step by the loop."""
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") for p in params) or None
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                 weight_decay=cfg.wd, fused=fused)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                weight_decay=cfg.wd, fused=fused)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.wd)
    raise ValueError(f"unknown optim.name {cfg.name!r}; allowed: adamw, adam, sgd")


def get_lr(step: int, cfg, total_steps: int) -> float:
    """Learning rate at ``step`` (0-based).

    Warm-up is Nanda's rule exactly, ``lr * min(step / warmup, 1)`` (his ``LambdaLR``), so the
    first update has lr 0; then constant, or cosine / linear decay to ``min_lr_frac * lr`` at
    ``total_steps``."""
    lr = cfg.lr
    if cfg.warmup and step < cfg.warmup:
        return lr * step / cfg.warmup
    if cfg.schedule == "constant":
        return lr
    span = max(1, total_steps - cfg.warmup)
    t = min(1.0, (step - cfg.warmup) / span)
    floor = cfg.min_lr_frac * lr
    if cfg.schedule == "cosine":
        return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return lr + (floor - lr) * t  # linear


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr
