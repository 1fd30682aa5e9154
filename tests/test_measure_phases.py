"""Phase segmentation on synthetic curves with known boundaries."""
import math

import numpy as np
import pytest

from groklab.measure.phases import cleanup_window, decay_rate, segment

X_HALF = math.log(3 + 2 * math.sqrt(2))  # σ'(x) = σ(x)(1-σ(x)) is half its peak at x = ±1.7627


def synthetic(c=6000, w=400, T=20000, every=10, gen_at=6500):
    """metrics with log Σw² = log 2000 − 1.5·σ((t − c)/w): the decay rate is a logistic bump
    centred on c with full width at half maximum c ± 1.7627 w; excluded loss lowest at 1500."""
    metrics, records = [], []
    for t in range(0, T + 1, every):
        sig = 1 / (1 + math.exp(-(t - c) / w))
        # an earlier, sharper weight drop at 2,000 while the validation loss still rises (to 3,000)
        early = 1 / (1 + math.exp(-(t - 2000) / 100))
        metrics.append({"step": t, "train_acc": min(1.0, t / 1000), "val_acc": 1.0 if t >= gen_at else 0.1,
                        "val_loss": 20 - abs(t - 3000) / 1000,
                        "weight_norm": math.sqrt(2000 * math.exp(-1.5 * sig - 0.5 * early))})
    for t in range(0, T + 1, 500):
        records.append({"step": t, "excluded_loss": 0.1 + abs(t - 1500) / 1000})
    return metrics, records


def test_cleanup_is_the_full_width_at_half_maximum_of_the_weight_decay_rate():
    metrics, records = synthetic()
    ph = segment(metrics, records, threshold=0.9)
    assert ph["memorization_end"] == 1500
    assert ph["weight_decay_peak"] == pytest.approx(6000, abs=20)
    assert ph["val_loss_peak"] == 3000
    # the differencing window (±1 % of the run) broadens the bump a little
    assert ph["circuit_formation_end"] == pytest.approx(6000 - X_HALF * 400, abs=40)
    assert ph["cleanup_end"] == pytest.approx(6000 + X_HALF * 400, abs=40)


def test_a_run_that_never_generalizes_has_only_a_memorization_end():
    metrics, records = synthetic(gen_at=10 ** 9)
    ph = segment(metrics, records)
    assert ph["memorization_end"] == 1500
    assert ph["circuit_formation_end"] is None and ph["cleanup_end"] is None


def test_without_checkpoints_memorization_ends_at_train_accuracy():
    metrics, _ = synthetic()
    assert segment(metrics, [])["memorization_end"] == 990  # first step with train_acc >= 0.99
    # no key frequency: the excluded loss is just the train loss, so it says nothing
    _, records = synthetic()
    assert segment(metrics, records, has_key_freqs=False)["memorization_end"] == 990
    assert segment([], [])["memorization_end"] is None


def test_decay_rate_of_an_exponential_is_its_rate():
    t = np.arange(0, 1000, 10)
    r = decay_rate(t, 5 * np.exp(-0.003 * t))
    assert np.allclose(r, 0.003)
    assert cleanup_window(t, np.exp(0.001 * t)) is None  # weights that only grow: no cleanup
