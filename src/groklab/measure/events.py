"""Grokking events and the phase of a run (Liu et al. 2022, arXiv 2205.10343, §4).

``memorized_at[thr]``: first evaluated step whose train accuracy is >= thr;
``generalized_at[thr]``: likewise for validation accuracy. Resolution is ``train.eval_every``.
Phase (at the threshold ``train.phase_threshold``, 0.9 as in Liu et al.):
comprehension (both reached, t_val - t_train <= gap), grokking (both reached, gap above),
memorization (train reached, validation not), confusion (train not reached).
"""
from __future__ import annotations

THRESHOLDS = (0.5, 0.9, 0.95, 0.99)


class EventTracker:
    """Streams evaluation records and keeps the first-crossing steps per threshold."""

    def __init__(self, thresholds=THRESHOLDS):
        self.thresholds = tuple(thresholds)
        self.memorized_at: dict[str, int | None] = {str(t): None for t in self.thresholds}
        self.generalized_at: dict[str, int | None] = {str(t): None for t in self.thresholds}

    def update(self, step: int, train_acc: float, val_acc: float) -> None:
        for t in self.thresholds:
            k = str(t)
            if self.memorized_at[k] is None and train_acc >= t:
                self.memorized_at[k] = step
            if self.generalized_at[k] is None and val_acc >= t:
                self.generalized_at[k] = step

    @classmethod
    def from_records(cls, records, thresholds=THRESHOLDS) -> "EventTracker":
        tr = cls(thresholds)
        for r in records:
            tr.update(r["step"], r["train_acc"], r["val_acc"])
        return tr


def phase_label(t_train: int | None, t_val: int | None, gap: int = 1000) -> str:
    """Liu et al.'s four phases from the steps at which train and validation reach the threshold."""
    if t_train is None:
        # validation without train is rare (label noise); still "confusion" of memorisation
        return "confusion"
    if t_val is None:
        return "memorization"
    return "grokking" if t_val - t_train > gap else "comprehension"
