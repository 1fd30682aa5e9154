"""``groklab sweep SPEC.toml``: grid phase diagrams or Optuna optimisation, local or on Ray."""
from __future__ import annotations

import time
from pathlib import Path


def register(subparsers) -> None:
    s = subparsers.add_parser("sweep", help="run a grid or optimize sweep described by a TOML spec")
    s.add_argument("spec", help="the sweep spec (see examples/sweeps/*.toml and docs/sweeps.md)")
    s.add_argument("--out", help="sweep directory (default sweeps/<spec name>); running the same "
                                 "command again continues it")
    s.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local: a pool of worker processes; ray: tasks on the cluster at --address")
    s.add_argument("--address", help="Ray cluster address, e.g. 127.0.0.1:6379 (default: auto)")
    s.add_argument("--workers", type=int, help="points in flight (default: one per core, or the "
                                                "cluster's CPUs)")
    s.add_argument("--storage", help="optimize mode: Optuna storage URL (default: a journal file "
                                     "in the sweep directory; postgresql://... for many machines)")
    s.add_argument("--ensemble", choices=("auto", "on", "off"), default=None,
                   help="train compatible points together with the vmap ensemble trainer "
                        "(default: the spec's choice, auto = only where measured faster)")
    s.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    from groklab.sweep import run_sweep
    from groklab.sweep.spec import load_spec
    spec = load_spec(args.spec)
    out = args.out if args.out is not None else Path("sweeps") / spec.name
    ensemble = {"on": True, "off": False, "auto": None, None: None}[args.ensemble]
    if args.ensemble == "auto":
        spec.ensemble = "auto"
    t0 = time.perf_counter()
    res = run_sweep(spec, out, executor=args.executor, workers=args.workers, address=args.address,
                    storage=args.storage, ensemble=ensemble, spec_text=Path(args.spec).read_text())
    if spec.mode == "grid":
        failed = sum(1 for r in res if r["status"] == "failed")
        print(f"{len(res)} points ({failed} failed) in {time.perf_counter() - t0:.1f} s")
    _total_cost(Path(out))
    return 0


def _total_cost(out: Path) -> None:
    """The sweep's cost summed over results.csv, printed and written to cost.json."""
    from groklab.runs.cost import format_cost
    from groklab.runs.rundir import write_json
    from groklab.sweep.table import read_csv, total_cost
    if not (out / "results.csv").is_file():
        return
    total = total_cost(read_csv(out / "results.csv"))
    write_json(out / "cost.json", total)
    print(f"cost of the sweep ({total['rows_with_cost']} of {total['rows']} runs): "
          f"{format_cost(total | {'energy_missing': 'not known for every run'})}")
