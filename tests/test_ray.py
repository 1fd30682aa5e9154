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
