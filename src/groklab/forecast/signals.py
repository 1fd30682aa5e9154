"""The signals a forecast reads from a run's history up to a step ``t``: one flat feature vector.

Every feature is computed from evaluation records with ``step <= t`` (metrics.jsonl: train and
validation loss and accuracy, weight norm), the run's config and its budget, never from later
records, so a forecast made at ``t`` on a finished run equals the one a live run makes at ``t``.
Task-agnostic signals come first, so the same vector is defined for modular arithmetic, parity
and MNIST:

* **curves** — the last train/validation accuracy and loss (losses over the chance loss
  ln(classes)), validation accuracy above chance (``(acc − 1/classes) / (1 − 1/classes)``), its
  best so far, validation loss below its peak, slopes per decade of steps over the latest 30 % of
  the steps (``step >= 0.7 t``), when train accuracy first reached 0.9 (memorisation) relative to
  ``t`` in log steps, and how much validation accuracy has moved since then; when validation
  accuracy first rose 0.05 above chance (both event steps interpolated between evaluations, so
  they do not move with ``train.eval_every``); the slopes over the latest 10 %; the train loss above its
  minimum so far. No feature reads the step or the budget in absolute units: a run at p = 113 for
  40,000 steps reads like one at p = 31 for 2,000 (the budget enters the model only as the horizon
  ``log10(B / t)``, groklab.forecast.model);
* **time in weight-decay units** — with decoupled weight decay λ and learning rate η the norm
  relaxes on the time scale 1/(ηλ) (Omnigrok, Liu et al. 2023), and the first-passage law of
  Truong et al. 2026 (arXiv 2605.18845, preprint) puts T_grok − T_mem ≈ ln(V_mem/V*)/(2κηλ): so
  ``log10(ηλ t)``, ``log10(ηλ T_mem)`` and ``log10(ηλ (t − T_mem))`` (NaN without weight decay);
* **weight norm** — its level against the first record, its peak and at memorisation, its slope
  per decade, and its relaxation rate d ln V / d(ηλ t) over the latest 30 % (the law's −2κ);
* **loss oscillations** (Notsawo et al. 2023, arXiv 2306.13253, "Predicting grokking long before
  it happens") — the spectrum of the training loss's oscillations: log training loss, detrended by
  a cubic in step and a quadratic in log step, its Fourier power spectrum (energy, dominant
  frequency as cycles over the history, share of the energy in the lowest tenth of the
  frequencies) and Hjorth's activity, mobility and complexity of the residual, all on the
  history thinned to at most 33 evenly spaced steps (per-sample measures would otherwise read the
  evaluation interval);
* **config** — log learning rate, decoupled weight decay, coupled L2, training fraction, init
  scale, the model kind and depth, and flags for MSE and each accelerator. Neither the operation
  nor the task's size is a feature, so a forecast can be asked about an operation or a modulus it
  never saw (the size is checked against the corpus's span: ``predict.outside``).

Progress measures (Nanda et al. 2023; measures.jsonl) are read into the evidence when a run has
them (groklab.forecast.predict) but are not model features: the corpus runs do not record them.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

CURVE = ["train_acc", "val_acc", "val_above_chance",
         "val_best_above_chance", "log_train_loss", "log_val_loss", "val_loss_below_peak",
         "slope_val_acc", "slope_log_val_loss", "slope_log_train_loss", "mem_ago",
         "val_gain_since_mem", "val_gain_recent", "rise_ago", "slope_val_acc_late",
         "slope_log_val_loss_late", "train_loss_above_min"]
TIME = ["log_t_tau", "log_mem_tau", "log_since_mem_tau"]
NORM = ["log_wn_ratio", "log_wn_below_peak", "slope_log_wn", "log_wn_since_mem", "wn_rate_tau"]
SPECTRAL = ["osc_log_energy", "osc_cycles", "osc_low_share", "hjorth_activity",
            "hjorth_mobility", "hjorth_complexity"]
CONFIG = ["log_lr", "log_wd", "log_l2", "frac", "log_init_scale", "is_transformer", "n_layers",
          "mse", "orthograd", "grokfast", "grokfast_lamb", "wn_control", "stablemax", "muon",
          "batch_frac"]
SIZE = ["log_n_train", "log_classes"]      # not model inputs: the span check (predict.outside)
FEATURES = CURVE + TIME + NORM + SPECTRAL + CONFIG
GROUPS = {"curves": CURVE, "time": TIME, "norm": NORM, "spectral": SPECTRAL, "config": CONFIG}
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


def curve_features(h: dict[str, np.ndarray], classes: int) -> dict[str, float]:
    s = h["step"]
    t = float(s[-1])
    chance = 1.0 / max(classes, 2)
    chance_loss = math.log(max(classes, 2))
    above = (h["val_acc"] - chance) / (1 - chance)
    ls = np.log10(s + 1)
    recent = s >= (1 - WINDOW) * t
    late = s >= (1 - WINDOW / 3) * t
    rise = crossing(s, above, RISE)
    mem = np.nonzero(h["train_acc"] >= MEM_THRESHOLD)[0]
    tm = mem_step(h)
    half = np.searchsorted(s, t / 2)
    return {
        "train_acc": h["train_acc"][-1], "val_acc": h["val_acc"][-1],
        "val_above_chance": above[-1], "val_best_above_chance": float(np.nanmax(above)),
        "log_train_loss": float(_log(h["train_loss"][-1] / chance_loss)),
        "log_val_loss": float(_log(h["val_loss"][-1] / chance_loss)),
        "val_loss_below_peak": float(_log(np.nanmax(h["val_loss"])) - _log(h["val_loss"][-1])),
        "slope_val_acc": slope(ls[recent], above[recent]),
        "slope_log_val_loss": slope(ls[recent], _log(h["val_loss"][recent])),
        "slope_log_train_loss": slope(ls[recent], _log(h["train_loss"][recent])),
        "mem_ago": math.log10(t + 1) - math.log10(tm + 1) if tm is not None else -1.0,
        "val_gain_since_mem": above[-1] - above[mem[0]] if len(mem) else 0.0,
        "val_gain_recent": above[-1] - above[min(half, len(s) - 1)],
        "rise_ago": math.log10(t + 1) - math.log10(rise + 1) if rise is not None else -1.0,
        "slope_val_acc_late": slope(ls[late], above[late]),
        "slope_log_val_loss_late": slope(ls[late], _log(h["val_loss"][late])),
        "train_loss_above_min": float(_log(h["train_loss"][-1]) - _log(np.nanmin(h["train_loss"]))),
    }


def decay_rate(cfg) -> float:
    """ηλ, the rate at which decoupled weight decay shrinks the weights per step (1/ηλ is the
    relaxation time of Omnigrok and the first-passage law); NaN without decoupled decay."""
    o = cfg.optim
    decoupled = o.name not in ("adam", "sgd") and o.wd > 0
    return o.lr * o.wd if decoupled else math.nan


def crossing(s: np.ndarray, y: np.ndarray, level: float) -> float | None:
    """The step at which ``y`` first reaches ``level``, interpolated linearly between the record
    before and the first record at or above it (None if it never does). Interpolated, an event's
    step does not depend on how often the run evaluates: a run evaluated every 100 steps would
    otherwise place memorisation up to 100 steps late, 0.2 decades at step 200."""
    i = np.nonzero(y >= level)[0]
    if not len(i):
        return None
    i = int(i[0])
    if i == 0 or not np.isfinite(y[i - 1]) or y[i] <= y[i - 1]:
        return float(s[i])
    return float(s[i - 1] + (s[i] - s[i - 1]) * (level - y[i - 1]) / (y[i] - y[i - 1]))


def mem_step(h: dict[str, np.ndarray]) -> float | None:
    """The step at which train accuracy first reached 0.9 (interpolated: ``crossing``), or None."""
    return crossing(h["step"], h["train_acc"], MEM_THRESHOLD)


def time_features(h: dict[str, np.ndarray], rate: float) -> dict[str, float]:
    t, tm = float(h["step"][-1]), mem_step(h)
    lg = (lambda v: math.log10(v * rate) if v > 0 and math.isfinite(rate) else math.nan)
    return {"log_t_tau": lg(t), "log_mem_tau": lg(tm) if tm is not None else math.nan,
            "log_since_mem_tau": lg(t - tm) if tm is not None else math.nan}


def norm_features(h: dict[str, np.ndarray], rate: float) -> dict[str, float]:
    w = h["weight_norm"]
    if not np.isfinite(w).any():
        return dict.fromkeys(NORM, math.nan)
    s = h["step"]
    ls = np.log10(s + 1)
    recent = s >= (1 - WINDOW) * s[-1]
    mem = np.nonzero(h["train_acc"] >= MEM_THRESHOLD)[0]
    return {"log_wn_ratio": float(_log(w[-1]) - _log(w[0])),
            "log_wn_below_peak": float(_log(np.nanmax(w)) - _log(w[-1])),
            "slope_log_wn": slope(ls[recent], _log(w[recent])),
            "log_wn_since_mem": float(_log(w[-1]) - _log(w[mem[0]])) if len(mem) else math.nan,
            "wn_rate_tau": slope(s[recent] * rate, _log(w[recent])) if math.isfinite(rate) else math.nan}


def oscillation_spectrum(y: np.ndarray, dt: float) -> dict[str, float]:
    """Notsawo et al.'s signal on one series sampled every ``dt`` steps: detrend (least squares
    on a cubic in the step and a quadratic in its log), then the residual's power spectrum and
    Hjorth parameters.
    ``osc_cycles`` is the dominant frequency in cycles over the whole history."""
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
            "osc_cycles": float(f[np.argmax(p)] * n * dt) if total > 0 else 0.0,
            "osc_low_share": float(p[:low].sum() / total) if total > 0 else 0.0,
            "hjorth_activity": math.log10(var0 + 1e-12), "hjorth_mobility": mob,
            "hjorth_complexity": mob1 / mob if mob > 0 else 0.0}


SPECTRAL_GRID = 32  # the spectrum reads the history at (at most) 33 evenly spaced steps


def thin(s: np.ndarray, n: int = SPECTRAL_GRID) -> np.ndarray:
    """Indices of the last record at or before each of the steps 0, t/n, …, t (distinct): the
    history at a density that does not depend on ``train.eval_every`` once it is n per history."""
    grid = np.linspace(0.0, float(s[-1]), n + 1)
    idx = np.searchsorted(s, grid, side="right") - 1
    return np.unique(idx[idx >= 0])


def spectral_features(h: dict[str, np.ndarray]) -> dict[str, float]:
    """The spectrum of the training loss on the thinned history (``thin``): the Hjorth parameters
    and the low-frequency share are per sample, so on every record they would read a run
    evaluated every 100 steps as another kind of run than the same run evaluated every 10."""
    i = thin(h["step"])
    s = h["step"][i]
    dt = float(np.median(np.diff(s))) if len(s) > 1 else 1.0
    return oscillation_spectrum(np.asarray(_log(h["train_loss"][i])), dt)


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
    o, a, m = cfg.optim, cfg.accel, cfg.model
    n_train, classes = task_size(cfg)
    coupled = o.name in ("adam", "sgd")
    return {"log_lr": math.log10(o.lr), "log_wd": math.log10(o.wd if not coupled and o.wd > 0 else 1e-4),
            "log_l2": math.log10(o.wd if coupled and o.wd > 0 else 1e-6),
            "frac": cfg.task.frac if cfg.task.name != "mnist" else math.nan,
            "log_n_train": math.log10(n_train), "log_classes": math.log10(classes),
            "log_init_scale": math.log10(m.init_scale),
            "is_transformer": float(m.arch == "transformer"),
            "n_layers": float(m.n_layers if m.arch == "transformer" else len(m.hidden or []) + 1),
            "mse": float(cfg.train.loss == "mse"),
            "orthograd": float(a.orthograd), "grokfast": float(a.grokfast != "none"),
            "grokfast_lamb": a.lamb if a.grokfast != "none" else 0.0,
            "wn_control": float(a.weight_norm > 0), "stablemax": float(cfg.train.loss == "stablemax"),
            "muon": float(o.name == "muon"),
            "batch_frac": min(1.0, cfg.train.batch_size / n_train) if cfg.train.batch_size else 1.0}


def features(records: list[dict], cfg, t: int | None = None) -> dict[str, Any]:
    """The feature vector (name -> float, NaN where undefined) at step ``t`` (default: the last
    record), and the task's size (``SIZE``, for the span check). Raises ValueError when there is
    no record at or before ``t``."""
    h = history(records, t)
    if len(h["step"]) == 0:
        raise ValueError(f"no evaluation record at or before step {t}")
    classes = task_size(cfg)[1]
    rate = decay_rate(cfg)
    out = {**curve_features(h, classes), **time_features(h, rate), **norm_features(h, rate),
           **spectral_features(h), **config_features(cfg)}
    return {k: float(out[k]) for k in FEATURES + SIZE}


def vector(feats: dict[str, float], names: list[str] = FEATURES) -> np.ndarray:
    return np.array([feats[k] for k in names], dtype=np.float32)
