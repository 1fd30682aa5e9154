"""The dashboard's readers and server on hand-made run directories (no training, no browser):
live files, half-written and corrupt files, bad requests, bad command-line input."""
from __future__ import annotations

import json
import os
import re
import select
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from groklab.cli import main
from groklab.config import ConfigError
from groklab.dash import scan
from groklab.dash.server import STATIC, STATIC_FILES, make_server


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
    first = scan.read_new(tmp_path, p, None)
    assert [r["step"] for r in first["records"]] == [0] and first["bad"] == 0
    with open(p, "a") as fh:
        fh.write('l_acc": 0.2}\n{"step": 20, "val_acc": 0.3}\n')
    second = scan.read_new(tmp_path, p, first["token"])
    assert [r["step"] for r in second["records"]] == [10, 20] and not second["reset"]
    assert scan.read_new(tmp_path, p, second["token"])["records"] == []


def test_read_new_starts_over_when_the_file_is_replaced(tmp_path):
    # a resume truncates metrics.jsonl by an atomic rewrite: a new file at the same path
    p = tmp_path / "metrics.jsonl"
    p.write_text("".join(json.dumps({"step": s}) + "\n" for s in (0, 10, 20, 30)))
    tok = scan.read_new(tmp_path, p, None)["token"]
    tmp = tmp_path / "new"
    tmp.write_text(json.dumps({"step": 0}) + "\n")
    os.replace(tmp, p)
    again = scan.read_new(tmp_path, p, tok)
    assert again["reset"] and [r["step"] for r in again["records"]] == [0]


def test_corrupt_lines_are_counted_and_nan_left_out(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 0, "val_acc": NaN, "val_loss": 1.5}\ngarbage\n[1, 2]\n{"step": 10}\n')
    got = scan.read_new(tmp_path, p, None)
    assert got["bad"] == 2
    assert got["records"] == [{"step": 0, "val_loss": 1.5}, {"step": 10}]


def test_a_huge_file_is_read_in_bounded_pieces_and_an_endless_line_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "MAX_READ", 64)
    p = tmp_path / "metrics.jsonl"
    p.write_text("".join(json.dumps({"step": s, "val_acc": 0.5}) + "\n" for s in range(10))
                 + json.dumps({"step": 99, "junk": "x" * 500}) + "\n" + json.dumps({"step": 100}) + "\n")
    steps, bad, tok = [], 0, None
    for _ in range(50):
        got = scan.read_new(tmp_path, p, tok)
        assert len(json.dumps(got)) < 400  # bounded, whatever the file's size
        steps += [r["step"] for r in got["records"]]
        bad, tok = bad + got["bad"], got["token"]
    assert steps == list(range(10)) + [100] and bad >= 1


def test_status_of_live_finished_stale_and_resumed_runs(tmp_path):
    live = make_run(tmp_path / "live")
    assert scan.run_status(tmp_path, live, None) == "running"
    old = os.path.getmtime(live / "metrics.jsonl") + 10 * scan.LIVE_SECONDS
    assert scan.run_status(tmp_path, live, None, now=old) == "stale"
    done = make_run(tmp_path / "done", summary={"status": "completed"})
    t = os.path.getmtime(done / "metrics.jsonl")
    os.utime(done / "summary.json", (t + 5, t + 5))
    assert scan.run_status(tmp_path, done, {"status": "completed"}) == "completed"
    os.utime(done / "summary.json", (t - 60, t - 60))  # metrics newer than summary: resumed
    assert scan.run_status(tmp_path, done, {"status": "completed"}, now=t + 1) == "running"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert scan.run_status(tmp_path, empty, None) == "starting"


def test_a_run_killed_while_its_summary_says_running_becomes_stale(tmp_path):
    d = make_run(tmp_path / "killed", summary={"status": "running"})  # what the loop writes at its start
    t = os.path.getmtime(d / "metrics.jsonl")
    assert scan.run_status(tmp_path, d, {"status": "running"}, now=t + 1) == "running"
    assert scan.run_status(tmp_path, d, {"status": "running"}, now=t + 10 * scan.LIVE_SECONDS) == "stale"


def test_markers_from_phases_and_threshold_crossings():
    s = {"phase_threshold": 0.9, "memorized_at": {"0.9": 120}, "generalized_at": {"0.9": None},
         "phases": {"circuit formation": 300, "cleanup": 800}}
    m = scan.markers(s)
    assert {(x["label"], x["step"]) for x in m} == {("circuit formation", 300), ("cleanup", 800),
                                                    ("train ≥ 0.9", 120)}


def test_page_and_static_files_are_offline(server):
    code, page = get(server, "/")
    assert code == 200 and b'src="/static/app.js"' in page
    for name in sorted(STATIC_FILES):
        text = (STATIC / name).read_text()
        if name.startswith("uPlot"):  # vendored: its banner comment names its home page
            assert "MIT" in (STATIC / "uPlot.LICENSE").read_text()
            text = text.split("*/", 1)[1] if text.startswith("/*!") else text
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


# ---- untrusted run directories: symlinks out of the root, FIFOs, NaN, markup ----

def strict_json(body: bytes):
    """What the page's JSON.parse accepts: no NaN / Infinity."""
    def refuse(c):
        raise ValueError(f"{c} is not JSON")
    return json.loads(body, parse_constant=refuse)


def test_files_reached_through_a_symlink_out_of_the_root_are_404(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.json").write_text('{"token": "s3cret"}')
    r = make_run(root / "r")
    (r / "leak.json").symlink_to(outside / "secret.json")  # an allowed suffix, outside the root
    (r / "report.html").symlink_to(outside / "secret.json")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    srv = make_server(root, port=0)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        for path in ("/files/r/leak.json", "/files/r/report.html", "/files/linkdir/secret.json"):
            code, body = get(srv, path)
            assert code == 404 and b"s3cret" not in body, path
        assert get(srv, "/files/r/config.json")[0] == 200
        code, lst = get_json(srv, "/api/list")
        assert lst["runs"][0]["report"] is None  # not linked from the page either
    finally:
        srv.shutdown()
        srv.server_close()


def test_api_reads_no_file_through_a_symlink_out_of_the_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    secret = outside / "passwd"
    secret.write_text('{"preset": "s3cret", "status": "s3cret", "phase": "s3cret"}\n'
                      '{"step": 1, "s3cret": 1}\nroot:x:0:0:s3cret:/root:/bin/bash\n')
    r = make_run(root / "r")
    (r / "metrics.jsonl").unlink()
    for name in ("summary.json", "metrics.jsonl", "measures.jsonl", "analysis.jsonl", "fig_x.png"):
        (r / name).symlink_to(secret)
    r2 = make_run(root / "r2")
    (r2 / "config.json").unlink()
    (r2 / "config.json").symlink_to(secret)
    s = root / "s"
    s.mkdir()
    for name in ("spec.toml", "results.csv"):
        (s / name).symlink_to(secret)
    srv = make_server(root, port=0)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        for path in ("/api/list", "/api/run?path=r", "/api/run?path=r2", "/api/sweep?path=s"):
            code, body = get(srv, path)
            assert b"s3cret" not in body and b"root:x" not in body, (path, body[:300])
        code, lst = get_json(srv, "/api/list")
        by = {x["path"]: x for x in lst["runs"]}
        assert code == 200 and by["r"]["step"] is None and by["r"]["status"] == "starting"
        assert "outside the root" in by["r"]["errors"][0]  # summary.json: listed, saying why
        assert "outside the root" in by["r2"]["errors"][0]
        code, run = get_json(srv, "/api/run?path=r")
        assert code == 200 and run["summary"] is None and run["figures"] == []
        assert all(run[k]["records"] == [] for k in ("metrics", "measures", "analysis"))
        assert sum("outside the root" in e for e in run["errors"]) == 4
        assert get_json(srv, "/api/run?path=r2")[0] == 404  # its config.json is not under the root
        code, sweep = get_json(srv, "/api/sweep?path=s")
        assert code == 200 and sweep["spec"] is None and sweep["rows"] == [] and sweep["errors"]
        assert sweep["figures"] == [] and sweep["trials"] is None
    finally:
        srv.shutdown()
        srv.server_close()


def test_nan_and_infinity_in_one_run_break_neither_the_list_nor_its_page(server, tmp_path):
    make_run(tmp_path / "good")
    nan = make_run(tmp_path / "nan", summary={"status": "completed"})
    (nan / "config.json").write_text('{"preset": "p", "task": {"name": "parity"}, '
                                     '"optim": {"lr": NaN}, "train": {"steps": Infinity}}')
    (nan / "summary.json").write_text('{"status": "completed", "final_val_acc": Infinity, '
                                      '"phases": {"cleanup_end": NaN, "memorization_end": 10}, '
                                      '"memorized_at": {"0.9": -Infinity}}')
    code, body = get(server, "/api/list")
    assert code == 200
    by = {r["path"]: r for r in strict_json(body)["runs"]}
    assert set(by) == {"good", "nan"} and by["nan"]["steps"] is None and by["nan"]["status"] == "completed"
    code, body = get(server, "/api/run?path=nan")
    assert code == 200
    run = strict_json(body)
    assert run["config"]["optim"]["lr"] == "NaN" and run["summary"]["final_val_acc"] == "Infinity"
    assert [m["step"] for m in run["markers"]] == [10]


def test_a_fifo_never_hangs_a_request(server, tmp_path):
    make_run(tmp_path / "good")
    a = make_run(tmp_path / "fifo-metrics")
    (a / "metrics.jsonl").unlink()
    os.mkfifo(a / "metrics.jsonl")
    os.mkfifo(a / "measures.jsonl")
    b = make_run(tmp_path / "fifo-config")
    (b / "config.json").unlink()
    os.mkfifo(b / "config.json")
    os.mkfifo(b / "summary.json")
    s = tmp_path / "fifo-sweep"
    s.mkdir()
    os.mkfifo(s / "spec.toml")
    os.mkfifo(s / "results.csv")
    os.mkfifo(tmp_path / "good" / "x.json")
    code, lst = get_json(server, "/api/list")  # urlopen's timeout (10 s) fails a hang
    assert code == 200
    by = {r["path"]: r for r in lst["runs"]}
    assert set(by) == {"good", "fifo-metrics", "fifo-config"} and by["good"]["step"] == 20
    assert by["fifo-metrics"]["step"] is None and by["fifo-config"]["errors"]
    code, run = get_json(server, "/api/run?path=fifo-metrics")
    assert code == 200 and run["metrics"]["records"] == []
    assert any("not a regular file" in e for e in run["errors"])
    assert get_json(server, "/api/run?path=fifo-config")[0] == 404
    code, sweep = get_json(server, "/api/sweep?path=fifo-sweep")
    assert code == 200 and sweep["spec"] is None and sweep["errors"]
    assert get(server, "/files/good/x.json")[0] == 404


def test_a_run_that_cannot_be_read_is_an_error_entry_and_the_others_list(server, tmp_path, monkeypatch):
    make_run(tmp_path / "good")
    deep = make_run(tmp_path / "deep")
    (deep / "config.json").write_text("[" * 100_000 + "]" * 100_000)  # RecursionError in json
    (deep / "metrics.jsonl").write_text("[" * 100_000 + "\n" + json.dumps({"step": 5}) + "\n")
    dirc = make_run(tmp_path / "dirconfig")
    (dirc / "config.json").unlink()
    (dirc / "config.json").mkdir()
    code, lst = get_json(server, "/api/list")
    assert code == 200
    by = {r["path"]: r for r in lst["runs"]}
    assert by["good"]["errors"] == [] and by["deep"]["errors"] and by["deep"]["step"] == 5
    code, run = get_json(server, "/api/run?path=deep")
    assert code == 200 and run["metrics"]["records"] == [{"step": 5}] and run["metrics"]["bad"] == 1
    real = scan.run_info

    def flaky(root, d, *a, **k):
        if d.name == "deep":
            raise RuntimeError("disk on fire")
        return real(root, d, *a, **k)

    monkeypatch.setattr(scan, "run_info", flaky)
    code, lst = get_json(server, "/api/list")
    by = {r["path"]: r for r in lst["runs"]}
    assert code == 200 and by["good"]["errors"] == []
    assert by["deep"]["status"] == "error" and "disk on fire" in by["deep"]["errors"][0]


def test_values_from_files_reach_the_page_with_the_types_it_expects(tmp_path):
    xss = "<img src=x onerror=alert(1)>"
    d = make_run(tmp_path / "r", summary={"status": "completed", "phase": {"x": xss}})
    (d / "config.json").write_text(json.dumps({"preset": [xss], "task": {"name": xss},
                                               "train": {"steps": xss}}))
    with open(d / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 30, "val_acc": xss}) + "\n" + json.dumps({"step": xss}) + "\n")
    info = scan.listing(tmp_path)["runs"][0]
    assert info["steps"] is None and info["step"] == 30 and info["val_acc"] is None
    assert isinstance(info["preset"], str) and isinstance(info["phase"], str)


def test_files_are_served_sandboxed_and_the_page_runs_only_its_own_script(server, tmp_path):
    d = make_run(tmp_path / "r")
    (d / "report.html").write_text("<script>fetch('/api/list')</script>")
    (d / "fig.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>')
    (d / "notes.toml").write_text("a = 1\n")
    for path in ("/files/r/report.html", "/files/r/fig.svg", "/files/r/notes.toml"):
        req = urllib.request.Request(server.url.rstrip("/") + path)
        with urllib.request.urlopen(req, timeout=10) as r:
            csp = r.headers["Content-Security-Policy"]
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        directives = [x.strip() for x in csp.split(";")]
        assert "sandbox" in directives and "allow-scripts" not in csp, (path, csp)
    with urllib.request.urlopen(server.url, timeout=10) as r:
        csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


def test_analysis_records_of_groklab_analyze_are_served_incrementally(server, tmp_path):
    d = make_run(tmp_path / "r")
    (d / "analysis.jsonl").write_text(json.dumps({"step": 100, "excluded_loss": 2.5, "key_freqs": [3]}) + "\n")
    code, run = get_json(server, "/api/run?path=r")
    assert run["analysis"]["records"] == [{"step": 100, "excluded_loss": 2.5}]
    code, again = get_json(server, f"/api/run?path=r&a={run['analysis']['token']}")
    assert again["analysis"]["records"] == [] and not again["analysis"]["reset"]


def test_export_command_lives_beside_its_code_not_in_the_dashboard(capsys):
    import argparse

    import groklab.cli
    from groklab.dash import cli as dash_cli
    from groklab.runs import cli as runs_cli
    for mod, names in ((dash_cli, {"dash"}), (runs_cli, {"export"})):
        sub = argparse.ArgumentParser().add_subparsers()
        mod.register(sub)
        assert set(sub.choices) == names, mod.__name__
    assert "groklab.runs.cli" in groklab.cli.PLUGINS
    with pytest.raises(SystemExit) as e:
        main(["export", "--help"])
    assert e.value.code == 0 and "--tensorboard" in capsys.readouterr().out


def test_the_default_run_records_live_measures_for_the_measures_panel():
    # without them the default run's measures existed only at its 12 log-spaced checkpoints
    import groklab
    assert groklab.resolve("default").train.measure_every == 100


# ---- the live forecast (forecast.jsonl, groklab.forecast.live) ----

FC = {"step": 300, "budget": 2000, "p": {"0.9": 0.98, "0.99": 0.95}, "at": {"0.9": 443, "0.99": 868},
      "low": {"0.9": 309, "0.99": 310}, "high": {"0.9": 560, "0.99": 1130},
      "reached": {"0.9": False, "0.99": False}, "seconds": 0.01}


def test_api_returns_the_last_forecast_line_or_null(server, tmp_path):
    d = make_run(tmp_path / "fc")
    ended = {**FC, "step": 320, "p": {"0.9": 0.0, "0.99": 0.0}, "at": {"0.9": None, "0.99": None},
             "low": {"0.9": None, "0.99": None}, "high": {"0.9": None, "0.99": None}}
    (d / "forecast.jsonl").write_text(json.dumps(ended) + "\n" + json.dumps(FC) + "\n"
                                      + '{"step": 340, "budget": 20')  # the writer is mid-line
    make_run(tmp_path / "none")
    code, run = get_json(server, "/api/run?path=fc")
    assert code == 200 and run["forecast"] == FC and run["errors"] == []
    code, again = get_json(server, f"/api/run?path=fc&m={run['metrics']['token']}")
    assert again["forecast"] == FC  # every answer has it, not only the first
    code, run = get_json(server, "/api/run?path=none")
    assert code == 200 and run["forecast"] is None and run["errors"] == []
    (d / "forecast.jsonl").write_text(json.dumps(ended) + "\n")  # p = 0: steps are null
    assert get_json(server, "/api/run?path=fc")[1]["forecast"] == ended


def test_a_malicious_or_malformed_forecast_line_is_neutralised(server, tmp_path):
    d = make_run(tmp_path / "evil")
    xss = "<script>alert(1)</script>"
    (d / "forecast.jsonl").write_text(
        json.dumps(FC) + "\n"
        '{"step": 400, "budget": "' + xss + '", "seconds": Infinity, "evil": "' + xss + '", '
        '"p": {"0.9": NaN, "0.99": 1.5, "' + xss + '": 0.5}, "at": {"0.9": "' + xss + '", "0.99": [443]}, '
        '"low": {"0.9": -Infinity, "0.99": -5}, "high": {"0.9": 1' + "0" * 400 + ', "0.99": true}, '
        '"reached": {"0.9": "no", "0.99": 0}, "' + xss + '": {"0.9": 1}}\n')
    code, body = get(server, "/api/run?path=evil")
    assert code == 200 and b"<script" not in body  # nor any other key or value of that line:
    fc = strict_json(body)["forecast"]
    none = {"0.9": None, "0.99": None}
    assert fc == {"step": 400, "budget": None, "seconds": None, "p": none, "at": none, "low": none,
                  "high": none, "reached": none}
    # not an object, no numeric step, nested too deep: the line before is the last forecast
    for bad in ("[1, 2]", '{"step": "300"}', '{"step": NaN}', "[" * 5000, "garbage"):
        (d / "forecast.jsonl").write_text(json.dumps(FC) + "\n" + bad + "\n")
        assert get_json(server, "/api/run?path=evil")[1]["forecast"] == FC, bad[:20]
    (d / "forecast.jsonl").write_text('{"step": 1' + "0" * 400 + "}\n")  # a step no float holds
    assert get_json(server, "/api/run?path=evil")[1]["forecast"] is None


def test_a_huge_forecast_file_is_read_from_its_tail_only(tmp_path, monkeypatch):
    from groklab.dash import files
    d = make_run(tmp_path / "big")
    p = d / "forecast.jsonl"
    with open(p, "wb") as fh:  # 1 GiB, sparse: reading it all would take the request down
        fh.truncate(1 << 30)
        fh.seek(1 << 30)
        fh.write(b"\n" + json.dumps(FC).encode() + b"\n")
    read = []
    real = files.open_regular

    def counted(root, path):
        fh = real(root, path)
        if path.name == "forecast.jsonl":
            orig = fh.read
            fh.read = lambda n=-1: read.append(len(b := orig(n))) or b
        return fh

    monkeypatch.setattr(files, "open_regular", counted)
    assert scan.run_detail(tmp_path, d)["forecast"] == FC and 0 < sum(read) <= 64 << 10
    p.write_bytes(b'{"step": 1, "x": "' + b"x" * (1 << 20) + b'"}\n')  # one line longer than the tail
    run = scan.run_detail(tmp_path, d)
    assert run["forecast"] is None and run["errors"] == []


def test_a_forecast_file_out_of_the_root_or_a_fifo_is_a_message(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "forecast.jsonl").write_text(json.dumps({**FC, "step": 77}) + "\n")
    a = make_run(root / "link")
    (a / "forecast.jsonl").symlink_to(outside / "forecast.jsonl")
    b = make_run(root / "fifo")
    os.mkfifo(b / "forecast.jsonl")
    for d, why in ((a, "outside the root"), (b, "not a regular file")):
        run = scan.run_detail(root, d)
        assert run["forecast"] is None and any("forecast.jsonl" in e and why in e for e in run["errors"]), run["errors"]


def bytes_read() -> int:
    """What this process has read through read() calls so far (Linux's rchar)."""
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("rchar:"))


def sparse(p: Path, size: int = 512 << 20) -> Path:
    """A file of ``size`` zero bytes and no newline that uses no disk."""
    with open(p, "wb") as fh:
        fh.truncate(size)
    return p


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="counts bytes read through /proc/self/io")
def test_huge_files_are_reported_as_too_large_not_read(tmp_path):
    s = tmp_path / "s"
    s.mkdir()
    sparse(s / "results.csv")
    sparse(s / "spec.toml")
    big = make_run(tmp_path / "big")
    for name in ("config.json", "summary.json", "metrics.jsonl"):
        sparse(big / name)
    ok = tmp_path / "ok"
    ok.mkdir()
    (ok / "results.csv").write_text("lr,phase\n0.1,grokking\n\n0.2,memorizing")  # blank line, no final newline
    before = bytes_read()
    lst = scan.listing(tmp_path)
    detail = scan.sweep_detail(tmp_path, s)
    assert bytes_read() - before < 1 << 20, "a reader read a huge file"
    sweeps = {x["path"]: x for x in lst["sweeps"]}
    assert sweeps["ok"]["trials"] == 2 and sweeps["ok"]["errors"] == []
    assert sweeps["s"]["trials"] is None and sweeps["s"]["errors"] == [
        "results.csv is not read: results.csv is 512 MB, more than the 32 MB the dashboard reads of it"]
    (run,) = lst["runs"]
    assert [e.split(":")[0] for e in run["errors"]] == ["config.json is not read", "summary.json is not read"]
    assert all("is 512 MB" in e for e in run["errors"]) and run["step"] is None
    assert detail["rows"] == [] and detail["errors"] == sweeps["s"]["errors"]


def test_files_streams_what_it_serves_and_refuses_a_file_over_its_cap(server, tmp_path):
    from groklab.dash import server as dash_server
    sparse(tmp_path / "fig_huge.png")
    body = os.urandom(3 << 20)  # several pieces of CHUNK
    (tmp_path / "fig_big.png").write_bytes(body)
    code, got = get(server, "/files/fig_huge.png")
    assert code == 403 and json.loads(got) == {
        "error": "fig_huge.png is 512 MB; /files/ serves files up to 64 MB (open it from disk)"}
    assert dash_server.MAX_FILE == 64 << 20 and dash_server.CHUNK < len(body)
    assert get(server, "/files/fig_big.png") == (200, body)



def test_200_connections_at_once_wait_in_the_listen_queue_and_are_all_answered(tmp_path):
    """Before serving, 200 clients connect at once: each handshake must complete (the stdlib's
    listen queue of 5 dropped the SYNs of all but 6, which then wait for a retransmission that
    never finds room while nobody accepts); then every one of them is answered."""
    for i in range(20):
        make_run(tmp_path / "sweep" / f"t{i:03d}")
    srv = make_server(tmp_path, port=0)
    socks, serving = [socket.socket() for _ in range(200)], None
    try:
        for s in socks:
            s.setblocking(False)
            s.connect_ex(srv.server_address[:2])
        pending, deadline = set(socks), time.monotonic() + 30  # a bound on "never", not a timing
        while pending and time.monotonic() < deadline:
            pending -= set(select.select([], list(pending), [], 0.5)[1])
        assert len(pending) == 0, f"{len(pending)} of 200 connections were dropped by the listen queue"
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for s in socks)
        serving = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        serving.start()
        for s in socks:
            s.setblocking(True)
            s.settimeout(60)
            s.sendall("GET /api/list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        answers = []
        for s in socks:
            with s.makefile("rb") as fh:
                answers.append((fh.readline().split()[1], len(json.loads(fh.read().split(b"\r\n\r\n", 1)[1])["runs"])))
        assert answers == [(b"200", 20)] * 200
    finally:
        for s in socks:
            s.close()
        if serving is not None:
            srv.shutdown()
        srv.server_close()


def test_listings_asked_together_share_one_reading_and_none_is_stale(server, tmp_path, monkeypatch):
    make_run(tmp_path / "r")
    calls, listed, gate = [], threading.Event(), threading.Event()
    real = scan.listing

    def held(root):
        calls.append(1)
        out = real(root)
        if len(calls) == 1:  # the first listing is done reading, and held
            listed.set()
            gate.wait(30)
        return out

    monkeypatch.setattr(scan, "listing", held)
    got: list = []
    first = threading.Thread(target=lambda: got.append(get_json(server, "/api/list")))
    first.start()
    listed.wait(30)
    make_run(tmp_path / "new")  # written while the first listing runs: the waiters must see it
    rest = [threading.Thread(target=lambda: got.append(get_json(server, "/api/list"))) for _ in range(199)]
    for t in rest:
        t.start()
    deadline = time.monotonic() + 30
    while server.listing.waiting < 199 and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.set()
    for t in (first, *rest):
        t.join(60)
    assert len(calls) == 2 and len(got) == 200 and all(code == 200 for code, _ in got)
    seen = sorted(len(lst["runs"]) for _, lst in got)
    assert seen == [1] + [2] * 199  # the first its own listing, the 199 one begun after they asked


def raw_status(srv, host_lines: bytes) -> int:
    """The status of ``GET /api/list`` sent with exactly ``host_lines`` as its Host header(s)."""
    with socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10) as s:
        s.sendall(b"GET /api/list HTTP/1.1\r\n" + host_lines + b"Connection: close\r\n\r\n")
        return int(s.makefile("rb").readline().split()[1])


def test_host_header_must_name_the_loopback_address_served(server):
    port = server.server_address[1]
    for lines in (b"Host: [::1].evil.com\r\n", b"Host: localhost:evil.com\r\n", b"Host:\r\n localhost\r\n",
                  b"Host: localhost \r\n", b"Host: localhost.\r\n", b"Host: 127.0.0.1:\r\n",
                  b"Host: 127.0.0.1:80:80\r\n", b"Host: 127.0.0.1.evil.com\r\n", b"Host: evil.com#127.0.0.1\r\n",
                  b"Host: [::1]\r\n",  # a loopback address, but not the one served
                  b"Host: 127.0.0.2\r\n", b"Host: \r\n", b"",
                  b"Host: localhost\r\nHost: evil.com\r\n"):
        assert raw_status(server, lines) == 403, lines
    for host in (f"127.0.0.1:{port}", "127.0.0.1", "localhost", f"LOCALHOST:{port}", "localhost:9000"):
        assert raw_status(server, f"Host: {host}\r\n".encode()) == 200, host


def test_empty_host_or_root_and_binding_beyond_loopback_are_refused(tmp_path, monkeypatch, capsys):
    from groklab.dash.server import DashServer
    served = []
    monkeypatch.setattr(DashServer, "serve_forever", lambda self, poll_interval=0.5: served.append(self))
    monkeypatch.chdir(tmp_path)
    for kw, says in (({"host": ""}, "--host '' is empty; allowed: a loopback address (127.0.0.1, ::1, localhost)"),
                     ({"root": ""}, "--root '' is empty; allowed: the folder that holds your runs"),
                     ({"root": " "}, "--root ' ' is empty"),
                     ({"host": "0.0.0.0"}, "--host '0.0.0.0' is not a loopback address"),
                     ({"host": "192.0.2.1"}, "add --allow-remote")):
        with pytest.raises(ConfigError, match=re.escape(says)):
            make_server(**{"root": str(tmp_path), "port": 0, **kw})
    for argv in (["--host", ""], ["--root", ""], ["--root", " "], ["--host", "0.0.0.0"], ["--host", "192.0.2.1"]):
        assert main(["dash", "--root", str(tmp_path), "--port", "0", *argv]) == 2, argv
        err = capsys.readouterr().err  # groklab.cli refuses empty values of every command itself
        assert f"{argv[0]} {argv[1]!r}" in err and err.count("\n") == 1, err
    assert served == []
    # with the flag, bound (not listening: no traffic beyond loopback) and said in the banner
    monkeypatch.setattr(DashServer, "server_activate", lambda self: None)
    assert main(["dash", "--root", str(tmp_path), "--port", "0", "--host", "0.0.0.0", "--allow-remote"]) == 0
    out = capsys.readouterr().out
    assert "listening on 0.0.0.0 (--allow-remote)" in out and served[0].host_names is None
    assert main(["dash", "--root", str(tmp_path), "--port", "0"]) == 0
    assert "allow-remote" not in capsys.readouterr().out and served[1].host_names == {"127.0.0.1", "localhost"}


def test_the_ipv6_loopback_is_served_by_its_own_name(tmp_path):
    try:
        srv = make_server(tmp_path, port=0, host="::1")
    except ConfigError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        port = srv.server_address[1]
        assert srv.url == f"http://[::1]:{port}/" and srv.host_names == {"[::1]", "localhost"}
        for host, code in ((f"[::1]:{port}", 200), ("localhost", 200), ("127.0.0.1", 403), ("[::1].evil.com", 403)):
            with socket.create_connection(("::1", port), timeout=10) as s:
                s.sendall(f"GET /api/list HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                assert int(s.makefile("rb").readline().split()[1]) == code, host
    finally:
        srv.shutdown()
        srv.server_close()
