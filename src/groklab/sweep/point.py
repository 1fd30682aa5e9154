"""One point of a sweep: a full ``groklab run`` in its own run directory, never raising.

``run_point(job)`` is what every executor calls (in a worker process, a Ray task, or inline).
A job is a plain dict so it crosses process boundaries::

    {"id": "0003_lr=0.01_wd=1_s0", "dir": ".../points/0003_...", "config": {...RunConfig dict...},
     "prune": {"metric": "train_acc", "below": 0.9, "at_step": 500} or None}

It returns a plain dict ``{"id", "status", "summary", "error"}``. A point is finished when its
directory holds ``summary.json`` with a final status, or ``failed.json``; a point killed
half-way (no summary, or status "interrupted") is resumed from its last checkpoint, or started
again when it has none, so no finished point is run twice and none is lost.
"""
from __future__ import annotations

import shutil
import traceback
from pathlib import Path
from typing import Any

from groklab.runs.read import RunFileError, read_metrics, read_object, read_summary
from groklab.runs.rundir import write_json
from groklab.train.stopping import StopRun

FINAL = ("completed", "early_stopped", "nan", "pruned")
PRUNE_METRICS = {"train_acc": "below", "train_loss": "above"}


class Pruned(StopRun):
    """Raised by a prune sink to stop a run that the spec's rule says cannot succeed. The
    training loop ends the run with status "pruned" (its cost and report included); the
    forecast pruner adds ``pruned_by = "forecast"`` and the forecast that stopped it, and, for a
    run it settles, ``settled`` and the ``phase`` label the forecast gives it."""

    def __init__(self, message: str, forecast: dict | None = None, settled: str | None = None):
        extra = {"pruned_by": "forecast", "forecast": forecast} if forecast else {}
        if settled:
            extra.update(settled=True, phase=settled)
        super().__init__(message, "pruned", extra)


class ForecastPruneSink:
    """Stops a run once the forecast (groklab.forecast) gives P(validation accuracy reaches
    ``target`` within the budget) below ``risk``. It looks first at ``after`` × the budget, then
    at least every 5 % of the budget (a forecast costs a few milliseconds). A run whose settings
    lie outside the span of the model's corpus (``Forecast.outside``) is never stopped. With
    ``learn = true`` the model is refitted on the sweep's finished points as they finish
    (groklab.forecast.learn.sweep_model).

    With ``settle = true`` it also stops a run whose phase label (Liu et al. 2022: the gap
    between memorisation and generalisation at ``train.phase_threshold``, the rule's target)
    the forecast has settled: train accuracy has reached the threshold at step t_mem, P(reach
    it within the budget) ≥ 1 − risk, and the forecast's whole 80 % interval lies after
    t_mem + ``phase_gap`` ("grokking") or at or before it ("comprehension"). The label is the
    forecast's, not a measurement: the summary says ``settled``."""

    EVERY = 0.05

    def __init__(self, rule: dict[str, Any], cfg, run_dir: Path | None = None):
        from groklab.forecast.model import default_model
        self.risk, self.target, self.cfg = float(rule["risk"]), float(rule["target"]), cfg
        self.settle = bool(rule.get("settle")) and float(cfg.train.phase_threshold) == self.target
        self.budget = int(cfg.train.steps)
        self.next = float(rule["after"]) * self.budget
        self.records: list[dict] | None = None
        self.run_dir = run_dir
        self.model = default_model()
        if rule.get("learn") and run_dir is not None:     # refitted on this sweep's finished points
            from groklab.forecast.learn import sweep_model
            self.model = sweep_model(Path(run_dir).parent.parent)

    def log(self, step: int, rec: dict) -> None:
        if self.records is None:  # a resumed run: the history before its checkpoint counts too
            path = self.run_dir / "metrics.jsonl" if self.run_dir else None
            self.records = [r for r in read_metrics(path) if r["step"] < step] if path else []
        self.records.append(rec)
        from groklab.forecast.predict import EARLIEST
        if step < self.next or step >= self.budget or step < EARLIEST:
            return
        self.next = step + self.EVERY * self.budget
        from groklab.forecast.live import compact
        from groklab.forecast.predict import forecast
        fc = forecast(self.records, config=self.cfg, model=self.model, explain=False)
        tg = fc.targets[f"{self.target:g}"]
        if fc.outside or tg.reached:  # beyond the corpus the forecast is not trusted to stop a run
            return
        if tg.p < self.risk:
            raise Pruned(f"pruned (forecast): P(val ≥ {self.target:g} within {self.budget} steps) = {tg.p:.3f} "
                         f"< prune.risk {self.risk:g} at step {step}", compact(fc))
        label = self.settled(tg) if self.settle else None
        if label:
            raise Pruned(f"settled (forecast): {label}, P(val ≥ {self.target:g} within {self.budget} steps) = "
                         f"{tg.p:.3f}, step {tg.step} [{tg.low}-{tg.high}] against memorisation at "
                         f"{self.t_mem} + gap {self.cfg.train.phase_gap}, at step {step}", compact(fc), label)

    def settled(self, tg) -> str | None:
        """The phase label the forecast ``tg`` settles, or None (see the class docstring)."""
        self.t_mem = next((r["step"] for r in self.records if r["train_acc"] >= self.target), None)
        if self.t_mem is None or tg.p < 1 - self.risk or tg.low is None or tg.high is None:
            return None
        gap = self.cfg.train.phase_gap
        if tg.low - self.t_mem > gap:
            return "grokking"
        return "comprehension" if tg.high - self.t_mem <= gap else None


def make_sink(rule: dict[str, Any], cfg, run_dir: Path | None = None):
    """The sink a prune rule asks for: the forecast pruner (``risk``) or a metric bound."""
    return ForecastPruneSink(rule, cfg, run_dir) if "risk" in rule else PruneSink(rule)


class PruneSink:
    """Stops a run at ``at_step`` if ``metric`` has not reached its bound (train metrics only:
    validation loss rises for thousands of steps before grokking, so it never prunes)."""

    def __init__(self, rule: dict[str, Any]):
        self.metric, self.at = rule["metric"], int(rule["at_step"])
        self.bound = float(rule["below"] if "below" in rule else rule["above"])
        self.best: float | None = None
        self.higher = PRUNE_METRICS[self.metric] == "below"

    def log(self, step: int, rec: dict) -> None:
        v = rec[self.metric]
        self.best = v if self.best is None else (max(self.best, v) if self.higher else min(self.best, v))
        if step >= self.at:
            ok = self.best >= self.bound if self.higher else self.best <= self.bound
            if not ok:
                raise Pruned(f"{self.metric} best {self.best:.4g} did not reach {self.bound:g} by step {step}")


def point_state(d: Path) -> str:
    """"done", "failed", "partial" (resume it) or "new". A ``summary.json`` that cannot be read
    is a one-line RunFileError naming it, never "partial": the point would be run again over it."""
    if (d / "failed.json").is_file():
        return "failed"
    if (d / "summary.json").exists():
        try:
            status = read_summary(d / "summary.json").get("status")
        except RunFileError as e:
            raise RunFileError(f"{e}{HINT}") from None
        return "done" if status in FINAL else "partial"
    return "partial" if d.exists() else "new"


HINT = "; delete the point's directory to run it again"


def read_result(job_id: str, d: Path) -> dict[str, Any]:
    """The result dict of a finished point from its directory; a file that cannot be read
    back (its summary, failed.json, metrics.jsonl) raises a one-line RunFileError naming it (a
    rerun reads every finished point)."""
    failed = (d / "failed.json").is_file()
    path = d / ("failed.json" if failed else "summary.json")
    try:
        if failed:
            f = read_object(path)
            if not isinstance(f.get("error"), str):
                raise _bad(path, "no \"error\" message")
            summary = f.get("summary")
            if summary is not None:
                _check_summary(path, summary)
            result = {"id": job_id, "status": "failed", "summary": summary, "error": f["error"]}
        else:
            f = read_summary(path)
            _check_summary(path, f)
            status = "failed" if f["status"] == "nan" else f["status"]
            result = {"id": job_id, "status": status, "summary": f,
                      "error": f.get("message") if status == "failed" else None}
        _check_metrics(d / "metrics.jsonl")  # the table reads it back for a diagram threshold
    except RunFileError as e:
        raise RunFileError(f"{e}{HINT}") from None
    return result


_CHECKED: dict[str, tuple] = {}  # metrics.jsonl files read whole since they last changed


def _check_metrics(path: Path) -> None:
    """``read_metrics(path)`` once per version of the file: the results table is rebuilt after
    every finished point, and reading every point's metrics each time would grow as N²."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    if _CHECKED.get(str(path)) != key:
        read_metrics(path)
        _CHECKED[str(path)] = key


def _bad(path: Path, why: str) -> RunFileError:
    return RunFileError(f"{str(path)!r} is damaged: {why}")


def _check_summary(path: Path, s: Any) -> None:
    if not isinstance(s, dict):
        raise _bad(path, f"the summary is a {type(s).__name__}, not a JSON object")
    if s.get("status") not in FINAL:
        raise _bad(path, f"status {str(s.get('status'))[:40]!r} is not one of: {', '.join(FINAL)}")
    for k in ("memorized_at", "generalized_at"):
        if not isinstance(s.get(k) or {}, dict):
            raise _bad(path, f"{k} is not a JSON object")


def run_point(job: dict[str, Any], threads: int | None = 1) -> dict[str, Any]:
    """Run (or resume, or just read) one point; every error becomes a "failed" result."""
    import torch
    d = Path(job["dir"])
    state = point_state(d)
    if state in ("done", "failed"):
        return read_result(job["id"], d)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # one core per worker: the pool is the parallelism
    try:
        _train(job, d, state)
    except Exception as e:  # a crashing point is recorded and the sweep goes on
        d.mkdir(parents=True, exist_ok=True)
        write_json(d / "failed.json", {"error": f"{type(e).__name__}: {e}",
                                       "traceback": traceback.format_exc()})
    finally:
        torch.set_num_threads(old_threads)
    return read_result(job["id"], d)


def _train(job: dict[str, Any], d: Path, state: str) -> None:
    import groklab
    from groklab.config import RunConfig
    from groklab.runs.checkpoint import list_checkpoints
    cfg = RunConfig.from_dict(job["config"])
    rules = job.get("prune") or []
    sinks = [make_sink(r, cfg, d) for r in (rules if isinstance(rules, list) else [rules])] or None
    report = job.get("report", True)
    if state == "partial" and list_checkpoints(d) and (d / "config.json").is_file():
        groklab.resume(d, progress=False, report=report, sinks=sinks)
        return
    if d.exists():
        shutil.rmtree(d)  # killed before its first checkpoint: start it again
    groklab.run(cfg, out=d, progress=False, report=report, sinks=sinks)

