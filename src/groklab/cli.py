"""The ``groklab`` command: thin — parse, build a config, call the library.

Subcommands of other stages (analyze, race, sweep, gtn, dash) live beside their code, each in a
``cli.py`` with ``register(subparsers)``; this file lists them in ``PLUGINS``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from groklab.config import ConfigError

PLUGINS = ("groklab.measure.cli", "groklab.accel.cli", "groklab.sweep.cli",
           "groklab.gtn.cli", "groklab.dash.cli", "groklab.runs.cli", "groklab.forecast.cli",
           "groklab.ticket.cli")


def fail(msg: str, code: int = 2) -> int:
    print(f"groklab: error: {msg}", file=sys.stderr)
    return code


def cmd_run(args) -> int:
    import groklab
    from groklab.presets import PRESETS
    if args.resume is not None:
        if args.preset is not None or args.config is not None:
            return fail("--resume takes the run's own config; use --set to extend it")
        if args.out is not None:
            return fail(f"--resume {args.resume!r} continues that directory; --out {args.out!r} "
                        f"cannot go with it (drop --out, or drop --resume for a new run)")
        r = groklab.resume(args.resume, overrides=args.set, progress=not args.quiet,
                           sinks=lambda: _sinks(args, Path(args.resume)))
    else:
        if args.preset is not None and args.preset not in PRESETS:
            return fail(f"unknown preset {args.preset!r}; presets: {', '.join(sorted(PRESETS))}")
        cfg = groklab.resolve(args.preset, args.config, args.set)
        from groklab.api import default_out
        out = default_out(cfg) if args.out is None else args.out
        r = groklab.run(cfg, out=out, progress=not args.quiet, sinks=lambda: _sinks(args, Path(out)))
    s = r.summary
    thr = str(s["phase_threshold"])
    print(f"{s['status']}: {s['steps_done']} steps in {s['wall_seconds']:.1f} s · phase {s['phase']} · "
          f"train {s['final_train_acc']:.3f} · val {s['final_val_acc']:.3f} · "
          f"train ≥ {thr} at {s['memorized_at'].get(thr)} · val ≥ {thr} at {s['generalized_at'].get(thr)}")
    if s.get("message"):
        print(s["message"])
    print(f"report: {r.dir / 'report.html'}")
    return {"completed": 0, "early_stopped": 0, "interrupted": 130, "nan": 3}.get(s["status"], 1)


def _sinks(args, run_dir: Path):
    if not getattr(args, "tensorboard", False):
        return None
    try:
        from groklab.runs.export import TensorBoardSink
    except ImportError as e:
        raise ConfigError(f"--tensorboard needs the tensorboard extra: {e}") from None
    return [TensorBoardSink(run_dir / "tensorboard")]


def cmd_presets(args) -> int:
    from groklab.presets import PRESETS, describe
    names = [args.name] if args.name else sorted(PRESETS)
    for n in names:
        if n not in PRESETS:
            return fail(f"unknown preset {n!r}; presets: {', '.join(sorted(PRESETS))}")
        print(describe(n))
        print()
    return 0


def cmd_show(args) -> int:
    from groklab.config import ConfigError
    from groklab.runs.read import read_summary
    path = Path(args.dir) / "summary.json"
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} is missing (not a run directory, or a damaged one)")
    # read_summary, not a strict JSON reader: a diverged run's summary holds NaN, as written
    print(json.dumps(read_summary(path), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="groklab", description="Run, measure, accelerate and explore grokking.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    r = sub.add_parser("run", help="train a model and write a run directory with its report")
    r.add_argument("--preset", help="a named recipe (see `groklab presets`)")
    r.add_argument("--config", help="a TOML file of settings ([task], [model], [optim], ...)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one dotted setting, e.g. --set optim.lr=3e-3 (repeatable)")
    r.add_argument("--out", help="run directory to create (default runs/<preset>-<time>)")
    r.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    r.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)
    pr = sub.add_parser("presets", help="list the presets with every setting")
    pr.add_argument("name", nargs="?")
    pr.set_defaults(func=cmd_presets)
    s = sub.add_parser("show", help="print a run's summary.json")
    s.add_argument("dir")
    s.set_defaults(func=cmd_show)
    for mod in PLUGINS:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue
            raise
        m.register(sub)
    return p


# what an option expects, for the message that refuses an empty one (others: "a non-empty value")
PATHS = {"preset": "a preset name (see `groklab presets`)", "out": "a directory path",
         "resume": "a run directory", "dir": "a run directory", "run_dir": "a run directory",
         "gtn": "a GTN run directory", "root": "a directory path", "config": "a TOML file path",
         "spec": "a sweep spec file path"}


def _chosen_actions(parser: argparse.ArgumentParser, args) -> list[argparse.Action]:
    """The options and arguments of the (sub)commands that ``args`` came from."""
    acts = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            sub = a.choices.get(getattr(args, a.dest, None))
            acts += _chosen_actions(sub, args) if sub is not None else []
        else:
            acts.append(a)
    return acts


def empty_value(parser: argparse.ArgumentParser, args) -> str | None:
    """The message for the first empty (or blank) string given to any option or argument: an
    empty ``--preset ''`` or ``--resume ''`` must not mean "the default", which starts a long run."""
    for a in _chosen_actions(parser, args):
        given = getattr(args, a.dest, None)
        for v in given if isinstance(given, list) else [given]:
            if isinstance(v, str) and not v.strip():
                flag = a.option_strings[-1] if a.option_strings else (a.metavar or a.dest).upper()
                what = PATHS.get(a.dest, "a non-empty value")
                return f"{flag} {v!r}: expected {what}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `groklab` is a question, not the default run
        parser.print_help()
        return fail("expected a command, e.g. `groklab run --preset nanda` (see the list above)")
    msg = empty_value(parser, args)
    if msg is not None:
        return fail(msg)
    try:
        return args.func(args)
    except ConfigError as e:
        return fail(str(e))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `groklab presets | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
