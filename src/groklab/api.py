"""The Python API that mirrors the command line (for notebooks and sweeps).

    >>> import groklab
    >>> cfg = groklab.resolve("default", overrides=["train.steps=500"])
    >>> r = groklab.run(cfg, out="runs/demo")
    >>> r.summary["phase"]
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from groklab.config import RESUMABLE, ConfigError, RunConfig, parse_overrides, resolve, set_key, validate
from groklab.runs.checkpoint import resume_point
from groklab.runs.lock import dir_lock
from groklab.runs.read import read_metrics, read_records
from groklab.runs.rundir import read_config, write_json
from groklab.train.loop import Run, train

MAX_PARAMS = 200_000_000  # 0.8 GB of float32 weights, ×4 with gradients and Adam's moments


def default_out(cfg: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{cfg.preset or 'run'}-{stamp}"
    out, i = base, 1
    while out.exists():
        out, i = Path(f"{base}-{i}"), i + 1
    return out


def prepare(cfg: RunConfig) -> None:
    """Fail fast on a config the task or model cannot take (before any directory exists)."""
    import torch

    from groklab.models import build_model
    from groklab.runs.cost import check_country
    from groklab.tasks import build_task
    from groklab.train.loop import resolve_device
    try:
        resolve_device(cfg.train.device)
        check_country(cfg.cost.country)
        task = build_task(cfg.task)
        if cfg.task.label_noise > task.n_train:
            raise ValueError(f"task.label_noise={cfg.task.label_noise} exceeds the {task.n_train} "
                             f"training examples")
        if cfg.model.arch == "transformer" and task.kind != "tokens":
            raise ValueError(f"model.arch='transformer' needs a token task, not task.name={cfg.task.name!r}")
        with torch.device("meta"):  # count the parameters without allocating them
            n = sum(p.numel() for p in build_model(cfg, task).parameters())
        if n > MAX_PARAMS:
            raise ValueError(f"the model.* settings give {n:,} parameters; at most {MAX_PARAMS:,} allowed")
    except (ValueError, ImportError) as e:
        raise ConfigError(str(e)) from None


def make_out(out: str | Path) -> Path:
    """Create the new run directory ``out``; an existing path or one the OS refuses is a ConfigError."""
    if str(out).strip() == "":
        raise ConfigError("--out '': expected a directory path")
    out = Path(out)
    try:
        if out.exists() or out.is_symlink():
            raise ConfigError(f"output directory {str(out)!r} already exists; choose another --out "
                              f"or resume it with --resume")
        out.mkdir(parents=True)
    except FileExistsError:
        raise ConfigError(f"output directory {str(out)!r} already exists; choose another --out") from None
    except OSError as e:
        raise ConfigError(f"cannot create output directory {str(out)[:200]!r}: {e.strerror}") from None
    return out


def run(cfg: RunConfig, out: str | Path | None = None, progress: bool = False,
        report: bool = True, sinks=None) -> Run:
    """Train ``cfg`` into a new run directory ``out`` (never an existing one) and write its report."""
    validate(cfg)
    prepare(cfg)
    out = make_out(out if out is not None else default_out(cfg))
    try:
        with dir_lock(out, "run directory"):
            write_json(out / "config.json", cfg.to_dict())
            r = train(cfg, out, progress=progress, sinks=sinks() if callable(sinks) else sinks)
            if report:
                _report(out)
    except BaseException:
        if not (out / "config.json").is_file() or not any((out / "checkpoints").glob("step_*")):
            shutil.rmtree(out, ignore_errors=True)  # nothing worth keeping: no half-made run
        raise
    return r


def resume(run_dir: str | Path, overrides: list[str] | None = None, progress: bool = False,
           report: bool = True, sinks=None) -> Run:
    """Continue a run from its newest usable checkpoint. Only the keys in ``RESUMABLE`` (the
    budget, logging, stopping) may change; nothing is written until the checkpoint has loaded."""
    d = Path(run_dir)
    if not d.is_dir():
        raise ConfigError(f"--resume {str(d)!r}: no such run directory")
    with dir_lock(d, "run directory"):
        cfg = read_config(d)
        for k, v in parse_overrides(overrides or []):
            before = cfg.model_dump()
            set_key(cfg, k, v)
            if k not in RESUMABLE and cfg.model_dump() != before:
                raise ConfigError(f"--resume cannot change {k} (it would change what the run means); "
                                  f"allowed: {', '.join(sorted(RESUMABLE))}")
        validate(cfg)
        prepare(cfg)
        step, weights, state = resume_point(d)
        if cfg.train.steps < step:
            raise ConfigError(f"train.steps={cfg.train.steps} is below the {step} steps already done; "
                              f"allowed: >= {step}")
        _check_fits(cfg, weights, d, step)
        _check_records(d)
        write_json(d / "config.json", cfg.to_dict())
        from groklab.ticket.run import resume_setup  # a ticket run resumes with its mask
        r = train(cfg, d, resume=True, progress=progress, sinks=sinks() if callable(sinks) else sinks,
                  checkpoint=(step, weights, state), setup=resume_setup(d))
        if report:
            _report(d)
    return r


def _check_fits(cfg: RunConfig, weights: dict, d: Path, step: int) -> None:
    """The checkpoint's tensors are the ones this config's model has (a hand-edited config is not)."""
    import torch

    from groklab.models import build_model
    from groklab.tasks import build_task
    task = build_task(cfg.task)  # on the CPU: a task's tables (x/y's mask) need real values
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in build_model(cfg, task).state_dict().items()}
    have = {k: tuple(v.shape) for k, v in weights.items()}
    if want != have:
        bad = sorted(set(want.items()) ^ set(have.items()))[0][0]
        raise ConfigError(f"checkpoint step {step} in {str(d)!r} does not fit config.json "
                          f"(tensor {bad!r} differs)")


def _check_records(d: Path) -> None:
    """The files a resume reads back and truncates are readable (else a one-line RunFileError
    naming the file, before anything is written)."""
    read_metrics(d / "metrics.jsonl")
    for name in ("measures.jsonl", "forecast.jsonl"):
        read_records(d / name)


def _report(d: Path) -> None:
    from groklab.report import write_report
    write_report(d)


__all__ = ["run", "resume", "resolve", "prepare"]
