"""The early-stop rule: a streak of evaluations at or above the threshold, reset by any below it."""
import groklab
from groklab.train import loop
from groklab.train.stopping import EarlyStop


def test_the_streak_is_reset_when_validation_accuracy_drops_below_the_threshold():
    rule = EarlyStop(0.9, patience=20)
    got = [rule.update(s, a) for s, a in [(0, 0.95), (10, 0.95), (20, 0.89), (30, 0.9), (40, 0.95), (50, 1.0)]]
    assert got == [False, False, False, False, False, True]
    assert rule.since == 30 and "since step 30 (patience 20)" in rule.message


def test_exactly_at_the_threshold_counts_and_patience_zero_stops_at_once():
    rule = EarlyStop(0.99, patience=0)
    assert [rule.update(s, a) for s, a in [(0, 0.98), (5, 0.99)]] == [False, True]


def test_threshold_zero_never_stops():
    rule = EarlyStop(0.0, patience=0)
    assert not any(rule.update(s, 1.0) for s in range(10))


def test_a_run_stops_only_after_an_unbroken_streak(tmp_path, monkeypatch):
    """Validation accuracy is scripted (1, 1, 0, 1, 1, 1, ...): a streak from step 1 is broken at
    step 3, so with patience 2 the run stops at step 6, not at step 3."""
    script = iter([0.0, 1.0, 1.0, 0.0] + [1.0] * 100)
    monkeypatch.setattr(loop, "evaluate_all", lambda model, x, y, loss_fn: (0.5, next(script), {}))
    cfg = groklab.resolve("default", overrides=[
        "task.p=13", "task.frac=0.5", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32",
        "train.steps=50", "train.eval_every=1", "train.stop_threshold=0.9", "train.patience=2",
        "train.n_checkpoints=0"])
    s = groklab.run(cfg, out=tmp_path / "r", progress=False, report=False).summary
    assert (s["status"], s["steps_done"]) == ("early_stopped", 6)
    assert "since step 4 (patience 2)" in s["message"]
