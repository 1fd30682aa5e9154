"""Where a result was measured: the code and the machine, written beside a race's numbers.

A race's seconds depend on the CPU and its load, and its steps on the training code; a table
copied into the docs names the commit and the CPU it came from. ``provenance()`` records
groklab's version and git commit (when it runs from a git checkout; ``dirty`` when the
package's files differ from that commit), torch's version, the CPU model and torch's thread count.
"""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch

import groklab


def _git(*args: str) -> str | None:
    src = Path(groklab.__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def provenance() -> dict:
    """{"groklab", "commit" (or None), "dirty" (or None), "torch", "cpu", "threads"}."""
    commit = _git("rev-parse", "HEAD")
    dirty = None if commit is None else bool(_git("status", "--porcelain", "--", "."))
    return {"groklab": groklab.__version__, "commit": commit, "dirty": dirty, "torch": torch.__version__,
            "cpu": cpu_model(), "threads": torch.get_num_threads()}
