"""The corpus's records: every run the forecast learns from, in one compact, documented file.

``records.jsonl.gz`` (gzip of JSON lines, UTF-8; no pickle, nothing that runs code) holds one
run per line::

    {"name": "mlp_scale/0007_p=31_..._s1",        # where the run was, relative to the corpus
     "config": {...},                              # the fully resolved config (config.json)
     "summary": {"status": "early_stopped", "steps_done": 2140,
                 "generalized_at": {"0.9": 1830, "0.99": 2040, ...}},
     "columns": {"step": [0, 20, ...], "train_loss": [...], "train_acc": [...],
                 "val_loss": [...], "val_acc": [...], "weight_norm": [...]}}

Floats are kept to 6 significant digits (the forecast reads nothing finer), a missing value
is ``null``. ``groklab forecast corpus`` writes the file beside the sweeps it ran;
``groklab forecast build`` reads it (or a corpus directory, packed the same way in memory), so
the shipped model (``groklab/forecast/model/``, which ships this file too) is rebuilt bit for
bit without re-running a single run, and ``groklab forecast learn`` adds the user's runs to it.
"""
from __future__ import annotations

import gzip
import io
import json
import math
from pathlib import Path
from typing import Any

from groklab.config import ConfigError, RunConfig

COLUMNS = ("step", "train_loss", "train_acc", "val_loss", "val_acc", "weight_norm")
SUMMARY = ("status", "steps_done", "generalized_at")
FILE = "records.jsonl.gz"


def _num(v) -> float | None:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return None
    return float(f"{v:.6g}")


def pack(run: dict[str, Any], name: str) -> dict[str, Any]:
    """One line of the file from a run (``{"config", "records", "summary"}``, corpus.load_runs)."""
    cols = {k: [_num(r.get(k)) for r in run["records"]] for k in COLUMNS}
    cols["step"] = [int(r["step"]) for r in run["records"]]
    summ = {k: run["summary"].get(k) for k in SUMMARY}
    return {"name": name, "config": run["config"].to_dict(), "summary": summ, "columns": cols}


def unpack(line: dict[str, Any]) -> dict[str, Any]:
    """A run (``{"dir", "config", "records", "summary"}``) from one line of the file."""
    cols = line["columns"]
    n = len(cols["step"])
    recs = [{k: (cols[k][i] if cols[k][i] is not None else math.nan) for k in COLUMNS} for i in range(n)]
    for r in recs:
        r["step"] = int(r["step"])
    return {"dir": line["name"], "config": RunConfig.from_dict(line["config"]), "records": recs,
            "summary": dict(line["summary"])}


def write(runs: list[dict[str, Any]], names: list[str], path: str | Path) -> Path:
    """Write ``runs`` as records.jsonl.gz (deterministic bytes: no time stamp in the gzip header)."""
    from groklab.runs.rundir import atomic_write_bytes
    text = "".join(json.dumps(pack(r, n), sort_keys=True, separators=(",", ":")) + "\n"
                   for r, n in zip(runs, names))
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as f:
        f.write(text.encode())
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def read(path: str | Path) -> list[dict[str, Any]]:
    """Every run in a records file; a one-line ConfigError naming the file and line if damaged."""
    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a records file ({type(e).__name__}: {e})") from None
    runs = []
    for i, ln in enumerate(lines, 1):
        try:
            runs.append(unpack(json.loads(ln)))
        except (ValueError, KeyError, TypeError, IndexError, RecursionError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"{path}, line {i}: not a run record ({msg})") from None
    return runs


def load(source: str | Path) -> list[dict[str, Any]]:
    """Runs from a records file, a directory holding one, or a directory of runs (a corpus, a
    sweep, run directories)."""
    source = Path(source)
    if source.is_file():
        return read(source)
    if (source / FILE).is_file():
        return read(source / FILE)
    return load_dir(source)


def load_dir(source: str | Path) -> list[dict[str, Any]]:
    """Every finished run under a directory, read through the same packing as the records file
    (so a directory and its packed file give the same numbers)."""
    from groklab.forecast.corpus import load_runs
    source = Path(source)
    runs = load_runs(source)
    return [unpack(json.loads(json.dumps(pack(r, _rel(r["dir"], source))))) for r in runs]


def _rel(d: str, root: Path) -> str:
    try:
        return Path(d).relative_to(root).as_posix() or Path(d).name
    except ValueError:
        return Path(d).name
