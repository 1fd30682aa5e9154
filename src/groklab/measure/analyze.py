"""``groklab analyze DIR``: every progress measure from a run's checkpoints, phases, figures.

1. Key frequencies K from the last checkpoint (neuron rule of ``circuit.key_frequencies``),
   frozen for the whole run.
2. ``measure_model`` at every checkpoint → ``analysis.jsonl`` (one record per checkpoint; the
   live ``measures.jsonl`` of the training loop is left as it is).
3. Phase boundaries (``phases.segment``) → ``summary.json["phases"]`` and ``analysis.json``
   (K, neurons per frequency, the frame, the settings).
4. Figures ``fig_progress_*.png`` and ``report.html`` with them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from groklab.config import ConfigError
from groklab.measure import circuit
from groklab.measure.extract import grid_run
from groklab.measure.fourier import frame_for
from groklab.measure.phases import segment
from groklab.measure.progress import measure_model
from groklab.runs.checkpoint import list_checkpoints, load_weights, step_dir
from groklab.runs.lock import dir_lock
from groklab.runs.read import read_metrics, read_summary
from groklab.runs.rundir import atomic_write_text, read_config, write_json


def load_run(run_dir: Path):
    """(cfg, task, frame, model) of a run directory; ConfigError if it cannot be analysed.
    ``frame`` is None for an MLP on a vector task (MNIST, parity): it gets the layer analysis."""
    from groklab.models import build_model
    from groklab.tasks import build_task
    cfg = read_config(run_dir)
    try:
        task = build_task(cfg.task)
        model = build_model(cfg, task)
        if task.kind == "vectors":
            frame = None
            if not hasattr(model, "hooks_pre"):
                raise ValueError(f"model.arch={cfg.model.arch!r} has no Linear layers to analyse "
                                 f"(analyze reads MLPs on vector tasks and modular/permutation runs)")
        else:
            frame = frame_for(task)
            from groklab.measure.extract import neuron_hook
            neuron_hook(model)
    except ValueError as e:
        raise ConfigError(f"cannot analyse {str(run_dir)!r}: {e}") from None
    if cfg.train.dtype == "float64":
        model = model.double()
    return cfg, task, frame, model


def analyze(run_dir: str | Path, stride: int = 1, progress: bool = False, figures: bool = True,
            probes: bool = False) -> dict:
    """Analyse the run in ``run_dir`` (see module doc); returns ``analysis.json``'s content.

    ``stride``: measure every stride-th checkpoint (the last one always). The run directory is
    locked meanwhile (a run still training holds it); damaged checkpoints are skipped. MLP runs
    on vector tasks get ``measure.layers`` instead (feature rank per layer, surges; ``probes``
    adds a linear probe per layer and checkpoint)."""
    d = Path(run_dir)
    if not d.is_dir():
        raise ConfigError(f"{str(d)!r} is not a run directory")
    with dir_lock(d, "run directory"):
        return _analyze(d, stride, progress, figures, probes)


def _analyze(d: Path, stride: int, progress: bool, figures: bool, probes: bool = False) -> dict:
    cfg, task, frame, model = load_run(d)
    # read (and so check) what is read back before the long part, so that a damaged file
    # stops the command before anything is measured or written
    metrics = read_metrics(d / "metrics.jsonl")
    summary = read_summary(d / "summary.json") if (d / "summary.json").exists() else None
    steps = list_checkpoints(d)
    if not steps:
        raise ConfigError(f"{str(d)!r} has no checkpoints to analyse (train.n_checkpoints and "
                          f"train.checkpoint_every were 0, or the run has not saved one yet)")
    dtype = torch.float64 if cfg.train.dtype == "float64" else torch.float32

    def load(step: int) -> bool:
        """Load checkpoint ``step`` into ``model``; False (and a warning) if it is damaged."""
        try:
            weights = load_weights(step_dir(d, step))
        except Exception as e:  # a truncated or missing safetensors file
            print(f"groklab: warning: skipped checkpoint step {step}: unreadable ({type(e).__name__})",
                  file=sys.stderr)
            return False
        try:
            model.load_state_dict({k: v.to(dtype) for k, v in weights.items()})
        except RuntimeError as e:
            raise ConfigError(f"checkpoint step {step} in {str(d)!r} does not fit config.json "
                              f"({str(e).splitlines()[0][:100]})") from None
        return True

    steps = [s for s in sorted(set(steps[::stride]) | {steps[-1]}) if load(s)]
    if not steps:
        raise ConfigError(f"{str(d)!r}: no checkpoint could be read")
    if frame is None:
        return _analyze_layers(d, task, model, steps, load, probes, progress, figures, metrics, summary)
    load(steps[-1])
    _, acts = grid_run(model, frame)
    clusters, best = circuit.neuron_clusters(acts, frame.n)
    K = sorted(int(f) for f in clusters.unique() if f > 0)
    counts = {str(k): int((clusters == k).sum()) for k in K}

    records = _measure_each(d, steps, load, progress,
                            lambda: measure_model(model, frame, K, cfg.train.loss_dtype, dtype))
    phases = segment(metrics, records, cfg.train.phase_threshold, has_key_freqs=bool(K))
    info = {
        "key_freqs": K, "neurons_per_freq": counts,
        "neurons_clustered": int((clusters > 0).sum()), "neurons": int(len(clusters)),
        "share_threshold": circuit.SHARE, "key_freqs_from_step": steps[-1],
        "basis": frame.basis, "group_order": frame.n, "sign": frame.sign, "generator": frame.generator,
        "op": frame.op, "p": frame.p, "checkpoints": steps, "phases": phases,
        "neuron_freq": clusters.tolist(), "neuron_share": best.tolist(),
    }
    write_json(d / "analysis.json", info)
    if summary is not None:
        summary["phases"] = phases
        summary["key_freqs"] = K
        write_json(d / "summary.json", summary)
    if figures:
        from groklab.measure.figures import draw_all
        draw_all(d, metrics, records, info, acts)
        from groklab.report import write_report
        write_report(d)
    return info


def _analyze_layers(d: Path, task, model, steps: list[int], load, probes: bool, progress: bool,
                    figures: bool, metrics: list[dict], summary: dict | None) -> dict:
    """Feature ranks (and probes) at each checkpoint, the validation surges; same files as above."""
    from groklab.measure.layers import measure_layers, plot_layers, surges
    records = _measure_each(d, steps, load, progress, lambda: measure_layers(model, task, probes))
    info = {"kind": "layers", "checkpoints": steps, "surges": surges(metrics), "probes": probes,
            "layers": [k[5:] for k in records[-1] if k.startswith("rank_")]}
    write_json(d / "analysis.json", info)
    if summary is not None:
        summary["surges"] = info["surges"]
        write_json(d / "summary.json", summary)
    if figures:
        plot_layers(metrics, records, info, d / "fig_layers.png")
        from groklab.report import write_report
        write_report(d)
    return info


def _measure_each(d: Path, steps: list[int], load, progress: bool, measure) -> list[dict]:
    """``{"step": s, **measure()}`` with checkpoint s loaded (readable: checked before), for each
    step; written to ``analysis.jsonl``."""
    records = []
    bar = _bar(len(steps), progress)
    for s in steps:
        load(s)
        records.append({"step": s, **measure()})
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    atomic_write_text(d / "analysis.jsonl", "".join(_line(r) for r in records))
    return records


def _line(r: dict) -> str:
    import json
    return json.dumps(r) + "\n"


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="analyze", unit="ckpt", dynamic_ncols=True)
