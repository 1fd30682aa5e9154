"""The Ray executor against a real cluster: ``ray start --head`` on 127.0.0.1, reached by address."""
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# before Ray is imported: it reads this at import time; "0" keeps every connection on 127.0.0.1
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
pytest.importorskip("ray")

from groklab.sweep import run_sweep  # noqa: E402
from groklab.sweep.spec import parse_spec  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    port = free_port()
    env = dict(os.environ)
    start = subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                            "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                           env=env, capture_output=True, text=True, timeout=180)
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        plain = re.sub(r"\x1b\[[0-9;]*m", "", start.stdout)
        assert "Local node IP: 127.0.0.1" in plain, plain[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_grid_runs_on_a_ray_cluster(cluster, tmp_path):
    spec = parse_spec({"preset": "prieto", "name": "ray", "ensemble": False,
                       "base": {"task": {"p": 11, "frac": 0.5}, "model": {"hidden": [16]},
                                "train": {"steps": 20, "eval_every": 10, "n_checkpoints": 1}},
                       "axes": {"optim.lr": [1e-3, 1e-2], "optim.wd": [0.0, 1.0]}})
    rows = run_sweep(spec, tmp_path / "s", executor="ray", address=cluster)
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
    for r in rows:
        d = tmp_path / "s" / "points" / r["id"]
        assert (d / "summary.json").is_file() and (d / "report.html").is_file()
    assert (tmp_path / "s" / "fig_phase.png").is_file()
    assert not (tmp_path / "s" / ".sweep_token").exists()


def test_workers_that_cannot_see_the_sweep_directory_send_the_files_back(cluster, tmp_path):
    """The branch for workers on other machines: no token, so each task runs in a temporary
    directory and ships its files; the driver writes them into the sweep directory. A worker on
    this machine is made "elsewhere" by handing it a token that is not in the token file."""
    from groklab.runs.checkpoint import list_checkpoints
    from groklab.runs.rundir import read_json, read_jsonl
    from groklab.sweep.executors import RayExecutor

    spec = parse_spec({"preset": "prieto", "name": "far", "ensemble": True,
                       "base": {"task": {"p": 11, "frac": 0.5}, "model": {"hidden": [16]},
                                "train": {"steps": 20, "eval_every": 10, "n_checkpoints": 1}},
                       "axes": {"optim.lr": [1e-3, 1e-2], "optim.wd": [0.0, 1.0, 2.0]}})
    ex = RayExecutor(cluster, tmp_path / "s", workers=2)
    remote = ex._remote

    class Elsewhere:  # hands every task a token that the token file does not hold
        def remote(self, job, root, token):
            return remote.remote(job, root, "not-" + token)
    ex._remote = Elsewhere()
    rows = run_sweep(spec, tmp_path / "s", executor=ex)
    assert len(rows) == 6 and all(r["status"] == "completed" for r in rows)
    assert ex.files_received >= 6 * 5  # config, metrics, summary, checkpoint, report per point
    meta = read_json(tmp_path / "s" / "sweep.json")
    assert [g["trained"] for g in meta["ensemble"]["groups"]] == ["together", "together"]  # ensembles too
    for r in rows:
        d = tmp_path / "s" / "points" / r["id"]
        assert read_json(d / "summary.json")["steps_done"] == 20 and (d / "report.html").is_file()
        assert [m["step"] for m in read_jsonl(d / "metrics.jsonl")] == [0, 10, 20]
        assert list_checkpoints(d)[-1] == 20
    assert not (tmp_path / "s" / ".sweep_token").exists()


# --- an address that no cluster answers: one line, at once, nothing written ---------------------

SPEC = 'name = "s"\npreset = "prieto"\n[base]\ntask.p = 11\ntrain.steps = 2\n[axes]\n"optim.lr" = [1e-3]\n'


def _sweep_at(tmp_path, capsys, address):
    import time

    from groklab.cli import main
    (tmp_path / "s.toml").write_text(SPEC)
    t0 = time.monotonic()
    code = main(["sweep", str(tmp_path / "s.toml"), "--executor", "ray", "--address", address,
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("groklab: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
    return err, time.monotonic() - t0


def test_an_address_where_nothing_listens_is_one_line_at_once(tmp_path, capsys):
    """Ray's ray.init retries such an address for minutes; the TCP check answers first."""
    port = free_port()
    err, seconds = _sweep_at(tmp_path, capsys, f"127.0.0.1:{port}")
    assert f"--address '127.0.0.1:{port}': no Ray cluster answers at 127.0.0.1:{port} (Connection refused)" in err
    assert seconds < 10


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", "http://h:1", "h:1:2", "ho st:1"])
def test_a_malformed_address_is_one_line(tmp_path, capsys, address):
    err, _ = _sweep_at(tmp_path, capsys, address)
    assert f"--address {address!r}: expected HOST:PORT (e.g. 127.0.0.1:6379), ray://HOST:PORT or auto" in err


@pytest.mark.slow
def test_an_address_that_answers_but_is_no_cluster_gives_up_within_a_minute(tmp_path, capsys):
    """A listening socket that never speaks Ray's protocol: one try of ray.init (about 40 s),
    and Ray's C++ retry warnings are folded into the one line."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        address = f"127.0.0.1:{srv.getsockname()[1]}"
        err, seconds = _sweep_at(tmp_path, capsys, address)
    assert f"--address '{address}': cannot reach a Ray cluster" in err and seconds < 60
