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


# --- the tracking URI: checked before anything, every request bounded ---------------------------

@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    """A run directory with one metrics record, and no MLFLOW_* settings from the environment."""
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.delenv(k, raising=False)
    d = tmp_path / "run"
    d.mkdir()
    (d / "config.json").write_text('{"optim": {"lr": 0.01}}')
    (d / "metrics.jsonl").write_text('{"step": 0, "time": 0.0, "val_acc": 0.5}\n')
    return d


def _one_line(capsys, code, needle):
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("groklab: error: ") and err.count("\n") == 1, err
    assert needle in err, err
    return err


@pytest.mark.parametrize("uri, needle", [
    ("nosuch://x", "--tracking-uri 'nosuch://x': scheme 'nosuch' is not supported; allowed: a path, file://"),
    ("databricks://profile", "scheme 'databricks' is not supported"),
    ("postgresql://u@127.0.0.1:1/db", "a database store is not supported"),
    ("mysql+pymysql://u@127.0.0.1:1/db", "a database store is not supported"),
    ("http://", "--tracking-uri 'http://': no host"),
    ("http://127.0.0.1:99999", "Port out of range"),
])
def test_an_unsupported_tracking_uri_is_one_line_before_anything_is_written(tiny_run, capsys, uri, needle):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    _one_line(capsys, main(["export", str(tiny_run), "--tensorboard", "--mlflow", "--tracking-uri", uri]), needle)
    assert sorted(p.name for p in tiny_run.iterdir()) == ["config.json", "metrics.jsonl"]


def test_the_environment_tracking_uri_is_checked_too(tiny_run, capsys, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuch://x")
    _one_line(capsys, main(["export", str(tiny_run), "--mlflow"]), "$MLFLOW_TRACKING_URI 'nosuch://x': scheme")


def test_tracking_uri_without_mlflow_is_refused(tiny_run, capsys):
    _one_line(capsys, main(["export", str(tiny_run), "--tensorboard", "--tracking-uri", "http://h"]),
              "--tracking-uri is read only with --mlflow")
    assert not (tiny_run / "tensorboard").exists()


def _closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_refuses_is_one_line_within_seconds(tiny_run, capsys):
    """MLflow's defaults retry 7 times with a doubling backoff (minutes); the export's limits apply."""
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    import time
    uri = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    code = main(["export", str(tiny_run), "--tensorboard", "--mlflow", "--tracking-uri", uri])
    assert time.monotonic() - t0 < 20
    _one_line(capsys, code, f"MLflow tracking URI '{uri}': cannot reach it (Connection refused)")
    assert sorted(p.name for p in tiny_run.iterdir()) == ["config.json", "metrics.jsonl"]


def test_a_server_that_never_answers_times_out_in_one_line(tiny_run, capsys, monkeypatch):
    """A listening socket that never replies: the request timeout ends it (1 s here, as a user's
    MLFLOW_HTTP_REQUEST_TIMEOUT is kept; the export's own default is HTTP_LIMITS)."""
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    import socket
    import time
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)  # the kernel completes the handshake; nobody reads or answers
        uri = f"http://127.0.0.1:{srv.getsockname()[1]}"
        t0 = time.monotonic()
        code = main(["export", str(tiny_run), "--mlflow", "--tracking-uri", uri])
        assert time.monotonic() - t0 < 15
    _one_line(capsys, code, f"MLflow tracking URI '{uri}': cannot reach it (")


def test_bounded_http_sets_limits_only_where_the_user_has_not(monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    import os

    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

    from groklab.runs.export import HTTP_LIMITS, bounded_http
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")
    with bounded_http():
        assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == int(HTTP_LIMITS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
        assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 300
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    tries = 1 + int(HTTP_LIMITS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    assert int(HTTP_LIMITS["MLFLOW_HTTP_REQUEST_TIMEOUT"]) * tries <= 30  # well within a minute
