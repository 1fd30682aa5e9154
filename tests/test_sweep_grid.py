"""Grid sweeps: run directories, results.csv, phase diagrams, failures, resume, ensembles, pools."""
import os

import numpy as np
import pytest

import groklab
from groklab.cli import main
from groklab.config import ConfigError
from groklab.runs.rundir import read_json
from groklab.sweep import run_sweep
from groklab.sweep.diagram import aggregate
from groklab.sweep.executors import LocalExecutor, run_jobs
from groklab.sweep.grid import make_jobs
from groklab.sweep.spec import parse_spec
from groklab.sweep.table import read_csv

TINY = {"preset": "prieto", "name": "tiny",
        "base": {"task": {"p": 11, "frac": 0.5}, "model": {"hidden": [16]},
                 "train": {"steps": 30, "eval_every": 10, "n_checkpoints": 2}},
        "axes": {"optim.lr": [1e-3, 1e-2], "optim.wd": [0.0, 1.0]}, "ensemble": False}


TINY_TOML = """
preset = "prieto"
name = "tiny"
ensemble = false
[base]
"task.p" = 11
"task.frac" = 0.5
"model.hidden" = [16]
"train.steps" = 30
"train.eval_every" = 10
"train.n_checkpoints" = 2
[axes]
"optim.lr" = [1e-3, 1e-2]
"optim.wd" = [0.0, 1.0]
"""


def test_grid_writes_runs_table_diagrams_and_report(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    rows = run_sweep(tmp_path / "tiny.toml", tmp_path / "s", workers=1)
    assert parse_spec(TINY).fingerprint() == read_json(tmp_path / "s" / "sweep.json")["fingerprint"]
    assert (tmp_path / "s" / "spec.toml").read_text() == TINY_TOML  # the spec as given
    assert len(rows) == 4
    table = read_csv(tmp_path / "s" / "results.csv")
    assert [r["id"] for r in table] == [r["id"] for r in rows]
    assert {(float(r["optim.lr"]), float(r["optim.wd"])) for r in table} == \
        {(a, b) for a in (1e-3, 1e-2) for b in (0.0, 1.0)}
    for r in table:
        d = tmp_path / "s" / "points" / r["id"]
        assert (d / "config.json").is_file() and (d / "summary.json").is_file()
        assert (d / "report.html").is_file() and (d / "metrics.jsonl").is_file()
        assert r["status"] == "completed" and r["steps_done"] == "30"
    for f in ("fig_phase.png", "fig_steps.png", "report.html", "sweep.json"):
        assert (tmp_path / "s" / f).is_file()
    page = (tmp_path / "s" / "report.html").read_text()
    assert page.count("data:image/png;base64") == 2 and "points/" in page


def test_a_crashing_point_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real = groklab.run

    def flaky(cfg, out=None, **kw):
        if cfg.optim.lr == 1e-2 and cfg.optim.wd == 1.0:
            raise RuntimeError("boom")
        return real(cfg, out=out, **kw)
    monkeypatch.setattr(groklab, "run", flaky)
    rows = run_sweep(parse_spec(TINY), tmp_path / "s", workers=1)
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(rows) == 4 and len(failed) == 1
    assert "boom" in failed[0]["error"] and failed[0]["phase"] == "failed"


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")  # train/loop.py
def test_a_nan_point_is_recorded_as_failed(tmp_path):
    spec = parse_spec({**TINY, "axes": {"optim.lr": [1e-3, 1e3]},
                       "base": {**TINY["base"], "optim": {"wd": 1.0}}})
    rows = run_sweep(spec, tmp_path / "s", workers=1)
    bad = [r for r in rows if r["optim.lr"] == 1e3][0]
    assert bad["status"] == "failed" and "loss is" in bad["error"]
    assert [r["status"] for r in rows if r["optim.lr"] == 1e-3] == ["completed"]


def test_running_again_continues_without_rerunning_finished_points(tmp_path):
    out = tmp_path / "s"
    run_sweep(parse_spec(TINY), out, workers=1)
    stamps = {p.name: (p / "summary.json").stat().st_mtime_ns for p in (out / "points").iterdir()}
    killed = sorted(stamps)[1]
    (out / "points" / killed / "summary.json").unlink()  # as if killed after its last checkpoint
    rows = run_sweep(parse_spec(TINY), out, workers=1)
    assert len(rows) == 4
    for name, t in stamps.items():
        now = (out / "points" / name / "summary.json").stat().st_mtime_ns
        assert (now == t) == (name != killed)
    with pytest.raises(ConfigError, match="different sweep"):
        run_sweep(parse_spec({**TINY, "axes": {"optim.lr": [3e-3]}}), out, workers=1)


def test_a_failed_point_is_not_run_again(tmp_path, monkeypatch):
    """failed.json makes a point finished: a rerun reads it back and trains nothing."""
    out = tmp_path / "s"
    real = groklab.run
    ran = []

    def run(cfg, out=None, **kw):
        ran.append(out)
        if cfg.optim.lr == 1e-2 and len(ran) <= 4:  # the first sweep: these two crash
            raise RuntimeError("boom")
        return real(cfg, out=out, **kw)
    monkeypatch.setattr(groklab, "run", run)
    run_sweep(parse_spec(TINY), out, workers=1)
    assert len(ran) == 4
    failed = sorted(p.name for p in (out / "points").iterdir() if (p / "failed.json").is_file())
    assert len(failed) == 2
    before = {n: (out / "points" / n / "failed.json").read_bytes() for n in failed}
    rows = run_sweep(parse_spec(TINY), out, workers=1)
    assert len(ran) == 4  # nothing trained again
    assert sorted(r["id"] for r in rows if r["status"] == "failed") == failed
    assert all("boom" in r["error"] for r in rows if r["status"] == "failed")
    assert {n: (out / "points" / n / "failed.json").read_bytes() for n in failed} == before
    from groklab.sweep.point import run_point
    p = next(p for p in parse_spec(TINY).points() if p.id in failed)
    job = {"id": p.id, "dir": str(out / "points" / p.id), "config": p.config.to_dict(), "prune": None}
    assert run_point(job)["status"] == "failed" and len(ran) == 4


def _table_layout(out):
    """results.csv without what depends on rounding and timing: columns, ids, axis values, status."""
    rows = read_csv(out / "results.csv")
    return list(rows[0]), [(r["id"], r["seed"], r["optim.lr"], r["optim.wd"], r["status"], r["steps_done"])
                           for r in rows]


def test_ensemble_grid_trains_together_and_gives_the_same_table_layout(tmp_path):
    ens = run_sweep(parse_spec({**TINY, "ensemble": True}), tmp_path / "e", workers=1)
    single = run_sweep(parse_spec(TINY), tmp_path / "s", workers=1)
    assert len(ens) == 4 and all(r["status"] == "completed" for r in ens)
    assert _table_layout(tmp_path / "e") == _table_layout(tmp_path / "s")
    assert [r["phase"] for r in ens] == [r["phase"] for r in single]
    for r in ens:  # every point really was trained in the one ensemble of 4 (one worker)
        d = tmp_path / "e" / "points" / r["id"]
        assert read_json(d / "summary.json")["ensemble_size"] == 4 and (d / "report.html").is_file()
    for r in single:
        assert "ensemble_size" not in read_json(tmp_path / "s" / "points" / r["id"] / "summary.json")
    meta = read_json(tmp_path / "e" / "sweep.json")
    assert meta["ensemble"]["used"] is True and meta["ensemble_fallbacks"] == []
    [g] = meta["ensemble"]["groups"]
    assert g["trained"] == "together" and g["fallback"] is None and len(g["points"]) == 4
    assert read_json(tmp_path / "s" / "sweep.json")["ensemble"] == {
        "used": False, "why": "the spec says ensemble = false", "groups": [], "single": []}


def test_points_an_ensemble_cannot_train_are_listed_with_why(tmp_path, capsys):
    spec = parse_spec({**TINY, "ensemble": True, "axes": {"optim.lr": [1e-3, 1e-2], "optim.clip": [0.0, 0.5]}})
    rows = run_sweep(spec, tmp_path / "e", workers=1)
    assert all(r["status"] == "completed" for r in rows)
    meta = read_json(tmp_path / "e" / "sweep.json")["ensemble"]
    [g] = meta["groups"]
    assert g["trained"] == "together" and sorted(g["points"]) == sorted(r["id"] for r in rows if "clip=0_" in r["id"])
    assert sorted(x["id"] for x in meta["single"]) == sorted(r["id"] for r in rows if "clip=0.5" in r["id"])
    assert {x["reason"] for x in meta["single"]} == {"optim.clip > 0"}
    assert "2 point(s) run singly" in capsys.readouterr().out


def test_auto_says_why_it_did_not_use_the_ensemble(tmp_path, monkeypatch):
    import groklab.sweep.ensemble as ens

    def broken(cfg, m, steps=20):
        raise RuntimeError("no vmap here")
    monkeypatch.setattr(ens, "time_ensemble", broken)
    run_sweep(parse_spec({**TINY, "ensemble": "auto"}), tmp_path / "a", workers=1)
    meta = read_json(tmp_path / "a" / "sweep.json")["ensemble"]
    assert meta["used"] is False
    assert meta["why"] == "auto: timing the ensemble failed (RuntimeError: no vmap here)"
    assert "timing the ensemble failed" in (tmp_path / "a" / "report.html").read_text()


def test_a_failing_ensemble_falls_back_to_single_runs_and_says_so(tmp_path, monkeypatch, capsys):
    import groklab.sweep.ensemble as ens

    def broken(cfgs, dirs, report=True):
        raise RuntimeError("vmap fell over")
    monkeypatch.setattr(ens, "train_ensemble", broken)
    rows = run_sweep(parse_spec({**TINY, "ensemble": True}), tmp_path / "e", workers=1)
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
    meta = read_json(tmp_path / "e" / "sweep.json")
    [g] = meta["ensemble"]["groups"]
    assert g["trained"] == "singly" and g["fallback"] == "RuntimeError: vmap fell over"
    assert sorted(g["points"]) == sorted(r["id"] for r in rows)
    assert [f["reason"] for f in meta["ensemble_fallbacks"]] == ["RuntimeError: vmap fell over"]
    out = capsys.readouterr().out
    assert "the ensemble failed, its points run singly (RuntimeError: vmap fell over)" in out
    assert "fell back to single runs (RuntimeError: vmap fell over)" in (tmp_path / "e" / "report.html").read_text()
    for r in rows:
        assert "ensemble_size" not in read_json(tmp_path / "e" / "points" / r["id"] / "summary.json")


def test_worker_pool_runs_points_in_processes(tmp_path):
    spec = parse_spec({**TINY, "axes": {"optim.lr": [1e-3, 1e-2]}})
    rows = run_sweep(spec, tmp_path / "s", workers=2)
    assert sorted(r["status"] for r in rows) == ["completed", "completed"]
    ex = LocalExecutor(2)
    results = []
    try:
        run_jobs(ex, make_jobs(spec.points(), tmp_path / "p", spec, False), results.append)
    finally:
        ex.close()
    assert len(results) == 2 and all(r["status"] == "completed" for r in results)
    assert all(r["pid"] != os.getpid() for r in results), "ran in the calling process"
    inline = LocalExecutor(1)
    run_jobs(inline, make_jobs(spec.points(), tmp_path / "q", spec, False), results.append)
    assert [r["pid"] for r in results[2:]] == [os.getpid()] * 2  # --workers 1: in this process


def test_aggregate_majority_phase_and_geometric_mean_steps():
    rows = [{"a": 1, "b": 1, "phase": "grokking", "generalized_at_0.9": 100},
            {"a": 1, "b": 1, "phase": "grokking", "generalized_at_0.9": 400},
            {"a": 1, "b": 1, "phase": "memorization", "generalized_at_0.9": None},
            {"a": 2, "b": 1, "phase": "confusion", "generalized_at_0.9": ""}]
    agg = aggregate(rows, "a", [1, 2], "b", [1], 0.9)
    assert list(agg["phase"][0]) == ["grokking", "confusion"]
    assert list(agg["agree"][0]) == [2, 1] and list(agg["n"][0]) == [3, 1]
    assert agg["steps"][0, 0] == pytest.approx(200.0) and np.isnan(agg["steps"][0, 1])
    assert list(agg["n_gen"][0]) == [2, 0]


def test_cli_bad_spec_exits_2_before_creating_anything(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('preset = "prieto"\n[axes]\n"optim.lrr" = [0.1]\n')
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "optim.lrr" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    bad.write_text('preset = "prieto"\n[axes]\n"task.frac" = [0.5, 0.01]\n[base]\n"task.p" = 5\n')
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("with_checkpoint", [True, False])
def test_a_partial_point_resumes_from_its_checkpoint_or_starts_again(tmp_path, with_checkpoint):
    """A point killed half-way (summary "running") is resumed from its checkpoint, keeping what
    its directory holds; one killed before its first checkpoint is started again from nothing."""
    from groklab.runs.read import read_metrics
    from groklab.runs.rundir import write_json
    from groklab.sweep.point import run_point
    p = next(iter(parse_spec(TINY).points()))
    d = tmp_path / p.id
    groklab.run(p.config, out=d, progress=False, report=False)
    s = read_json(d / "summary.json")
    write_json(d / "summary.json", {**s, "status": "running"})
    if not with_checkpoint:
        import shutil
        shutil.rmtree(d / "checkpoints")
    (d / "marker").write_text("kept only by a resume")
    res = run_point({"id": p.id, "dir": str(d), "config": p.config.to_dict(), "prune": None})
    assert res["status"] == "completed" and res["error"] is None
    assert (d / "marker").exists() == with_checkpoint
    steps = [r["step"] for r in read_metrics(d / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 30
