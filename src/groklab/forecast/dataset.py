"""Labelled forecast rows from finished runs: right-censored times to grok, horizons, families.

For a threshold θ, a run's time to grok ``T_θ`` is the first evaluated step with validation
accuracy ≥ θ (``summary.generalized_at``). A run that never reached θ is **right-censored** at
the step it stopped (its budget, a NaN, a pruning): it is known only that ``T_θ`` is beyond that
step, never that it is "never", and it has no time label.

Forecast points sit on a geometric clock (``POINTS``: 100 · 2^(k/2) steps, snapped to the last
evaluation at or before), only while the run has not reached θ (the question is still open there).
Each point gets one row per **horizon** ``B = r·t`` (``HORIZONS``): the label is "T_θ ≤ B", known
when the run reached θ (then 1 or 0) or ran past B without it (0), and left out when the run
stopped before B. So the budget is an input of the model, not a constant of the corpus: the
probability within any budget, and from it the distribution of *when*, is one model's answer
(groklab.forecast.model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from groklab.forecast.signals import FEATURES, features, vector

THRESHOLDS = (0.9, 0.99)
POINTS = tuple(int(round(100 * 2 ** (k / 2))) for k in range(0, 21))       # 100 ... 102,400 steps
# B / t: close to 1 (a forecast's distribution starts just after t), then 2^(k/4): 1.19 ... 128
HORIZONS = (1.05, 1.1) + tuple(float(round(2 ** (k / 4), 3)) for k in range(1, 29))


def time_label(summary: dict, threshold: float) -> tuple[float, bool]:
    """(time, event): the step ``T_θ`` was reached and True, or the censoring step and False."""
    at = (summary.get("generalized_at") or {}).get(str(threshold))
    if at is not None:
        return float(at), True
    return float(summary.get("steps_done") or 0), False


def within_budget(summary: dict, threshold: float, budget: int) -> bool | None:
    """Did the run reach θ within ``budget``? None when it was stopped before we can know."""
    t, event = time_label(summary, threshold)
    if event:
        return t <= budget
    if summary.get("status") in ("completed", "nan"):
        return False
    return None  # pruned or interrupted before the budget: unknown


def families(cfg) -> dict[str, str]:
    """The run's family on each held-out axis: operation, model kind, optimiser family."""
    from groklab.tasks.modular import OPS
    op = cfg.task.op if cfg.task.name == "modular" else cfg.task.name
    if cfg.task.name == "modular" and op not in ("x+y", "x-y", "x*y", "x/y") and op in OPS:
        op = "poly"
    a = cfg.accel
    if a.weight_norm > 0:
        opt = "weight_norm"
    elif a.grokfast != "none":
        opt = "grokfast"
    elif a.orthograd:
        opt = "orthograd"
    elif cfg.optim.name in ("adam", "sgd"):
        opt = f"{cfg.optim.name}_l2"
    else:
        opt = cfg.optim.name
    if cfg.optim.name == "muon":
        opt = "muon"
    model = cfg.model.arch
    if model == "transformer":
        model = f"transformer{cfg.model.n_layers}"
    return {"op": op, "model": model, "optim": opt, "scale": scale(cfg)}


def scale(cfg) -> str:
    """The run's size on the held-out-by-scale axis: "small" (modulus ≤ 59), "large" (≥ 97),
    "mid" in between, and "other" for tasks without a modulus (parity, MNIST)."""
    if cfg.task.name != "modular":
        return "other"
    p = cfg.task.p
    return "small" if p <= 59 else "large" if p >= 97 else "mid"


@dataclass
class Table:
    """One row per (run, forecast point, horizon): features, log10(B / t) and labels per threshold.
    ``point`` indexes the (run, forecast point) pairs, so rows of one forecast share it."""
    X: np.ndarray                     # features (signals.FEATURES) at the forecast step
    h: np.ndarray                     # log10(B / t)
    t: np.ndarray                     # the forecast step
    budget: np.ndarray                # the run's own budget (train.steps)
    run: np.ndarray                   # run index
    group: np.ndarray                 # config index (seeds of one config share it)
    point: np.ndarray                 # forecast index
    fam: dict[str, np.ndarray]        # axis -> family name per row
    size: np.ndarray                  # (log10 training examples, log10 classes) per row
    T: dict[float, np.ndarray] = field(default_factory=dict)       # time or censoring step
    event: dict[float, np.ndarray] = field(default_factory=dict)
    y: dict[float, np.ndarray] = field(default_factory=dict)       # T ≤ B: 1/0, NaN unknown
    open: dict[float, np.ndarray] = field(default_factory=dict)    # not reached at t
    runs: list[dict[str, Any]] = field(default_factory=list)

    ARRAYS = ("X", "h", "t", "budget", "run", "group", "point", "size")

    def take(self, mask: np.ndarray) -> "Table":
        return Table(**{k: getattr(self, k)[mask] for k in self.ARRAYS},
                     fam={a: v[mask] for a, v in self.fam.items()},
                     **{d: {k: v[mask] for k, v in getattr(self, d).items()} for d in ("T", "event", "y", "open")},
                     runs=self.runs)


def config_key(cfg, seed_keys=("train.seed", "task.split_seed", "train.batch_seed")) -> str:
    import json
    d = cfg.to_dict()
    for k in seed_keys:
        s, f = k.split(".")
        d[s].pop(f, None)
    for k in ("steps", "eval_every", "stop_threshold", "patience", "forecast", "measure_every",
              "n_checkpoints", "checkpoint_every", "save_every", "phase_gap", "phase_threshold"):
        d["train"].pop(k, None)      # the budget and logging keys do not change the dynamics
    return json.dumps(d, sort_keys=True)


def forecast_steps(steps: np.ndarray, last: int, points=POINTS) -> list[int]:
    """The evaluation steps a run is forecast at: each point snapped to the last evaluation at or
    before it, while the run was still training (distinct, > 0)."""
    out = []
    for p in points:
        if p > last or not len(steps) or p < steps[0]:
            continue
        t = int(steps[np.searchsorted(steps, p, side="right") - 1])
        if t > 0 and t not in out:
            out.append(t)
    return out


def horizon_label(T: float, event: bool, B: float) -> float:
    """1 if θ was reached by B, 0 if not (reached later, or the run trained past B without it),
    NaN when the run stopped before B without reaching θ."""
    if event:
        return float(T <= B)
    return 0.0 if T >= B else math.nan


def build_table(runs: list[dict[str, Any]], points=POINTS, horizons=HORIZONS,
                thresholds=THRESHOLDS) -> Table:
    """Rows for every run (groklab.forecast.records.load) at every forecast point it was still
    training at, one per horizon; labels for every threshold. Rows where θ is reached for every
    threshold before t are dropped (nothing is open)."""
    from groklab.forecast.signals import SIZE
    cols: dict[str, list] = {k: [] for k in ("X", "h", "t", "budget", "run", "group", "point", "size")}
    fam: dict[str, list] = {"op": [], "model": [], "optim": [], "scale": []}
    lab: dict[str, dict[float, list]] = {k: {th: [] for th in thresholds} for k in ("T", "event", "y", "open")}
    groups: dict[str, int] = {}
    n_point = 0
    for i, r in enumerate(runs):
        cfg, recs, summ = r["config"], r["records"], r["summary"]
        g = groups.setdefault(config_key(cfg), len(groups))
        f = families(cfg)
        steps = np.array([rec["step"] for rec in recs])
        labels = {th: time_label(summ, th) for th in thresholds}
        for t in forecast_steps(steps, int(steps[-1]) if len(steps) else 0, points):
            opens = {th: not (ev and T <= t) for th, (T, ev) in labels.items()}
            if not any(opens.values()):
                continue
            feats = features(recs, cfg, t)
            x, sz = vector(feats), [feats[k] for k in SIZE]
            for ratio in horizons:
                ys = {th: horizon_label(T, ev, ratio * t) for th, (T, ev) in labels.items()}
                if all(math.isnan(v) for v in ys.values()):
                    continue
                for k, v in (("X", x), ("h", math.log10(ratio)), ("t", t), ("budget", int(cfg.train.steps)),
                             ("run", i), ("group", g),
                             ("point", n_point), ("size", sz)):
                    cols[k].append(v)
                for a in fam:
                    fam[a].append(f[a])
                for th in thresholds:
                    T, ev = labels[th]
                    lab["T"][th].append(T)
                    lab["event"][th].append(ev)
                    lab["y"][th].append(ys[th])
                    lab["open"][th].append(opens[th])
            n_point += 1
    X = np.array(cols["X"], dtype=np.float32).reshape(-1, len(FEATURES))
    return Table(X=X, h=np.array(cols["h"], dtype=np.float32),
                 **{k: np.array(cols[k]) for k in ("t", "budget", "run", "group", "point")},
                 size=np.array(cols["size"], dtype=float).reshape(-1, len(SIZE)),
                 fam={a: np.array(v) for a, v in fam.items()},
                 T={th: np.array(v, dtype=float) for th, v in lab["T"].items()},
                 event={th: np.array(v, dtype=bool) for th, v in lab["event"].items()},
                 y={th: np.array(v, dtype=float) for th, v in lab["y"].items()},
                 open={th: np.array(v, dtype=bool) for th, v in lab["open"].items()}, runs=runs)
