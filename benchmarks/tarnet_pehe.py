"""Does TARNet's effect error (PEHE) improve late? Read the runs of a tarnet sweep (or run
directories), print one line per run, draw val_pehe and train loss against steps.

    python benchmarks/tarnet_pehe.py sweeps/tarnet_bs_wd [more run or sweep dirs] --fig docs/tarnet_pehe.png

Per run: ``fit`` = first step where the factual training MSE is below ``--fit`` (0.5, half the
noise variance σ² = 1 of the preset: the network is fitting noise); ``best`` = lowest val_pehe
and its step (what early stopping would keep); ``peak`` = highest val_pehe after ``best``;
``final`` = mean val_pehe of the last 5 evaluations; ``late drop`` = (peak − final) / peak, and
``half`` = first step after the peak where val_pehe is back halfway from the peak to the final
value. A delayed improvement here means: a late drop of at least 20 % while the training loss is
already below ``--fit``.
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


def row(cfg: dict, ms: list[dict], fit: float) -> dict:
    steps = [m["step"] for m in ms]
    pehe = [m["val_pehe"] for m in ms]
    t_fit = next((m["step"] for m in ms if m["train_loss"] < fit), None)
    i_best = min(range(len(ms)), key=pehe.__getitem__)
    i_peak = max(range(i_best, len(ms)), key=pehe.__getitem__)
    final = sum(pehe[-5:]) / len(pehe[-5:])
    drop = (pehe[i_peak] - final) / pehe[i_peak]
    mid = (pehe[i_peak] + final) / 2
    half = next((steps[i] for i in range(i_peak, len(ms)) if pehe[i] <= mid), None)
    fitted_after = all(m["train_loss"] < fit for m in ms[i_peak:])
    bs = cfg["train"]["batch_size"]
    return {"batch": bs or "full", "wd": cfg["optim"]["wd"], "lr": cfg["optim"]["lr"],
            "noise": cfg["task"]["noise"], "n": cfg["task"]["n_samples"], "setup": cfg["task"]["setup"],
            "fit": t_fit, "best": pehe[i_best], "best_at": steps[i_best], "peak": pehe[i_peak],
            "peak_at": steps[i_peak], "final": final, "drop": drop, "half": half,
            "delayed": drop >= 0.2 and fitted_after and t_fit is not None,
            "final_train_loss": ms[-1]["train_loss"], "steps": steps[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--fit", type=float, default=0.5)
    ap.add_argument("--fig", type=Path, default=None)
    a = ap.parse_args()
    runs = [r for d in a.dirs for r in runs_in(d)]
    rows = []
    print("setup n noise batch wd lr | fit | best @ | peak @ | final | late drop | half | delayed | final train MSE")
    for r in runs:
        cfg, ms = read(r)
        x = row(cfg, ms, a.fit)
        rows.append((x, ms))
        print(f"{x['setup']} {x['n']} {x['noise']} {x['batch']} {x['wd']:g} {x['lr']:g} | {x['fit']} | "
              f"{x['best']:.3f} @ {x['best_at']} | {x['peak']:.3f} @ {x['peak_at']} | {x['final']:.3f} | "
              f"{100 * x['drop']:.0f} % | {x['half']} | {'yes' if x['delayed'] else 'no'} | "
              f"{x['final_train_loss']:.3f}")
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
            axes[0, j].set_title(f"weight decay {wd:g}")
            axes[0, j].set_ylabel("held-out PEHE")
            axes[1, j].set_ylabel("factual train MSE")
            axes[1, j].set_yscale("log")
            axes[1, j].set_xlabel("step")
            axes[1, j].set_xscale("log")
            axes[0, j].legend(fontsize=8)
        fig.suptitle("TARNet, Nie & Wager setup D (700 train / 300 held-out units, σ = 1), AdamW lr 1e-3")
        fig.tight_layout()
        a.fig.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(a.fig, dpi=110)
        print("wrote", a.fig)


if __name__ == "__main__":
    main()
