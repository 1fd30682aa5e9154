"""Optimize mode: Optuna trials, censoring, pruning on train metrics, resume after a kill."""
import os
import signal
import subprocess
import sys
import time

import pytest

from groklab.sweep import run_sweep
from groklab.sweep.spec import parse_spec
from groklab.sweep.table import read_csv

optuna = pytest.importorskip("optuna")

BASE = {"task": {"p": 11, "frac": 0.5}, "model": {"hidden": [16]},
        "train": {"steps": 20, "eval_every": 10, "n_checkpoints": 2}}


def spec(**opt):
    return parse_spec({"preset": "prieto", "name": "opt", "mode": "optimize", "base": BASE,
                       "axes": {"optim.lr": {"log": [1e-3, 1e-2]}, "optim.wd": [0.0, 1.0]},
                       "optimize": {"n_trials": 2, "sampler": "gp", **opt}})


def test_trials_that_never_generalize_count_as_budget_times_penalty(tmp_path):
    study = run_sweep(spec(penalty=3.0), tmp_path / "o", workers=1)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for t in trials:  # 20 steps of a 16-unit MLP never reach 90 % validation accuracy
        assert t.value == 20 * 3.0 and t.user_attrs["censored"] is True
        assert 1e-3 <= t.params["optim.lr"] <= 1e-2 and t.params["optim.wd"] in (0.0, 1.0)
        assert (tmp_path / "o" / t.user_attrs["run_dir"] / "s0" / "summary.json").is_file()
    rows = read_csv(tmp_path / "o" / "results.csv")
    assert len(rows) == 2 and all(r["censored"] == "True" for r in rows)
    assert (tmp_path / "o" / "study.journal").is_file() and (tmp_path / "o" / "fig_history.png").is_file()


def test_prunes_only_on_the_named_train_metric(tmp_path):
    study = run_sweep(spec(sampler="random", prune={"metric": "train_acc", "below": 0.99, "at_step": 10}),
                      tmp_path / "o", workers=1)
    assert [t.state for t in study.get_trials()] == [optuna.trial.TrialState.PRUNED] * 2
    s = (tmp_path / "o" / study.get_trials()[0].user_attrs["run_dir"] / "s0" / "summary.json").read_text()
    assert '"status": "pruned"' in s and "train_acc" in s


SPEC = """
name = "killme"
mode = "optimize"
preset = "prieto"
[base]
"task.p" = 11
"task.frac" = 0.5
"model.hidden" = [16]
"train.steps" = 300
"train.eval_every" = 10
"train.n_checkpoints" = 6
[axes]
"optim.lr" = {log = [1e-3, 1e-2]}
[optimize]
n_trials = 3
sampler = "tpe"
"""


def test_killed_sweep_continues_without_losing_or_repeating_trials(tmp_path):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC)
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "groklab.cli", "sweep", str(spec_file), "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = out / "trials" / "t0001" / "s0"
    try:  # kill -9 while trial 1 is half-way (it has a checkpoint, no summary)
        deadline = time.monotonic() + 240
        while not ((victim / "checkpoints").is_dir() and not (victim / "summary.json").exists()):
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        first = (out / "trials" / "t0000" / "s0" / "summary.json").stat().st_mtime_ns
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    study = optuna.load_study(study_name="killme", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))))
    S = optuna.trial.TrialState
    done = [t for t in study.get_trials() if t.state == S.COMPLETE]
    assert len(done) == 3
    assert len({t.user_attrs["run_dir"] for t in done}) == 3          # no trial ran twice
    killed = study.trials[1]
    assert killed.state == S.FAIL
    retry = [t for t in done if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].params == killed.params        # none lost
    assert retry[0].user_attrs["run_dir"] == "trials/t0001"            # resumed in place
    assert (out / "trials" / "t0000" / "s0" / "summary.json").stat().st_mtime_ns == first
    assert len(read_csv(out / "results.csv")) == 3
