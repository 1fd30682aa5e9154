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
from typing import Any, Callable

from groklab.config import ConfigError
from groklab.runs.rundir import atomic_write_text, read_json, write_json
from groklab.sweep.point import point_state
from groklab.sweep.spec import Point, Spec
from groklab.sweep.table import row_for, write_csv


def open_sweep_dir(out: Path, spec: Spec, spec_text: str | None) -> None:
    """Create ``out`` or check that it holds this same spec (by fingerprint)."""
    meta = out / "sweep.json"
    if meta.is_file():
        old = read_json(meta).get("fingerprint")
        if old != spec.fingerprint():
            raise ConfigError(f"{str(out)!r} holds a different sweep (fingerprint {old}, this spec "
                              f"{spec.fingerprint()}); choose another --out")
        return
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{str(out)!r} exists and is not a sweep directory; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    if spec_text is not None:
        atomic_write_text(out / "spec.toml", spec_text)
    write_json(meta, {"name": spec.name, "mode": spec.mode, "fingerprint": spec.fingerprint()})


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
             "prune": spec.optimize.get("prune") if spec.mode == "optimize" else None}
            for p in points]
    if not use_ensemble:
        return jobs
    from groklab.sweep.ensemble import group_jobs
    return group_jobs(jobs, parts=parts)


def run_jobs(executor, jobs: list[dict], on_result: Callable[[dict], None],
             stop: Callable[[], bool] = lambda: False) -> None:
    """Keep ``executor.capacity`` jobs in flight until all are done; ``on_result`` per point."""
    queue = list(jobs)
    try:
        while queue or executor.pending:
            while queue and executor.pending < executor.capacity and not stop():
                executor.submit(queue.pop(0))
            if not executor.pending:
                break
            _, results = executor.next_done()
            for r in results:
                on_result(r)
    except BaseException:
        executor.close(cancel=True)
        raise
    executor.close()


def run_grid(spec: Spec, out: Path, executor, spec_text: str | None = None,
             ensemble: bool | None = None, log=sys.stdout) -> list[dict]:
    """Run (or continue) a grid sweep into ``out``; returns the rows of results.csv."""
    out = Path(out)
    points = spec.points()
    check_points(points, spec)
    open_sweep_dir(out, spec, spec_text)
    write_json(out / "sweep.json", {"name": spec.name, "mode": "grid", "fingerprint": spec.fingerprint(),
                                    "axes": {a.key: a.values for a in spec.axes}, "seeds": spec.seeds,
                                    "points": [{"id": p.id, "values": p.values, "seed": p.seed}
                                               for p in points]})
    todo = [p for p in points if point_state(out / "points" / p.id) not in ("done", "failed")]
    use_ens = bool(todo) and _want_ensemble(spec, ensemble, executor,
                                            m=max(2, -(-len(todo) // executor.capacity)))
    jobs = make_jobs(todo, out, spec, use_ens, parts=executor.capacity)
    print(f"sweep {spec.name}: {len(points)} points, {len(points) - len(todo)} already finished, "
          f"{len(todo)} to run in {len(jobs)} jobs on {type(executor).__name__} "
          f"({executor.capacity} workers)", file=log, flush=True)
    t0, done = time.perf_counter(), [0]

    def on_result(r: dict) -> None:
        done[0] += 1
        s = r.get("summary") or {}
        msg = r["error"] if r["status"] == "failed" else f"{s.get('phase')} in {s.get('steps_done')} steps"
        print(f"  [{done[0]}/{len(todo)}] {r['id']}: {r['status']} · {msg}", file=log, flush=True)
        write_csv(out / "results.csv", collect_rows(points, out, spec))

    run_jobs(executor, jobs, on_result)
    rows = finish(spec, points, out, {"executor": type(executor).__name__, "workers": executor.capacity,
                                      "ensemble": use_ens,
                                      "wall seconds (this invocation)": round(time.perf_counter() - t0, 1)})
    print(f"done in {time.perf_counter() - t0:.1f} s: {out / 'results.csv'}, {out / 'report.html'}",
          file=log, flush=True)
    return rows


def _want_ensemble(spec: Spec, flag: bool | None, executor, m: int) -> bool:
    """The ensemble trainer only where it is faster: "auto" times ``m`` models (one worker's
    share of the points) against one, here and now (see docs/sweeps.md)."""
    choice = flag if flag is not None else {"true": True, "false": False}.get(spec.ensemble)
    if choice is not None:
        return choice
    from groklab.sweep.ensemble import ensemble_faster
    return ensemble_faster(spec.base, m=min(m, 64))


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
