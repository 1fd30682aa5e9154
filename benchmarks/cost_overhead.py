"""What cost accounting adds to a run: each piece timed on its own, as a share of the run.

A run of ``--preset`` (default ``mlp-fast``, stopping at 99 %) is trained once; then, in the same
process, the pieces ``runs.cost`` adds are timed ``--repeats`` times each: opening the energy
source (the first one in a process pays CodeCarbon's hardware probe, printed apart), ``begin`` and
``stop`` of the run's estimate, the sink's reading at every evaluation (× the run's evaluations),
the FLOP count on the meta device (uncached, as a run's first of its shape pays it) and
``finish``. The total is printed against the run's wall seconds.

    OMP_NUM_THREADS=1 python benchmarks/cost_overhead.py [--preset mlp-fast] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import groklab
from groklab.runs import cost as C
from groklab.runs.rundir import read_jsonl
from groklab.train.loop import Trainer


def timed(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="mlp-fast")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t = time.perf_counter()
    probe = C.CostMeter("WORLD", "cpu")  # the first energy source of the process
    probe_s = time.perf_counter() - t
    probe.begin()
    probe.stop()
    cfg = groklab.resolve(args.preset, overrides=["train.n_checkpoints=0"])
    with tempfile.TemporaryDirectory() as tmp:
        r = groklab.run(cfg, out=Path(tmp) / "r", report=False)
        records = read_jsonl(r.dir / "metrics.jsonl")
    wall, n_eval = r.summary["wall_seconds"], len(records)
    tr = Trainer.build(cfg)

    def meter_cycle():
        m = C.CostMeter("WORLD", "cpu").begin()
        m.stop()

    m = C.CostMeter("WORLD", "cpu").begin()
    log_s = timed(lambda: [m.log(rec["step"], rec) for rec in records], args.repeats)
    m.stop()

    def flops():
        C._FLOPS.clear()
        return C.run_flops(cfg, tr.model, tr.loss_fn, tr.data)

    flops_s = timed(flops, args.repeats)
    f = flops()
    m2 = C.CostMeter("WORLD", "cpu").begin()
    for rec in records:
        m2.log(rec["step"], rec)
    m2.stop()
    finish_s = timed(lambda: m2.finish(f, records, {records[-1]["step"]}, r.summary["steps_done"], wall,
                                       r.summary["generalized_at"]), args.repeats)
    cycle_s = timed(meter_cycle, args.repeats)
    total = cycle_s + log_s + flops_s + finish_s
    print(f"run: {args.preset}, {r.summary['steps_done']} steps, {n_eval} evaluations, {wall:.2f} s wall; "
          f"energy source: {m2.source.method if m2.source else 'none'}")
    print(f"once per process (CodeCarbon's hardware probe): {probe_s * 1000:.0f} ms")
    print(f"per run: open+begin+stop {cycle_s * 1000:.1f} ms, {n_eval} sink readings {log_s * 1000:.2f} ms, "
          f"FLOP count {flops_s * 1000:.1f} ms (cached for the same shape), finish {finish_s * 1000:.1f} ms")
    print(f"total per run {total * 1000:.1f} ms = {100 * total / wall:.2f} % of the run's {wall:.2f} s "
          f"({100 * (total - flops_s) / wall:.2f} % when the FLOP count is cached)")


if __name__ == "__main__":
    main()
