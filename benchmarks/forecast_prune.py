"""The forecast pruner against the full sweep: steps spent and phase labels kept.

    groklab sweep examples/sweeps/wd_lr.toml --out sweeps/wd_lr
    groklab sweep examples/forecast/wd_lr_pruned.toml --out sweeps/wd_lr_pruned
    python benchmarks/forecast_prune.py sweeps/wd_lr sweeps/wd_lr_pruned

Prints the total training steps of each sweep (the sum of ``steps_done`` over its points), their
ratio, how many points the pruner stopped as hopeless ("pruned") and with their phase label settled
by the forecast ("settled", ``[prune] settle = true``), how many of the full sweep's points that
reached the threshold were pruned (a settled one keeps a label, a pruned one loses it), and how
many points keep the same phase label, listing the ones that do not (docs/forecast.md quotes the
output).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path


def rows(d: str) -> dict[tuple, dict]:
    with open(Path(d) / "results.csv", newline="") as fh:
        return {(r["optim.lr"], r["optim.wd"], r["seed"]): r for r in csv.DictReader(fh)}


def main(full: str, pruned: str) -> None:
    a, b = rows(full), rows(pruned)
    keys = sorted(set(a) & set(b), key=lambda k: (float(k[1]), float(k[0])))
    steps_a = sum(int(a[k]["steps_done"]) for k in keys)
    steps_b = sum(int(b[k]["steps_done"]) for k in keys)
    stopped = [k for k in keys if b[k]["status"].startswith("pruned")]
    settled = [k for k in keys if b[k]["status"].startswith("settled")]
    same = [k for k in keys if a[k]["phase"] == b[k]["phase"]]
    print(f"points: {len(keys)} in both sweeps")
    print(f"steps: full {steps_a:,}, pruned {steps_b:,} = {steps_b / steps_a:.3f} of the full sweep")
    print(f"pruned by the forecast: {len(stopped)} points; settled by the forecast: {len(settled)} points")
    print(f"phase labels kept: {len(same)} of {len(keys)}")
    col = next((c for c in ("generalized_at_0.9", "generalized_at_0.99") if c in next(iter(a.values()))), None)
    if col:
        lost = [k for k in stopped if a[k][col] not in ("", "None")]
        print(f"points that reached {col[15:]} in the full sweep and were pruned: {len(lost)}")
        grok = [k for k in settled if a[k][col] not in ("", "None")]
        print(f"points that reached {col[15:]} in the full sweep and were settled: {len(grok)}")
    for k in keys:
        if k not in same:
            print(f"  lr {k[0]} wd {k[1]}: {a[k]['phase']} -> {b[k]['phase']} ({b[k]['status']}, "
                  f"{b[k]['steps_done']} steps)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python benchmarks/forecast_prune.py FULL_SWEEP_DIR PRUNED_SWEEP_DIR")
    main(*sys.argv[1:])
