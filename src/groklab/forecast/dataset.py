"""Labelled forecast points from finished runs: right-censored times to grok, and families.

For a threshold θ, a run's time to grok ``T_θ`` is the first evaluated step with validation
accuracy ≥ θ (``summary.generalized_at``). A run that never reached θ is **right-censored** at
the step it stopped (its budget, a NaN, a pruning): it is known only that ``T_θ`` is beyond that
step, never that it is "never", and it has no time label. For the probability "reaches θ within
the budget" a run is positive if ``T_θ <= budget``, negative if it ran its whole budget (or went
NaN) without reaching θ, and left out when it was stopped early for another reason (pruned).

Forecast points sit in the run's own clock: at fractions of its budget (``POINTS``), and only
while the run has not reached θ yet (the question is still open there) and was still training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from groklab.forecast.signals import FEATURES, features, vector

THRESHOLDS = (0.9, 0.99)
POINTS = (0.05, 0.1, 0.15, 0.25, 0.35, 0.5, 0.7)   # forecast points, fractions of the budget


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
    return {"op": op, "model": cfg.model.arch, "optim": opt}


@dataclass
class Table:
    """One row per (run, forecast point): features and labels for each threshold."""
    X: np.ndarray
    t: np.ndarray                     # the forecast step
    budget: np.ndarray
    run: np.ndarray                   # run index
    group: np.ndarray                 # config index (seeds of one config share it)
    fam: dict[str, np.ndarray]        # axis -> family name per row
    point: np.ndarray                 # fraction of the budget
    T: dict[float, np.ndarray] = field(default_factory=dict)       # time or censoring step
    event: dict[float, np.ndarray] = field(default_factory=dict)
    y: dict[float, np.ndarray] = field(default_factory=dict)       # 1/0, NaN unknown
    open: dict[float, np.ndarray] = field(default_factory=dict)    # not reached at t
    runs: list[dict[str, Any]] = field(default_factory=list)

    def take(self, mask: np.ndarray) -> "Table":
        sub = {k: getattr(self, k)[mask] for k in ("X", "t", "budget", "run", "group", "point")}
        return Table(**sub, fam={a: v[mask] for a, v in self.fam.items()},
                     T={k: v[mask] for k, v in self.T.items()},
                     event={k: v[mask] for k, v in self.event.items()},
                     y={k: v[mask] for k, v in self.y.items()},
                     open={k: v[mask] for k, v in self.open.items()}, runs=self.runs)


def config_key(cfg, seed_keys=("train.seed", "task.split_seed", "train.batch_seed")) -> str:
    import json
    d = cfg.to_dict()
    for k in seed_keys:
        s, f = k.split(".")
        d[s].pop(f, None)
    return json.dumps(d, sort_keys=True)


def build_table(runs: list[dict[str, Any]], points=POINTS, thresholds=THRESHOLDS) -> Table:
    """Rows for every run (from groklab.forecast.corpus.load_runs) at every forecast point
    the run was still training at; labels for every threshold."""
    rows: dict[str, list] = {k: [] for k in ("X", "t", "budget", "run", "group", "point")}
    fam: dict[str, list] = {"op": [], "model": [], "optim": []}
    lab: dict[str, dict[float, list]] = {k: {th: [] for th in thresholds} for k in ("T", "event", "y", "open")}
    groups: dict[str, int] = {}
    for i, r in enumerate(runs):
        cfg, recs, summ = r["config"], r["records"], r["summary"]
        budget = int(cfg.train.steps)
        last = recs[-1]["step"] if recs else 0
        g = groups.setdefault(config_key(cfg), len(groups))
        f = families(cfg)
        eval_steps = np.array([rec["step"] for rec in recs])
        for frac in points:
            t_want = int(round(frac * budget))
            if not len(eval_steps) or t_want > last or t_want < eval_steps[0]:
                continue
            t = int(eval_steps[np.searchsorted(eval_steps, t_want, side="right") - 1])
            if t <= 0:
                continue
            rows["X"].append(vector(features(recs, cfg, t, budget)))
            for k, v in (("t", t), ("budget", budget), ("run", i), ("group", g), ("point", frac)):
                rows[k].append(v)
            for a in fam:
                fam[a].append(f[a])
            for th in thresholds:
                T, ev = time_label(summ, th)
                wb = within_budget(summ, th, budget)
                lab["T"][th].append(T)
                lab["event"][th].append(ev)
                lab["y"][th].append(math.nan if wb is None else float(wb))
                lab["open"][th].append(not (ev and T <= t))
    X = np.array(rows["X"], dtype=np.float32).reshape(-1, len(FEATURES))
    return Table(X=X, **{k: np.array(rows[k]) for k in ("t", "budget", "run", "group", "point")},
                 fam={a: np.array(v) for a, v in fam.items()},
                 T={th: np.array(v, dtype=float) for th, v in lab["T"].items()},
                 event={th: np.array(v, dtype=bool) for th, v in lab["event"].items()},
                 y={th: np.array(v, dtype=float) for th, v in lab["y"].items()},
                 open={th: np.array(v, dtype=bool) for th, v in lab["open"].items()}, runs=runs)
