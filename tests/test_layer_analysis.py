"""``groklab analyze`` on MLP runs of vector tasks (Fan, Pascanu, Jaggi 2024, "Deep Grokking"):
feature rank (and probes) per layer at every checkpoint, and the surges of validation accuracy."""
from __future__ import annotations

import json

import torch

import groklab
from groklab.cli import main
from groklab.measure.layers import surges
from groklab.measure.rank import feature_ranks, rank_subsample
from groklab.runs.checkpoint import load_weights, step_dir
from groklab.runs.rundir import read_jsonl

pytestmark = __import__("pytest").mark.usefixtures("one_thread")


def _curve(points):
    return [{"step": s, "val_acc": a} for s, a in points]


def test_two_stages_of_generalization_are_two_surges_with_their_steps():
    # chance until 1,000, a first surge to 0.6 by 1,500, a long plateau (with a dip that must not
    # count as a new rise), a second surge to 0.95 between 20,000 and 25,000
    pts = [(0, 0.1), (500, 0.1), (1000, 0.12), (1200, 0.4), (1500, 0.6)]
    pts += [(s, 0.6) for s in range(2000, 20000, 1000)] + [(9000, 0.3), (9500, 0.6)]
    pts = sorted(pts) + [(21000, 0.7), (23000, 0.85), (25000, 0.95), (30000, 0.95)]
    got = surges(_curve(pts))
    assert got == [{"start": 1000, "end": 1500, "from": 0.1, "to": 0.6},
                   {"start": 21000, "end": 25000, "from": 0.6, "to": 0.95}]


def test_a_slow_drift_and_a_rise_below_min_rise_are_not_surges():
    assert surges(_curve([(0, 0.5), (100, 0.52), (1000, 0.54), (10000, 0.56), (100000, 0.58)])) == []
    assert surges(_curve([(0, 0.5), (100, 0.53)]), min_rise=0.05) == []
    assert surges(_curve([(0, 0.5), (100, 0.53)]), min_rise=0.03) == [
        {"start": 100, "end": 100, "from": 0.5, "to": 0.53}]


def test_analyze_measures_each_layers_rank_at_each_checkpoint_and_the_surges(tmp_path, capsys):
    cfg = groklab.resolve("deep-mnist", overrides=[
        "model.hidden=[32,32,32]", "task.n_train=200", "train.steps=60", "train.eval_every=5",
        "train.n_checkpoints=0", "train.checkpoint_every=20", "train.forecast=false",
        "train.measure_every=0"])
    run = groklab.run(cfg, out=tmp_path / "r", progress=False, report=False)
    assert main(["analyze", str(run.dir), "--quiet", "--probes"]) == 0
    said = capsys.readouterr().out
    assert "surges of validation accuracy" in said and "feature rank at the last checkpoint" in said
    recs = read_jsonl(run.dir / "analysis.jsonl")
    assert [r["step"] for r in recs] == [20, 40, 60]
    model = run.model.double()  # float64 preset
    x = rank_subsample(run.task.x_val, 1000).double()
    for r in recs:  # the ranks are those of that checkpoint's weights, not of the final model
        model.load_state_dict(load_weights(step_dir(run.dir, r["step"])))
        assert {k: v for k, v in r.items() if k.startswith("rank_")} == feature_ranks(model, x)
        assert sorted(k for k in r if k.startswith("probe_")) == ["probe_L1", "probe_L2", "probe_L3", "probe_L4"]
        assert all(0 <= r[f"probe_L{i}"] <= 1 for i in range(1, 5))
    info = json.loads((run.dir / "analysis.json").read_text())
    assert info["surges"] == surges(read_jsonl(run.dir / "metrics.jsonl"))
    assert info["layers"] == ["L1", "L2", "L3", "L4"]
    assert json.loads((run.dir / "summary.json").read_text())["surges"] == info["surges"]
    assert (run.dir / "fig_layers.png").stat().st_size > 10_000
    assert "fig_layers" in (run.dir / "report.html").read_text()


def test_analyze_refuses_a_vector_run_without_linear_layers(tmp_path, monkeypatch):
    from groklab.measure.analyze import load_run
    from groklab.schema import ConfigError
    cfg = groklab.resolve("deep-mnist", overrides=["model.hidden=[8]", "task.n_train=50"])
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text(json.dumps(cfg.to_dict()))
    import groklab.models as models
    monkeypatch.setattr(models, "build_model", lambda cfg, task: torch.nn.Linear(784, 10))
    try:
        load_run(tmp_path / "r")
    except ConfigError as e:
        assert "has no Linear layers to analyse" in str(e)
    else:
        raise AssertionError("no ConfigError")
