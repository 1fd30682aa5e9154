"""The forecast's signals and run keys on histories with answers known in closed form, a run
ended exactly at its budget, and `forecast evaluate` on named axes into an existing directory
(issue 23 item 9: what the mutation run of forecast/ found unpinned)."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from groklab.config import resolve
from groklab.forecast.dataset import config_key, families
from groklab.forecast.signals import decay_rate, norm_features, time_features


def power_law_history(a=-0.5, mem_from=500.0, acc_after=1.0):
    """A weight norm 3·(s+1)^a: its log is exactly linear in log10(s + 1)."""
    s = np.arange(0, 1001, 50.0)
    return {"step": s, "weight_norm": 3.0 * (s + 1) ** a,
            "train_acc": np.where(s >= mem_from, acc_after, 0.5)}


def test_norm_features_of_a_power_law_norm():
    h = power_law_history()
    f = norm_features(h, 1e-3)
    w, s = h["weight_norm"], h["step"]
    assert f["slope_log_wn"] == pytest.approx(-0.5 * math.log(10), rel=1e-9)   # d ln w / d log10(s+1)
    assert f["log_wn_below_peak"] == pytest.approx(math.log(w[0] / w[-1]), rel=1e-12)  # the peak is step 0
    assert f["log_wn_ratio"] == pytest.approx(math.log(w[-1] / w[0]), rel=1e-12)
    assert f["log_wn_since_mem"] == pytest.approx(math.log(w[-1] / w[s == 500][0]), rel=1e-12)
    rising = dict(h, weight_norm=w[::-1].copy())                  # peak at the end: nothing below it
    assert norm_features(rising, 1e-3)["log_wn_below_peak"] == 0.0


def test_time_features_in_relaxation_times_and_without_memorisation():
    f = time_features(power_law_history(), 1e-3)
    assert f["log_t_tau"] == pytest.approx(0.0, abs=1e-12)        # 1000 steps × ηλ 1e-3 = one τ
    assert math.log10(0.45) <= f["log_mem_tau"] <= math.log10(0.5)  # memorised between steps 450 and 500
    never = time_features(power_law_history(acc_after=0.8), 1e-3)
    assert never["log_t_tau"] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(never["log_mem_tau"]) and math.isnan(never["log_since_mem_tau"])


@pytest.mark.parametrize("name, wd, rate", [("adamw", 1.0, 1e-3), ("muon", 0.5, 5e-4), ("adam", 1.0, math.nan),
                                            ("sgd", 1.0, math.nan), ("adamw", 0.0, math.nan)])
def test_decay_rate_is_eta_lambda_only_for_decoupled_decay(name, wd, rate):
    got = decay_rate(SimpleNamespace(optim=SimpleNamespace(name=name, lr=1e-3, wd=wd)))
    assert (math.isnan(got) and math.isnan(rate)) or got == pytest.approx(rate, rel=1e-12)


def test_muon_is_its_own_optimiser_family_and_logging_keys_do_not_split_a_config():
    c = resolve("prieto", overrides=[("optim.name", "muon")])
    assert families(c)["optim"] == "muon"
    c.accel.grokfast = "ema"
    assert families(c)["optim"] == "muon"                         # even with a gradient filter
    key = config_key(c)
    for k, v in (("train.checkpoint_every", 7), ("train.save_every", 9), ("train.n_checkpoints", 3),
                 ("train.steps", 123), ("train.seed", 5)):
        d = resolve("prieto", overrides=[("optim.name", "muon"), ("accel.grokfast", "ema"), (k, v)])
        assert config_key(d) == key, k
    assert config_key(resolve("prieto", overrides=[("optim.name", "muon"), ("accel.grokfast", "ema"),
                                                   ("optim.lr", 0.5)])) != key


def test_a_history_that_reaches_the_budget_has_ended():
    from groklab.forecast.predict import forecast
    cfg = resolve("prieto", overrides=[("train.steps", 1000)])
    recs = [{"step": s, "train_loss": 0.01, "train_acc": 1.0 if s >= 200 else 0.5, "val_loss": 3.0,
             "val_acc": 0.05, "weight_norm": 10.0} for s in range(0, 1001, 100)]
    fc = forecast(recs, config=cfg, explain=False)
    assert fc.ended and all(tg.p == 0.0 for tg in fc.targets.values())  # the budget is spent: no chance left


def test_evaluate_on_named_axes_into_an_existing_directory(tmp_path, capsys):
    from groklab.cli import main
    from test_forecast import synth_corpus
    root = synth_corpus(tmp_path / "corpus", n_per_op=6)
    (tmp_path / "ev").mkdir()                                     # an earlier evaluation's directory
    assert main(["forecast", "evaluate", str(root), "--rounds", "10", "--axes", "op", "--out",
                 str(tmp_path / "ev")]) == 0
    res = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert set(res["axes"]) == {"op"} and {f["axis"] for f in res["folds"]} == {"op"}
    md = (tmp_path / "ev" / "evaluation.md").read_text()

    def times(d):                                                 # every "time" table in the results
        if isinstance(d, dict):
            yield from ([d["time"]] if isinstance(d.get("time"), dict) else [])
            for v in d.values():
                yield from times(v)
        elif isinstance(d, list):
            for v in d:
                yield from times(v)
    cells = [f"{t['twice the step']['median_abs_log_ratio']:.3f}" for t in times(res) if "twice the step" in t]
    assert cells and all(c in md for c in cells)                  # the time baselines' table is filled in
