"""The run directory on disk, and atomic writes.

Layout of a run::

    config.json      the fully resolved config (the run is reproducible from it)
    metrics.jsonl    one JSON object per evaluation: step, losses, accuracies, lr, weight_norm
    measures.jsonl   progress measures (when measured)
    summary.json     events, phase, final accuracies, steps_done, wall_seconds, status
    checkpoints/     step_XXXXXXXX/{model.safetensors, state.safetensors, state.json}
    curves.png, report.html, fig_*.png

Every file is written to a temporary name in the same directory and renamed into place, so a
reader (the dashboard, a resume) never sees half a file.
"""
from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def finite_or_null(o: Any) -> Any:
    """``o`` with NaN and ±inf floats replaced by None, for files that are read back strictly
    (``read_json`` refuses those constants): a diverged value is written as null."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite_or_null(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite_or_null(v) for v in o]
    return o


def _jsonable(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path`` (any type; ``groklab.runs.read.load_json``): missing is
    FileNotFoundError, anything else wrong a one-line ``RunFileError`` naming the file."""
    from groklab.runs.read import load_json
    if not Path(path).exists():
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
    return load_json(path)


def read_run_json(path: str | Path) -> Any:
    """A JSON file of a run or sweep directory; missing, unreadable or damaged is a one-line
    ``ConfigError`` naming the file (never a traceback). NaN and Infinity are refused."""
    from groklab.config import ConfigError
    from groklab.runs.read import load_json
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{str(p)!r} is missing (not a run directory, or a damaged one)")
    return load_json(p, constants=False)


def read_config(run_dir: str | Path):
    """The validated ``RunConfig`` of a run directory (ConfigError if missing or damaged)."""
    from groklab.config import ConfigError, RunConfig
    p = Path(run_dir) / "config.json"
    d = read_run_json(p)
    try:
        return RunConfig.from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"{str(p)!r} is damaged: {e}") from None


def read_jsonl(path: str | Path) -> list[dict]:
    """The validated records of a JSON-lines file, ``[]`` if it does not exist
    (``groklab.runs.read.read_records``: a damaged file is a one-line ``RunFileError``; a
    trailing half-written line of a live writer is skipped)."""
    from groklab.runs.read import read_records
    return read_records(path)


class JsonlLogger:
    """Appends one JSON object per line and flushes each, so live readers see whole lines."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fh = open(self.path, "a")

    def log(self, record: dict) -> None:
        self._fh.write(json.dumps(record, default=_jsonable) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def truncate_jsonl(path: str | Path, before_step: int) -> None:
    """Keep only records with step < ``before_step`` (used when resuming from a checkpoint)."""
    p = Path(path)
    if p.exists():
        keep = [r for r in read_jsonl(p) if r["step"] < before_step]
        atomic_write_text(p, "".join(json.dumps(r) + "\n" for r in keep))


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / "config.json").is_file()
