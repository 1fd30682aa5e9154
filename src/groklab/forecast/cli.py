"""``groklab forecast``: forecast a run; build the corpus, the model, and its evaluation.

    groklab forecast RUN_DIR [--at STEP] [--json] [--model DIR]   will it grok, and when?
    groklab forecast corpus SPEC.toml [--out DIR]    run the corpus's sweeps (resumable), pack records
    groklab forecast build RECORDS|CORPUS_DIR [--out DIR]   train the model (bit for bit)
    groklab forecast evaluate RECORDS|CORPUS_DIR [--out DIR]   held out by family, scale, budget
    groklab forecast learn RUN_OR_SWEEP_DIR... [--out DIR]   the shipped corpus + your runs
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from groklab.config import ConfigError

ACTIONS = ("corpus", "build", "evaluate", "learn")
SHIPPED = "src/groklab/forecast/model"


def register(subparsers) -> None:
    import argparse
    s = subparsers.add_parser("forecast", help="forecast whether and when a run will grok; "
                                               "`forecast corpus|build|evaluate` make and test the model",
                              description=__doc__.split("\n\n")[1] if __doc__ else None,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("target", metavar="RUN_DIR|ACTION PATH", nargs="+",
                   help="a run directory, or corpus SPEC.toml, build CORPUS_DIR, evaluate CORPUS_DIR")
    s.add_argument("--at", type=int, help="forecast from the history up to this step (default: all)")
    s.add_argument("--json", action="store_true", help="print the forecast as JSON")
    s.add_argument("--model", help="forecast with this model directory (from `forecast learn` or "
                                   "`forecast build`) instead of the shipped one")
    s.add_argument("--axes", help="evaluate: held-out axes, comma-separated (default op,model,optim,scale,budget)")
    s.add_argument("--learn", help="evaluate: AXIS=FAMILY, the forecast of that family after 5, 10, 20 of "
                                   "its runs are learned (forecast learn), against the model without them")
    s.add_argument("--weight", type=float, help="learn: how much each of your runs weighs against one "
                                                "corpus run (default 5)")
    s.add_argument("--out", help="corpus: its directory (default corpus/<name>); build: the model "
                                 "directory (default forecast-model); evaluate: where the tables "
                                 "and figure go (default CORPUS_DIR/evaluation, or ./forecast-evaluation "
                                 "for a records file)")
    s.add_argument("--workers", type=int, help="corpus: runs in flight (default: one per core)")
    s.add_argument("--rounds", type=int, help="build/evaluate: boosting rounds (default 300)")
    s.set_defaults(func=cmd_forecast)


def cmd_forecast(args) -> int:
    t = args.target
    if t[0] in ACTIONS and (len(t) == 2 or t[0] == "learn" and len(t) > 1):
        if args.at is not None or args.json or args.model:
            raise ConfigError(f"--at, --json and --model are for `groklab forecast RUN_DIR`, not `forecast {t[0]}`")
        if args.weight is not None and t[0] != "learn":
            raise ConfigError("--weight is for `forecast learn`")
        if (args.axes is not None or args.learn is not None) and t[0] != "evaluate":
            raise ConfigError("--axes and --learn are for `forecast evaluate`")
        try:
            if t[0] == "learn":
                return _learn([Path(x) for x in t[1:]], args)
            return {"corpus": _corpus, "build": _build, "evaluate": _evaluate}[t[0]](Path(t[1]), args)
        except ImportError as e:
            raise ConfigError(f"forecast {t[0]} needs the forecast extra (pip install 'groklab[forecast]'): "
                              f"{e}") from None
    if len(t) != 1:
        raise ConfigError(f"expected RUN_DIR, or one of {', '.join(ACTIONS)} and a path; got {' '.join(t)!r}")
    if args.out or args.workers is not None or args.rounds is not None or args.weight is not None:
        raise ConfigError("--out, --workers, --rounds and --weight are for `forecast corpus|build|evaluate|learn`")
    from groklab.forecast.predict import forecast, format_forecast
    fc = forecast(t[0], at=args.at, model=_model(args.model))
    print(json.dumps(fc.to_dict(), indent=2) if args.json else format_forecast(fc))
    return 0


def _rounds(args) -> int:
    from groklab.forecast.model import ROUNDS
    r = ROUNDS if args.rounds is None else args.rounds
    if not 1 <= r <= 5000:
        raise ConfigError(f"--rounds {r}: expected 1 to 5000")
    return r


def _model(path: str | None):
    if path is None:
        return None
    from groklab.forecast.model import load
    if path == "" or not Path(path).is_dir():
        raise ConfigError(f"--model {path!r}: not a directory (make one with `groklab forecast learn`)")
    try:
        return load(path)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _corpus_runs(path: Path) -> list[dict]:
    from groklab.forecast.records import load
    if not path.exists():
        raise ConfigError(f"corpus {str(path)!r} does not exist (a records.jsonl.gz file, or a directory "
                          f"made by `groklab forecast corpus SPEC`)")
    runs = load(path)
    if not runs:
        raise ConfigError(f"corpus {str(path)!r} holds no finished runs")
    return runs


def _model_out(out: Path) -> Path:
    """A model directory may be rebuilt in place (the shipped one is); anything else that exists
    is never overwritten."""
    if out.exists() and not (out.is_dir() and ((out / "manifest.json").is_file() or not any(out.iterdir()))):
        raise ConfigError(f"--out {str(out)!r} exists and is not a forecast model directory; "
                          f"nothing was written")
    return out


def _corpus(spec: Path, args) -> int:
    from groklab.forecast import records
    from groklab.forecast.corpus import load_corpus_spec, run_corpus
    cs = load_corpus_spec(spec)
    if args.rounds is not None:
        raise ConfigError("--rounds is for `forecast build|evaluate`")
    out = Path(args.out) if args.out else Path("corpus") / cs.name
    t0 = time.perf_counter()
    run_corpus(spec, out, workers=args.workers)
    runs = records.load_dir(out)
    records.write(runs, [r["dir"] for r in runs], out / records.FILE)
    print(f"corpus {cs.name}: {out} in {time.perf_counter() - t0:.0f} s, {len(runs)} runs packed in "
          f"{out / records.FILE}; next: groklab forecast build {out / records.FILE}")
    return 0


def _build(corpus: Path, args) -> int:
    out = _model_out(Path(args.out or "forecast-model"))
    rounds = _rounds(args)
    runs = _corpus_runs(corpus)
    t0 = time.perf_counter()
    from groklab.forecast.learn import fit_and_save
    try:
        _, table = fit_and_save(runs, out, rounds, {})
    except ValueError as e:
        raise ConfigError(f"corpus {str(corpus)!r}: {e}") from None
    print(f"model from {len(runs)} runs ({len(table.t)} forecast rows) in {time.perf_counter() - t0:.0f} s: {out}")
    return 0


def _learn(dirs: list[Path], args) -> int:
    """The shipped corpus plus the user's finished runs, each weighing ``--weight`` corpus runs."""
    from groklab.forecast import records
    out = _model_out(Path(args.out or "forecast-learned"))
    weight = 5.0 if args.weight is None else args.weight
    if not (0 < weight <= 1000):
        raise ConfigError(f"--weight {weight}: expected a number in (0, 1000]")
    mine = []
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(f"{str(d)!r} is not a directory of runs")
        found = records.load_dir(d)
        if not found:
            raise ConfigError(f"{str(d)!r} holds no finished runs (a run's summary.json must have a final status)")
        mine += found
    from groklab.forecast.learn import learn
    t0 = time.perf_counter()
    try:
        m, _ = learn(mine, out, _rounds(args), weight)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    print(f"model from the shipped corpus ({m.meta['runs'] - len(mine)} runs) and {len(mine)} of yours (each weighing "
          f"{weight:g}) in {time.perf_counter() - t0:.0f} s: {out}\nuse it: groklab forecast RUN_DIR --model {out}")
    return 0


def _evaluate(corpus: Path, args) -> int:
    from groklab.forecast.evaluate import evaluate, learning_curve, markdown
    from groklab.runs.rundir import atomic_write_text, finite_or_null, write_json
    rounds = 100 if args.rounds is None else _rounds(args)
    runs = _corpus_runs(corpus)
    # beside a corpus directory; a records file may be the installed package's: never write there
    out = Path(args.out) if args.out else corpus / "evaluation" if corpus.is_dir() else Path("forecast-evaluation")
    axes = None
    if args.axes is not None:
        axes = [a for a in args.axes.split(",")]
        bad = [a for a in axes if a not in ("op", "model", "optim", "scale", "budget")]
        if bad or not axes:
            raise ConfigError(f"--axes {args.axes!r}: expected a comma-separated subset of "
                              f"op, model, optim, scale, budget")
    learn = None
    if args.learn is not None:
        axis, _, fam = args.learn.partition("=")
        if axis not in ("op", "model", "optim") or not fam:
            raise ConfigError(f"--learn {args.learn!r}: expected AXIS=FAMILY with AXIS one of op, model, optim")
        learn = (axis, fam)
    t0 = time.perf_counter()
    res = evaluate(runs, axes=axes, rounds=rounds, log=sys.stdout)
    if learn:
        try:
            res["learning_curve"] = learning_curve(runs, *learn, rounds=rounds, log=sys.stdout)
        except ValueError as e:
            raise ConfigError(f"--learn {args.learn!r}: {e}") from None
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(res)
    atomic_write_text(out / "evaluation.md", md + "\n")
    write_json(out / "evaluation.json", finite_or_null(res))
    print(md)
    print(f"evaluated in {time.perf_counter() - t0:.0f} s: {out / 'evaluation.md'}, {out / 'evaluation.json'}")
    return 0
