"""A self-contained ``report.html``: figures inlined as base64, no script or font from outside.

The first figure is the one a person wants first (the curves); then the summary table, then any
``fig_*.png`` other stages wrote into the run directory, then the full config.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from groklab.runs.rundir import atomic_write_text, read_json

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}
img{max-width:100%}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}
.phase{font-size:1.4em;font-weight:600}"""


def img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def table(rows: list[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def write_run_report(run_dir: str | Path) -> Path:
    d = Path(run_dir)
    summary = read_json(d / "summary.json") if (d / "summary.json").exists() else {}
    config = read_json(d / "config.json")
    parts = [f"<h1>groklab run — {html.escape(d.name)}</h1>",
             f'<p class="phase">phase: {html.escape(str(summary.get("phase", "?")))} '
             f'· final validation accuracy {summary.get("final_val_acc")}</p>']
    if (d / "curves.png").exists():
        parts.append(img_tag(d / "curves.png", "accuracy and loss curves"))
    rows = [("status", summary.get("status")), ("steps done", summary.get("steps_done")),
            ("wall seconds", summary.get("wall_seconds"))]
    for kind in ("memorized_at", "generalized_at"):
        for thr, step in (summary.get(kind) or {}).items():
            rows.append((f"{kind}[{thr}]", step))
    for k in ("final_train_acc", "final_val_acc", "final_train_loss", "final_val_loss", "message"):
        rows.append((k, summary.get(k)))
    if summary.get("phases"):
        rows.append(("progress phases", json.dumps(summary["phases"])))
    parts += ["<h2>Summary</h2>", table(rows)]
    figs = sorted(d.glob("fig_*.png"))
    if figs:
        parts.append("<h2>Progress measures</h2>")
        parts += [img_tag(f, f.stem) for f in figs]
    parts += ["<h2>Config</h2>", f"<pre>{html.escape(json.dumps(config, indent=2))}</pre>"]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(d.name)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    atomic_write_text(d / "report.html", page)
    return d / "report.html"


def write_report(run_dir: str | Path) -> Path:
    """Draw ``curves.png`` from metrics.jsonl and write ``report.html``."""
    from groklab.report.plots import plot_curves
    from groklab.runs.rundir import read_jsonl
    d = Path(run_dir)
    records = read_jsonl(d / "metrics.jsonl")
    summary = read_json(d / "summary.json") if (d / "summary.json").exists() else {}
    cfg = read_json(d / "config.json")
    if records:
        t = cfg["task"]
        title = f"{t['op']} mod {t['p']}" if t["name"] == "modular" else t["name"]
        plot_curves(records, summary, d / "curves.png", title=f"{cfg.get('preset') or 'run'}: {title}")
    return write_run_report(d)
