"""The sweep directory on disk: made only after every check passed, written by one driver.

``open_sweep_dir`` is a context manager: it refuses an ``--out`` that is a file, a directory
that holds something else or a different sweep (by the spec's fingerprint), or an unreadable
``sweep.json``, all before creating anything; then it creates the directory and holds its lock
(``groklab.runs.lock``) for the whole sweep, so a second ``groklab sweep`` into the same
directory stops at once with a one-line error naming the holder instead of interleaving
duplicated steps into the same run directories.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from groklab.config import ConfigError
from groklab.runs.lock import HOLDER_NAME, LOCK_NAME, dir_lock
from groklab.runs.read import RunFileError, load_json
from groklab.runs.rundir import atomic_write_text, write_json

META = "sweep.json"


def unreadable(path: Path, e: BaseException, what: str = "") -> ConfigError:
    """A one-line ConfigError for a file of a sweep directory that cannot be read back."""
    why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0][:160]
    return ConfigError(f"{str(path)!r} is unreadable ({type(e).__name__}: {why}){what}")


def read_meta(out: Path) -> dict[str, Any]:
    """``sweep.json`` of ``out``: what the directory holds (name, mode, fingerprint, ...)."""
    path = out / META
    hint = "; it records which spec this directory holds: restore it or choose another --out"
    try:
        meta = load_json(path)
    except RunFileError as e:
        raise RunFileError(f"{e}{hint}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("fingerprint"), str):
        raise ConfigError(f"{str(path)!r} has no spec fingerprint{hint}")
    return meta


def check_out(out: Path, spec) -> None:
    """Read-only: raise ConfigError unless ``out`` is new, empty, or this same sweep."""
    try:
        _check_out(out, spec)
    except OSError as e:  # a name too long, a component that is a file, no permission, ...
        raise ConfigError(f"--out {str(out)[:200]!r}: {e.strerror or e}") from None


def _check_out(out: Path, spec) -> None:
    if not out.exists():
        if out.is_symlink():
            raise ConfigError(f"--out {str(out)!r} is a dangling symbolic link; choose another --out")
        return
    if not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file, not a directory; choose another --out")
    if (out / META).exists() or (out / META).is_symlink():
        old = read_meta(out)["fingerprint"]
        if old != spec.fingerprint():
            raise ConfigError(f"{str(out)!r} holds a different sweep (fingerprint {old}, this spec "
                              f"{spec.fingerprint()}); choose another --out")
        return
    try:
        other = [p.name for p in out.iterdir() if p.name not in (LOCK_NAME, HOLDER_NAME)]
    except OSError as e:
        raise unreadable(out, e) from None
    if other:
        raise ConfigError(f"{str(out)!r} exists and is not a sweep directory; choose another --out")


@contextmanager
def open_sweep_dir(out: Path, spec, spec_text: str | None = None) -> Iterator[Path]:
    """Create ``out`` (or check that it holds this sweep) and hold its lock while in the block."""
    out = Path(out)
    check_out(out, spec)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {str(out)!r}: cannot create it ({e.strerror or e})") from None
    with dir_lock(out, what="sweep directory"):
        check_out(out, spec)  # again, holding the lock: another driver may have started it
        if not (out / META).exists():
            if spec_text is not None:
                atomic_write_text(out / "spec.toml", spec_text)
            write_json(out / META, {"name": spec.name, "mode": spec.mode,
                                    "fingerprint": spec.fingerprint()})
        yield out
