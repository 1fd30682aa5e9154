"""The race to grok: several recipes, one task, a few seeds; who reaches 95 % / 99 % validation
accuracy first, in optimiser steps and in wall seconds of training.

Each recipe is a preset. The race replaces its task section with the race task's (so every
recipe solves the same split), sets ``train.seed = train.batch_seed = seed``, evaluates every
``eval_every`` steps, stops a run as soon as validation reaches the highest threshold, and keeps
no intermediate checkpoints. "Seconds" are the ``time`` field of the first metrics.jsonl record at
or above the threshold: training wall time since the loop started, evaluations included.
"CPU seconds" are the process CPU time over the same span (read by a sink at every evaluation):
on a machine shared with other jobs, CPU seconds of a one-thread run (``--threads 1``) are what
the wall time would be on an idle core, while wall seconds include the waiting.

Layout of a race directory::

    race.json      settings, every run (steps and seconds per threshold) and the table rows
    race.md        the table
    race.png       validation accuracy against steps and against seconds, every run
    <recipe>/seed<k>/   the run directories
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from groklab.config import SEED_MAX, ConfigError, RunConfig, parse_overrides, set_key, validate
from groklab.runs.lock import dir_lock
from groklab.runs.rundir import atomic_write_text, read_jsonl, write_json

DEFAULT_RECIPES = ("mlp-adamw", "mlp-grokfast-ema", "mlp-grokfast-ma", "mlp-orthograd",
                   "mlp-stablemax", "mlp-init-scale", "mlp-fast")
THRESHOLDS = (0.95, 0.99)
MAX_SEEDS = 1000  # runs per recipe: a race of more is a sweep


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """1 to MAX_SEEDS distinct seeds in [0, SEED_MAX]; else a one-line ConfigError."""
    if not len(seeds):
        raise ConfigError("race: no seeds given; e.g. --seeds 3")
    seeds = list(seeds[:MAX_SEEDS + 1])  # a range(10**11) is never made a list
    if len(seeds) > MAX_SEEDS or len(set(seeds)) != len(seeds) or \
            not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= SEED_MAX for s in seeds):
        raise ConfigError(f"race seeds: expected 1 to {MAX_SEEDS:,} distinct integers from 0 to {SEED_MAX:,}")
    return seeds


def check_thresholds(thresholds: Sequence[float]) -> list[float]:
    """At least one validation accuracy, each in (0, 1], sorted; else a one-line ConfigError."""
    try:
        ts = sorted(float(t) for t in thresholds)
    except (TypeError, ValueError):
        ts = []
    if not ts or not all(0 < t <= 1 for t in ts):  # NaN fails the comparison too
        raise ConfigError(f"race thresholds {list(thresholds)!r}: expected one or more accuracies in (0, 1]")
    return ts


@dataclass
class RaceRun:
    """One (recipe, seed) run: first (step, seconds) at or above each threshold, or None."""
    recipe: str
    seed: int
    dir: str
    status: str
    steps_done: int
    wall_seconds: float
    final_val_acc: float | None
    hits: dict[str, list | None] = field(default_factory=dict)  # "0.99" -> [step, s, cpu s, FLOPs, J] | None
    cost: dict = field(default_factory=dict)  # summary.json's cost of the whole run

    @property
    def ms_per_step(self) -> float:
        return 1000 * self.wall_seconds / max(1, self.steps_done)


def race_config(recipe: str, task: str | None, seed: int, steps: int | None = None,
                eval_every: int = 10, stop_at: float = 0.99,
                overrides: Sequence[str] = ()) -> RunConfig:
    """The config of one race run: the recipe's preset, the task of preset ``task`` (None keeps
    the recipe's own), the seed, the race's evaluation and stopping settings, then overrides."""
    from groklab.presets import get_preset
    cfg = get_preset(recipe)
    if task is not None:
        cfg.task = get_preset(task).task
    cfg.train.seed = cfg.train.batch_seed = seed
    if steps is not None:
        cfg.train.steps = steps
    t = cfg.train
    t.eval_every, t.stop_threshold, t.patience = eval_every, stop_at, 0
    t.n_checkpoints, t.checkpoint_every, t.measure_every = 0, 0, 0
    t.forecast = False  # monitoring, not the method: off like checkpoints and measures
    for k, v in parse_overrides(list(overrides)):
        set_key(cfg, k, v)
    return validate(cfg)


def first_crossing(records: list[dict], threshold: float) -> list | None:
    """[step, seconds] of the first record with val_acc >= threshold, or None."""
    for r in records:
        if r["val_acc"] >= threshold:
            return [r["step"], r["time"]]
    return None


class CpuClock:
    """A run sink: process CPU seconds at every evaluation, counted from the first one (step 0,
    logged before any update) plus that record's own wall ``time``."""

    def __init__(self):
        self.at: dict[int, float] = {}
        self._start: float | None = None

    def log(self, step: int, record: dict) -> None:
        now = time.process_time()
        if self._start is None:
            self._start = now - record["time"]
        self.at[step] = now - self._start


def run_race(recipes: Sequence[str] = DEFAULT_RECIPES, task: str | None = "nanda",
             seeds: Sequence[int] = (0, 1, 2), out: str | Path | None = None,
             steps: int | None = None, eval_every: int = 10,
             thresholds: Sequence[float] = THRESHOLDS, overrides: Sequence[str] = (),
             log: Callable[[str], None] | None = print) -> dict:
    """Run every recipe for every seed, one after the other, into ``out``; write race.json,
    race.md and race.png there and return the race.json content."""
    from groklab.presets import PRESETS
    if not recipes:
        raise ConfigError("race: no recipes given; e.g. --recipes mlp-adamw,mlp-orthograd")
    for name in [*recipes, *([task] if task else [])]:
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(sorted(PRESETS))}")
    seeds, thresholds = check_seeds(seeds), check_thresholds(thresholds)
    configs = {(r, s): race_config(r, task, s, steps, eval_every, thresholds[-1], overrides)
               for r in recipes for s in seeds}  # fail on a bad override before any training
    from groklab.api import make_out
    out = make_out(out if out is not None else Path("runs") / f"race-{time.strftime('%Y%m%d-%H%M%S')}")
    settings = {"recipes": list(recipes), "task": task, "seeds": list(seeds), "steps": steps,
                "eval_every": eval_every, "thresholds": thresholds, "overrides": list(overrides)}
    with dir_lock(out, "race directory"):
        return _race(out, configs, settings, thresholds, log)


def _race(out: Path, configs: dict, settings: dict, thresholds: list[float], log,
          plot: Path | None = None, with_runs: bool = False):
    """Run ``configs`` {(recipe, seed): cfg} into ``out``/<recipe>/seed<k>; write race.json,
    race.md and ``plot`` (default ``out``/race.png); return race.json (and the runs)."""
    import groklab
    from groklab.runs.provenance import provenance
    runs: list[RaceRun] = []
    prov = provenance()
    out.mkdir(parents=True, exist_ok=True)
    for (recipe, seed), cfg in configs.items():
        d = out / recipe / f"seed{seed}"
        cpu = CpuClock()
        r = groklab.run(cfg, out=d, progress=False, report=False, sinks=[cpu])
        records = read_jsonl(d / "metrics.jsonl")
        hits = {str(t): first_crossing(records, t) for t in thresholds}
        hits = {k: None if h is None else [*h, round(cpu.at.get(h[0], math.nan), 4),
                                           *_cost_at(r.summary, k, h[0], records)] for k, h in hits.items()}
        run = RaceRun(recipe, seed, str(d.relative_to(out)), r.summary["status"], r.summary["steps_done"],
                      r.summary["wall_seconds"], r.summary["final_val_acc"], hits, r.summary.get("cost", {}))
        runs.append(run)
        if log:
            top = run.hits[str(thresholds[-1])]
            got = f"{thresholds[-1]:.0%} at step {top[0]} ({top[1]:.1f} s, {top[2]:.1f} CPU s)" if top else \
                f"{thresholds[-1]:.0%} not reached in {run.steps_done} steps ({run.wall_seconds:.1f} s)"
            log(f"{recipe} seed {seed}: {got}")
        result = {**_result(settings, runs, thresholds), "provenance": prov}
        write_json(out / "race.json", result)  # after every run: a partial race is still readable
    atomic_write_text(out / "race.md", format_table(result["rows"], thresholds) + "\n")
    plot_race(out, runs, thresholds, plot or out / "race.png")
    return (result, runs) if with_runs else result


def _cost_at(summary: dict, thr: str, step: int, records: list[dict]) -> list:
    """[FLOPs, joules] to ``step``: the run's cost_at, or for a threshold summary.json does not
    track, its per-step and per-evaluation FLOPs (joules then unknown)."""
    at = (summary.get("cost_at") or {}).get(thr)
    if at and at.get("step") == step:
        return [at.get("flops"), at.get("joules")]
    c = summary.get("cost") or {}
    if "flops_per_step" not in c:
        return [None, None]
    return [c["flops_per_step"] * step + c["flops_per_eval"] * sum(r["step"] <= step for r in records), None]


def total_cost(runs: Sequence[RaceRun]) -> dict:
    """FLOPs, CPU seconds, wall seconds and joules summed over ``runs`` (joules None if any is
    missing; the method is "estimated" if any run's is)."""
    costs = [r.cost for r in runs if r.cost]
    joules = [c.get("joules") for c in costs]
    methods = sorted({c.get("method") for c in costs if c.get("method")})
    known = bool(costs) and all(j is not None for j in joules)
    return {"runs": len(runs), "flops": sum(c.get("flops") or 0 for c in costs),
            "cpu_seconds": round(sum(c.get("cpu_seconds") or 0 for c in costs), 3),
            "wall_seconds": round(sum(r.wall_seconds for r in runs), 3),
            "joules": round(sum(joules), 3) if known else None,
            "method": ("estimated" if "estimated" in methods else methods[0]) if known and methods else None,
            "co2_g": float(f"{sum(c.get('co2_g') or 0 for c in costs):.6g}") if known else None}


def _result(settings: dict, runs: list[RaceRun], thresholds: Sequence[float]) -> dict:
    return {"settings": settings, "runs": [asdict(r) | {"ms_per_step": r.ms_per_step} for r in runs],
            "rows": aggregate(runs, thresholds), "total_cost": total_cost(runs)}


def median_spread(values: Sequence[float | None]) -> dict:
    """Median over seeds with "not reached" (None) counted as infinitely late, the min and max of
    the reached values, and how many reached. The median is None when half or more did not."""
    reached = sorted(v for v in values if v is not None)
    keyed = sorted(math.inf if v is None else v for v in values)
    med = statistics.median(keyed) if keyed else math.inf
    return {"median": None if math.isinf(med) else med, "min": reached[0] if reached else None,
            "max": reached[-1] if reached else None, "reached": len(reached), "n": len(values)}


def aggregate(runs: Sequence[RaceRun], thresholds: Sequence[float]) -> list[dict]:
    """One row per recipe (in race order): steps and seconds per threshold, ms per step."""
    rows = []
    for recipe in dict.fromkeys(r.recipe for r in runs):
        mine = [r for r in runs if r.recipe == recipe]
        row = {"recipe": recipe, "ms_per_step": statistics.median(r.ms_per_step for r in mine),
               "final_val_acc": statistics.median((r.final_val_acc or 0.0) for r in mine)}
        for t in thresholds:
            hits = [r.hits[str(t)] for r in mine]
            row[f"steps@{t}"] = median_spread([h[0] if h else None for h in hits])
            row[f"seconds@{t}"] = median_spread([h[1] if h else None for h in hits])
            row[f"cpu@{t}"] = median_spread([h[2] if h and len(h) > 2 else None for h in hits])
            row[f"flops@{t}"] = median_spread([h[3] if h and len(h) > 3 else None for h in hits])
            row[f"joules@{t}"] = median_spread([h[4] if h and len(h) > 4 else None for h in hits])
        rows.append(row)
    return rows


def format_cell(ms: dict, digits: int = 0) -> str:
    """'340 (300–410)', '340 (300–410; 2/3)' or 'not reached' / 'not reached (1/3)'."""
    fmt = (lambda v: f"{v:.{digits}f}")
    part = "" if ms["reached"] == ms["n"] else f"; {ms['reached']}/{ms['n']}"
    if ms["median"] is None:
        return "not reached" + (f" ({ms['reached']}/{ms['n']})" if ms["reached"] else "")
    if ms["n"] == 1:
        return fmt(ms["median"])
    return f"{fmt(ms['median'])} ({fmt(ms['min'])}–{fmt(ms['max'])}{part})"


def format_table(rows: list[dict], thresholds: Sequence[float], claims: dict[str, str] | None = None) -> str:
    """A Markdown table: median (min–max) over seeds of steps, wall seconds and CPU seconds to
    each threshold, then GFLOPs and joules to each (runs.cost)."""
    head = ["recipe"]
    for t in thresholds:
        head += [f"steps to {t:.0%}", f"seconds to {t:.0%}", f"CPU s to {t:.0%}"]
    for t in thresholds:
        head += [f"GFLOP to {t:.0%}", f"J to {t:.0%}"]
    head += ["ms/step", "final val acc"] + (["paper's claim"] if claims else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["recipe"]]
        for t in thresholds:
            cells += [format_cell(row[f"steps@{t}"]), format_cell(row[f"seconds@{t}"], 1),
                      format_cell(row[f"cpu@{t}"], 1)]
        for t in thresholds:
            reached = row[f"steps@{t}"]["reached"]
            cells += [_cost_cell(_scaled(row.get(f"flops@{t}"), 1e-9), reached),
                      _cost_cell(row.get(f"joules@{t}"), reached)]
        cells += [f"{row['ms_per_step']:.1f}", f"{row['final_val_acc']:.3f}"]
        if claims:
            cells.append(claims.get(row["recipe"]) or "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_NONE = {"median": None, "min": None, "max": None, "reached": 0, "n": 0}


def _cost_cell(ms: dict | None, reached: int) -> str:
    """A FLOPs / joules cell; "–" where seeds reached the threshold but the cost is unknown."""
    if not ms or (reached and ms["reached"] < reached):
        return "–"
    return format_cell(ms, 1)


def _scaled(ms: dict | None, k: float) -> dict:
    if not ms:
        return _NONE
    return {**ms, **{f: None if ms[f] is None else ms[f] * k for f in ("median", "min", "max")}}


def plot_race(out: Path, runs: Sequence[RaceRun], thresholds: Sequence[float], path: Path) -> None:
    """Validation accuracy against steps (left) and seconds (right); one colour per recipe."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from groklab.report.plots import save_figure
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    names = list(dict.fromkeys(r.recipe for r in runs))
    tab20 = plt.get_cmap("tab20")  # more than 10 recipes: 20 colours, so none shares one
    colours = {name: f"C{i}" if len(names) <= 10 else tab20(i % 20) for i, name in enumerate(names)}
    for r in runs:
        recs = read_jsonl(out / r.dir / "metrics.jsonl")
        label = r.recipe if r.seed == min(x.seed for x in runs if x.recipe == r.recipe) else None
        for ax, key in zip(axes, ("step", "time")):
            ax.plot([x[key] for x in recs], [x["val_acc"] for x in recs], color=colours[r.recipe],
                    lw=1.2, alpha=0.8, label=label)
    for ax, xl in zip(axes, ("optimiser steps", "training seconds (evaluations included)")):
        for t in thresholds:
            ax.axhline(t, color="grey", ls=":", lw=0.8)
        ax.set_xlabel(xl)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("race to grok: validation accuracy per recipe and seed")
    save_figure(fig, path)


def load_race(out: str | Path) -> dict:
    return json.loads((Path(out) / "race.json").read_text())
