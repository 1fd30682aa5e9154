"""Checkpoints: safetensors weights plus optimiser, transform, scheduler and RNG state.

A checkpoint is a directory ``checkpoints/step_XXXXXXXX`` written under a temporary name and
renamed, so it is complete or absent. Nothing is pickled: tensors go to safetensors, the rest
to JSON. Nested states (tuples, dicts, lists with tensors, numbers, None) are flattened to
``{path: tensor}`` plus a JSON skeleton that names the tensors.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

TENSOR = "__tensor__"


def flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in ``obj`` by {"__tensor__": key} and collect it in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().contiguous().clone()
        return {TENSOR: prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        kind = "__tuple__" if isinstance(obj, tuple) else "__list__"
        return {kind: [flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {prefix}")


def unflatten(skel: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skel, dict):
        if TENSOR in skel:
            return tensors[skel[TENSOR]]
        if "__dict__" in skel:
            return {k: unflatten(v, tensors) for k, v in skel["__dict__"]}
        if "__tuple__" in skel:
            return tuple(unflatten(v, tensors) for v in skel["__tuple__"])
        if "__list__" in skel:
            return [unflatten(v, tensors) for v in skel["__list__"]]
    return skel


def step_dir(root: str | Path, step: int) -> Path:
    return Path(root) / "checkpoints" / f"step_{step:08d}"


def list_checkpoints(root: str | Path) -> list[int]:
    d = Path(root) / "checkpoints"
    if not d.is_dir():
        return []
    steps = []
    for p in d.iterdir():
        if p.name.startswith("step_") and (p / "state.json").is_file():
            try:
                steps.append(int(p.name[5:]))
            except ValueError:
                pass
    return sorted(steps)


def save_checkpoint(root: str | Path, step: int, model: torch.nn.Module, state: dict[str, Any],
                    rolling: bool = False) -> Path:
    """Write weights and ``state`` (any nesting of tensors and JSON values) for ``step``.
    ``rolling``: a resumable checkpoint that the next one replaces (``is_rolling``), recorded
    in the checkpoint so that a resumed run knows which of the ones on disk it may remove."""
    final = step_dir(root, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        tensors: dict[str, torch.Tensor] = {}
        skel = flatten(state, "s", tensors)
        save_file(tensors, str(tmp / "state.safetensors"))
        meta = {"step": step, "state": skel, **({"rolling": True} if rolling else {})}
        (tmp / "state.json").write_text(json.dumps(meta))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def is_rolling(root: str | Path, step: int) -> bool:
    """Whether checkpoint ``step`` was saved as a rolling one (False when it was kept, written
    before checkpoints said so, or unreadable: what is not known to be rolling is kept)."""
    try:
        return json.loads((step_dir(root, step) / "state.json").read_text()).get("rolling") is True
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(path) / "model.safetensors"))


def load_checkpoint(root: str | Path, step: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    d = step_dir(root, step)
    weights = load_weights(d)
    tensors = load_file(str(d / "state.safetensors"))
    meta = json.loads((d / "state.json").read_text())
    return weights, unflatten(meta["state"], tensors)


def all_finite(obj: Any) -> bool:
    """True when every floating-point tensor in ``obj`` (a module, or any nesting) is finite."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(all_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(all_finite(v) for v in obj)
    return not isinstance(obj, float) or math.isfinite(obj)


def load_latest_good(root: str | Path) -> tuple[int, dict, dict, list[str]]:
    """The newest checkpoint that loads and holds only finite numbers: (step, weights, state,
    why each newer one was skipped). A damaged checkpoint (truncated file, bad JSON, NaN
    weights) is passed over for the one before it; ``FileNotFoundError`` when none is usable."""
    skipped = []
    for step in reversed(list_checkpoints(root)):
        try:
            weights, state = load_checkpoint(root, step)
        except Exception as e:  # safetensors, JSON and OS errors all mean "damaged"
            skipped.append(f"step {step}: unreadable ({type(e).__name__}: {str(e)[:80]})")
            continue
        if not (all_finite(weights) and all_finite(state)):
            skipped.append(f"step {step}: holds non-finite numbers")
            continue
        return step, weights, state, skipped
    why = f" ({'; '.join(skipped)})" if skipped else ""
    raise FileNotFoundError(f"no usable checkpoint in {str(root)!r}{why}")


def resume_point(root: str | Path) -> tuple[int, dict, dict]:
    """``load_latest_good`` for a command: each skipped checkpoint is a warning on stderr, no
    usable one a one-line ``ConfigError``."""
    import sys

    from groklab.config import ConfigError
    try:
        step, weights, state, skipped = load_latest_good(root)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    for why in skipped:
        print(f"groklab: warning: skipped checkpoint {why}", file=sys.stderr)
    return step, weights, state
