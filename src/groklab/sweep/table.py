"""The table of a sweep: one row per point (or trial) from its run directory, as ``results.csv``.

Columns: ``id``, ``seed``, one column per axis key, ``status`` (completed, early_stopped, pruned,
"pruned (forecast)" when the forecast pruner stopped it, "settled (forecast)" when it stopped it with
the phase label settled, failed), ``phase`` (Liu et al. 2022's label at
``train.phase_threshold``), ``memorized_at_T`` and ``generalized_at_T`` for T in 0.5, 0.9, 0.95, 0.99
and the diagram threshold (empty = never reached), ``steps_done``, ``wall_seconds``, ``final_train_acc``,
``final_val_acc``, ``best_val_acc``, the run's cost (``flops``, ``cpu_seconds``, ``joules``, ``energy_method``,
``co2_g``: ``groklab.runs.cost``), ``error``. Rebuilt from disk after every finished point, so it is always
complete for what has finished.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from groklab.measure.events import THRESHOLDS, EventTracker
from groklab.runs.read import RunFileError, read_metrics
from groklab.runs.rundir import atomic_write_text
from groklab.sweep.point import HINT, point_state, read_result

TAIL = ["steps_done", "wall_seconds", "final_train_acc", "final_val_acc", "best_val_acc", "error"]
COST = {"flops": "flops", "cpu_seconds": "cpu_seconds", "joules": "joules", "energy_method": "method",
        "co2_g": "co2_g"}  # column -> summary.json cost key


def thresholds(extra: float | None = None) -> list[float]:
    return sorted(set(THRESHOLDS) | ({extra} if extra is not None else set()))


def row_for(point_dir: Path, point_id: str, values: dict[str, Any], seed: int,
            threshold: float | None = None) -> dict[str, Any] | None:
    """The table row of a finished point, or None if it has not finished."""
    if point_state(point_dir) not in ("done", "failed"):
        return None
    res = read_result(point_id, point_dir)
    s = res["summary"] or {}
    status = res["status"]
    if s.get("pruned_by") == "forecast":
        status = "settled (forecast)" if s.get("settled") else "pruned (forecast)"
    row: dict[str, Any] = {"id": point_id, "seed": seed, **values, "status": status,
                           "phase": s.get("phase", "") if res["status"] != "failed" else "failed"}
    mem, gen = dict(s.get("memorized_at") or {}), dict(s.get("generalized_at") or {})
    ths = thresholds(threshold)
    if any(str(t) not in gen for t in ths) and (point_dir / "metrics.jsonl").exists():
        try:
            ev = EventTracker.from_records(read_metrics(point_dir / "metrics.jsonl"), ths)
        except RunFileError as e:
            raise RunFileError(f"{e}{HINT}") from None
        mem, gen = {**ev.memorized_at, **mem}, {**ev.generalized_at, **gen}
    for t in ths:
        row[f"memorized_at_{t}"] = mem.get(str(t))
        row[f"generalized_at_{t}"] = gen.get(str(t))
    for k in TAIL[:-1]:
        row[k] = s.get(k)
    cost = s.get("cost") if isinstance(s.get("cost"), dict) else {}
    for col, key in COST.items():
        row[col] = cost.get(key)
    row["error"] = res["error"] or ""
    return row


def total_cost(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The sweep's cost: FLOPs, CPU seconds, wall seconds, joules and CO₂ summed over the rows
    (results.csv rows or their dicts) that have one; joules and CO₂ only if every such row has
    them, labelled "estimated" if any row's energy was."""
    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return None
    costed = [r for r in rows if num(r.get("flops")) is not None]
    joules = [num(r.get("joules")) for r in costed]
    known = bool(costed) and all(j is not None for j in joules)
    methods = {r.get("energy_method") for r in costed}
    return {"rows": len(rows), "rows_with_cost": len(costed),
            "flops": sum(num(r["flops"]) for r in costed),
            "cpu_seconds": round(sum(num(r.get("cpu_seconds")) or 0 for r in costed), 3),
            "wall_seconds": round(sum(num(r.get("wall_seconds")) or 0 for r in rows), 3),
            "joules": round(sum(joules), 3) if known else None,
            "method": ("estimated" if "estimated" in methods else "rapl") if known else None,
            "co2_g": float(f"{sum(num(r.get('co2_g')) or 0 for r in costed):.6g}") if known else None}


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        atomic_write_text(path, "")
        return
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
