"""The forecast model: one distribution of *when*, from which P(within any budget) follows.

For each threshold θ (0.9 and 0.99 of validation accuracy) one XGBoost classifier answers
"is T_θ ≤ B?" from the features at the forecast step t (groklab.forecast.signals) and the
horizon ``log10(B / t)`` — a discrete-time survival model (the budget is an input, not a
constant of the corpus). Its output is forced to rise with the horizon (XGBoost's monotone
constraint), then calibrated by isotonic regression fitted on out-of-fold predictions (5 folds
grouped by config, so the seeds of one config never straddle a fold), so that for one forecast

    F(B) = P(T_θ ≤ B | the history up to t)

is a proper distribution function of B on (t, ∞) (it may stay below 1: a run may never grok).
Everything a forecast says comes from F (groklab.forecast.predict): the probability within the
budget is F(budget); *when* is the median of F restricted to (t, budget] (the step B where
F(B) = F(budget)/2), and the 80 % interval its 10th and 90th percentiles, widened on each side by
a margin (in log steps) fitted out of fold so that 80 % of actual steps fall inside it. Answers for 0.99 are clamped
by those for 0.9 (P(0.99) ≤ P(0.9), step(0.99) ≥ step(0.9)).

Why XGBoost: one well-kept library with monotone constraints, missing features (NaN) handled
natively, and a documented non-pickle format (UBJSON) that loads without running any code; its
``xgboost-cpu`` wheel is 5 MB where the default one pulls a GPU runtime. Everything is
deterministic (one thread, fixed seeds, unshuffled folds), so ``groklab forecast build`` on
the same records rebuilds the shipped files bit for bit.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from groklab.forecast.signals import FEATURES

FORMAT = 2
ROUNDS = 300
CLF = {"eta": 0.05, "max_depth": 4, "min_child_weight": 2.0, "subsample": 0.8, "colsample_bytree": 0.8,
       "lambda": 1.0, "nthread": 1, "seed": 0, "tree_method": "hist", "objective": "binary:logistic",
       "eval_metric": "logloss"}
FOLDS = 5
INTERVAL = (0.1, 0.9)    # the 80 % interval: these quantiles of F on (t, budget]
GRID = 48                # horizons a forecast evaluates F at, log-spaced over (t, budget]
OUTSIDE_WIDEN = 2.0      # runs outside the corpus's span: this many times the margin, plus 0.1


def _xgb():
    try:
        import xgboost
    except ImportError:  # pragma: no cover - a core dependency
        raise ImportError("the forecast needs xgboost: pip install xgboost-cpu") from None
    return xgboost


@dataclass
class ThresholdModel:
    clf: Any                          # xgboost.Booster on [features, log10(B/t)], monotone in the last
    calib_x: np.ndarray               # isotonic knots: raw probability -> calibrated
    calib_y: np.ndarray
    margin: float = 0.0               # the interval's extra width on each side (log steps)

    def raw(self, X: np.ndarray, h: np.ndarray) -> np.ndarray:
        Xh = np.concatenate([X, np.asarray(h, np.float32).reshape(-1, 1)], axis=1)
        return self.clf.inplace_predict(Xh, missing=np.nan)

    def cdf(self, X: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Calibrated P(T ≤ t·10^h) for rows X (features at t) and horizons h = log10(B/t)."""
        r = self.raw(X, h)
        return np.interp(r, self.calib_x, self.calib_y) if len(self.calib_x) else r


@dataclass
class ForecastModel:
    features: list[str]
    thresholds: dict[float, ThresholdModel]
    meta: dict[str, Any] = field(default_factory=dict)

    def columns(self, X: np.ndarray, names: list[str] = FEATURES) -> np.ndarray:
        """X (full feature order) restricted to this model's features."""
        if list(names) == self.features:
            return X
        idx = [names.index(f) for f in self.features]
        return X[:, idx]


def horizon_grid(t: float, budget: float, n: int = GRID) -> np.ndarray:
    """log10(B/t) for n budgets B log-spaced over (t, budget], the last exactly the budget."""
    top = math.log10(max(budget, t + 1) / max(t, 1.0))
    return np.linspace(top / n, top, n)


def distribution(m: ThresholdModel, x: np.ndarray, t: float, budget: float) -> tuple[np.ndarray, np.ndarray]:
    """(B, F(B)) on the horizon grid of one forecast, F made non-decreasing."""
    h = horizon_grid(t, budget)
    F = np.maximum.accumulate(m.cdf(np.repeat(x[None, :], len(h), axis=0), h))
    return max(t, 1.0) * 10 ** h, F


def quantiles(B: np.ndarray, F: np.ndarray, t: float, qs) -> list[float]:
    """Steps where F reaches q·F(budget), interpolated in log steps (t where F is flat)."""
    top = F[-1]
    lb = np.log(np.concatenate([[max(t, 1.0)], B]))
    Fz = np.concatenate([[0.0], F])
    out = []
    for q in qs:
        if top <= 0:
            out.append(float(B[-1]))
            continue
        target = q * top
        j = int(np.searchsorted(Fz, target, side="left"))
        j = min(max(j, 1), len(Fz) - 1)
        f0, f1 = Fz[j - 1], Fz[j]
        w = 0.0 if f1 <= f0 else (target - f0) / (f1 - f0)
        out.append(float(np.exp(lb[j - 1] + w * (lb[j] - lb[j - 1]))))
    return out


def when(B: np.ndarray, F: np.ndarray, t: float, margin: float) -> tuple[float, float, float]:
    """(median, low, high) of F restricted to (t, budget]; the interval widened on both sides
    by ``margin`` in log steps and kept inside (t, budget]."""
    lo, med, hi = quantiles(B, F, t, (INTERVAL[0], 0.5, INTERVAL[1]))
    lo, hi = lo * math.exp(-margin), hi * math.exp(margin)
    return med, float(np.clip(lo, t + 1, B[-1])), float(np.clip(hi, t + 1, B[-1]))


# --- fitting ----------------------------------------------------------------------------------

def _weights(run: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
    """Every run weighs the same in total, however many rows it has (mean row weight 1, which
    keeps XGBoost's min_child_weight meaningful); ``extra`` multiplies per row (forecast learn)."""
    _, inv, counts = np.unique(run, return_inverse=True, return_counts=True)
    w = (1.0 / counts[inv]) * (len(run) / len(counts))
    return w * extra if extra is not None else w


def _folds(group: np.ndarray, k: int = FOLDS) -> list[np.ndarray]:
    """Deterministic grouped folds: configs in order of first appearance, dealt round-robin."""
    order = {g: i for i, g in enumerate(dict.fromkeys(group.tolist()))}
    fold = np.array([order[g] % k for g in group.tolist()])
    return [fold == i for i in range(k)]


def fit_classifier(X, h, y, w, rounds=ROUNDS):
    xgb = _xgb()
    Xh = np.concatenate([X, h.reshape(-1, 1)], axis=1)
    d = xgb.DMatrix(Xh, label=y, weight=w, missing=np.nan)
    mono = "(" + ",".join(["0"] * X.shape[1] + ["1"]) + ")"
    return xgb.train({**CLF, "monotone_constraints": mono}, d, num_boost_round=rounds)


def isotonic(raw: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.isotonic import IsotonicRegression
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(raw, y, sample_weight=w)
    return np.asarray(iso.X_thresholds_, dtype=float), np.asarray(iso.y_thresholds_, dtype=float)


def fit_threshold(X, h, t, budget, run, group, point, T, event, y, open_, rounds=ROUNDS,
                  extra: np.ndarray | None = None) -> ThresholdModel:
    """The classifier of one threshold on the open rows with a known label, its isotonic
    calibration and its interval width, both from out-of-fold predictions."""
    c = open_ & np.isfinite(y)
    if len(np.unique(y[c])) < 2:
        raise ValueError(f"the corpus has only {'positive' if c.any() and y[c][0] else 'negative'} "
                         f"rows for this threshold; a classifier needs both")
    w = np.zeros(len(y))
    w[c] = _weights(run[c], None if extra is None else extra[c])
    oof = np.full(len(y), np.nan)
    models = {}
    for i, te in enumerate(_folds(np.where(c, group, -1))):
        te &= c
        tr = c & ~te
        if not te.any() or len(np.unique(y[tr])) < 2:
            continue
        models[i] = ThresholdModel(fit_classifier(X[tr], h[tr], y[tr], w[tr], rounds), np.array([]), np.array([]))
        oof[te] = models[i].raw(X[te], h[te])
    # calibration and interval margin from the corpus's rows only: the user's runs (extra > 1,
    # forecast learn) are often one config, so their out-of-fold predictions come from a model
    # that never saw their family — that would calibrate the learned model to its own absence
    base = c if extra is None else c & (extra <= 1)
    ok = base & np.isfinite(oof)
    cx, cy = isotonic(oof[ok], y[ok], w[ok]) if ok.any() else (np.array([]), np.array([]))
    margin = _fit_margin(models, _folds(np.where(c, group, -1)), cx, cy, X, t, budget, point, T, event, base)
    return ThresholdModel(fit_classifier(X[c], h[c], y[c], w[c], rounds), cx, cy, margin)


def _fit_margin(models, folds, cx, cy, X, t, budget, point, T, event, c) -> float:
    """The margin (log steps, each side) that puts 80 % of the out-of-fold actual steps inside
    the interval (one forecast per (run, point) whose run reached θ after t and within its
    budget); 0 if there are none."""
    need = []
    for i, te in enumerate(folds):
        if i not in models:
            continue
        m = ThresholdModel(models[i].clf, cx, cy)
        te &= c & event & (T > t) & (T <= budget)
        for p in np.unique(point[te]):
            r = np.nonzero(te & (point == p))[0][0]
            B, F = distribution(m, X[r], t[r], budget[r])
            lo, hi = quantiles(B, F, t[r], INTERVAL)
            need.append(max(0.0, math.log(T[r] / hi), math.log(lo / T[r])))
    return float(np.quantile(need, 0.8)) if need else 0.0


def fit(table, names: list[str] = FEATURES, thresholds=None, rounds: int = ROUNDS,
        extra: np.ndarray | None = None) -> ForecastModel:
    """Train a ForecastModel on a groklab.forecast.dataset.Table using the columns ``names``;
    ``extra`` weighs rows (``forecast learn`` weighs the user's runs up)."""
    idx = [FEATURES.index(n) for n in names]
    X = table.X[:, idx]
    models = {}
    for th in thresholds or sorted(table.T):
        models[th] = fit_threshold(X, table.h, table.t, table.budget, table.run, table.group, table.point, table.T[th],
                                   table.event[th], table.y[th], table.open[th], rounds, extra)
    return ForecastModel(list(names), models, {"rows": int(len(table.t)),
                                               "runs": int(len(np.unique(table.run))),
                                               "ranges": ranges(table)})


def ranges(table) -> dict[str, Any]:
    """The corpus's span in what a forecast extrapolates worst: the task's size (training
    examples, classes) and the model kinds it has seen (groklab.forecast.predict.outside)."""
    from groklab.forecast.signals import SIZE
    out: dict[str, Any] = {k: [float(np.nanmin(table.size[:, i])), float(np.nanmax(table.size[:, i]))]
                           for i, k in enumerate(SIZE)}
    out["model"] = sorted({r["config"].model.arch for r in table.runs})
    return out


# --- files ------------------------------------------------------------------------------------

def save(model: ForecastModel, out: str | Path) -> Path:
    """``out/manifest.json`` plus one UBJSON file per booster; returns ``out``. Plain data only:
    loading runs no code from these files."""
    from groklab.runs.rundir import atomic_write_bytes, write_json
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries = {}
    for th, m in sorted(model.thresholds.items()):
        name = f"clf_{th:g}.ubj"
        raw = bytes(m.clf.save_raw("ubj"))
        atomic_write_bytes(out / name, raw)
        entries[f"{th:g}"] = {"clf": {"file": name, "sha256": hashlib.sha256(raw).hexdigest()},
                              "calibration": {"x": m.calib_x.tolist(), "y": m.calib_y.tolist()},
                              "margin": m.margin}
    write_json(out / "manifest.json", {"format": FORMAT, "features": model.features,
                                       "thresholds": entries, "params": {"clf": CLF, "rounds": ROUNDS},
                                       "meta": model.meta})
    return out


def load(path: str | Path) -> ForecastModel:
    """Read a model directory written by ``save``; a one-line ValueError if anything is off."""
    xgb = _xgb()
    path = Path(path)
    try:
        man = json.loads((path / "manifest.json").read_text())
        if man.get("format") != FORMAT:
            raise ValueError(f"format {man.get('format')!r}, expected {FORMAT}")
        unknown = set(man["features"]) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}")
        models = {}
        for th, e in man["thresholds"].items():
            raw = (path / e["clf"]["file"]).read_bytes()
            if hashlib.sha256(raw).hexdigest() != e["clf"]["sha256"]:
                raise ValueError(f"{e['clf']['file']} does not match its sha256 in manifest.json")
            b = xgb.Booster()
            b.load_model(bytearray(raw))
            b.set_param({"nthread": 1})
            models[float(th)] = ThresholdModel(b, np.array(e["calibration"]["x"], float),
                                               np.array(e["calibration"]["y"], float), float(e["margin"]))
    except (OSError, KeyError, TypeError, ValueError, RecursionError, xgb.core.XGBoostError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"forecast model {path}: {msg}") from None
    return ForecastModel(list(man["features"]), models, man.get("meta", {}))


_DEFAULT: ForecastModel | None = None


def shipped_dir() -> Path:
    from importlib.resources import files
    return Path(str(files("groklab.forecast") / "model"))


def default_model() -> ForecastModel:
    """The model shipped in the package (groklab/forecast/model/), loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load(shipped_dir())
    return _DEFAULT
