"""Optimize mode: Optuna trials, censoring, pruning on train metrics, resume after a kill,
several drivers on one PostgreSQL study."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from groklab.cli import main
from groklab.runs.rundir import read_jsonl
from groklab.sweep import run_sweep
from groklab.sweep.optimize import seed_value, storage_url
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


def _unfinished(run_dir) -> bool:
    """No summary yet, or the one a live run keeps saying "running"."""
    try:
        return json.loads((run_dir / "summary.json").read_text())["status"] == "running"
    except FileNotFoundError:
        return True
    except ValueError:
        return False


def test_killed_sweep_continues_without_losing_or_repeating_trials(tmp_path):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC)
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "groklab.cli", "sweep", str(spec_file), "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = out / "trials" / "t0001" / "s0"
    try:  # kill -9 while trial 1 is half-way (it has a checkpoint, no summary)
        deadline = time.monotonic() + 240
        while not ((victim / "checkpoints").is_dir() and _unfinished(victim)):
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


def test_a_seed_that_reached_the_threshold_and_then_went_nan_is_censored(tmp_path):
    """docs/sweeps.md: a NaN seed counts as censored, even one that generalized before."""
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"step": 0, "val_acc": 0.1, "time": 0.1}, {"step": 10, "val_acc": 0.95, "time": 0.7},
        {"step": 20, "val_acc": 0.97, "time": 1.3}]))
    summary = {"status": "nan", "generalized_at": {"0.9": 10}, "wall_seconds": 2.0}
    nan = {"status": "failed", "summary": summary, "error": "loss is nan at step 25"}
    steps = {"threshold": 0.9, "metric": "steps", "penalty": 3.0}
    assert seed_value(nan, tmp_path, steps, budget_steps=100) == (300.0, True)
    assert seed_value(nan, tmp_path, {**steps, "metric": "wall_seconds"}, 100) == (6.0, True)
    ok = {"status": "completed", "summary": {**summary, "status": "completed"}, "error": None}
    assert seed_value(ok, tmp_path, steps, 100) == (10.0, False)
    assert seed_value(ok, tmp_path, {**steps, "metric": "wall_seconds"}, 100) == (0.7, False)


def test_a_damaged_study_journal_is_one_line_naming_it(tmp_path, capsys):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC.replace('"train.steps" = 300', '"train.steps" = 20').replace("n_trials = 3",
                                                                                           "n_trials = 1"))
    out = tmp_path / "o"
    assert main(["sweep", str(spec_file), "--out", str(out), "--workers", "1"]) == 0
    capsys.readouterr()
    (out / "study.journal").write_text("{half a line\n")
    assert main(["sweep", str(spec_file), "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("groklab: error: ") and err.count("\n") == 1 and "study.journal" in err, err


def test_an_unreachable_database_is_one_line_and_makes_nothing(tmp_path, capsys):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC)
    url = "postgresql://groklab:secret@127.0.0.1:1/nowhere"  # port 1: nothing listens
    assert main(["sweep", str(spec_file), "--out", str(tmp_path / "o"), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("groklab: error: --storage ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert "secret" not in err and not (tmp_path / "o").exists()


def test_a_driver_that_loses_the_race_to_create_a_new_databases_tables_tries_again(tmp_path, monkeypatch):
    """Two drivers on a new database: the loser sees the unique key another just wrote
    (IntegrityError) or a table another just created (ProgrammingError, "already exists": what
    failed CI once) and opens the study on its next try; any other error is one line at once."""
    import sqlalchemy.exc as sa

    from groklab.config import ConfigError
    from groklab.sweep import optimize
    raced = [sa.ProgrammingError("CREATE TABLE alembic_version", {}, Exception('relation "alembic_version" '
                                                                             "already exists")),
             sa.IntegrityError("INSERT INTO studies", {}, Exception("duplicate key value"))]
    real, calls = optuna.create_study, []

    def create_study(**kw):
        calls.append(kw["study_name"])
        if raced:
            raise raced.pop(0)
        return real(**{**kw, "storage": None})
    monkeypatch.setattr(optuna, "create_study", create_study)
    monkeypatch.setattr(optimize.time, "sleep", lambda s: None)
    assert optimize.open_study(spec(), tmp_path, "sqlite:///unused.db").study_name == "opt"
    assert len(calls) == 3
    calls.clear()
    raced.append(sa.ProgrammingError("SELECT", {}, Exception('permission denied for table "studies"')))
    with pytest.raises(ConfigError, match="cannot open the study .ProgrammingError"):
        optimize.open_study(spec(), tmp_path, "sqlite:///unused.db")
    assert len(calls) == 1  # not a race: not tried again


PG = os.environ.get("GROKLAB_TEST_PG")


@pytest.mark.skipif(not PG, reason="GROKLAB_TEST_PG (a PostgreSQL URL) is not set; .ci/run starts a server")
def test_two_drivers_share_one_postgresql_study_without_losing_or_repeating_trials(tmp_path):
    """`--storage postgresql://...`: two drivers (as on two machines, each its own --out) fill one
    study to n_trials together; every trial runs once, by one driver, and none is left RUNNING."""
    import psycopg  # the driver the sweep extra installs
    from sqlalchemy.engine import make_url
    name = f"pg_{uuid.uuid4().hex[:10]}"
    url = make_url(PG)  # a new database: the drivers race to create Optuna's tables in it
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db = url.set(database=name).render_as_string(hide_password=False)
    try:
        _two_drivers(tmp_path, name, db)
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _two_drivers(tmp_path, name, db):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC.replace('name = "killme"', f'name = "{name}"').replace("n_trials = 3", "n_trials = 6")
                         .replace('"train.steps" = 300', '"train.steps" = 150'))
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen([sys.executable, "-m", "groklab.cli", "sweep", str(spec_file), "--out", str(o),
                               "--workers", "1", "--storage", db], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for o in outs]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    storage = optuna.storages.RDBStorage(storage_url(db))
    try:
        _check_trials(optuna.load_study(study_name=name, storage=storage), procs, outs, logs)
    finally:
        storage.engine.dispose()  # close its connections before the database is dropped


def _check_trials(study, procs, outs, logs):
    S = optuna.trial.TrialState
    trials = study.get_trials()
    assert all(t.state == S.COMPLETE for t in trials), [t.state for t in trials]
    assert 6 <= len(trials) <= 7  # both may ask at once for the last one: one extra at most
    by_driver = {p.pid: o for p, o in zip(procs, outs)}
    owners = [int(t.user_attrs["owner"].rpartition(":")[2]) for t in trials]
    assert set(owners) == set(by_driver), "both drivers ran trials"
    for t, pid in zip(trials, owners):
        mine, other = by_driver[pid], next(o for o in outs if o != by_driver[pid])
        run = mine / t.user_attrs["run_dir"] / "s0"
        assert json.loads((run / "summary.json").read_text())["status"] in ("completed", "early_stopped")
        steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl")]
        assert steps == sorted(set(steps))                          # one writer, no repeated steps
        assert not (other / t.user_attrs["run_dir"]).exists()      # not run by the other driver
        assert f"trial {t.number}:" in logs[list(by_driver).index(pid)]
