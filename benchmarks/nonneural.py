"""Summaries and figures of "Grokking without neural networks" (Miller, O'Neill, Bui 2024,
arXiv 2310.17247) from groklab run and sweep directories (docs/beyond.md, part 2).

    python benchmarks/nonneural.py gp RUN_DIR [RUN_DIR ...] [--fig docs/gp_parity.png]
    python benchmarks/nonneural.py concealment SWEEP_DIR [--fig docs/gp_concealment.png]
    python benchmarks/nonneural.py run-gpytorch-numerics OUT [--set KEY=VALUE ...]

``gp``: per run and for the mean curve over the runs (the paper's figure is a mean of 5 seeds),
the first epoch with train accuracy 1.0, validation ≥ 0.9 and = 1.0, the last epoch with
validation ≤ 0.6 before that, and the inverse lengthscales of the parity and concealing bits.
``concealment``: per point the gap (first epoch val acc ≥ 0.95 − first epoch train acc ≥ 0.95,
in epochs of ``steps per epoch``, capped at the budget like theirs), ln(gap) against the bits.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np


def _rows(d: Path) -> list[dict]:
    return [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]


def first(steps, values, test):
    return next((int(s) for s, v in zip(steps, values) if test(v)), None)


def curve_events(steps, train, val) -> dict:
    t90 = first(steps, val, lambda v: v >= 0.9)
    before = [s for s, v in zip(steps, val) if v <= 0.6 and (t90 is None or s < t90)]
    return {"train_1.0": first(steps, train, lambda v: v >= 1.0), "val_0.9": t90,
            "val_1.0": first(steps, val, lambda v: v >= 1.0), "val_last_le_0.6": int(before[-1]) if before else None}


def gp(dirs: list[Path], fig: str | None) -> None:
    runs = [_rows(d) for d in dirs]
    n = min(len(r) for r in runs)
    steps = np.array([r["step"] for r in runs[0][:n]])
    get = lambda key: np.array([[r[key] for r in rs[:n]] for rs in runs])  # noqa: E731  (seeds, steps)
    tr, va = get("train_acc"), get("val_acc")
    for d, t, v, rs in zip(dirs, tr, va, runs):
        ev = curve_events(steps, t, v)
        at = {s: rs[s] for s in (10, 50, 150) if s < n}
        ls = "; ".join(f"epoch {s}: parity {r['train_inv_ls_parity']:.2f} / noise {r['train_inv_ls_noise']:.2f}"
                       for s, r in at.items())
        print(f"{d.name}: {ev}; inverse lengthscales {ls}")
    print(f"mean of {len(runs)}: {curve_events(steps, tr.mean(0), va.mean(0))}")
    if fig:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        f, ax = plt.subplots(1, 3, figsize=(14, 3.8))
        for y, name, c in ((tr, "train", "C0"), (va, "validation", "C1")):
            ax[0].plot(steps, y.mean(0), c, label=name)
            ax[0].fill_between(steps, y.min(0), y.max(0), color=c, alpha=0.2)
        ax[0].set(xlabel="epoch", ylabel="accuracy", xlim=(0, min(200, steps[-1])),
                  title=f"GP, concealed parity (mean, min-max of {len(runs)})")
        for key, name, c in (("train_inv_ls_parity", "3 parity bits", "C2"),
                             ("train_inv_ls_noise", "concealing bits (mean)", "C3")):
            y = get(key)
            ax[1].plot(steps, y.mean(0), c, label=name)
            ax[1].fill_between(steps, y.min(0), y.max(0), color=c, alpha=0.2)
        ax[1].set(xlabel="epoch", ylabel="1 / lengthscale", title="inverse lengthscales")
        ax[2].plot(steps, -get("train_data_fit").mean(0), "C4", label="data fit −E_q log p(y|f) / N")
        ax[2].plot(steps, get("train_complexity").mean(0), "C5", label="complexity KL / N")
        ax[2].plot(steps, get("train_loss").mean(0), "k--", label="−ELBO / N")
        ax[2].set(xlabel="epoch", title="ELBO terms (train)")
        for a in ax:
            a.legend(fontsize=8)
        f.tight_layout()
        f.savefig(fig, dpi=110)
        print(f"wrote {fig}")


def concealment(sweep: Path, fig: str | None, per_epoch: int, budget: int) -> None:
    with open(sweep / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    key = next(k for k in rows[0] if k.endswith("n_concealed"))
    pts: dict[int, list[float]] = {}
    for r in rows:
        mem, gen = r.get("memorized_at_0.95"), r.get("generalized_at_0.95")
        mem_e = int(mem) / per_epoch if mem not in (None, "") else None
        gen_e = int(gen) / per_epoch if gen not in (None, "") else budget  # capped, like theirs
        gap = max(gen_e - mem_e, 1.0) if mem_e is not None else None
        bits = int(float(r[key]))
        print(f"{r['id']}: bits {bits}, train ≥ 0.95 at epoch {mem_e}, val ≥ 0.95 at epoch "
              f"{gen_e if gen not in (None, '') else f'never (capped {budget})'}, gap {gap}")
        if gap is not None:
            pts.setdefault(bits, []).append(gap)
    xs = sorted(pts)
    means = [float(np.mean(np.log(pts[b]))) for b in xs]
    slope, icpt = np.polyfit(np.repeat(xs, [len(pts[b]) for b in xs]),
                             np.concatenate([np.log(pts[b]) for b in xs]), 1)
    for b, m in zip(xs, means):
        print(f"bits {b}: gap epochs {sorted(pts[b])}, mean ln gap {m:.2f} (gap ≈ {math.exp(m):.1f})")
    print(f"ln(gap) ≈ {icpt:.2f} + {slope:.3f} × bits (least squares over every seed)")
    if fig:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        f, ax = plt.subplots(figsize=(5, 3.8))
        for b in xs:
            ax.scatter([b] * len(pts[b]), pts[b], color="C0", alpha=0.6)
        ax.plot(xs, [math.exp(m) for m in means], "C0-", label="geometric mean over seeds")
        grid = np.linspace(min(xs), max(xs), 50)
        ax.plot(grid, np.exp(icpt + slope * grid), "k--", label=f"ln gap = {icpt:.2f} + {slope:.3f}·bits")
        ax.set(yscale="log", xlabel="concealing random bits", ylabel="grokking gap (epochs)",
               title="MLP, x+y mod 7, concealment")
        ax.legend(fontsize=8)
        f.tight_layout()
        f.savefig(fig, dpi=110)
        print(f"wrote {fig}")


def run_gpytorch_numerics(out: str, sets: list[str]) -> int:
    """``groklab run --preset gp-parity`` with GPyTorch's default numerics, as the authors' code
    ran: above 800 points its solves and log-determinants switch from Cholesky to CG and
    Lanczos with random probe vectors (groklab's gp uses Cholesky throughout: models.gp.exact)."""
    import gpytorch

    import groklab.models.gp as gp
    from groklab.cli import main as cli
    gp.exact = lambda: gpytorch.settings.max_cholesky_size(800)  # GPyTorch's default
    return cli(["run", "--preset", "gp-parity", "--out", out, "--quiet",
                *[a for kv in sets for a in ("--set", kv)]])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    g = sub.add_parser("gp")
    g.add_argument("runs", nargs="+", type=Path)
    g.add_argument("--fig")
    c = sub.add_parser("concealment")
    c.add_argument("sweep", type=Path)
    c.add_argument("--fig")
    c.add_argument("--steps-per-epoch", type=int, default=18)
    c.add_argument("--epochs", type=int, default=500)
    r = sub.add_parser("run-gpytorch-numerics")
    r.add_argument("out")
    r.add_argument("--set", action="append", default=[])
    a = p.parse_args()
    if a.what == "run-gpytorch-numerics":
        raise SystemExit(run_gpytorch_numerics(a.out, a.set))
    if a.what == "gp":
        gp(a.runs, a.fig)
    else:
        concealment(a.sweep, a.fig, a.steps_per_epoch, a.epochs)


if __name__ == "__main__":
    main()
