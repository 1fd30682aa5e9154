"""Where a real run's time goes besides its training steps.

``benchmarks/engine.py`` times groklab's bare training step; a whole run (``groklab run``) also
builds the task and model, opens the cost meter and the live forecast, evaluates, measures, logs,
writes checkpoints and, after its clock stops, counts FLOPs and writes the report. This script
makes the same short run ``--runs`` times, each in a fresh process as the command is
(``groklab.run``, report included), with a timer around each of those phases; after the run, the
same process trains the bare step of engine.py (``engine.groklab_step``: same model, optimiser
and loss, evaluation every ``train.eval_every`` steps) for as many steps from the run's initial
weights. Times are *exclusive* (a phase's own time, its timed sub-phases not counted), so the
phases inside the run's clock add up to the ``wall_seconds`` it records ("loop bookkeeping" is
the loop's own rest: learning rate, the finite-loss check, checkpoint bookkeeping, tqdm).
Wall and process CPU seconds are both printed; on a machine shared with other jobs the CPU
seconds are the steadier. Per phase: the median over runs.

    python benchmarks/run_overhead.py [--preset nanda] [--steps 300] [--runs 3] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

import groklab
import groklab.api as api
import groklab.forecast.live as forecast_live
import groklab.measure.live as measure_live
import groklab.runs.cost as cost
import groklab.runs.rundir as rundir
import groklab.train.loop as loop
from groklab.accel.losses import build_loss
from groklab.train.optim import build_optimizer

sys.path.insert(0, str(Path(__file__).parent))
from engine import groklab_step  # noqa: E402  (the bare step engine.py times)

# (owner, attribute, phase); a phase inside the run's clock is marked by CLOCK below
TIMED = [
    (api, "prepare", "prepare (check, import)"),
    (cost.CostMeter, "__init__", "cost meter opens (CodeCarbon)"),
    (loop.Trainer, "build", "build task and model"),
    (loop, "write_json", "summary.json writes"),
    (cost.CostMeter, "begin", "cost meter begins"),
    (loop, "_load_forecast_model", "forecast model loads"),
    (forecast_live.LiveForecast, "__init__", "live forecast opens"),
    (loop.Trainer, "forward", "steps: forward"),
    (loop.Trainer, "update", "steps: backward + optimiser"),
    (loop.Trainer, "evaluate", "evaluations"),
    (rundir.JsonlLogger, "log", "metrics/forecast lines"),
    (forecast_live.LiveForecast, "__call__", "live forecast"),
    (cost.CostMeter, "log", "cost per evaluation"),
    (measure_live.LiveMeasures, "__init__", "live measures"),
    (measure_live.LiveMeasures, "__call__", "live measures"),
    (loop.Trainer, "save", "checkpoint writes"),
    (loop, "_loop", "loop bookkeeping (lr, checks, tqdm)"),
    (loop, "run_flops", "FLOP count"),
    (cost.CostMeter, "finish", "cost summary"),
    (api, "_report", "report (curves.png, report.html)"),
]
CLOCK = {"summary.json writes", "cost meter begins", "live forecast opens", "steps: first step",
         "steps: forward", "steps: backward + optimiser", "evaluations", "metrics/forecast lines",
         "live forecast", "cost per evaluation", "live measures", "checkpoint writes",
         "loop bookkeeping (lr, checks, tqdm)"}


class Phases:
    """Exclusive wall time per phase: a phase's time less that of the timed phases inside it."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, list[float]] = defaultdict(list)
        self.cpu_calls: dict[str, list[float]] = defaultdict(list)
        self.count: dict[str, int] = defaultdict(int)
        self.stack: list[list] = []
        self.undo: list = []

    def wrap(self, owner, attr: str, phase: str) -> None:
        fn = owner.__dict__[attr]
        inner = fn.__func__ if isinstance(fn, classmethod) else fn

        def timed(*a, **k):
            self.stack.append([0.0, 0.0])
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return inner(*a, **k)
            finally:
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                child, child_cpu = self.stack.pop()
                # the first step (forward + update of step 0) is a phase of its own
                first = phase.startswith("steps:") and not self.count[phase]
                self.count[phase] += 1
                name = "steps: first step" if first else phase
                self.seconds[name] += dt - child
                self.cpu[name] += dc - child_cpu
                self.calls[name].append(dt - child)
                self.cpu_calls[name].append(dc - child_cpu)
                if self.stack:
                    self.stack[-1][0] += dt
                    self.stack[-1][1] += dc
        setattr(owner, attr, classmethod(timed) if isinstance(fn, classmethod) else timed)
        self.undo.append((owner, attr, fn))

    def restore(self) -> None:
        for owner, attr, fn in reversed(self.undo):
            setattr(owner, attr, fn)


@contextlib.contextmanager
def timed_phases():
    ph = Phases()
    for owner, attr, phase in TIMED:
        if attr in vars(owner):  # (an older groklab may lack one: the same script times both)
            ph.wrap(owner, attr, phase)
    try:
        yield ph
    finally:
        ph.restore()


def bare_steps(cfg) -> tuple[list[float], list[float]]:
    """engine.py's groklab step, ``train.steps`` of them from the run's initial weights:
    (wall seconds, CPU seconds) of each."""
    torch.set_flush_denormal(True)
    tr = loop.Trainer.build(cfg)
    model, (xtr, ytr, xva, yva) = tr.model, tr.data
    opt = build_optimizer(model.parameters(), cfg.optim)
    loss_fn = build_loss(cfg.train.loss, cfg.train.loss_dtype)
    wall, cpu = [], []
    for step in range(cfg.train.steps):
        val = (xva, yva) if step % cfg.train.eval_every == 0 else None
        t0, c0 = time.perf_counter(), time.process_time()
        groklab_step(model, opt, cfg, step, xtr, ytr, loss_fn, val)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def one_run(cfg, out: Path) -> dict:
    """One timed run into ``out``, then the bare steps; what the parent needs, as JSON."""
    with timed_phases() as ph:
        r = groklab.run(cfg, out=out, progress=False)
    bare_wall, bare_cpu = bare_steps(cfg)

    def step(calls):
        return statistics.median(f + u for f, u in zip(calls["steps: forward"],
                                                      calls["steps: backward + optimiser"]))
    return {"wall": dict(ph.seconds), "cpu": dict(ph.cpu), "recorded": r.summary["wall_seconds"],
            "step": {"wall": step(ph.calls), "cpu": step(ph.cpu_calls)},
            "bare": {"wall": statistics.median(bare_wall), "cpu": statistics.median(bare_cpu)},
            "bare_mean": {"wall": statistics.fmean(bare_wall), "cpu": statistics.fmean(bare_cpu)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="nanda")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # one run in this process, JSON on stdout
    a = ap.parse_args()
    cfg = groklab.resolve(a.preset, overrides=[f"train.steps={a.steps}", *a.set])
    if a.child:
        print(json.dumps(one_run(cfg, Path(a.child))))
        return
    print(f"{a.preset}, {a.steps} steps, {a.runs} runs (each a fresh process, as the command is), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    res = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.runs):
            cmd = [sys.executable, __file__, "--preset", a.preset, "--steps", str(a.steps),
                   *(x for kv in a.set for x in ("--set", kv)), "--child", str(Path(tmp) / f"run{i}")]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            res.append(json.loads(out.strip().splitlines()[-1]))

    n, med = a.steps, statistics.median
    names = {k for r in res for k in r["wall"]}
    wall = {k: med(r["wall"].get(k, 0.0) for r in res) for k in names}
    cpu = {k: med(r["cpu"].get(k, 0.0) for r in res) for k in names}
    inside = sorted((k for k in names if k in CLOCK), key=lambda k: -cpu[k])
    outside = sorted((k for k in names if k not in CLOCK), key=lambda k: -cpu[k])
    recorded = med(r["recorded"] for r in res)
    clock_cpu = med(sum(v for k, v in r["cpu"].items() if k in CLOCK) for r in res)
    print(f"\nrecorded training time (summary wall_seconds): median {recorded:.3f} s = "
          f"{1e3 * recorded / n:.2f} ms/step; CPU seconds inside the clock {clock_cpu:.3f} s = "
          f"{1e3 * clock_cpu / n:.2f} ms/step")
    print(f"{'inside the clock':38s} {'wall s':>8s} {'CPU s':>8s} {'CPU ms/step':>12s} {'CPU share':>10s}")
    for k in inside:
        print(f"  {k:36s} {wall[k]:8.3f} {cpu[k]:8.3f} {1e3 * cpu[k] / n:12.2f} {100 * cpu[k] / clock_cpu:9.1f}%")
    print("outside the clock (the command's time, not the recorded training time)")
    for k in outside:
        print(f"  {k:36s} {wall[k]:8.3f} {cpu[k]:8.3f}")
    clock = {"wall": [r["recorded"] for r in res],
             "cpu": [sum(v for k, v in r["cpu"].items() if k in CLOCK) for r in res]}
    for kind in ("cpu", "wall"):
        step, bare = med(r["step"][kind] for r in res), med(r["bare"][kind] for r in res)
        mean = med(r["bare_mean"][kind] for r in res)
        per_run = ", ".join(f"{c / n / r['bare_mean'][kind]:.2f}" for c, r in zip(clock[kind], res))
        print(f"\n{kind}: median step in the run (forward + update) {1e3 * step:.2f} ms, bare step of "
              f"engine.py in the same process {1e3 * bare:.2f} ms (ratio {step / bare:.2f}x); the "
              f"bare loop's mean step (its evaluations included) {1e3 * mean:.2f} ms; the run's "
              f"clock per step {1e3 * med(clock[kind]) / n:.2f} ms; clock per step / bare mean step, "
              f"per run: {per_run}")


if __name__ == "__main__":
    main()
