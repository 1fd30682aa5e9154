"""Nothing is lost: resume refuses what would change or corrupt a run, checkpoints are finite,
directories are locked while in use, a killed extension says so, damaged runs give one line."""
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import groklab
from groklab.cli import main
from groklab.runs.checkpoint import list_checkpoints, load_weights, step_dir
from groklab.runs.rundir import read_jsonl

TINY = ["task.p=13", "task.frac=0.5", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32",
        "train.eval_every=10"]


def _run(tmp_path, name="r", steps=50, extra=()):
    out = tmp_path / name
    groklab.run(groklab.resolve("default", overrides=TINY + [f"train.steps={steps}", *extra]),
                out=out, report=False)
    return out


def _snapshot(d: Path) -> dict:
    """Every file of a run directory (but the lock's holder record) and its bytes."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and not p.name.startswith(".lock")}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("groklab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("key", ["task.p=31", "task.split_seed=7", "optim.lr=0.01", "model.d_model=32",
                                 "train.seed=3", "train.batch_size=8"])
def test_resume_refuses_a_key_that_changes_the_run_and_writes_nothing(tmp_path, capsys, key):
    d = _run(tmp_path)
    before = _snapshot(d)
    assert main(["run", "--resume", str(d), "--set", key, "--quiet"]) == 2
    err = _one_line_error(capsys)
    assert f"--resume cannot change {key.split('=')[0]}" in err and "train.steps" in err
    assert _snapshot(d) == before
    # the run is intact: a plain resume with a longer budget still works
    assert main(["run", "--resume", str(d), "--set", "train.steps=60", "--quiet"]) == 0
    assert json.loads((d / "summary.json").read_text())["steps_done"] == 60


def test_resume_accepts_an_unchanged_value_and_the_logging_keys(tmp_path):
    d = _run(tmp_path)
    assert main(["run", "--resume", str(d), "--quiet", "--set", "task.p=13", "--set", "train.steps=70",
                 "--set", "train.eval_every=5", "--set", "train.stop_threshold=1.0"]) == 0
    steps = [r["step"] for r in read_jsonl(d / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 70 and 55 in steps


def test_resume_refuses_a_budget_below_the_steps_done(tmp_path, capsys):
    d = _run(tmp_path)
    before = _snapshot(d)
    assert main(["run", "--resume", str(d), "--set", "train.steps=20", "--quiet"]) == 2
    assert "train.steps=20 is below the 50 steps already done; allowed: >= 50" in _one_line_error(capsys)
    assert _snapshot(d) == before


def test_a_checkpoint_with_non_finite_weights_is_never_saved(tmp_path, monkeypatch, capsys):
    """The weights blow up after the optimiser step of step 7 (the loss was still finite), so the
    checkpoint at step 8 would hold NaN: it is refused and the message names step 7."""
    from groklab.train import loop
    real = loop.project_weight_norm
    calls = {"n": 0}

    def blow_up(params, target):
        real(params, target)
        calls["n"] += 1
        if calls["n"] == 8:
            with torch.no_grad():
                next(iter(params.values())).fill_(float("nan"))

    monkeypatch.setattr(loop, "project_weight_norm", blow_up)
    out = tmp_path / "n"
    code = main(["run", "--quiet", "--out", str(out), *sum((["--set", kv] for kv in TINY), []),
                 "--set", "accel.weight_norm=5", "--set", "train.steps=100", "--set", "train.n_checkpoints=100"])
    assert code == 3
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "nan" and "not finite after step 8" in s["message"]
    assert list_checkpoints(out) == [1, 2, 3, 4, 5, 6, 7]
    assert s["message"].endswith("Last good checkpoint: step 7")
    for st in list_checkpoints(out):
        assert all(torch.isfinite(v).all() for v in load_weights(step_dir(out, st)).values())


def test_resume_falls_back_from_a_damaged_checkpoint_to_the_one_before(tmp_path, capsys):
    d = _run(tmp_path, extra=["train.n_checkpoints=0", "train.checkpoint_every=10"])
    f = step_dir(d, 50) / "model.safetensors"
    f.write_bytes(f.read_bytes()[:100])                 # a truncated file
    nan = step_dir(d, 40) / "state.safetensors"        # and one with a non-finite optimiser state
    from safetensors.torch import load_file, save_file
    t = load_file(str(nan))
    k = next(k for k, v in t.items() if v.is_floating_point() and v.numel() > 1)
    t[k][0] = float("inf")
    save_file(t, str(nan))
    from groklab.runs.checkpoint import load_latest_good
    step, *_, skipped = load_latest_good(d)
    assert step == 30 and len(skipped) == 2
    assert main(["run", "--resume", str(d), "--set", "train.steps=60", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "skipped checkpoint step 50: unreadable" in err and "step 40: holds non-finite" in err
    steps = [r["step"] for r in read_jsonl(d / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 60      # redone from 30, no duplicates


@pytest.mark.parametrize("damage", ["truncated", "not json", "nan", "missing", "wrong type"])
def test_a_damaged_config_is_one_line_for_resume_show_and_analyze(tmp_path, capsys, damage):
    d = _run(tmp_path)
    c = d / "config.json"
    text = c.read_text()
    if damage == "truncated":
        c.write_text(text[: len(text) // 2])
    elif damage == "not json":
        c.write_bytes(b"\xff\xfe garbage")
    elif damage == "nan":
        c.write_text(text.replace('"lr": 0.001', '"lr": NaN'))
    elif damage == "missing":
        c.unlink()
    else:
        c.write_text(text.replace('"p": 13', '"p": "thirteen"'))
    for argv in (["run", "--resume", str(d), "--quiet"], ["analyze", str(d), "--quiet"]):
        assert main(argv) == 2, argv
        assert "config.json" in _one_line_error(capsys)
    (d / "summary.json").write_text('{"status": ')
    assert main(["show", str(d)]) == 2
    assert "summary.json" in _one_line_error(capsys)


def test_resume_of_a_directory_without_a_usable_checkpoint_is_one_line(tmp_path, capsys):
    d = _run(tmp_path)
    for st in list_checkpoints(d):
        (step_dir(d, st) / "model.safetensors").unlink()
    assert main(["run", "--resume", str(d), "--quiet"]) == 2
    assert "no usable checkpoint" in _one_line_error(capsys)


HOLD = textwrap.dedent("""
    import sys, time
    from groklab.runs.lock import dir_lock
    with dir_lock(sys.argv[1], "run directory"):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_directory_in_use_is_refused_with_its_holder(tmp_path, capsys):
    d = _run(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(d)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _snapshot(d)
        record = d / ".lock.json"
        held = (record.read_bytes(), record.stat().st_ino, record.stat().st_mtime_ns)
        for argv in (["run", "--resume", str(d), "--set", "train.steps=60", "--quiet"],
                     ["analyze", str(d), "--quiet"], ["gtn", "eval", str(d)]):
            assert main(argv) == 2
            err = _one_line_error(capsys)
            assert f"is in use by pid {holder.pid}" in err, err
        assert _snapshot(d) == before
        # the holder's record is not rewritten, not even with the same bytes
        assert (record.read_bytes(), record.stat().st_ino, record.stat().st_mtime_ns) == held
    finally:
        holder.kill()
        holder.communicate()
    # the kernel released the dead holder's lock: no stale lock
    assert main(["run", "--resume", str(d), "--set", "train.steps=60", "--quiet"]) == 0


def test_a_second_resume_while_one_runs_is_refused_and_the_metrics_stay_clean(tmp_path):
    d = _run(tmp_path)
    args = [sys.executable, "-m", "groklab.cli", "run", "--resume", str(d), "--quiet", "--set",
            "train.steps=1500"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and json.loads((d / "summary.json").read_text())["status"] != "running":
        time.sleep(0.1)
    second = subprocess.run(args, stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode == 2 and f"is in use by pid {first.pid}" in second.stderr, second.stderr
    steps = [r["step"] for r in read_jsonl(d / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 1500


def test_a_killed_extension_says_running_and_lost_at_most_save_every_steps(tmp_path):
    d = _run(tmp_path, steps=100)
    args = [sys.executable, "-m", "groklab.cli", "run", "--resume", str(d), "--quiet", "--set",
            "train.steps=1000000", "--set", "train.save_every=100", "--set", "train.n_checkpoints=0"]
    proc = subprocess.Popen(args, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and max(list_checkpoints(d)) < 700:
        time.sleep(0.2)
    assert json.loads((d / "summary.json").read_text())["status"] == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "running"                     # not "completed" at the old budget
    ck = list_checkpoints(d)
    done = read_jsonl(d / "metrics.jsonl")[-1]["step"]
    assert ck[-1] >= 700 and done - ck[-1] <= 100
    # rolling checkpoints replace each other; the log-spaced ones of the first run stay
    assert [c for c in ck if c > 100] in ([ck[-1]], [ck[-2], ck[-1]])
    assert {1, 2, 100} <= set(ck)


class _CtrlC:
    """A sink that presses Ctrl-C right after the evaluation at ``step``."""

    def __init__(self, step: int):
        self.step = step

    def log(self, step: int, rec: dict) -> None:
        if step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_a_resumed_run_keeps_the_checkpoints_of_a_run_never_interrupted(tmp_path):
    """Rolling checkpoints (every save_every steps, not kept) replace each other; the one an
    interrupted run stopped at, and the rolling one before it, go too once the resumed run
    saves a newer one."""
    cfg = groklab.resolve("default", overrides=TINY + [
        "train.steps=40", "train.n_checkpoints=0", "train.checkpoint_every=0", "train.save_every=10"])
    groklab.run(cfg, out=tmp_path / "one", report=False)
    r = groklab.run(cfg, out=tmp_path / "two", report=False, sinks=[_CtrlC(20)])
    assert r.summary["status"] == "interrupted"
    stopped = r.summary["steps_done"]
    assert list_checkpoints(tmp_path / "two") == [stopped]        # the resume point, and only it
    groklab.resume(tmp_path / "two", report=False)
    assert list_checkpoints(tmp_path / "one") == [40]
    assert list_checkpoints(tmp_path / "two") == list_checkpoints(tmp_path / "one")


def _read_only(monkeypatch, where: str, err: int) -> None:
    """What a read-only directory does to the lock (these tests may run as root, for whom
    permissions do not apply): the lock file cannot be created, or (it exists, read-only, and
    flock takes it) the holder record cannot be written."""
    from groklab.runs import lock

    def refuse(path):
        raise OSError(err, os.strerror(err), str(path))

    if where == "lock":
        class ReadOnlyLock(lock.FileLock):
            def acquire(self, *a, **k):
                refuse(self.lock_file)
        monkeypatch.setattr(lock, "FileLock", ReadOnlyLock)
    else:
        real = Path.write_text

        def write_text(self, *a, **k):
            if self.name.startswith(".lock.json"):
                refuse(self)
            return real(self, *a, **k)
        monkeypatch.setattr(Path, "write_text", write_text)


@pytest.mark.parametrize("where", ["lock", "holder record"])
@pytest.mark.parametrize("err", [errno.EACCES, errno.EROFS])
def test_a_read_only_run_directory_is_one_line_for_every_command_that_locks_it(tmp_path, capsys,
                                                                              monkeypatch, where, err):
    d = _run(tmp_path)
    before = _snapshot(d)
    _read_only(monkeypatch, where, err)
    for argv in (["run", "--resume", str(d), "--set", "train.steps=60", "--quiet"],
                 ["analyze", str(d), "--quiet"], ["gtn", "eval", str(d)]):
        assert main(argv) == 2, argv
        msg = _one_line_error(capsys)
        assert f"{str(d)!r} is not writable: {os.strerror(err)}" in msg, msg
    assert _snapshot(d) == before
    assert not list(d.glob(".lock.json.*"))                     # no temporary holder record left
