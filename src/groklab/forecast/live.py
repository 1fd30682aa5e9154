"""The live forecast (``train.forecast = true``): a forecast at every evaluation of a run.

``LiveForecast`` is called by the training loop right after each metrics record: it forecasts
from the records so far with the shipped model (no evidence lines: the fast path), appends one
line to ``forecast.jsonl``, and returns the step to show as "grok ≈ step N" in the progress bar
once P(reach 0.9 within the budget) is at least 0.8. A forecast takes a few milliseconds; so that
it never costs more than ``SHARE`` (1 %) of the run's time, an evaluation is skipped while the
time spent forecasting is above that share of the wall time so far (on a model as fast as the
corpus MLPs, a step every ~2 ms, that is most of them; on the default run, none). The
evaluation where a threshold is first reached and the last one of the budget are never skipped.
``forecast.jsonl`` lines are
``{"step", "p": {"0.9", "0.99"}, "at": {...}, "low": {...}, "high": {...}, "reached": {...},
"seconds"}`` (``seconds``: the time this forecast took). The last line goes into summary.json.
If the model cannot be loaded the run goes on without a forecast and says so once.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

from groklab.runs.rundir import JsonlLogger, read_jsonl


def compact(fc) -> dict:
    """One forecast.jsonl line from a Forecast."""
    ts = fc.targets
    return {"step": fc.step, "budget": fc.budget,
            "p": {k: t.p for k, t in ts.items()}, "at": {k: t.step for k, t in ts.items()},
            "low": {k: t.low for k, t in ts.items()}, "high": {k: t.high for k, t in ts.items()},
            "reached": {k: t.reached for k, t in ts.items()}, "outside": bool(fc.outside)}


SHARE = 0.01


class LiveForecast:
    def __init__(self, cfg, run_dir: Path, start: int = 0):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.records = [r for r in read_jsonl(self.run_dir / "metrics.jsonl") if r["step"] < start]
        self.model = None
        self.last = last_forecast(self.run_dir)          # resumed: forecast.jsonl was truncated
        self.seconds = float(self.last.get("seconds", 0.0)) if self.last else 0.0
        self.grok: int | None = None
        try:
            from groklab.forecast.model import default_model
            self.model = default_model()
        except (ImportError, ValueError) as e:
            warnings.warn(f"train.forecast: no forecast for this run ({e})", RuntimeWarning, stacklevel=2)
        self.out = JsonlLogger(self.run_dir / "forecast.jsonl") if self.model else None

    def __call__(self, rec: dict) -> int | None:
        """Forecast after ``rec``; returns the confident predicted step of 0.9, or None."""
        self.records.append(rec)
        from groklab.forecast.predict import EARLIEST
        if self.model is None or rec["step"] < EARLIEST:     # too early to forecast
            return None
        crossed = self.last is not None and any(
            rec["val_acc"] >= float(k) and not v for k, v in self.last["reached"].items())
        final = rec["step"] >= self.cfg.train.steps
        if self.seconds > SHARE * float(rec.get("time") or 0.0) and not (crossed or final):
            return self.grok
        from groklab.forecast.predict import forecast
        t0 = time.perf_counter()
        fc = forecast(self.records, config=self.cfg, model=self.model, explain=False)
        line = compact(fc)
        self.seconds += time.perf_counter() - t0
        line["seconds"] = round(self.seconds, 4)
        self.out.log(line)
        self.last = line
        self.grok = fc.grok_step("0.9")
        return self.grok

    def close(self) -> None:
        if self.out is not None:
            self.out.close()


def last_forecast(run_dir: Path) -> dict | None:
    """The last line of a run's forecast.jsonl, or None."""
    p = Path(run_dir) / "forecast.jsonl"
    if not p.is_file():
        return None
    recs = read_jsonl(p)
    return recs[-1] if recs else None
