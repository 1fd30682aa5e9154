"""``groklab forecast evaluate CORPUS``: how well the forecast answers, on families it never saw.

Leave-one-family-out on three axes (operation; model kind, MLP vs transformer; optimiser family):
for each family, every model is trained on the corpus without it and scored on it. Scored
forecast points sit in the run's own clock, at 10 % and 25 % of its budget, and only on runs that
had not reached the threshold there.

Probability of reaching the threshold within the budget (AUROC, Brier score): the forecast
against the same learner (XGBoost classifier and AFT, blended and calibrated) on the config alone, on the weight norm
alone, on Notsawo et al.'s loss-oscillation spectrum alone, and Optuna's ``MedianPruner`` rule (a
run is kept while its best validation accuracy so far is at least the median of the training
runs' at the same step; its score is that decision, 1 or 0). The **boundary subset** holds the
runs whose config-only probability lies in [0.2, 0.8], where the config leaves the outcome open.

Time to grok (runs that reach the threshold after the forecast point): median |log(predicted /
actual)| and the median lead (actual − forecast step), against "twice the current step" and the
median time of the training runs at the same point; Harrell's concordance index (lifelines) on all
open runs, censored ones included; and how often the 80 % interval holds the actual step.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from groklab.forecast import model as M
from groklab.forecast.dataset import Table, build_table
from groklab.forecast.signals import CONFIG, FEATURES, NORM, SPECTRAL

AXES = ("op", "model", "optim")
AT = (0.1, 0.25)
CLOCK = ["t_frac", "log_t", "log_budget_left"]
BASELINES = {"config only": CONFIG + CLOCK, "weight norm": NORM + CLOCK, "spectral (Notsawo)": SPECTRAL + CLOCK}
BOUNDARY = (0.2, 0.8)


def median_pruner_keep(table: Table, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Optuna MedianPruner's decision at each test row: keep (1) when the run's best validation
    accuracy so far is >= the median of the training runs' best at the same forecast point."""
    best = table.X[:, FEATURES.index("val_best_above_chance")]
    keep = np.zeros(test.sum())
    for i, (pt, b) in enumerate(zip(table.point[test], best[test])):
        ref = best[train & (table.point == pt)]
        keep[i] = float(b >= np.median(ref)) if len(ref) else 1.0
    return keep


def _fold(table: Table, axis: str, fam: str, ths, rounds) -> dict[str, Any]:
    """Train on every family but ``fam`` of ``axis``; predict the held-out rows at AT."""
    train = table.fam[axis] != fam
    test = (~train) & np.isin(table.point, AT)
    tr = table.take(train)
    out: dict[str, Any] = {"rows": test}
    full = M.fit(tr, FEATURES, ths, rounds)
    Xt = table.X[test]
    for th in ths:
        tt, bt = table.t[test], table.budget[test]
        r = out[th] = {"p": {"forecast": full.thresholds[th].p(Xt, tt, bt)}}
        for name, cols in BASELINES.items():
            bm = M.fit(tr, cols, [th], rounds)
            r["p"][name] = bm.thresholds[th].p(bm.columns(Xt), tt, bt)
        r["p"]["median pruner"] = median_pruner_keep(table, train, test)
        r["when"] = np.stack(full.thresholds[th].when(Xt, table.t[test], table.budget[test]), axis=1)
        ev = tr.event[th] & tr.open[th]
        r["median_T"] = np.array([np.median(tr.T[th][ev & (tr.point == pt)]) if (ev & (tr.point == pt)).any()
                                  else np.nan for pt in table.point[test]])
    return out


def evaluate(runs: list[dict], thresholds=(0.99, 0.9), axes=AXES, rounds: int = M.ROUNDS,
             log=None) -> dict[str, Any]:
    """Leave-one-family-out on each axis; returns {"axes": {axis: {threshold: {point: metrics}}},
    "folds": [...], "pooled": predictions per axis for the calibration plot}."""
    table = build_table(runs)
    res: dict[str, Any] = {"runs": len(runs), "rows": int(len(table.t)), "axes": {}, "folds": [],
                           "families": {a: sorted(set(table.fam[a].tolist())) for a in axes}}
    pooled: dict[str, Any] = {}
    for axis in axes:
        preds: dict[float, dict[str, list]] = {th: {} for th in thresholds}
        rows = []
        for fam in res["families"][axis]:
            if (table.fam[axis] != fam).sum() == 0:
                continue
            if log:
                print(f"  {axis}: leaving out {fam} ...", file=log, flush=True)
            try:
                f = _fold(table, axis, fam, thresholds, rounds)
            except ValueError as e:  # a training side with one class only
                res["folds"].append({"axis": axis, "family": fam, "skipped": str(e)})
                continue
            rows.append(np.nonzero(f["rows"])[0])
            for th in thresholds:
                for k, v in f[th]["p"].items():
                    preds[th].setdefault(k, []).append(v)
                preds[th].setdefault("when", []).append(f[th]["when"])
                preds[th].setdefault("median_T", []).append(f[th]["median_T"])
            res["folds"].append({"axis": axis, "family": fam, "test_rows": int(f["rows"].sum()),
                                 **{f"{th:g}": score_probs(table, f["rows"], th, f[th]["p"], pt=0.25)
                                    for th in thresholds}})
        if not rows:
            continue
        idx = np.concatenate(rows)
        res["axes"][axis] = {}
        pooled[axis] = {"idx": idx}
        for th in thresholds:
            P = {k: np.concatenate(v) for k, v in preds[th].items()}
            pooled[axis][th] = P
            res["axes"][axis][f"{th:g}"] = {f"{pt:g}": score_all(table, idx, th, P, pt) for pt in AT}
    res["pooled"] = pooled
    res["table"] = table
    return res


def _auroc(y, s):
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else math.nan


def score_probs(table: Table, rows_mask: np.ndarray, th: float, P: dict, pt: float) -> dict:
    """AUROC per predictor on the held-out rows at point ``pt`` (the per-fold table)."""
    idx = np.nonzero(rows_mask)[0]
    sel = (table.point[idx] == pt) & table.open[th][idx] & np.isfinite(table.y[th][idx])
    y = table.y[th][idx][sel]
    return {"n": int(sel.sum()), "positives": int(y.sum()),
            **{k: _auroc(y, v[sel]) for k, v in P.items()}}


def score_all(table: Table, idx: np.ndarray, th: float, P: dict, pt: float) -> dict[str, Any]:
    """Every metric at forecast point ``pt`` over the pooled held-out rows ``idx``."""
    from lifelines.utils import concordance_index
    at = (table.point[idx] == pt) & table.open[th][idx]
    cls = at & np.isfinite(table.y[th][idx])
    y = table.y[th][idx][cls]
    probs = [k for k in P if k not in ("when", "median_T")]
    cfg_p = P["config only"][cls]
    boundary = (cfg_p >= BOUNDARY[0]) & (cfg_p <= BOUNDARY[1])
    out: dict[str, Any] = {"n": int(cls.sum()), "positives": int(y.sum()),
                           "boundary_n": int(boundary.sum()), "boundary_positives": int(y[boundary].sum())}
    for k in probs:
        p = P[k][cls]
        out[k] = {"auroc": _auroc(y, p), "brier": float(np.mean((p - y) ** 2)),
                  "auroc_boundary": _auroc(y[boundary], p[boundary]),
                  "brier_boundary": float(np.mean((p[boundary] - y[boundary]) ** 2)) if boundary.any() else math.nan}
    t = table.t[idx][at]
    T, ev = table.T[th][idx][at], table.event[th][idx][at]
    pred, lo, hi = P["when"][at].T
    e = ev & (T > t)
    timing = {"n_events": int(e.sum()), "n_censored": int((~ev).sum())}
    if e.any():
        timing["median_lead"] = float(np.median(T[e] - t[e]))
        timing["lead_frac_budget"] = float(np.median((T[e] - t[e]) / table.budget[idx][at][e]))
        for name, guess in (("forecast", pred), ("twice the current step", 2 * t),
                            ("training median", P["median_T"][at])):
            ok = e & np.isfinite(guess)
            timing[name] = {"median_abs_log_ratio": float(np.median(np.abs(np.log(guess[ok] / T[ok]))))
                            if ok.any() else math.nan,
                            "c_index": float(concordance_index(T, guess, ev)) if np.isfinite(guess).all()
                            and len(T) > 1 else math.nan}
        timing["interval_coverage"] = float(np.mean((lo[e] <= T[e]) & (T[e] <= hi[e])))
    out["time"] = timing
    return out


def calibration_figure(res: dict, th: float, pt: float, path) -> None:
    """Reliability diagrams of the forecast and the config-only baseline, one panel per axis."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    table, axes = res["table"], list(res["pooled"])
    fig, axs = plt.subplots(1, len(axes), figsize=(4 * len(axes), 4), squeeze=False)
    for ax, axis in zip(axs[0], axes):
        pool = res["pooled"][axis]
        idx = pool["idx"]
        sel = (table.point[idx] == pt) & table.open[th][idx] & np.isfinite(table.y[th][idx])
        y = table.y[th][idx][sel]
        for name, style in (("forecast", "o-"), ("config only", "s--")):
            p = pool[th][name][sel]
            frac, mean = calibration_curve(y, p, n_bins=8, strategy="quantile")
            ax.plot(mean, frac, style, label=name)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.set(title=f"held out by {axis} (n={int(sel.sum())})", xlabel="predicted probability",
               ylabel="fraction that reached it", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"P(val acc ≥ {th:g} within budget), forecast at {100 * pt:.0f} % of the budget")
    fig.tight_layout()
    from groklab.report.plots import save_figure
    save_figure(fig, path)
    plt.close(fig)


def markdown(res: dict) -> str:
    """The evaluation tables (docs/forecast.md quotes them)."""
    lines = [f"{res['runs']} runs, {res['rows']} forecast rows; families: " +
             "; ".join(f"{a}: {', '.join(v)}" for a, v in res["families"].items()), ""]
    for axis, by_th in res["axes"].items():
        for th, by_pt in by_th.items():
            lines += [f"### held out by {axis}, P(val ≥ {th} within budget)", "",
                      "| at | n (pos) | predictor | AUROC | Brier | boundary n (pos) | AUROC boundary | Brier boundary |",
                      "|---|---|---|---|---|---|---|---|"]
            for pt, m in by_pt.items():
                for k in ("forecast", *BASELINES, "median pruner"):
                    v = m[k]
                    lines.append(f"| {float(pt):.0%} | {m['n']} ({m['positives']}) | {k} | {v['auroc']:.3f} | "
                                 f"{v['brier']:.3f} | {m['boundary_n']} ({m['boundary_positives']}) | "
                                 f"{v['auroc_boundary']:.3f} | {v['brier_boundary']:.3f} |")
            lines += ["", f"time to val ≥ {th} (runs that reach it after the forecast point):", "",
                      "| at | events | censored | median lead (× budget) | predictor | median abs log ratio | c-index | 80 % interval coverage |",
                      "|---|---|---|---|---|---|---|---|"]
            for pt, m in by_pt.items():
                tm = m["time"]
                if "median_lead" not in tm:
                    continue
                for k in ("forecast", "twice the current step", "training median"):
                    cov = f"{tm['interval_coverage']:.2f}" if k == "forecast" else ""
                    lines.append(f"| {float(pt):.0%} | {tm['n_events']} | {tm['n_censored']} | "
                                 f"{tm['median_lead']:.0f} ({tm['lead_frac_budget']:.2f}) | {k} | "
                                 f"{tm[k]['median_abs_log_ratio']:.3f} | {tm[k]['c_index']:.3f} | {cov} |")
            lines.append("")
    return "\n".join(lines)
