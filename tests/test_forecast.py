"""The forecast: signals on curves with known answers, censoring, the model files, the CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from groklab.config import ConfigError, resolve
from groklab.forecast import model as M
from groklab.forecast.dataset import build_table, families, time_label, within_budget
from groklab.forecast.signals import FEATURES, SIZE, features, oscillation_spectrum
from groklab.runs.rundir import write_json
from groklab.train.loop import summarize

BUDGET = 1000


def curve(steps, groks: bool, t_grok: float, p: int = 31, seed: int = 0, wobble: float = 0.0):
    """Synthetic records: memorise by ~step 60; validation follows a sigmoid centred at
    ``t_grok`` (and creeps up before it) when ``groks``, else stays at chance."""
    rng = np.random.default_rng(seed)
    chance = 1 / p
    out = []
    for s in steps:
        tr = 1 / (1 + math.exp(-(s - 40) / 8))
        if groks:
            va = chance + (1 - chance) * (0.15 * min(1.0, s / t_grok) + 0.85 / (1 + math.exp(-(s - t_grok) / 25)))
        else:
            va = chance + 0.01 * rng.random()
        tl = math.exp(-s / 100) * (1 + wobble * math.sin(2 * math.pi * s / 100)) + 1e-3
        out.append({"step": int(s), "train_loss": tl, "train_acc": tr, "val_loss": 3.0 - 2.5 * (va - chance),
                    "val_acc": min(va, 1.0), "lr": 1e-3, "weight_norm": 10 + 5 * tr - (3 * va if groks else 0),
                    "time": s * 1e-3})
    return out


def synth_cfg(op="x+y", wd=1.0, budget=BUDGET):
    return resolve("prieto", overrides=[("task.p", 31), ("task.op", op), ("optim.wd", wd),
                                        ("train.steps", budget), ("train.eval_every", 10)])


def write_run(d, cfg, records, status="completed"):
    d.mkdir(parents=True)
    write_json(d / "config.json", cfg.to_dict())
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    write_json(d / "summary.json", summarize(cfg, records, status, records[-1]["time"]))
    return d


def synth_corpus(root, n_per_op=12, ops=("x+y", "x-y", "x*y")):
    """Runs of one config per op where the seed decides: half grok (at 300-800), half never."""
    for op in ops:
        for i in range(n_per_op):
            groks = i % 2 == 0
            recs = curve(range(0, BUDGET + 1, 10), groks, 300 + 50 * (i % 11), seed=i)
            write_run(root / op.replace("*", "m") / f"r{i}", synth_cfg(op), recs)
    return root


# --- signals ------------------------------------------------------------------------------

def test_features_see_only_the_history_up_to_the_forecast_step():
    cfg = synth_cfg()
    recs = curve(range(0, BUDGET + 1, 10), True, 600)
    f_cut = features(recs[:31], cfg, 300)
    f_all = features(recs, cfg, 300)
    assert f_cut == pytest.approx(f_all, nan_ok=True)
    assert list(f_all) == FEATURES + SIZE


def test_a_sigmoid_jump_is_read_as_a_rising_validation_accuracy():
    cfg = synth_cfg()
    recs = curve(range(0, BUDGET + 1, 10), True, 600)
    before, during, flat = (features(recs, cfg, t) for t in (200, 590, 200))
    flat = features(curve(range(0, BUDGET + 1, 10), False, 600), cfg, 590)
    assert during["slope_val_acc"] > 1.0 > before["slope_val_acc"] > 0
    assert during["val_gain_recent"] > 0.3 and abs(flat["val_gain_recent"]) < 0.02
    assert during["val_above_chance"] == pytest.approx((recs[59]["val_acc"] - 1 / 31) / (1 - 1 / 31))
    assert during["mem_ago"] > 0
    assert during["log_t_tau"] == pytest.approx(math.log10(590 * 0.01 * 1.0), rel=1e-6)   # lr·wd·t


@pytest.mark.parametrize("period", [50, 100, 250])
def test_an_oscillation_of_known_frequency_is_found(period):
    steps = np.arange(0, 5000, 10)
    y = -steps / 1000 + 0.3 * np.sin(2 * np.pi * steps / period)
    s = oscillation_spectrum(y, dt=10.0)
    assert s["osc_cycles"] == pytest.approx(5000 / period, rel=0.05)       # cycles over the history
    assert s["hjorth_mobility"] > 0 and s["osc_log_energy"] > -3
    smooth = oscillation_spectrum(-steps / 1000.0, dt=10.0)
    assert smooth["osc_log_energy"] < s["osc_log_energy"] - 3


def test_the_loss_oscillation_feature_reads_the_training_loss():
    cfg = synth_cfg()
    wobbly = features(curve(range(0, BUDGET + 1, 10), False, 0, wobble=0.3), cfg, 990)
    calm = features(curve(range(0, BUDGET + 1, 10), False, 0), cfg, 990)
    assert wobbly["osc_cycles"] == pytest.approx(10, rel=0.1)
    assert wobbly["osc_log_energy"] > calm["osc_log_energy"] + 1


# --- labels and censoring ------------------------------------------------------------------

def test_a_run_that_never_groks_is_censored_not_a_time(tmp_path):
    cfg = synth_cfg()
    never = curve(range(0, BUDGET + 1, 10), False, 0)
    s = summarize(cfg, never, "completed", 1.0)
    assert time_label(s, 0.9) == (BUDGET, False)
    assert within_budget(s, 0.9, BUDGET) is False
    pruned = summarize(cfg, never[:31], "pruned", 1.0)
    assert time_label(pruned, 0.9) == (300, False) and within_budget(pruned, 0.9, BUDGET) is None
    groks = summarize(cfg, curve(range(0, BUDGET + 1, 10), True, 500), "completed", 1.0)
    T, ev = time_label(groks, 0.9)
    assert ev and 500 <= T <= 600 and within_budget(groks, 0.9, BUDGET) is True
    runs = [{"config": cfg, "records": r, "summary": summarize(cfg, r, st, 1.0)}
            for r, st in ((never, "completed"), (never[:31], "pruned"))]
    tab = build_table(runs)
    assert not tab.event[0.9].any()                       # neither has a time
    assert set(tab.T[0.9][tab.run == 0]) == {BUDGET}      # censored at the budget
    B = tab.t * 10 ** tab.h.astype(float)
    r0 = tab.run == 0
    assert (tab.y[0.9][r0 & (B <= BUDGET)] == 0).all()    # trained past B without it: a negative
    assert not (r0 & (B > BUDGET + 1)).any()              # beyond its budget: unknown, no row
    r1 = tab.run == 1
    assert (B[r1] <= 300 + 1).all()                       # pruned at 300: nothing known beyond
    assert (tab.t[r1] <= 300).all()                       # no forecast point after it stopped


def test_forecast_points_skip_runs_that_already_reached_the_threshold():
    cfg = synth_cfg()
    early = curve(range(0, BUDGET + 1, 10), True, 120)
    tab = build_table([{"config": cfg, "records": early, "summary": summarize(cfg, early, "completed", 1.0)}])
    T = tab.T[0.9][0]
    assert tab.open[0.9].tolist() == [t < T for t in tab.t]
    assert not tab.open[0.9].all() and tab.open[0.9].any()


def test_families_name_the_op_model_and_optimiser():
    c = synth_cfg("x^2+xy+y^2")
    assert families(c) == {"op": "poly", "model": "mlp", "optim": "adamw", "scale": "small"}
    c.accel.grokfast, c.optim.name = "ema", "adam"
    assert families(c)["optim"] == "grokfast"
    c.accel.grokfast = "none"
    assert families(c)["optim"] == "adam_l2"


# --- the model files -----------------------------------------------------------------------

def test_model_round_trip_and_bit_for_bit_rebuild(tmp_path):
    from groklab.cli import main
    from groklab.forecast.corpus import load_runs
    root = synth_corpus(tmp_path / "corpus", n_per_op=8)
    runs = load_runs(root)
    assert len(runs) == 24
    tab = build_table(runs)
    m = M.fit(tab, rounds=20)
    M.save(m, tmp_path / "a")
    back = M.load(tmp_path / "a")
    for th in (0.9, 0.99):
        assert np.array_equal(back.thresholds[th].cdf(tab.X, tab.h), m.thresholds[th].cdf(tab.X, tab.h))
        assert back.thresholds[th].margin == m.thresholds[th].margin
    # from the runs' directory, then from the records file that build packed beside the model
    assert main(["forecast", "build", str(root), "--out", str(tmp_path / "b"), "--rounds", "20"]) == 0
    assert main(["forecast", "build", str(tmp_path / "b" / "records.jsonl.gz"), "--out", str(tmp_path / "c"),
                 "--rounds", "20"]) == 0
    files = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert files == ["clf_0.9.ubj", "clf_0.99.ubj", "manifest.json", "records.jsonl.gz"]
    for f in files:
        assert (tmp_path / "b" / f).read_bytes() == (tmp_path / "c" / f).read_bytes(), f
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["meta"]["runs"] == 24


def test_a_tampered_model_file_is_refused(tmp_path):
    m = M.fit(build_table([{"config": synth_cfg(), "records": r, "summary": summarize(synth_cfg(), r, "completed", 1)}
                           for r in (curve(range(0, BUDGET + 1, 10), g, 400, seed=i)
                                     for i, g in enumerate([True, False] * 4))]), rounds=5)
    M.save(m, tmp_path / "m")
    raw = bytearray((tmp_path / "m" / "clf_0.9.ubj").read_bytes())
    raw[-10] ^= 1
    (tmp_path / "m" / "clf_0.9.ubj").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        M.load(tmp_path / "m")
    (tmp_path / "m" / "manifest.json").write_text("{")
    with pytest.raises(ValueError, match="forecast model"):
        M.load(tmp_path / "m")


def test_the_shipped_model_loads_and_answers_in_range():
    m = M.default_model()
    assert set(m.thresholds) == {0.9, 0.99} and set(m.features) <= set(FEATURES)
    cfg = synth_cfg()
    X = m.columns(np.array([[features(curve(range(0, 301, 10), g, 500), cfg, 300)[k] for k in FEATURES]
                            for g in (True, False)], dtype=np.float32))
    p = m.thresholds[0.9].cdf(X, np.array([0.5, 0.5]))
    assert ((0 <= p) & (p <= 1)).all()
    import hashlib  # the records it was built from ship beside it
    raw = (M.shipped_dir() / "records.jsonl.gz").read_bytes()
    assert m.meta["records_sha256"] == hashlib.sha256(raw).hexdigest()


# --- the Forecast and the CLI --------------------------------------------------------------

def test_forecast_of_a_finished_run_and_its_cli(tmp_path, capsys):
    import groklab
    from groklab.cli import main
    cfg = synth_cfg()
    d = write_run(tmp_path / "run", cfg, curve(range(0, BUDGET + 1, 10), True, 500))
    fc = groklab.forecast(d)
    assert fc.ended and fc.targets["0.9"].reached and fc.targets["0.9"].p == 1.0
    early = groklab.forecast(d, at=200)
    assert not early.ended and early.step == 200 and not early.targets["0.9"].reached
    t = early.targets["0.9"]
    assert 0 <= t.p <= 1 and 200 < t.low <= t.step <= t.high
    assert any("Notsawo" in line for line in early.evidence)
    assert main(["forecast", str(d), "--at", "200", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["targets"]["0.9"]["step"] == t.step
    assert main(["forecast", str(d), "--at", "200"]) == 0
    assert "P(within 1000 steps)" in capsys.readouterr().out
    never = write_run(tmp_path / "never", cfg, curve(range(0, BUDGET + 1, 10), False, 0))
    assert groklab.forecast(never).targets["0.99"].p == 0.0      # ended without it


@pytest.mark.parametrize("argv, words", [
    (["forecast", "/nonexistent/run"], "not a run directory"),
    (["forecast", "RUN", "--at", "-5"], "--at -5"),
    (["forecast", "build", "/nonexistent/corpus"], "does not exist"),
    (["forecast", "learn", "/nonexistent/runs"], "not a directory of runs"),
    (["forecast", "RUN", "--model", "/nonexistent/model"], "--model"),
    (["forecast", "learn", "RUN", "--weight", "0"], "--weight 0"),
    (["forecast", "evaluate", "RUN", "--axes", "colour"], "--axes"),
    (["forecast", "build", "RUN", "--rounds", "0"], "--rounds 0"),
    (["forecast", "corpus", "/nonexistent.toml"], "nonexistent.toml"),
    (["forecast", "a", "b", "c"], "expected RUN_DIR"),
])
def test_bad_forecast_input_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    from groklab.cli import main
    d = write_run(tmp_path / "run", synth_cfg(), curve(range(0, BUDGET + 1, 10), True, 500))
    argv = [str(d) if a == "RUN" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1


def test_forecast_at_a_step_before_the_first_record_is_refused(tmp_path):
    import groklab
    recs = curve(range(50, BUDGET + 1, 10), True, 500)
    with pytest.raises(ConfigError, match="--at 20"):
        groklab.forecast(recs, config=synth_cfg(), at=20)
    with pytest.raises(ConfigError, match="config"):
        groklab.forecast(recs)


# --- evaluation -----------------------------------------------------------------------------

def test_evaluation_credits_curves_where_the_config_cannot_tell(tmp_path):
    """Every run has the same config per op and the seed decides: the config-only baseline is
    at chance, the forecast (which sees the early rise) is not."""
    from groklab.forecast.corpus import load_runs
    from groklab.forecast.evaluate import evaluate, markdown
    runs = load_runs(synth_corpus(tmp_path / "corpus", n_per_op=10))
    res = evaluate(runs, thresholds=(0.9,), axes=("op",), rounds=20)
    m = res["axes"]["op"]["0.9"]["0.25"]
    assert m["n"] > 10 and 0 < m["positives"] < m["n"]
    assert m["forecast"]["auroc"] > 0.9
    assert m["config only"]["auroc"] < 0.7
    assert m["forecast"]["brier"] < m["config only"]["brier"]
    assert m["events"] > 0 and {"forecast", "twice the step", "first-passage law"} <= set(m["time"])
    assert "| 25% |" in markdown(res)


# --- live forecast and the pruner (real training) -------------------------------------------

def small_run(**over):
    base = {"task.p": 31, "task.frac": 0.6, "model.hidden": [64, 64], "optim.lr": 0.02, "optim.wd": 1.0,
            "train.steps": 400, "train.eval_every": 10, "train.n_checkpoints": 2}
    return resolve("prieto", overrides=list({**base, **over}.items()))


def test_live_forecast_writes_every_evaluation_and_the_summary(tmp_path):
    import groklab
    from groklab.runs.rundir import read_jsonl
    cfg = small_run()
    assert cfg.train.forecast is True                       # on by default
    r = groklab.run(cfg, out=tmp_path / "run", report=False)
    lines, metrics = read_jsonl(r.dir / "forecast.jsonl"), read_jsonl(r.dir / "metrics.jsonl")
    assert lines and {ln["step"] for ln in lines} <= {m["step"] for m in metrics}
    assert [ln["step"] for ln in lines] == sorted(ln["step"] for ln in lines)
    assert r.summary["forecast"] == lines[-1]
    assert lines[-1]["seconds"] < 0.05 * r.summary["wall_seconds"] + 0.05
    for ln in lines:                                        # each line agrees with the offline forecast
        if ln["reached"]["0.9"]:
            first = next(m["step"] for m in metrics if m["val_acc"] >= 0.9)
            assert ln["at"]["0.9"] == first
    off = groklab.run(small_run(**{"train.forecast": False}), out=tmp_path / "off", report=False)
    assert not (off.dir / "forecast.jsonl").exists() and "forecast" not in off.summary


def test_resume_truncates_the_forecast_and_goes_on(tmp_path):
    import groklab
    from groklab.runs.rundir import read_jsonl
    r = groklab.run(small_run(**{"train.steps": 200}), out=tmp_path / "run", report=False)
    r2 = groklab.resume(r.dir, overrides=["train.steps=300"], report=False)
    steps = [ln["step"] for ln in read_jsonl(r2.dir / "forecast.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 300


def test_the_forecast_pruner_stops_a_doomed_point_and_spares_one_that_groks(tmp_path):
    """wd = 0 on 45 % of x+y mod 31 memorises and never generalizes in the budget; wd = 1,
    lr 0.02 on 60 % groks by step ~500. The pruner stops the first early and lets the second run."""
    from groklab.sweep import parse_spec, run_sweep
    from groklab.sweep.table import write_csv  # noqa: F401  (results.csv is written by the sweep)
    spec = parse_spec({
        "name": "prune", "preset": "prieto", "seeds": [0], "report": False,
        "base": {"task.p": 31, "model.hidden": [128, 128], "train.steps": 2000, "train.eval_every": 10,
                 "train.stop_threshold": 0.9, "train.patience": 0, "train.n_checkpoints": 2,
                 "optim.lr": 0.02},
        "axes": {"optim.wd": [0.0, 1.0], "task.frac": [0.45, 0.6]},
        "prune": {"risk": 0.05, "target": 0.9, "after": 0.1}})
    rows = {(r["optim.wd"], r["task.frac"]): r for r in run_sweep(spec, tmp_path / "sw", workers=1, ensemble=False)}
    doomed, groks = rows[(0.0, 0.45)], rows[(1.0, 0.6)]
    assert doomed["status"] == "pruned (forecast)" and doomed["steps_done"] < 1000
    assert groks["status"] == "early_stopped" and groks["generalized_at_0.9"] is not None
    s = json.loads((tmp_path / "sw" / "points" / doomed["id"] / "summary.json").read_text())
    assert s["pruned_by"] == "forecast" and s["forecast"]["p"]["0.9"] < 0.05
    assert "prune.risk 0.05" in s["message"]
    assert s["status"] == "pruned" and s["cost"]["flops"] > 0     # a stopped run is costed too
    assert s["steps_done"] == doomed["steps_done"]


@pytest.mark.parametrize("prune, words", [
    ({"risk": 0}, "risk = 0"), ({"risk": 1.5}, "risk = 1.5"), ({"risk": 0.02, "target": 0.5}, "target = 0.5"),
    ({"risk": 0.02, "after": 1}, "after = 1"), ({"risk": 0.02, "when": 3}, "expected {risk"),
    ("yes", "expected {risk"),
])
def test_bad_prune_rules_are_refused(prune, words):
    from groklab.sweep import parse_spec
    with pytest.raises(ConfigError, match=words.replace("{", r"\{")):
        parse_spec({"axes": {"optim.wd": [0.1, 1.0]}, "prune": prune})


def test_optimize_mode_takes_the_forecast_pruner_alone_or_beside_a_metric_rule():
    from groklab.sweep import parse_spec
    d = {"mode": "optimize", "axes": {"optim.wd": {"log": [0.1, 1.0]}}, "optimize": {"n_trials": 2}}
    d["optimize"]["prune"] = {"risk": 0.02}
    assert parse_spec(d).optimize["prune"] == {"risk": 0.02, "target": 0.9, "after": 0.1}
    d["optimize"]["prune"] = [{"risk": 0.02}, {"metric": "train_acc", "below": 0.9, "at_step": 500}]
    rules = parse_spec(d).optimize["prune"]
    assert rules[0]["risk"] == 0.02 and rules[1]["at_step"] == 500
    d["optimize"]["prune"] = [{"risk": 0.02}, {"risk": 0.1}]
    with pytest.raises(ConfigError, match="one metric rule and one forecast rule"):
        parse_spec(d)


def test_the_corpus_command_runs_its_sweeps_and_continues(tmp_path, capsys):
    from groklab.cli import main
    from groklab.forecast.corpus import load_runs
    sweep = tmp_path / "tiny.toml"
    sweep.write_text('name = "tiny"\npreset = "prieto"\nseeds = 1\nreport = false\nensemble = false\n'
                     '[base]\n"task.p" = 11\n"train.steps" = 60\n"model.hidden" = [16]\n"train.n_checkpoints" = 1\n'
                     '[axes]\n"optim.wd" = [0.1, 1.0]\n')
    spec = tmp_path / "corpus.toml"
    spec.write_text('name = "c"\nsweeps = ["tiny.toml"]\n')
    assert main(["forecast", "corpus", str(spec), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    runs = load_runs(tmp_path / "out")
    assert len(runs) == 2 and not (tmp_path / "out" / "tiny" / "points" / "0000_wd=0.1_s0" / "report.html").exists()
    assert main(["forecast", "corpus", str(spec), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    assert "2 already finished" in capsys.readouterr().out
    spec.write_text('name = "c"\nsweeps = ["tiny.toml", "tiny.toml"]\n')
    assert main(["forecast", "corpus", str(spec)]) == 2
    assert "two sweeps are named 'tiny'" in capsys.readouterr().err


def test_runs_outside_the_corpus_are_flagged_and_never_pruned(synth_model, monkeypatch):
    """A flat validation curve is doomed in the corpus's regime and pruned there; the same curve
    on a run 7× the corpus's modulus is flagged as outside it, and the pruner lets it run."""
    from groklab.sweep.point import ForecastPruneSink, Pruned
    monkeypatch.setattr(M, "default_model", lambda: synth_model)
    recs = curve(range(0, 2001, 10), False, 0)
    inside = synth_cfg(budget=2000)
    far = resolve("prieto", overrides=[("task.p", 211), ("train.steps", 2000)])
    import groklab
    assert groklab.forecast(recs, config=inside, at=600).outside == []
    fc = groklab.forecast(recs, config=far, at=600)
    assert fc.outside and fc.evidence[0].startswith("outside the corpus")
    assert fc.targets["0.9"].high - fc.targets["0.9"].low >= (                     # wider intervals
        groklab.forecast(recs, config=inside, at=600).targets["0.9"].high
        - groklab.forecast(recs, config=inside, at=600).targets["0.9"].low)
    assert any("classes" in o for o in fc.outside) and "outside the corpus" in fc.evidence[0]
    rule = {"risk": 0.5, "target": 0.9, "after": 0.1}
    with pytest.raises(Pruned):
        sink = ForecastPruneSink(rule, inside)
        for r in recs[:61]:
            sink.log(r["step"], r)
    sink = ForecastPruneSink(rule, far)
    for r in recs[:61]:
        sink.log(r["step"], r)                                 # not stopped


def test_the_progress_bar_prediction_needs_confidence_and_the_corpus_span():
    from groklab.forecast.predict import Forecast, Target
    t = {"0.9": Target(0.9, 0.95, 800, 700, 900)}
    assert Forecast(500, 2000, t).grok_step() == 800
    assert Forecast(500, 2000, t, outside=["budget 6e+03 not in [2e+03, 2e+03]"]).grok_step() is None
    assert Forecast(500, 2000, {"0.9": Target(0.9, 0.5, 800, 700, 900)}).grok_step() is None
    assert Forecast(500, 2000, {"0.9": Target(0.9, 1.0, 450, 450, 450, True)}).grok_step() is None


def test_the_phase_diagram_counts_the_cells_the_pruner_stopped():
    from groklab.sweep.diagram import aggregate
    rows = [{"optim.lr": 0.01, "optim.wd": w, "phase": ph, "status": st, "generalized_at_0.9": g}
            for w, ph, st, g in ((0.1, "memorization", "pruned (forecast)", None),
                                 (1.0, "grokking", "early_stopped", 800))]
    agg = aggregate(rows, "optim.lr", [0.01], "optim.wd", [0.1, 1.0], 0.9)
    assert agg["pruned"].tolist() == [[1], [0]]
    assert agg["phase"].tolist() == [["memorization"], ["grokking"]]


def test_the_evaluate_command_writes_its_tables_and_figure(tmp_path, capsys):
    from groklab.cli import main
    root = synth_corpus(tmp_path / "corpus", n_per_op=6)
    assert main(["forecast", "evaluate", str(root), "--rounds", "10", "--out", str(tmp_path / "ev")]) == 0
    md = (tmp_path / "ev" / "evaluation.md").read_text()
    assert "| op |" in md and "config only" in md and "first-passage" in md
    assert json.loads((tmp_path / "ev" / "evaluation.json").read_text())["runs"] == 18


# --- coherence, the budget as an input, learning from the user's runs ------------------------

@pytest.fixture(scope="module")
def synth_model(tmp_path_factory):
    from groklab.forecast.records import load
    root = synth_corpus(tmp_path_factory.mktemp("c") / "corpus", n_per_op=8)
    return M.fit(build_table(load(root)), rounds=30)


@pytest.mark.parametrize("t_grok, groks", [(300, True), (500, True), (800, True), (0, False)])
def test_answers_are_coherent_at_every_step(synth_model, t_grok, groks):
    """P(0.99) ≤ P(0.9) and step(0.99) ≥ step(0.9) at every forecast of scripted curves, and the
    predicted step is the median of the same distribution whose mass is P: by the last horizon
    before the step the model gives at most half of P(within the budget), by the first after it at
    least half."""
    import groklab
    from groklab.forecast.model import distribution
    from groklab.forecast.signals import vector
    cfg = synth_cfg()
    recs = curve(range(0, BUDGET + 1, 10), groks, t_grok, seed=3)
    for at in range(100, 800, 50):
        fc = groklab.forecast(recs, config=cfg, at=at, model=synth_model, explain=False)
        a, b = fc.targets["0.9"], fc.targets["0.99"]
        if a.reached or b.reached:
            continue
        assert b.p <= a.p + 1e-9
        assert b.step >= a.step and b.low >= a.low and b.high >= a.high
        assert a.low <= a.step <= a.high and at < a.low and a.high <= BUDGET
        if a.p < 0.05:
            continue
        x = synth_model.columns(vector(features(recs, cfg, at))[None, :])[0]
        B, F = distribution(synth_model.thresholds[0.9], x, at, BUDGET)
        before, after = F[B <= a.step * 0.999], F[B >= a.step * 1.001]
        assert (before[-1] if len(before) else 0.0) <= 0.5 * a.p + 1e-3
        assert after[0] >= 0.5 * a.p - 1e-3


def test_the_budget_is_an_input(synth_model):
    """The same history with a larger budget is never less likely to grok within it, and a
    budget far beyond the corpus's (which only ran 1,000 steps) is not "outside"."""
    import groklab
    cfg = synth_cfg()
    recs = curve(range(0, 301, 10), True, 600, seed=1)
    ps = []
    for budget in (400, 600, 1000, 3000, 20000):
        c = cfg.model_copy(deep=True)
        c.train.steps = budget
        fc = groklab.forecast(recs, config=c, model=synth_model, explain=False)
        assert fc.outside == [] and fc.budget == budget
        ps.append(fc.targets["0.9"].p)
    assert ps == sorted(ps) and ps[-1] > ps[0]


def test_forecast_learn_fits_the_users_runs(tmp_path, monkeypatch, capsys):
    """A family the corpus never saw (x/y whose curves grok late, at ~850, past every corpus
    run's): the model learned with the user's runs fits them far better than the shipped one
    (whether that carries to *new* runs of the family is measured on the real corpus:
    `forecast evaluate --learn`, docs/forecast.md); the runs it learned are packed beside it;
    --weight changes the model; a directory that is not a model is never overwritten."""
    from groklab.cli import main
    from groklab.forecast import model as Mod
    from groklab.forecast import records
    base = synth_corpus(tmp_path / "base", n_per_op=4)
    M.save(M.fit(build_table(records.load(base)), rounds=20), tmp_path / "shipped")
    records.write(records.load(base), [f"b{i}" for i in range(12)], tmp_path / "shipped" / "records.jsonl.gz")
    monkeypatch.setattr(Mod, "shipped_dir", lambda: tmp_path / "shipped")
    for i in range(6):
        write_run(tmp_path / "mine" / f"r{i}", synth_cfg("x/y"), curve(range(0, BUDGET + 1, 10), True, 850, seed=i))
    assert main(["forecast", "learn", str(tmp_path / "mine"), "--out", str(tmp_path / "learned"),
                 "--rounds", "20"]) == 0
    assert "6 of yours" in capsys.readouterr().out
    learned = M.load(tmp_path / "learned")
    assert learned.meta["learned_from"] == 6
    assert len(records.read(tmp_path / "learned" / "records.jsonl.gz")) == 18
    mine = build_table(records.load_dir(tmp_path / "mine"))    # the learned model fits the user's runs

    def logloss(model):
        known = mine.open[0.9] & np.isfinite(mine.y[0.9])
        p = np.clip(model.thresholds[0.9].cdf(model.columns(mine.X[known]), mine.h[known]), 1e-6, 1 - 1e-6)
        y = mine.y[0.9][known]
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert logloss(learned) < 0.8 * logloss(M.load(tmp_path / "shipped"))
    assert main(["forecast", "learn", str(tmp_path / "mine"), "--out", str(tmp_path / "w1"),
                 "--rounds", "20", "--weight", "1"]) == 0
    assert (tmp_path / "w1" / "clf_0.9.ubj").read_bytes() != (tmp_path / "learned" / "clf_0.9.ubj").read_bytes()
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "keep.txt").write_text("mine")
    assert main(["forecast", "learn", str(tmp_path / "mine"), "--out", str(tmp_path / "notamodel")]) == 2
    assert (tmp_path / "notamodel" / "keep.txt").read_text() == "mine"


def test_records_file_round_trips_and_refuses_damage(tmp_path):
    from groklab.forecast import records
    root = synth_corpus(tmp_path / "c", n_per_op=2)
    runs = records.load(root)
    records.write(runs, [r["dir"] for r in runs], tmp_path / "r.jsonl.gz")
    back = records.read(tmp_path / "r.jsonl.gz")
    assert [r["records"] for r in back] == [r["records"] for r in runs]
    assert [r["config"] for r in back] == [r["config"] for r in runs]
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(ConfigError, match="not a records file"):
        records.read(tmp_path / "bad.jsonl.gz")


def test_a_learning_sweep_refits_as_its_points_finish(tmp_path, monkeypatch):
    """[prune] learn = true: the shipped model until 5 points have finished, then a refit on them,
    kept until their number doubles; the pruner of a new point forecasts with it."""
    from groklab.forecast import model as Mod
    from groklab.forecast import records
    from groklab.forecast.learn import sweep_model
    from groklab.sweep import parse_spec
    from groklab.sweep.point import ForecastPruneSink
    base = synth_corpus(tmp_path / "base", n_per_op=4)
    M.save(M.fit(build_table(records.load(base)), rounds=10), tmp_path / "shipped")
    records.write(records.load(base), [f"b{i}" for i in range(12)], tmp_path / "shipped" / "records.jsonl.gz")
    monkeypatch.setattr(Mod, "shipped_dir", lambda: tmp_path / "shipped")
    monkeypatch.setattr(Mod, "_DEFAULT", None)
    monkeypatch.setattr("groklab.forecast.learn.ROUNDS", 10)
    sweep = tmp_path / "sweep"
    for i in range(4):
        write_run(sweep / "points" / f"p{i}", synth_cfg("x/y"), curve(range(0, BUDGET + 1, 10), True, 850, seed=i))
    assert sweep_model(sweep).meta.get("learned_from") is None          # 4 finished: the shipped one
    write_run(sweep / "points" / "p4", synth_cfg("x/y"), curve(range(0, BUDGET + 1, 10), False, 0, seed=4))
    assert sweep_model(sweep).meta["learned_from"] == 5
    stamp = (sweep / "forecast-learned" / "manifest.json").stat().st_mtime_ns
    for i in range(5, 9):
        write_run(sweep / "points" / f"p{i}", synth_cfg("x/y"), curve(range(0, BUDGET + 1, 10), True, 850, seed=i))
    assert sweep_model(sweep).meta["learned_from"] == 5                 # 9 < 2 × 5: kept
    assert (sweep / "forecast-learned" / "manifest.json").stat().st_mtime_ns == stamp
    write_run(sweep / "points" / "p9", synth_cfg("x/y"), curve(range(0, BUDGET + 1, 10), True, 850, seed=9))
    rule = parse_spec({"axes": {"optim.wd": [0.1, 1.0]}, "prune": {"risk": 0.02, "learn": True}}).prune
    sink = ForecastPruneSink(rule, synth_cfg("x/y"), sweep / "points" / "p10")
    assert sink.model.meta["learned_from"] == 10
    with pytest.raises(ConfigError, match="learn = 'yes'"):
        parse_spec({"axes": {"optim.wd": [0.1, 1.0]}, "prune": {"risk": 0.02, "learn": "yes"}})


def test_no_forecast_before_the_corpus_first_point(synth_model):
    """A forecast at step 0 (a run's first evaluation) once showed "grok ≈ step 3": the model has
    no forecast point before step 100, so it refuses there, and the live forecast writes nothing."""
    import groklab
    from groklab.forecast.live import LiveForecast
    recs = curve(range(0, BUDGET + 1, 10), True, 500)
    with pytest.raises(ConfigError, match="too early"):
        groklab.forecast(recs, config=synth_cfg(), at=90, model=synth_model)
    assert groklab.forecast(recs, config=synth_cfg(), at=100, model=synth_model).targets["0.9"].p >= 0
    live = LiveForecast.__new__(LiveForecast)
    live.records, live.model, live.cfg, live.last, live.grok = [], synth_model, synth_cfg(), None, None
    assert live(recs[0]) is None and live.last is None


def _scripted_sink(monkeypatch, rule, targets, outside=(), cfg=None):
    """A forecast pruner whose forecasts are scripted: ``targets`` maps a threshold to
    (p, step, low, high). Its model is never loaded."""
    from groklab.forecast import predict
    from groklab.forecast.predict import Forecast, Target
    from groklab.sweep.point import ForecastPruneSink
    monkeypatch.setattr(M, "default_model", lambda: None)

    def scripted(records, config=None, model=None, explain=True, **kw):
        t = records[-1]["step"]
        tg = {k: Target(float(k), *v) for k, v in targets.items()}
        return Forecast(t, int(config.train.steps), tg, [], False, list(outside))
    monkeypatch.setattr(predict, "forecast", scripted)
    return ForecastPruneSink(rule, cfg or resolve("prieto", overrides=[("train.steps", 2000),
                                                                       ("train.phase_gap", 250)]))


def _feed(sink, t_mem=100, until=1000):
    """Train accuracy reaches 0.9 at ``t_mem`` (never when None); validation stays at chance."""
    for s in range(0, until + 1, 10):
        sink.log(s, {"step": s, "train_acc": 1.0 if t_mem is not None and s >= t_mem else 0.1,
                     "val_acc": 0.05, "train_loss": 1.0, "val_loss": 3.0})


@pytest.mark.parametrize("fc, settled", [
    ((0.99, 500, 400, 700), "grokking"),        # the whole interval after t_mem + gap = 350
    ((0.99, 320, 300, 350), "comprehension"),   # the whole interval at or before it
    ((0.99, 400, 300, 700), None),              # the interval straddles it: run on
    ((0.97, 500, 400, 700), None),              # P below 1 - risk: run on
])
def test_settle_stops_a_run_whose_phase_the_forecast_settles(monkeypatch, fc, settled):
    """[prune] settle = true (risk 0.02, gap 250, memorisation at step 100): a run stops with
    the forecast's label only when P ≥ 0.98 and the 80 % interval lies on one side of 350."""
    from groklab.sweep import parse_spec
    from groklab.sweep.point import Pruned
    rule = parse_spec({"axes": {"optim.wd": [0.1, 1.0]}, "base": {"train.phase_gap": 250},
                       "prune": {"risk": 0.02, "settle": True}}).prune
    sink = _scripted_sink(monkeypatch, rule, {"0.9": (*fc, False), "0.99": (0.5, 900, 800, 1200, False)})
    if settled is None:
        _feed(sink)
        return
    with pytest.raises(Pruned) as e:
        _feed(sink)
    assert e.value.summary["settled"] is True and e.value.summary["phase"] == settled
    assert e.value.summary["pruned_by"] == "forecast" and str(e.value).startswith(f"settled (forecast): {settled}")
    assert "at step 200" in str(e.value)                 # the first look: after = 0.1 of 2,000 steps


def test_settle_needs_memorisation_the_rule_and_a_run_inside_the_corpus(monkeypatch):
    from groklab.sweep import parse_spec
    confident = {"0.9": (0.99, 500, 400, 700, False), "0.99": (0.99, 600, 500, 800, False)}
    with_settle = parse_spec({"axes": {"optim.wd": [0.1, 1.0]}, "base": {"train.phase_gap": 250},
                              "prune": {"risk": 0.02, "settle": True}}).prune
    _feed(_scripted_sink(monkeypatch, with_settle, confident), t_mem=None)       # not memorised: no label
    _feed(_scripted_sink(monkeypatch, {**with_settle, "settle": False}, confident))  # off by default
    _feed(_scripted_sink(monkeypatch, with_settle, confident, outside=["classes 211"]))  # outside: never


@pytest.mark.parametrize("d, words", [
    ({"prune": {"risk": 0.02, "settle": "yes"}}, "settle = 'yes'"),
    ({"prune": {"risk": 0.02, "settle": True, "target": 0.99}}, "needs target = train.phase_threshold"),
    ({"prune": {"risk": 0.02, "settle": True}, "axes": {"train.phase_gap": [100, 200]}}, "must not be axes"),
    ({"mode": "optimize", "axes": {"optim.wd": {"log": [0.1, 1.0]}},
      "optimize": {"n_trials": 2, "prune": {"risk": 0.02, "settle": True}}}, "only a grid sweep"),
])
def test_bad_settle_rules_are_refused(d, words):
    from groklab.sweep import parse_spec
    with pytest.raises(ConfigError, match=words):
        parse_spec({"axes": {"optim.wd": [0.1, 1.0]}, **d})


def test_a_settled_point_is_marked_in_the_table_with_the_forecasts_label(tmp_path):
    from groklab.sweep.table import row_for
    cfg = synth_cfg()
    d = write_run(tmp_path / "p", cfg, curve(range(0, 301, 10), False, 0), status="pruned")
    s = json.loads((d / "summary.json").read_text())
    write_json(d / "summary.json", {**s, "pruned_by": "forecast", "settled": True, "phase": "grokking"})
    row = row_for(d, "p", {"optim.wd": 1.0}, 0)
    assert row["status"] == "settled (forecast)" and row["phase"] == "grokking"
    assert row["generalized_at_0.9"] is None             # the measured events stay as measured
    write_json(d / "summary.json", {**s, "pruned_by": "forecast"})
    assert row_for(d, "p", {"optim.wd": 1.0}, 0)["status"] == "pruned (forecast)"


def test_a_run_without_records_is_named_not_blamed_on_at(tmp_path, capsys):
    """A run directory whose metrics.jsonl holds no whole record (a torn first line) once gave
    "--at None: the run has no evaluation at or before it" although no --at was given."""
    from groklab.cli import main
    d = tmp_path / "r"
    d.mkdir()
    write_json(d / "config.json", synth_cfg().to_dict())
    (d / "metrics.jsonl").write_bytes(b"\xff\xfe garbage")
    assert main(["forecast", str(d)]) == 2
    err = capsys.readouterr().err
    assert "no evaluation yet" in err and "--at" not in err and len(err.strip().splitlines()) == 1


def test_features_do_not_depend_on_how_often_a_run_evaluates():
    """The same run evaluated every 10 or every 25 steps reads as the same run: event steps are
    interpolated and the spectrum reads a thinned history. Before, Hjorth's mobility read 0.62
    against 1.42 and memorisation moved by 0.1 decades, and nanda's preset (evaluating every 100)
    was forecast as a different kind of run than the corpus (every 10)."""
    cfg = synth_cfg()
    a = features(curve(range(0, 1001, 10), True, 700, wobble=0.3), cfg)
    b = features(curve(range(0, 1001, 25), True, 700, wobble=0.3), cfg)
    for k in ("mem_ago", "log_mem_tau", "rise_ago"):
        assert abs(a[k] - b[k]) <= 0.05, (k, a[k], b[k])
    for k in ("osc_log_energy", "hjorth_mobility", "hjorth_activity", "hjorth_complexity", "osc_low_share"):
        assert abs(a[k] - b[k]) <= 0.1 * max(1.0, abs(a[k])), (k, a[k], b[k])


def test_an_event_step_is_interpolated_between_evaluations():
    from groklab.forecast.signals import crossing
    s = np.array([0.0, 100.0, 200.0])
    assert crossing(s, np.array([0.1, 0.5, 1.0]), 0.9) == pytest.approx(180.0)
    assert crossing(s, np.array([0.95, 0.5, 1.0]), 0.9) == 0.0          # reached at the first record
    assert crossing(s, np.array([0.1, 0.5, 0.8]), 0.9) is None


def test_evaluating_a_records_file_never_writes_beside_it(tmp_path, monkeypatch, capsys):
    """The records file may be the installed package's (the README's command evaluates the
    shipped model's records): the tables go to ./forecast-evaluation, not into the package."""
    from groklab.cli import main
    from groklab.forecast import records
    root = synth_corpus(tmp_path / "corpus", n_per_op=6)
    runs = records.load(root)
    shipped = tmp_path / "pkg" / "model"
    shipped.mkdir(parents=True)
    records.write(runs, [f"r{i}" for i in range(len(runs))], shipped / "records.jsonl.gz")
    monkeypatch.chdir(tmp_path)
    assert main(["forecast", "evaluate", str(shipped / "records.jsonl.gz"), "--rounds", "10", "--axes", "op"]) == 0
    assert sorted(p.name for p in shipped.iterdir()) == ["records.jsonl.gz"]
    assert (tmp_path / "forecast-evaluation" / "evaluation.md").is_file()


def test_the_evidence_reads_the_measures_up_to_and_including_the_forecast_step(tmp_path):
    """measures.jsonl's record at exactly the forecast step is the latest the evidence may read
    (a mutant that kept only earlier ones survived the mutation run); later ones never."""
    import groklab
    d = write_run(tmp_path / "r", synth_cfg(), curve(range(0, BUDGET + 1, 10), True, 700))
    (d / "measures.jsonl").write_text("".join(json.dumps({"step": s, "gini_E": s / 1000}) + "\n"
                                              for s in (0, 300, 500, 600)))
    ev = groklab.forecast(d, at=500).evidence
    assert any(e.startswith("progress measures at step 500 ") and "gini_E 0.5" in e for e in ev)
    assert not any("step 600" in e for e in ev)


def test_a_resumed_live_forecast_keeps_its_time_share(tmp_path):
    """The 1 % throttle counts the forecasting time of the run before a resume (forecast.jsonl's
    last ``seconds``): a run that already spent 50 s forecasting in 10 s of training skips the
    next evaluation's forecast; with a fresh forecast.jsonl it forecasts."""
    from groklab.forecast.live import LiveForecast
    recs = curve(range(0, 501, 10), True, 700)
    for fresh in (False, True):
        d = write_run(tmp_path / f"r{fresh}", synth_cfg(), recs[:31])
        if not fresh:
            (d / "forecast.jsonl").write_text(json.dumps(
                {"step": 300, "budget": BUDGET, "p": {"0.9": 0.5, "0.99": 0.4}, "at": {}, "low": {}, "high": {},
                 "reached": {"0.9": False, "0.99": False}, "seconds": 50.0}) + "\n")
        live = LiveForecast(synth_cfg(), d, start=310)
        live({**recs[31], "time": 10.0})
        live.close()
        lines = (d / "forecast.jsonl").read_text().splitlines()
        assert len(lines) == 1, lines                  # the resumed one added none
        assert json.loads(lines[-1])["step"] == (310 if fresh else 300)
