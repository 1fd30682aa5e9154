"""What the dashboard reads: run, sweep and result directories under a root, read while they are
being written.

Nothing here writes, locks or waits: training never depends on the dashboard. Every reader
tolerates what a live or broken directory holds (a JSON file mid-replace, a half-written last
line, a corrupt file, a directory deleted between two calls) and reports it as a message in
the answer instead of raising.

Kinds of directory, by the files that mark them:
  run     ``config.json`` (groklab.runs.rundir): metrics.jsonl, measures.jsonl, summary.json
  sweep   ``sweep.json``, ``spec.toml`` or ``results.csv``: fig_*.png phase diagrams, trials below
  result  anything else with ``fig_*.png`` or ``report.html`` (GTN samples, analyses)
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Any

SWEEP_MARKS = ("sweep.json", "spec.toml", "results.csv")
SKIP_DIRS = {"checkpoints", "tensorboard", "mlruns", "wandb", "__pycache__", "node_modules"}
MAX_DEPTH = 6
# A run without summary.json whose metrics.jsonl changed this recently is shown as running.
LIVE_SECONDS = 120.0
MAX_CSV_ROWS = 500
MAX_TEXT = 20000


def discover(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """Run, sweep and result directories under ``root`` (sorted; hidden and checkpoint dirs
    skipped; at most ``MAX_DEPTH`` levels). A run directory is not searched further; a sweep
    directory is, since its trials are runs below it."""
    runs, sweeps, results = [], [], []
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
        d = Path(dirpath)
        depth = len(d.relative_to(root).parts)
        files = set(filenames)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and n not in SKIP_DIRS
                             and depth < MAX_DEPTH)
        if any(m in files for m in SWEEP_MARKS):
            sweeps.append(d)
        elif "config.json" in files:
            runs.append(d)
            dirnames[:] = []
        elif "report.html" in files or any(f.startswith("fig_") and f.endswith(".png") for f in files):
            results.append(d)
    return sorted(runs), sorted(sweeps), sorted(results)


def read_json_safe(path: Path, errors: list[str]) -> Any:
    """Parsed JSON, or None with a message in ``errors`` (missing files are not an error)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        errors.append(f"{path.name} is unreadable ({_short(e)}); is it half written or corrupt?")
        return None


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:160] if str(e) else type(e).__name__


def last_record(path: Path, tail: int = 8192) -> dict | None:
    """The last complete JSON line of a JSON-lines file, reading only its tail."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - tail))
            data = fh.read()
    except OSError:
        return None
    for line in reversed(data.split(b"\n")):
        if line.strip():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # the half-written last line of a live writer
            if isinstance(rec, dict):
                return rec
    return None


def read_new(path: Path, token: str | None) -> dict[str, Any]:
    """Records appended to a JSON-lines file since ``token`` (from the previous answer).

    The token is ``"<inode>:<byte offset>"``: a file replaced by another (a resume truncates
    metrics.jsonl by an atomic rewrite) has a new inode, so the reader starts over and says
    ``reset``. Only whole lines are consumed; unparsable whole lines are counted in ``bad``.
    Returns {"records", "token", "reset", "bad"}.
    """
    try:
        st = path.stat()
    except OSError:
        return {"records": [], "token": None, "reset": token is not None, "bad": 0}
    offset, reset = 0, token is not None
    if token:
        ino, _, off = token.partition(":")
        if ino == str(st.st_ino) and off.isdigit() and int(off) <= st.st_size:
            offset, reset = int(off), False
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(st.st_size - offset)
    except OSError:
        return {"records": [], "token": token, "reset": False, "bad": 0}
    cut = data.rfind(b"\n") + 1
    records, bad = [], 0
    for line in data[:cut].split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), (int, float)):
            records.append({k: v for k, v in rec.items() if _number(v)})
        else:
            bad += 1
    return {"records": records, "token": f"{st.st_ino}:{offset + cut}", "reset": reset, "bad": bad}


def _number(v) -> bool:
    # JSON has no NaN, but Python's json writes NaN/Infinity; keep them out of the page's JSON
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def figures(root: Path, d: Path) -> list[dict]:
    """fig_*.png of a directory, GTN samples first (the figure a person wants first)."""
    try:
        figs = sorted(d.glob("fig_*.png"), key=lambda p: (p.name != "fig_samples.png", p.name))
        return [{"name": p.stem[4:], "path": rel(root, p), "mtime": _mtime(p)} for p in figs]
    except OSError:
        return []


def rel(root: Path, p: Path) -> str:
    return p.relative_to(root).as_posix()


def _mtime(p: Path) -> float | None:
    try:
        return p.stat().st_mtime
    except OSError:
        return None


def run_status(d: Path, summary: dict | None, now: float | None = None) -> str:
    """completed / early_stopped / interrupted / nan (from summary.json), or running, starting,
    stale (metrics stopped changing, no summary: killed or crashed)."""
    now = time.time() if now is None else now
    m, s = _mtime(d / "metrics.jsonl"), _mtime(d / "summary.json")
    if summary is not None and isinstance(summary.get("status"), str):
        if m is not None and s is not None and m > s + 1.0:  # resumed: summary is the old one
            return "running" if now - m < LIVE_SECONDS else "stale"
        return summary["status"]
    if m is None:
        return "starting"
    return "running" if now - m < LIVE_SECONDS else "stale"


def _section(cfg: dict, name: str) -> dict:
    return cfg.get(name) if isinstance(cfg.get(name), dict) else {}


def describe_task(cfg: dict) -> str:
    if "task" not in cfg and "generator" in cfg:  # a GTN run (groklab.gtn.config)
        return f"GTN · {_section(cfg, 'data').get('name', '?')} · {_section(cfg, 'learner').get('kind', '?')}"
    t = cfg.get("task") if isinstance(cfg.get("task"), dict) else {}
    m = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    task = f"{t.get('op')} mod {t.get('p')}" if t.get("name") == "modular" else str(t.get("name", "?"))
    return f"{task} · {m.get('arch', '?')}"


def run_info(root: Path, d: Path, sweeps: list[Path] = ()) -> dict[str, Any]:
    """One line of the run list: cheap (config, summary and the tail of metrics.jsonl)."""
    errors: list[str] = []
    cfg = read_json_safe(d / "config.json", errors)
    if cfg is not None and not isinstance(cfg, dict):
        errors.append("config.json is not a JSON object")
        cfg = None
    summary = read_json_safe(d / "summary.json", errors)
    summary = summary if isinstance(summary, dict) else None
    last = last_record(d / "metrics.jsonl") or {}
    cfg = cfg or {}
    steps = _section(cfg, "train").get("steps") or _section(cfg, "meta").get("steps")  # run or GTN
    sweep = next((rel(root, s) for s in sweeps if s in d.parents), None)
    return {
        "path": rel(root, d), "name": d.name, "sweep": sweep,
        "status": run_status(d, summary), "preset": cfg.get("preset") or "",
        "task": describe_task(cfg) if cfg else "?", "steps": steps,
        "step": last.get("step"), "train_acc": _num(last.get("train_acc")),
        "val_acc": _num(last.get("val_acc")), "phase": (summary or {}).get("phase"),
        "report": rel(root, d / "report.html") if (d / "report.html").is_file() else None,
        "mtime": max(filter(None, (_mtime(d / "metrics.jsonl"), _mtime(d / "config.json"))), default=None),
        "errors": errors,
    }


def _num(v):
    return v if _number(v) else None


def markers(summary: dict | None) -> list[dict]:
    """Vertical lines for the charts: the progress-measure phase boundaries ``phases``
    {name: step} and the steps at which train / validation reach the phase threshold."""
    if not isinstance(summary, dict):
        return []
    out = []
    phases = summary.get("phases")
    if isinstance(phases, dict):
        out += [{"step": s, "label": str(k), "kind": "phase"} for k, s in phases.items() if _number(s)]
    thr = str(summary.get("phase_threshold", 0.9))
    for key, label, kind in (("memorized_at", "train", "train"), ("generalized_at", "val", "val")):
        s = (summary.get(key) or {}).get(thr) if isinstance(summary.get(key), dict) else None
        if _number(s):
            out.append({"step": s, "label": f"{label} ≥ {thr}", "kind": kind})
    return out


def run_detail(root: Path, d: Path, mtok: str | None = None, stok: str | None = None) -> dict:
    """A run's config, summary, markers, figures and the metrics/measures records new since
    the tokens of the previous answer (all of them when the tokens are None)."""
    errors: list[str] = []
    cfg = read_json_safe(d / "config.json", errors)
    summary = read_json_safe(d / "summary.json", errors)
    summary = summary if isinstance(summary, dict) else None
    metrics = read_new(d / "metrics.jsonl", mtok)
    measures = read_new(d / "measures.jsonl", stok)
    for name, got in (("metrics.jsonl", metrics), ("measures.jsonl", measures)):
        if got["bad"]:
            errors.append(f"{name}: {got['bad']} unreadable line(s) skipped (corrupt file?)")
    info = run_info(root, d)
    return {**info, "errors": info["errors"] + [e for e in errors if e not in info["errors"]],
            "config": cfg if isinstance(cfg, dict) else None, "summary": summary,
            "markers": markers(summary), "figures": figures(root, d),
            "metrics": metrics, "measures": measures}


def sweep_info(root: Path, d: Path) -> dict[str, Any]:
    rows = _count_rows(d / "results.csv")
    return {"path": rel(root, d), "name": d.name, "trials": rows,
            "report": rel(root, d / "report.html") if (d / "report.html").is_file() else None,
            "figures": figures(root, d), "mtime": _mtime(d)}


def _count_rows(p: Path) -> int | None:
    try:
        with open(p, "rb") as fh:
            return max(0, sum(1 for line in fh if line.strip()) - 1)
    except OSError:
        return None


def sweep_detail(root: Path, d: Path) -> dict[str, Any]:
    """A sweep's figures (phase diagrams), its results table (first ``MAX_CSV_ROWS`` rows) and
    its spec text."""
    errors: list[str] = []
    header, rows = [], []
    p = d / "results.csv"
    if p.is_file():
        try:
            table = list(csv.reader(io.StringIO(p.read_text(errors="replace"))))
            if table:
                header, rows = table[0], table[1:MAX_CSV_ROWS + 1]
        except (OSError, csv.Error) as e:
            errors.append(f"results.csv is unreadable ({_short(e)})")
    spec = None
    for name in ("spec.toml", "sweep.json"):  # the spec as the user wrote it, if there
        try:
            spec = {"name": name, "text": (d / name).read_text(errors="replace")[:MAX_TEXT]}
            break
        except OSError:
            continue
    return {**sweep_info(root, d), "header": header, "rows": rows, "spec": spec, "errors": errors}


def result_info(root: Path, d: Path) -> dict[str, Any]:
    return {"path": rel(root, d), "name": d.name, "figures": figures(root, d),
            "report": rel(root, d / "report.html") if (d / "report.html").is_file() else None}


def listing(root: Path) -> dict[str, Any]:
    """Everything the page's side bar shows; a missing root is a message, not an exception."""
    root = Path(root)
    if not root.is_dir():
        return {"root": str(root), "runs": [], "sweeps": [], "results": [],
                "error": f"root directory {str(root)!r} does not exist (any more)"}
    runs, sweeps, results = discover(root)
    return {"root": str(root), "runs": [run_info(root, d, sweeps) for d in runs],
            "sweeps": [sweep_info(root, d) for d in sweeps],
            "results": [result_info(root, d) for d in results], "error": None, "time": time.time()}
