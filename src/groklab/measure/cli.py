"""``groklab analyze DIR``: progress measures, phases and figures from a run's checkpoints."""
from __future__ import annotations

from pathlib import Path


def cmd_analyze(args) -> int:
    from groklab.config import ConfigError
    from groklab.measure.analyze import analyze
    if args.stride < 1:
        raise ConfigError(f"--stride={args.stride} is out of range; allowed: >= 1")
    d = Path(args.dir)
    info = analyze(d, stride=args.stride, progress=not args.quiet, probes=args.probes)
    if info.get("kind") == "layers":
        last = analysis_last(d)
        print("surges of validation accuracy: " + (", ".join(
            f"{s['from']:.2f}→{s['to']:.2f} at steps {s['start']}-{s['end']}" for s in info["surges"]) or "none"))
        print("feature rank at the last checkpoint: " + " ".join(
            f"{k[5:]}={v}" for k, v in last.items() if k.startswith("rank_")))
        print(f"wrote {d / 'analysis.jsonl'}, {d / 'analysis.json'}, fig_layers.png, report: {d / 'report.html'}")
        return 0
    ph = info["phases"]
    print(f"key frequencies ({info['basis']} basis, from step {info['key_freqs_from_step']}): "
          f"{info['key_freqs']} · neurons per frequency {info['neurons_per_freq']}")
    print(f"phases: memorization ends {ph['memorization_end']} · circuit formation ends "
          f"{ph['circuit_formation_end']} · cleanup ends {ph['cleanup_end']}")
    print(f"wrote {d / 'analysis.jsonl'}, {d / 'analysis.json'}, fig_progress_*.png, report: {d / 'report.html'}")
    return 0


def analysis_last(d: Path) -> dict:
    from groklab.runs.rundir import read_jsonl
    return read_jsonl(d / "analysis.jsonl")[-1]


def register(subparsers) -> None:
    a = subparsers.add_parser("analyze", help="progress measures, phases and figures from a run's checkpoints")
    a.add_argument("dir", help="run directory (with config.json and checkpoints/)")
    a.add_argument("--stride", type=int, default=1, help="analyse every N-th checkpoint (the last always)")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.add_argument("--probes", action="store_true",
                   help="MLP runs on vector tasks: also a linear probe per layer and checkpoint (slower)")
    a.set_defaults(func=cmd_analyze)
