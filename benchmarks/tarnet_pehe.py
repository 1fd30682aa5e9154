"""Does TARNet's effect error (PEHE) improve late? Read the runs of a tarnet sweep (or run
directories), print one line per run, draw val_pehe and train loss against steps.

    python benchmarks/tarnet_pehe.py sweeps/tarnet_bs_wd [more run or sweep dirs] --fig docs/tarnet_pehe.png

Runs of one setting (same task, model, batch, wd, lr, seeds) are merged step by step: a short
run evaluated every 10 steps sharpens the early part of a long one, a resumed copy extends it
(training is deterministic and evaluation draws no random numbers, so their shared steps agree).
Per setting: ``fit`` = first step where the factual training MSE is below ``--fit`` (0.5, half the
noise variance σ² = 1 of the preset: the network is fitting noise); ``early best`` = lowest
val_pehe up to ``fit`` (what early stopping keeps); ``peak`` = highest val_pehe after it;
``late best`` = lowest val_pehe after the peak, with the training MSE there; ``drop`` = (peak −
late best) / peak; ``final`` = mean val_pehe of the last 5 evaluations. A delayed improvement is
a large drop after the training set is fitted; it beats early stopping only if late < early.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def runs_in(path: Path) -> list[Path]:
    if (path / "metrics.jsonl").is_file():
        return [path]
    return sorted(p.parent for p in path.glob("points/*/metrics.jsonl"))


def read(run: Path) -> tuple[dict, list[dict]]:
    cfg = json.loads((run / "config.json").read_text())
    return cfg, [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


# what makes two runs the same training (config.json may carry keys added later, elsewhere)
SETTING = [("task", k) for k in ("name", "setup", "n_samples", "covariates", "noise", "frac", "split_seed")] + \
          [("model", k) for k in ("arch", "hidden", "head_hidden", "init_scale")] + \
          [("optim", k) for k in ("name", "lr", "wd", "beta1", "beta2", "eps", "warmup", "schedule", "clip")] + \
          [("train", k) for k in ("batch_size", "seed", "batch_seed", "dtype")]


def _num(v):
    """1 and 1.0 are one setting (a sweep axis may write either)."""
    if isinstance(v, dict):
        return {k: _num(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_num(x) for x in v]
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def merged(runs: list[Path]) -> list[tuple[dict, list[dict]]]:
    """One (config, records by step) per setting, in the order first seen."""
    out: dict[str, tuple[dict, dict]] = {}
    for r in runs:
        cfg, ms = read(r)
        key = json.dumps(_num({f"{s}.{k}": cfg[s][k] for s, k in SETTING}), sort_keys=True)
        out.setdefault(key, (cfg, {}))[1].update({m["step"]: m for m in ms})
    return [(cfg, [by[s] for s in sorted(by)]) for cfg, by in out.values()]


def row(cfg: dict, ms: list[dict], fit: float) -> dict:
    steps = [m["step"] for m in ms]
    pehe = [m["val_pehe"] for m in ms]
    t_fit = next((m["step"] for m in ms if m["train_loss"] < fit), None)
    n_early = sum(s <= t_fit for s in steps) if t_fit is not None else len(ms)
    i_best = min(range(n_early), key=pehe.__getitem__)
    i_peak = max(range(i_best, len(ms)), key=pehe.__getitem__)
    i_late = min(range(i_peak, len(ms)), key=pehe.__getitem__)
    bs = cfg["train"]["batch_size"]
    return {"batch": bs or "full", "wd": cfg["optim"]["wd"], "lr": cfg["optim"]["lr"],
            "noise": cfg["task"]["noise"], "n": cfg["task"]["n_samples"], "setup": cfg["task"]["setup"],
            "fit": t_fit, "best": pehe[i_best], "best_at": steps[i_best], "peak": pehe[i_peak],
            "peak_at": steps[i_peak], "late": pehe[i_late], "late_at": steps[i_late],
            "late_mse": ms[i_late]["train_loss"], "final": sum(pehe[-5:]) / len(pehe[-5:]),
            "drop": (pehe[i_peak] - pehe[i_late]) / pehe[i_peak],
            "final_train_loss": ms[-1]["train_loss"], "steps": steps[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--fit", type=float, default=0.5)
    ap.add_argument("--fig", type=Path, default=None)
    ap.add_argument("--ref", type=float, default=None, help="a dotted PEHE line (e.g. std of τ)")
    a = ap.parse_args()
    runs = [r for d in a.dirs for r in runs_in(d)]
    rows = []
    print("setup σ batch wd | fit | early best @ | peak @ | late best @ (train MSE) | drop | final (train MSE) | steps")
    for cfg, ms in merged(runs):
        x = row(cfg, ms, a.fit)
        rows.append((x, ms))
        print(f"{x['setup']} {x['noise']:g} {x['batch']} {x['wd']:g} | {x['fit']} | {x['best']:.3f} @ {x['best_at']} | "
              f"{x['peak']:.3f} @ {x['peak_at']} | {x['late']:.3f} @ {x['late_at']} ({x['late_mse']:.2f}) | "
              f"{100 * x['drop']:.0f} % | {x['final']:.3f} ({x['final_train_loss']:.3f}) | {x['steps']}")
    if a.fig:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        wds = sorted({x["wd"] for x, _ in rows})
        fig, axes = plt.subplots(2, len(wds), figsize=(4.2 * len(wds), 6), sharex=True, squeeze=False)
        for j, wd in enumerate(wds):
            for x, ms in rows:
                if x["wd"] != wd:
                    continue
                s = [max(m["step"], 1) for m in ms]
                label = f"batch {x['batch']}" + ("" if x["noise"] == 1.0 else f", σ={x['noise']}")
                axes[0, j].plot(s, [m["val_pehe"] for m in ms], label=label)
                axes[1, j].plot(s, [m["train_loss"] for m in ms], label=label)
            if a.ref is not None:
                axes[0, j].axhline(a.ref, color="grey", ls=":", lw=1)
            axes[0, j].set_title(f"weight decay {wd:g}")
            axes[0, j].set_ylabel("held-out PEHE")
            axes[1, j].set_ylabel("factual train MSE")
            axes[1, j].set_yscale("log")
            axes[1, j].set_xlabel("step")
            axes[1, j].set_xscale("log")
            axes[0, j].legend(fontsize=8)
        fig.suptitle("TARNet, Nie & Wager setup D (700 train / 300 held-out units, σ = 1 unless marked), AdamW lr 1e-3")
        fig.tight_layout()
        a.fig.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(a.fig, dpi=110)
        print("wrote", a.fig)


if __name__ == "__main__":
    main()
