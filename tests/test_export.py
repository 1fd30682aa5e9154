"""Export to TensorBoard and MLflow: what a run logs is what the tracker reads back."""
from __future__ import annotations

import sys

import pytest
import torch

from groklab.cli import main
from groklab.config import ConfigError
from groklab.runs.export import TB_TAGS, TensorBoardSink, export_run
from groklab.runs.rundir import read_jsonl

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

ARGS = ["--preset", "prieto", "--set", "task.p=13", "--set", "model.hidden=[16]", "--set", "train.steps=40",
        "--set", "train.eval_every=10", "--set", "train.measure_every=20", "--set", "train.n_checkpoints=0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One tiny run through the command line with --tensorboard (streamed while training)."""
    out = tmp_path_factory.mktemp("export") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["run", *ARGS, "--out", str(out), "--tensorboard", "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    ea = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    ea.Reload()
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


def test_streamed_events_read_back_equal_metrics_jsonl(run_dir):
    records = read_jsonl(run_dir / "metrics.jsonl")
    got = scalars(run_dir / "tensorboard")
    for key, tag in TB_TAGS.items():
        want = [(r["step"], r[key]) for r in records]
        assert [s for s, _ in got[tag]] == [s for s, _ in want], tag
        # TensorBoard stores float32
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in want], rel=1e-6, abs=1e-7), tag


def test_export_replays_metrics_and_measures(run_dir, tmp_path):
    import shutil
    d = tmp_path / "copy"
    shutil.copytree(run_dir, d, ignore=shutil.ignore_patterns("tensorboard"))
    assert main(["export", str(d), "--tensorboard"]) == 0
    got = scalars(d / "tensorboard")
    measures = read_jsonl(d / "measures.jsonl")
    assert measures, "the run was configured to measure"
    assert [s for s, _ in got["measures/sum_sq_weights"]] == [m["step"] for m in measures]
    assert [v for _, v in got["measures/sum_sq_weights"]] == pytest.approx([m["sum_sq_weights"] for m in measures],
                                                                           rel=1e-6)
    assert len(got["accuracy/val"]) == len(read_jsonl(d / "metrics.jsonl"))


def test_nested_and_non_numeric_fields_are_left_out(tmp_path):
    sink = TensorBoardSink(tmp_path / "tb")
    sink.log(3, {"step": 3, "time": 1.0, "flag": True, "name": "x", "per": {"a": 1.0}, "val_acc": 0.5, "n": 2})
    sink.close()
    assert scalars(tmp_path / "tb") == {"accuracy/val": [(3, 0.5)], "n": [(3, 2.0)]}


def test_bad_input_is_a_config_error(run_dir, tmp_path, monkeypatch, capsys):
    assert main(["export", str(tmp_path / "nope"), "--tensorboard"]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["export", str(run_dir)]) == 2
    assert "nothing to export" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as without the extra
    with pytest.raises(ConfigError, match="tensorboard extra"):
        TensorBoardSink(tmp_path / "tb")


def test_mlflow_offline_run_reads_back(run_dir, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from mlflow.tracking import MlflowClient
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # what the sink sets; undone after the test
    import shutil
    d = tmp_path / "copy"
    shutil.copytree(run_dir, d, ignore=shutil.ignore_patterns("tensorboard"))
    lines = export_run(d, mlflow=True)
    assert len(lines) == 1 and (d / "mlruns").is_dir()
    c = MlflowClient(tracking_uri=(d / "mlruns").resolve().as_uri())
    run = c.search_runs([c.get_experiment_by_name("groklab").experiment_id])[0]
    assert run.info.status == "FINISHED" and run.data.params["optim.lr"] == "0.01"
    records = read_jsonl(d / "metrics.jsonl")
    hist = sorted((m.step, m.value) for m in c.get_metric_history(run.info.run_id, "val_acc"))
    assert hist == [(r["step"], r["val_acc"]) for r in records]
    assert c.get_metric_history(run.info.run_id, "measures/sum_sq_weights")


def test_a_resumed_sink_replaces_the_steps_it_logs_again(tmp_path):
    first = TensorBoardSink(tmp_path / "tb")
    for s in range(0, 60, 10):
        first.log(s, {"val_acc": 0.1})
    first.close()
    again = TensorBoardSink(tmp_path / "tb")  # as after `groklab run --resume DIR --tensorboard`
    for s in range(30, 80, 10):
        again.log(s, {"val_acc": 0.9})
    again.close()
    assert scalars(tmp_path / "tb")["accuracy/val"] == [(0, pytest.approx(0.1)), (10, pytest.approx(0.1)),
                                                        (20, pytest.approx(0.1))] + [
        (s, pytest.approx(0.9)) for s in range(30, 80, 10)]
