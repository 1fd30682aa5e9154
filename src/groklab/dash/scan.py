"""What the dashboard reads: run, sweep and result directories under a root, read while they are
being written.

Nothing here writes, locks or waits: training never depends on the dashboard. Every reader
tolerates what a live or broken directory holds (a JSON file mid-replace, a half-written last
line, a corrupt file, NaN or Infinity, a FIFO or a symlink out of the root, a directory deleted
between two calls) and reports it as a message in the answer instead of raising; files are read
through ``groklab.dash.files``, which refuses what is outside the root or not a regular file.
One bad directory is one entry with an error, never a failed listing.

Kinds of directory, by the files that mark them:
  run     ``config.json`` (groklab.runs.rundir): metrics.jsonl, measures.jsonl (live measures),
          analysis.jsonl (``groklab analyze``), forecast.jsonl (``train.forecast``), summary.json
  sweep   ``sweep.json``, ``spec.toml`` or ``results.csv``: fig_*.png phase diagrams, trials below
  result  anything else with ``fig_*.png`` or ``report.html`` (GTN samples, analyses)
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from groklab.dash import files
from groklab.dash.files import Refused, short

SWEEP_MARKS = ("sweep.json", "spec.toml", "results.csv")
SKIP_DIRS = {"checkpoints", "tensorboard", "mlruns", "wandb", "__pycache__", "node_modules"}
MAX_DEPTH = 6
# A run without summary.json whose metrics.jsonl changed this recently is shown as running.
LIVE_SECONDS = 120.0
MAX_CSV_ROWS = 500
MAX_TEXT = 20000
MAX_CSV_BYTES = 32 << 20  # a results.csv above it is reported, not read (a row is ~0.2 kB)
# At most this much of a JSON-lines file per answer (the rest comes with the next polls), so a
# huge or endless metrics.jsonl cannot exhaust the server's memory in one request.
MAX_READ = 32 << 20
# The JSON-lines files of a run: the answer's key and the query parameter of its token.
SERIES = (("metrics", "metrics.jsonl", "m"), ("measures", "measures.jsonl", "s"),
          ("analysis", "analysis.jsonl", "a"))
# A forecast.jsonl line (groklab.forecast.live): the only keys passed on, each value checked.
FORECAST_LEVELS = ("0.9", "0.99")                   # the thresholds of validation accuracy
FORECAST_NUMBERS = ("step", "budget", "seconds")    # finite numbers
FORECAST_STEPS = ("at", "low", "high")              # {level: finite step or None}


def discover(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """Run, sweep and result directories under ``root`` (sorted; hidden and checkpoint dirs
    skipped; symlinked directories not followed; at most ``MAX_DEPTH`` levels). A run directory
    is not searched further; a sweep directory is, since its trials are runs below it."""
    runs, sweeps, results = [], [], []
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
        d = Path(dirpath)
        depth = len(d.relative_to(root).parts)
        names = set(filenames)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and n not in SKIP_DIRS
                             and depth < MAX_DEPTH)
        if any(m in names for m in SWEEP_MARKS):
            sweeps.append(d)
        elif "config.json" in names:
            runs.append(d)
            dirnames[:] = []
        elif "report.html" in names or any(f.startswith("fig_") and f.endswith(".png") for f in names):
            results.append(d)
    return sorted(runs), sorted(sweeps), sorted(results)


def last_record(root: Path, path: Path, tail: int = 8192, errors: list[str] | None = None) -> dict | None:
    """The last complete record (a JSON object with a numeric step) of a JSON-lines file,
    reading only its tail. A file that is there but refused or unreadable is a message in
    ``errors`` when given."""
    try:
        with files.open_regular(root, path) as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - tail))
            data = fh.read(tail)
    except FileNotFoundError:
        return None
    except OSError as e:
        if errors is not None:
            errors.append(f"{path.name} is not read: {short(e)}")
        return None
    for line in reversed(data.split(b"\n")):
        if line.strip():
            try:
                rec = files.loads(line)
            except ValueError:
                continue  # the half-written last line of a live writer
            if isinstance(rec, dict) and _number(rec.get("step")):
                return rec
    return None


def read_new(root: Path, path: Path, token: str | None) -> dict[str, Any]:
    """Records appended to a JSON-lines file since ``token`` (from the previous answer).

    The token is ``"<inode>:<byte offset>"``: a file replaced by another (a resume truncates
    metrics.jsonl by an atomic rewrite) has a new inode, so the reader starts over and says
    ``reset``. Only whole lines are consumed, at most ``MAX_READ`` bytes per call; unparsable
    whole lines, records without a finite numeric ``step`` and lines longer than ``MAX_READ``
    are counted in ``bad``. Only finite numeric fields are kept.
    Returns {"records", "token", "reset", "bad", "error"}.
    """
    try:
        fh = files.open_regular(root, path)
    except FileNotFoundError:
        return {"records": [], "token": None, "reset": token is not None, "bad": 0, "error": None}
    except OSError as e:
        return {"records": [], "token": None, "reset": token is not None, "bad": 0,
                "error": f"{path.name} is not read: {short(e)}"}
    with fh:
        st = os.fstat(fh.fileno())
        offset, reset = 0, token is not None
        if token:
            ino, _, off = token.partition(":")
            if ino == str(st.st_ino) and off.isdigit() and int(off) <= st.st_size:
                offset, reset = int(off), False
        try:
            fh.seek(offset)
            want = min(st.st_size - offset, MAX_READ)
            data = fh.read(want)
        except OSError as e:
            return {"records": [], "token": token, "reset": False, "bad": 0,
                    "error": f"{path.name} is unreadable ({short(e)})"}
    cut = data.rfind(b"\n") + 1
    records, bad = [], 0
    if cut == 0 and want == MAX_READ:  # one line longer than a whole answer: skip it, count it
        return {"records": [], "token": f"{st.st_ino}:{offset + len(data)}", "reset": reset, "bad": 1,
                "error": None}
    for line in data[:cut].split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = files.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict) and _number(rec.get("step")):
            records.append({k: v for k, v in rec.items() if _number(v)})
        else:
            bad += 1
    return {"records": records, "token": f"{st.st_ino}:{offset + cut}", "reset": reset, "bad": bad,
            "error": None}


def _number(v) -> bool:
    # files.loads turned NaN/Infinity into strings; bools are not numbers on a chart
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num(v):
    return v if _number(v) else None


def _finite(v) -> float | int | None:
    """``v`` if it is a number that JSON and the page can hold (no bool, NaN, ±inf, or an
    integer too large for a float), else None."""
    try:
        return v if _number(v) and math.isfinite(v) else None
    except OverflowError:  # math.isfinite(10**400)
        return None


def forecast_line(rec: Any) -> dict | None:
    """A forecast.jsonl record as the page may use it, or None when it has no numeric step:
    ``step``, ``budget``, ``seconds`` (finite numbers or None) and, for each of
    ``FORECAST_LEVELS``, ``p`` (a probability or None), ``at``/``low``/``high`` (finite steps or
    None) and ``reached`` (a bool or None). Every other key and every other value (strings,
    lists, NaN, out-of-range numbers) is dropped, never passed on."""
    if not isinstance(rec, dict) or _finite(rec.get("step")) is None:
        return None
    out: dict[str, Any] = {k: _finite(rec.get(k)) for k in FORECAST_NUMBERS}

    def level(key: str, check) -> dict:
        got = rec.get(key)
        got = got if isinstance(got, dict) else {}
        return {lv: check(got.get(lv)) for lv in FORECAST_LEVELS}

    out["p"] = level("p", lambda v: v if _finite(v) is not None and 0 <= v <= 1 else None)
    for key in FORECAST_STEPS:
        out[key] = level(key, lambda v: v if _finite(v) is not None and v >= 0 else None)
    out["reached"] = level("reached", lambda v: v if isinstance(v, bool) else None)
    return out


def last_forecast(root: Path, d: Path, errors: list[str] | None = None) -> dict | None:
    """The last complete line of a run's forecast.jsonl (``forecast_line``), or None. Only the
    file's tail is read (``last_record``); a torn or unparsable last line falls back to the line
    before it, as a live writer leaves one."""
    return forecast_line(last_record(root, d / "forecast.jsonl", errors=errors))


def _str(v) -> str | None:
    return None if v is None else v if isinstance(v, str) else json.dumps(v)


def figures(root: Path, d: Path) -> list[dict]:
    """fig_*.png of a directory (regular files inside the root), GTN samples first."""
    try:
        figs = sorted(d.glob("fig_*.png"), key=lambda p: (p.name != "fig_samples.png", p.name))
    except OSError:
        return []
    out = []
    for p in figs:
        st = files.regular_stat(root, p)
        if st is not None:
            out.append({"name": p.stem[4:], "path": rel(root, p), "mtime": st.st_mtime})
    return out


def rel(root: Path, p: Path) -> str:
    return p.relative_to(root).as_posix()


def _mtime(root: Path, p: Path) -> float | None:
    st = files.regular_stat(root, p)
    return st.st_mtime if st else None


def _report(root: Path, d: Path) -> str | None:
    return rel(root, d / "report.html") if files.is_file(root, d / "report.html") else None


def run_status(root: Path, d: Path, summary: dict | None, now: float | None = None) -> str:
    """completed / early_stopped / interrupted / nan (from summary.json), or running, starting,
    stale (metrics stopped changing, no final summary: killed or crashed). The training loop
    writes summary.json with status "running" when it starts; a process killed then never
    rewrites it, so "running" is believed only while metrics.jsonl still changes."""
    now = time.time() if now is None else now
    m, s = _mtime(root, d / "metrics.jsonl"), _mtime(root, d / "summary.json")
    if summary is not None and isinstance(summary.get("status"), str) and summary["status"] != "running":
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
    t, m = _section(cfg, "task"), _section(cfg, "model")
    task = f"{t.get('op')} mod {t.get('p')}" if t.get("name") == "modular" else str(t.get("name", "?"))
    return f"{task} · {m.get('arch', '?')}"


def _read_run(root: Path, d: Path, errors: list[str]) -> tuple[dict | None, dict | None]:
    cfg = files.read_json(root, d / "config.json", errors)
    if cfg is not None and not isinstance(cfg, dict):
        errors.append("config.json is not a JSON object")
        cfg = None
    summary = files.read_json(root, d / "summary.json", errors)
    if summary is not None and not isinstance(summary, dict):
        errors.append("summary.json is not a JSON object")
        summary = None
    return cfg, summary


def run_info(root: Path, d: Path, sweeps: list[Path] = (), read: tuple | None = None) -> dict[str, Any]:
    """One line of the run list: cheap (config, summary and the tail of metrics.jsonl).
    Every value has the type the page expects (numbers are numbers or None)."""
    errors: list[str] = []
    cfg, summary = read if read is not None else _read_run(root, d, errors)
    last = last_record(root, d / "metrics.jsonl") or {}
    cfg = cfg or {}
    steps = _num(_section(cfg, "train").get("steps")) or _num(_section(cfg, "meta").get("steps"))  # run or GTN
    sweep = next((rel(root, s) for s in sweeps if s in d.parents), None)
    return {
        "path": rel(root, d), "name": d.name, "sweep": sweep,
        "status": run_status(root, d, summary), "preset": _str(cfg.get("preset")) or "",
        "task": describe_task(cfg) if cfg else "?", "steps": steps,
        "step": _num(last.get("step")), "train_acc": _num(last.get("train_acc")),
        "val_acc": _num(last.get("val_acc")), "phase": _str((summary or {}).get("phase")),
        "report": _report(root, d),
        "mtime": max(filter(None, (_mtime(root, d / "metrics.jsonl"), _mtime(root, d / "config.json"))),
                     default=None),
        "errors": errors,
    }


def broken_run(root: Path, d: Path, e: Exception) -> dict[str, Any]:
    """The list entry of a run whose reading raised: listed, with the error, never a 500."""
    return {"path": rel(root, d), "name": d.name, "sweep": None, "status": "error", "preset": "",
            "task": "?", "steps": None, "step": None, "train_acc": None, "val_acc": None,
            "phase": None, "report": None, "mtime": None,
            "errors": [f"cannot read this run: {type(e).__name__}: {short(e)}"]}


def markers(summary: dict | None) -> list[dict]:
    """Vertical lines for the charts: the progress-measure phase boundaries ``phases``
    {name: step} and the steps at which train / validation reach the phase threshold."""
    if not isinstance(summary, dict):
        return []
    out = []
    phases = summary.get("phases")
    if isinstance(phases, dict):
        out += [{"step": s, "label": str(k).replace("_", " "), "kind": "phase"}
                for k, s in phases.items() if _number(s)]
    thr = _num(summary.get("phase_threshold")) or 0.9
    for key, label, kind in (("memorized_at", "train", "train"), ("generalized_at", "val", "val")):
        s = (summary.get(key) or {}).get(str(thr)) if isinstance(summary.get(key), dict) else None
        if _number(s):
            out.append({"step": s, "label": f"{label} ≥ {thr}", "kind": kind})
    return out


def run_detail(root: Path, d: Path, mtok: str | None = None, stok: str | None = None,
               atok: str | None = None) -> dict:
    """A run's config, summary, markers, figures, its last forecast (``last_forecast``, None
    without forecast.jsonl) and the metrics / measures / analysis records new since the tokens
    of the previous answer (all of them when the tokens are None)."""
    root = Path(root).resolve()
    with files.scope():
        return _run_detail(root, d, mtok, stok, atok)


def _run_detail(root: Path, d: Path, mtok: str | None, stok: str | None, atok: str | None) -> dict:
    errors: list[str] = []
    cfg, summary = _read_run(root, d, errors)
    series = {}
    for (key, name, _), tok in zip(SERIES, (mtok, stok, atok)):
        got = series[key] = read_new(root, d / name, tok)
        err = got.pop("error")
        if err:
            errors.append(err)
        if got["bad"]:
            errors.append(f"{name}: {got['bad']} unreadable line(s) skipped (corrupt file?)")
    fc = last_forecast(root, d, errors)
    info = run_info(root, d, read=(cfg, summary))
    return {**info, "errors": errors, "config": cfg, "summary": summary,
            "markers": markers(summary), "figures": figures(root, d), "forecast": fc, **series}


def sweep_info(root: Path, d: Path) -> dict[str, Any]:
    errors: list[str] = []
    return {"path": rel(root, d), "name": d.name, "trials": _count_rows(root, d / "results.csv", errors),
            "report": _report(root, d), "figures": figures(root, d), "mtime": _dir_mtime(d),
            "errors": errors}


def _dir_mtime(d: Path) -> float | None:
    try:
        return d.stat().st_mtime
    except OSError:
        return None


def _count_rows(root: Path, p: Path, errors: list[str]) -> int | None:
    """Non-blank lines of a results.csv less its header, read in 1 MB pieces (iterating the
    file's lines would hold a line without newline whole), or None; a file over
    ``MAX_CSV_BYTES`` is a message in ``errors``, not read."""
    try:
        with files.open_regular(root, p) as fh:
            files.check_size(fh, p.name, MAX_CSV_BYTES)
            rows, filled = 0, False  # filled: the line being read has a non-blank byte
            while chunk := fh.read(1 << 20):
                *whole, rest = chunk.split(b"\n")
                for line in whole:
                    rows += filled or bool(line.strip())
                    filled = False
                filled = filled or bool(rest.strip())
            return max(0, rows + filled - 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        errors.append(f"{p.name} is not read: {short(e)}")
        return None


def sweep_detail(root: Path, d: Path) -> dict[str, Any]:
    """A sweep's figures (phase diagrams), its results table (first ``MAX_CSV_ROWS`` rows) and
    its spec text."""
    root = Path(root).resolve()
    with files.scope():
        return _sweep_detail(root, d)


def _sweep_detail(root: Path, d: Path) -> dict[str, Any]:
    info = sweep_info(root, d)
    errors: list[str] = info.pop("errors")
    header, rows = [], []
    try:
        if info["trials"] is None:  # missing or refused (the reason is in errors already)
            raise FileNotFoundError
        text = files.read_text(root, d / "results.csv", MAX_CSV_BYTES)
        table = []
        for row in csv.reader(io.StringIO(text)):
            table.append(row)
            if len(table) > MAX_CSV_ROWS:
                break
        if table:
            header, rows = table[0], table[1:MAX_CSV_ROWS + 1]
    except FileNotFoundError:
        pass
    except (OSError, csv.Error) as e:
        errors.append(f"results.csv is {'not read' if isinstance(e, Refused) else 'unreadable'} ({short(e)})")
    spec = None
    for name in ("spec.toml", "sweep.json"):  # the spec as the user wrote it, if there
        try:
            spec = {"name": name, "text": files.read_text(root, d / name, MAX_TEXT)}
            break
        except FileNotFoundError:
            continue
        except OSError as e:
            errors.append(f"{name} is not read ({short(e)})")
    return {**info, "header": header, "rows": rows, "spec": spec, "errors": errors}


def result_info(root: Path, d: Path) -> dict[str, Any]:
    return {"path": rel(root, d), "name": d.name, "figures": figures(root, d), "report": _report(root, d)}


def _guarded(fn, root: Path, d: Path, *args) -> dict[str, Any]:
    try:
        return fn(root, d, *args)
    except Exception as e:  # one bad directory is one entry with an error, not a failed page
        return {**broken_run(root, d, e), "trials": None, "figures": []}


def listing(root: Path) -> dict[str, Any]:
    """Everything the page's side bar shows; a missing root is a message, not an exception."""
    root = Path(root).resolve()
    if not root.is_dir():
        return {"root": str(root), "runs": [], "sweeps": [], "results": [],
                "error": f"root directory {str(root)!r} does not exist (any more)"}
    runs, sweeps, results = discover(root)
    with files.scope():
        return {"root": str(root), "runs": [_guarded(run_info, root, d, sweeps) for d in runs],
                "sweeps": [_guarded(sweep_info, root, d) for d in sweeps],
                "results": [_guarded(result_info, root, d) for d in results], "error": None,
                "time": time.time()}
