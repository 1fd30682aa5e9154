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


def own_metrics(records: list[dict], limit: int = 6) -> list[str]:
    """The names a model's own ``metrics`` logged (as train_<name> / val_<name>: a GP's ELBO
    terms, TARNet's PEHE), at most ``limit``, in logged order."""
    last = records[-1] if records else {}
    return [k[4:] for k in last if k.startswith("val_") and k not in ("val_loss", "val_acc")][:limit]


def plot_curves(records: list[dict], summary: dict, path: str | Path, title: str = "") -> None:
    """Train/validation accuracy and loss against step (log x), with the steps at which each
    reaches the phase threshold drawn as vertical lines; a third panel with the model's own
    metrics when it logs any (validation solid, training dashed)."""
    steps = [max(r["step"], 1) for r in records]
    own = own_metrics(records)
    fig, axes = plt.subplots(1, 3 if own else 2, figsize=(16 if own else 11, 4))
    ax1, ax2 = axes[:2]
    if own:
        _plot_own(axes[2], steps, records, own)
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
    for ax in axes:
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


def _plot_own(ax, steps: list[int], records: list[dict], names: list[str]) -> None:
    for i, name in enumerate(names):
        color = f"C{i}"
        ax.plot(steps, [r.get(f"val_{name}") for r in records], color=color, label=name)
        if f"train_{name}" in records[-1]:
            ax.plot(steps, [r.get(f"train_{name}") for r in records], color=color, ls="--", lw=1)
    ax.set_ylabel("the model's own metrics (val solid, train dashed)")
    ax.legend(fontsize=8)
