"""Phase boundaries of a grokking run from its progress measures (after Nanda et al. 2023,
arXiv 2301.05217, §5.2: memorization, circuit formation, cleanup).

The paper describes the phases by what the measures do; groklab turns that into a rule:

* **memorization ends** where the *excluded loss* is lowest: until then it falls with the train
  loss; afterwards it rises while the train loss stays flat (circuit formation). Taken over the
  analysed checkpoints up to the first step with validation accuracy >= ``threshold``
  (checkpoint resolution; the first step with train accuracy >= 0.99 if there is no checkpoint
  or no key frequency).
* **cleanup** is where the *sum of squared weights* falls sharply while the validation loss
  falls. The decay rate r(t) = −d log(Σw²)/dt (metrics.jsonl, every ``eval_every`` steps,
  differenced over a window of ±``WINDOW`` of the run) is searched for its highest peak after both
  the end of memorization and the validation loss's maximum (before generalization: weights also
  drop sharply right after memorization, while the validation loss still rises); cleanup is that
  peak's full width at half maximum. **Circuit formation ends** at the left half-maximum crossing (the last
  step before the peak with r <= r_max/2), **cleanup ends** at the right one (the first step after
  the peak with r <= r_max/2).

A run whose validation accuracy never reaches ``threshold`` has no circuit formation or cleanup
end (None): only the end of memorization is reported.
"""
from __future__ import annotations

import math

import numpy as np

WINDOW = 0.01      # half-width of the differencing window, as a fraction of the run's samples
HALF = 0.5         # the "half" of full width at half maximum
RULE = ("memorization ends at the excluded-loss minimum (before generalization); cleanup = full "
        "width at half maximum of the highest peak of -d log(sum of squared weights)/dt after "
        "both the end of memorization and the validation-loss maximum")


def decay_rate(steps, sum_sq, window: float = WINDOW) -> np.ndarray:
    """r_i = −(log w[i+h] − log w[i−h]) / (t[i+h] − t[i−h]), h ≈ ``window`` of the samples
    (clipped at the ends). steps, sum_sq (T,) -> (T,) float64, per step."""
    t, y = np.asarray(steps, float), np.log(np.asarray(sum_sq, float))
    T = len(t)
    if T < 3:
        return np.zeros(T)
    h = max(1, int(round(window * T)))
    lo, hi = np.clip(np.arange(T) - h, 0, T - 1), np.clip(np.arange(T) + h, 0, T - 1)
    return -(y[hi] - y[lo]) / np.maximum(t[hi] - t[lo], 1e-12)


def cleanup_window(steps, sum_sq, after: int = 0, window: float = WINDOW) -> tuple[int, int, int] | None:
    """(left crossing, peak, right crossing) steps of the weight-decay-rate peak after step
    ``after``; None if the weights never shrink there."""
    t = np.asarray(steps, float)
    r = decay_rate(t, sum_sq, window)
    idx = np.nonzero(t > after)[0]
    if len(idx) < 3:
        return None
    i_pk = idx[np.argmax(r[idx])]
    r_max = r[i_pk]
    if not r_max > 0:
        return None
    below = r <= HALF * r_max
    left = [i for i in idx if i < i_pk and below[i]]
    right = [i for i in idx if i > i_pk and below[i]]
    i_l = left[-1] if left else idx[0]
    i_r = right[0] if right else len(t) - 1
    return int(t[i_l]), int(t[i_pk]), int(t[i_r])


def segment(metrics: list[dict], records: list[dict], threshold: float = 0.9,
            has_key_freqs: bool = True) -> dict:
    """Phase boundaries from metrics.jsonl records (step, train_acc, val_acc, weight_norm) and
    analysis records (step, excluded_loss). Returns a JSON-ready dict (see module doc).
    ``has_key_freqs=False`` (K is empty: the excluded loss is the train loss) falls back to the
    train-accuracy rule for the end of memorization."""
    out = {"memorization_end": None, "circuit_formation_end": None, "cleanup_end": None,
           "weight_decay_peak": None, "rule": RULE}
    if not metrics:
        return out
    mem_acc = next((r["step"] for r in metrics if r["train_acc"] >= 0.99), None)
    gen_at = next((r["step"] for r in metrics if r["val_acc"] >= threshold), None)
    # the excluded loss bottoms out before the run generalizes
    ex = [(r["step"], r["excluded_loss"]) for r in records
          if has_key_freqs and math.isfinite(r.get("excluded_loss", math.nan))
          and (gen_at is None or r["step"] <= gen_at)]
    if ex:
        out["memorization_end"] = min(ex, key=lambda e: e[1])[0]
    elif mem_acc is not None:
        out["memorization_end"] = mem_acc
    ms = [r for r in metrics if r.get("weight_norm") is not None]
    if gen_at is None or len(ms) < 3:
        return out
    steps = np.array([r["step"] for r in ms])
    sum_sq = np.array([r["weight_norm"] ** 2 for r in ms])
    # weights can also fall sharply right after memorization (the memorizing solution compresses)
    # while the validation loss still rises; cleanup comes after the validation loss has peaked
    val_peak = max((r for r in metrics if r["step"] <= gen_at), key=lambda r: r["val_loss"])["step"]
    out["val_loss_peak"] = val_peak
    win = cleanup_window(steps, sum_sq, after=max(out["memorization_end"] or 0, val_peak))
    if win:
        out["circuit_formation_end"], out["weight_decay_peak"], out["cleanup_end"] = win
    return out
