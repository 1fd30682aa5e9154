"""The reader of run-directory files (groklab.runs.read): whatever a file holds, reading it gives
either records that keep the reader's promises or one line naming the file, never another
exception."""
import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groklab.runs import read
from groklab.runs.read import (MAX_STEP, RunFileError, load_json, read_metrics, read_object,
                               read_records, read_summary)
from groklab.runs.rundir import read_json, read_jsonl

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

JSON_LEAF = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
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
            rec[draw(FIELD)] = draw(JSON | st.floats(allow_nan=True, allow_infinity=True))
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
