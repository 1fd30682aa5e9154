"""``groklab analyze`` for MLP runs on vector tasks (MNIST, parity): feature rank and linear
probes per layer at every checkpoint, and the surges of validation accuracy (Fan, Pascanu, Jaggi
2024, "Deep Grokking", arXiv 2405.19454: deep MLPs generalize in stages, and the feature rank of
the layers falls at each transition).

A **surge** is a stretch of training in which the best validation accuracy so far rises by at
least ``min_rise``, separated from the next by a plateau: the steps at which the running maximum
first crosses each level of a 0.01 grid are grouped, a new group starting whenever a crossing
comes more than ``gap`` times later than the one before (a log-time gap, since grokking's
timescales are multiplicative). Each surge is reported as (start, end, accuracy before, after).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from groklab.measure.probe import layer_probe_accuracies
from groklab.measure.rank import feature_ranks, rank_subsample

LEVEL = 0.01  # the grid of accuracy levels whose first crossings are grouped into surges


def surges(records: list[dict], key: str = "val_acc", min_rise: float = 0.05,
           gap: float = 2.0) -> list[dict]:
    """The surges of ``key`` in metrics ``records`` (see module doc), in order:
    ``[{"start": step, "end": step, "from": acc, "to": acc}, ...]``."""
    crossings, best, level = [], -math.inf, None
    for r in records:
        v = r.get(key)
        if v is None or not math.isfinite(v):
            continue
        if level is None:  # the first value is where the curve starts, not a crossing
            best, level = v, math.floor(v / LEVEL) * LEVEL
            continue
        if v > best:
            best = v
            while level + LEVEL <= best + 1e-12:
                level += LEVEL
                crossings.append((max(r["step"], 1), level))
    groups: list[list[tuple[int, float]]] = []
    for c in crossings:
        if groups and c[0] <= gap * groups[-1][-1][0]:
            groups[-1].append(c)
        else:
            groups.append([c])
    out = []
    for g in groups:
        start_level = g[0][1] - LEVEL
        if g[-1][1] - start_level >= min_rise - 1e-12:
            out.append({"start": g[0][0], "end": g[-1][0], "from": round(start_level, 2),
                        "to": round(g[-1][1], 2)})
    return out


def measure_layers(model: torch.nn.Module, task, probes: bool, max_n: int = 1000) -> dict:
    """``rank_L*`` on at most ``max_n`` held-out inputs and, with ``probes``, ``probe_L*``."""
    p = next(model.parameters())
    x = rank_subsample(task.x_val, max_n).to(p.device, p.dtype)
    out = dict(feature_ranks(model, x))
    if probes:
        out |= layer_probe_accuracies(model, task, max_n=max_n)
    return out


def plot_layers(metrics: list[dict], records: list[dict], info: dict, path: Path) -> None:
    """Feature rank of each layer against step (log axis), validation accuracy beside it, each
    surge shaded; probe accuracies in a second panel when measured."""
    from groklab.report.plots import plt, save_figure
    has_probes = any(k.startswith("probe_") for k in records[-1])
    fig, axes = plt.subplots(1, 2 if has_probes else 1, figsize=(12 if has_probes else 7, 4.5),
                             squeeze=False)
    st = [max(r["step"], 1) for r in records]
    layers = [k[5:] for k in records[-1] if k.startswith("rank_")]
    for ax, prefix, title in zip(axes[0], ("rank_", "probe_"), ("feature rank", "linear-probe accuracy")):
        for name in layers:
            ax.plot(st, [r.get(prefix + name) for r in records], "o-", ms=2, lw=1, label=name)
        acc = ax.twinx()
        acc.plot([max(m["step"], 1) for m in metrics], [m["val_acc"] for m in metrics], color="k",
                 lw=1.2, label="val acc")
        acc.set_ylim(0, 1.02)
        acc.set_ylabel("validation accuracy")
        for s in info["surges"]:
            ax.axvspan(max(s["start"], 1), max(s["end"], 1), color="tab:orange", alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{title} per Linear layer (surges shaded)")
        ax.legend(fontsize=6, ncol=2)
    save_figure(fig, path)
