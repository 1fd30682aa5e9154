"""The forecast model: a calibrated classifier and a censoring-aware survival model per threshold.

For each threshold θ (0.9 and 0.99 of validation accuracy):

* **P(reach θ within the budget)** — the mean of two estimates, gradient-boosted trees (XGBoost
  ``binary:logistic``) on the feature vector of groklab.forecast.signals and the survival model's
  P(T ≤ budget | T > t) below, then isotonic calibration fitted on out-of-fold predictions
  (5 folds grouped by config, so the seeds of one config never straddle a fold). The
  calibration is stored as its knots and applied with ``numpy.interp``.
* **When** — XGBoost's accelerated failure time objective (``survival:aft``, normal errors on
  log time; Barnwal et al. 2022, arXiv 2006.04920) on the ratio ``T_θ / t`` of the time to grok
  to the forecast step: runs that never reached θ enter as right-censored intervals
  ``[stopped / t, ∞)``, never as a time. The predicted step is the median of that log-normal
  truncated to (t, budget]: *when*, given that it happens within the budget (the classifier
  says how likely that is). The 80 % interval is that median times the 10th and 90th
  percentiles of the out-of-fold ratio actual/predicted on runs that grokked within the budget.

Why XGBoost: one well-kept library gives both objectives, handles missing features (NaN) natively
and saves to a documented non-pickle format (UBJSON) that loads without running any code; its
``xgboost-cpu`` wheel is 5 MB where the default one pulls a GPU runtime. lifelines' AFT models
are linear in the features, scikit-survival's forests save only by pickle.

Everything is deterministic (one thread, fixed seeds, unshuffled folds), so ``groklab forecast
build`` on the same corpus rebuilds the shipped files bit for bit.
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

FORMAT = 1
ROUNDS = 300
BASE = {"eta": 0.05, "max_depth": 3, "min_child_weight": 2.0, "subsample": 0.8,
        "colsample_bytree": 0.8, "lambda": 1.0, "nthread": 1, "seed": 0, "tree_method": "hist"}
CLF = {**BASE, "objective": "binary:logistic", "eval_metric": "logloss"}
SIGMA = 0.3             # the AFT's σ of log time (chosen on the corpus, docs/forecast.md)
AFT = {**BASE, "objective": "survival:aft", "aft_loss_distribution": "normal",
       "aft_loss_distribution_scale": SIGMA, "eval_metric": "aft-nloglik"}
FOLDS = 5
INTERVAL = (0.1, 0.9)   # the 80 % interval


def _xgb():
    try:
        import xgboost
    except ImportError:  # pragma: no cover - a core dependency
        raise ImportError("the forecast needs xgboost: pip install xgboost-cpu") from None
    return xgboost


@dataclass
class ThresholdModel:
    clf: Any                          # xgboost.Booster, P(reach within budget), uncalibrated
    calib_x: np.ndarray               # isotonic knots: raw probability -> calibrated
    calib_y: np.ndarray
    aft: Any                          # xgboost.Booster, median of T/t
    q_lo: float                       # log(actual/predicted) quantiles on out-of-fold events
    q_hi: float
    sigma: float = SIGMA

    def p(self, X: np.ndarray, t, budget) -> np.ndarray:
        """Calibrated P(reach θ within ``budget``) at forecast step ``t``: the mean of the
        classifier's probability and the AFT's P(T ≤ budget | T > t), through the isotonic map."""
        raw = self.clf.inplace_predict(X, missing=np.nan)
        if self.aft is not None:
            t = np.maximum(np.asarray(t, float), 1.0)
            mu = np.log(t * self.ratio(X))
            from scipy.special import ndtr
            raw = 0.5 * (raw + ndtr((np.log(np.maximum(np.asarray(budget, float), t)) - mu) / self.sigma))
        return np.interp(raw, self.calib_x, self.calib_y) if len(self.calib_x) else raw

    def ratio(self, X: np.ndarray) -> np.ndarray:
        """Predicted median T/t (>= 1) of the AFT model, not truncated."""
        return np.maximum(self.aft.inplace_predict(X, missing=np.nan), 1.0)

    def when(self, X: np.ndarray, t: np.ndarray, budget: np.ndarray) -> tuple[np.ndarray, ...]:
        """(median, low, high) step, given that θ is reached between ``t`` and ``budget``: the
        AFT's log-normal truncated to (t, budget], its median, and the 80 % interval from the
        out-of-fold residuals around that median, kept inside (t, budget]."""
        t = np.maximum(np.asarray(t, float), 1.0)        # a forecast at step 0 is one at step 1
        budget = np.maximum(np.asarray(budget, float), t + 1)
        med = truncated_median(np.log(t * self.ratio(X)), self.sigma, np.log(t), np.log(budget))
        lo = np.clip(med * math.exp(self.q_lo), t + 1, budget)
        hi = np.clip(med * math.exp(self.q_hi), t + 1, budget)
        return med, np.minimum(lo, med), np.maximum(hi, med)


def truncated_median(mu: np.ndarray, sigma: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """exp of the median of N(mu, sigma²) truncated to [lo, hi] (all in log steps)."""
    from scipy.special import ndtr, ndtri
    a, b = ndtr((lo - mu) / sigma), ndtr((hi - mu) / sigma)
    q = np.clip(a + 0.5 * (b - a), 1e-12, 1 - 1e-12)
    return np.exp(np.clip(mu + sigma * ndtri(q), lo, hi))


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


def _weights(run: np.ndarray) -> np.ndarray:
    """Every run weighs the same in total, however many forecast points it has (scaled so the
    mean row weight is 1, which keeps XGBoost's min_child_weight meaningful)."""
    _, inv, counts = np.unique(run, return_inverse=True, return_counts=True)
    return (1.0 / counts[inv]) * (len(run) / len(counts))


def _folds(group: np.ndarray, k: int = FOLDS) -> list[np.ndarray]:
    """Deterministic grouped folds: configs in order of first appearance, dealt round-robin."""
    order = {g: i for i, g in enumerate(dict.fromkeys(group.tolist()))}
    fold = np.array([order[g] % k for g in group.tolist()])
    return [fold == i for i in range(k)]


def aft_bounds(T: np.ndarray, event: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AFT labels on the ratio T/t: an event is the interval [T/t, T/t]; a censored run is
    [stopped/t, ∞) — it grokked later or never, and is never given a time."""
    lower = np.maximum(T / t, 1.0)
    return lower, np.where(event, lower, np.inf)


def fit_classifier(X, y, w, rounds=ROUNDS):
    xgb = _xgb()
    d = xgb.DMatrix(X, label=y, weight=w, missing=np.nan)
    return xgb.train(CLF, d, num_boost_round=rounds)


def fit_aft(X, lower, upper, w, rounds=ROUNDS):
    xgb = _xgb()
    d = xgb.DMatrix(X, weight=w, missing=np.nan)
    d.set_float_info("label_lower_bound", lower)
    d.set_float_info("label_upper_bound", upper)
    return xgb.train(AFT, d, num_boost_round=rounds)


def isotonic(raw: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.isotonic import IsotonicRegression
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(raw, y, sample_weight=w)
    return np.asarray(iso.X_thresholds_, dtype=float), np.asarray(iso.y_thresholds_, dtype=float)


def fit_threshold(X, t, run, group, T, event, y, open_, budget, rounds=ROUNDS, time=True) -> ThresholdModel:
    """Both models of one threshold from the rows still open at their forecast point.

    Out of fold (5 folds grouped by config over the open rows): the classifier's raw
    probability, the AFT's P(T ≤ budget | T > t), and the AFT's truncated median. Their mean is
    calibrated by isotonic regression; the residuals around the median give the interval.
    With ``time`` False only the classifier is fitted and calibrated (the aft fields are None)."""
    c = open_ & np.isfinite(y)                       # rows with a known outcome: the classifier's
    a = open_ & (T > 0)                              # rows the AFT learns from (censored included)
    if len(np.unique(y[c])) < 2:
        raise ValueError(f"the corpus has only {'positive' if c.any() and y[c][0] else 'negative'} "
                         f"runs for this threshold; a classifier needs both")
    wc, wa = np.zeros(len(y)), np.zeros(len(y))
    wc[c], wa[a] = _weights(run[c]), _weights(run[a])
    lower, upper = aft_bounds(np.where(a, T, 1.0), event & a, np.maximum(t, 1))
    raw = np.full(len(y), np.nan)
    med = np.full(len(y), np.nan)
    for te in _folds(np.where(open_, group, -1)):
        te &= open_
        tc, ta = c & ~te, a & ~te
        if not te.any() or len(np.unique(y[tc])) < 2:
            continue
        m = ThresholdModel(fit_classifier(X[tc], y[tc], wc[tc], rounds), np.array([]), np.array([]),
                           fit_aft(X[ta], lower[ta], upper[ta], wa[ta], rounds) if time else None, 0.0, 0.0)
        raw[te] = m.p(X[te], t[te], budget[te])
        if time:
            med[te] = m.when(X[te], t[te], budget[te])[0]
    ok = c & np.isfinite(raw)
    # one config only: no out-of-fold prediction exists, so the mean is left uncalibrated
    cx, cy = isotonic(raw[ok], y[ok], wc[ok]) if ok.any() else (np.array([]), np.array([]))
    clf = fit_classifier(X[c], y[c], wc[c], rounds)
    if not time:
        return ThresholdModel(clf, cx, cy, None, math.nan, math.nan)
    inside = a & event & (T <= budget) & np.isfinite(med)
    resid = np.log(T[inside] / med[inside])
    q_lo, q_hi = np.quantile(resid, INTERVAL) if len(resid) else (math.log(0.5), math.log(2.0))
    return ThresholdModel(clf, cx, cy, fit_aft(X[a], lower[a], upper[a], wa[a], rounds), float(q_lo), float(q_hi))


def fit(table, names: list[str] = FEATURES, thresholds=None, rounds: int = ROUNDS,
        time: bool = True) -> ForecastModel:
    """Train a ForecastModel on a groklab.forecast.dataset.Table using the columns ``names``."""
    idx = [FEATURES.index(n) for n in names]
    X = table.X[:, idx]
    models = {}
    for th in thresholds or sorted(table.T):
        models[th] = fit_threshold(X, table.t, table.run, table.group, table.T[th], table.event[th],
                                   table.y[th], table.open[th], table.budget, rounds, time)
    return ForecastModel(list(names), models, {"rows": int(len(table.t)),
                                               "runs": int(len(np.unique(table.run))),
                                               "ranges": ranges(table)})


RANGE_KEYS = ("log_n_train", "log_classes")


def ranges(table) -> dict[str, list[float]]:
    """The span of the corpus in the settings a forecast extrapolates worst: the task's size
    (training examples, classes) and the budget (groklab.forecast.predict.outside). Learning
    rate and weight decay are not checked: on the wd_lr diagram the forecast pruned runs at
    learning rates 4× below the corpus's lowest and kept every label but one (docs/forecast.md)."""
    from groklab.forecast.signals import FEATURES as ALL
    out = {k: [float(np.nanmin(table.X[:, ALL.index(k)])), float(np.nanmax(table.X[:, ALL.index(k)]))]
           for k in RANGE_KEYS}
    out["budget"] = [float(table.budget.min()), float(table.budget.max())]
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
        files = {}
        for kind in ("clf", "aft"):
            name = f"{kind}_{th:g}.ubj"
            raw = bytes(getattr(m, kind).save_raw("ubj"))
            atomic_write_bytes(out / name, raw)
            files[kind] = {"file": name, "sha256": hashlib.sha256(raw).hexdigest()}
        entries[f"{th:g}"] = {**files, "calibration": {"x": m.calib_x.tolist(), "y": m.calib_y.tolist()},
                              "interval_log_ratio": [m.q_lo, m.q_hi], "sigma": m.sigma}
    write_json(out / "manifest.json", {"format": FORMAT, "features": model.features,
                                       "thresholds": entries, "params": {"clf": CLF, "aft": AFT,
                                                                         "rounds": ROUNDS},
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
            boosters = {}
            for kind in ("clf", "aft"):
                raw = (path / e[kind]["file"]).read_bytes()
                if hashlib.sha256(raw).hexdigest() != e[kind]["sha256"]:
                    raise ValueError(f"{e[kind]['file']} does not match its sha256 in manifest.json")
                b = xgb.Booster()
                b.load_model(bytearray(raw))
                b.set_param({"nthread": 1})
                boosters[kind] = b
            lo, hi = e["interval_log_ratio"]
            models[float(th)] = ThresholdModel(boosters["clf"], np.array(e["calibration"]["x"], float),
                                               np.array(e["calibration"]["y"], float), boosters["aft"],
                                               float(lo), float(hi), float(e["sigma"]))
    except (OSError, KeyError, TypeError, ValueError, xgb.core.XGBoostError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"forecast model {path}: {msg}") from None
    return ForecastModel(list(man["features"]), models, man.get("meta", {}))


_DEFAULT: ForecastModel | None = None


def default_model() -> ForecastModel:
    """The model shipped in the package (groklab/forecast/model/), loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        from importlib.resources import files
        _DEFAULT = load(Path(str(files("groklab.forecast") / "model")))
    return _DEFAULT
