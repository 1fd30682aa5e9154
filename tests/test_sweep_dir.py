"""The sweep directory: one driver at a time, bad input is one line and exit 2 with nothing made,
and whatever a rerun reads back that cannot be read is one line naming the file."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import groklab
from groklab.cli import main
from groklab.runs.rundir import read_jsonl

SPEC = """
preset = "prieto"
name = "tiny"
ensemble = false
[base]
"task.p" = 11
"task.frac" = 0.5
"model.hidden" = [16]
"train.steps" = 30
"train.eval_every" = 10
"train.n_checkpoints" = 2
[axes]
"optim.lr" = [1e-3, 1e-2]
"optim.wd" = [0.0, 1.0]
"""


def _spec(tmp_path, text=SPEC, name="spec.toml"):
    f = tmp_path / name
    f.write_text(text)
    return f


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("groklab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _files(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_a_second_driver_on_the_same_directory_stops_with_one_line_naming_the_holder(tmp_path, monkeypatch):
    """Two `groklab sweep same.toml --out cs` at once: the second exits 2 and touches nothing,
    so no point's metrics.jsonl gets duplicated steps."""
    spec, out = _spec(tmp_path), tmp_path / "cs"
    real, second, files = groklab.run, [], []

    def run(cfg, out=None, **kw):  # (an assertion in here would only fail the point)
        if not second:  # while this driver is inside its first point, start another one
            files.append(_files(out.parent.parent))
            second.append(subprocess.run(
                [sys.executable, "-m", "groklab.cli", "sweep", str(spec), "--out", str(out.parent.parent),
                 "--workers", "1"], capture_output=True, text=True, timeout=300))
            files.append(_files(out.parent.parent))
        return real(cfg, out=out, **kw)
    monkeypatch.setattr(groklab, "run", run)
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 0
    [p] = second
    assert files[0] == files[1]  # the second driver wrote nothing
    assert p.returncode == 2, p.stderr[-2000:]
    assert p.stderr.startswith("groklab: error: sweep directory ") and p.stderr.count("\n") == 1
    assert f"in use by pid {os.getpid()}" in p.stderr and "sweep" in p.stderr
    points = sorted((out / "points").iterdir())
    assert len(points) == 4
    for d in points:
        steps = [r["step"] for r in read_jsonl(d / "metrics.jsonl")]
        assert steps == sorted(set(steps)) == [0, 10, 20, 30]


def test_the_lock_is_released_when_a_sweep_ends(tmp_path):
    spec, out = _spec(tmp_path), tmp_path / "cs"
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 0
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 0  # continues: all done


@pytest.mark.parametrize("args, match", [
    (["--workers", "0"], "--workers 0"),
    (["--workers", "-3"], "--workers -3"),
    (["--address", "127.0.0.1:1"], "--address"),
    (["--storage", "sqlite:///x.db"], "--storage"),
])
def test_bad_options_fail_before_anything_is_made(tmp_path, capsys, args, match):
    spec, out = _spec(tmp_path), tmp_path / "o"
    assert main(["sweep", str(spec), "--out", str(out), *args]) == 2
    assert match in _one_line_error(capsys)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_ensemble_option_in_optimize_mode_is_refused(tmp_path, capsys):
    spec = _spec(tmp_path, 'name = "o"\nmode = "optimize"\npreset = "prieto"\n[base]\n"task.p" = 11\n'
                           '"model.hidden" = [16]\n"train.steps" = 10\n[axes]\n"optim.lr" = {log = [1e-3, 1e-2]}\n'
                           '[optimize]\nn_trials = 1\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--ensemble", "on"]) == 2
    assert "--ensemble" in _one_line_error(capsys) and not (tmp_path / "o").exists()


# (no absolute name here: were the check missing, this test must not write outside tmp_path)
@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "", "a b", "x" * 101, 5])
def test_a_sweep_name_that_is_not_a_plain_name_is_refused(tmp_path, capsys, monkeypatch, name):
    """The name is the default directory sweeps/<name>: "../../x" would write outside sweeps/."""
    cwd = tmp_path / "a" / "b" / "c"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    spec = _spec(tmp_path, SPEC.replace('name = "tiny"', f"name = {json.dumps(name)}"))
    assert main(["sweep", str(spec), "--workers", "1"]) == 2
    assert "name = " in _one_line_error(capsys)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["a", "a/b", "a/b/c", "spec.toml"]


def test_a_plain_name_is_the_default_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = _spec(tmp_path, SPEC.replace('name = "tiny"', 'name = "wd_lr-2.b"'))
    assert main(["sweep", str(spec), "--workers", "1"]) == 0
    assert (tmp_path / "sweeps" / "wd_lr-2.b" / "sweep.json").is_file()


def test_an_empty_or_impossible_out_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = _spec(tmp_path)
    assert main(["sweep", str(spec), "--out", ""]) == 2  # not the default sweeps/<name>
    assert "--out '': expected a directory path" in _one_line_error(capsys)
    assert main(["sweep", str(spec), "--out", "x" * 300]) == 2
    assert "--out 'xxx" in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_out_that_is_a_file_or_another_directory_is_refused_and_left_alone(tmp_path, capsys):
    spec = _spec(tmp_path)
    (tmp_path / "f").write_text("mine")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "f")]) == 2
    assert "is a file" in _one_line_error(capsys) and (tmp_path / "f").read_text() == "mine"
    assert main(["sweep", str(spec), "--out", str(tmp_path / "f" / "sub")]) == 2
    assert "f/sub" in _one_line_error(capsys)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "d")]) == 2
    assert "not a sweep directory" in _one_line_error(capsys)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["notes.txt"]  # no lock file either


@pytest.fixture(scope="module")
def done_sweep(tmp_path_factory):
    """A finished sweep, copied by each test that damages it."""
    tmp = tmp_path_factory.mktemp("done")
    spec = _spec(tmp)
    assert main(["sweep", str(spec), "--out", str(tmp / "cs"), "--workers", "1"]) == 0
    return spec, tmp / "cs"


def _damaged(tmp_path, done_sweep):
    import shutil
    spec, src = done_sweep
    out = tmp_path / "cs"
    shutil.copytree(src, out)
    first = sorted((out / "points").iterdir())[0]
    return spec, out, first


@pytest.mark.parametrize("what, content, match", [
    ("sweep.json", "{not json", "sweep.json"),
    ("sweep.json", "[1, 2]", "no spec fingerprint"),
    ("sweep.json", b"\xff\xfe", "sweep.json"),
    ("summary.json", '{"status": "completed", "generalized_at": [1]}', "summary.json"),
    ("failed.json", "{half", "failed.json"),
    ("failed.json", '{"traceback": "no error"}', "failed.json"),
    ("failed.json", "null", "failed.json"),
])
def test_a_damaged_file_that_a_rerun_reads_is_one_line_naming_it(tmp_path, capsys, done_sweep, what,
                                                                 content, match):
    spec, out, first = _damaged(tmp_path, done_sweep)
    path = out / what if what == "sweep.json" else first / what
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = _files(out)
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 2
    err = _one_line_error(capsys)
    assert match in err and str(path) in err
    after = _files(out)
    assert {k: v for k, v in after.items() if not k.startswith(".lock")} == \
        {k: v for k, v in before.items() if not k.startswith(".lock")}  # nothing rewritten or run


def test_a_metrics_file_with_foreign_records_is_one_line_naming_it(tmp_path, capsys, done_sweep):
    """results.csv reads metrics.jsonl for a diagram threshold the summary does not have."""
    _, out, first = _damaged(tmp_path, done_sweep)
    # the diagram's threshold is not part of the fingerprint: the same sweep, another table
    spec = _spec(tmp_path, SPEC.replace("[axes]", "[diagram]\nthreshold = 0.42\n[axes]"), "t42.toml")
    (first / "metrics.jsonl").write_text('{"step": 0, "loss": 1}\n')
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 2
    assert str(first / "metrics.jsonl") in _one_line_error(capsys)


def test_a_damaged_results_csv_is_rebuilt_from_the_points(tmp_path, done_sweep):
    """results.csv is an output: nothing reads it back, a rerun writes it again whole."""
    spec, out, _ = _damaged(tmp_path, done_sweep)
    good = (out / "results.csv").read_text()
    (out / "results.csv").write_bytes(b"\xff\x00garbage,\n\"unclosed")
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 0
    assert (out / "results.csv").read_text() == good
