"""forecast/: what the mutation run of the module found without a test (issue 23 item 9,
docs/testing.md): the learning curve (`forecast evaluate --learn`) and the "twice the step"
time baseline, each on synthetic runs whose answers are computed here."""
import json
import math

import numpy as np
import pytest

from groklab.forecast import evaluate as E
from groklab.forecast import records
from groklab.forecast.dataset import time_label, within_budget


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """x+y: 10 runs, x-y and x*y: 6 each (half of each grok at 300-800 of 1,000 steps)."""
    from test_forecast import synth_corpus
    root = tmp_path_factory.mktemp("c")
    synth_corpus(root / "a", n_per_op=10, ops=("x+y",))
    synth_corpus(root / "b", n_per_op=6, ops=("x-y", "x*y"))
    return records.load(root / "a") + records.load(root / "b")


def test_twice_the_step_is_scored_against_the_step_the_run_reached(runs):
    """The baseline guesses T = 2t at a forecast step t; its score is the median |ln(2t / T)|
    over the held-out runs that reached θ within their budget (computed here from the points)."""
    train = [r for r in runs if r["config"].task.op != "x*y"]
    test = [r for r in runs if r["config"].task.op == "x*y"]
    res = E.held_out(train, test, (0.9,), rounds=10)
    checked = 0
    for a in E.AT:
        pts = E.forecast_points(test, 0.9, a)
        ev = [(t, time_label(test[i]["summary"], 0.9)[0]) for i, t in pts
              if within_budget(test[i]["summary"], 0.9, int(test[i]["config"].train.steps))]
        if not ev:
            continue
        got = res["0.9"][f"{a:g}"]["time"]["twice the step"]
        assert got["n"] == len(ev)
        assert got["median_abs_log_ratio"] == pytest.approx(float(np.median([abs(math.log(2 * t / T)) for t, T in ev])),
                                                          rel=1e-12)
        checked += 1
    assert checked == len(E.AT)


def test_the_learning_curve_adds_the_users_runs_with_their_weight_and_scores_the_rest(runs):
    """x+y held out: its 10 runs in a fixed order, the first 2 and 4 learned, the other 6 scored;
    the model without them (k = 0) does not depend on the weight, those with them do."""
    lc = {w: E.learning_curve(runs, "op", "x+y", ks=(2, 4), weight=w, rounds=10, thresholds=(0.9,))
          for w in (1.0, 5.0)}
    for c in lc.values():
        assert c["family"] == "op = x+y" and c["test_runs"] == 6 and list(c["steps"]) == [0, 2, 4]
        for k in (0, 2, 4):
            assert set(c["steps"][k]["0.9"]) == {f"{a:g}" for a in E.AT}
            for m in c["steps"][k]["0.9"].values():
                assert m["n"] == 6 and 0.0 <= m["forecast"]["brier"] <= 1.0
    assert lc[1.0]["steps"][0] == lc[5.0]["steps"][0]
    assert lc[1.0]["steps"][4] != lc[5.0]["steps"][4]
    with pytest.raises(ValueError, match="op = x-y: 6 runs, need more than 20"):
        E.learning_curve(runs, "op", "x-y", rounds=10)


def test_evaluate_learn_passes_the_family_and_writes_the_learning_table(tmp_path, monkeypatch, capsys):
    """`forecast evaluate CORPUS --learn AXIS=FAMILY` (the evaluation itself stubbed: its tables
    are tested elsewhere): the axis and family reach learning_curve, its rows the markdown and the
    JSON; a malformed --learn, or a family too small to learn from, is one line and exit 2."""
    from groklab.cli import main
    from test_forecast import synth_corpus
    root = synth_corpus(tmp_path / "corpus", n_per_op=1, ops=("x+y",))
    seen = []
    monkeypatch.setattr(E, "evaluate", lambda runs, **kw: {"runs": len(runs), "axes": {}, "folds": []})
    metrics = {"n": 6, "positives": 3, "forecast": {"auroc": 0.75, "brier": 0.125},
               "time": {"forecast": {"median_abs_log_ratio": 0.25, "n": 3}}, "coverage": 0.5}

    def curve(runs, axis, family, rounds, log):
        seen.append((axis, family, rounds))
        return {"family": f"{axis} = {family}", "test_runs": 6, "steps": {5: {"0.9": {"0.1": metrics}}}}
    monkeypatch.setattr(E, "learning_curve", curve)
    out = tmp_path / "ev"
    assert main(["forecast", "evaluate", str(root), "--rounds", "10", "--learn", "op=x+y", "--out", str(out)]) == 0
    assert seen == [("op", "x+y", 10)]
    md = (out / "evaluation.md").read_text()
    assert "learning from the user's runs: op = x+y held out, scored on 6 of its runs" in md
    assert "| 5 | 0.9 | 10% | 6 (3) | 0.750 | 0.125 | 0.250 | 0.50 |" in md
    assert json.loads((out / "evaluation.json").read_text())["learning_curve"]["family"] == "op = x+y"
    capsys.readouterr()
    for bad in ("op", "size=x+y", "op="):
        assert main(["forecast", "evaluate", str(root), "--learn", bad, "--out", str(out)]) == 2
        assert f"--learn {bad!r}: expected AXIS=FAMILY with AXIS one of op, model, optim" in capsys.readouterr().err

    def too_few(runs, axis, family, rounds, log):
        raise ValueError(f"{axis} = {family}: 1 runs, need more than 20")
    monkeypatch.setattr(E, "learning_curve", too_few)
    assert main(["forecast", "evaluate", str(root), "--learn", "op=x+y", "--out", str(out)]) == 2
    assert "--learn 'op=x+y': op = x+y: 1 runs, need more than 20" in capsys.readouterr().err


def test_the_live_forecast_forecasts_while_its_time_is_under_its_share(tmp_path):
    """The 1 % throttle compares the forecasting time with the record's wall time: after a resume
    with 0.05 s spent forecasting, a record at 10 s (0.5 %) is forecast, one at 4 s (1.25 %) is
    skipped (a mutant that read the time from a wrong key skipped both)."""
    from groklab.forecast.live import LiveForecast
    from test_forecast import BUDGET, curve, synth_cfg, write_run
    recs = curve(range(0, 501, 10), True, 700)
    for t, written in ((10.0, True), (4.0, False)):
        d = write_run(tmp_path / f"t{t:g}", synth_cfg(), recs[:31])
        (d / "forecast.jsonl").write_text(json.dumps(
            {"step": 300, "budget": BUDGET, "p": {"0.9": 0.5, "0.99": 0.4}, "at": {}, "low": {}, "high": {},
             "reached": {"0.9": False, "0.99": False}, "seconds": 0.05}) + "\n")
        live = LiveForecast(synth_cfg(), d, start=310)
        live({**recs[31], "time": t})
        live.close()
        steps = [json.loads(line)["step"] for line in (d / "forecast.jsonl").read_text().splitlines()]
        assert steps == ([300, 310] if written else [300]), t


def test_forecast_actions_name_what_is_misplaced_or_missing(tmp_path, monkeypatch, capsys):
    """--learn on another action is one exact line; an action whose extra is not installed names
    the action and the extra to install."""
    from groklab.cli import main
    from groklab.forecast import cli
    assert main(["forecast", "build", str(tmp_path), "--learn", "op=x+y"]) == 2
    assert capsys.readouterr().err == "groklab: error: --axes and --learn are for `forecast evaluate`\n"

    def no_xgboost(corpus, args):
        raise ImportError("No module named 'xgboost'")
    monkeypatch.setattr(cli, "_build", no_xgboost)
    assert main(["forecast", "build", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("groklab: error: forecast build needs the forecast extra "
                                       "(pip install 'groklab[forecast]'): No module named 'xgboost'\n")


def test_config_features_read_each_setting():
    """Every config feature of two configs far apart: an MLP with decoupled decay, a gradient
    filter, weight-norm control and minibatches; a transformer with coupled (L2) decay and MSE."""
    from groklab.config import resolve
    from groklab.forecast.signals import config_features, task_size
    mlp = resolve("prieto", overrides=[("task.p", 31), ("task.frac", 0.4), ("model.hidden", [64, 64]),
                                       ("model.init_scale", 2.0), ("optim.lr", 0.01), ("optim.wd", 0.3),
                                       ("accel.grokfast", "ema"), ("accel.lamb", 2.0), ("accel.weight_norm", 40.0),
                                       ("train.batch_size", 100)])
    n, c = task_size(mlp)
    assert config_features(mlp) == pytest.approx({
        "log_lr": -2.0, "log_wd": math.log10(0.3), "log_l2": -6.0, "frac": 0.4, "log_n_train": math.log10(n),
        "log_classes": math.log10(c), "log_init_scale": math.log10(2.0), "is_transformer": 0.0, "n_layers": 3.0,
        "mse": 0.0, "orthograd": 0.0, "grokfast": 1.0, "grokfast_lamb": 2.0, "wn_control": 1.0, "stablemax": 0.0,
        "muon": 0.0, "batch_frac": 100 / n}, rel=1e-12)
    tf = resolve("default", overrides=[("model.n_layers", 2), ("optim.name", "adam"), ("optim.lr", 1e-3),
                                       ("optim.wd", 0.5), ("train.loss", "mse"), ("accel.orthograd", True)])
    n, c = task_size(tf)
    assert config_features(tf) == pytest.approx({
        "log_lr": -3.0, "log_wd": -4.0, "log_l2": math.log10(0.5), "frac": tf.task.frac, "log_n_train": math.log10(n),
        "log_classes": math.log10(c), "log_init_scale": math.log10(tf.model.init_scale), "is_transformer": 1.0,
        "n_layers": 2.0, "mse": 1.0, "orthograd": 1.0, "grokfast": 0.0, "grokfast_lamb": 0.0, "wn_control": 0.0,
        "stablemax": 0.0, "muon": 0.0, "batch_frac": 1.0}, rel=1e-12)


def test_the_held_out_splits_by_family_scale_and_budget():
    """Scale: trained on p ≤ 59 and the tasks without a modulus, scored on p ≥ 97 (p = 71, "mid",
    on neither side); budget: the configs dealt into two halves, each scored on its runs longer
    than SHORT with the other half training; a family is held out only when it is not all runs."""
    from groklab.config import resolve

    def run(p, op="x+y", name="modular", steps=1000, lr=1e-3):
        return {"config": resolve("prieto", overrides=[("task.name", name), ("task.p", p), ("task.op", op),
                                                       ("train.steps", steps), ("optim.lr", lr)])}
    runs = [run(31), run(53, "x-y"), run(71), run(97), run(113, steps=E.SHORT + 1000), run(31, name="parity"),
            run(31, lr=3e-3, steps=E.SHORT + 1)]
    sp = E.splits(runs)
    assert sp["scale"] == [("p ≥ 97", [0, 1, 5, 6], [3, 4])]
    (n0, tr0, te0), (n1, tr1, te1) = sp["budget"]
    assert (n0, n1) == (f"budget > {E.SHORT}, half 0", f"budget > {E.SHORT}, half 1")
    assert sorted(tr0 + tr1) == list(range(len(runs))) and not set(tr0) & set(tr1)
    assert set(te0) <= set(tr1) and set(te1) <= set(tr0) and sorted(te0 + te1) == [4, 6]
    assert [n for n, _, _ in sp["op"]] == ["parity", "x+y", "x-y"] and sp["model"] == [] and sp["optim"] == []


def test_a_live_forecast_without_its_model_warns_once_and_stays_quiet(tmp_path, monkeypatch):
    from groklab.forecast import model as Mod
    from groklab.forecast.live import LiveForecast
    from test_forecast import curve, synth_cfg, write_run

    def missing():
        raise ValueError("no model here")
    monkeypatch.setattr(Mod, "default_model", missing)
    recs = curve(range(0, 501, 10), True, 700)
    d = write_run(tmp_path / "r", synth_cfg(), recs[:31])
    with pytest.warns(RuntimeWarning, match=r"^train.forecast: no forecast for this run \(no model here\)$"):
        live = LiveForecast(synth_cfg(), d, start=310)
    assert live({**recs[31], "time": 10.0}) is None
    live.close()
    assert not (d / "forecast.jsonl").exists()


def test_cut_is_the_run_as_if_its_budget_had_been_the_horizon():
    from groklab.train.loop import summarize
    from test_forecast import curve, synth_cfg
    recs = curve(range(0, 1001, 10), True, 700)
    cfg = synth_cfg()
    run = {"records": recs, "config": cfg, "summary": summarize(cfg, recs, "early_stopped", 1.0), "dir": "r"}
    assert run["summary"]["generalized_at"]["0.9"] is not None
    c = E.cut(run, 500)
    assert c["records"] == recs[:51] and c["config"].train.steps == 500 and c["dir"] == "r"
    assert c["summary"]["steps_done"] == 500 and c["summary"]["status"] == "completed"
    assert c["summary"]["generalized_at"] == {}                     # reached later: censored away
    assert run["config"].train.steps == 1000 and len(run["records"]) == 101   # the run itself untouched
    whole = E.cut(run, 2000)
    assert whole["summary"] == {**run["summary"], "steps_done": 1000,
                                "generalized_at": {k: v for k, v in run["summary"]["generalized_at"].items()
                                                   if v is not None}}


def test_the_first_passage_law_needs_memorisation_by_the_forecast_step():
    """The law predicts from T_mem and the norm there; a run that memorises (train accuracy 0.9)
    only after the forecast step has no prediction yet (the later history is not read)."""
    from test_forecast import curve, synth_cfg
    recs = curve(range(0, 1001, 10), True, 700)              # train accuracy reaches 0.9 at ~step 60
    run = {"records": recs, "config": synth_cfg()}
    assert math.isnan(E.first_passage_predict(run, 40, (1.0, 2.0)))
    tm, log_v, rate = E.memorised(run, 300)
    assert E.first_passage_predict(run, 300, (1.0, 2.0)) == pytest.approx(max(tm + (log_v + 2.0) / rate, 301.0))
    assert math.isnan(E.first_passage_predict(run, 300, None))


def test_a_damaged_records_file_names_the_error(tmp_path):
    from groklab.config import ConfigError
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(ConfigError, match=r"bad\.jsonl\.gz: not a records file \(BadGzipFile: "):
        records.read(tmp_path / "bad.jsonl.gz")


def test_a_resumed_live_forecast_without_a_recorded_time_starts_its_share_at_zero(tmp_path):
    """forecast.jsonl lines written before ``seconds`` existed: no time spent forecasting is assumed."""
    from groklab.forecast.live import LiveForecast
    from test_forecast import BUDGET, curve, synth_cfg, write_run
    d = write_run(tmp_path / "r", synth_cfg(), curve(range(0, 311, 10), True, 700))
    (d / "forecast.jsonl").write_text(json.dumps(
        {"step": 300, "budget": BUDGET, "p": {"0.9": 0.5, "0.99": 0.4}, "at": {}, "low": {}, "high": {},
         "reached": {"0.9": False, "0.99": False}}) + "\n")
    live = LiveForecast(synth_cfg(), d, start=310)
    live.close()
    assert live.seconds == 0.0


def test_a_transformers_family_counts_its_layers():
    from groklab.config import resolve
    from groklab.forecast.dataset import families
    for n in (1, 2):
        assert families(resolve("default", overrides=[("model.n_layers", n)]))["model"] == f"transformer{n}"


def test_a_run_that_stopped_early_has_ended_before_its_budget():
    """An early-stopped run's summary ends it at its last step: no chance left is forecast, though
    the budget is not spent (the same history without a summary is still open)."""
    from groklab.forecast.predict import forecast
    from test_forecast import curve, synth_cfg
    recs = curve(range(0, 501, 10), False, 0)
    cfg = synth_cfg()                                           # budget 1,000 steps
    done = forecast(recs, config=cfg, summary={"status": "early_stopped", "steps_done": 500}, explain=False)
    assert done.ended and all(tg.p == 0.0 for tg in done.targets.values())
    assert not forecast(recs, config=cfg, explain=False).ended


def test_an_action_name_alone_is_read_as_a_run_directory(tmp_path, monkeypatch, capsys):
    """`forecast build` without a path forecasts a run directory called build (none here)."""
    from groklab.cli import main
    monkeypatch.chdir(tmp_path)
    assert main(["forecast", "build"]) == 2
    assert capsys.readouterr().err == ("groklab: error: 'build' is not a run directory "
                                       "(it needs config.json and metrics.jsonl)\n")


def test_a_learned_model_goes_into_a_directory_whose_parents_are_made(runs, tmp_path):
    """`forecast learn --out new/deeper/model`: the directories above it are made as well."""
    from groklab.forecast import model as Mod
    from groklab.forecast.learn import fit_and_save
    out = tmp_path / "new" / "deeper" / "model"
    fit_and_save(runs[:12], out, rounds=5, meta={"corpus": "test"})
    assert Mod.load(out).meta["corpus"] == "test" and (out / records.FILE).is_file()
