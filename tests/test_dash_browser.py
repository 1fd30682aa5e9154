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
from collections.abc import Callable
from pathlib import Path
from typing import Any

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

    def open_page(self, url: str) -> tuple[str, Callable[[str], Any]]:
        """A new tab on ``url``: (its session id, ``js(expr)`` evaluating an expression there)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sess = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Runtime.enable", session=sess)
        self.send("Page.enable", session=sess)
        self.send("Page.navigate", {"url": url}, session=sess)

        def js(expr: str):
            r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=sess)
            return r.get("result", {}).get("value")
        return sess, js

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


def shut(browser: DevTools, dash: subprocess.Popen) -> None:
    """Close the browser and stop the dashboard server."""
    browser.close()
    dash.terminate()
    dash.wait(timeout=20)
    dash.stdout.close()


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


def chart_points(selector: str, series: str) -> str:
    """A JS expression: how many points the chart at ``selector`` draws for "run|key"."""
    return (f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            f" return el && el.dataset.points ? (JSON.parse(el.dataset.points)[{json.dumps(series)}] || 0) : 0; }})()")


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



def assert_no_script_errors(browser) -> None:
    """No exception was thrown by the page's script (Runtime.exceptionThrown events)."""
    thrown = []
    while not browser.events.empty():
        ev = browser.events.get()
        if ev.get("method") == "Runtime.exceptionThrown":
            thrown.append(ev["params"]["exceptionDetails"].get("text"))
    assert not thrown, f"the page's script threw: {thrown}"

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
        sess, js = browser.open_page(url)

        points = chart_points("#acc", "live-run|val_acc")
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
        assert js("document.querySelectorAll('#measures div[data-measure]').length") > 0
        assert js(chart_points('#measures div[data-metric="weight_norm"]', "live-run|weight_norm")) == final
        assert js("document.getElementById('banner').hidden") is True
        shot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"}, session=sess)["data"])
        ARTIFACTS.mkdir(exist_ok=True)
        atomic_write_bytes(ARTIFACTS / "dash_browser.png", shot)
        print(f"\nscreenshot: {ARTIFACTS / 'dash_browser.png'}  ({held} points while held, {final} at the end)")
        # overlay the finished run, then open the sweep and its phase diagram
        other = "sweep-lr/trial_0"
        js(f'document.querySelector(\'#runs li[data-path="{other}"] input\').click()')
        wait_for(lambda: js(chart_points("#acc", f"{other}|val_acc")) == 11, "the overlaid run")
        assert js(points) == final and "with=" in js("location.hash")
        js('document.querySelector(\'#sweeps li[data-path="sweep-lr"] .name\').click()')
        wait_for(lambda: js("[...document.querySelectorAll('#sweepfigs img')]"
                            ".some(i => i.complete && i.naturalWidth > 0)"),
                 "the sweep's phase diagram")
        assert js("document.querySelectorAll('#sweeptable tr').length") == 2
        shot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"}, session=sess)["data"])
        atomic_write_bytes(ARTIFACTS / "dash_sweep.png", shot)
        assert_no_script_errors(browser)
    finally:
        gate.release.set()
        trainer.join(timeout=WAIT)
        torch.set_num_threads(threads)
        shut(browser, dash)


XSS = "<img src=x onerror=window.__xss=1>"  # also a valid directory name: no slash in it
# The default run's events (README): train >= 0.9 at 130, the phase boundaries close behind it.
MARKS = {"train": 130, "memorization_end": 140, "val_loss_peak": 150, "circuit_formation_end": 1900,
         "weight_decay_peak": 2000, "cleanup_end": 2100, "val": 2310}


def untrusted_dirs(root: Path) -> Path:
    """A finished run whose every file-borne value is markup, with the default run's close phase
    boundaries, analysis.jsonl, a fig_progress figure and a report.html that tries to run script;
    a live run without summary; a sweep whose table and spec are markup."""
    import matplotlib.pyplot as plt

    from groklab.report.plots import save_figure
    from groklab.runs.rundir import atomic_write_text, write_json
    d = root / XSS
    d.mkdir()
    write_json(d / "config.json", {"preset": XSS, "task": {"name": "modular", "op": XSS, "p": 97},
                                   "model": {"arch": XSS}, "train": {"steps": XSS}})
    lines = [{"step": s, "train_acc": min(1.0, s / 140), "val_acc": min(1.0, max(0.0, (s - 1800) / 600)),
              "train_loss": 1 / (s + 1), "val_loss": 2 / (s + 1)} for s in range(0, 2761, 10)]
    atomic_write_text(d / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in lines)
                      + json.dumps({"step": XSS, "val_acc": XSS}) + "\n")
    phases = {k: v for k, v in MARKS.items() if k not in ("train", "val")}
    write_json(d / "summary.json", {"status": "completed", "phase": XSS, "message": XSS, "phase_threshold": 0.9,
                                    "memorized_at": {"0.9": MARKS["train"]}, "generalized_at": {"0.9": MARKS["val"]},
                                    "phases": {**phases, "rule": XSS}})
    atomic_write_text(d / "analysis.jsonl", "".join(json.dumps({"step": s, "excluded_loss": 4.0 / (i + 1)}) + "\n"
                                                    for i, s in enumerate((100, 1000, 2760))))
    atomic_write_text(d / "report.html", "<!doctype html><title>report</title><script>window.__xss = 1</script>")
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    save_figure(fig, d / "fig_progress_excluded_loss.png")
    live = root / "live"
    live.mkdir()
    write_json(live / "config.json", {"preset": "prieto", "task": {"name": "parity"}, "train": {"steps": 100}})
    atomic_write_text(live / "metrics.jsonl", "".join(json.dumps({"step": s, "train_acc": 0.5, "val_acc": 0.5})
                                                      + "\n" for s in range(0, 50, 10)))
    sw = root / "sweep-x"
    sw.mkdir()
    atomic_write_text(sw / "results.csv", f"id,{XSS}\n0,{XSS}\n")
    atomic_write_text(sw / "spec.toml", f'# {XSS}\n')
    return d


def test_file_values_render_as_text_labels_do_not_overlap_and_the_side_bar_keeps_up(tmp_path):
    from urllib.parse import quote

    from groklab.runs.rundir import write_json
    root = tmp_path / "runs"
    root.mkdir()
    untrusted_dirs(root)
    dash, url = start_dash(root)
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    thrown, paused = [], []

    def drain():
        while not browser.events.empty():
            ev = browser.events.get()
            if ev.get("method") == "Runtime.exceptionThrown":
                thrown.append(ev["params"]["exceptionDetails"].get("text"))
            elif ev.get("method") == "Fetch.requestPaused":
                paused.append(ev["params"]["requestId"])

    try:
        sess, js = browser.open_page(url + "#run=" + quote(XSS))

        # 1. every value from the files is text: none became an element, no script ran
        wait_for(lambda: js("(document.querySelector('#runhead .facts') || {}).textContent || ''").count(XSS) >= 2,
                 "the run's preset and phase as text")
        time.sleep(1.0)  # an injected <img src=x> would have failed to load and run its onerror by now
        assert js("window.__xss") is None
        assert js("document.querySelectorAll('img[src=\"x\"], img[onerror]').length") == 0
        assert XSS in js("document.getElementById('runs').textContent")  # path, preset, task, phase
        assert js("document.getElementById('config').textContent").count(XSS) >= 3
        wait_for(lambda: js(chart_points("#acc", f"{XSS}|val_acc")) == 277, "the run's curve")

        # 2. the phase labels of close boundaries do not overlap, and stay inside the chart
        boxes = js("""[...document.querySelectorAll('#acc .mark')].map(e => {
            const r = e.getBoundingClientRect(), c = document.getElementById('acc').getBoundingClientRect();
            return {text: e.textContent, l: r.left, r: r.right, t: r.top, b: r.bottom,
                    inside: r.left >= c.left && r.right <= c.right}; })""")
        assert len(boxes) == len(MARKS), boxes
        assert all(b["inside"] for b in boxes), boxes
        overlaps = [(a["text"], b["text"]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
                    if a["l"] < b["r"] and b["l"] < a["r"] and a["t"] < b["b"] and b["t"] < a["b"]]
        assert not overlaps, overlaps

        # 3. groklab analyze's measures are charted; no "no progress measures" beside its figure
        assert js(chart_points('#measures div[data-measure="excluded_loss"]', f"{XSS}|analysis:excluded_loss")) == 3
        assert "no progress measures" not in js("document.getElementById('measures').textContent")
        wait_for(lambda: js("[...document.querySelectorAll('#figs img')].some(i => i.complete && i.naturalWidth > 0)"),
                 "the analysis figure")

        shot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"}, session=sess)["data"])
        ARTIFACTS.mkdir(exist_ok=True)
        atomic_write_bytes(ARTIFACTS / "dash_labels.png", shot)

        # 4. hover shows values; dragging zooms the step axis
        over = js("(() => { const r = document.querySelector('#acc .u-over').getBoundingClientRect();"
                  " return [r.left, r.top, r.width, r.height]; })()")
        x, y, w, hh = over
        mouse = lambda kind, px, **k: browser.send("Input.dispatchMouseEvent", {  # noqa: E731
            "type": kind, "x": px, "y": y + hh / 2, "button": "left", **k}, session=sess)
        mouse("mouseMoved", x + w * 0.9, button="none")
        wait_for(lambda: js("[...document.querySelectorAll('#acc .u-legend .u-value')].map(e => e.textContent)")[1]
                 not in ("–", "--", ""), "a hover value in the legend")
        xmax = js("document.getElementById('acc')._u.scales.x.max")
        mouse("mousePressed", x + w * 0.2, clickCount=1)
        mouse("mouseMoved", x + w * 0.5, buttons=1)
        mouse("mouseReleased", x + w * 0.5, clickCount=1)
        wait_for(lambda: js("document.getElementById('acc')._u.scales.x.max") < xmax * 0.5, "a zoomed step axis")

        # 5. the side bar says "completed" as soon as the header does, even with the list stale
        browser.send("Fetch.enable", {"patterns": [{"urlPattern": "*/api/list*"}]}, session=sess)
        js("location.hash = '#run=live'")
        wait_for(lambda: js("(document.querySelector('#runhead .badge') || {}).textContent") == "running",
                 "the live run")
        write_json(root / "live" / "summary.json", {"status": "completed", "phase": "confusion"})
        wait_for(lambda: js("document.querySelector('#runhead .badge').textContent") == "completed", "the run's end")
        assert js("document.querySelector('#runs li[data-path=\"live\"] .badge').textContent") == "completed"
        drain()
        browser.send("Fetch.disable", session=sess)
        for rid in paused:
            try:
                browser.send("Fetch.continueRequest", {"requestId": rid}, session=sess)
            except RuntimeError:
                pass  # already continued by Fetch.disable

        # 6. the sweep's table and spec are text
        js("document.querySelector('#sweeps li[data-path=\"sweep-x\"] .name').click()")
        wait_for(lambda: js("document.querySelectorAll('#sweeptable tr').length") == 2, "the sweep table")
        assert js("document.getElementById('sweeptable').textContent").count(XSS) == 2
        assert XSS in js("document.getElementById('spec').textContent")
        assert js("document.querySelectorAll('img[src=\"x\"]').length") == 0 and js("window.__xss") is None
        drain()
        assert not thrown, f"the page's script threw: {thrown}"

        # 7. a report.html from the root runs no script (sandboxed by the server's CSP)
        browser.send("Page.navigate", {"url": url + "files/" + quote(XSS) + "/report.html"}, session=sess)
        wait_for(lambda: js("document.readyState === 'complete' && document.title === 'report'"), "the report")
        assert js("window.__xss") is None
    finally:
        shut(browser, dash)


def test_the_accuracy_chart_shows_the_runs_forecast_and_then_that_it_was_reached(tmp_path):
    """forecast.jsonl (groklab.forecast.live) on the accuracy chart: a dashed line at the
    predicted step of val >= 0.9 with its 80 % interval shaded and a line of text under the chart;
    once a new line says 0.9 was reached, the text says so and the line goes."""
    from groklab.runs.rundir import atomic_write_text, write_json
    root = tmp_path / "runs"
    d = root / "fc"
    d.mkdir(parents=True)
    write_json(d / "config.json", {"preset": "prieto", "task": {"name": "parity"}, "train": {"steps": 2000}})
    atomic_write_text(d / "metrics.jsonl", "".join(json.dumps({"step": s, "train_acc": min(1.0, s / 100),
                                                               "val_acc": 0.3}) + "\n" for s in range(0, 301, 10)))
    fc = {"step": 300, "budget": 2000, "p": {"0.9": 0.98, "0.99": 0.95}, "at": {"0.9": 443, "0.99": 868},
          "low": {"0.9": 309, "0.99": 310}, "high": {"0.9": 560, "0.99": 1130},
          "reached": {"0.9": False, "0.99": False}, "seconds": 0.01}
    atomic_write_text(d / "forecast.jsonl", json.dumps(fc) + "\n")
    dash, url = start_dash(root)
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    try:
        sess, js = browser.open_page(url + "#run=fc")

        text = "document.getElementById('forecast').textContent"
        want = "forecast: val ≥ 0.9 ≈ step 443 (80 %: 309–560), P = 0.98 (at step 300)"
        wait_for(lambda: js(text) == want, f"the forecast text {want!r}")
        assert js("document.getElementById('forecast').hidden") is False
        wait_for(lambda: js(chart_points("#acc", "fc|val_acc")) == 31, "the run's curve")
        forecast_marks = js("[...document.querySelectorAll('#acc .mark.forecast')].map(e => e.textContent)")
        assert forecast_marks == ["forecast ≥ 0.9 443"]
        assert js("document.getElementById('acc')._u.scales.x.max") >= 560  # the step axis reaches the interval
        # the band is drawn: a pixel between low and high (away from the dashed line) is shaded
        shaded = js("""(() => { const u = document.getElementById('acc')._u, c = u.ctx;
            const x = Math.round(u.valToPos(520, 'x', true)), y = Math.round(u.bbox.top + u.bbox.height * 0.3);
            return [...c.getImageData(x, y, 1, 1).data]; })()""")
        assert shaded[:3] != [255, 255, 255] and shaded[3] > 0, shaded
        shot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"}, session=sess)["data"])
        ARTIFACTS.mkdir(exist_ok=True)
        atomic_write_bytes(ARTIFACTS / "dash_forecast.png", shot)
        reached = {**fc, "step": 450, "p": {"0.9": 1.0, "0.99": 0.9}, "at": {"0.9": 440, "0.99": 870},
                   "low": {"0.9": 440, "0.99": 500}, "high": {"0.9": 440, "0.99": 1200},
                   "reached": {"0.9": True, "0.99": False}}
        with open(d / "forecast.jsonl", "a") as fh:
            fh.write(json.dumps(reached) + "\n")
        wait_for(lambda: js(text) == "forecast: val ≥ 0.9 reached at step 440", "the forecast reached")
        assert js("document.querySelectorAll('#acc .mark.forecast').length") == 0
        assert_no_script_errors(browser)
    finally:
        shut(browser, dash)


def test_inside_the_model_scrubs_through_the_checkpoints_of_a_modular_run(tmp_path):
    """The "Inside the model" panel (PAIR's picture, Pearce et al. 2023) on a real pair-model
    run: one chart per hidden neuron, grouped by dominant frequency; the slider and the play
    button change the drawn waves and move the checkpoint marker on the accuracy chart; a run
    that is not modular has no panel."""
    from groklab.runs.checkpoint import list_checkpoints
    from groklab.runs.rundir import atomic_write_text, write_json
    root = tmp_path / "runs"
    cfg = groklab.resolve("pair", overrides=["task.p=23", "model.d_model=32", "model.d_mlp=8", "train.steps=300",
                                             "train.eval_every=10", "train.n_checkpoints=4", "train.forecast=false"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        groklab.run(cfg, out=root / "pair-run", progress=False)
    finally:
        torch.set_num_threads(threads)
    steps = list_checkpoints(root / "pair-run")
    assert len(steps) >= 3, steps
    par = root / "parity"
    par.mkdir()
    write_json(par / "config.json", {"preset": "x", "task": {"name": "parity"}, "train": {"steps": 10}})
    atomic_write_text(par / "metrics.jsonl", json.dumps({"step": 0, "train_acc": 0.5, "val_acc": 0.5}) + "\n")
    dash, url = start_dash(root)
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    try:
        sess, js = browser.open_page(url + "#run=parity")

        panel = "document.getElementById('inside')"
        wait_for(lambda: "modular" in (js(f"{panel}.dataset.reason") or ""), "the parity run's reason for no panel")
        assert js(f"{panel}.hidden") is True
        js("location.hash = '#run=pair-run'")
        wait_for(lambda: js(f"{panel}.dataset.step") == str(steps[-1]), "the panel at the last checkpoint")
        assert js(f"{panel}.hidden") is False
        assert js("document.querySelectorAll('#ingroups figure.neuron').length") == 8
        assert js("document.querySelectorAll('#ingroups figure.neuron canvas.wave').length") == 8
        groups = js("[...document.querySelectorAll('#ingroups .group')]"
                    ".map(g => [g.dataset.freq, g.querySelectorAll('figure.neuron').length])")
        assert sum(n for _, n in groups) == 8
        assert groups == sorted(groups, key=lambda g: (g[0] == "mixed", int(g[0]) if g[0] != "mixed" else 0))
        metrics = root / "pair-run" / "metrics.jsonl"
        wait_for(lambda: js(chart_points("#inacc", "pair-run|val_acc")) == len(read_jsonl(metrics)),
                 "the accuracy chart in the panel")
        wave = "document.querySelector('#ingroups figure.neuron[data-neuron=\"0\"] canvas.wave').toDataURL()"
        mark = ("(() => { const m = document.querySelector('#inacc .mark.slider');"
                " return m && [m.textContent, m.getBoundingClientRect().left]; })()")
        before, mark_before = js(wave), wait_for(lambda: js(mark), "the checkpoint marker")
        assert mark_before[0] == f"checkpoint {steps[-1]}"
        # a keyboard user: Home on the slider shows the first checkpoint
        js("document.getElementById('inslider').focus()")
        for kind in ("keyDown", "keyUp"):
            browser.send("Input.dispatchKeyEvent",
                         {"type": kind, "key": "Home", "code": "Home", "windowsVirtualKeyCode": 36}, session=sess)
        wait_for(lambda: js(f"{panel}.dataset.step") == str(steps[0]), "the first checkpoint after Home")
        assert js(wave) != before
        after = js(mark)
        assert after[0] == f"checkpoint {steps[0]}" and after[1] < mark_before[1] - 50, (mark_before, after)
        assert js("document.getElementById('instep').textContent").startswith(f"checkpoint: step {steps[0]} ")
        # play walks through every checkpoint to the last one
        seen = set()
        js("document.getElementById('inplay').click()")
        wait_for(lambda: seen.add(js(f"{panel}.dataset.step")) or js(f"{panel}.dataset.step") == str(steps[-1]),
                 "play reaching the last checkpoint", timeout=60)
        assert str(steps[1]) in seen
        wait_for(lambda: js("document.getElementById('inplay').textContent") == "▶ play", "play stopping at the end")
        js("document.getElementById('inside').scrollIntoView()")
        shot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"}, session=sess)["data"])
        ARTIFACTS.mkdir(exist_ok=True)
        atomic_write_bytes(ARTIFACTS / "dash_inside.png", shot)
        assert_no_script_errors(browser)
    finally:
        shut(browser, dash)
