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
from groklab.gtn.config import GTNConfig
from groklab.gtn.data import GTNData, load_data
from groklab.gtn.meta import DTYPES, Teacher, train_gtn
from groklab.runs.checkpoint import list_checkpoints, load_checkpoint
from groklab.runs.rundir import read_json, write_json


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
    data = data or load_data(cfg.data)
    check(cfg, data)
    out = Path(out) if out is not None else default_out(cfg)
    if out.exists():
        raise ConfigError(f"output directory {str(out)!r} already exists; choose another --out "
                          f"or continue it with --resume {out}")
    out.mkdir(parents=True)
    try:
        write_json(out / "config.json", cfg.to_dict())
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return _train_and_finish(cfg, data, out, False, progress, evaluate)


def resume(run_dir: str | Path, progress: bool = False, evaluate: bool = True,
           data: GTNData | None = None) -> Path:
    """Continue meta-training in ``run_dir`` from its last checkpoint, bit for bit."""
    d = Path(run_dir)
    if not (d / "config.json").is_file():
        raise ConfigError(f"{str(d)!r} is not a GTN run directory (no config.json)")
    cfg = GTNConfig.from_dict(read_json(d / "config.json"))
    return _train_and_finish(cfg, data or load_data(cfg.data), d, True, progress, evaluate)


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


def load_run(run_dir: str | Path, data: GTNData | None = None
             ) -> tuple[GTNConfig, Teacher, GTNData]:
    """The config, the teacher at the last checkpoint, and the data of a GTN run."""
    d = Path(run_dir)
    if not (d / "config.json").is_file() or not list_checkpoints(d):
        raise ConfigError(f"{str(d)!r} is not a GTN run directory with a checkpoint")
    cfg = GTNConfig.from_dict(read_json(d / "config.json"))
    data = data or load_data(cfg.data)
    dtype = DTYPES[cfg.meta.dtype]
    data.to(dtype)
    teacher = Teacher(cfg, data).to(dtype)
    weights, _ = load_checkpoint(d, list_checkpoints(d)[-1])
    teacher.load_state_dict(weights)
    return cfg, teacher, data


def evaluate_run(run_dir: str | Path, learners: int | None = None, teacher=None, cfg=None,
                 data=None) -> dict:
    """Run the evaluation protocol, write eval.json, the figures, summary.json and report.html."""
    from groklab.gtn.eval import evaluate
    from groklab.gtn.report import plot_accuracy, plot_samples, write_gtn_report
    d = Path(run_dir)
    if teacher is None:
        cfg, teacher, data = load_run(d, data)
    t0 = time.perf_counter()
    result = evaluate(cfg, teacher, data, learners)
    result["eval_seconds"] = round(time.perf_counter() - t0, 2)
    write_json(d / "eval.json", result)
    plot_accuracy(result, d / "fig_accuracy.png",
                  title=f"{cfg.data.name}, T = {cfg.inner.steps}, {result['learners']} fresh "
                        f"learners ({result['learner']}), mean ± std")
    plot_samples(teacher, data, d / "fig_samples.png")
    summary = read_json(d / "summary.json") if (d / "summary.json").exists() else {}
    summary["eval"] = {k: v for k, v in result.items() if not k.endswith("_curves")}
    write_json(d / "summary.json", summary)
    write_gtn_report(d)
    return result
