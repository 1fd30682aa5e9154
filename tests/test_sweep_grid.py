"""Grid sweeps: run directories, results.csv, phase diagrams, failures, resume."""
import numpy as np
import pytest

import groklab
from groklab.cli import main
from groklab.config import ConfigError
from groklab.sweep import run_sweep
from groklab.sweep.diagram import aggregate
from groklab.sweep.spec import parse_spec
from groklab.sweep.table import read_csv

TINY = {"preset": "prieto", "name": "tiny",
        "base": {"task": {"p": 11, "frac": 0.5}, "model": {"hidden": [16]},
                 "train": {"steps": 30, "eval_every": 10, "n_checkpoints": 2}},
        "axes": {"optim.lr": [1e-3, 1e-2], "optim.wd": [0.0, 1.0]}, "ensemble": False}


def test_grid_writes_runs_table_diagrams_and_report(tmp_path):
    rows = run_sweep(parse_spec(TINY), tmp_path / "s", workers=1)
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
    for f in ("fig_phase.png", "fig_steps.png", "report.html", "spec.toml", "sweep.json"):
        assert (tmp_path / "s" / f).is_file() or f == "spec.toml"
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
    spec = parse_spec({**TINY, "axes": {"optim.lr": [1e-3, 1e6]},
                       "base": {**TINY["base"], "optim": {"wd": 1.0}}})
    rows = run_sweep(spec, tmp_path / "s", workers=1)
    bad = [r for r in rows if r["optim.lr"] == 1e6][0]
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


def test_ensemble_grid_gives_the_same_table_layout(tmp_path):
    rows = run_sweep(parse_spec({**TINY, "ensemble": True}), tmp_path / "s", workers=1)
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
    assert all((tmp_path / "s" / "points" / r["id"] / "report.html").is_file() for r in rows)


def test_worker_pool_runs_points_in_processes(tmp_path):
    spec = parse_spec({**TINY, "axes": {"optim.lr": [1e-3, 1e-2]}})
    rows = run_sweep(spec, tmp_path / "s", workers=2)
    assert sorted(r["status"] for r in rows) == ["completed", "completed"]


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
