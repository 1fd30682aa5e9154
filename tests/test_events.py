"""Grokking events and phases (Liu et al. 2022): the definitions every summary is built on."""
import pytest

from groklab.measure.events import THRESHOLDS, EventTracker, phase_label


def test_accuracy_exactly_at_a_threshold_counts_as_reaching_it():
    ev = EventTracker((0.5, 0.9))
    ev.update(0, 0.49, 0.0)
    ev.update(10, 0.5, 0.5)
    ev.update(20, 0.9, 0.89999)
    ev.update(30, 0.9, 0.9)
    assert ev.memorized_at == {"0.5": 10, "0.9": 20}
    assert ev.generalized_at == {"0.5": 10, "0.9": 30}


def test_the_event_is_the_first_crossing_even_if_accuracy_drops_and_rises_again():
    recs = [{"step": s, "train_acc": tr, "val_acc": va} for s, tr, va in [
        (0, 0.1, 0.0), (100, 0.95, 0.2), (200, 0.4, 0.96), (300, 1.0, 0.1), (400, 1.0, 1.0)]]
    ev = EventTracker.from_records(recs)
    assert ev.memorized_at == {"0.5": 100, "0.9": 100, "0.95": 100, "0.99": 300}
    assert ev.generalized_at == {"0.5": 200, "0.9": 200, "0.95": 200, "0.99": 400}


def test_thresholds_never_reached_stay_none():
    ev = EventTracker.from_records([{"step": 0, "train_acc": 0.6, "val_acc": 0.1}])
    assert ev.memorized_at == {"0.5": 0, "0.9": None, "0.95": None, "0.99": None}
    assert set(ev.generalized_at.values()) == {None}
    assert tuple(float(k) for k in ev.memorized_at) == THRESHOLDS


@pytest.mark.parametrize("t_train, t_val, gap, phase", [
    (100, 1100, 1000, "comprehension"),     # exactly at the gap: not yet grokking
    (100, 1101, 1000, "grokking"),
    (100, 100, 0, "comprehension"),
    (100, 101, 0, "grokking"),
    (500, 200, 1000, "comprehension"),      # validation first (label noise)
    (100, None, 1000, "memorization"),
    (None, None, 1000, "confusion"),
    (None, 300, 1000, "confusion"),
])
def test_phase_label(t_train, t_val, gap, phase):
    assert phase_label(t_train, t_val, gap) == phase


def test_phase_label_defaults_to_liu_et_al_gap_of_1000():
    assert phase_label(0, 1000) == "comprehension" and phase_label(0, 1001) == "grokking"
