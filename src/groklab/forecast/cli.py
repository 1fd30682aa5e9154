"""``groklab forecast``: forecast a run; build the corpus, the model, and its evaluation.

    groklab forecast RUN_DIR [--at STEP] [--json]          will it grok, and when?
    groklab forecast corpus SPEC.toml [--out DIR]          run the corpus's sweeps (resumable)
    groklab forecast build CORPUS_DIR [--out DIR]          train the model (bit for bit)
    groklab forecast evaluate CORPUS_DIR [--out DIR]       leave-one-family-out evaluation
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from groklab.config import ConfigError

ACTIONS = ("corpus", "build", "evaluate")
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
    s.add_argument("--out", help="corpus: its directory (default corpus/<name>); build: the model "
                                 "directory (default forecast-model); evaluate: where the tables "
                                 "and figure go (default <CORPUS>/evaluation)")
    s.add_argument("--workers", type=int, help="corpus: runs in flight (default: one per core)")
    s.add_argument("--rounds", type=int, help="build/evaluate: boosting rounds (default 300)")
    s.set_defaults(func=cmd_forecast)


def cmd_forecast(args) -> int:
    t = args.target
    if t[0] in ACTIONS and len(t) == 2:
        if args.at is not None or args.json:
            raise ConfigError(f"--at and --json are for `groklab forecast RUN_DIR`, not `forecast {t[0]}`")
        try:
            return {"corpus": _corpus, "build": _build, "evaluate": _evaluate}[t[0]](Path(t[1]), args)
        except ImportError as e:
            raise ConfigError(f"forecast {t[0]} needs the forecast extra (pip install 'groklab[forecast]'): "
                              f"{e}") from None
    if len(t) != 1:
        raise ConfigError(f"expected RUN_DIR, or one of {', '.join(ACTIONS)} and a path; got {' '.join(t)!r}")
    if args.out or args.workers is not None or args.rounds is not None:
        raise ConfigError("--out, --workers and --rounds are for `forecast corpus|build|evaluate`")
    from groklab.forecast.predict import forecast, format_forecast
    fc = forecast(t[0], at=args.at)
    print(json.dumps(fc.to_dict(), indent=2) if args.json else format_forecast(fc))
    return 0


def _rounds(args) -> int:
    from groklab.forecast.model import ROUNDS
    r = ROUNDS if args.rounds is None else args.rounds
    if not 1 <= r <= 5000:
        raise ConfigError(f"--rounds {r}: expected 1 to 5000")
    return r


def _corpus_runs(path: Path) -> list[dict]:
    from groklab.forecast.corpus import load_runs
    if not path.is_dir():
        raise ConfigError(f"corpus {str(path)!r} is not a directory (make one with `groklab forecast corpus SPEC`)")
    runs = load_runs(path)
    if not runs:
        raise ConfigError(f"corpus {str(path)!r} holds no finished runs")
    return runs


def _corpus(spec: Path, args) -> int:
    from groklab.forecast.corpus import load_corpus_spec, run_corpus
    cs = load_corpus_spec(spec)
    if args.rounds is not None:
        raise ConfigError("--rounds is for `forecast build|evaluate`")
    out = Path(args.out) if args.out else Path("corpus") / cs.name
    t0 = time.perf_counter()
    run_corpus(spec, out, workers=args.workers)
    print(f"corpus {cs.name}: {out} in {time.perf_counter() - t0:.0f} s; next: groklab forecast build {out}")
    return 0


def _build(corpus: Path, args) -> int:
    from groklab.forecast import model as M
    from groklab.forecast.dataset import build_table
    out = Path(args.out or "forecast-model")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file, not a directory")
    rounds = _rounds(args)
    runs = _corpus_runs(corpus)
    t0 = time.perf_counter()
    table = build_table(runs)
    try:
        m = M.fit(table, rounds=rounds)
    except ValueError as e:
        raise ConfigError(f"corpus {str(corpus)!r}: {e}") from None
    import xgboost
    m.meta.update({"corpus": corpus.name, "rounds": rounds, "xgboost": xgboost.__version__})
    M.save(m, out)
    print(f"model from {len(runs)} runs ({len(table.t)} forecast rows) in {time.perf_counter() - t0:.0f} s: {out}")
    return 0


def _evaluate(corpus: Path, args) -> int:
    from groklab.forecast.evaluate import calibration_figure, evaluate, markdown
    from groklab.runs.rundir import atomic_write_text, finite_or_null, write_json
    rounds = _rounds(args)
    runs = _corpus_runs(corpus)
    out = Path(args.out) if args.out else corpus / "evaluation"
    t0 = time.perf_counter()
    res = evaluate(runs, rounds=rounds, log=sys.stdout)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(res)
    atomic_write_text(out / "evaluation.md", md + "\n")
    write_json(out / "evaluation.json",   # an undefined AUROC (one class only) is null
               finite_or_null({k: v for k, v in res.items() if k not in ("pooled", "table")}))
    if res["pooled"]:
        calibration_figure(res, 0.99, 0.25, out / "calibration.png")
    print(md)
    print(f"evaluated in {time.perf_counter() - t0:.0f} s: {out / 'evaluation.md'}, {out / 'evaluation.json'}, "
          f"{out / 'calibration.png'}")
    return 0
