"""Race a tuned race again without tuning it again: ``groklab race --replay DIR``.

A tuned race (``accel.tune``) spends most of its time in the tuning: 30 trials per recipe cost
25-35 minutes on ``mul97``, the five race seeds 1-3. Its race.json keeps everything its rows
came from: the tasks, recipes, seeds, step budget, evaluation interval, thresholds, overrides
and each recipe's tuned settings. ``replay_race`` reads them back and runs the race rows again
(the same configs ``run_tuned_race`` made), so that a table can be re-measured at a later commit,
on a quiet machine or on another CPU at the cost of the race alone.

Each run's steps to every threshold are compared with the recorded ones (``replay`` in the new
race.json). On the same machine and code, training is deterministic, so a difference means the
training code changed (or, on another CPU, that its arithmetic rounds differently); the
seconds are measured afresh and are expected to differ.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from groklab.accel.tune import RACE_TASKS, race_markdown, race_tasks
from groklab.config import ConfigError


def _need(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise ConfigError(f"--replay {path}: {what}; expected the race.json of a `groklab race --tune N` run")


def _strings(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def read_tuned_race(source: str | Path) -> tuple[Path, dict]:
    """(path, race.json) of a finished tuned race, its settings and tuned values checked: a
    missing or damaged file, or one of another shape, is a one-line ConfigError."""
    from groklab.presets import PRESETS
    from groklab.runs.read import read_object
    path = Path(source)
    path = path / "race.json" if path.is_dir() else path
    _need(path.is_file(), path, "no such file")
    r = read_object(path)
    s, tune = r.get("settings"), r.get("tune")
    _need(isinstance(s, dict) and isinstance(tune, dict), path, "no settings or tune section")
    _need(_strings(s.get("tasks")) and s["tasks"] and all(t in RACE_TASKS for t in s["tasks"]), path,
          f"settings.tasks is not a list of race tasks ({', '.join(RACE_TASKS)})")
    _need(_strings(s.get("recipes")) and s["recipes"] and all(x in PRESETS for x in s["recipes"]), path,
          "settings.recipes is not a list of presets")
    _need(_strings(s.get("overrides")), path, "settings.overrides is not a list of KEY=VALUE")
    for k in ("seeds", "thresholds"):
        _need(isinstance(s.get(k), list) and s[k], path, f"settings.{k} is not a list")
    _need(s.get("steps") is None or _whole(s["steps"]), path, "settings.steps is not a step count")
    _need(_whole(s.get("eval_every")), path, "settings.eval_every is not a step count")
    _need(isinstance(s.get("tune"), dict) and _whole(s["tune"].get("trials")), path, "settings.tune.trials is missing")
    per = tune.get("per_recipe")
    _need(isinstance(per, dict), path, "tune.per_recipe is missing")
    for task in s["tasks"]:
        got = per.get(task, {})
        _need(isinstance(got, dict), path, f"tune.per_recipe.{task} is not an object")
        for recipe, t in got.items():
            best = t.get("best") if isinstance(t, dict) else None
            _need(isinstance(best, dict) and all(isinstance(k, str) and _number(v) for k, v in best.items()),
                  path, f"tune.per_recipe.{task}.{recipe}.best is not an object of numbers")
    return path, r


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare(recorded: dict, now: dict) -> dict:
    """Each run's step at each threshold, recorded against now: ``{"same": bool, "runs": n,
    "differs": [{task, recipe, seed, threshold, recorded, now}, ...]}``; a run missing from the
    record counts as a difference."""
    differs, n = [], 0
    for task, res in now["tasks"].items():
        old = {(r.get("recipe"), r.get("seed")): r for r in recorded.get("tasks", {}).get(task, {}).get("runs", [])
               if isinstance(r, dict)}
        for run in res["runs"]:
            n += 1
            before = (old.get((run["recipe"], run["seed"])) or {}).get("hits", {})
            for thr, hit in run["hits"].items():
                was = before.get(thr, "missing")
                was = was[0] if isinstance(was, list) and was else was
                step = hit[0] if hit else None
                if was != step:
                    differs.append({"task": task, "recipe": run["recipe"], "seed": run["seed"],
                                    "threshold": thr, "recorded": was, "now": step})
    return {"same": not differs, "runs": n, "differs": differs}


def replay_race(source: str | Path, recipes: Sequence[str] | None = None, out: str | Path | None = None,
                log: Callable[[str], None] | None = print) -> dict:
    """Race again the rows of the tuned race at ``source`` (a race directory or its race.json):
    all its recipes, or ``recipes`` among them, with the recorded settings and tuned values;
    writes race.json (with ``replay``), race.md and the plots into ``out``; returns race.json."""
    from groklab.accel.race import check_seeds, check_thresholds, format_table
    from groklab.accel.tune import task_config
    from groklab.api import make_out
    from groklab.runs.lock import dir_lock
    from groklab.runs.rundir import atomic_write_text, write_json
    path, rec = read_tuned_race(source)
    s = dict(rec["settings"])
    if recipes is not None:
        for r in recipes:
            if r not in s["recipes"]:
                raise ConfigError(f"--recipes: {r!r} is not in the replayed race; "
                                  f"its recipes: {', '.join(s['recipes'])}")
        s["recipes"] = list(recipes)
    s["seeds"], s["thresholds"] = check_seeds(s["seeds"]), check_thresholds(s["thresholds"])
    per = rec["tune"]["per_recipe"]
    for task in s["tasks"]:  # a bad override or tuned value fails here, before any directory
        for r in s["recipes"]:
            task_config(r, task, 0, s["steps"], s["eval_every"], s["thresholds"][-1], s["overrides"],
                        params=per.get(task, {}).get(r, {}).get("best"))
    s["replay_of"] = str(path.resolve())
    out = make_out(out if out is not None else Path("runs") / f"replay-{time.strftime('%Y%m%d-%H%M%S')}")

    def tuned_for(task: str) -> dict[str, dict]:
        return {r: t for r, t in per.get(task, {}).items() if r in s["recipes"]}

    with dir_lock(out, "race directory"):
        result = race_tasks(out, s, tuned_for, log)
        result["replay"] = compare(rec, result)
        write_json(out / "race.json", result)
        atomic_write_text(out / "race.md", race_markdown(result, s["thresholds"], format_table) + "\n\n"
                          + replay_line(result["replay"], path) + "\n\n"
                          + f"Recorded: {where(rec.get('provenance'))}. Replayed: {where(result['provenance'])}.\n")
    return result


def where(prov) -> str:
    """'commit abc1234 with local changes, torch 2.13.0, <CPU>, 1 thread' from a race.json's provenance."""
    if not isinstance(prov, dict):
        return "commit and machine not recorded"
    commit = prov.get("commit")
    c = "no git commit" if not commit else \
        f"commit {str(commit)[:7]}" + (" with local changes" if prov.get("dirty") else "")
    n = prov.get("threads")
    return f"{c}, torch {prov.get('torch')}, {prov.get('cpu')}, {n} thread{'s' if n != 1 else ''}"


def replay_line(rep: dict, source: Path | str) -> str:
    """One line: whether every run reached every threshold at the recorded step."""
    if rep["same"]:
        return f"Replay of {source}: every run ({rep['runs']}) reached every threshold at the recorded step."
    shown = "; ".join(f"{d['task']}/{d['recipe']} seed {d['seed']} at {d['threshold']}: "
                      f"{d['recorded']} then, {d['now']} now" for d in rep["differs"][:10])
    more = f" (and {len(rep['differs']) - 10} more)" if len(rep["differs"]) > 10 else ""
    return f"Replay of {source}: {len(rep['differs'])} differences from the recorded steps: {shown}{more}."
