"""Reading a run directory back: one validated reader for every file a command reads.

``config.json``, ``summary.json``, ``metrics.jsonl``, ``measures.jsonl``, ``forecast.jsonl``
and ``analysis.jsonl`` are written by groklab, but a reader cannot trust that: a disk fills, a
person edits a file, a copy stops half-way. Whatever is wrong with a file (too large, not UTF-8,
not JSON, nested too deeply, a record of the wrong shape) is a :class:`RunFileError`: a
``ConfigError`` (so a ``ValueError``) whose message is one line naming the file, and the line
for JSON-lines files. The command line prints it and exits with code 2.

What a record of a JSON-lines file is (``read_records``):

- a JSON object with ``step``, a whole number from 0 to ``MAX_STEP``, larger than the step of
  the record before it;
- its numeric fields (``NUMERIC`` by file name) are numbers, or null, which reads as NaN (missing);
- every number anywhere in it reads as a finite number or NaN (±inf, ``1e400``, a diverged
  loss written as ``Infinity``, all read as NaN; integers beyond 2**53 as floats);
- blank lines are skipped, and so is an unterminated last line that does not parse (a live
  writer's half line); any other line that is not JSON is damage.
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Callable

from groklab.config import ConfigError

MAX_JSON_BYTES = 16 << 20     # config.json, summary.json: a few kB
MAX_JSONL_BYTES = 256 << 20   # a million records of metrics.jsonl
MAX_DEPTH = 32                # nesting of objects and lists (files groklab writes nest 3 deep)
MAX_STEP = 10**12             # far beyond any budget (train.steps <= 10**9), far below int64
EXACT = 2**53                 # integers a float holds exactly

# the top-level fields of a record that are numbers (null reads as NaN); ALL: every field that
# is not an object or a list. Other fields may hold any JSON value (GTN logs its learner's name).
ALL = None
NUMERIC: dict[str, tuple[tuple[str, ...], tuple[str, ...]] | None] = {
    "metrics.jsonl": (("train_loss", "train_acc", "val_loss", "val_acc", "lr", "weight_norm", "time"),
                      ("train_", "val_")),
    "measures.jsonl": ALL,
    "analysis.jsonl": ALL,
    "forecast.jsonl": (("budget", "seconds"), ()),
}
CURVES = ("train_loss", "train_acc", "val_loss", "val_acc")  # what a training run logs at every evaluation

# summary.json fields that readers use, and their types (absent fields stay absent)
SUMMARY_TEXT = ("status", "phase", "message")
SUMMARY_NUMBERS = ("final_train_acc", "final_val_acc", "final_train_loss", "final_val_loss",
                   "best_val_acc", "wall_seconds", "phase_threshold", "phase_gap")
SUMMARY_OBJECTS = ("cost", "cost_at", "phases", "forecast")


class RunFileError(ConfigError):
    """A run-directory file that cannot be read back; one line naming the file (and line)."""


class _Bad(ValueError):
    """What is wrong with one value; the reader adds the file and line."""


def load_json(path: str | Path, constants: bool = True, limit: int | None = None) -> Any:
    """The JSON value in ``path``, as it is (numbers untouched). ``constants=False`` refuses
    NaN and Infinity, which are not JSON. Missing, too large, not UTF-8, not JSON or nested
    deeper than ``MAX_DEPTH``: RunFileError."""
    p = Path(path)
    text = _decode(p, _read(p, MAX_JSON_BYTES if limit is None else limit))
    try:
        value = _parse(text, constants)
        _depth(value, 0)
    except _Bad as e:
        raise _error(p, None, str(e)) from None
    return value


def read_object(path: str | Path, constants: bool = True) -> dict:
    """``load_json``, and the value must be a JSON object."""
    value = load_json(path, constants)
    if not isinstance(value, dict):
        raise _error(Path(path), None, f"expected a JSON object, found {_kind(value)}")
    return value


def read_summary(path: str | Path) -> dict:
    """``summary.json`` (a run directory or the file): an object whose fields, where present,
    have their types: ``status``/``phase``/``message`` text, ``steps_done`` a step,
    ``memorized_at``/``generalized_at`` objects of steps or null, the final accuracies and losses
    numbers or null, ``cost``/``cost_at``/``phases``/``forecast`` objects. Numbers read as finite
    or NaN. Absent fields stay absent: read them with ``.get``."""
    p = Path(path)
    p = p / "summary.json" if p.is_dir() else p
    s = read_object(p)
    try:
        s = _clean(s, 0)
        for k in SUMMARY_TEXT:
            if k in s and not isinstance(s[k], str):
                raise _Bad(f"{k} is {_kind(s[k])}, not text")
        if "steps_done" in s:
            _step(s["steps_done"], "steps_done")
        for k in ("memorized_at", "generalized_at"):
            if k in s:
                if not isinstance(s[k], dict):
                    raise _Bad(f"{k} is {_kind(s[k])}, not an object of steps")
                for t, v in s[k].items():
                    if v is not None:
                        _step(v, f"{k}[{_show(t)}]")
        for k in SUMMARY_NUMBERS:
            if k in s and s[k] is not None and not _is_number(s[k]):
                raise _Bad(f"{k} is {_kind(s[k])}, not a number")
        for k in SUMMARY_OBJECTS:
            if k in s and s[k] is not None and not isinstance(s[k], dict):
                raise _Bad(f"{k} is {_kind(s[k])}, not an object")
    except _Bad as e:
        raise _error(p, None, str(e)) from None
    return s


def read_records(path: str | Path, require: tuple[str, ...] = ()) -> list[dict]:
    """The records of a JSON-lines file (see module doc), ``[]`` when it does not exist.
    ``require``: fields every record must have (``CURVES`` for a training run's metrics)."""
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        return []
    data = _read(p, MAX_JSONL_BYTES)
    numeric = _numeric_rule(p.name)
    lines = data.split(b"\n")
    out: list[dict] = []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        torn = i == len(lines)  # no newline after it: a writer may still be writing it
        try:
            obj = _parse(raw.decode("utf-8"), True)
        except UnicodeDecodeError as e:
            if torn:
                break
            raise _error(p, i, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})") from None
        except _Bad as e:
            if torn:
                break
            raise _error(p, i, str(e)) from None
        try:
            out.append(_record(obj, numeric, require, out[-1]["step"] if out else None))
        except _Bad as e:
            raise _error(p, i, str(e)) from None
    return out


def read_metrics(path: str | Path) -> list[dict]:
    """A training run's ``metrics.jsonl`` (a run directory or the file): ``read_records`` with
    the four curves (train/val loss and accuracy) in every record."""
    p = Path(path)
    return read_records(p / "metrics.jsonl" if p.is_dir() else p, require=CURVES)


# ---- the pieces ----------------------------------------------------------------------------

def _read(p: Path, limit: int) -> bytes:
    """The bytes of a regular file, at most ``limit`` of them (a FIFO or a device is refused
    before it is opened: reading one would block or never end)."""
    try:
        if not stat.S_ISREG(os.stat(p).st_mode):
            raise _error(p, None, "not a regular file", "cannot be read")
        with p.open("rb") as fh:
            data = fh.read(min(os.fstat(fh.fileno()).st_size, limit) + 1)
    except FileNotFoundError:
        raise _error(p, None, "the file does not exist", "is missing") from None
    except OSError as e:
        raise _error(p, None, e.strerror or type(e).__name__, "cannot be read") from None
    if len(data) > limit:
        raise _error(p, None, f"larger than {limit:,} bytes")
    return data


def _decode(p: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        at = data.count(b"\n", 0, e.start) + 1
        raise _error(p, at, f"not UTF-8 text (byte 0x{data[e.start]:02x})") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _parse(text: str, constants: bool) -> Any:
    try:
        return json.loads(text) if constants else json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise _Bad(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # JSONDecodeError, an integer of more than 4,300 digits
        raise _Bad(f"not valid JSON ({_line(e)[:80]})") from None


def _depth(v: Any, depth: int) -> None:
    if isinstance(v, (dict, list)):
        if depth >= MAX_DEPTH:
            raise _Bad(f"nested deeper than {MAX_DEPTH} levels")
        for x in (v.values() if isinstance(v, dict) else v):
            _depth(x, depth + 1)


def _clean(v: Any, depth: int) -> Any:
    """``v`` with every number finite or NaN (ints beyond 2**53 as floats), depth checked."""
    if isinstance(v, float):
        return v if math.isfinite(v) else math.nan
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > EXACT:
        try:
            return float(v)
        except OverflowError:
            return math.nan
    if isinstance(v, (dict, list)):
        if depth >= MAX_DEPTH:
            raise _Bad(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(v, dict):
            return {k: _clean(x, depth + 1) for k, x in v.items()}
        return [_clean(x, depth + 1) for x in v]
    return v


def _numeric_rule(name: str) -> Callable[[str, Any], bool]:
    rule = NUMERIC.get(name, ())
    if rule is ALL:
        return lambda k, v: not isinstance(v, (dict, list))
    keys, prefixes = rule or ((), ())
    return lambda k, v: k in keys or (bool(prefixes) and k.startswith(prefixes))


def _record(obj: Any, numeric: Callable[[str, Any], bool], require: tuple[str, ...],
            before: int | None) -> dict:
    if not isinstance(obj, dict):
        raise _Bad(f"a record is a JSON object, this is {_kind(obj)}")
    if "step" not in obj:
        raise _Bad("the record has no step")
    step = _step(obj["step"], "step")
    if before is not None and step <= before:
        raise _Bad(f"step {step} after step {before} (steps must increase)")
    for k in require:
        if k not in obj:
            raise _Bad(f"the record has no {k}")
    out = {"step": step}
    for k, v in obj.items():
        if k == "step":
            continue
        if numeric(k, v):
            if v is None:
                v = math.nan
            elif not _is_number(v):
                raise _Bad(f"{_show(k)} is {_kind(v)}, not a number")
        out[k] = _clean(v, 1)
    return out


def _step(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_STEP:
        raise _Bad(f"{name} {_show(v)} is not a whole number from 0 to {MAX_STEP:.0e}")
    return v


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: f"the text {_show(v)}",
            list: "a list", dict: "an object"}.get(type(v), type(v).__name__)


def _show(v: Any, n: int = 40) -> str:
    text = repr(v) if isinstance(v, str) else json.dumps(v) if _is_number(v) else repr(v)
    return text if len(text) <= n else text[:n - 3] + "..."


def _line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def _error(p: Path, line: int | None, why: str, verb: str = "is damaged") -> RunFileError:
    where = f" at line {line}" if line is not None and verb == "is damaged" else ""
    why = " ".join(why.split())  # one line, whatever the file held
    return RunFileError(f"{str(p)!r} {verb}{where}: {why}")


__all__ = ["RunFileError", "load_json", "read_object", "read_summary", "read_records", "read_metrics",
           "CURVES", "NUMERIC", "MAX_JSON_BYTES", "MAX_JSONL_BYTES", "MAX_DEPTH", "MAX_STEP"]
