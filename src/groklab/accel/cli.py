"""``groklab race``: run several accelerator recipes on one task over a few seeds and print
the table of steps and seconds to 95 % / 99 % validation accuracy (see ``accel.race``)."""
from __future__ import annotations

import sys

from groklab.accel.race import MAX_SEEDS
from groklab.accel.tune import MAX_TRIALS
from groklab.config import BIG, SEED_MAX, ConfigError

MAX_THREADS = 1024


def _names(flag: str, text: str, allowed=None, noun: str = "name") -> list[str]:
    """'a,b' -> ['a', 'b']: no empty item, no repeat, each in ``allowed`` (if given)."""
    names = [s.strip() for s in text.split(",")]
    if "" in names:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated items, none of them empty")
    if len(set(names)) != len(names):
        raise ConfigError(f"{flag} {text!r}: an item is repeated")
    for n in names:
        if allowed is not None and n not in allowed:
            raise ConfigError(f"{flag}: unknown {noun} {n!r}; allowed: {', '.join(allowed)}")
    return names


def _count(flag: str, value: int | None, lo: int, hi: int) -> int | None:
    if value is not None and not lo <= value <= hi:
        raise ConfigError(f"{flag} {value}: out of range; allowed: an integer from {lo:,} to {hi:,}")
    return value


def _seeds(text: str) -> list[int]:
    """'3' -> [0, 1, 2]; '0,5,7' -> [0, 5, 7]."""
    what = f"expected a count from 1 to {MAX_SEEDS:,} (3) or a list of distinct seeds from 0 to {SEED_MAX:,} (0,4,7)"
    items = _names("--seeds", text) if "," in text else None  # ConfigError is a ValueError: not in the try
    try:
        seeds = [int(s) for s in items] if items is not None else list(range(_count_of(text)))
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: {what}") from None
    if len(seeds) > MAX_SEEDS or any(not 0 <= s <= SEED_MAX for s in seeds):
        raise ConfigError(f"--seeds {text!r}: {what}")
    return seeds


def _count_of(text: str) -> int:
    n = int(text)
    if not 1 <= n <= MAX_SEEDS:
        raise ValueError(n)
    return n


def _thresholds(text: str) -> list[float]:
    """'0.95,0.99' -> [0.95, 0.99]: at least one, each a validation accuracy in (0, 1]."""
    items = _names("--thresholds", text)
    try:
        ts = [float(t) for t in items]
    except ValueError:
        ts = []
    if not ts or not all(0 < t <= 1 for t in ts):  # NaN fails the comparison too
        raise ConfigError(f"--thresholds {text!r}: expected distinct accuracies in (0, 1] like 0.95,0.99")
    return ts


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_race(args) -> int:
    """Every option is checked before anything changes (a directory, torch's thread count)."""
    from groklab.accel.race import DEFAULT_RECIPES, format_table, run_race
    from groklab.accel.tune import RACE_TASKS, TUNED_RECIPES, run_tuned_race
    from groklab.presets import PRESETS
    if args.replay is not None:
        return _replay(args)
    tuned = args.tune is not None or args.tasks is not None  # the fair race of ``accel.tune``
    args.eval_every = 10 if args.eval_every is None else args.eval_every
    args.tune_split = 1 if args.tune_split is None else args.tune_split
    args.thresholds = "0.95,0.99" if args.thresholds is None else args.thresholds
    _count("--steps", args.steps, 1, BIG)
    _count("--eval-every", args.eval_every, 1, BIG)
    _count("--threads", args.threads, 1, MAX_THREADS)
    _count("--tune", args.tune, 0, MAX_TRIALS)
    _count("--tune-split", args.tune_split, 0, SEED_MAX)
    thresholds = _thresholds(args.thresholds)
    seeds = _seeds(args.seeds) if args.seeds is not None else list(range(5 if tuned else 3))
    recipes = _names("--recipes", args.recipes, sorted(PRESETS), "preset") if args.recipes is not None else \
        list(TUNED_RECIPES if tuned else DEFAULT_RECIPES)
    if tuned and args.task is not None:
        raise ConfigError("--task and --tasks/--tune do not mix: name the tasks with --tasks "
                          f"({', '.join(RACE_TASKS)})")
    tasks = _names("--tasks", args.tasks, list(RACE_TASKS), "race task") if args.tasks is not None else ["add113"]
    if args.task is not None:
        _names("--task", args.task, ["own", *sorted(PRESETS)], "preset")
    if args.threads is not None:
        import torch
        torch.set_num_threads(args.threads)
    if tuned:
        result = run_tuned_race(recipes, tasks, args.tune or 0, seeds, out=args.out, steps=args.steps,
                                eval_every=args.eval_every, thresholds=thresholds, overrides=args.set,
                                tune_split=args.tune_split, log=_log)
        for task, res in result["tasks"].items():
            print(f"{task}: {res['what']}")
            print(format_table(res["rows"], sorted(thresholds)))
        return 0
    task = "nanda" if args.task is None else None if args.task == "own" else args.task
    result = run_race(recipes, task=task, seeds=seeds, out=args.out, steps=args.steps,
                      eval_every=args.eval_every, thresholds=thresholds, overrides=args.set, log=_log)
    print(format_table(result["rows"], sorted(thresholds)))
    return 0


REPLAY_FIXED = ("task", "tasks", "tune", "tune_split", "seeds", "steps", "eval_every", "thresholds")


def _replay(args) -> int:
    """``--replay DIR``: the race's own settings; only --recipes, --threads and --out may be given."""
    from groklab.accel.race import format_table
    from groklab.accel.replay import read_tuned_race, replay_line, replay_race
    given = [f"--{k.replace('_', '-')}" for k in REPLAY_FIXED if getattr(args, k) is not None]
    if given or args.set:
        raise ConfigError(f"--replay takes its settings from the replayed race; {', '.join(given or ['--set'])} "
                          "cannot be given with it (allowed: --recipes, --threads, --out)")
    recipes = _names("--recipes", args.recipes) if args.recipes is not None else None
    _count("--threads", args.threads, 1, MAX_THREADS)
    read_tuned_race(args.replay)  # a bad file fails before torch's thread count changes
    if args.threads is not None:
        import torch
        torch.set_num_threads(args.threads)
    result = replay_race(args.replay, recipes, out=args.out, log=_log)
    for task, res in result["tasks"].items():
        print(f"{task}: {res['what']}")
        print(format_table(res["rows"], result["settings"]["thresholds"]))
    print(replay_line(result["replay"], result["settings"]["replay_of"]))
    return 0


def register(subparsers) -> None:
    from groklab.accel.race import DEFAULT_RECIPES
    p = subparsers.add_parser(
        "race", help="race accelerator recipes to 95 %% / 99 %% validation accuracy",
        description="Run each recipe (a preset) on one task for a few seeds and print the median "
                    "(min–max) steps and training seconds to each validation-accuracy threshold.")
    from groklab.accel.tune import RACE_TASKS, TUNED_RECIPES
    p.add_argument("--recipes", default=None,
                   help=f"comma-separated presets (default: {','.join(DEFAULT_RECIPES)}; with --tune/--tasks: "
                        f"{','.join(TUNED_RECIPES)})")
    p.add_argument("--task", default=None,
                   help="preset whose task every recipe solves, or 'own' to keep each recipe's "
                        "(default: nanda = a+b mod 113, 30 %% training data)")
    p.add_argument("--tasks", default=None,
                   help=f"race tasks for the fair race, comma-separated: {', '.join(RACE_TASKS)} "
                        "(each fixes data, model and batch; a recipe brings its method)")
    p.add_argument("--tune", type=int, default=None, metavar="N",
                   help="tune every recipe's lr, wd and key knob with the same N Optuna trials on a "
                        "tuning split, then race the tuned recipes on fresh seeds")
    p.add_argument("--tune-split", type=int, default=None, help="task.split_seed of the tuning runs (default: 1)")
    p.add_argument("--seeds", default=None, help="a count (3 -> 0,1,2) or a list (0,4,7) "
                   "(default: 3; with --tune/--tasks: 5)")
    p.add_argument("--steps", type=int, default=None, help="step budget of every run "
                   "(default: each recipe's train.steps)")
    p.add_argument("--eval-every", type=int, default=None, help="evaluation interval in steps, the "
                   "resolution of the table (default: 10)")
    p.add_argument("--thresholds", default=None, help="validation accuracies (default: 0.95,0.99)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of every run, e.g. --set train.device=cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", help="race directory to create (default runs/race-<time>)")
    p.add_argument("--replay", default=None, metavar="DIR",
                   help="race the rows of the tuned race in DIR again with its recorded settings and "
                        "tuned values, no tuning, and say whether every run reached each threshold at the "
                        "recorded step (with --recipes: some of its recipes)")
    p.set_defaults(func=cmd_race)
