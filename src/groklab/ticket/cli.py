"""``groklab ticket``: retrain a run's grokking ticket, or a control, into a new run directory.

    groklab ticket RUN_DIR --keep 0.4 [--from STEP] [--control random|same-norm] --out DIR
"""
from __future__ import annotations

import json
import math

from groklab.config import ConfigError


def _fraction(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        v = math.nan
    if not 0 < v <= 1:  # NaN fails too
        raise ConfigError(f"--keep {s!r}: expected a fraction in (0, 1]")
    return v


def _int(flag: str, s: str | None, lo: int = 0) -> int | None:
    if s is None:
        return None
    try:
        v = int(s)
    except ValueError:
        v = lo - 1
    if v < lo or v > 10**9:
        raise ConfigError(f"{flag} {s!r}: expected a whole number >= {lo}")
    return v


def cmd_ticket(args) -> int:
    from groklab.ticket.run import CONTROLS, describe, ticket
    keep = _fraction(args.keep)
    step = _int("--from", args.from_step)
    seed = _int("--seed", args.seed)
    if args.control not in CONTROLS:
        raise ConfigError(f"--control {args.control!r}: allowed: random, same-norm (default: the ticket)")
    r = ticket(args.run_dir, keep, args.out, step=step, control=args.control, seed=seed,
               overrides=args.set, progress=not args.quiet)
    s = r.summary
    print(describe(json.loads((r.dir / "ticket.json").read_text())))
    gen = s["generalized_at"]
    print(f"{s['status']}: {s['steps_done']} steps in {s['wall_seconds']:.1f} s · train "
          f"{s['final_train_acc']:.3f} · val {s['final_val_acc']:.3f} · val ≥ 0.9 at {gen.get('0.9')} · "
          f"val ≥ 0.99 at {gen.get('0.99')}")
    print(f"report: {r.dir / 'report.html'}")
    return {"completed": 0, "early_stopped": 0, "interrupted": 130, "nan": 3}.get(s["status"], 1)


def register(subparsers) -> None:
    t = subparsers.add_parser("ticket", help="retrain a run's grokking ticket (Minegishi et al. 2024) "
                                             "or a random / same-norm control")
    t.add_argument("run_dir", help="a trained run directory")
    t.add_argument("--keep", default="0.4", help="fraction of matrix entries kept, in (0, 1] (default 0.4)")
    t.add_argument("--from", dest="from_step", metavar="STEP",
                   help="the checkpoint step to take the mask from (default: the last)")
    t.add_argument("--control", default="none", metavar="random|same-norm",
                   help="random: a seeded random mask of the same count; same-norm: the dense init "
                        "scaled to the ticket's norm")
    t.add_argument("--seed", default="0", help="seed of the random control's mask (default 0)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change the budget, logging or stopping (e.g. train.steps=5000); the recipe "
                        "is the source run's")
    t.add_argument("--out", required=True, help="run directory to create")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_ticket)
