"""``groklab analyze DIR``: progress measures, phases and figures from a run's checkpoints."""
from __future__ import annotations

from pathlib import Path


def cmd_analyze(args) -> int:
    from groklab.config import ConfigError
    from groklab.measure.analyze import analyze
    if args.stride < 1:
        raise ConfigError(f"--stride={args.stride} is out of range; allowed: >= 1")
    d = Path(args.dir)
    info = analyze(d, stride=args.stride, progress=not args.quiet)
    ph = info["phases"]
    print(f"key frequencies ({info['basis']} basis, from step {info['key_freqs_from_step']}): "
          f"{info['key_freqs']} · neurons per frequency {info['neurons_per_freq']}")
    print(f"phases: memorization ends {ph['memorization_end']} · circuit formation ends "
          f"{ph['circuit_formation_end']} · cleanup ends {ph['cleanup_end']}")
    print(f"wrote {d / 'analysis.jsonl'}, {d / 'analysis.json'}, fig_progress_*.png, report: {d / 'report.html'}")
    return 0


def register(subparsers) -> None:
    a = subparsers.add_parser("analyze", help="progress measures, phases and figures from a run's checkpoints")
    a.add_argument("dir", help="run directory (with config.json and checkpoints/)")
    a.add_argument("--stride", type=int, default=1, help="analyse every N-th checkpoint (the last always)")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_analyze)
