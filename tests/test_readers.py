"""The reader of run-directory files (groklab.runs.read): whatever a file holds, reading it gives
either records that keep the reader's promises or one line naming the file, never another
exception; and every command that reads a run directory or a sweep's points goes through it."""
import json
import math
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import groklab
from groklab.cli import main
from groklab.runs import read
from groklab.runs.read import MAX_STEP, RunFileError, load_json, read_metrics, read_object, read_records, read_summary
from groklab.runs.rundir import read_json, read_jsonl

TINY = ["task.p=13", "task.frac=0.5", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32",
        "train.eval_every=10", "train.steps=50"]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- the promises of a clean read ------------------------------------------------------------

def numbers_in(v):
    if isinstance(v, dict):
        for x in v.values():
            yield from numbers_in(x)
    elif isinstance(v, list):
        for x in v:
            yield from numbers_in(x)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        yield v


def assert_kept_promises(records, numeric_keys=()):
    steps = [r["step"] for r in records]
    assert all(type(s) is int and 0 <= s <= MAX_STEP for s in steps)
    assert steps == sorted(set(steps))                                  # increasing
    for r in records:
        for x in numbers_in(r):
            assert math.isnan(x) or math.isfinite(x)
            assert not (isinstance(x, int) and abs(x) > 2**53)
        for k in numeric_keys:
            if k in r:
                assert isinstance(r[k], (int, float)) and not isinstance(r[k], bool)


def assert_one_line(e: RunFileError, path: Path):
    msg = str(e)
    assert "\n" not in msg and "\r" not in msg
    assert msg.startswith(repr(str(path)) + " "), msg


def outcome(fn, path: Path):
    """``fn(path)``'s value, or None after checking that the error is the one-line kind."""
    try:
        return fn(path)
    except RunFileError as e:
        assert_one_line(e, path)
        return None


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("scratch")


# ---- fuzzing: damaged files --------------------------------------------------------------------

# no subnormal floats: a training test earlier in the process sets torch.set_flush_denormal(True)
# (train/loop.py), and Hypothesis refuses to draw subnormals under flush-to-zero
FLOATS = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False)
JSON_LEAF = (st.none() | st.booleans() | st.integers() | FLOATS
             | st.text(max_size=8) | st.sampled_from([10**400, -(10**30), 2**53 + 1]))
JSON = st.recursive(JSON_LEAF, lambda kids: st.lists(kids, max_size=3) |
                    st.dictionaries(st.text(max_size=4), kids, max_size=3), max_leaves=12)
STEP = (st.integers(-3, 30) | st.sampled_from([1e400, -1e400, float("nan"), 2.5, 10**13, True, None, "x", [1]]))
FIELD = st.sampled_from(["train_loss", "train_acc", "val_loss", "val_acc", "lr", "weight_norm", "time",
                         "val_pehe", "budget", "seconds", "learner", "sum_sq_per_tensor", "other"])


@st.composite
def record_lines(draw):
    """JSON-lines text of records that are mostly right: the kind of damage a real file gets."""
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        rec = {}
        if draw(st.integers(0, 9)):
            rec["step"] = draw(STEP)
        for _ in range(draw(st.integers(0, 4))):
            rec[draw(FIELD)] = draw(JSON | FLOATS)
        text = json.dumps(rec) if draw(st.integers(0, 7)) else json.dumps(draw(JSON))
        lines.append(text)
    body = "\n".join(lines)
    cut = draw(st.integers(0, len(body))) if body and not draw(st.integers(0, 4)) else len(body)
    return body[:cut] + ("\n" if draw(st.booleans()) else "")


def nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


@pytest.mark.parametrize("name", ["metrics.jsonl", "measures.jsonl", "forecast.jsonl", "other.jsonl"])
@FUZZ
@given(text=record_lines())
def test_damaged_records_read_cleanly_or_fail_in_one_line(scratch, name, text):
    p = scratch / name
    p.write_text(text)
    recs = outcome(read_records, p)
    if recs is not None:
        rule = read.NUMERIC.get(name)
        assert_kept_promises(recs, rule[0] if rule else ())
    full = outcome(read_metrics, p)
    if full is not None:
        assert all(k in r for r in full for k in read.CURVES)


@pytest.mark.parametrize("name", ["metrics.jsonl", "summary.json"])
@FUZZ
@given(data=st.binary(max_size=200) | st.builds(lambda a, b: a + b, st.binary(max_size=40),
                                                   st.sampled_from([b'{"step": 1}\n', b"\xff\n", b"[" * 3000])))
def test_arbitrary_bytes_read_cleanly_or_fail_in_one_line(scratch, name, data):
    p = scratch / name
    p.write_bytes(data)
    for fn in (read_records, read_metrics, load_json, read_object, read_summary):
        value = outcome(fn, p)
        if fn in (read_records, read_metrics) and value is not None:
            assert_kept_promises(value)
        if fn in (read_object, read_summary) and value is not None:
            assert isinstance(value, dict)


@FUZZ
@given(value=JSON | st.dictionaries(st.sampled_from(["status", "phase", "steps_done", "memorized_at",
                                                     "generalized_at", "final_val_acc", "wall_seconds",
                                                     "cost", "cost_at", "phases", "message"]),
                                    JSON, max_size=6))
def test_a_summary_of_any_shape_reads_cleanly_or_fails_in_one_line(scratch, value):
    p = scratch / "summary.json"
    p.write_text(json.dumps(value))
    s = outcome(read_summary, p)
    if s is not None:
        assert isinstance(s, dict)
        assert all(math.isnan(x) or math.isfinite(x) for x in numbers_in(s))
        for k in ("memorized_at", "generalized_at"):
            assert all(v is None or (type(v) is int and v >= 0) for v in s.get(k, {}).values())
        assert isinstance(s.get("status", ""), str) and type(s.get("steps_done", 0)) is int


@pytest.mark.parametrize("depth", [read.MAX_DEPTH + 1, 5_000, 200_000])
def test_deep_nesting_is_one_line_not_a_recursion_error(scratch, depth):
    p = scratch / "metrics.jsonl"
    p.write_text('{"step": 0, "a": %s}\n' % nested(depth))
    with pytest.raises(RunFileError, match=r"at line 1: nested deeper than 32 levels$"):
        read_records(p)
    p = scratch / "summary.json"
    p.write_text(nested(depth))
    with pytest.raises(RunFileError, match="nested deeper than 32 levels$"):
        load_json(p)


# ---- each damage, its message ------------------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    (b'{"step": 0}\n{"step": "x"}\n', "at line 2: step 'x' is not a whole number from 0 to 1e+12"),
    (b'{"step": -3}\n', "at line 1: step -3 is not a whole number"),
    (b'{"step": 1e400}\n', "at line 1: step Infinity is not a whole number"),
    (b'{"step": 2.0}\n', "at line 1: step 2.0 is not a whole number"),
    (b'{"step": 5}\n{"step": 5}\n', "at line 2: step 5 after step 5 (steps must increase)"),
    (b'{"step": 0}\n{"val_acc": 1}\n', "at line 2: the record has no step"),
    (b'{"step": 0}\n[1, 2]\n', "at line 2: a record is a JSON object, this is a list"),
    (b'{"step": 0, "val_acc": "0.9"}\n', "at line 1: 'val_acc' is the text '0.9', not a number"),
    (b'{"step": 0, "val_acc": true}\n', "at line 1: 'val_acc' is a boolean, not a number"),
    (b'{"step": 0}\n{"step": 1, "a\n{"step": 2}\n', "at line 2: not valid JSON"),
    (b'{"step": 0}\n\x89PNG\r\n\x1a\n', "at line 2: not UTF-8 text (byte 0x89 at column 1)"),
    (b'{"step": 0, "note": "caf\xe9"}\n{"step": 1}\n', "at line 1: not UTF-8 text (byte 0xe9"),
    (b'{"step": 0, "lr": ' + b"1" * 5000 + b"}\n", "at line 1: not valid JSON (Exceeds the limit"),
])
def test_a_damaged_metrics_file_names_the_file_the_line_and_what_is_wrong(scratch, body, message):
    p = scratch / "metrics.jsonl"
    p.write_bytes(body)
    with pytest.raises(RunFileError) as e:
        read_jsonl(p)
    assert_one_line(e.value, p)
    assert f"{str(p)!r} is damaged {message}" in str(e.value)


def test_null_infinite_and_huge_numbers_read_as_nan_and_nested_nulls_stay(scratch):
    p = scratch / "metrics.jsonl"
    p.write_text('{"step": 0, "val_acc": null, "val_loss": Infinity, "train_loss": 1e400, "lr": NaN, '
                 '"time": 1' + "0" * 400 + ', "learner": null, "x": {"y": -Infinity, "z": null}}\n'
                 '{"step": 7, "train_acc": 0.5}\n{"step": 9, "val')               # a torn last line
    (r0, r1) = read_jsonl(p)
    assert all(math.isnan(r0[k]) for k in ("val_acc", "val_loss", "train_loss", "lr", "time"))
    assert r0["learner"] is None                      # not a number field: null stays null
    assert math.isnan(r0["x"]["y"]) and r0["x"]["z"] is None
    assert r1 == {"step": 7, "train_acc": 0.5}


def test_a_training_runs_metrics_must_have_its_curves(scratch):
    p = scratch / "metrics.jsonl"
    p.write_text('{"step": 0, "loss": 1.0}\n')
    assert read_records(p) == [{"step": 0, "loss": 1.0}]        # a GTN run logs other fields
    with pytest.raises(RunFileError, match="at line 1: the record has no train_loss$"):
        read_metrics(p)


@pytest.mark.parametrize("body, message", [
    ("[1, 2]", "is damaged: expected a JSON object, found a list"),
    ("null", "is damaged: expected a JSON object, found null"),
    ('{"status": 1}', "is damaged: status is a number, not text"),
    ('{"steps_done": "many"}', "is damaged: steps_done 'many' is not a whole number"),
    ('{"memorized_at": [5]}', "is damaged: memorized_at is a list, not an object of steps"),
    ('{"generalized_at": {"0.9": -1}}', "is damaged: generalized_at['0.9'] -1 is not a whole number"),
    ('{"final_val_acc": "high"}', "is damaged: final_val_acc is the text 'high', not a number"),
    ('{"cost": 3}', "is damaged: cost is a number, not an object"),
    ('{"status": "completed"', "is damaged: not valid JSON"),
])
def test_a_damaged_summary_names_the_file_and_what_is_wrong(scratch, body, message):
    p = scratch / "summary.json"
    p.write_text(body)
    with pytest.raises(RunFileError) as e:
        read_summary(p)
    assert_one_line(e.value, p)
    assert message in str(e.value)


def test_a_summary_may_lack_fields_and_holds_nan(scratch):
    p = scratch / "summary.json"
    p.write_text('{"final_val_loss": NaN, "best_val_acc": Infinity, "memorized_at": {"0.9": null}}')
    s = read_summary(p)
    assert math.isnan(s["final_val_loss"]) and math.isnan(s["best_val_acc"]) and "status" not in s
    assert read_summary(p.parent).keys() == s.keys()       # a run directory names its summary.json


def test_sizes_are_bounded_and_special_files_are_not_opened(scratch, monkeypatch):
    p = scratch / "metrics.jsonl"
    p.write_text('{"step": 0}\n' * 100)
    monkeypatch.setattr(read, "MAX_JSONL_BYTES", 1000)
    with pytest.raises(RunFileError, match=r"is damaged: larger than 1,000 bytes$"):
        read_jsonl(p)
    fifo = scratch / "fifo.json"
    if not fifo.exists():
        os.mkfifo(fifo)
    with pytest.raises(RunFileError, match="cannot be read: not a regular file$"):
        load_json(fifo)                               # would block for ever if it were opened
    (scratch / "adir.jsonl").mkdir(exist_ok=True)
    with pytest.raises(RunFileError, match="cannot be read: not a regular file$"):
        read_jsonl(scratch / "adir.jsonl")


def test_the_old_names_keep_their_contract(scratch):
    """``read_json`` (any JSON value; FileNotFoundError when missing) and ``read_jsonl`` (``[]``
    when missing) are the reader with their old signatures."""
    p = scratch / "any.json"
    p.write_text("[1, NaN]")
    assert read_json(p)[0] == 1
    with pytest.raises(FileNotFoundError):
        read_json(scratch / "nothing.json")
    assert read_jsonl(scratch / "nothing.jsonl") == []
    p.write_bytes(b"\xff")
    with pytest.raises(ValueError):                   # RunFileError is a ValueError, as before
        read_json(p)


# ---- the commands -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "r"
    groklab.run(groklab.resolve("default", overrides=TINY), out=out, report=False)
    return out


def _copy(tiny_run, tmp_path) -> Path:
    d = tmp_path / "r"
    shutil.copytree(tiny_run, d)
    return d


def _snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and not p.name.startswith(".lock")}


def _write(name: str, data: str | bytes):
    return lambda d: (d / name).write_bytes(data.encode() if isinstance(data, str) else data)


def _line(name: str, i: int, text: str | bytes | None = None, old: str = "", new: str = ""):
    """Replace line ``i`` of ``name`` by ``text``, or replace ``old`` by ``new`` in it."""
    def do(d: Path) -> None:
        lines = (d / name).read_bytes().split(b"\n")
        if text is None:
            lines[i] = lines[i].replace(old.encode(), new.encode(), 1)
        else:
            lines[i] = text.encode() if isinstance(text, str) else text
        (d / name).write_bytes(b"\n".join(lines))
    return do


M, S = "metrics.jsonl", "summary.json"
CURVES_ONLY = {"a foreign record"}  # refused where a training run's curves are read, not by export
DAMAGE = {  # what is done to the run, the file then named, the line named (None: the file is JSON)
    "binary metrics": (_write(M, b"\x89PNG\r\n\x1a\n\x00\x00\xff"), M, 1),
    "latin-1 metrics": (_line(M, 2, b'{"step": 20, "note": "caf\xe9"}'), M, 3),
    "step x": (_line(M, 3, '{"step": "x", "train_acc": 1}'), M, 4),
    "negative step": (_line(M, 0, old='"step": 0', new='"step": -10'), M, 1),
    "step 1e400": (_line(M, 1, old='"step": 10', new='"step": 1e400'), M, 2),
    "steps go back": (_line(M, 2, old='"step": 20', new='"step": 0'), M, 3),
    "a foreign record": (_line(M, 1, '{"step": 10, "loss": 1.0}'), M, 2),
    "text accuracy": (_line(M, 1, old='"val_acc": ', new='"val_acc": "0.5", "x": '), M, 2),
    "deep metrics": (_line(M, 1, '{"step": 10, "a": %s}' % nested(100_000)), M, 2),
    "summary list": (_write(S, "[1, 2]"), S, None),
    "summary types": (_write(S, '{"memorized_at": "soon"}'), S, None),
    "deep summary": (_write(S, nested(100_000)), S, None),
    "deep config": (_write("config.json", nested(100_000, '{"a":', "}")), "config.json", None),
    "forecast budget": (_line("forecast.jsonl", 0, '{"step": 0, "budget": "all"}'), "forecast.jsonl", 1),
    "measures step": (_line("measures.jsonl", 0, '{"step": null}'), "measures.jsonl", 1),
}
COMMANDS = {  # argv, the files it reads back
    "analyze": (["analyze", "{d}", "--quiet", "--stride", "20"], {"metrics.jsonl", "summary.json", "config.json"}),
    "resume": (["run", "--resume", "{d}", "--set", "train.steps=60", "--quiet"],
               {"metrics.jsonl", "config.json", "forecast.jsonl", "measures.jsonl"}),
    "export": (["export", "{d}", "--tensorboard"], {"metrics.jsonl", "config.json", "measures.jsonl"}),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_every_command_reading_a_damaged_run_says_one_line_naming_the_file(tiny_run, tmp_path, capsys,
                                                                         command, damage):
    if command == "export":
        pytest.importorskip("tensorboard")
    d = _copy(tiny_run, tmp_path)
    do, name, line = DAMAGE[damage]
    do(d)
    before = _snapshot(d)
    argv, reads = COMMANDS[command]
    code = main([a.format(d=d) for a in argv])
    err = capsys.readouterr().err
    if name not in reads or (command == "export" and damage in CURVES_ONLY):
        assert code == 0 and "Traceback" not in err, err
        return
    assert code == 2 and err.startswith("groklab: error: ") and err.count("\n") == 1, err
    assert repr(str(d / name)) in err, err
    if line is not None:
        assert f"at line {line}:" in err, err
    assert _snapshot(d) == before                                 # refused before writing anything


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_null_values_and_a_summary_without_fields_are_read_not_refused(tiny_run, tmp_path, capsys, command):
    if command == "export":
        pytest.importorskip("tensorboard")
    d = _copy(tiny_run, tmp_path)
    _line(M, 2, old='"val_acc": ', new='"val_acc": null, "x": ')(d)
    (d / "summary.json").write_text("{}")
    argv, _ = COMMANDS[command]
    assert main([a.format(d=d) for a in argv]) == 0, capsys.readouterr().err


def test_the_report_reads_through_the_reader(tiny_run, tmp_path):
    from groklab.report import write_report
    d = _copy(tiny_run, tmp_path)
    write_report(d)                                          # a good run: curves and page
    assert (d / "curves.png").is_file() and (d / "report.html").is_file()
    _line(M, 1, '{"step": "x"}')(d)
    with pytest.raises(RunFileError, match=r"metrics\.jsonl' is damaged at line 2: step 'x'"):
        write_report(d)
    d2 = _copy(tiny_run, tmp_path / "2")
    (d2 / "summary.json").write_text('{"memorized_at": [1]}')
    with pytest.raises(RunFileError, match=r"summary\.json' is damaged: memorized_at is a list"):
        write_report(d2)


# ---- a sweep rerun over damaged points ---------------------------------------------------------

SPEC = """
preset = "prieto"
name = "tiny"
ensemble = false
report = false
[base]
"task.p" = 11
"task.frac" = 0.5
"model.hidden" = [16]
"train.steps" = 30
"train.eval_every" = 10
"train.n_checkpoints" = 2
[axes]
"optim.lr" = [1e-3, 1e-2]
"""


@pytest.fixture(scope="module")
def done_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    (tmp / "spec.toml").write_text(SPEC)
    assert main(["sweep", str(tmp / "spec.toml"), "--out", str(tmp / "s"), "--workers", "1"]) == 0
    return tmp / "spec.toml", tmp / "s"


@pytest.mark.parametrize("name, content", [
    ("summary.json", b"garbage"),
    ("summary.json", b"\xff\xfe\x00"),
    ("summary.json", b"[]"),
    ("summary.json", b'{"status": "completed", "steps_done": -1}'),
    ("summary.json", nested(100_000).encode()),
    ("metrics.jsonl", b"garbage\n"),
    ("metrics.jsonl", b"\x00\x01\x02\xff\n"),
    ("metrics.jsonl", b'{"step": "x"}\n'),
    ("metrics.jsonl", b'{"step": 0, "train_loss": 1, "train_acc": 0, "val_loss": 1, "val_acc": 0}\n' * 2),
])
def test_a_sweep_rerun_over_a_damaged_point_refuses_in_one_line(done_sweep, tmp_path, capsys, name, content):
    """docs/sweeps.md: a rerun reads back every finished point first; a file it cannot read is
    one line naming it, exit code 2, and nothing is run or rewritten."""
    spec, src = done_sweep
    out = tmp_path / "s"
    shutil.copytree(src, out)
    point = sorted((out / "points").iterdir())[0]
    (point / name).write_bytes(content)
    before = _snapshot(out)
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("groklab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert repr(str(point / name)) in err and "delete the point's directory to run it again" in err, err
    assert _snapshot(out) == before


def test_a_sweep_rerun_over_intact_points_runs_nothing(done_sweep, tmp_path, capsys):
    spec, src = done_sweep
    out = tmp_path / "s"
    shutil.copytree(src, out)
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 0
    assert "2 already finished, 0 to run" in capsys.readouterr().out
