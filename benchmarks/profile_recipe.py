"""Where a race run's time goes: one recipe on one race task, under cProfile.

The run is the race's (``accel.tune.task_config``: the task's data and model, the recipe's method,
evaluation every ``--eval-every`` steps, stopping at 99 % validation accuracy, no checkpoints and
no live forecast), after one short warm-up run in the same process (imports, CodeCarbon's
hardware probe, the FLOP count's cache). Prints the steps to 99 %, the run's wall and CPU
seconds, and the seconds spent in: the training forward (loss included), backward, gradient
transforms + optimiser + norm projection, evaluations, and the rest (the loop, logging, cost).
cProfile adds its own overhead (a few per cent here), so the total is a little above the race's.

    OMP_NUM_THREADS=1 python benchmarks/profile_recipe.py --recipe mlp-fast --task add113 --seed 0
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="mlp-fast")
    ap.add_argument("--task", default="add113")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import groklab
    from groklab.accel.tune import task_config
    from groklab.runs.rundir import read_jsonl
    tmp = Path(tempfile.mkdtemp())
    warm = task_config(a.recipe, a.task, a.seed, 20, a.eval_every, 0.99, a.set)
    groklab.run(warm, out=tmp / "warm", progress=False, report=False)
    cfg = task_config(a.recipe, a.task, a.seed, a.steps, a.eval_every, 0.99, a.set)
    prof = cProfile.Profile()
    c0, t0 = time.process_time(), time.perf_counter()
    prof.enable()
    r = groklab.run(cfg, out=tmp / "run", progress=False, report=False)
    prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    hit = next((x for x in read_jsonl(tmp / "run" / "metrics.jsonl") if x["val_acc"] >= 0.99), None)
    st = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tottime, cumtime, callers)

    def cum(name: str, file_part: str = "") -> float:
        return sum(v[3] for k, v in st.items() if k[2] == name and file_part in k[0])

    loop = cum("_loop", "train/loop.py")
    fwd, upd = cum("forward", "train/loop.py"), cum("update", "train/loop.py")
    # Trainer.evaluate (called by the loop; it calls the module-level evaluate)
    ev = sum(v[3] for k, v in st.items() if k[2] == "evaluate" and "train/loop.py" in k[0]
             and any(c[2] == "_loop" for c in v[4]))
    # Tensor.backward as called by Trainer.update (the FLOP count's own backward is not in it)
    bwd = sum(ct for k, v in st.items() if k[2] == "backward" and k[0].endswith("_tensor.py")
              for c, (_, _, _, ct) in v[4].items() if c[2] == "update")
    print(f"{a.recipe} on {a.task}, seed {a.seed}: 99 % at step "
          f"{hit['step'] if hit else 'not reached'} ({hit['time'] if hit else r.summary['wall_seconds']} s in the "
          f"metrics), {r.summary['steps_done']} steps; groklab.run {wall:.2f} s wall, {cpu:.2f} CPU s (profiled)")
    rows = [("training forward + loss", fwd), ("backward", bwd), ("transforms + optimiser + projection", upd - bwd),
            ("evaluations", ev), ("rest of the loop", loop - fwd - upd - ev)]
    for name, s in rows:
        print(f"  {name:38s} {s:6.2f} s  {100 * s / loop:5.1f} %")
    print(f"  {'loop total':38s} {loop:6.2f} s")


if __name__ == "__main__":
    main()
