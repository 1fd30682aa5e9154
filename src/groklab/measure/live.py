"""Cheap measures computed while training, every ``train.measure_every`` steps."""
from __future__ import annotations

import torch

from groklab.accel.losses import collapse_fraction


@torch.no_grad()
def weight_norms(model: torch.nn.Module) -> dict[str, float]:
    """Sum of squared weights, total and per tensor (Nanda et al. 2023, §5.2)."""
    per = {n: float((p.double() ** 2).sum()) for n, p in model.named_parameters()}
    return {"sum_sq_weights": sum(per.values()), "sum_sq_per_tensor": per}


class LiveMeasures:
    """Callable ``(model, step) -> dict`` for the training loop."""

    def __init__(self, cfg, task):
        self.cfg, self.task = cfg, task

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, step: int) -> dict:
        was = model.training
        model.eval()
        logits = model(self.task.x_train)
        model.train(was)
        out = {"step": step, **weight_norms(model)}
        out["softmax_collapse"] = collapse_fraction(logits, "float32")
        z = logits.double().log_softmax(-1)
        out["zero_loss_frac"] = float((z.gather(-1, self.task.y_train[:, None]) == 0).double().mean())
        return out
