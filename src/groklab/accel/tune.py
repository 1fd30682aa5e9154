"""A fair race: every recipe tuned with the same budget, then raced on fresh seeds, on several tasks.

``groklab race --tune N --tasks add113,mul97,parity``:

1. **Tasks** (``RACE_TASKS``) fix the data, the model, the batch and the step budget. A recipe
   (a preset) brings only its *method*: the ``optim`` and ``accel`` sections, ``train.loss``,
   ``train.loss_dtype``, ``train.autocast`` and ``model.init_scale`` (and its MLP widths on an MLP task:
   ``mlp-fast``'s narrower MLP is part of that recipe).
2. **Tuning**: for each (task, recipe), Optuna's TPE sampler (seeded) runs exactly ``N`` trials
   over the recipe's learning rate and weight decay, log-uniform within ×1/10–×10 of its own
   values (×1/30–×30 around 1e-3 for a recipe without decay, whose own 0 is then tried as the
   range's bottom), plus its key knob (``KNOBS``: Grokfast's λ ×1/4–×4, the weight-norm target
   ×1/2–×2). The first trial is always the recipe's own settings. Tuning runs use the data split
   ``task.split_seed = tune_split`` (not the race's) and model seeds 10,000 + trial, so the race
   below never sees them. A trial's value is its steps to the top threshold; one that did not
   reach it scores budget × (2 − best validation accuracy). Steps are counted at the evaluation
   interval, so trials often tie at the best value: each tied trial then runs once more with
   model seed 20,000 + trial, and the lowest sum of its two values wins (then the earlier trial).
3. **Race**: the best trial's settings, on the task's own split, seeds 0..n−1 (``accel.race``).

Every recipe gets the same number of trials and the same budget; both are written into
race.json (``tune.trials``, ``tune.per_recipe[task][recipe].trials``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from groklab.config import ConfigError, RunConfig, parse_overrides, set_key, validate

MAX_TRIALS = 10_000  # Optuna trials per recipe and task
TUNED_RECIPES = ("mlp-adamw", "mlp-adam-l2", "mlp-grokfast-ema", "mlp-grokfast-ma", "mlp-orthograd",
                 "mlp-stablemax", "mlp-weight-norm", "mlp-fast", "mlp-muon", "mlp-egd", "mlp-fast-bf16",
                 "mlp-muon-bf16")
TUNE_SEED_BASE = 10_000
TIE_SEED_BASE = 20_000  # model seed of a tied trial's second run: TIE_SEED_BASE + trial

# name -> (what, the preset whose task/model/train are the task's, overrides on it)
RACE_TASKS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "add113": ("a+b mod 113, 30 % training data, MLP 226-200-200-113 (Prieto et al.), full batch",
               "mlp-adamw", ()),
    "mul97": ("x·y mod 97, 50 % training data, Power et al.'s 2-layer pre-LN transformer, batch 512 "
              "(Grokfast's setting)", "grokfast-baseline", ("train.steps=5000",)),
    "parity": ("sparse parity, 40 bits, 3 relevant, 1,000 samples, 50 % training data, MLP 200-200, "
               "full batch", "mlp-adamw",
               ("task.name=parity", "task.n_bits=40", "task.k=3", "task.n_samples=1000", "task.frac=0.5")),
}

# (recipe, task) -> the paper's own claim for that method, shown beside the measured row
CLAIMS = {
    ("mlp-grokfast-ma", "mul97"): "Lee et al.: 790 steps to 95 % (baseline 39,890)",
    ("mlp-grokfast-ema", "mul97"): "Lee et al.: 910 steps to 95 % (baseline 39,890)",
    ("mlp-adam-l2", "mul97"): "Lee et al. baseline (Adam): 39,890 steps to 95 %",
    ("mlp-orthograd", "add113"): "Prieto et al.: groks within 300 epochs (at 40 % data)",
    ("mlp-stablemax", "add113"): "Prieto et al.: groks without weight decay (80k-epoch budget)",
    ("mlp-muon", "add113"): "Tveit et al.: mean grokking epoch 153 → 103 vs AdamW (1.5×)",
    ("mlp-muon", "mul97"): "Tveit et al.: mean grokking epoch 153 → 103 vs AdamW (1.5×)",
    ("mlp-egd", "add113"): "Pasand & Dohmatob: plateau removed on modular addition",
    ("mlp-egd", "parity"): "Pasand & Dohmatob: plateau removed on sparse parity",
    ("mlp-fast", "add113"): "groklab's own, tuning split: 170 steps (lr 0.03, β2 0.95; 250 at lr 0.01, β2 0.99)",
}

# recipe -> its key knob beyond lr and wd: (key, factor below, factor above)
KNOBS = {"mlp-grokfast-ema": ("accel.lamb", 4.0, 4.0), "mlp-grokfast-ma": ("accel.lamb", 4.0, 4.0),
         "mlp-weight-norm": ("accel.weight_norm", 2.0, 2.0), "mlp-fast": ("accel.weight_norm", 2.0, 2.0),
         "mlp-fast-bf16": ("accel.weight_norm", 2.0, 2.0)}


def task_config(recipe: str, task: str, seed: int, steps: int | None = None, eval_every: int = 10,
                stop_at: float = 0.99, overrides: Sequence[str] = (), split_seed: int | None = None,
                params: dict | None = None) -> RunConfig:
    """The config of ``recipe``'s method on race task ``task`` (see the module docstring), with
    the race's seed, evaluation and stopping settings, ``params`` (tuned keys), then overrides."""
    from groklab.presets import get_preset
    if task not in RACE_TASKS:
        raise ConfigError(f"unknown race task {task!r}; tasks: {', '.join(RACE_TASKS)}")
    _, base_name, base_over = RACE_TASKS[task]
    cfg, method = get_preset(base_name), get_preset(recipe)
    for k, v in parse_overrides(list(base_over)):
        set_key(cfg, k, v)
    cfg.optim, cfg.accel = method.optim.model_copy(), method.accel.model_copy()
    cfg.train.loss, cfg.train.loss_dtype = method.train.loss, method.train.loss_dtype
    cfg.train.autocast = method.train.autocast
    cfg.model.init_scale = method.model.init_scale
    if cfg.model.arch == "mlp" and method.model.arch == "mlp":
        cfg.model.hidden = list(method.model.hidden)
    cfg.preset = recipe
    t = cfg.train
    t.seed = t.batch_seed = seed
    if steps is not None:
        t.steps = steps
    t.eval_every, t.stop_threshold, t.patience = eval_every, stop_at, 0
    t.n_checkpoints, t.checkpoint_every, t.measure_every = 0, 0, 0
    t.forecast = False  # monitoring, not the method: off like checkpoints and measures
    if split_seed is not None:
        cfg.task.split_seed = split_seed
    for k, v in (params or {}).items():
        set_key(cfg, k, v)
    for k, v in parse_overrides(list(overrides)):
        set_key(cfg, k, v)
    return validate(cfg)


def search_space(recipe: str, cfg: RunConfig) -> list[tuple[str, float, float, float]]:
    """[(key, low, high, the recipe's own value)], all searched log-uniformly."""
    o = cfg.optim
    centre = o.wd if o.wd > 0 else 1e-3
    wd_lo, wd_hi = (o.wd / 10, o.wd * 10) if o.wd > 0 else (centre / 30, centre * 30)
    space = [("optim.lr", o.lr / 10, min(o.lr * 10, 1e6), o.lr),
             ("optim.wd", wd_lo, min(wd_hi, 1e4), o.wd if o.wd > 0 else wd_lo)]
    if recipe in KNOBS:
        key, down, up = KNOBS[recipe]
        sec, name = key.split(".")
        v = float(getattr(getattr(cfg, sec), name))
        if v > 0:
            space.append((key, v / down, v * up, v))
    return space


def score(records: list[dict], threshold: float, budget: int) -> float:
    """Steps to ``threshold``, or budget × (2 − best validation accuracy) if never reached."""
    for r in records:
        if r["val_acc"] >= threshold:
            return float(r["step"])
    best = max((r["val_acc"] for r in records), default=0.0)
    return budget * (2.0 - best)


def tune(recipe: str, task: str, n_trials: int, out: Path, *, steps: int | None, eval_every: int,
         threshold: float, overrides: Sequence[str], split_seed: int, seed: int = 0,
         log: Callable[[str], None] | None = None) -> dict:
    """Tune ``recipe`` on ``task`` with exactly ``n_trials`` Optuna trials; returns
    ``{"trials": n, "space": ..., "values": [...], "params": [...], "best": {...}, "best_value": v}``."""
    import optuna

    import groklab
    from groklab.runs.rundir import read_jsonl
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = task_config(recipe, task, 0, steps, eval_every, threshold, overrides, split_seed)
    space = search_space(recipe, base)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({k: own for k, _, _, own in space})
    costs: list[dict] = []

    def run_trial(params: dict, model_seed: int, name: str) -> tuple[float, str]:
        cfg = task_config(recipe, task, model_seed, steps, eval_every, threshold, overrides, split_seed, params)
        r = groklab.run(cfg, out=out / name, progress=False, report=False)
        costs.append(r.summary.get("cost") or {})
        return score(read_jsonl(out / name / "metrics.jsonl"), threshold, cfg.train.steps), r.summary["status"]

    def objective(trial) -> float:
        params = {k: trial.suggest_float(k, lo, hi, log=True) for k, lo, hi, _ in space}
        value, status = run_trial(params, TUNE_SEED_BASE + trial.number, f"trial{trial.number}")
        if log:
            log(f"tune {task}/{recipe} trial {trial.number}: "
                f"{', '.join(f'{k}={v:.3g}' for k, v in params.items())} -> {value:.0f} ({status})")
        return value

    study.optimize(objective, n_trials=n_trials)
    done = [t for t in study.trials if t.value is not None]
    tied = [t for t in done if t.value == study.best_value]
    ties = []
    if len(tied) > 1:  # a tie at the evaluation interval: each tied trial again on another model seed
        for t in tied:
            again, _ = run_trial(t.params, TIE_SEED_BASE + t.number, f"tie{t.number}")
            ties.append({"trial": t.number, "params": dict(t.params), "value": t.value, "again": again})
            if log:
                log(f"tune {task}/{recipe} tie-break: trial {t.number} again -> {again:.0f}")
    best = min(ties, key=lambda x: (x["value"] + x["again"], x["trial"]))["params"] if ties else study.best_params
    return {"trials": len(study.trials), "space": [list(s) for s in space],
            "values": [t.value for t in done], "params": [t.params for t in done],
            "best": dict(best), "best_value": study.best_value, "ties": ties,
            "cost": {"flops": sum(c.get("flops") or 0 for c in costs),
                     "cpu_seconds": round(sum(c.get("cpu_seconds") or 0 for c in costs), 3),
                     "joules": round(sum(c["joules"] for c in costs), 3)
                     if costs and all(c.get("joules") is not None for c in costs) else None}}


def run_tuned_race(recipes: Sequence[str] = TUNED_RECIPES, tasks: Sequence[str] = ("add113",),
                   n_trials: int = 0, seeds: Sequence[int] = (0, 1, 2, 3, 4),
                   out: str | Path | None = None, steps: int | None = None, eval_every: int = 10,
                   thresholds: Sequence[float] = (0.95, 0.99), overrides: Sequence[str] = (),
                   tune_split: int = 1, log: Callable[[str], None] | None = print) -> dict:
    """Tune (if ``n_trials``) and race every recipe on every task; writes race.json, race.md and
    race_<task>.png into ``out`` (one sub-directory of runs per task); returns race.json."""
    from groklab.accel.race import check_seeds, check_thresholds, format_table
    from groklab.api import make_out
    from groklab.presets import PRESETS
    from groklab.runs.lock import dir_lock
    from groklab.runs.rundir import atomic_write_text
    if not recipes:
        raise ConfigError("race: no recipes given; e.g. --recipes mlp-adamw,mlp-muon")
    if not tasks:
        raise ConfigError(f"race: no tasks given; tasks: {', '.join(RACE_TASKS)}")
    for name in recipes:
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(sorted(PRESETS))}")
    seeds, thresholds = check_seeds(seeds), check_thresholds(thresholds)
    if not (isinstance(n_trials, int) and 0 <= n_trials <= MAX_TRIALS):
        raise ConfigError(f"--tune {n_trials!r}: out of range; allowed: an integer from 0 to {MAX_TRIALS:,}")
    for task in tasks:  # fail on a bad task, recipe or override before any training
        for r in recipes:
            task_config(r, task, 0, steps, eval_every, thresholds[-1], overrides, tune_split)
    out = make_out(out if out is not None else Path("runs") / f"race-{time.strftime('%Y%m%d-%H%M%S')}")
    settings = {"recipes": list(recipes), "tasks": list(tasks), "seeds": list(seeds), "steps": steps,
                "eval_every": eval_every, "thresholds": thresholds, "overrides": list(overrides),
                "tune": {"trials": n_trials, "sampler": "optuna TPE, seed 0, the recipe's own settings first",
                         "split_seed": tune_split, "model_seeds": f"{TUNE_SEED_BASE} + trial"}}

    def tuned_for(task: str) -> dict[str, dict]:
        return {r: tune(r, task, n_trials, out / "tune" / task / r, steps=steps, eval_every=eval_every,
                        threshold=thresholds[-1], overrides=overrides, split_seed=tune_split, log=log)
                for r in recipes} if n_trials > 0 else {}

    with dir_lock(out, "race directory"):
        result = race_tasks(out, settings, tuned_for, log)
        atomic_write_text(out / "race.md", race_markdown(result, thresholds, format_table) + "\n")
    return result


def race_tasks(out: Path, settings: dict, tuned_for: Callable[[str], dict[str, dict]],
               log: Callable[[str], None] | None) -> dict:
    """Race ``settings``' recipes on each of its tasks, each with the settings ``tuned_for(task)``
    gives ({recipe: {"best": params, ...}}), into ``out``/<task>; writes race.json after each task
    and returns it."""
    from groklab.accel.race import _race, total_cost
    from groklab.runs.provenance import provenance
    from groklab.runs.rundir import write_json
    s, thresholds = settings, settings["thresholds"]
    result: dict = {"settings": settings, "provenance": provenance(), "tasks": {},
                    "tune": {"trials": s["tune"]["trials"], "per_recipe": {}}}
    all_runs = []
    for task in s["tasks"]:
        tuned = tuned_for(task)
        result["tune"]["per_recipe"][task] = tuned
        configs = {(r, seed): task_config(r, task, seed, s["steps"], s["eval_every"], thresholds[-1],
                                          s["overrides"], params=tuned.get(r, {}).get("best"))
                   for r in s["recipes"] for seed in s["seeds"]}
        res, runs = _race(out / task, configs, {**settings, "task": task}, thresholds, log,
                          plot=out / f"race_{task}.png", with_runs=True)
        all_runs += runs
        over = f" (overrides: {', '.join(s['overrides'])})" if s["overrides"] else ""
        result["tasks"][task] = {"what": RACE_TASKS[task][0] + over, **res}
        result["total_cost"] = total_cost(all_runs)
        write_json(out / "race.json", result)
    return result


def race_markdown(result: dict, thresholds: Sequence[float], format_table) -> str:
    """One table per task, the paper's claim beside each row, the tuned settings under it."""
    s = result["settings"]
    lines = [f"Tuned race: {s['tune']['trials']} Optuna trials per recipe and task (tuning split seed "
             f"{s['tune']['split_seed']}), then seeds {', '.join(map(str, s['seeds']))} on the task's own "
             f"split; budget {s['steps'] or 'each task'} steps, evaluation every {s['eval_every']}."]
    for task, res in result["tasks"].items():
        claims = {row["recipe"]: CLAIMS.get((row["recipe"], task), "") for row in res["rows"]}
        lines += ["", f"### {task}: {res['what']}", "", format_table(res["rows"], thresholds, claims)]
        tuned = result["tune"]["per_recipe"].get(task) or {}
        if tuned:
            lines += ["", "Tuned settings (best of the trials):", ""]
            lines += [f"* {r}: " + ", ".join(f"{k}={v:.3g}" for k, v in t["best"].items()) +
                      f" ({t['trials']} trials, best score {t['best_value']:.0f})" for r, t in tuned.items()]
    tcs = [t.get("cost") or {} for per in result["tune"]["per_recipe"].values() for t in per.values()]
    if tcs:
        joules = [t.get("joules") for t in tcs]
        j = f"{sum(joules):.1f} J" if all(v is not None for v in joules) else "joules not known for every trial"
        lines += ["", f"Cost of the tuning: {sum(t.get('flops') or 0 for t in tcs) / 1e12:.3g} TFLOP, "
                      f"{sum(t.get('cpu_seconds') or 0 for t in tcs):.1f} CPU s, {j}."]
    c = result.get("total_cost") or {}
    if c:
        lines += ["", f"Total cost of the race runs (tuning excluded): {c.get('runs')} runs, "
                      f"{(c.get('flops') or 0) / 1e12:.3g} TFLOP, {c.get('cpu_seconds')} CPU s, "
                      f"{c.get('joules')} J ({c.get('method')})."]
    return "\n".join(lines)
