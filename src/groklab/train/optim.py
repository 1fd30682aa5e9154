"""Optimisers and learning-rate schedules.

* ``adamw``: decoupled weight decay (Loshchilov & Hutter), as in Nanda's and Power's recipes.
* ``adam``: Adam with *coupled* L2 (``weight_decay`` added to the gradient), as in Grokfast's.
* ``sgd``: SGD with momentum, coupled L2.
* ``muon``: Muon (Jordan 2024; as in Tveit et al. 2025, arXiv 2504.16041, "Muon Optimizer
  Accelerates Grokking") on every 2-D weight — SGD-Nesterov momentum ``optim.momentum``,
  orthogonalised by 5 Newton–Schulz steps, decoupled weight decay ``optim.wd`` — and AdamW on
  the other tensors (biases, LayerNorm, 3-D attention weights) at ``optim.aux_lr`` (0 = lr).
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
    if cfg.name == "muon":
        return muon_adamw(params, cfg)
    raise ValueError(f"unknown optim.name {cfg.name!r}; allowed: adamw, adam, sgd, muon")


class Optimizers:
    """Several optimisers stepped as one: ``param_groups``, ``step``, ``zero_grad``,
    ``state_dict`` and ``load_state_dict`` as the loop and checkpoints use them. A group's
    ``lr_scale`` is its learning rate relative to the schedule's (``set_lr``)."""

    def __init__(self, *opts: torch.optim.Optimizer):
        self.opts = opts

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.opts for g in o.param_groups]

    def step(self) -> None:
        for o in self.opts:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.opts:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.opts]}

    def load_state_dict(self, state: dict) -> None:
        for o, s in zip(self.opts, state["optimizers"], strict=True):
            o.load_state_dict(s)


def muon_adamw(params: list, cfg) -> Optimizers | torch.optim.Optimizer:
    """Muon on the 2-D tensors of ``params``, AdamW on the rest (see the module docstring)."""
    mats = [p for p in params if p.dim() == 2]
    rest = [p for p in params if p.dim() != 2]
    opts = []
    if mats:
        opts.append(torch.optim.Muon(mats, lr=cfg.lr, weight_decay=cfg.wd, momentum=cfg.momentum,
                                     nesterov=True, ns_steps=5))
    if rest:
        adam = torch.optim.AdamW(rest, lr=cfg.aux_lr or cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                 weight_decay=cfg.wd)
        adam.param_groups[0]["lr_scale"] = (cfg.aux_lr or cfg.lr) / cfg.lr
        opts.append(adam)
    return opts[0] if len(opts) == 1 else Optimizers(*opts)


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
        g["lr"] = lr * g.get("lr_scale", 1.0)
