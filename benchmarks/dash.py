"""What following a live run costs the dashboard server, against re-reading the file each time.

A fake root holds ``--runs`` run directories, one of them with ``--lines`` metric records (a long
run: 10^5 steps at eval_every 10 is 10^4 lines). Timed over HTTP on 127.0.0.1, in this process:
  list        GET /api/list (every run's config, summary and the tail of metrics.jsonl)
  run full    GET /api/run for the long run, no token (a page opening it)
  run poll    GET /api/run with the previous token after 10 more lines (what the page does each second)
  reference   groklab.runs.rundir.read_jsonl of the whole file: re-reading everything per poll

    python benchmarks/dash.py [--runs 200] [--lines 10000] [--repeat 20]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from groklab.dash.server import make_server
from groklab.runs.rundir import read_jsonl


def record(s: int) -> str:
    return json.dumps({"step": s, "train_loss": 1.0 / (s + 1), "train_acc": 0.5, "val_loss": 2.0,
                       "val_acc": 0.25, "lr": 1e-3, "weight_norm": 30.0, "time": s / 100}) + "\n"


def make_root(root: Path, runs: int, lines: int) -> Path:
    for i in range(runs):
        d = root / f"sweep/trial_{i:04d}"
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"preset": "nanda", "task": {"name": "modular", "op": "x+y", "p": 113},
                                                   "model": {"arch": "transformer"}, "train": {"steps": 10 * lines}}))
        n = lines if i == 0 else 50
        (d / "metrics.jsonl").write_text("".join(record(10 * s) for s in range(n)))
    return root / "sweep/trial_0000"


def best(fn, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--lines", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        long_run = make_root(Path(tmp), a.runs, a.lines)
        srv = make_server(tmp, port=0)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        get = lambda p: json.loads(urllib.request.urlopen(srv.url.rstrip("/") + p, timeout=30).read())  # noqa: E731
        t_list = best(lambda: get("/api/list"), a.repeat)
        t_full = best(lambda: get("/api/run?path=sweep/trial_0000"), a.repeat)
        tok = get("/api/run?path=sweep/trial_0000")["metrics"]["token"]
        step = 10 * a.lines

        def poll():
            nonlocal tok, step
            with open(long_run / "metrics.jsonl", "a") as fh:
                fh.write("".join(record(step + 10 * k) for k in range(10)))
            step += 100
            got = get(f"/api/run?path=sweep/trial_0000&m={tok}")["metrics"]
            assert len(got["records"]) == 10
            tok = got["token"]

        t_poll = best(poll, a.repeat)
        t_ref = best(lambda: read_jsonl(long_run / "metrics.jsonl"), a.repeat)
        srv.shutdown()
        srv.server_close()
    print(f"runs={a.runs} lines={a.lines} (best of {a.repeat})")
    print(f"  /api/list            {1e3 * t_list:8.2f} ms")
    print(f"  /api/run  full       {1e3 * t_full:8.2f} ms")
    print(f"  /api/run  poll (+10) {1e3 * t_poll:8.2f} ms")
    print(f"  reference read_jsonl {1e3 * t_ref:8.2f} ms   poll / reference = {t_poll / t_ref:.3f}")


if __name__ == "__main__":
    main()
