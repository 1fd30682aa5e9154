"""Memory and time of one GTN meta-gradient: the plain unroll (whole graph kept, the plain
PyTorch reference) against the checkpointed unroll (one block of steps' graph at a time).

Each configuration runs in its own process, so the peak resident memory it reports (ru_maxrss
minus the resident memory just before the meta-step) belongs to that meta-step alone.

    python benchmarks/gtn_memory.py                       # digits, T = 8, 32, 128
    python benchmarks/gtn_memory.py --steps 8 32 --set generator.kind=conv --set generator.hidden=1024
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys


def measure(T: int, block: int, sets: list[str], repeats: int) -> dict:
    """Child process: build the problem, then time ``repeats`` meta-steps and read the peak RSS."""
    import resource
    import time

    import torch

    from groklab.gtn.config import resolve
    from groklab.gtn.data import load_data
    from groklab.gtn.meta import Teacher, make_optimizer, meta_step

    torch.set_num_threads(1)
    cfg = resolve(overrides=[*sets, f"inner.steps={T}", f"inner.checkpoint={block}"])
    data = load_data(cfg.data)
    teacher = Teacher(cfg, data)
    opt = make_optimizer(cfg, teacher)
    rss0 = _rss_kib()
    t0 = time.perf_counter()
    for s in range(repeats):
        rec = meta_step(cfg, teacher, opt, data, s)
    secs = (time.perf_counter() - t0) / repeats
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"T": T, "block": block, "peak_mib": (peak - rss0) / 1024, "seconds": secs,
            "meta_loss": rec["meta_loss"]}


def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--set", action="append", default=[], help="GTN config override (repeatable)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child, args.set, args.repeats)))
        return
    print(f"GTN meta-gradient memory, settings {args.set or 'digits defaults'}; "
          f"peak = extra resident memory of the meta-step")
    print(f"{'T':>5} {'block':>6} {'peak MiB':>10} {'s/step':>8} {'mem ratio':>10} {'time ratio':>11}")
    for T in args.steps:
        block = max(1, round(T ** 0.5))
        rows = []
        for b in (0, block):
            cmd = [sys.executable, __file__, "--child", str(T), str(b), "--repeats", str(args.repeats)]
            for s in args.set:
                cmd += ["--set", s]
            rows.append(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))
        plain, ckpt = rows
        for r in rows:
            mem = r["peak_mib"] / plain["peak_mib"] if plain["peak_mib"] > 0 else float("nan")
            print(f"{r['T']:>5} {r['block'] or 'plain':>6} {r['peak_mib']:>10.1f} {r['seconds']:>8.2f} "
                  f"{mem:>10.2f} {r['seconds'] / plain['seconds']:>11.2f}")
        assert abs(plain["meta_loss"] - ckpt["meta_loss"]) < 1e-4 * max(1.0, abs(plain["meta_loss"]))


if __name__ == "__main__":
    main()
