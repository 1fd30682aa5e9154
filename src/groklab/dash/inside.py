"""What the "Inside the model" panel reads: a modular run's checkpoint steps and, for one step,
each hidden neuron's input-weight wave, its spectrum and dominant frequency, and the embedding's
spectrum (``groklab.measure.neurons``: the picture of Pearce et al. 2023, PAIR's "Do Machine
Learning Models Memorize or Generalize?").

Files are untrusted as everywhere in the dashboard: config.json and each checkpoint's
``model.safetensors`` are read through ``groklab.dash.files`` (inside the root, regular files,
capped at ``MAX_WEIGHTS``) and parsed from bytes; no model is built, so a config cannot make the
server allocate more than the file it reads. A view is computed once per checkpoint file (its
path, size and mtime) and kept in a small LRU cache: scrubbing back and forth costs nothing.
"""
from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from groklab.dash import files
from groklab.dash.files import short
from groklab.dash.scan import rel
from groklab.measure.fourier import SUPPORTED_OPS
from groklab.measure.neurons import PURE, frame_tokens, neuron_view

MAX_WEIGHTS = 64 << 20   # bytes of one model.safetensors (PAIR's model: 0.5 MB)
MAX_P = 10_000
CACHE_SIZE = 256         # views kept (a few kB to ~100 kB each)
STEP_DIR = re.compile(r"step_(\d{1,12})")

_cache: OrderedDict = OrderedDict()
_lock = threading.Lock()


class ViewError(Exception):
    """A request the panel cannot answer: ``status`` is the HTTP status to send."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def modular_task(root: Path, d: Path) -> tuple[str, int] | str:
    """(op, p) of a run's modular task, or the reason the panel does not apply (a string)."""
    errors: list[str] = []
    cfg = files.read_json(root, d / "config.json", errors)
    task = cfg.get("task") if isinstance(cfg, dict) else None
    if not isinstance(task, dict):
        return errors[0] if errors else "config.json has no task"
    op, p = task.get("op"), task.get("p")
    if task.get("name") != "modular" or op not in SUPPORTED_OPS:
        return f"the view needs a modular task ({', '.join(SUPPORTED_OPS)}); this run's is not one"
    if not isinstance(p, int) or isinstance(p, bool) or not 2 <= p <= MAX_P:
        return f"config.json's task.p is not a modulus in 2-{MAX_P}"
    return op, p


def checkpoint_steps(root: Path, d: Path) -> list[int]:
    """Steps of the run's complete checkpoints (``state.json`` written last, weights there)."""
    ck = files.inside(root, d / "checkpoints")
    if ck is None or not ck.is_dir():
        return []
    steps = []
    try:
        with os.scandir(ck) as it:
            for e in it:
                m = STEP_DIR.fullmatch(e.name)
                if m and files.is_file(root, ck / e.name / "state.json") \
                        and files.is_file(root, ck / e.name / "model.safetensors"):
                    steps.append(int(m.group(1)))
    except OSError:
        return []
    return sorted(steps)


def step_view(root: Path, d: Path, step: int, op: str, p: int) -> dict:
    """``neuron_view`` of one checkpoint, from the cache when its file has not changed."""
    from safetensors.torch import load as load_safetensors
    path = files.inside(root, d / "checkpoints" / f"step_{step:08d}" / "model.safetensors")
    st = None if path is None else files.regular_stat(root, path)
    if st is None:
        raise ViewError(f"checkpoint step {step} has no readable model.safetensors", 404)
    key = (str(path), st.st_mtime_ns, st.st_size, op, p)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    try:
        weights = load_safetensors(files.read_bytes(root, path, MAX_WEIGHTS))
        view = files.finite(neuron_view(weights, frame_tokens(op, p)))
    except (OSError, ValueError) as e:
        raise ViewError(f"checkpoint step {step} cannot be shown: {short(e)}", 422) from None
    except Exception as e:  # safetensors' own error for a truncated or foreign file
        raise ViewError(f"checkpoint step {step} is unreadable ({type(e).__name__}: {short(e)}); "
                        f"half written or corrupt?", 422) from None
    with _lock:
        _cache[key] = view
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return view


def neurons_detail(root: Path, d: Path, step: str | None) -> dict[str, Any]:
    """The panel's answer for run ``d``: {"available", "reason", "steps", "step", "op", "p",
    "pure", "view"}; the view of checkpoint ``step`` (default: the last one). A run the panel
    does not apply to (not modular, no checkpoints) is ``available: false`` with a reason; a
    step that is not a checkpoint raises ViewError."""
    root = Path(root).resolve()
    task = modular_task(root, d)
    out: dict[str, Any] = {"path": rel(root, d), "available": False, "reason": None, "steps": [], "step": None,
                           "view": None}
    if isinstance(task, str):
        return {**out, "reason": task}
    steps = checkpoint_steps(root, d)
    if not steps:
        return {**out, "reason": "no checkpoints yet (train.n_checkpoints and train.checkpoint_every write them)"}
    if step in (None, ""):
        s = steps[-1]
    elif not step.isdigit() or len(step) > 12:
        raise ViewError(f"step must be a whole number, not {step[:40]!r}", 400)
    elif int(step) not in steps:
        shown = ", ".join(map(str, steps[:20])) + (", …" if len(steps) > 20 else "")
        raise ViewError(f"no checkpoint at step {int(step)} in {out['path']!r}; its checkpoints: {shown}", 404)
    else:
        s = int(step)
    op, p = task
    return {**out, "available": True, "steps": steps, "step": s, "op": op, "p": p, "pure": PURE,
            "view": step_view(root, d, s, op, p)}
