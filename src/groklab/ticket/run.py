"""``ticket``: retrain a trained run's grokking ticket (or a control) into a new run directory.

Minegishi, Iwasawa, Matsuo 2024 (arXiv 2310.19470): mask the trained weights by one global
magnitude threshold, reset the kept entries to the run's initial weights, retrain with the same
recipe while the mask holds the pruned entries at exactly 0. Controls: ``random`` (the same
count of kept entries at random positions) and ``same-norm`` (the dense init scaled to the
ticket's norm, no mask).

The initial weights are rebuilt from config.json exactly as ``Trainer.build`` makes them (and
checked against a step-0 checkpoint when the run has one). The new directory is an ordinary run
directory whose config.json is the source's recipe, plus ``ticket.json`` (source, step, keep,
control, per-tensor sparsity, norms) and ``ticket_mask.safetensors``; ``groklab run --resume``
continues it with its mask.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from groklab.config import RESUMABLE, ConfigError, RunConfig, parse_overrides, set_key, validate
from groklab.runs.checkpoint import list_checkpoints, load_checkpoint, resume_point
from groklab.runs.lock import dir_lock
from groklab.runs.rundir import read_config, write_json
from groklab.ticket.mask import (
    apply_mask,
    magnitude_mask,
    maskable,
    matrix_norm,
    projection,
    random_mask,
    same_norm,
    sparsity,
)
from groklab.train.loop import Run, Trainer, train

CONTROLS = ("none", "random", "same-norm")
MASK_FILE = "ticket_mask.safetensors"


def initial_weights(cfg: RunConfig) -> dict[str, torch.Tensor]:
    """The run's step-0 weights, rebuilt from its config by ``Trainer.build`` itself."""
    return {k: v.detach().clone() for k, v in Trainer.build(cfg).model.state_dict().items()}


def _source(run_dir: str | Path, step: int | None) -> tuple[RunConfig, int, dict]:
    """(config, step, trained weights) of the source run; ConfigError for anything missing."""
    d = Path(run_dir)
    if not d.is_dir():
        raise ConfigError(f"{str(d)!r}: no such run directory")
    cfg = read_config(d)
    if step is None:
        step, weights, _ = resume_point(d)
        return cfg, step, weights
    have = list_checkpoints(d)
    if step not in have:
        raise ConfigError(f"--from {step}: no checkpoint at step {step} in {str(d)!r}; "
                          f"checkpoints: {', '.join(map(str, have)) or 'none'}")
    try:
        weights, _ = load_checkpoint(d, step)
    except Exception as e:  # safetensors, JSON and OS errors all mean "damaged"
        raise ConfigError(f"checkpoint step {step} in {str(d)!r} is unreadable: {type(e).__name__}") from None
    return cfg, step, weights


def _check_init(d: Path, init: dict, trained: dict) -> str:
    shapes = {k: tuple(v.shape) for k, v in init.items()}
    if shapes != {k: tuple(v.shape) for k, v in trained.items()}:
        raise ConfigError(f"the checkpoint in {str(d)!r} does not fit the model config.json describes")
    if 0 not in list_checkpoints(d):
        return "rebuilt from config.json (no step-0 checkpoint to compare)"
    w0, _ = load_checkpoint(d, 0)
    bad = [k for k in init if not torch.equal(init[k], w0[k].to(init[k].dtype))]
    if bad:
        raise ConfigError(f"the init rebuilt from config.json differs from the step-0 checkpoint in "
                          f"{str(d)!r} (tensor {bad[0]!r})")
    return "rebuilt from config.json, equal to the step-0 checkpoint"


def plan(run_dir: str | Path, keep: float, step: int | None = None, control: str = "none",
         seed: int = 0) -> tuple[RunConfig, dict, dict | None, dict]:
    """What a ticket run starts from: (config, starting weights, mask or None, ticket.json info).
    Nothing is written."""
    if not (isinstance(keep, (int, float)) and 0 < keep <= 1):
        raise ConfigError(f"--keep {keep!r}: expected a fraction in (0, 1]")
    if control not in CONTROLS:
        raise ConfigError(f"--control {control!r}: allowed: {', '.join(c for c in CONTROLS if c != 'none')}")
    cfg, step, trained = _source(run_dir, step)
    init = initial_weights(cfg)
    init_check = _check_init(Path(run_dir), init, trained)
    ticket_mask, threshold = magnitude_mask(trained, keep)
    if control == "random":
        mask = random_mask({k: init[k].shape for k in maskable(init)}, keep, seed)
    else:
        mask = ticket_mask
    start = apply_mask(init, mask)
    ticket_norm = matrix_norm(apply_mask(init, ticket_mask))
    if control == "same-norm":
        start, mask = same_norm(init, ticket_mask), None
    info = {"source": str(Path(run_dir).resolve()), "step": step, "keep": keep, "control": control,
            "seed": seed, "threshold": threshold, "init": init_check,
            "kept": sum(int(m.sum()) for m in mask.values()) if mask else None,
            "total": sum(m.numel() for m in ticket_mask.values()),
            "sparsity": sparsity(mask) if mask else {},
            "norm": {"init": matrix_norm(init), "ticket": ticket_norm, "start": matrix_norm(start),
                     "trained": matrix_norm(trained)}}
    return cfg, start, mask, info


def setup_for(start: dict | None, mask: dict | None):
    """train()'s ``setup``: load the starting weights, install the mask's after-step projection."""
    def setup(tr: Trainer) -> None:
        if start is not None:
            sd = tr.model.state_dict()
            tr.model.load_state_dict({k: v.to(sd[k]) for k, v in start.items()})
        if mask is not None:
            dev = next(tr.model.parameters()).device
            tr.project = projection({k: m.to(dev) for k, m in mask.items()})
    return setup


def resume_setup(run_dir: str | Path):
    """The ``setup`` that resumes a ticket run directory with its mask (None for other runs)."""
    f = Path(run_dir) / MASK_FILE
    return setup_for(None, load_file(str(f))) if f.is_file() else None


def ticket(run_dir: str | Path, keep: float, out: str | Path, step: int | None = None,
           control: str = "none", seed: int = 0, overrides: list[str] | None = None,
           progress: bool = False, report: bool = True) -> Run:
    """Retrain ``run_dir``'s ticket (or a control) into the new run directory ``out``.

    ``overrides`` may change only the budget, logging and stopping keys (``RESUMABLE``): the
    recipe is the source run's. Bad input is a ConfigError before anything is written.

    Example::

        r = ticket("runs/prieto31", keep=0.4, out="runs/prieto31-ticket")
        r.summary["generalized_at"]["0.99"]
    """
    from groklab.api import make_out, prepare
    if str(out).strip() == "":
        raise ConfigError("--out '': expected a directory path")
    if Path(out).exists() or Path(out).is_symlink():
        raise ConfigError(f"output directory {str(out)!r} already exists; choose another --out")
    cfg, start, mask, info = plan(run_dir, keep, step, control, seed)
    for k, v in parse_overrides(overrides or []):
        if k not in RESUMABLE:
            raise ConfigError(f"ticket --set {k}: the recipe is the source run's; allowed: "
                              f"{', '.join(sorted(RESUMABLE))}")
        set_key(cfg, k, v)
    validate(cfg)
    prepare(cfg)
    out = make_out(out)
    try:
        with dir_lock(out, "run directory"):
            write_json(out / "config.json", cfg.to_dict())
            write_json(out / "ticket.json", info)
            if mask is not None:
                save_file({k: m.contiguous() for k, m in mask.items()}, str(out / MASK_FILE))
            r = train(cfg, out, progress=progress, setup=setup_for(start, mask))
            if report:
                from groklab.report import write_report
                write_report(out)
    except BaseException:
        if not any((out / "checkpoints").glob("step_*")):
            shutil.rmtree(out, ignore_errors=True)  # nothing worth keeping: no half-made run
        raise
    return r


def describe(info: dict) -> str:
    """One line about a ticket.json."""
    kept = "dense (same-norm)" if info["kept"] is None else f"{info['kept']:,} of {info['total']:,} matrix entries"
    return (f"ticket of {info['source']} at step {info['step']}: keep {info['keep']}, control "
            f"{info['control']}, {kept}; norm {info['norm']['start']:.3g} (init {info['norm']['init']:.3g})")


__all__ = ["CONTROLS", "MASK_FILE", "initial_weights", "plan", "resume_setup", "ticket"]
