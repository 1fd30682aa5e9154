"""Optimize mode: Optuna searches the axes for the fewest steps (or seconds) to generalize.

Spec section::

    mode = "optimize"
    [optimize]
    n_trials = 30              # finished trials wanted in total (a rerun continues to this)
    metric = "steps"           # steps | wall_seconds, until validation accuracy >= threshold
    threshold = 0.9
    sampler = "tpe"            # tpe (default) | gp | random
    sampler_seed = 0
    penalty = 2.0              # a run that never reaches the threshold counts budget × penalty
    stop_on_success = true     # stop a run once it reaches the threshold (train.stop_threshold)
    prune = {metric = "train_acc", below = 0.9, at_step = 500}   # optional; or the forecast
    # pruner {risk = 0.02, target = 0.9} (docs/forecast.md), or a list of both

Axes become the search space: a list is categorical, ``range`` uniform, ``log`` log-uniform
(integers for integer keys). Each trial runs every seed and reports the mean. "budget" is
``train.steps`` for the steps metric and the run's own wall seconds for the seconds metric; such
a trial is marked ``censored``. Pruning happens only on the named training metric
(train_acc / train_loss): validation loss rises for thousands of steps before grokking
(Power et al. 2022, arXiv 2201.02177), so it is never a pruning signal.

The driver asks and tells (one process talks to the storage); workers only train. The study
lives in ``study.journal`` in the sweep directory (Optuna's journal file) unless ``--storage``
names a database (``postgresql://...`` for several machines). A trial left RUNNING by a killed
driver on this host is marked failed and its parameters are enqueued again; the new trial
reuses the old trial's run directories, so finished seeds are read back and a seed killed
half-way resumes from its checkpoint: nothing finished is lost or run twice.
"""
from __future__ import annotations

import math
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

from groklab.config import ConfigError
from groklab.runs.rundir import read_jsonl
from groklab.sweep.point import PRUNE_METRICS
from groklab.sweep.spec import Spec, is_int_value, is_number

MAX_TRIALS = 100_000
RUN_DIR = re.compile(r"trials/t[0-9]{4,9}")
KEYS = {"n_trials", "metric", "threshold", "sampler", "sampler_seed", "penalty", "prune",
        "stop_on_success", "direction"}


def parse_optimize(d: Any, spec: Spec) -> dict[str, Any]:
    if not isinstance(d, dict) or set(d) - KEYS:
        bad = sorted(set(d) - KEYS) if isinstance(d, dict) else d
        raise ConfigError(f"[optimize]: unknown key(s) {bad}; allowed: {', '.join(sorted(KEYS))}")
    o = {"n_trials": d.get("n_trials", 20), "metric": d.get("metric", "steps"),
         "threshold": d.get("threshold", spec.base.train.phase_threshold),
         "sampler": d.get("sampler", "tpe"), "sampler_seed": d.get("sampler_seed", 0),
         "penalty": d.get("penalty", 2.0), "stop_on_success": d.get("stop_on_success", True),
         "prune": d.get("prune")}
    if d.get("direction", "minimize") != "minimize":
        raise ConfigError("[optimize] direction: only \"minimize\" (steps or seconds) is supported")
    if not is_int_value(o["n_trials"]) or not 1 <= o["n_trials"] <= MAX_TRIALS:
        raise ConfigError(f"[optimize] n_trials = {o['n_trials']!r} must be an integer from 1 to {MAX_TRIALS}")
    if o["metric"] not in ("steps", "wall_seconds"):
        raise ConfigError(f"[optimize] metric = {o['metric']!r} is not one of: steps, wall_seconds")
    if not is_number(o["threshold"]) or not 0 < o["threshold"] <= 1:
        raise ConfigError(f"[optimize] threshold = {o['threshold']!r} must be in (0, 1]")
    if o["sampler"] not in ("tpe", "gp", "random"):
        raise ConfigError(f"[optimize] sampler = {o['sampler']!r} is not one of: tpe, gp, random")
    if not is_int_value(o["sampler_seed"]) or not 0 <= o["sampler_seed"] < 2**32:
        raise ConfigError(f"[optimize] sampler_seed = {o['sampler_seed']!r} must be an integer in [0, 2^32)")
    if not is_number(o["penalty"]) or not 1 <= o["penalty"] < math.inf:
        raise ConfigError(f"[optimize] penalty = {o['penalty']!r} must be a finite number >= 1")
    if not isinstance(o["stop_on_success"], bool):
        raise ConfigError(f"[optimize] stop_on_success = {o['stop_on_success']!r} must be true or false")
    if isinstance(o["prune"], list):
        kinds = {"risk" in r for r in o["prune"] if isinstance(r, dict)}  # forecast rule or metric rule
        if not 1 <= len(o["prune"]) <= 2 or len(kinds) != len(o["prune"]):
            raise ConfigError(f"[optimize] prune = {o['prune']!r}: a list holds one metric rule and one forecast rule")
        o["prune"] = [_parse_prune(r) for r in o["prune"]]
    elif o["prune"] is not None:
        o["prune"] = _parse_prune(o["prune"])
    o["threshold"] = float(o["threshold"])
    if o["stop_on_success"] and spec.base.train.stop_threshold == 0:
        spec.base.train.stop_threshold, spec.base.train.patience = o["threshold"], 0
    spec.diagram["threshold"] = o["threshold"]
    return o


def _parse_prune(p: Any) -> dict[str, Any]:
    if isinstance(p, dict) and "risk" in p:
        from groklab.sweep.spec import parse_forecast_prune
        return parse_forecast_prune(p, "[optimize] prune")
    if not isinstance(p, dict) or "metric" not in p or "at_step" not in p:
        raise ConfigError(f"[optimize] prune = {p!r}: expected {{metric = \"train_acc\", below = 0.9, "
                          f"at_step = 500}} or the forecast pruner {{risk = 0.02, target = 0.9}}")
    m = p["metric"]
    if not isinstance(m, str) or m not in PRUNE_METRICS:
        why = " (validation loss rises before grokking; never prune on it)" if str(m).startswith("val") else ""
        raise ConfigError(f"[optimize] prune metric = {m!r}{why}; allowed: {', '.join(PRUNE_METRICS)}")
    side = PRUNE_METRICS[m]
    if set(p) != {"metric", "at_step", side}:
        raise ConfigError(f"[optimize] prune on {m} takes exactly metric, {side}, at_step; got {sorted(p)}")
    if not is_int_value(p["at_step"]) or p["at_step"] < 1:
        raise ConfigError(f"[optimize] prune at_step = {p['at_step']!r} must be an integer >= 1")
    if not is_number(p[side]) or not math.isfinite(p[side]):
        raise ConfigError(f"[optimize] prune {side} = {p[side]!r} must be a finite number")
    return {"metric": m, side: float(p[side]), "at_step": int(p["at_step"])}


def check_space(spec: Spec) -> None:
    """Build the configs at the corners of the space, so a bad range fails before anything runs."""
    from groklab.api import prepare
    for corner in ("low", "high"):
        values = {}
        for a in spec.axes:
            if a.kind == "list":
                values[a.key] = a.values[0 if corner == "low" else -1]
            else:
                v = a.low if corner == "low" else a.high
                values[a.key] = int(round(v)) if a.is_int else v
        try:
            prepare(spec.config_for(values, spec.seeds[0]))
        except ConfigError as e:
            raise ConfigError(f"[axes] at the {corner} corner: {e}") from None


def suggest(trial, spec: Spec) -> dict[str, Any]:
    values = {}
    for a in spec.axes:
        if a.kind == "list":
            values[a.key] = trial.suggest_categorical(a.key, a.values)
        elif a.is_int:
            values[a.key] = trial.suggest_int(a.key, int(math.ceil(a.low)), int(math.floor(a.high)),
                                              log=a.kind == "log")
        else:
            values[a.key] = trial.suggest_float(a.key, a.low, a.high, log=a.kind == "log")
    return values


def make_sampler(o: dict[str, Any]):
    import optuna
    if o["sampler"] == "gp":
        return optuna.samplers.GPSampler(seed=o["sampler_seed"])
    if o["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=o["sampler_seed"])
    return optuna.samplers.TPESampler(seed=o["sampler_seed"])


STORAGE_CONNECT_TIMEOUT = 10  # seconds; a database server that does not answer is one line, not minutes


def storage_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 (what the sweep extra installs) where it is installed,
    whichever driver the installed SQLAlchemy would pick by default (psycopg2 before 2.1).
    A PostgreSQL or MySQL URL gets ``connect_timeout`` unless it names one (the drivers' own
    default waits over two minutes on a server that does not answer)."""
    import importlib.util
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is not None:
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.split("+")[0].split(":")[0] in ("postgresql", "mysql") and "connect_timeout=" not in url:
        url += ("&" if "?" in url else "?") + f"connect_timeout={STORAGE_CONNECT_TIMEOUT}"
    return url


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def lost_creation_race(e: Exception) -> bool:
    """Drivers starting together on a new database race to create its tables and the study; the
    loser sees a unique-key violation (SQLAlchemy's IntegrityError) or a table another created
    meanwhile (ProgrammingError: PostgreSQL's "relation ... already exists"), and finds both
    there when it tries again."""
    kind = type(e).__name__
    return kind == "IntegrityError" or (kind == "ProgrammingError" and "already exists" in str(e))


def open_study(spec: Spec, out: Path, storage: str | None):
    """The study in ``storage`` (a database URL), or in ``out/study.journal`` when None."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("optimize mode needs Optuna: pip install 'groklab[sweep]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        from optuna.storages.journal import JournalFileBackend
        where = f"{str(out / 'study.journal')!r}"
        backend = optuna.storages.JournalStorage(JournalFileBackend(str(out / "study.journal")))
    else:
        where, backend = f"--storage {redact(storage)!r}", storage_url(storage)
    try:
        for attempt in range(4):
            try:
                return optuna.create_study(study_name=spec.name, storage=backend, load_if_exists=True,
                                           direction="minimize", sampler=make_sampler(spec.optimize))
            except Exception as e:
                if not lost_creation_race(e) or attempt == 3:
                    raise
                time.sleep(0.2 * (attempt + 1))
    except Exception as e:  # no driver, no server, a refused login, a corrupt journal, ...
        msg = redact(" ".join(str(e).split()))[:300]
        raise ConfigError(f"{where}: cannot open the study ({type(e).__name__}: {msg})") from None


def release_study(study) -> None:
    """Close the database connections a study's storage pools (it opens new ones if used again),
    so a driver leaves none open behind it."""
    storage = getattr(study, "_storage", None)
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if engine is not None:
        engine.dispose()


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_stale(study) -> int:
    """Fail RUNNING trials whose driver (on this host) is dead and enqueue their parameters
    again, pointing the retry at the same run directory. Returns how many."""
    import optuna
    host = socket.gethostname()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner", "")
        h, _, pid = owner.rpartition(":")
        if h != host or not pid.isdigit() or _alive(int(pid)):
            continue
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"run_dir": t.user_attrs.get("run_dir"),
                                                  "retry_of": t.number})
        n += 1
    return n


def finished(study) -> int:
    """Trials that count towards n_trials: complete, pruned, or failed with an error."""
    import optuna
    S = optuna.trial.TrialState
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (S.COMPLETE, S.PRUNED) or (t.state == S.FAIL and "error" in t.user_attrs))


def seed_value(result: dict, run_dir: Path, o: dict, budget_steps: int) -> tuple[float | None, bool]:
    """(value, censored) of one seed's run; value None when it failed or was pruned."""
    s = result.get("summary") or {}
    if result["status"] == "pruned":
        return None, False
    if result["status"] == "failed" and s.get("status") != "nan":
        return None, False
    thr = str(o["threshold"])
    try:
        gen = (s.get("generalized_at") or {}).get(thr)
        records = read_jsonl(run_dir / "metrics.jsonl")
        if gen is None and thr not in (s.get("generalized_at") or {}):
            gen = next((r["step"] for r in records if r["val_acc"] >= o["threshold"]), None)
        if gen is not None and s.get("status") != "nan":  # a NaN run is censored, even after success
            if o["metric"] == "steps":
                return float(gen), False
            return float(next(r["time"] for r in records if r["step"] == gen)), False
        budget = budget_steps if o["metric"] == "steps" else float(s.get("wall_seconds") or 0.0)
    except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError, StopIteration, AttributeError) as e:
        from groklab.sweep.sweepdir import unreadable
        raise unreadable(run_dir / "metrics.jsonl", e, "; delete the trial's directory to run it again") from None
    return float(budget) * o["penalty"], True


def claimed(study) -> int:
    """Trials finished or running, by any driver on the study (several may share a database)."""
    import optuna
    return finished(study) + len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))


def run_optimize(spec: Spec, out: Path, executor, storage: str | None = None, study=None,
                 log=None):
    """Run (or continue) the study until ``n_trials`` trials have finished; returns the study.

    ``out`` is a sweep directory this process holds; ``study`` one already opened on
    ``storage`` (else it is opened here)."""
    import optuna
    S = optuna.trial.TrialState
    o = spec.optimize
    out, log = Path(out), log or sys.stdout
    study = study if study is not None else open_study(spec, out, storage)
    n_stale = recover_stale(study)
    print(f"sweep {spec.name} (optimize, {o['sampler']}): {finished(study)}/{o['n_trials']} trials "
          f"finished" + (f", {n_stale} killed trial(s) enqueued again" if n_stale else ""),
          file=log, flush=True)
    inflight: dict[int, dict] = {}   # trial number -> {"trial", "values", "results", "dir"}
    t0 = time.perf_counter()

    def launch() -> list[dict]:
        """The jobs of one new trial (one per seed), or none once ``n_trials`` are claimed."""
        if claimed(study) >= o["n_trials"]:
            return []
        trial = study.ask()
        values = suggest(trial, spec)
        rel = trial.user_attrs.get("run_dir")
        if not (isinstance(rel, str) and RUN_DIR.fullmatch(rel)):  # only ours, never a path
            rel = f"trials/t{trial.number:04d}"
        trial.set_user_attr("run_dir", rel)
        trial.set_user_attr("owner", _owner())
        inflight[trial.number] = {"trial": trial, "values": values, "results": {}, "dir": out / rel}
        return [{"id": f"{trial.number}:{seed}", "dir": str(out / rel / f"s{seed}"),
                 "config": spec.config_for(values, seed).to_dict(), "prune": o["prune"]}
                for seed in spec.seeds]

    def complete(number: int) -> None:
        st = inflight.pop(number)
        trial, results = st["trial"], st["results"]
        vals, censored, errors, pruned = [], 0, [], False
        for seed, r in results.items():
            v, c = seed_value(r, st["dir"] / f"s{seed}", o, spec.base.train.steps)
            pruned |= r["status"] == "pruned"
            if r["status"] == "failed" and v is None:
                errors.append(f"seed {seed}: {r['error']}")
            elif v is not None:
                vals.append(v)
                censored += c
        if errors:
            trial.set_user_attr("error", "; ".join(errors))
            study.tell(trial, state=S.FAIL)
            msg = f"failed: {errors[0]}"
        elif pruned:
            study.tell(trial, state=S.PRUNED)
            msg = "pruned"
        else:
            trial.set_user_attr("censored", censored > 0)
            trial.set_user_attr("n_censored", censored)
            value = sum(vals) / len(vals)
            study.tell(trial, value)
            msg = f"{o['metric']} {value:.1f}" + (f" (censored {censored}/{len(vals)})" if censored else "")
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in st["values"].items())
        print(f"  trial {number}: {params} -> {msg}", file=log, flush=True)

    def on_result(r: dict) -> None:
        number, seed = (int(x) for x in r["id"].split(":"))
        inflight[number]["results"][seed] = r
        if len(inflight[number]["results"]) == len(spec.seeds):
            complete(number)

    from groklab.sweep.executors import run_jobs
    run_jobs(executor, [], on_result, more=launch)
    write_study_report(spec, study, out, time.perf_counter() - t0)
    return study


def write_study_report(spec: Spec, study, out: Path, seconds: float) -> None:
    """``results.csv`` (one row per trial), ``fig_history.png`` and ``report.html``."""
    import optuna

    from groklab.report.plots import plt, save_figure
    from groklab.sweep.diagram import write_sweep_report
    from groklab.sweep.table import write_csv
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.FAIL and "error" not in t.user_attrs:
            continue  # a killed trial, retried as another
        rows.append({"id": t.number, **t.params, "status": t.state.name.lower(), "value": t.value,
                     "censored": t.user_attrs.get("censored", ""),
                     "run_dir": t.user_attrs.get("run_dir", ""), "error": t.user_attrs.get("error", "")})
    write_csv(out / "results.csv", rows)
    done = [r for r in rows if r["value"] is not None]
    figs = []
    if done:
        fig, ax = plt.subplots(figsize=(7, 4))
        for cens, color, label in ((False, "tab:blue", "reached threshold"), (True, "tab:red", "censored")):
            pts = [r for r in done if bool(r["censored"]) == cens]
            ax.scatter([r["id"] for r in pts], [r["value"] for r in pts], c=color, s=18, label=label)
        best, run = [], math.inf
        for r in sorted(done, key=lambda r: r["id"]):
            run = min(run, r["value"])
            best.append((r["id"], run))
        ax.step(*zip(*best), where="post", color="black", lw=1, label="best so far")
        ax.set_yscale("log")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{spec.optimize['metric']} to val acc ≥ {spec.optimize['threshold']:g}")
        ax.legend(fontsize=8)
        ax.set_title(f"{spec.name}: optimisation history")
        save_figure(fig, out / "fig_history.png")
        figs.append(out / "fig_history.png")
    info = {"mode": "optimize", "sampler": spec.optimize["sampler"], "trials": len(rows),
            "wall seconds (this invocation)": round(seconds, 1)}
    if done:
        b = min(done, key=lambda r: r["value"])
        info["best"] = f"trial {b['id']}: {b['value']:.1f} with " + ", ".join(
            f"{a.key}={b[a.key]:.4g}" if isinstance(b.get(a.key), float) else f"{a.key}={b.get(a.key)}"
            for a in spec.axes)
    write_sweep_report(out, spec, rows, figs, info)
