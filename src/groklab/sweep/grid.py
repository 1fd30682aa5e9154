"""Grid mode: every axis value × every other axis value × every seed, one run directory each.

Layout of a sweep directory::

    spec.toml        the spec as given        sweep.json   fingerprint, points, executor
    points/<id>/     one run directory per point (the layout of ``groklab run``)
    results.csv      one row per finished point (groklab.sweep.table)
    fig_phase*.png, fig_steps*.png, report.html   (groklab.sweep.diagram)

Running the same command again continues the sweep: finished and failed points are read back,
a point killed half-way resumes from its last checkpoint (groklab.sweep.point).
"""
from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

from groklab.config import ConfigError
from groklab.runs.rundir import write_json
from groklab.sweep.executors import run_jobs
from groklab.sweep.point import point_state
from groklab.sweep.spec import Point, Spec
from groklab.sweep.sweepdir import read_meta
from groklab.sweep.table import row_for, write_csv


def check_points(points: list[Point], spec: Spec) -> None:
    """Build every distinct task and model once, so a bad point fails before anything runs."""
    from groklab.api import prepare
    seen = set()
    for p in points:
        d = p.config.to_dict()
        for k in spec.seed_keys:
            s, f = k.split(".")
            d[s][f] = 0
        for k in ("lr", "wd"):  # optimiser values do not change what prepare builds
            d["optim"][k] = 0
        key = json.dumps(d, sort_keys=True)
        if key not in seen:
            seen.add(key)
            try:
                prepare(p.config)
            except ConfigError as e:
                raise ConfigError(f"point {p.id}: {e}") from None


def make_jobs(points: list[Point], out: Path, spec: Spec, use_ensemble: bool,
              parts: int = 1) -> list[dict[str, Any]]:
    """One job per point, or ensembles of points that differ only in what an ensemble can vary."""
    jobs = [{"id": p.id, "dir": str(out / "points" / p.id), "config": p.config.to_dict(),
             "prune": spec.optimize.get("prune") if spec.mode == "optimize" else spec.prune,
             "report": spec.report}
            for p in points]
    if not use_ensemble:
        return jobs
    from groklab.sweep.ensemble import group_jobs
    return [dict(j, report=spec.report) if j.get("kind") == "ensemble" else j
            for j in group_jobs(jobs, parts=parts)]


def run_grid(spec: Spec, out: Path, executor, ensemble: bool | None = None,
             log=None) -> list[dict]:
    """Run (or continue) a grid sweep in ``out``, a sweep directory this process holds
    (``groklab.sweep.sweepdir.open_sweep_dir``); returns the rows of results.csv."""
    out, log = Path(out), log or sys.stdout
    points = spec.points()
    collect_rows(points, out, spec)  # every finished point reads back, or a one-line error now
    todo = [p for p in points if point_state(out / "points" / p.id) not in ("done", "failed")]
    use_ens, why = _want_ensemble(spec, ensemble, executor,
                                  m=max(2, -(-len(todo) // executor.capacity))) if todo else (False, "nothing to run")
    meta = read_meta(out)
    meta.update({"name": spec.name, "mode": "grid", "fingerprint": spec.fingerprint(),
                 "axes": {a.key: a.values for a in spec.axes}, "seeds": spec.seeds,
                 "points": [{"id": p.id, "values": p.values, "seed": p.seed} for p in points],
                 "ensemble": {"used": use_ens, "why": why, "groups": [], "single": []}})
    meta.setdefault("ensemble_fallbacks", [])  # every fallback of every invocation
    write_json(out / "sweep.json", meta)
    jobs = make_jobs(todo, out, spec, use_ens, parts=executor.capacity)
    if use_ens:  # the points that run singly all the same, and why
        from groklab.config import RunConfig
        from groklab.sweep.ensemble import unsupported
        single = [{"id": j["id"], "reason": "a prune rule" if j.get("prune") else
                   unsupported(RunConfig.from_dict(j["config"])) or "no compatible point to group with"}
                  for j in jobs if j.get("kind") != "ensemble"]
        meta["ensemble"]["single"] = single
        write_json(out / "sweep.json", meta)
    print(f"sweep {spec.name}: {len(points)} points, {len(points) - len(todo)} already finished, "
          f"{len(todo)} to run in {len(jobs)} jobs on {type(executor).__name__} "
          f"({executor.capacity} workers; ensemble {'on' if use_ens else 'off'}: {why})",
          file=log, flush=True)
    if use_ens and meta["ensemble"]["single"]:
        print(f"  {len(meta['ensemble']['single'])} point(s) run singly, e.g. "
              f"{meta['ensemble']['single'][0]['id']}: {meta['ensemble']['single'][0]['reason']}",
              file=log, flush=True)
    t0, done = time.perf_counter(), [0]
    groups: dict[str, dict] = {}

    def on_result(r: dict) -> None:
        done[0] += 1
        s = r.get("summary") or {}
        msg = r["error"] if r["status"] == "failed" else f"{s.get('phase')} in {s.get('steps_done')} steps"
        ens = r.get("ensemble")
        if ens and ens["group"] not in groups:
            g = groups[ens["group"]] = {"id": ens["group"], "points": [], "size": ens["size"],
                                        "trained": "singly" if ens["fallback"] else "together",
                                        "fallback": ens["fallback"]}
            if ens["fallback"]:
                print(f"  {ens['group']}: the ensemble failed, its points run singly "
                      f"({ens['fallback']})", file=log, flush=True)
                meta["ensemble_fallbacks"].append({"group": g["id"], "points": g["points"],
                                                   "reason": ens["fallback"],
                                                   "at": time.strftime("%Y-%m-%d %H:%M:%S")})
            meta["ensemble"]["groups"].append(g)
        if ens:
            groups[ens["group"]]["points"].append(r["id"])
        print(f"  [{done[0]}/{len(todo)}] {r['id']}: {r['status']} · {msg}", file=log, flush=True)
        write_csv(out / "results.csv", collect_rows(points, out, spec))
        if ens:
            write_json(out / "sweep.json", meta)

    run_jobs(executor, jobs, on_result)
    fell = [g for g in groups.values() if g["fallback"]]
    ens_info = ("off" if not use_ens else f"{len(groups)} group(s) trained together" if not fell else
                f"{len(groups) - len(fell)} of {len(groups)} group(s) trained together; {len(fell)} fell "
                f"back to single runs ({fell[0]['fallback']})")
    rows = finish(spec, points, out, {"executor": type(executor).__name__, "workers": executor.capacity,
                                      "ensemble": f"{ens_info} ({why})",
                                      "wall seconds (this invocation)": round(time.perf_counter() - t0, 1)})
    print(f"done in {time.perf_counter() - t0:.1f} s: {out / 'results.csv'}, {out / 'report.html'}",
          file=log, flush=True)
    return rows


def _want_ensemble(spec: Spec, flag: bool | None, executor, m: int) -> tuple[bool, str]:
    """(use the ensemble trainer?, why). Only where it is faster: "auto" times ``m`` models
    (one worker's share of the points) against one, here and now (see docs/sweeps.md)."""
    if flag is not None:
        return flag, f"--ensemble {'on' if flag else 'off'}"
    if spec.ensemble != "auto":
        return spec.ensemble == "true", f"the spec says ensemble = {spec.ensemble}"
    from groklab.sweep.ensemble import ensemble_choice
    use, why = ensemble_choice(spec.base, m=min(m, 64))
    return use, f"auto: {why}"


def collect_rows(points: list[Point], out: Path, spec: Spec) -> list[dict]:
    rows = []
    for p in points:
        r = row_for(out / "points" / p.id, p.id, p.values, p.seed, spec.diagram.get("threshold"))
        if r is not None:
            rows.append(r)
    return rows


def finish(spec: Spec, points: list[Point], out: Path, info: dict) -> list[dict]:
    """Write results.csv, the diagrams and report.html from what is on disk."""
    from groklab.sweep.diagram import draw, write_sweep_report
    rows = collect_rows(points, out, spec)
    write_csv(out / "results.csv", rows)
    figures = draw(copy.deepcopy(rows), spec, out) if rows else []
    info = {"points": len(points), "finished": len(rows), **info}
    write_sweep_report(out, spec, rows, figures, info)
    return rows
