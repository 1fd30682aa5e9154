"""GTN run directories: meta-train, resume, evaluate, report.

Layout (as for ``groklab run``)::

    config.json     the resolved GTNConfig
    metrics.jsonl   one record every meta.log_every outer steps
    checkpoints/    step_XXXXXXXX/{model.safetensors (the Teacher), state.* (Adam, step)}
    eval.json       the evaluation protocol's curves and means
    summary.json    status, steps_done, wall_seconds, the evaluation's headline numbers
    fig_accuracy.png, fig_samples.png, fig_meta.png, report.html
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from groklab.config import ConfigError
from groklab.gtn.config import MAX_EVAL_LEARNERS, GTNConfig
from groklab.gtn.data import GTNData, load_data
from groklab.gtn.meta import DTYPES, Teacher, train_gtn
from groklab.runs.checkpoint import list_checkpoints, resume_point
from groklab.runs.lock import dir_lock
from groklab.runs.rundir import read_run_json, write_json


def default_out(cfg: GTNConfig) -> Path:
    base = Path("runs") / f"gtn-{cfg.data.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, i = base, 1
    while out.exists():
        out, i = Path(f"{base}-{i}"), i + 1
    return out


def check(cfg: GTNConfig, data: GTNData) -> None:
    """Fail before any directory exists when the data cannot take the config."""
    from groklab.gtn.generator import build_generator
    try:
        build_generator(cfg.generator, data)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.learner.kind == "cnn" and len(data.shape) < 2:
        raise ConfigError(f"learner.kind='cnn' needs image or sequence data, not data.name={cfg.data.name!r}")


def train(cfg: GTNConfig, out: str | Path | None = None, progress: bool = False,
          evaluate: bool = True, data: GTNData | None = None) -> Path:
    """Meta-train ``cfg`` into a new directory ``out``, then evaluate and report."""
    from groklab.api import make_out
    data = data or load_data(cfg.data)
    check(cfg, data)
    out = make_out(out if out is not None else default_out(cfg))
    try:
        with dir_lock(out, "GTN run directory"):
            write_json(out / "config.json", cfg.to_dict())
            return _train_and_finish(cfg, data, out, False, progress, evaluate)
    except BaseException:
        if not list_checkpoints(out):
            shutil.rmtree(out, ignore_errors=True)  # nothing worth keeping: no half-made run
        raise


def resume(run_dir: str | Path, progress: bool = False, evaluate: bool = True,
           data: GTNData | None = None) -> Path:
    """Continue meta-training in ``run_dir`` from its last checkpoint, bit for bit."""
    d = Path(run_dir)
    if not d.is_dir():
        raise ConfigError(f"--resume {str(d)!r}: no such GTN run directory")
    with dir_lock(d, "GTN run directory"):
        cfg = read_gtn_config(d)
        return _train_and_finish(cfg, data or load_data(cfg.data), d, True, progress, evaluate)


def read_gtn_config(d: Path) -> GTNConfig:
    """The validated GTNConfig of a run directory; missing or damaged is one ConfigError line."""
    p = d / "config.json"
    raw = read_run_json(p)
    try:
        return GTNConfig.from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"{str(p)!r} is damaged: {e}") from None


def _train_and_finish(cfg, data, out, resume_, progress, evaluate) -> Path:
    teacher, info = train_gtn(cfg, data, out, resume=resume_, progress=progress)
    summary = {**info, "data": cfg.data.name, "inner_steps": cfg.inner.steps,
               "curriculum": cfg.inner.curriculum}
    write_json(out / "summary.json", summary)
    if evaluate and info["status"] == "completed":
        evaluate_run(out, teacher=teacher, cfg=cfg, data=data)
    else:
        from groklab.gtn.report import write_gtn_report
        write_gtn_report(out)
    return out


def load_run(run_dir: str | Path, data: GTNData | None = None, averaged: bool = True
             ) -> tuple[GTNConfig, Teacher, GTNData]:
    """The config, the teacher at the last checkpoint, and the data of a GTN run. With
    ``meta.ema`` > 0 the teacher is the weight average (``averaged=False``: as trained)."""
    d = Path(run_dir)
    cfg = read_gtn_config(d)
    data = data or load_data(cfg.data)
    dtype = DTYPES[cfg.meta.dtype]
    data.to(dtype)
    teacher = Teacher(cfg, data).to(dtype)
    step, weights, _ = resume_point(d)
    try:
        teacher.load_state_dict(weights)
    except RuntimeError:
        raise ConfigError(f"checkpoint step {step} in {str(d)!r} does not fit config.json") from None
    return cfg, (teacher.averaged() if averaged else teacher), data


def check_gtn_dir(run_dir: str | Path) -> Path:
    """``run_dir`` if it is a GTN run directory; anything else (a missing path, no config.json,
    a ``groklab run`` directory) is one ConfigError line, before anything is read or written."""
    d = Path(run_dir)
    if not d.is_dir() or not (d / "config.json").is_file():
        raise ConfigError(f"{str(d)!r} is not a GTN run directory (no config.json)")
    raw = read_run_json(d / "config.json")
    if not (isinstance(raw, dict) and {"generator", "inner", "meta"} <= raw.keys()):
        raise ConfigError(f"{str(d)!r} is not a GTN run directory (its config.json has no generator, "
                          f"inner and meta sections)")
    return d


def open_gtn_run(run_dir: str | Path, data: GTNData | None = None
                 ) -> tuple[GTNConfig, Teacher, GTNData]:
    """``load_run`` of a directory a command names, checked by ``check_gtn_dir`` first."""
    return load_run(check_gtn_dir(run_dir), data)


def evaluate_run(run_dir: str | Path, learners: int | None = None, teacher=None, cfg=None,
                 data=None) -> dict:
    """Run the evaluation protocol, write eval.json, the figures, summary.json and report.html."""
    if learners is not None and not 1 <= learners <= MAX_EVAL_LEARNERS:
        raise ConfigError(f"--learners {learners}: expected 1 to {MAX_EVAL_LEARNERS}")
    d = Path(run_dir)
    if teacher is None:  # a command of its own: hold the directory
        if not d.is_dir():
            raise ConfigError(f"{str(d)!r} is not a GTN run directory")
        with dir_lock(d, "GTN run directory"):
            cfg, teacher, data = load_run(d, data, averaged=False)
            return _evaluate(d, learners, teacher, cfg, data)
    return _evaluate(d, learners, teacher, cfg, data)


def _evaluate(d: Path, learners, teacher, cfg, data) -> dict:
    """The protocol for ``teacher`` as trained: with ``meta.ema`` > 0 the figures are its weight
    average's, and the ``gtn_raw_*`` keys the un-averaged teacher's."""
    from groklab.gtn.eval import evaluate, evaluate_raw
    from groklab.gtn.report import plot_accuracy, plot_samples, write_gtn_report
    t0 = time.perf_counter()
    raw, teacher = teacher, teacher.averaged()
    result = evaluate(cfg, teacher, data, learners)
    if teacher is not raw:
        result.update(evaluate_raw(cfg, raw, data, learners))
    result["eval_seconds"] = round(time.perf_counter() - t0, 2)
    write_json(d / "eval.json", result)
    plot_accuracy(result, d / "fig_accuracy.png",
                  title=f"{cfg.data.name}, T = {cfg.inner.steps}, {result['learners']} fresh "
                        f"learners ({result['learner']}), mean ± std")
    plot_samples(teacher, data, d / "fig_samples.png")
    summary = read_run_json(d / "summary.json") if (d / "summary.json").exists() else {}
    summary["eval"] = {k: v for k, v in result.items() if not k.endswith("_curves")}
    write_json(d / "summary.json", summary)
    write_gtn_report(d)
    return result
