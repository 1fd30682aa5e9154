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

from groklab.config import ConfigError, RunConfig, apply_dict, resolve, validate
from groklab.runs.rundir import read_json, write_json
from groklab.train.loop import Run, train


def default_out(cfg: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{cfg.preset or 'run'}-{stamp}"
    out, i = base, 1
    while out.exists():
        out, i = Path(f"{base}-{i}"), i + 1
    return out


def prepare(cfg: RunConfig) -> None:
    """Fail fast on a config the task or model cannot take (before any directory exists)."""
    from groklab.models import build_model
    from groklab.tasks import build_task
    from groklab.train.loop import resolve_device
    try:
        resolve_device(cfg.train.device)
        task = build_task(cfg.task)
        if cfg.task.label_noise > task.n_train:
            raise ValueError(f"task.label_noise={cfg.task.label_noise} exceeds the {task.n_train} "
                             f"training examples")
        if cfg.model.arch == "transformer" and task.kind != "tokens":
            raise ValueError(f"model.arch='transformer' needs a token task, not task.name={cfg.task.name!r}")
        build_model(cfg, task)
    except (ValueError, ImportError) as e:
        raise ConfigError(str(e)) from None


def run(cfg: RunConfig, out: str | Path | None = None, progress: bool = False,
        report: bool = True, sinks=None) -> Run:
    """Train ``cfg`` into a new run directory ``out`` (never an existing one) and write its report."""
    validate(cfg)
    prepare(cfg)
    out = Path(out) if out is not None else default_out(cfg)
    if out.exists():
        raise ConfigError(f"output directory {str(out)!r} already exists; choose another --out "
                          f"or resume it with --resume")
    out.mkdir(parents=True)
    try:
        write_json(out / "config.json", cfg.to_dict())
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    r = train(cfg, out, progress=progress, sinks=sinks)
    if report:
        _report(out)
    return r


def resume(run_dir: str | Path, overrides: list[str] | None = None, progress: bool = False,
           report: bool = True, sinks=None) -> Run:
    """Continue a run from its last checkpoint; ``train.steps=N`` overrides extend the budget."""
    d = Path(run_dir)
    if not (d / "config.json").is_file():
        raise ConfigError(f"{str(d)!r} is not a run directory (no config.json)")
    cfg = RunConfig()
    apply_dict(cfg, read_json(d / "config.json"))
    from groklab.config import parse_overrides, set_key
    for k, v in parse_overrides(overrides or []):
        set_key(cfg, k, v)
    validate(cfg)
    write_json(d / "config.json", cfg.to_dict())
    r = train(cfg, d, resume=True, progress=progress, sinks=sinks)
    if report:
        _report(d)
    return r


def _report(d: Path) -> None:
    from groklab.report import write_report
    write_report(d)


__all__ = ["run", "resume", "resolve", "prepare"]
