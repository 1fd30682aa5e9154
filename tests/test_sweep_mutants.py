"""sweep/: what the mutation run of the module found without a test (issue 23 item 9,
docs/testing.md): a failed ensemble's clean-up, a failed trial's error, the diagrams' orientation."""
import numpy as np
import pytest
import torch

import groklab
from groklab.runs.rundir import read_json
from groklab.sweep import run_sweep
from groklab.sweep.spec import parse_spec
from groklab.sweep.table import read_csv

TINY = {"preset": "prieto", "name": "tiny",
        "base": {"task": {"p": 11, "frac": 0.5}, "model": {"hidden": [16]},
                 "train": {"steps": 30, "eval_every": 10, "n_checkpoints": 2}},
        "axes": {"optim.lr": [1e-3, 1e-2], "optim.wd": [0.0, 1.0]}, "ensemble": False}


def test_a_failed_ensemble_keeps_its_finished_points_and_starts_the_others_again(tmp_path, monkeypatch):
    """The ensemble trains every point, then fails with one point finished and three half-written
    (checkpoints, no summary): the finished one is kept as it is, the three are removed and run
    again singly from the start (not resumed from the failed ensemble's checkpoints)."""
    import groklab.sweep.ensemble as ens
    real = ens.train_ensemble

    def fails_late(cfgs, dirs, report=True):
        real(cfgs, dirs, report=False)
        for d in dirs:
            (d / "stale.txt").write_text("left by the failed ensemble")
        for d in dirs[1:]:
            (d / "summary.json").unlink()
        raise RuntimeError("vmap fell over late")
    monkeypatch.setattr(ens, "train_ensemble", fails_late)
    rows = run_sweep(parse_spec({**TINY, "ensemble": True}), tmp_path / "e", workers=1)
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
    [g] = read_json(tmp_path / "e" / "sweep.json")["ensemble"]["groups"]
    assert g["trained"] == "singly" and g["fallback"] == "RuntimeError: vmap fell over late"
    dirs = sorted((tmp_path / "e" / "points").iterdir())
    kept = [d for d in dirs if (d / "stale.txt").exists()]
    assert len(kept) == 1 and read_json(kept[0] / "summary.json")["ensemble_size"] == 4
    for d in dirs:
        if d not in kept:
            assert "ensemble_size" not in read_json(d / "summary.json")   # trained alone, from step 0


def test_a_failed_trial_carries_its_error_and_counts_towards_n_trials(tmp_path, monkeypatch):
    """Both trials' runs crash: each trial fails with the seed's error as its ``error`` attribute
    (in results.csv too), and failed trials count, so no third trial is asked for."""
    optuna = pytest.importorskip("optuna")
    real, calls = groklab.run, []

    def crash_twice(cfg, **kw):
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError(f"boom {len(calls)}")
        return real(cfg, **kw)
    monkeypatch.setattr(groklab, "run", crash_twice)
    spec = parse_spec({"preset": "prieto", "name": "opt", "mode": "optimize",
                       "base": {**TINY["base"], "train": {"steps": 20, "eval_every": 10, "n_checkpoints": 2}},
                       "axes": {"optim.wd": [0.0, 1.0]}, "optimize": {"n_trials": 2, "sampler": "random"}})
    study = run_sweep(spec, tmp_path / "o", workers=1)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2 and len(calls) == 2
    assert [t.user_attrs["error"] for t in trials] == ["seed 0: RuntimeError: boom 1", "seed 0: RuntimeError: boom 2"]
    assert [r["error"] for r in read_csv(tmp_path / "o" / "results.csv")] == [t.user_attrs["error"] for t in trials]


def test_the_diagrams_put_the_first_y_value_at_the_bottom_and_tilt_the_x_ticks(tmp_path, monkeypatch):
    """Liu et al.'s phase diagrams read like a plot: y grows upwards. Every image of both figures
    (the steps figure's grey mask under the censored cells included) has row 0 at the bottom,
    where its label is written; the x tick labels are tilted 45°."""
    import groklab.sweep.diagram as dg
    figs = {}
    monkeypatch.setattr(dg, "save_figure", lambda fig, path: figs.setdefault(path.name, fig))
    xs, ys = [1e-3, 1e-2, 1e-1], [0.0, 1.0]
    rows = [{"optim.lr": x, "optim.wd": y, "phase": "grokking" if y else "memorization",
             "generalized_at_0.9": 500 if y else None} for x in xs for y in ys]
    agg = dg.aggregate(rows, "optim.lr", xs, "optim.wd", ys, 0.9)
    dg.plot_phase(agg, "optim.lr", xs, "optim.wd", ys, tmp_path / "phase.png", "t")
    dg.plot_steps(agg, "optim.lr", xs, "optim.wd", ys, tmp_path / "steps.png", "t", 0.9)
    assert set(figs) == {"phase.png", "steps.png"}
    for name, fig in figs.items():
        ax = fig.axes[0]
        assert len(ax.images) == (1 if name == "phase.png" else 2)
        for im in ax.images:
            assert tuple(im.get_extent()) == (-0.5, len(xs) - 0.5, -0.5, len(ys) - 0.5), name  # row 0 low
        lo, hi = ax.get_ylim()
        assert lo < hi, name
        assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1"]
        assert all(t.get_rotation() == 45 for t in ax.get_xticklabels()), name
    mask = figs["steps.png"].axes[0].images[0].get_array()
    assert np.array_equal(np.asarray(mask), [[1.0] * 3, [0.0] * 3])  # the censored row (wd = 0) is row 0
    labels = {(t.get_position()[1], t.get_text()) for t in figs["phase.png"].axes[0].texts}
    assert labels == {(0, "M"), (1, "G")}
    labels = {(t.get_position()[1], t.get_text()) for t in figs["steps.png"].axes[0].texts}
    assert labels == {(0, "—"), (1, "500")}                         # never reached: a dash, not "nan"


def test_a_trials_unreadable_metrics_are_one_line_naming_the_file(tmp_path):
    """A seed's run whose summary does not say when it generalized is read back from its
    metrics.jsonl; a record there without val_acc is a one-line error naming that file."""
    from groklab.config import ConfigError
    from groklab.sweep.optimize import seed_value
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "train_acc": 0.5}\n')
    result = {"status": "completed", "summary": {"status": "completed", "generalized_at": {}}}
    with pytest.raises(ConfigError) as e:
        seed_value(result, tmp_path, {"threshold": 0.9, "metric": "steps", "penalty": 2.0}, 100)
    assert str(e.value).startswith(f"{str(tmp_path / 'metrics.jsonl')!r} is unreadable (KeyError: ")
    assert str(e.value).endswith("; delete the trial's directory to run it again")


def test_the_table_adds_the_diagrams_own_threshold_to_the_standard_ones():
    from groklab.measure.events import THRESHOLDS
    from groklab.sweep.table import thresholds
    assert thresholds() == sorted(THRESHOLDS)
    assert thresholds(0.8) == sorted([*THRESHOLDS, 0.8]) and thresholds(0.9) == sorted(THRESHOLDS)


def test_a_cluster_address_that_never_answers_says_so(monkeypatch):
    """A connection that times out (a firewall dropping the packets) names the wait."""
    import socket

    from groklab.config import ConfigError
    from groklab.sweep import executors

    def silent(addr, timeout):
        raise TimeoutError()
    monkeypatch.setattr(socket, "create_connection", silent)
    with pytest.raises(ConfigError, match=r"^--address '10\.1\.2\.3:6379': no Ray cluster answers at "
                                          r"10\.1\.2\.3:6379 \(no answer within 2\.5 s\)$"):
        executors.check_reachable("10.1.2.3:6379", timeout=2.5)


def test_an_ensemble_trains_in_float64_and_with_minibatches_like_separate_runs(tmp_path):
    """train.dtype = float64 and train.batch_size > 0 reach the ensemble: its weights are float64
    and its metrics those of the separate runs (the same tolerances as tests/test_ensemble.py)."""
    import copy

    from groklab.runs.checkpoint import list_checkpoints, load_checkpoint
    from groklab.runs.rundir import read_jsonl
    from groklab.sweep.ensemble import train_ensemble
    base = ["task.p=11", "task.frac=0.5", "model.hidden=16", "train.steps=20", "train.eval_every=10",
            "train.n_checkpoints=1", "train.dtype=float64", "train.batch_size=16"]
    cfgs = [groklab.resolve("prieto", overrides=[*base, f"optim.lr={lr}", f"optim.wd={wd}", f"train.seed={s}"])
            for lr, wd, s in ((1e-2, 0.1, 0), (3e-3, 1.0, 1))]
    dirs = [tmp_path / f"e{i}" for i in range(2)]
    train_ensemble(cfgs, dirs, report=False)
    for i, c in enumerate(cfgs):
        ref = groklab.run(copy.deepcopy(c), out=tmp_path / f"r{i}", report=False)
        got = read_jsonl(dirs[i] / "metrics.jsonl")
        assert [r["step"] for r in got] == [r["step"] for r in ref.metrics] == [0, 10, 20]
        for a, b in zip(got, ref.metrics):
            for k in ("train_loss", "val_loss", "weight_norm", "train_acc"):
                assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-9), (i, k, a["step"])
        w, _ = load_checkpoint(dirs[i], list_checkpoints(dirs[i])[-1])
        assert {v.dtype for v in w.values()} == {torch.float64}


def test_a_resumed_point_writes_its_report_only_when_the_sweep_asks_for_one(tmp_path):
    """A point killed half-way is resumed with the job's ``report`` setting, like a new one."""
    from groklab.runs.rundir import write_json
    from groklab.sweep.point import run_point
    p = next(iter(parse_spec(TINY).points()))
    d = tmp_path / p.id
    groklab.run(p.config, out=d, progress=False, report=False)
    job = {"id": p.id, "dir": str(d), "config": p.config.to_dict(), "prune": None}
    for report in (False, True):
        write_json(d / "summary.json", {**read_json(d / "summary.json"), "status": "running"})
        assert run_point({**job, "report": report})["status"] == "completed"
        assert (d / "report.html").exists() == report, report


def test_the_optimize_space_is_checked_at_its_low_corner_and_a_range_needs_a_number():
    """List values each valid alone can be refused together: d_model 8 with 16 heads, the
    lists' first values, is the low corner; a range over a setting that is not a number is
    refused with what to give instead."""
    from groklab.config import ConfigError
    from groklab.sweep.optimize import check_space

    def spec(axes):
        return parse_spec({"preset": "default", "name": "o", "mode": "optimize", "axes": axes,
                           "optimize": {"n_trials": 2}})
    with pytest.raises(ConfigError, match=r"^\[axes\] at the low corner: point model.d_model=8, model.n_heads=16: "):
        check_space(spec({"model.d_model": [8, 64], "model.n_heads": [16, 2]}))
    check_space(spec({"model.d_model": [64, 8], "model.n_heads": [2, 4]}))
    with pytest.raises(ConfigError, match="^axis 'task.op' is not numeric; give a list of values instead of a log$"):
        spec({"task.op": {"log": [1, 2]}})


def test_a_failed_points_summary_with_a_malformed_field_is_named(tmp_path):
    """failed.json's summary (kept when a point fails after its run wrote one) whose
    ``memorized_at`` is not a JSON object: one line naming the file and the field."""
    from groklab.runs.read import RunFileError
    from groklab.runs.rundir import write_json
    from groklab.sweep.point import read_result
    write_json(tmp_path / "failed.json", {"error": "RuntimeError: boom",
                                          "summary": {"status": "completed", "memorized_at": [100]}})
    with pytest.raises(RunFileError) as e:
        read_result("p", tmp_path)
    assert str(e.value) == (f"{str(tmp_path / 'failed.json')!r} is damaged: memorized_at is not a JSON object; "
                            "delete the point's directory to run it again")


def test_a_cluster_that_refuses_the_connection_is_one_line_with_its_cause(tmp_path, monkeypatch):
    """ray.init's own error (its first line) is the reason given (Ray itself is not started:
    its init is replaced by one that fails as it does when the address answers but is no cluster)."""
    ray = pytest.importorskip("ray")
    from groklab.config import ConfigError
    from groklab.sweep import executors

    def refuse(**kw):
        raise ConnectionError("GCS has not answered for 5 s\nretrying ...")
    monkeypatch.setattr(executors, "check_reachable", lambda address: None)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(ConfigError) as e:
        executors.RayExecutor("127.0.0.1:6379", tmp_path)
    assert str(e.value) == "--address '127.0.0.1:6379': cannot reach a Ray cluster (GCS has not answered for 5 s)"


def test_the_forecast_pruner_forecasts_with_its_own_model(monkeypatch):
    """The pruner's model (with ``learn = true``, the one refitted on the sweep's finished points)
    is the one every forecast it makes uses, not the shipped default."""
    from groklab.forecast import predict
    from groklab.sweep.point import ForecastPruneSink
    from test_forecast import curve, synth_cfg
    real, seen = predict.forecast, []

    def spy(records, **kw):
        seen.append(kw.get("model"))
        return real(records, **kw)
    monkeypatch.setattr(predict, "forecast", spy)
    sink = ForecastPruneSink({"risk": 0.0, "target": 0.9, "after": 0.1}, synth_cfg())  # risk 0: never stops
    for r in curve(range(0, 301, 10), True, 700):
        sink.log(r["step"], r)
    assert len(seen) >= 2 and all(m is sink.model for m in seen)
