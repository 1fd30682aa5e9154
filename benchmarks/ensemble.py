"""Ensemble trainer vs separate runs: seconds per model-step, measured in the same process.

    python benchmarks/ensemble.py                       # CPU, the wd_lr example's model
    python benchmarks/ensemble.py --device cuda --m 1 8 36 128
    python benchmarks/ensemble.py --preset default --set task.p=97 --m 8 36

For each ensemble size M it times full-batch training steps of (a) one model with
``torch.optim.AdamW`` (the plain PyTorch reference) and (b) M models stacked and trained with
``vmap`` + ``FunctionalAdamW``, and prints the ratio (ensemble seconds / M) / (single seconds):
below 1 means the ensemble is faster per model. Threads: 1 on CPU (a sweep worker's setting)
unless ``--threads`` says otherwise.
"""
from __future__ import annotations

import argparse
import platform

import torch

import groklab
from groklab.sweep.ensemble import time_ensemble, time_single

WD_LR = ["task.p=31", "task.frac=0.6", "model.hidden=128,128"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="prieto")
    ap.add_argument("--set", action="append", default=None, metavar="KEY=VALUE")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--m", type=int, nargs="+", default=[1, 4, 16, 36])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3, help="take the fastest of this many timings")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    overrides = (a.set if a.set is not None else (WD_LR if a.preset == "prieto" else [])) + [f"train.device={a.device}"]
    cfg = groklab.resolve(a.preset, overrides=overrides)
    dev = torch.cuda.get_device_name() if a.device == "cuda" else platform.processor() or platform.machine()
    print(f"device {a.device} ({dev}), threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"model: preset {a.preset} {' '.join(overrides)}")
    single = min(time_single(cfg, a.steps) for _ in range(a.repeats))
    print(f"{'M':>5} {'single ms/step':>15} {'ensemble ms/step':>17} {'ms per model-step':>18} {'ratio':>7}")
    for m in a.m:
        ens = min(time_ensemble(cfg, m, a.steps) for _ in range(a.repeats))
        print(f"{m:>5} {single * 1e3:>15.3f} {ens * 1e3:>17.3f} {ens / m * 1e3:>18.3f} {ens / m / single:>7.3f}")


if __name__ == "__main__":
    main()
