"""The dashboard's readers and server on hand-made run directories (no training, no browser):
live files, half-written and corrupt files, bad requests, bad command-line input."""
from __future__ import annotations

import json
import os
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from groklab.cli import main
from groklab.config import ConfigError
from groklab.dash import scan
from groklab.dash.server import STATIC, make_server


def make_run(d: Path, n: int = 3, summary: dict | None = None, measures: bool = False) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"preset": "prieto", "task": {"name": "modular", "op": "x+y", "p": 23},
                                               "model": {"arch": "mlp"}, "train": {"steps": 100}}))
    with open(d / "metrics.jsonl", "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"step": 10 * i, "train_acc": i / n, "val_acc": 0.0, "train_loss": 1.0,
                                 "val_loss": 2.0, "lr": 0.01, "weight_norm": 3.0, "time": 0.1}) + "\n")
    if measures:
        (d / "measures.jsonl").write_text(
            json.dumps({"step": 0, "sum_sq_weights": 5.0, "sum_sq_per_tensor": {"a": 1.0}}) + "\n")
    if summary is not None:
        (d / "summary.json").write_text(json.dumps(summary))
    return d


@pytest.fixture()
def server(tmp_path):
    srv = make_server(tmp_path, port=0)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def get(srv, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(srv.url.rstrip("/") + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()


def get_json(srv, path: str) -> tuple[int, dict]:
    code, body = get(srv, path)
    return code, json.loads(body)


def test_discover_kinds_and_skips(tmp_path):
    make_run(tmp_path / "a")
    make_run(tmp_path / "sw" / "trial_0")
    (tmp_path / "sw" / "results.csv").write_text("lr,wd,phase\n0.1,1,grokking\n0.2,1,memorization\n")
    (tmp_path / "gtn").mkdir()
    (tmp_path / "gtn" / "fig_samples.png").write_bytes(b"\x89PNG")
    make_run(tmp_path / ".hidden" / "x")
    make_run(tmp_path / "a2" / "checkpoints" / "inner")
    runs, sweeps, results = scan.discover(tmp_path)
    assert [scan.rel(tmp_path, d) for d in runs] == ["a", "sw/trial_0"]
    assert [scan.rel(tmp_path, d) for d in sweeps] == ["sw"]
    assert [scan.rel(tmp_path, d) for d in results] == ["gtn"]
    info = scan.listing(tmp_path)
    assert [r["sweep"] for r in info["runs"]] == [None, "sw"]
    assert info["sweeps"][0]["trials"] == 2


def test_read_new_is_incremental_and_skips_a_half_written_line(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 0, "val_acc": 0.1}\n{"step": 10, "va')
    first = scan.read_new(p, None)
    assert [r["step"] for r in first["records"]] == [0] and first["bad"] == 0
    with open(p, "a") as fh:
        fh.write('l_acc": 0.2}\n{"step": 20, "val_acc": 0.3}\n')
    second = scan.read_new(p, first["token"])
    assert [r["step"] for r in second["records"]] == [10, 20] and not second["reset"]
    assert scan.read_new(p, second["token"])["records"] == []


def test_read_new_starts_over_when_the_file_is_replaced(tmp_path):
    # a resume truncates metrics.jsonl by an atomic rewrite: a new file at the same path
    p = tmp_path / "metrics.jsonl"
    p.write_text("".join(json.dumps({"step": s}) + "\n" for s in (0, 10, 20, 30)))
    tok = scan.read_new(p, None)["token"]
    tmp = tmp_path / "new"
    tmp.write_text(json.dumps({"step": 0}) + "\n")
    os.replace(tmp, p)
    again = scan.read_new(p, tok)
    assert again["reset"] and [r["step"] for r in again["records"]] == [0]


def test_corrupt_lines_are_counted_and_nan_left_out(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 0, "val_acc": NaN, "val_loss": 1.5}\ngarbage\n[1, 2]\n{"step": 10}\n')
    got = scan.read_new(p, None)
    assert got["bad"] == 2
    assert got["records"] == [{"step": 0, "val_loss": 1.5}, {"step": 10}]


def test_status_of_live_finished_stale_and_resumed_runs(tmp_path):
    live = make_run(tmp_path / "live")
    assert scan.run_status(live, None) == "running"
    old = os.path.getmtime(live / "metrics.jsonl") + 10 * scan.LIVE_SECONDS
    assert scan.run_status(live, None, now=old) == "stale"
    done = make_run(tmp_path / "done", summary={"status": "completed"})
    t = os.path.getmtime(done / "metrics.jsonl")
    os.utime(done / "summary.json", (t + 5, t + 5))
    assert scan.run_status(done, {"status": "completed"}) == "completed"
    os.utime(done / "summary.json", (t - 60, t - 60))  # metrics newer than summary: resumed
    assert scan.run_status(done, {"status": "completed"}, now=t + 1) == "running"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert scan.run_status(empty, None) == "starting"


def test_markers_from_phases_and_threshold_crossings():
    s = {"phase_threshold": 0.9, "memorized_at": {"0.9": 120}, "generalized_at": {"0.9": None},
         "phases": {"circuit formation": 300, "cleanup": 800}}
    m = scan.markers(s)
    assert {(x["label"], x["step"]) for x in m} == {("circuit formation", 300), ("cleanup", 800),
                                                    ("train ≥ 0.9", 120)}


def test_page_and_static_files_are_offline(server):
    code, page = get(server, "/")
    assert code == 200 and b'src="/static/app.js"' in page
    for name in ("index.html", "app.js", "style.css"):
        text = (STATIC / name).read_text()
        # nothing fetched from elsewhere: no absolute URL, no protocol-relative one
        assert "http://" not in text and "https://" not in text and 'src="//' not in text, name
        assert get(server, f"/static/{name}")[0] == 200


def test_api_lists_and_serves_runs_including_broken_ones(server, tmp_path):
    make_run(tmp_path / "good", n=4, measures=True,
             summary={"status": "completed", "phase": "grokking", "phases": {"cleanup": 20}})
    bad = make_run(tmp_path / "bad")
    (bad / "config.json").write_text('{"task": {"name": ')  # half written / corrupt
    (bad / "summary.json").write_text("\x00\x01")
    code, lst = get_json(server, "/api/list")
    assert code == 200 and lst["error"] is None
    by = {r["path"]: r for r in lst["runs"]}
    assert by["good"]["status"] == "completed" and by["good"]["step"] == 30
    assert by["bad"]["errors"] and "config.json" in by["bad"]["errors"][0]
    code, run = get_json(server, "/api/run?path=good")
    assert code == 200 and len(run["metrics"]["records"]) == 4
    assert run["measures"]["records"] == [{"step": 0, "sum_sq_weights": 5.0}]
    assert {"step": 20, "label": "cleanup", "kind": "phase"} in run["markers"]
    code, again = get_json(server, f"/api/run?path=good&m={run['metrics']['token']}")
    assert code == 200 and again["metrics"]["records"] == []
    code, broken = get_json(server, "/api/run?path=bad")
    assert code == 200 and broken["config"] is None and len(broken["errors"]) == 2
    assert get(server, "/files/good/config.json")[0] == 200


def test_bad_requests_get_messages_and_the_server_keeps_answering(server, tmp_path):
    make_run(tmp_path / "r")
    (tmp_path / "secret.key").write_text("x")
    for path, code in [("/api/run?path=nope", 404), ("/api/run?path=../..", 404), ("/nothing", 404),
                       ("/files/../../etc/passwd", 404), ("/files/secret.key", 404),
                       ("/static/../server.py", 404), ("/api/sweep?path=missing", 404)]:
        got, body = get(server, path)
        assert got == code, path
        assert json.loads(body)["error"], path
    assert get(server, "/api/list", headers={"Host": "evil.example:80"})[0] == 403
    assert get_json(server, "/api/list")[0] == 200


def test_root_deleted_while_serving_is_a_message(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    srv = make_server(root, port=0)
    root.rmdir()
    assert "does not exist" in scan.listing(srv.root)["error"]
    srv.server_close()


def test_sweep_detail_reads_results_and_spec(server, tmp_path):
    sw = tmp_path / "sweep1"
    sw.mkdir()
    (sw / "results.csv").write_text("lr,phase\n0.1,grokking\n")
    (sw / "spec.toml").write_text('[grid]\n"optim.lr" = [0.1]\n')
    (sw / "fig_phase.png").write_bytes(b"\x89PNG")
    code, d = get_json(server, "/api/sweep?path=sweep1")
    assert code == 200 and d["header"] == ["lr", "phase"] and d["rows"] == [["0.1", "grokking"]]
    assert d["spec"]["name"] == "spec.toml" and d["figures"][0]["name"] == "phase"
    assert get(server, "/files/sweep1/fig_phase.png")[0] == 200


def test_missing_root_and_busy_port_are_config_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="does not exist"):
        make_server(tmp_path / "nope", port=0)
    assert main(["dash", "--root", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match="already in use"):
            make_server(tmp_path, port=port)
        assert main(["dash", "--root", str(tmp_path), "--port", str(port)]) == 2
    assert "already in use" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="out of range"):
        make_server(tmp_path, port=70000)


def test_gtn_runs_are_described_by_their_data_and_meta_steps(tmp_path):
    d = tmp_path / "gtn-1"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"data": {"name": "digits"}, "generator": {}, "learner": {"kind": "mlp"},
                                               "meta": {"steps": 300}}))
    (d / "metrics.jsonl").write_text(json.dumps({"step": 10, "meta_loss": 0.7, "learner": "mlp"}) + "\n")
    (d / "fig_samples.png").write_bytes(b"\x89PNG")
    (d / "fig_accuracy.png").write_bytes(b"\x89PNG")
    info = scan.run_detail(tmp_path, d)
    assert info["task"] == "GTN · digits · mlp" and (info["step"], info["steps"]) == (10, 300)
    assert [f["name"] for f in info["figures"]] == ["samples", "accuracy"]  # samples first
    assert info["metrics"]["records"] == [{"step": 10, "meta_loss": 0.7}]
