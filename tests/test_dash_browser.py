"""A real browser on the live page: headless Chromium opens ``groklab dash`` while a short run
trains, and the run's curve must gain points without a reload.

Chromium is driven through its DevTools protocol over a pipe (``--remote-debugging-pipe``:
JSON messages ending in NUL on file descriptors 3 and 4), so no driver is downloaded. The run
is paced by a sink that holds the training thread after a few evaluations until the page has
shown them, so the test checks "points appear, then more points appear" on one page load,
however loaded the machine is. The screenshot is kept in tests/artifacts/.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import groklab
from groklab.runs.rundir import atomic_write_bytes, read_jsonl

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = os.environ.get("GROKLAB_CHROMIUM") or next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
if CHROMIUM is None:
    if os.environ.get("CI"):
        pytest.fail("CI needs Debian's chromium for the browser test (.ci/run installs it)",
                    pytrace=False)
    pytest.skip("no chromium on PATH: apt-get install chromium (or set GROKLAB_CHROMIUM)",
                allow_module_level=True)

WAIT = 120.0  # seconds; generous because CI shares its cores


class DevTools:
    """The smallest DevTools-protocol client: send a command, wait for its answer."""

    def __init__(self, exe: str, profile: Path):
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()
        # above 10, so that moving them to 3 and 4 in the child cannot overwrite one another
        hi_r, hi_w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_r, from_w))
        os.close(to_r)
        os.close(from_w)

        def fds():
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio", "--window-size=1400,1100",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, close_fds=False)
        os.close(hi_r)
        os.close(hi_w)
        self._id, self._answers, self.events = 0, {}, queue.Queue()
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_r, 65536)
            except OSError:
                return
            if not chunk:  # chromium exited
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cv:
                        self._answers[msg["id"]] = msg
                        self._cv.notify_all()
                else:
                    self.events.put(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        i = self._id
        msg = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        with self._cv:
            if not self._cv.wait_for(lambda: i in self._answers, timeout=60):
                raise TimeoutError(f"chromium did not answer {method}")
            ans = self._answers.pop(i)
        if "error" in ans:
            raise RuntimeError(f"{method}: {ans['error']}")
        return ans.get("result", {})

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        os.close(self._to_w)
        os.close(self._from_r)


class Gate:
    """A training sink that holds the loop at its ``hold_at``-th evaluation until released."""

    def __init__(self, hold_at: int):
        self.n, self.hold_at = 0, hold_at
        self.held, self.release = threading.Event(), threading.Event()

    def log(self, step: int, record: dict) -> None:
        self.n += 1
        if self.n == self.hold_at:
            self.held.set()
            self.release.wait(timeout=WAIT)


def start_dash(root: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "groklab.cli", "dash", "--root", str(root), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        if "http://" in line:
            return proc, line.split()[2]
    proc.kill()
    raise AssertionError(f"groklab dash did not start (exit {proc.poll()})")


def wait_for(fn, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.3)
    raise AssertionError(f"the page never showed {what}")


def finished_run_and_sweep(root: Path) -> None:
    """A finished run to overlay and a sweep with a phase diagram, written by hand."""
    import matplotlib.pyplot as plt

    from groklab.report.plots import save_figure
    from groklab.runs.rundir import atomic_write_text, write_json
    d = root / "sweep-lr" / "trial_0"
    d.mkdir(parents=True)
    write_json(d / "config.json", {"preset": "prieto", "task": {"name": "modular", "op": "x+y", "p": 23},
                                   "model": {"arch": "mlp"}, "train": {"steps": 100}})
    atomic_write_text(d / "metrics.jsonl", "".join(json.dumps(
        {"step": s, "train_acc": min(1.0, s / 50), "val_acc": s / 100, "train_loss": 1 / (s + 1),
         "val_loss": 2 / (s + 1)}) + "\n" for s in range(0, 101, 10)))
    write_json(d / "summary.json", {"status": "completed", "phase": "grokking"})
    atomic_write_text(root / "sweep-lr" / "results.csv", "optim.lr,phase\n0.01,grokking\n")
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.imshow([[0, 1], [2, 3]])
    save_figure(fig, root / "sweep-lr" / "fig_phase_diagram.png")


def test_page_shows_a_training_run_and_its_curve_grows(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    finished_run_and_sweep(root)
    dash, url = start_dash(root)
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    cfg = groklab.resolve("prieto", overrides=["task.p=23", "model.hidden=[32, 32]", "train.steps=200",
                                               "train.eval_every=10", "train.measure_every=50"])
    gate, errors = Gate(hold_at=4), []

    def train():
        try:
            groklab.run(cfg, out=root / "live-run", sinks=[gate])
        except BaseException as e:  # re-raised in the test's thread
            errors.append(e)

    trainer = threading.Thread(target=train)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP: extra threads only fight the browser for the cores
    try:
        trainer.start()
        assert gate.held.wait(WAIT), f"training did not reach its 4th evaluation: {errors}"
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sess = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.send("Runtime.enable", session=sess)
        browser.send("Page.enable", session=sess)
        browser.send("Page.navigate", {"url": url}, session=sess)

        def js(expr: str):
            r = browser.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=sess)
            return r.get("result", {}).get("value")

        points = ('(() => { const p = document.querySelector(\'#acc path[data-run="live-run"][data-key="val_acc"]\');'
                  ' return p ? +p.dataset.points : 0; })()')
        wait_for(lambda: js('!!document.querySelector(\'#runs li[data-path="live-run"]\')'), "the run in the list")
        held = wait_for(lambda: js(points), "the run's first points")
        assert held == len(read_jsonl(root / "live-run" / "metrics.jsonl"))  # paused: the page has them all
        assert js('document.querySelector(\'#runs li[data-path="live-run"]\').dataset.status') == "running"
        gate.release.set()
        trainer.join(timeout=WAIT)
        assert not trainer.is_alive() and not errors, errors
        final = len(read_jsonl(root / "live-run" / "metrics.jsonl"))
        assert final > held
        wait_for(lambda: js(points) == final, f"all {final} points without a reload")
        wait_for(lambda: js('!!document.querySelector(\'#runhead a[href*="report.html"]\')'), "the report link")
        assert js("document.querySelectorAll('#measures svg[data-measure]').length") > 0
        assert js("+document.querySelector('#measures svg[data-metric=\"weight_norm\"]').dataset.points") == final
        assert js("document.getElementById('banner').hidden") is True
        shot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"}, session=sess)["data"])
        ARTIFACTS.mkdir(exist_ok=True)
        atomic_write_bytes(ARTIFACTS / "dash_browser.png", shot)
        print(f"\nscreenshot: {ARTIFACTS / 'dash_browser.png'}  ({held} points while held, {final} at the end)")
        # overlay the finished run, then open the sweep and its phase diagram
        other = "sweep-lr/trial_0"
        js(f'document.querySelector(\'#runs li[data-path="{other}"] input\').click()')
        wait_for(lambda: js(f'+(document.querySelector(\'#acc path[data-run="{other}"][data-key="val_acc"]\')'
                            f' || {{dataset: {{points: 0}}}}).dataset.points') == 11, "the overlaid run")
        assert js(points) == final and "with=" in js("location.hash")
        js('document.querySelector(\'#sweeps li[data-path="sweep-lr"] .name\').click()')
        wait_for(lambda: js("[...document.querySelectorAll('#sweepfigs img')].some(i => i.complete && i.naturalWidth > 0)"),
                 "the sweep's phase diagram")
        assert js("document.querySelectorAll('#sweeptable tr').length") == 2
        shot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"}, session=sess)["data"])
        atomic_write_bytes(ARTIFACTS / "dash_sweep.png", shot)
        thrown = []
        while not browser.events.empty():
            ev = browser.events.get()
            if ev.get("method") == "Runtime.exceptionThrown":
                thrown.append(ev["params"]["exceptionDetails"].get("text"))
        assert not thrown, f"the page's script threw: {thrown}"
    finally:
        gate.release.set()
        trainer.join(timeout=WAIT)
        torch.set_num_threads(threads)
        browser.close()
        dash.terminate()
        dash.wait(timeout=20)
        dash.stdout.close()
