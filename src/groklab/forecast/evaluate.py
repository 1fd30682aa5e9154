"""``groklab forecast evaluate CORPUS``: how well the forecast answers on runs it never saw.

Held-out axes — for each, the model is trained without the held-out runs and scored on them:

* **family**: leave one family out on the operation, the model kind (MLP, 1- and 2-layer
  transformer, PAIR's MLP) and the optimiser family; predictions pooled per axis;
* **scale**: trained on modular runs with p ≤ 59 and the tasks without a modulus, scored on
  p ≥ 97;
* **budget**: the configs dealt into two halves; each half, with every run cut at ``SHORT`` =
  5,000 steps (what happened later is censored away: no label, no forecast point beyond it),
  trains the model scored on the other half's runs whose budget is longer, forecast at
  fractions of their own budgets (so no run is on both sides, and no training label lies
  beyond 5,000 steps).

Each held-out run is forecast at 10 % and 25 % of its own budget (``AT``), if θ is still open
there, with its budget as the horizon. Scored: AUROC and Brier score of P(reach θ within the
budget) (a run stopped before its budget without reaching θ has no label); for runs that reached
θ after the forecast point and within the budget, the median |ln(predicted / actual)| of the
step, the median lead (actual − forecast step) as a fraction of the budget, and how often the
80 % interval held it. Baselines, all fitted on the same training side: **config only** (the same
learner on the config features and the horizon), **twice the step** (2t), the **training
median** (t × the median T/t of the training runs that reached θ after a forecast point), and the
**first-passage law** of Truong et al. 2026 (arXiv 2605.18845, preprint): T − T_mem =
(a·ln V_mem + b)/(ηλ), a and b fitted by least squares on the training runs, defined for runs
that have memorised by t and have decoupled weight decay.

``learning_curve``: the forecast for a held-out family after 5, 10, 20 of its runs are added to
the training side (groklab forecast learn), against the model without them, on the rest.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from groklab.forecast import model as M
from groklab.forecast.dataset import build_table, families, time_label, within_budget
from groklab.forecast.signals import CONFIG, FEATURES, decay_rate, history, mem_step

FAMILY_AXES = ("op", "model", "optim")
AT = (0.1, 0.25)
SHORT = 5000
LEARN_K = (5, 10, 20)


def cut(run: dict, horizon: int) -> dict:
    """The run as if its budget had been ``horizon``: records up to it, θ reached later censored."""
    recs = [r for r in run["records"] if r["step"] <= horizon]
    s = dict(run["summary"])
    gen = {k: v for k, v in (s.get("generalized_at") or {}).items() if v is not None and v <= horizon}
    if recs and recs[-1]["step"] < int(s.get("steps_done") or 0):
        s["status"] = "completed"
    s.update(generalized_at=gen, steps_done=recs[-1]["step"] if recs else 0)
    cfg = run["config"].model_copy(deep=True)
    cfg.train.steps = min(int(cfg.train.steps), horizon)
    return {**run, "records": recs, "summary": s, "config": cfg}


def memorised(run: dict, t: int | None = None) -> tuple[float, float, float] | None:
    """(T_mem, ln V_mem, ηλ) of a run's history up to ``t``: when train accuracy reached 0.9, the
    log weight norm there, the decay rate; None without memorisation, a norm or decoupled decay."""
    rate = decay_rate(run["config"])
    h = history(run["records"], t)
    tm = mem_step(h)
    if tm is None or not math.isfinite(rate):
        return None
    v = h["weight_norm"][np.searchsorted(h["step"], tm)]
    return (tm, math.log(v), rate) if np.isfinite(v) and v > 0 else None


def first_passage_fit(runs: list[dict], th: float) -> tuple[float, float] | None:
    """(a, b) of (T_θ − T_mem)·ηλ = a·ln V_mem + b over the runs that reached θ."""
    xs, ys = [], []
    for r in runs:
        T, ev = time_label(r["summary"], th)
        m = memorised(r) if ev else None
        if m is not None and T > m[0]:
            xs.append(m[1])
            ys.append((T - m[0]) * m[2])
    if len(xs) < 3:
        return None
    a, b = np.polyfit(xs, ys, 1)
    return float(a), float(b)


def first_passage_predict(run: dict, t: int, ab) -> float:
    m = memorised(run, t) if ab is not None else None
    if m is None:
        return math.nan
    tm, log_v, rate = m
    return max(tm + max(ab[0] * log_v + ab[1], 0.0) / rate, t + 1.0)


def forecast_points(runs: list[dict], th: float, at: float) -> list[tuple[int, int]]:
    """(run index, forecast step) of every run still open at ``at`` × its budget."""
    out = []
    for i, r in enumerate(runs):
        steps = [x["step"] for x in r["records"] if x["step"] <= at * int(r["config"].train.steps)]
        if not steps or steps[-1] <= 0:
            continue
        T, ev = time_label(r["summary"], th)
        if ev and T <= steps[-1]:
            continue
        out.append((i, steps[-1]))
    return out


def predict(model, runs: list[dict], pts: list[tuple[int, int]], th: float) -> dict[str, np.ndarray]:
    """P within the budget, and (median, low, high), of ``model`` at each point."""
    from groklab.forecast.predict import forecast
    p, med, lo, hi = [], [], [], []
    for i, t in pts:
        r = runs[i]
        fc = forecast(r["records"], config=r["config"], at=t, model=model, explain=False)
        tg = fc.targets[f"{th:g}"]
        p.append(tg.p)
        med.append(tg.step or math.nan)
        lo.append(tg.low or math.nan)
        hi.append(tg.high or math.nan)
    return {"p": np.array(p), "med": np.array(med, float), "lo": np.array(lo, float), "hi": np.array(hi, float)}


def _auroc(y, s):
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else math.nan


def score(runs, pts, th, preds: dict[str, dict], guesses: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every metric of one held-out set at one forecast fraction."""
    lab = np.array([within_budget(runs[i]["summary"], th, int(runs[i]["config"].train.steps))
                    for i, _ in pts], dtype=object)
    known = np.array([v is not None for v in lab])
    y = np.array([float(v) for v in lab[known]])
    t = np.array([t for _, t in pts], float)
    T = np.array([time_label(runs[i]["summary"], th)[0] for i, _ in pts])
    budget = np.array([int(runs[i]["config"].train.steps) for i, _ in pts], float)
    ev = np.array([bool(v) for v in lab]) & known
    out: dict[str, Any] = {"n": int(known.sum()), "positives": int(y.sum()), "events": int(ev.sum())}
    for k, pr in preds.items():
        p = pr["p"][known]
        out[k] = {"auroc": _auroc(y, p), "brier": float(np.mean((p - y) ** 2)) if len(y) else math.nan}
    if ev.any():
        out["lead"] = float(np.median((T[ev] - t[ev]) / budget[ev]))
        f = preds["forecast"]
        out["coverage"] = float(np.mean((f["lo"][ev] <= T[ev]) & (T[ev] <= f["hi"][ev])))
        for k, g in {"forecast": f["med"], **guesses}.items():
            ok = ev & np.isfinite(g)
            out.setdefault("time", {})[k] = {
                "n": int(ok.sum()),
                "median_abs_log_ratio": float(np.median(np.abs(np.log(g[ok] / T[ok])))) if ok.any() else math.nan}
    return out


def _train_median(train_table, th) -> float:
    e = train_table.event[th] & train_table.open[th] & (train_table.T[th] > train_table.t)
    ratio = train_table.T[th][e] / train_table.t[e]
    return float(np.median(ratio)) if len(ratio) else 2.0


def held_out(train_runs, test_runs, thresholds, rounds, at=AT) -> dict[str, Any]:
    """Fit on ``train_runs``, score on ``test_runs``: {threshold: {at: metrics}}."""
    table = build_table(train_runs)
    full = M.fit(table, FEATURES, thresholds, rounds)
    cfg_only = M.fit(table, CONFIG, thresholds, rounds)
    out = {}
    for th in thresholds:
        ab = first_passage_fit(train_runs, th)
        ratio = _train_median(table, th)
        out[f"{th:g}"] = {}
        for a in at:
            pts = forecast_points(test_runs, th, a)
            if not pts:
                continue
            t = np.array([t for _, t in pts], float)
            preds = {"forecast": predict(full, test_runs, pts, th),
                     "config only": predict(cfg_only, test_runs, pts, th)}
            guesses = {"twice the step": 2 * t, "training median": ratio * t,
                       "first-passage law": np.array([first_passage_predict(test_runs[i], s, ab) for i, s in pts])}
            out[f"{th:g}"][f"{a:g}"] = score(test_runs, pts, th, preds, guesses)
    return out


def splits(runs: list[dict]) -> dict[str, list[tuple[str, list[int], list[int]]]]:
    """axis -> [(name, train indices, test indices)] for every held-out axis."""
    fams = [families(r["config"]) for r in runs]
    out: dict[str, list] = {}
    for axis in FAMILY_AXES:
        names = sorted({f[axis] for f in fams})
        out[axis] = [(n, [i for i, f in enumerate(fams) if f[axis] != n],
                      [i for i, f in enumerate(fams) if f[axis] == n])
                     for n in names if 0 < sum(f[axis] == n for f in fams) < len(runs)]
    out["scale"] = [("p ≥ 97", [i for i, f in enumerate(fams) if f["scale"] in ("small", "other")],
                     [i for i, f in enumerate(fams) if f["scale"] == "large"])]
    # by budget: the configs dealt into two halves; each half, cut at SHORT steps, trains the
    # model that forecasts the other half's runs with budgets beyond SHORT (no run on both sides)
    from groklab.forecast.dataset import config_key
    keys = list(dict.fromkeys(config_key(r["config"]) for r in runs))
    half = [keys.index(config_key(r["config"])) % 2 for r in runs]
    out["budget"] = [(f"budget > {SHORT}, half {h}", [i for i in range(len(runs)) if half[i] != h],
                      [i for i, r in enumerate(runs) if half[i] == h and int(r["config"].train.steps) > SHORT])
                     for h in (0, 1)]
    return out


def evaluate(runs: list[dict], thresholds=(0.99, 0.9), axes=None, rounds: int = 100, log=None) -> dict[str, Any]:
    """{"axes": {axis: {threshold: {at: metrics}}}, "folds": [...]}; each axis's held-out runs
    are pooled (every run is scored by the one fold that held it out)."""
    res: dict[str, Any] = {"runs": len(runs), "axes": {}, "folds": []}
    for axis, folds in splits(runs).items():
        if axes and axis not in axes:
            continue
        pooled_runs = []
        for name, tr, te in folds:
            if not te or not tr:
                continue
            if log:
                print(f"  {axis}: holding out {name} ({len(te)} runs) ...", file=log, flush=True)
            train = [runs[i] if axis != "budget" else cut(runs[i], SHORT) for i in tr]
            try:
                r = held_out(train, [runs[i] for i in te], thresholds, rounds)
            except ValueError as e:
                res["folds"].append({"axis": axis, "family": name, "skipped": str(e)})
                continue
            res["folds"].append({"axis": axis, "family": name, "runs": len(te), **r})
            pooled_runs.append(r)
        res["axes"][axis] = pool(pooled_runs, [f[2] for f in folds])
    return res


def pool(parts: list[dict], sizes) -> dict:
    """Pool fold metrics into one per axis: counts summed, rates and medians weighted by the
    fold's scored runs (an approximation of the pooled median, stated in the table's heading)."""
    out: dict[str, Any] = {}
    for part in parts:
        for th, by_at in part.items():
            for a, m in by_at.items():
                out.setdefault(th, {}).setdefault(a, []).append(m)
    res: dict[str, Any] = {}
    for th, by_at in out.items():
        for a, ms in by_at.items():
            res.setdefault(th, {})[a] = _merge(ms)
    return res


def _merge(ms: list[dict]) -> dict:
    def wmean(vals, ws):
        ok = [(v, w) for v, w in zip(vals, ws) if v is not None and math.isfinite(v) and w > 0]
        return sum(v * w for v, w in ok) / sum(w for _, w in ok) if ok else math.nan
    out = {k: sum(m[k] for m in ms) for k in ("n", "positives", "events")}
    for k in ("forecast", "config only"):
        out[k] = {s: wmean([m[k][s] for m in ms], [m["n"] for m in ms]) for s in ("auroc", "brier")}
    evs = [m.get("events", 0) for m in ms]
    out["lead"] = wmean([m.get("lead") for m in ms], evs)
    out["coverage"] = wmean([m.get("coverage") for m in ms], evs)
    names = {k for m in ms for k in m.get("time", {})}
    out["time"] = {}
    for k in sorted(names):
        have = [m["time"][k] for m in ms if k in m.get("time", {})]
        ratio = wmean([h["median_abs_log_ratio"] for h in have], [h["n"] for h in have])
        out["time"][k] = {"median_abs_log_ratio": ratio, "n": sum(h["n"] for h in have)}
    return out


def learning_curve(runs: list[dict], axis: str, family: str, ks=LEARN_K, weight: float = 5.0,
                   rounds: int = 100, thresholds=(0.99, 0.9), seed: int = 0, log=None) -> dict[str, Any]:
    """The held-out family's runs in a fixed random order: the first max(ks) are the user's
    finished runs, the rest are scored; the model without them against the model with the
    first k of them added (each weighing ``weight`` corpus runs)."""
    fams = [families(r["config"])[axis] for r in runs]
    base = [r for r, f in zip(runs, fams) if f != family]
    mine = [r for r, f in zip(runs, fams) if f == family]
    order = np.random.default_rng(seed).permutation(len(mine))
    mine = [mine[i] for i in order]
    kmax = max(ks)
    if len(mine) <= kmax:
        raise ValueError(f"{axis} = {family}: {len(mine)} runs, need more than {kmax}")
    test = mine[kmax:]
    out = {"family": f"{axis} = {family}", "test_runs": len(test), "steps": {}}
    for k in (0, *ks):
        if log:
            print(f"  learn: {family} with {k} of its runs ...", file=log, flush=True)
        train = base + mine[:k]
        table = build_table(train)
        extra = np.array([1.0] * len(base) + [weight] * k)[table.run]
        m = M.fit(table, FEATURES, thresholds, rounds, extra=extra)
        res = {}
        for th in thresholds:
            res[f"{th:g}"] = {}
            for a in AT:
                pts = forecast_points(test, th, a)
                if pts:
                    res[f"{th:g}"][f"{a:g}"] = score(test, pts, th, {"forecast": predict(m, test, pts, th)}, {})
        out["steps"][k] = res
    return out


def markdown(res: dict) -> str:
    """The evaluation tables (docs/forecast.md quotes them)."""
    lines = [f"{res['runs']} runs. Per axis, the held-out runs of every fold pooled (rates and medians "
             "weighted by the folds' counts).", ""]
    lines += ["| axis | θ | at | n (reached) | AUROC forecast | AUROC config only | Brier | events | lead (× budget) "
              "| time: forecast | twice the step | training median | first-passage (n) | 80 % coverage |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for axis, by_th in res["axes"].items():
        for th, by_at in by_th.items():
            for a, m in by_at.items():
                tm = m.get("time", {})
                g = (lambda k, tm=tm: f"{tm[k]['median_abs_log_ratio']:.3f}" if k in tm else "–")
                fp = f"{g('first-passage law')} ({tm['first-passage law']['n']})" if "first-passage law" in tm else "–"
                lines.append(f"| {axis} | {th} | {float(a):.0%} | {m['n']} ({m['positives']}) | "
                             f"{m['forecast']['auroc']:.3f} | {m['config only']['auroc']:.3f} | "
                             f"{m['forecast']['brier']:.3f} | "
                             f"{m['events']} | {m['lead']:.2f} | {g('forecast')} | {g('twice the step')} | "
                             f"{g('training median')} | {fp} | {m['coverage']:.2f} |")
    lc = res.get("learning_curve")
    if lc:
        lines += ["", f"learning from the user's runs: {lc['family']} held out, "
                      f"scored on {lc['test_runs']} of its runs",
                  "", "| its runs learned | θ | at | n (reached) | AUROC | Brier | time: forecast | 80 % coverage |",
                  "|---|---|---|---|---|---|---|---|"]
        for k, by_th in lc["steps"].items():
            for th, by_at in by_th.items():
                for a, m in by_at.items():
                    tm = m.get("time", {}).get("forecast", {}).get("median_abs_log_ratio", math.nan)
                    lines.append(f"| {k} | {th} | {float(a):.0%} | {m['n']} ({m['positives']}) | "
                                 f"{m['forecast']['auroc']:.3f} | "
                                 f"{m['forecast']['brier']:.3f} | {tm:.3f} | {m.get('coverage', math.nan):.2f} |")
    folds = [f for f in res["folds"] if "skipped" in f]
    if folds:
        lines += [""] + [f"- {f['axis']} = {f['family']}: skipped ({f['skipped']})" for f in folds]
    return "\n".join(lines)
