"""Cheap measures computed while training, every ``train.measure_every`` steps (measures.jsonl).

Per call: one forward pass on the training set and a few small matmuls, so measuring every 100
steps costs a few percent of training time (benchmarks/measure_overhead.py). Logged:
sum of squared weights (total and per tensor), softmax-collapse fraction (float32) and zero-loss
fraction (in ``train.loss_dtype``) on the training set (Prieto et al. 2025, arXiv 2501.04697), and
for supported modular tasks the Gini coefficients of the Fourier norms n_E and n_L (Nanda et al.
2023, arXiv 2301.05217). The measures that need the key frequencies (restricted and excluded loss)
are computed after training by ``groklab analyze``, with K taken from the final model.
For MLPs, the feature rank of every Linear layer (``rank_L1`` .. ``rank_Ln``) over at most 1,000
held-out inputs (Fan et al. 2024, arXiv 2405.19454; ``groklab.measure.rank``).
"""
from __future__ import annotations

import torch

from groklab.accel.losses import collapse_fraction
from groklab.measure.norms import fourier_gini, fourier_norms, weight_norms
from groklab.measure.progress import zero_loss_fraction
from groklab.measure.rank import feature_ranks, rank_subsample

__all__ = ["LiveMeasures", "weight_norms"]


class LiveMeasures:
    """Callable ``(model, step) -> dict`` for the training loop."""

    def __init__(self, cfg, task):
        self.cfg, self.task = cfg, task
        self.frame = None
        # a fixed subsample of the held-out inputs keeps the rank cheap and comparable over steps
        self.x_rank = rank_subsample(task.x_val, 1000, seed=0) if cfg.model.arch == "mlp" else None
        try:
            from groklab.measure.fourier import frame_for
            self.frame = frame_for(task)
        except ValueError:
            pass  # not a modular task the Fourier measures support: log the generic ones

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, step: int) -> dict:
        was = model.training
        model.eval()
        p = next(model.parameters())
        x = self.task.x_train.to(p.device)
        logits = model(x.to(p.dtype) if x.is_floating_point() else x)
        model.train(was)
        y = self.task.y_train.to(p.device)
        out = {"step": step, **weight_norms(model)}
        out["softmax_collapse"] = collapse_fraction(logits, "float32")
        out["zero_loss_frac"] = zero_loss_fraction(logits, y, self.cfg.train.loss_dtype)
        if self.x_rank is not None:
            xr = self.x_rank.to(p.device)
            out.update(feature_ranks(model, xr.to(p.dtype) if xr.is_floating_point() else xr))
        if self.frame is not None:
            try:
                from groklab.measure.extract import embedding, neuron_logit_map
                out["gini_E"] = fourier_gini(fourier_norms(embedding(model, self.frame)))
                out["gini_L"] = fourier_gini(fourier_norms(neuron_logit_map(model, self.frame)))
            except ValueError:
                self.frame = None  # a model the measures cannot read (e.g. an MLP without hidden layer)
        return out
