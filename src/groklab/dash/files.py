"""Reading the files under the dashboard's root as an untrusted source.

A run directory is written by whoever can write under the root, so every read here:

* resolves the path and refuses it unless it stays inside the root (a ``spec.toml`` that is a
  symlink to ``/etc/passwd`` is not served);
* opens it non-blocking and refuses anything that is not a regular file (a FIFO named
  ``metrics.jsonl`` would hang the request, a device would never end);
* caps what it reads: a file larger than its reader's cap is refused (``TooLarge``) before a
  byte of it is read, so a 512 MB file costs a ``fstat``, not 512 MB of memory;
* makes JSON safe to send on: Python's json reads ``NaN`` and ``Infinity``, which JSON (and the
  page's ``JSON.parse``) does not have, so they become the strings ``"NaN"``, ``"Infinity"``.

Refusals are ``OSError`` subclasses, so callers treat them as any unreadable file.
"""
from __future__ import annotations

import json
import math
import os
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

MAX_JSON = 8 << 20  # bytes: config.json and summary.json are a few kB


class Refused(OSError):
    """A file the dashboard will not read: outside the root, or not a regular file."""


class TooLarge(Refused):
    """A file larger than what its reader reads at most."""

    def __init__(self, name: str, size: int, limit: int):
        super().__init__(f"{name} is {mb(size)}, more than the {mb(limit)} the dashboard reads of it")


def mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n} bytes"


def check_size(fh: BinaryIO, name: str, limit: int) -> int:
    """The size of the open file ``fh``; TooLarge if it is over ``limit``."""
    size = os.fstat(fh.fileno()).st_size
    if size > limit:
        raise TooLarge(name, size, limit)
    return size


_local = threading.local()


@contextmanager
def scope() -> Iterator[None]:
    """Within it (one request), each directory is resolved once and each file stat'ed once:
    a listing of 200 runs asks ~8 questions per run, and resolving every path from the root
    tripled its time."""
    _local.dirs, _local.stats = {}, {}
    try:
        yield
    finally:
        _local.dirs = _local.stats = None


def _realdir(d: str) -> str:
    cache = getattr(_local, "dirs", None)
    if cache is None:
        return os.path.realpath(d)
    if d not in cache:
        cache[d] = os.path.realpath(d)
    return cache[d]


def _real(root: Path, p: Path | str) -> str | None:
    """The resolved path of ``p`` as a string if it is inside ``root`` (strings, not pathlib:
    this runs for every file of every run in a listing)."""
    p = os.fspath(p)
    head, name = os.path.split(p)
    try:
        if name in ("", ".", "..") or stat.S_ISLNK(os.lstat(p).st_mode):
            real = os.path.realpath(p)
        else:  # the last name is no symlink: only its directory needs resolving
            real = os.path.join(_realdir(head), name)
    except (OSError, ValueError):
        return None
    r = os.fspath(root)
    return real if real == r or real.startswith(r.rstrip(os.sep) + os.sep) else None


def inside(root: Path, p: Path) -> Path | None:
    """``p`` with every symlink and ``..`` resolved, if that is ``root`` or below it; else None
    (also when it does not exist). ``root`` must be resolved already (DashServer does it)."""
    real = _real(root, p)
    return None if real is None else Path(real)


def open_regular(root: Path, p: Path) -> BinaryIO:
    """``p`` opened for reading, if it is a regular file inside ``root``.

    Raises FileNotFoundError when it does not exist, Refused when it is outside the root or not
    a regular file, OSError otherwise. Never blocks: O_NONBLOCK makes opening a FIFO return at
    once, and O_NOFOLLOW refuses a symlink swapped in after the path was resolved."""
    real = _real(root, p)
    if real is None:
        if not os.path.lexists(p):
            raise FileNotFoundError(p)
        raise Refused(f"{os.path.basename(p)} points outside the root")
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        _remember(p, st)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{os.path.basename(p)} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def regular_stat(root: Path, p: Path) -> os.stat_result | None:
    """stat of ``p`` if it is a regular file inside ``root``, else None (no exception)."""
    cache = getattr(_local, "stats", None)
    key = os.fspath(p)
    if cache is not None and key in cache:
        st = cache[key]
    else:
        real = _real(root, p)
        try:
            st = None if real is None else os.stat(real)
        except OSError:
            st = None
        _remember(p, st)
    return st if st is not None and stat.S_ISREG(st.st_mode) else None


def _remember(p, st: os.stat_result | None) -> None:
    cache = getattr(_local, "stats", None)
    if cache is not None:
        cache[os.fspath(p)] = st


def is_file(root: Path, p: Path) -> bool:
    return regular_stat(root, p) is not None


def read_bytes(root: Path, p: Path, limit: int) -> bytes:
    """The file's bytes; TooLarge, before reading, if it has more than ``limit``."""
    with open_regular(root, p) as fh:
        size = check_size(fh, p.name, limit)
        data = fh.read(size + 1)  # read(limit + 1) would allocate all of limit
    if len(data) > limit:  # it grew since the fstat
        raise TooLarge(p.name, len(data), limit)
    return data


def read_text(root: Path, p: Path, limit: int) -> str:
    """The first ``limit`` bytes of the file as text (undecodable bytes replaced)."""
    with open_regular(root, p) as fh:
        return fh.read(limit).decode("utf-8", errors="replace")


def loads(data: bytes | str) -> Any:
    """json.loads, then ``finite``. Raises ValueError for bad JSON, also for nesting so deep that
    the parser would overflow the stack."""
    try:
        return finite(json.loads(data))
    except RecursionError:
        raise ValueError("nested too deeply") from None


def finite(obj: Any) -> Any:
    """``obj`` with NaN and ±inf floats replaced by "NaN", "Infinity", "-Infinity"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if obj != obj else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj


def read_json(root: Path, p: Path, errors: list[str]) -> Any:
    """Parsed, JSON-safe content of ``p``, or None with a message in ``errors`` (a missing file
    is not an error)."""
    try:
        return loads(read_bytes(root, p, MAX_JSON))
    except FileNotFoundError:
        return None
    except Refused as e:
        errors.append(f"{p.name} is not read: {e}")
    except (OSError, ValueError) as e:
        errors.append(f"{p.name} is unreadable ({short(e)}); is it half written or corrupt?")
    return None


def short(e: Exception) -> str:
    return str(e).splitlines()[0][:160] if str(e) else type(e).__name__
