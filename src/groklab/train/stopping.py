"""Stopping a run early: the early-stop rule (one copy for the loop and the ensemble trainer),
and ``StopRun``, which a sink raises to end a run cleanly."""
from __future__ import annotations


class StopRun(Exception):
    """Raised by a sink to end a run early and cleanly (a sweep's pruner): the training loop
    summarises the run like any other, with ``status`` and the ``summary`` entries merged into
    summary.json (its cost, forecast and report included)."""

    def __init__(self, message: str, status: str = "pruned", summary: dict | None = None):
        super().__init__(message)
        self.status, self.summary = status, summary or {}


class EarlyStop:
    """Stop once validation accuracy has stayed ``>= threshold`` for ``patience`` steps.

    The streak starts at the first evaluation at or above the threshold and is reset by any
    evaluation below it; ``threshold = 0`` turns the rule off.

    >>> rule = EarlyStop(0.9, patience=20)
    >>> [rule.update(s, a) for s, a in [(0, 0.95), (10, 0.5), (20, 0.95), (30, 0.95), (40, 0.95)]]
    [False, False, False, False, True]
    """

    def __init__(self, threshold: float, patience: int):
        self.threshold, self.patience = threshold, patience
        self.since: int | None = None

    def update(self, step: int, val_acc: float) -> bool:
        """Record the evaluation at ``step``; True when the run should stop here."""
        if self.threshold <= 0:
            return False
        if val_acc < self.threshold:
            self.since = None
            return False
        if self.since is None:
            self.since = step
        return step - self.since >= self.patience

    @property
    def message(self) -> str:
        return (f"validation accuracy >= {self.threshold} since step {self.since} "
                f"(patience {self.patience})")
