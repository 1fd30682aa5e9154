"""Grokking ticket vs dense vs the random and same-norm controls: steps to validation accuracy.

For each seed, a dense run is trained for ``--steps``; then its ticket (``--keep`` of the
matrix entries by one global |w| threshold on the final checkpoint, reset to the init, mask held)
and both controls are retrained with the same recipe and budget. Printed: the step each first
reaches 0.9 / 0.95 / 0.99 validation accuracy, per seed and as a median.

``--preset prieto`` (default): the prieto MLP on x+y mod 31 (60 % training data, AdamW lr 3e-3,
β₂ 0.98, eps 1e-8, wd 1, full batch), 4,000 steps, not the paper's setting. ``--preset
ticket-mlp``: the paper's own (Minegishi et al. 2024: a+b mod 67 over a ≤ b, 40 %, the untied
500/48 MLP, AdamW lr 1e-3, wd 1), 30,000 steps.

    OMP_NUM_THREADS=1 python benchmarks/ticket_compare.py [--preset prieto|ticket-mlp] [--seeds 3]
        [--steps N] [--keep 0.4]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import groklab
from groklab.ticket import ticket

RECIPE = [("task.p", 31), ("task.frac", 0.6), ("optim.lr", 3e-3), ("optim.wd", 1.0),
          ("optim.beta2", 0.98), ("optim.eps", 1e-8), ("train.forecast", False)]
THRESHOLDS = ("0.9", "0.95", "0.99")
ARMS = ("dense", "ticket", "random", "same-norm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--preset", choices=("prieto", "ticket-mlp"), default="prieto")
    ap.add_argument("--steps", type=int, help="default: 4000 (prieto), 30000 (ticket-mlp)")
    ap.add_argument("--keep", type=float, default=0.4)
    ap.add_argument("--out", help="keep the run directories here (default: a temporary directory)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="ticket-compare-"))
    at: dict[str, list] = {arm: [] for arm in ARMS}
    t0 = time.perf_counter()
    a.steps = a.steps or (4000 if a.preset == "prieto" else 30_000)
    recipe = RECIPE if a.preset == "prieto" else [("train.forecast", False), ("train.measure_every", 0)]
    for seed in range(a.seeds):
        cfg = groklab.resolve(a.preset, overrides=[*recipe, ("train.steps", a.steps), ("train.seed", seed)])
        dense = groklab.run(cfg, out=root / f"dense-s{seed}", report=False)
        runs = {"dense": dense}
        for arm, control in (("ticket", "none"), ("random", "random"), ("same-norm", "same-norm")):
            # retrained arms stop 1,000 steps after holding 0.99 (the steps to each threshold are
            # what is compared; the rest of the budget would change nothing printed)
            runs[arm] = ticket(dense.dir, a.keep, root / f"{arm}-s{seed}", control=control, seed=seed,
                               report=False, overrides=["train.stop_threshold=0.99", "train.patience=1000"])
        for arm, r in runs.items():
            g = r.summary["generalized_at"]
            at[arm].append([g.get(t) for t in THRESHOLDS])
            print(f"seed {seed} {arm:>9}: " + "  ".join(f"val ≥ {t} at {s}" for t, s in zip(THRESHOLDS, at[arm][-1]))
                  + f"  · final val {r.summary['final_val_acc']:.3f}", flush=True)
    print(f"\n{'arm':>9}  " + "  ".join(f"median step to {t} (reached)" for t in THRESHOLDS))
    for arm in ARMS:
        cols = []
        for i in range(len(THRESHOLDS)):
            hit = [s[i] for s in at[arm] if s[i] is not None]
            cols.append(f"{(statistics.median(hit) if hit else '—')!s:>10} ({len(hit)}/{a.seeds})")
        print(f"{arm:>9}  " + "  ".join(f"{c:>28}" for c in cols))
    print(f"\n{a.seeds} seeds × 4 runs of {a.steps} steps in {time.perf_counter() - t0:.0f} s; runs in {root}")


if __name__ == "__main__":
    main()
