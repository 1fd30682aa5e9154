"""``groklab race``: run several accelerator recipes on one task over a few seeds and print
the table of steps and seconds to 95 % / 99 % validation accuracy (see ``accel.race``)."""
from __future__ import annotations

import sys

from groklab.config import ConfigError


def _names(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _seeds(text: str) -> list[int]:
    """'3' -> [0, 1, 2]; '0,5,7' -> [0, 5, 7]."""
    try:
        if "," in text:
            seeds = [int(s) for s in _names(text)]
        else:
            n = int(text)
            if n < 1:
                raise ValueError
            seeds = list(range(n))
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected a count >= 1 (3) or a list (0,1,2)") from None
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds {text!r}: seeds must be distinct and >= 0")
    return seeds


def _tuned(args, thresholds: list[float]) -> int:
    """--tune / --tasks: the fair race of ``accel.tune``."""
    from groklab.accel.race import format_table
    from groklab.accel.tune import RACE_TASKS, TUNED_RECIPES, run_tuned_race
    if args.task is not None:
        raise ConfigError("--task and --tasks/--tune do not mix: name the tasks with --tasks "
                          f"({', '.join(RACE_TASKS)})")
    tasks = _names(args.tasks) if args.tasks is not None else ["add113"]
    for t in tasks:
        if t not in RACE_TASKS:
            raise ConfigError(f"--tasks: unknown race task {t!r}; tasks: {', '.join(RACE_TASKS)}")
    if args.tune is not None and args.tune < 0:
        raise ConfigError(f"--tune {args.tune}: expected a number of trials >= 0")
    if args.tune_split < 0:
        raise ConfigError(f"--tune-split {args.tune_split}: expected a seed >= 0")
    recipes = _names(args.recipes) if args.recipes else list(TUNED_RECIPES)
    seeds = _seeds(args.seeds) if args.seeds is not None else list(range(5))
    result = run_tuned_race(recipes, tasks, args.tune or 0, seeds, out=args.out, steps=args.steps,
                            eval_every=args.eval_every, thresholds=thresholds, overrides=args.set,
                            tune_split=args.tune_split, log=lambda s: print(s, file=sys.stderr, flush=True))
    for task, res in result["tasks"].items():
        print(f"{task}: {res['what']}")
        print(format_table(res["rows"], sorted(thresholds)))
    return 0


def cmd_race(args) -> int:
    from groklab.accel.race import DEFAULT_RECIPES, format_table, run_race
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps {args.steps}: expected an integer >= 1")
    if args.eval_every < 1:
        raise ConfigError(f"--eval-every {args.eval_every}: expected an integer >= 1")
    try:
        thresholds = [float(t) for t in _names(args.thresholds)]
    except ValueError:
        raise ConfigError(f"--thresholds {args.thresholds!r}: expected numbers like 0.95,0.99") from None
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads {args.threads}: expected an integer >= 1")
        import torch
        torch.set_num_threads(args.threads)
    if args.tune is not None or args.tasks is not None:
        return _tuned(args, thresholds)
    task = "nanda" if args.task is None else None if args.task == "own" else args.task
    result = run_race(_names(args.recipes or ",".join(DEFAULT_RECIPES)), task=task,
                      seeds=_seeds(args.seeds if args.seeds is not None else "3"), out=args.out,
                      steps=args.steps, eval_every=args.eval_every, thresholds=thresholds,
                      overrides=args.set, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(format_table(result["rows"], sorted(thresholds)))
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
    p.add_argument("--tune-split", type=int, default=1, help="task.split_seed of the tuning runs (default: 1)")
    p.add_argument("--seeds", default=None, help="a count (3 -> 0,1,2) or a list (0,4,7) "
                   "(default: 3; with --tune/--tasks: 5)")
    p.add_argument("--steps", type=int, default=None, help="step budget of every run "
                   "(default: each recipe's train.steps)")
    p.add_argument("--eval-every", type=int, default=10, help="evaluation interval in steps, the "
                   "resolution of the table (default: %(default)s)")
    p.add_argument("--thresholds", default="0.95,0.99", help="validation accuracies (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of every run, e.g. --set train.device=cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", help="race directory to create (default runs/race-<time>)")
    p.set_defaults(func=cmd_race)
