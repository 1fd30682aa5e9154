"""A self-contained ``report.html``: figures inlined as base64, no script or font from outside.

The first figure is the one a person wants first (the curves); then the summary table (numbers
formatted: 0.9995, 2,760, 126.3 s), the progress-measure phases as a table with their rule as a
footnote, any ``fig_*.png`` other stages wrote into the run directory, then the resolved config
as a table of dotted keys (``optim.lr``), as ``groklab presets`` and ``--set`` name them.
Every value is escaped: the page is also served by ``groklab dash``.
"""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from groklab.runs.read import read_metrics, read_object, read_summary
from groklab.runs.rundir import atomic_write_text

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%}.note{font-size:.85em;color:#555;max-width:60em}
.phase{font-size:1.4em;font-weight:600}"""

# summary.json["phases"] keys (groklab.measure.phases.segment) in the order they happen
PHASE_NAMES = {"memorization_end": "memorization ends", "val_loss_peak": "validation loss peaks",
               "circuit_formation_end": "circuit formation ends",
               "weight_decay_peak": "weight decay is fastest", "cleanup_end": "cleanup ends"}


def fmt(v, unit: str = "") -> str:
    """A number as a person reads it: integers with thousands separators (2,760), floats to
    four significant digits (0.9995, 1.234e-05), NaN/inf as such; anything else as text."""
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        text = f"{v:,}"
    elif not math.isfinite(v):
        text = str(v)
    elif 1000 <= abs(v) < 1e6:
        text = f"{v:,.1f}"
    else:
        text = f"{v:.4g}"
    return text + unit


def img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def table(rows: list[tuple[str, object]], head: tuple[str, str] | None = None) -> str:
    def cell(v):
        num = isinstance(v, (int, float)) and not isinstance(v, bool)
        return f'<td class="num">{html.escape(fmt(v))}</td>' if num else f"<td>{html.escape(fmt(v))}</td>"
    top = f"<tr><th>{html.escape(head[0])}</th><th>{html.escape(head[1])}</th></tr>" if head else ""
    body = "".join(f"<tr><th>{html.escape(str(k))}</th>{cell(v)}</tr>" for k, v in rows)
    return f"<table>{top}{body}</table>"


def phases_html(phases: dict) -> str:
    """The phase boundaries as a table (step of each), the rule that found them as a footnote."""
    keys = [k for k in PHASE_NAMES if k in phases] + [k for k in phases if k not in PHASE_NAMES and k != "rule"]
    rows = [(PHASE_NAMES.get(k, str(k).replace("_", " ")), phases[k]) for k in keys]
    out = "<h2>Progress phases<sup>1</sup></h2>" + table(rows, ("boundary", "step"))
    if phases.get("rule"):
        out += f'<p class="note"><sup>1</sup> Nanda et al. 2023 (arXiv 2301.05217), as groklab ' \
               f'finds them: {html.escape(str(phases["rule"]))}. Steps of an unreached boundary are –.</p>'
    return out


def cost_html(cost: dict, cost_at: dict) -> str:
    """What the run cost (runs.cost) and what it cost to reach each validation threshold."""
    j = cost.get("joules")
    energy = f"{fmt(j, ' J')} ({cost.get('method')})" if j is not None else \
        f"missing: {cost.get('energy_missing')}"
    rows = [("FLOPs", cost.get("flops")), ("CPU seconds", cost.get("cpu_seconds")),
            ("wall seconds", cost.get("wall_seconds")), ("energy", energy),
            ("CO₂e", f"{fmt(cost.get('co2_g'), ' g')} ({cost.get('country')}: {cost.get('carbon_source')})")]
    if cost.get("gpu_joules") is not None:
        rows.insert(4, ("GPU energy (NVML)", fmt(cost["gpu_joules"], " J")))
    head = ("<tr><th>validation ≥</th><th>step</th><th>FLOPs</th><th>CPU s</th><th>wall s</th><th>J</th>"
            "<th>g CO₂e</th></tr>")
    body = "".join(
        f"<tr><th>{html.escape(str(t))}</th>" + "".join(
            f'<td class="num">{html.escape(fmt((c if isinstance(c, dict) else {}).get(k)))}</td>'
            for k in ("step", "flops", "cpu_seconds", "wall_seconds", "joules", "co2_g")) + "</tr>"
        for t, c in cost_at.items())
    note = (f'<p class="note">FLOPs: {html.escape(str(cost.get("flops_note", "")))}. Energy "rapl" is '
            f'measured (CPU package counters, shared with whatever else ran); "estimated" is CodeCarbon\'s '
            f'model; at a threshold an estimate is prorated by CPU seconds.</p>')
    return "<h2>Cost</h2>" + table(rows) + "<h3>What it cost to generalize</h3>" + \
        f"<table>{head}{body}</table>" + note


def dotted(config, prefix: str = "") -> list[tuple[str, object]]:
    """{"optim": {"lr": 0.001}} -> [("optim.lr", 0.001)]; lists as JSON text."""
    if not isinstance(config, dict):
        return [(prefix or "config", config if isinstance(config, (int, float, str)) else json.dumps(config))]
    out = []
    for k, v in config.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out += dotted(v, key)
        else:
            out.append((key, v if v is None or isinstance(v, (int, float, str)) else json.dumps(v)))
    return out


def own_metric_rows(d: Path) -> list[tuple[str, object]]:
    """("final val_<name>", value) for each metric the model logs itself (a GP's ELBO terms,
    TARNet's PEHE), from the last record of metrics.jsonl."""
    from groklab.report.plots import own_metrics
    records = read_metrics(d / "metrics.jsonl")
    return [(f"final val_{n}", records[-1][f"val_{n}"]) for n in own_metrics(records, limit=50)]


def write_run_report(run_dir: str | Path) -> Path:
    """The page of ``run_dir``. It shows whatever summary.json holds, escaped (only its shape is
    checked: an object, objects where it iterates), so that even an odd value can be seen."""
    d = Path(run_dir)
    summary = read_object(d / "summary.json") if (d / "summary.json").exists() else {}
    config = read_object(d / "config.json")
    parts = [f"<h1>groklab run — {html.escape(d.name)}</h1>",
             f'<p class="phase">phase: {html.escape(str(summary.get("phase", "?")))} '
             f'· final validation accuracy {html.escape(fmt(summary.get("final_val_acc")))}</p>']
    if (d / "curves.png").exists():
        parts.append(img_tag(d / "curves.png", "accuracy and loss curves"))
    wall = summary.get("wall_seconds")
    rows = [("status", summary.get("status")), ("steps done", summary.get("steps_done")),
            ("wall time", fmt(wall, " s") if isinstance(wall, (int, float)) else wall)]
    for kind in ("memorized_at", "generalized_at"):
        events = summary.get(kind)
        for thr, step in (events.items() if isinstance(events, dict) else []):
            rows.append((f"{kind}[{thr}]", step))
    for k in ("final_train_acc", "final_val_acc", "best_val_acc", "final_train_loss", "final_val_loss",
              "key_freqs", "message"):
        if k in summary:
            v = summary[k]
            rows.append((k, json.dumps(v) if isinstance(v, list) else v))
    rows += own_metric_rows(d)
    parts += ["<h2>Summary</h2>", table(rows)]
    if isinstance(summary.get("cost"), dict):
        cost_at = summary.get("cost_at")
        parts.append(cost_html(summary["cost"], cost_at if isinstance(cost_at, dict) else {}))
    if isinstance(summary.get("phases"), dict) and summary["phases"]:
        parts.append(phases_html(summary["phases"]))
    figs = sorted(d.glob("fig_*.png"))
    if figs:
        parts.append("<h2>Progress measures</h2>")
        parts += [img_tag(f, f.stem) for f in figs]
    parts += ["<h2>Config</h2>", '<p class="note">the resolved config (config.json): the run is '
              'reproducible from it alone</p>', table(dotted(config), ("key", "value"))]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(d.name)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    atomic_write_text(d / "report.html", page)
    return d / "report.html"


def write_report(run_dir: str | Path) -> Path:
    """Draw ``curves.png`` from metrics.jsonl and write ``report.html``."""
    from groklab.report.plots import plot_curves
    from groklab.runs.rundir import read_config
    d = Path(run_dir)
    records = read_metrics(d / "metrics.jsonl")
    summary = read_summary(d / "summary.json") if (d / "summary.json").exists() else {}
    cfg = read_config(d)
    if records:
        t = cfg.task
        title = f"{t.op} mod {t.p}" if t.name == "modular" else t.name
        plot_curves(records, summary, d / "curves.png", title=f"{cfg.preset or 'run'}: {title}")
    return write_run_report(d)
