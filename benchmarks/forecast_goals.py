"""The forecast's goals on one finished run: every forecast from step FROM until the run reached
0.9 (the live forecast writes exactly these: a forecast at a step reads only the records up to it).

    python benchmarks/forecast_goals.py RUN_DIR --from 1000 [--model DIR] [--every 100]

Prints one line per forecast and the checks of docs/forecast.md: P(0.9 within the budget) ≥ 0.8,
the predicted 0.9 step within ×1.25 of the actual one, the 80 % interval holding it, and
``outside`` false, at every forecast from FROM on.
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import groklab
from groklab.forecast.model import load
from groklab.runs.rundir import read_jsonl


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--from", dest="start", type=int, required=True)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--model")
    a = ap.parse_args(argv)
    recs = read_jsonl(f"{a.run}/metrics.jsonl")
    actual = next((r["step"] for r in recs if r["val_acc"] >= 0.9), None)
    if actual is None:
        print("the run never reached 0.9", file=sys.stderr)
        return 1
    model = load(a.model) if a.model else None
    steps = [r["step"] for r in recs if a.start <= r["step"] < actual and r["step"] % a.every == 0]
    ok = {"p ≥ 0.8": 0, "step within ×1.25": 0, "interval holds it": 0, "inside the corpus": 0}
    print(f"{a.run}: val ≥ 0.9 at step {actual}; forecasts at {len(steps)} steps from {a.start}")
    print("step  P(0.9)  step(0.9) [80 %]        ratio  P(0.99) step(0.99)  outside  ms")
    for s in steps:
        t0 = time.perf_counter()
        fc = groklab.forecast(a.run, at=s, model=model, explain=False)
        ms = 1000 * (time.perf_counter() - t0)
        t9, t99 = fc.targets["0.9"], fc.targets["0.99"]
        ratio = t9.step / actual if t9.step else math.nan
        ok["p ≥ 0.8"] += t9.p >= 0.8
        ok["step within ×1.25"] += bool(t9.step) and abs(math.log(ratio)) <= math.log(1.25)
        ok["interval holds it"] += bool(t9.step) and t9.low <= actual <= t9.high
        ok["inside the corpus"] += not fc.outside
        print(f"{s:5d}  {t9.p:.2f}    {t9.step} [{t9.low}-{t9.high}]  {ratio:6.3f}  {t99.p:.2f}    "
              f"{t99.step}  {bool(fc.outside)!s:5}  {ms:.0f}")
    for k, v in ok.items():
        print(f"{k}: {v} of {len(steps)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
