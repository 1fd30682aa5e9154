"""Figures and report.html of a ``groklab gtn env`` run.

``fig_returns.png`` (first: the evaluation's real greedy return against agent training steps,
agents trained on the SE or RN-shaped environment against the same agents on the real one, one
panel per agent kind, the solve threshold dashed) and ``fig_meta.png`` (ES scores and the real
steps spent, against generation).
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from groklab.report.html import CSS, img_tag, table  # noqa: E402
from groklab.report.plots import save_figure  # noqa: E402
from groklab.runs.rundir import atomic_write_text, read_json, read_jsonl  # noqa: E402

LABELS = {"se": "trained on the SE", "rn": "trained on the RN-shaped env", "real": "trained on the real env"}


def plot_returns(ev: dict, path: str | Path) -> None:
    """Mean ± std over agents of the greedy real return at each checkpoint, per agent kind."""
    kinds = list(ev["kinds"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for name, color in ((ev["target"], "tab:red"), ("real", "tab:blue")):
            p = ev["kinds"][kind].get(name)
            if not p or not p["curves"]:
                continue
            c = torch.tensor(p["curves"], dtype=torch.float64)              # (checkpoints, agents)
            m, s = c.mean(1), (c.std(1) if c.shape[1] > 1 else torch.zeros(len(c)))
            solved = sum(x is not None for x in p["steps_to_solve"])
            ax.plot(p["checkpoints"], m, color=color, marker="o", ms=3,
                    label=f"{LABELS[name]} ({solved}/{len(p['steps_to_solve'])} solved)")
            ax.fill_between(p["checkpoints"], m - s, m + s, color=color, alpha=0.2)
        ax.axhline(ev["threshold"], color="k", ls="--", lw=0.8, label=f"solved: {ev['threshold']:g}")
        ax.set_xlabel("agent training steps")
        ax.set_ylabel(f"real return, greedy, {ev['episodes']} episodes")
        ax.set_title(f"{ev['env']}, {kind}, {ev['agents']} fresh agents, mean ± std", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)


def plot_meta(records: list[dict], path: str | Path) -> None:
    """ES scores (population mean, max, and ψ's own agent) and real steps spent, per generation."""
    g = [r["step"] for r in records]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    a1.plot(g, [r["score_mean"] for r in records], color="tab:purple", label="population mean")
    a1.plot(g, [r["score_max"] for r in records], color="tab:gray", lw=0.8, label="population max")
    a1.plot(g, [r["score_center"] for r in records], color="tab:red", lw=0.8, label="ψ itself")
    a1.set_ylabel("score (real return)")
    a1.legend(fontsize=8)
    a2.plot(g, [r["real_steps"] for r in records], color="tab:blue")
    a2.set_ylabel("real environment steps spent")
    for a in (a1, a2):
        a.set_xlabel("generation")
        a.grid(alpha=0.3)
    save_figure(fig, path)


def write_env_report(run_dir: str | Path) -> Path:
    """report.html: the headline (steps to solve, learned vs real), fig_returns first, then the rest."""
    d = Path(run_dir)
    summary = read_json(d / "summary.json") if (d / "summary.json").exists() else {}
    parts = [f"<h1>groklab gtn env — {html.escape(d.name)}</h1>"]
    t = summary.get("target", "se")
    for kind, h in (summary.get("eval") or {}).items():
        a, b = h[t], h.get("real")
        line = f"{html.escape(kind)}: {t.upper()} {a['solved']}/{a['of']} solved (median {a['median_steps']} steps)"
        if b:
            line += (f" · real {b['solved']}/{b['of']} solved (median {b['median_steps']} steps) · steps ratio "
                     f"{h['steps_ratio']}")
        parts.append(f"<p class='phase'>{line}</p>")
    if (d / "eval.json").exists():
        plot_returns(read_json(d / "eval.json"), d / "fig_returns.png")
    records = read_jsonl(d / "metrics.jsonl")
    if records:
        plot_meta(records, d / "fig_meta.png")
    for name, alt in (("fig_returns.png", "real return against agent steps"), ("fig_meta.png", "meta-training")):
        if (d / name).exists():
            parts.append(img_tag(d / name, alt))
    rows = [(k, v) for k, v in summary.items() if not isinstance(v, (dict, list))]
    for kind, h in (summary.get("eval") or {}).items():
        for side in (t, "real"):
            rows += [(f"eval.{kind}.{side}.{k}", v) for k, v in (h.get(side) or {}).items()]
        if "steps_ratio" in h:
            rows.append((f"eval.{kind}.steps_ratio", h["steps_ratio"]))
    if (d / "eval.json").exists():
        ev = read_json(d / "eval.json")
        for kind, sides in ev["kinds"].items():
            rows += [(f"eval.{kind}.{side}.real_steps (training + scoring)",
                      p["real_train_steps"] + p["real_eval_steps"]) for side, p in sides.items()]
    parts += ["<h2>Summary</h2>", table(rows)]
    c = summary.get("cost")
    if c:
        energy = f"{c['joules']} J ({c['method']})" if c.get("joules") is not None else \
            f"missing: {c.get('energy_missing')}"
        parts += ["<h2>Cost of meta-training</h2>", table([
            ("FLOPs", c.get("flops")), ("CPU seconds", c.get("cpu_seconds")), ("wall seconds", c.get("wall_seconds")),
            ("energy", energy), ("CO₂e g", c.get("co2_g")),
            ("real environment steps", summary.get("real_steps_meta"))]),
            f"<p class='note'>FLOPs: {html.escape(str(c.get('flops_note', '')))}.</p>"]
    if (d / "config.json").exists():
        parts += ["<h2>Config</h2>", f"<pre>{html.escape(json.dumps(read_json(d / 'config.json'), indent=2))}</pre>"]
    atomic_write_text(d / "report.html", "<!doctype html><html><head><meta charset='utf-8'><title>"
                      f"{html.escape(d.name)}</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    return d / "report.html"
