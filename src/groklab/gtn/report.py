"""Figures and the self-contained report.html of a GTN run.

``fig_accuracy.png`` (first: real test accuracy against inner step, GTN data against real data),
``fig_samples.png`` (generated samples, one row per class, one column per curriculum step),
``fig_meta.png`` (meta-training curves), and for ``groklab gtn nas`` ``fig_nas.png``.
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


def plot_accuracy(result: dict, path: str | Path, title: str = "") -> None:
    """Mean ± std real test accuracy after each inner step: GTN data vs real data (best lr)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, label, color in (("gtn_curves", "GTN data (learned lr, momentum)", "tab:red"),
                              ("real_curves", f"real data (SGD lr {result['best_lr']:g}, "
                                              f"momentum 0.9)", "tab:blue")):
        c = torch.tensor(result[key], dtype=torch.float64)     # (n, T+1)
        m, s = c.mean(0), (c.std(0) if len(c) > 1 else torch.zeros(c.shape[1]))
        steps = range(c.shape[1])
        ax.plot(steps, m, color=color, label=label, marker="o", ms=3)
        ax.fill_between(steps, m - s, m + s, color=color, alpha=0.2)
    ax.set_xlabel("inner step")
    ax.set_ylabel("real test accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or f"{result['learners']} fresh learners ({result['learner']}), mean ± std")
    save_figure(fig, path)


@torch.no_grad()
def plot_samples(teacher, data, path: str | Path, max_cols: int = 8) -> None:
    """One generated sample per class (rows) at up to ``max_cols`` curriculum steps (columns)."""
    from groklab.gtn.eval import generated_batches
    batches = generated_batches(teacher, torch.Generator().manual_seed(0))
    T, C = len(batches), data.n_classes
    cols = sorted(set(round(i * (T - 1) / max(max_cols - 1, 1)) for i in range(min(max_cols, T))))
    rows = min(C, 10)
    fig, axes = plt.subplots(rows, len(cols), figsize=(1.2 * len(cols) + 0.5, 1.0 * rows + 0.5),
                             squeeze=False)
    for j, t in enumerate(cols):
        x, y = batches[t]
        y = y.argmax(1) if y.is_floating_point() else y     # learned soft labels: their top class
        for c in range(rows):
            ax = axes[c][j]
            hit = (y == c).nonzero()
            if len(hit):
                s = x[hit[0, 0]].float()
                if data.is_image:
                    ax.imshow(s[0], cmap="gray")
                else:
                    ax.plot(s.flatten(), lw=0.8, color="k")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_title(f"step {t}", fontsize=8)
            if j == 0:
                ax.set_ylabel(str(c), fontsize=8)
    fig.suptitle(f"generated samples ({teacher.curriculum.kind} curriculum): class × inner step", fontsize=9)
    save_figure(fig, path)


def plot_meta(records: list[dict], path: str | Path) -> None:
    """Meta-loss and one learner's real test accuracy against outer step."""
    steps = [r["step"] for r in records]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    a1.plot(steps, [r["meta_loss"] for r in records], color="tab:purple")
    a1.set_ylabel("meta-loss (real cross-entropy)")
    a2.plot(steps, [r["test_acc"] for r in records], color="tab:red", label="test acc, one fresh learner")
    a2.plot(steps, [r["real_acc"] for r in records], color="tab:gray", lw=0.8, label="meta-batch acc")
    a2.set_ylim(0, 1.02)
    a2.legend(fontsize=8)
    for a in (a1, a2):
        a.set_xlabel("outer step")
        a.grid(alpha=0.3)
    save_figure(fig, path)


def _page(title: str, parts: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")


def audit_section(a: dict, d: Path) -> list[str]:
    """The audit of ``groklab gtn audit`` (audit.json): headline, fig_audit.png, a row per class."""
    f = lambda v, p=3: "–" if v is None else f"{v:.{p}f}"  # noqa: E731
    nn = a["nearest"]
    head = (f"<p>{a['examples']} generated examples, {a['learners']} learners ({html.escape(a['learner'])}): "
            f"taught {f(a['acc_gtn'])} vs real data {f(a['acc_real'])} · nearest real neighbour "
            f"{f(nn['gen_median'])} vs real–real {f(nn['real_median'])} (ratio {f(nn['ratio'], 2)}) · "
            f"diversity ratio {f(a['diversity_ratio'], 2)} · neglected: "
            f"{', '.join(map(str, a['neglected'])) or 'none'}</p>")
    cols = ("class", "asked", "argmax", "mass", "acc_gtn", "acc_real", "nn_ratio", "diversity_ratio", "why")
    cell = lambda r, k: html.escape(str(r[k])) if k in ("class", "asked", "argmax", "why") else f(r[k])  # noqa: E731
    body = "".join("<tr>" + "".join(f"<td>{cell(r, k)}</td>" for k in cols) + "</tr>" for r in a["classes"])
    parts = ["<h2>Audit of the generated data</h2>", head]
    if (d / "fig_audit.png").exists():
        parts.append(img_tag(d / "fig_audit.png", "audit per class"))
    return parts + [f"<table><tr>{''.join(f'<th>{c}</th>' for c in cols)}</tr>{body}</table>"]


def write_gtn_report(run_dir: str | Path) -> Path:
    """report.html: the headline (GTN vs real accuracy), fig_accuracy first, then the others."""
    d = Path(run_dir)
    summary = read_json(d / "summary.json") if (d / "summary.json").exists() else {}
    ev = summary.get("eval") or {}
    head = ""
    if ev:
        head = (f"<p class='phase'>T = {ev['steps']}: GTN {ev['gtn_mean']:.3f} ± {ev['gtn_std']:.3f} "
                f"· real data {ev['real_mean']:.3f} ± {ev['real_std']:.3f} (lr {ev['best_lr']:g})</p>")
    parts = [f"<h1>groklab gtn — {html.escape(d.name)}</h1>", head]
    records = read_jsonl(d / "metrics.jsonl")
    if records:
        plot_meta(records, d / "fig_meta.png")
    for name, alt in (("fig_accuracy.png", "accuracy against inner step"),
                      ("fig_samples.png", "generated samples"), ("fig_meta.png", "meta-training"),
                      ("fig_nas.png", "architecture ranking")):
        if (d / name).exists():
            parts.append(img_tag(d / name, alt))
    if (d / "audit.json").exists():
        parts += audit_section(read_json(d / "audit.json"), d)
    rows = [(k, v) for k, v in summary.items() if not isinstance(v, (dict, list))]
    if ev:
        rows += [(f"eval.{k}", v) for k, v in ev.items() if not isinstance(v, (dict, list))]
        rows += [("eval.real_by_lr", json.dumps(ev.get("real_by_lr")))]
    parts += ["<h2>Summary</h2>", table(rows)]
    if (d / "config.json").exists():
        parts += ["<h2>Config</h2>", f"<pre>{html.escape(json.dumps(read_json(d / 'config.json'), indent=2))}</pre>"]
    atomic_write_text(d / "report.html", _page(d.name, parts))
    return d / "report.html"
