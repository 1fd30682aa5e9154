"""Phase diagrams of a grid sweep (Liu et al. 2022, arXiv 2205.10343, Fig. 6 / 7).

Two heatmaps over the spec's ``[diagram]`` axes x and y, seeds averaged:

* **phase**: the label most seeds got (comprehension, grokking, memorization, confusion; a
  failed point counts as "failed"); a cell whose seeds disagree shows the count, e.g. ``G 2/3``.
* **steps to generalize**: steps until validation accuracy first reaches the threshold, the
  geometric mean over the seeds that reached it, on a log colour scale; a cell where some seeds
  never reached it shows ``k/n``, one where none did is grey (censored at the budget).

With more than two axes, one pair of figures is drawn per combination of the other axes.
"""
from __future__ import annotations

import html
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from groklab.report.html import CSS, img_tag
from groklab.report.plots import plt, save_figure
from groklab.runs.rundir import atomic_write_text

PHASES = ("comprehension", "grokking", "memorization", "confusion", "failed")
COLORS = {"comprehension": "#2ca02c", "grokking": "#ff7f0e", "memorization": "#1f77b4",
          "confusion": "#7f7f7f", "failed": "#000000"}
ABBREV = {"comprehension": "C", "grokking": "G", "memorization": "M", "confusion": "X", "failed": "F"}


def _same(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(a) == str(b)


def aggregate(rows: list[dict], x: str, xs: list, y: str, ys: list, threshold: float,
              fixed: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Seed-averaged cells: ``phase`` (object array of majority labels), ``agree`` and ``n``
    (seeds with that label, seeds finished), ``steps`` (geometric mean, NaN if none reached),
    ``n_gen`` (seeds that reached the threshold). Arrays are (len(ys), len(xs))."""
    shape = (len(ys), len(xs))
    phase = np.full(shape, "", dtype=object)
    agree, n, n_gen, pruned = (np.zeros(shape, dtype=int) for _ in range(4))
    steps = np.full(shape, np.nan)
    col = f"generalized_at_{threshold}"
    for (iy, yv), (ix, xv) in itertools.product(enumerate(ys), enumerate(xs)):
        cell = [r for r in rows if _same(r[x], xv) and _same(r[y], yv)
                and all(_same(r[k], v) for k, v in (fixed or {}).items())]
        if not cell:
            continue
        labels = [r["phase"] or "failed" for r in cell]
        best = max(PHASES, key=lambda p: (labels.count(p), -PHASES.index(p)))
        phase[iy, ix], agree[iy, ix], n[iy, ix] = best, labels.count(best), len(cell)
        pruned[iy, ix] = sum(1 for r in cell if str(r.get("status", "")).startswith(("pruned", "settled")))
        reached = [float(r[col]) for r in cell if r.get(col) not in (None, "")]
        n_gen[iy, ix] = len(reached)
        if reached:
            steps[iy, ix] = math.exp(sum(math.log(max(s, 1.0)) for s in reached) / len(reached))
    return {"phase": phase, "agree": agree, "n": n, "steps": steps, "n_gen": n_gen, "pruned": pruned}


def _ticks(values: list) -> list[str]:
    return [f"{v:.3g}" if isinstance(v, float) else str(v) for v in values]


def _frame(ax, x: str, xs: list, y: str, ys: list, title: str) -> None:
    ax.set_xticks(range(len(xs)), _ticks(xs), rotation=45)
    ax.set_yticks(range(len(ys)), _ticks(ys))
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title, fontsize=10)


def plot_phase(agg: dict, x: str, xs: list, y: str, ys: list, path: Path, title: str) -> None:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    codes = np.vectorize(lambda p: PHASES.index(p) if p else np.nan, otypes=[float])(agg["phase"])
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(xs), 1.2 + 0.6 * len(ys)))
    ax.imshow(codes, origin="lower", cmap=ListedColormap([COLORS[p] for p in PHASES]),
              vmin=-0.5, vmax=len(PHASES) - 0.5, aspect="auto")
    for iy, ix in itertools.product(range(len(ys)), range(len(xs))):
        p = agg["phase"][iy, ix]
        if p:
            txt = ABBREV[p] + ("" if agg["agree"][iy, ix] == agg["n"][iy, ix]
                               else f" {agg['agree'][iy, ix]}/{agg['n'][iy, ix]}")
            txt += "*" if agg.get("pruned") is not None and agg["pruned"][iy, ix] else ""
            ax.text(ix, iy, txt, ha="center", va="center", color="white", fontsize=8)
    used = [p for p in PHASES if (agg["phase"] == p).any()]
    handles = [Patch(color=COLORS[p], label=p) for p in used]
    if agg.get("pruned") is not None and agg["pruned"].any():
        handles.append(Patch(color="white", label="* stopped by the forecast (pruned: the phase so far; "
                                                  "settled: the forecast's)"))
    ax.legend(handles=handles, fontsize=7,
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _frame(ax, x, xs, y, ys, title)
    save_figure(fig, path)


def plot_steps(agg: dict, x: str, xs: list, y: str, ys: list, path: Path, title: str,
               threshold: float) -> None:
    from matplotlib.colors import LogNorm
    steps = agg["steps"]
    fig, ax = plt.subplots(figsize=(1.8 + 0.75 * len(xs), 1.2 + 0.6 * len(ys)))
    ax.imshow(np.where(np.isnan(steps), 1.0, 0.0), origin="lower", cmap="Greys", vmin=0, vmax=4,
              aspect="auto")  # grey under the censored cells
    finite = steps[np.isfinite(steps)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        im = ax.imshow(np.ma.masked_invalid(steps), origin="lower", cmap="viridis_r", aspect="auto",
                       norm=LogNorm(vmin=lo, vmax=hi if hi > lo else lo * 1.01))
        fig.colorbar(im, ax=ax, label=f"steps to val acc ≥ {threshold:g}")
    for iy, ix in itertools.product(range(len(ys)), range(len(xs))):
        n, k = agg["n"][iy, ix], agg["n_gen"][iy, ix]
        if not n:
            continue
        txt = "—" if not k else _human(steps[iy, ix]) + ("" if k == n else f"\n{k}/{n}")
        light = k and finite.size and steps[iy, ix] <= math.sqrt(finite.min() * finite.max())
        ax.text(ix, iy, txt, ha="center", va="center", fontsize=7,
                color="black" if not k or light else "white")  # yellow end of viridis_r: dark text
    _frame(ax, x, xs, y, ys, title)
    save_figure(fig, path)


def _human(s: float) -> str:
    return f"{s / 1000:.1f}k" if s >= 1000 else f"{s:.0f}"


def draw(rows: list[dict], spec, out: Path) -> list[Path]:
    """Draw every phase and steps heatmap of ``spec`` from ``rows`` into ``out``; return paths."""
    dg = spec.diagram
    x, y, thr = dg["x"], dg["y"], dg["threshold"]
    axes = {a.key: a.values for a in spec.axes}
    if y is None:  # one axis: a one-row diagram
        y, ys = "seed-mean", [0]
        rows = [{**r, y: 0} for r in rows]
    else:
        ys = axes[y]
    xs = axes[x]
    rest = [k for k in axes if k not in (x, y)]
    paths = []
    for combo in itertools.product(*(axes[k] for k in rest)):
        fixed = dict(zip(rest, combo))
        suffix = "".join(f"_{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"_{k.split('.')[-1]}={v}"
                         for k, v in fixed.items())
        where = ", ".join(f"{k}={v}" for k, v in fixed.items())
        agg = aggregate(rows, x, xs, y, ys, thr, fixed)
        p1, p2 = out / f"fig_phase{suffix}.png", out / f"fig_steps{suffix}.png"
        title = f"{spec.name}: phase (majority of {len(spec.seeds)} seeds)" + (f"\n{where}" if where else "")
        plot_phase(agg, x, xs, y, ys, p1, title)
        plot_steps(agg, x, xs, y, ys, p2, f"{spec.name}: steps to generalize" + (f"\n{where}" if where else ""), thr)
        paths += [p1, p2]
    return paths


def write_sweep_report(out: Path, spec, rows: list[dict], figures: list[Path], info: dict) -> Path:
    """``report.html`` of the sweep: counts, the diagrams, and the table linking every run."""
    counts = {p: sum(1 for r in rows if "phase" in r and (r["phase"] or "failed") == p) for p in PHASES}
    head = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in [*info.items(), *((f"points: {p}", c) for p, c in counts.items() if c),
                                _sweep_cost(rows)])
    parts = [f"<h1>groklab sweep — {html.escape(spec.name)}</h1>", f"<table>{head}</table>"]
    parts += [img_tag(f, f.stem) for f in figures]
    cols = [c for c in (rows[0].keys() if rows else []) if c != "error"] + ["error"]
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = "" if r.get(c) is None else r.get(c)
            if c == "id" and (out / "points" / str(v) / "report.html").exists():
                v = f'<a href="points/{html.escape(str(v))}/report.html">{html.escape(str(v))}</a>'
            else:
                v = html.escape(str(v))
            cells.append(f"<td>{v}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    parts += ["<h2>Points</h2>", "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols)
              + "</tr>" + "".join(body) + "</table>"]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(spec.name)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    atomic_write_text(out / "report.html", page)
    return out / "report.html"


def _sweep_cost(rows: list[dict]) -> tuple[str, str]:
    """The report's cost line: the runs' cost summed (sweep.table.total_cost, as in cost.json)."""
    from groklab.runs.cost import format_cost
    from groklab.sweep.table import total_cost
    t = total_cost(rows)
    line = format_cost(t | {"energy_missing": "not known for every run"}) if t["rows_with_cost"] else "–"
    return f"cost of the sweep ({t['rows_with_cost']} of {t['rows']} runs)", line
