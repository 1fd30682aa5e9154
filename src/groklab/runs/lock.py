"""A directory in use is locked: one writer per run or sweep directory.

Two processes appending to the same ``metrics.jsonl`` (two ``--resume`` of one run, two
``groklab sweep`` into one ``--out``) interleave duplicated steps and lose work. ``dir_lock``
takes an OS file lock (``filelock``, released by the kernel if the holder dies, so a killed run
never leaves a stale lock) on ``DIR/.lock`` and writes who holds it to ``DIR/.lock.json``; the
second process gets a one-line :class:`DirectoryLocked` naming the holder.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from groklab.config import ConfigError

LOCK_NAME, HOLDER_NAME = ".lock", ".lock.json"


class DirectoryLocked(ConfigError):
    """Another process holds the directory; the message names it (pid, host, command, since)."""


def holder(path: str | Path) -> dict | None:
    """Who last took the lock of ``path`` (None when nobody ever did or the record is unreadable)."""
    try:
        return json.loads((Path(path) / HOLDER_NAME).read_text())
    except (OSError, ValueError):
        return None


def _describe(h: dict | None) -> str:
    if not h:
        return "another process"
    return (f"pid {h.get('pid')} on {h.get('host')} ({h.get('command')}, "
            f"since {h.get('since')})")


@contextmanager
def dir_lock(path: str | Path, what: str = "directory") -> Iterator[Path]:
    """Hold ``path`` (an existing directory) for the duration of the block, or fail at once."""
    d = Path(path)
    lock = FileLock(str(d / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise DirectoryLocked(f"{what} {str(d)!r} is in use by {_describe(holder(d))}; "
                              f"wait for it to finish or stop it") from None
    try:
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200],
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        tmp = d / f"{HOLDER_NAME}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, d / HOLDER_NAME)
        yield d
    finally:
        lock.release()
