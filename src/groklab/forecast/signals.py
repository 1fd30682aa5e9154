"""The signals a forecast reads from a run's history up to a step ``t``: one flat feature vector.

Every feature is computed from evaluation records with ``step <= t`` (metrics.jsonl: train and
validation loss and accuracy, weight norm), the run's config and its budget, never from later
records, so a forecast made at ``t`` on a finished run equals the one a live run makes at ``t``.
Task-agnostic signals come first, so the same vector is defined for modular arithmetic, parity
and MNIST:

* **curves** — the last train/validation accuracy and loss, validation accuracy above chance
  (``(acc − 1/classes) / (1 − 1/classes)``), its best so far, validation loss below its peak,
  slopes per decade of steps over the latest 30 % of the steps (``step >= 0.7 t``), when train accuracy
  first reached 0.9 (memorisation) relative to ``t``, and how much validation accuracy has moved
  since then; when validation accuracy first rose 0.05 above chance; the slopes of validation
  accuracy and loss over the latest 10 %; the train loss above its minimum so far;
* **weight norm** — its level against the first record and its peak, and its slope;
* **loss oscillations** (Notsawo et al. 2023, arXiv 2306.13253, "Predicting grokking long before
  it happens") — the spectrum of the training loss's oscillations: log training loss, detrended by
  a cubic in step and a quadratic in log step, its Fourier power spectrum (energy, dominant frequency in cycles per step,
  share of the energy in the lowest tenth of the frequencies) and Hjorth's activity, mobility and
  complexity of the residual;
* **config** — log learning rate, decoupled weight decay, coupled L2, training fraction, training
  examples, classes, init scale, and flags for the model kind and each accelerator. The
  operation itself is not a feature, so a forecast can be asked about an operation it never saw.

Progress measures (Nanda et al. 2023; measures.jsonl) are read into the evidence when a run has
them (groklab.forecast.predict) but are not model features: the corpus runs do not record them.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

CURVE = ["t_frac", "log_t", "log_budget_left", "train_acc", "val_acc", "val_above_chance",
         "val_best_above_chance", "log_train_loss", "log_val_loss", "val_loss_below_peak",
         "slope_val_acc", "slope_log_val_loss", "slope_log_train_loss", "mem_ago",
         "val_gain_since_mem", "val_gain_recent", "rise_ago", "slope_val_acc_late",
         "slope_log_val_loss_late", "train_loss_above_min"]
NORM = ["log_wn_ratio", "log_wn_below_peak", "slope_log_wn"]
SPECTRAL = ["osc_log_energy", "osc_dom_freq", "osc_low_share", "hjorth_activity",
            "hjorth_mobility", "hjorth_complexity"]
CONFIG = ["log_lr", "log_wd", "log_l2", "frac", "log_n_train", "log_classes", "log_init_scale",
          "is_transformer", "orthograd", "grokfast", "grokfast_lamb", "wn_control", "stablemax",
          "batch_frac"]
FEATURES = CURVE + NORM + SPECTRAL + CONFIG
GROUPS = {"curves": CURVE, "norm": NORM, "spectral": SPECTRAL, "config": CONFIG}
WINDOW = 0.3        # slopes over the latest 30 % of the steps
MEM_THRESHOLD = 0.9
RISE = 0.05         # validation accuracy this far above chance: it has started to move


def history(records: list[dict], t: int | None = None) -> dict[str, np.ndarray]:
    """Columns of the evaluation records with ``step <= t`` (all when ``t`` is None)."""
    rows = [r for r in records if t is None or r["step"] <= t]
    keys = ("step", "train_loss", "train_acc", "val_loss", "val_acc", "weight_norm")
    return {k: np.array([float(r.get(k, np.nan)) for r in rows], dtype=float) for k in keys}


def slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x; NaN with fewer than 3 finite points or no spread in x."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return math.nan
    xc = x[ok] - x[ok].mean()
    sxx = float(xc @ xc)
    return float(xc @ (y[ok] - y[ok].mean())) / sxx if sxx > 0 else math.nan


def _log(v: np.ndarray | float) -> np.ndarray | float:
    return np.log(np.maximum(v, 1e-12))


def curve_features(h: dict[str, np.ndarray], classes: int, budget: int) -> dict[str, float]:
    s = h["step"]
    t = float(s[-1])
    chance = 1.0 / max(classes, 2)
    above = (h["val_acc"] - chance) / (1 - chance)
    ls = np.log10(s + 1)
    recent = s >= (1 - WINDOW) * t
    late = s >= (1 - WINDOW / 3) * t
    rise = np.nonzero(above >= RISE)[0]
    mem = np.nonzero(h["train_acc"] >= MEM_THRESHOLD)[0]
    half = np.searchsorted(s, t / 2)
    return {
        "t_frac": t / budget, "log_t": math.log10(t + 1),
        "log_budget_left": math.log10(max(budget - t, 1) + 1),
        "train_acc": h["train_acc"][-1], "val_acc": h["val_acc"][-1],
        "val_above_chance": above[-1], "val_best_above_chance": float(np.nanmax(above)),
        "log_train_loss": float(_log(h["train_loss"][-1])), "log_val_loss": float(_log(h["val_loss"][-1])),
        "val_loss_below_peak": float(_log(np.nanmax(h["val_loss"])) - _log(h["val_loss"][-1])),
        "slope_val_acc": slope(ls[recent], above[recent]),
        "slope_log_val_loss": slope(ls[recent], _log(h["val_loss"][recent])),
        "slope_log_train_loss": slope(ls[recent], _log(h["train_loss"][recent])),
        "mem_ago": math.log10(t + 1) - math.log10(s[mem[0]] + 1) if len(mem) else -1.0,
        "val_gain_since_mem": above[-1] - above[mem[0]] if len(mem) else 0.0,
        "val_gain_recent": above[-1] - above[min(half, len(s) - 1)],
        "rise_ago": math.log10(t + 1) - math.log10(s[rise[0]] + 1) if len(rise) else -1.0,
        "slope_val_acc_late": slope(ls[late], above[late]),
        "slope_log_val_loss_late": slope(ls[late], _log(h["val_loss"][late])),
        "train_loss_above_min": float(_log(h["train_loss"][-1]) - _log(np.nanmin(h["train_loss"]))),
    }


def norm_features(h: dict[str, np.ndarray]) -> dict[str, float]:
    w = h["weight_norm"]
    if not np.isfinite(w).any():
        return dict.fromkeys(NORM, math.nan)
    ls = np.log10(h["step"] + 1)
    recent = h["step"] >= (1 - WINDOW) * h["step"][-1]
    return {"log_wn_ratio": float(_log(w[-1]) - _log(w[0])),
            "log_wn_below_peak": float(_log(np.nanmax(w)) - _log(w[-1])),
            "slope_log_wn": slope(ls[recent], _log(w[recent]))}


def oscillation_spectrum(y: np.ndarray, dt: float) -> dict[str, float]:
    """Notsawo et al.'s signal on one series sampled every ``dt`` steps: detrend (least squares
    on a cubic in the step and a quadratic in its log), then the residual's power spectrum and
    Hjorth parameters.
    ``osc_dom_freq`` is in cycles per step."""
    n = len(y)
    if n < 8 or not np.isfinite(y).all():
        return dict.fromkeys(SPECTRAL, math.nan)
    u = np.arange(n) / n
    lg = np.log1p(np.arange(n))
    basis = np.stack([np.ones(n), u, u * u, u ** 3, lg, lg * lg], axis=1)
    r = y - basis @ np.linalg.lstsq(basis, y, rcond=None)[0]
    power = np.abs(np.fft.rfft(r - r.mean())) ** 2
    freqs = np.fft.rfftfreq(n, d=dt)
    p, f = power[1:], freqs[1:]
    total = float(p.sum())
    low = max(1, len(p) // 10)
    d1, d2 = np.diff(r), np.diff(r, 2)
    var0, var1, var2 = r.var(), d1.var(), d2.var()
    mob = math.sqrt(var1 / var0) if var0 > 0 else 0.0
    mob1 = math.sqrt(var2 / var1) if var1 > 0 else 0.0
    return {"osc_log_energy": math.log10(total / n + 1e-12),
            "osc_dom_freq": float(f[np.argmax(p)]) if total > 0 else 0.0,
            "osc_low_share": float(p[:low].sum() / total) if total > 0 else 0.0,
            "hjorth_activity": math.log10(var0 + 1e-12), "hjorth_mobility": mob,
            "hjorth_complexity": mob1 / mob if mob > 0 else 0.0}


def spectral_features(h: dict[str, np.ndarray]) -> dict[str, float]:
    s = h["step"]
    dt = float(np.median(np.diff(s))) if len(s) > 1 else 1.0
    return oscillation_spectrum(np.asarray(_log(h["train_loss"])), dt)


def task_size(cfg) -> tuple[int, int]:
    """(training examples, classes) of a config's task, from its settings alone."""
    t = cfg.task
    if t.name == "modular":
        from groklab.tasks.modular import NONZERO_Y
        n = t.p * (t.p - 1) if t.op in NONZERO_Y else t.p * t.p
        return max(1, round(t.frac * n)), t.p
    if t.name == "permutation":
        n = math.factorial(t.n)
        return max(1, round(t.frac * n * n)), n
    if t.name == "parity":
        return max(1, round(t.frac * t.n_samples)), 2
    return t.n_train, 10


def config_features(cfg) -> dict[str, float]:
    o, a = cfg.optim, cfg.accel
    n_train, classes = task_size(cfg)
    coupled = o.name in ("adam", "sgd")
    return {"log_lr": math.log10(o.lr), "log_wd": math.log10(o.wd if not coupled and o.wd > 0 else 1e-4),
            "log_l2": math.log10(o.wd if coupled and o.wd > 0 else 1e-6),
            "frac": cfg.task.frac if cfg.task.name != "mnist" else math.nan,
            "log_n_train": math.log10(n_train), "log_classes": math.log10(classes),
            "log_init_scale": math.log10(cfg.model.init_scale),
            "is_transformer": float(cfg.model.arch == "transformer"),
            "orthograd": float(a.orthograd), "grokfast": float(a.grokfast != "none"),
            "grokfast_lamb": a.lamb if a.grokfast != "none" else 0.0,
            "wn_control": float(a.weight_norm > 0), "stablemax": float(cfg.train.loss == "stablemax"),
            "batch_frac": min(1.0, cfg.train.batch_size / n_train) if cfg.train.batch_size else 1.0}


def features(records: list[dict], cfg, t: int | None = None, budget: int | None = None) -> dict[str, Any]:
    """The feature vector (name -> float, NaN where undefined) at step ``t`` (default: the last
    record). Raises ValueError when there is no record at or before ``t``."""
    h = history(records, t)
    if len(h["step"]) == 0:
        raise ValueError(f"no evaluation record at or before step {t}")
    budget = int(budget or cfg.train.steps)
    classes = task_size(cfg)[1]
    out = {**curve_features(h, classes, budget), **norm_features(h), **spectral_features(h),
           **config_features(cfg)}
    return {k: float(out[k]) for k in FEATURES}


def vector(feats: dict[str, float], names: list[str] = FEATURES) -> np.ndarray:
    return np.array([feats[k] for k in names], dtype=np.float32)
