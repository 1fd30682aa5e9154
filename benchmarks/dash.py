"""What following a live run costs the dashboard server, against re-reading the file each time.

A fake root holds ``--runs`` run directories, one of them with ``--lines`` metric records (a long
run: 10^5 steps at eval_every 10 is 10^4 lines). Timed over HTTP on 127.0.0.1, in this process:
  list        GET /api/list (every run's config, summary and the tail of metrics.jsonl)
  run full    GET /api/run for the long run, no token (a page opening it)
  run poll    GET /api/run with the previous token after 10 more lines (what the page does each second)
  reference   groklab.runs.rundir.read_jsonl of the whole file: re-reading everything per poll

With ``--concurrent N`` it measures load instead: ``groklab dash`` runs as its own process (so
the clients do not share its interpreter lock), N clients connect at once and each asks
``/api/list`` (asyncio, one connection each, all on 127.0.0.1); it prints how many were
answered within ``--deadline`` seconds, the median and slowest answer, and how often the
kernel's listen queue overflowed meanwhile (``ListenOverflows`` in /proc/net/netstat, counted
machine-wide). ``--huge-csv`` adds a sweep whose results.csv is a 512 MB sparse file without a
newline (no disk used).

    python benchmarks/dash.py [--runs 200] [--lines 10000] [--repeat 20]
    python benchmarks/dash.py --concurrent 200 [--runs 200] [--huge-csv] [--deadline 90]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
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
        (d / "config.json").write_text(json.dumps({"preset": "nanda",
                                                   "task": {"name": "modular", "op": "x+y", "p": 113},
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


def listen_overflows() -> int | None:
    """The kernel's count of connections dropped because a listen queue was full (Linux)."""
    try:
        head, vals = [ln.split() for ln in open("/proc/net/netstat") if ln.startswith("TcpExt:")][:2]
        return int(vals[head.index("ListenOverflows")])
    except (OSError, ValueError, IndexError):
        return None


async def ask(port: int, path: str, deadline: float) -> float | None:
    """Seconds until the whole answer to ``GET path`` arrived (status 200), or None."""
    t = time.perf_counter()
    try:
        async with asyncio.timeout(deadline):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            body = await reader.read()
            writer.close()
    except (TimeoutError, OSError):
        return None
    return time.perf_counter() - t if body.startswith(b"HTTP/1.0 200") or body.startswith(b"HTTP/1.1 200") else None


def load(root: Path, n: int, deadline: float) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "groklab.cli", "dash", "--root", str(root), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline().split()[2].rstrip("/").rsplit(":", 1)[1])
        asyncio.run(ask(port, "/api/list", deadline))  # warm: imports, page cache
        before = listen_overflows()

        async def burst():
            return await asyncio.gather(*(ask(port, "/api/list", deadline) for _ in range(n)))

        t = time.perf_counter()
        got = asyncio.run(burst())
        wall = time.perf_counter() - t
        after = listen_overflows()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ok = sorted(x for x in got if x is not None)
    print(f"{n} concurrent /api/list, {len(list(root.rglob('config.json')))} runs: {len(ok)} answered "
          f"within {deadline:g} s; median {statistics.median(ok) if ok else float('nan'):.2f} s, "
          f"slowest {ok[-1] if ok else float('nan'):.2f} s, all done in {wall:.2f} s")
    if before is not None and after is not None:
        print(f"  listen queue overflows meanwhile (machine-wide): {after - before}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--lines", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=0, help="clients at once (0: the latency benchmark)")
    ap.add_argument("--deadline", type=float, default=90.0, help="seconds a client waits (with --concurrent)")
    ap.add_argument("--huge-csv", action="store_true", help="a sweep with a 512 MB newline-free results.csv")
    a = ap.parse_args()
    if a.concurrent:
        with tempfile.TemporaryDirectory() as tmp:
            make_root(Path(tmp), a.runs, a.lines)
            if a.huge_csv:
                with open(Path(tmp) / "sweep/results.csv", "wb") as fh:
                    fh.truncate(512 << 20)
            load(Path(tmp), a.concurrent, a.deadline)
        return
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
