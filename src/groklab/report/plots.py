"""Figures of a run: accuracy and loss against step on a log axis, the events marked."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from groklab.runs.rundir import atomic_write_bytes  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """Render to memory, then write atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(records: list[dict], summary: dict, path: str | Path, title: str = "") -> None:
    """Two panels: train/validation accuracy and loss against step (log x), with the steps at
    which each reaches the phase threshold drawn as vertical lines."""
    steps = [max(r["step"], 1) for r in records]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(steps, [r["train_acc"] for r in records], label="train", color="tab:blue")
    ax1.plot(steps, [r["val_acc"] for r in records], label="validation", color="tab:red")
    ax1.set_ylabel("accuracy")
    ax1.set_ylim(-0.02, 1.02)
    ax2.plot(steps, [r["train_loss"] for r in records], label="train", color="tab:blue")
    ax2.plot(steps, [r["val_loss"] for r in records], label="validation", color="tab:red")
    ax2.set_ylabel("loss")
    ax2.set_yscale("log")
    thr = str(summary.get("phase_threshold", 0.9))
    mem = (summary.get("memorized_at") or {}).get(thr)
    gen = (summary.get("generalized_at") or {}).get(thr)
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if mem:
            ax.axvline(mem, color="tab:blue", ls="--", lw=1, label=f"train ≥ {thr} @ {mem}")
        if gen:
            ax.axvline(gen, color="tab:red", ls="--", lw=1, label=f"val ≥ {thr} @ {gen}")
    ax1.legend(loc="center left", fontsize=8)
    fig.suptitle(f"{title}  —  phase: {summary.get('phase', '?')}")
    save_figure(fig, path)
