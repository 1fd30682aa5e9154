"""A directory in use is locked: one writer per run or sweep directory.

Two processes appending to the same ``metrics.jsonl`` (two ``--resume`` of one run, two
``groklab sweep`` into one ``--out``) interleave duplicated steps and lose work. ``dir_lock``
takes an OS file lock (``filelock``, released by the kernel if the holder dies, so a killed run
never leaves a stale lock) on ``DIR/.lock`` and writes who holds it to ``DIR/.lock.json``; the
second process gets a one-line :class:`DirectoryLocked` naming the holder and writes nothing. A
directory whose lock cannot be written (read-only) is a one-line :class:`NotWritable`.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from groklab.config import ConfigError

LOCK_NAME, HOLDER_NAME = ".lock", ".lock.json"


class DirectoryLocked(ConfigError):
    """Another process holds the directory; the message names it (pid, host, command, since)."""


class NotWritable(ConfigError):
    """The directory (or its lock file) cannot be written; the message names it."""


def holder(path: str | Path) -> dict | None:
    """Who last took the lock of ``path`` (None when nobody ever did or the record is unreadable)."""
    from groklab.runs.read import load_json
    try:
        h = load_json(Path(path) / HOLDER_NAME, limit=1 << 16)
    except ValueError:  # RunFileError: missing, unreadable, damaged
        return None
    return h if isinstance(h, dict) else None


def _describe(h: dict | None) -> str:
    if not h:
        return "another process"
    pid, host, command, since = (" ".join(str(h.get(k)).split())[:200]   # one line, whatever it holds
                                 for k in ("pid", "host", "command", "since"))
    return f"pid {pid} on {host} ({command}, since {since})"


@contextmanager
def dir_lock(path: str | Path, what: str = "directory") -> Iterator[Path]:
    """Hold ``path`` (an existing directory) for the duration of the block, or fail at once:
    :class:`DirectoryLocked` when another process holds it (its ``.lock.json`` is left as it
    is), :class:`NotWritable` when the lock cannot be written (a read-only directory)."""
    d = Path(path)
    lock = FileLock(str(d / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise DirectoryLocked(f"{what} {str(d)!r} is in use by {_describe(holder(d))}; "
                              f"wait for it to finish or stop it") from None
    except OSError as e:  # no permission, a read-only file system
        raise _not_writable(what, d, e) from None
    try:
        try:
            _write_holder(d)
        except OSError as e:
            raise _not_writable(what, d, e) from None
        yield d
    finally:
        lock.release()


def _not_writable(what: str, d: Path, e: OSError) -> NotWritable:
    return NotWritable(f"{what} {str(d)!r} is not writable: {e.strerror or type(e).__name__}")


def _write_holder(d: Path) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200],
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = d / f"{HOLDER_NAME}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(record))
        os.replace(tmp, d / HOLDER_NAME)
    except BaseException:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
