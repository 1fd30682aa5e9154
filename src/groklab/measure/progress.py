"""Every progress measure of one model state, as one JSON-ready record.

``measure_model(model, frame, key_freqs, cfg)`` is what ``groklab analyze`` computes for each
checkpoint: losses on the grid (train / validation pairs, restricted, excluded, excluded per key
frequency), Fourier norms n_E and n_L per frequency with their Gini coefficients, the sum of
squared weights (total and per tensor), the softmax-collapse and zero-loss fractions on the
training pairs (Prieto et al. 2025, arXiv 2501.04697), and the RQI of the embedding (Liu et al.
2022, arXiv 2205.10343).
"""
from __future__ import annotations

import torch

from groklab.accel.losses import DTYPES, collapse_fraction
from groklab.measure import circuit
from groklab.measure.extract import embedding, grid_run, neuron_logit_map
from groklab.measure.fourier import Frame
from groklab.measure.norms import fourier_gini, fourier_norms, per_frequency, weight_norms
from groklab.measure.rqi import rqi


def zero_loss_fraction(logits: torch.Tensor, y: torch.Tensor, dtype: str = "float64") -> float:
    """Share of samples whose cross-entropy is exactly 0 in ``dtype`` (their gradient vanishes;
    Prieto et al. 2025). logits (B, C), y (B,)."""
    logp = logits.to(DTYPES[dtype]).log_softmax(-1).gather(-1, y[:, None])
    return float((logp == 0).double().mean())


def spectrum(model, frame: Frame) -> dict[str, list[float]]:
    """n_E and n_L per frequency 1..n//2 (cos and sin combined), float lists."""
    return {"n_E": per_frequency(fourier_norms(embedding(model, frame))).tolist(),
            "n_L": per_frequency(fourier_norms(neuron_logit_map(model, frame))).tolist()}


def _ce(L: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    loss = float(-L.log_softmax(-1).gather(-1, y[:, None]).mean())
    return loss, float((L.argmax(-1) == y).double().mean())


@torch.no_grad()
def measure_model(model, frame: Frame, key_freqs: list[int], loss_dtype: str = "float64",
                  model_dtype: torch.dtype = torch.float32) -> dict:
    """All progress measures of ``model`` (see module doc). ``key_freqs``: the run's frozen K."""
    L, _ = grid_run(model, frame, neurons=False)                 # (n², p) float64
    tr, y = frame.train, frame.labels
    rec: dict = {}
    rec["train_loss"], rec["train_acc"] = _ce(L[tr], y[tr])
    rec["val_loss"], rec["val_acc"] = _ce(L[~tr], y[~tr])
    rec["restricted_loss"], rec["restricted_acc"] = circuit.restricted_loss(L, frame, key_freqs)
    rec["excluded_loss"] = circuit.excluded_loss(L, frame, key_freqs)
    rec["excluded_loss_per_freq"] = circuit.excluded_loss_per_freq(L, frame, key_freqs)
    E, WL = embedding(model, frame), neuron_logit_map(model, frame)
    nE, nL = fourier_norms(E), fourier_norms(WL)
    rec["gini_E"], rec["gini_L"] = fourier_gini(nE), fourier_gini(nL)
    rec["n_E"], rec["n_L"] = per_frequency(nE).tolist(), per_frequency(nL).tolist()
    rec["key_share_E"] = _key_share(per_frequency(nE), key_freqs)
    rec["key_share_L"] = _key_share(per_frequency(nL), key_freqs)
    rec.update(weight_norms(model))
    # collapse is a float-precision event: test it in the model's own precision
    collapse_dtype = "float64" if model_dtype == torch.float64 else "float32"
    rec["softmax_collapse"] = collapse_fraction(L[tr].to(model_dtype), collapse_dtype)
    rec["zero_loss_frac"] = zero_loss_fraction(L[tr].to(model_dtype), y[tr], loss_dtype)
    rec["rqi"] = rqi(E)
    return rec


def _key_share(per_freq: torch.Tensor, key_freqs: list[int]) -> float:
    """Share of the squared Fourier norm held by the key frequencies."""
    tot = float((per_freq ** 2).sum())
    if tot == 0 or not key_freqs:
        return 0.0
    return float((per_freq[[k - 1 for k in key_freqs]] ** 2).sum()) / tot
