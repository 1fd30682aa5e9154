"""Figures of ``groklab analyze`` (written as fig_progress_*.png into the run directory).

1. ``fig_progress_1_measures.png``: the measures against step (linear axis, as in Nanda et al.
   2023, Fig. 7) with the phase boundaries drawn: losses (train, validation, restricted,
   excluded), sum of squared weights, Gini of n_E and n_L, collapse / zero-loss fractions.
2. ``fig_progress_2_spectrum.png``: n_E and n_L of the last checkpoint, bars per frequency, the
   key frequencies in colour.
3. ``fig_progress_3_neurons.png``: each neuron's energy share per frequency (last checkpoint),
   neurons sorted by the frequency they cluster on, and the number of neurons per frequency.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from groklab.measure import circuit
from groklab.report.plots import plt, save_figure

PHASE_STYLE = (("memorization_end", "tab:green", "memorization ends"),
               ("circuit_formation_end", "tab:orange", "circuit formed"),
               ("cleanup_end", "tab:purple", "cleanup ends"))


def _phases(ax, phases: dict, label: bool = False) -> None:
    for key, color, text in PHASE_STYLE:
        s = phases.get(key)
        if s is not None:
            ax.axvline(s, color=color, ls="--", lw=1, label=f"{text} @ {s}" if label else None)


def plot_measures(metrics: list[dict], records: list[dict], info: dict, path: Path) -> None:
    st = [r["step"] for r in records]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0, 0]
    if metrics:
        ax.plot([m["step"] for m in metrics], [m["train_loss"] for m in metrics], color="tab:blue", lw=1, label="train")
        ax.plot([m["step"] for m in metrics], [m["val_loss"] for m in metrics], color="tab:red", lw=1,
                label="validation")
    ax.plot(st, [r["restricted_loss"] for r in records], "o-", ms=3, color="tab:olive", label="restricted")
    ax.plot(st, [r["excluded_loss"] for r in records], "o-", ms=3, color="tab:cyan", label="excluded")
    ax.set_yscale("log")
    ax.set_title(f"losses (K = {info['key_freqs']})")
    _phases(ax, info["phases"], label=True)
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    if metrics and metrics[0].get("weight_norm") is not None:
        ax.plot([m["step"] for m in metrics], [m["weight_norm"] ** 2 for m in metrics], color="k", lw=1, label="total")
    ax.set_title("sum of squared weights")
    _phases(ax, info["phases"])
    ax = axes[1, 0]
    ax.plot(st, [r["gini_E"] for r in records], "o-", ms=3, label="Gini n_E")
    ax.plot(st, [r["gini_L"] for r in records], "o-", ms=3, label="Gini n_L")
    ax.plot(st, [r["key_share_E"] for r in records], "s:", ms=3, label="key share of n_E²")
    ax.plot(st, [r["rqi"] for r in records], "^:", ms=3, label="RQI")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("sparsity in the Fourier basis")
    ax.legend(fontsize=7)
    _phases(ax, info["phases"])
    ax = axes[1, 1]
    ax.plot(st, [r["softmax_collapse"] for r in records], "o-", ms=3, label="softmax collapse")
    ax.plot(st, [r["zero_loss_frac"] for r in records], "s-", ms=3, label="zero-loss fraction")
    ax.plot(st, [r["restricted_acc"] for r in records], "^-", ms=3, label="restricted accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("training pairs: collapse; grid: restricted accuracy")
    ax.legend(fontsize=7)
    _phases(ax, info["phases"])
    for a in axes.flat:
        a.set_xlabel("step")
        a.grid(alpha=0.3)
    fig.suptitle(f"progress measures — {info['op']} mod {info['p']} ({info['basis']} basis, n = {info['group_order']})")
    save_figure(fig, path)


def plot_spectrum(record: dict, info: dict, path: Path) -> None:
    K = set(info["key_freqs"])
    fig, axes = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    for ax, key, title in ((axes[0], "n_E", "embedding n_E"), (axes[1], "n_L", "neuron-logit map n_L")):
        v = record[key]
        ks = np.arange(1, len(v) + 1)
        ax.bar(ks, v, color=["tab:red" if k in K else "tab:gray" for k in ks])
        ax.set_ylabel("norm")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{title} per frequency (cos and sin combined) at step {record['step']}; key in red")
    axes[1].set_xlabel("frequency k" + (" (discrete-log basis)" if info["basis"] == "dlog" else ""))
    save_figure(fig, path)


def plot_neurons(acts: torch.Tensor, info: dict, path: Path) -> None:
    S = circuit.neuron_frequency_shares(acts, info["group_order"]).numpy()     # (N, n//2)
    freq = np.array(info["neuron_freq"])
    order = np.lexsort((-S.max(1), np.where(freq == 0, 10 ** 6, freq)))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 1]})
    im = a1.imshow(S[order], aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1,
                   extent=(0.5, S.shape[1] + 0.5, len(order), 0))
    fig.colorbar(im, ax=a1, label="share of neuron's energy")
    a1.set_xlabel("frequency k")
    a1.xaxis.set_major_locator(MaxNLocator(integer=True))
    a1.set_ylabel("neuron (sorted by cluster)")
    a1.set_title(f"neurons clustered by frequency: {info['neurons_clustered']} of {info['neurons']} "
                 f"with share >= {info['share_threshold']}")
    counts = info["neurons_per_freq"]
    a2.bar([str(k) for k in counts], list(counts.values()), color="tab:red")
    a2.set_xlabel("key frequency")
    a2.set_ylabel("neurons")
    save_figure(fig, path)


def draw_all(d: Path, metrics: list[dict], records: list[dict], info: dict, acts: torch.Tensor) -> list[Path]:
    paths = [d / "fig_progress_1_measures.png", d / "fig_progress_2_spectrum.png", d / "fig_progress_3_neurons.png"]
    plot_measures(metrics, records, info, paths[0])
    plot_spectrum(records[-1], info, paths[1])
    plot_neurons(acts, info, paths[2])
    return paths
