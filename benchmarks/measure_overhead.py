"""Cost of the live progress measures (``train.measure_every``) relative to training.

On the ``nanda`` preset (x+y mod 113, 3,830 training pairs, Nanda's 1-layer transformer),
rounds of ``--every`` plain training steps (groklab's own step: fast model, float64 loss, AdamW)
alternate with one ``LiveMeasures`` call, so load from other processes hits both alike. Prints
the median time of a training step and of a measuring call, and the overhead
    measure_call / (every × train_step),
the fraction of training time that measuring every ``--every`` steps adds (the issue asks < 20 %
at 100). ``--analyze`` also times one full ``groklab analyze`` checkpoint measurement (all
measures on the 113² grid), for the record.

    python benchmarks/measure_overhead.py [--rounds 10] [--every 100] [--analyze]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import groklab
from groklab.accel.losses import build_loss
from groklab.measure.live import LiveMeasures
from groklab.models import build_model
from groklab.tasks import build_task
from groklab.train.optim import build_optimizer, get_lr, set_lr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--analyze", action="store_true")
    a = ap.parse_args()

    torch.set_flush_denormal(True)
    cfg = groklab.resolve("nanda", overrides=[f"train.measure_every={a.every}"])
    task = build_task(cfg.task)
    model = build_model(cfg, task)
    opt = build_optimizer(model.parameters(), cfg.optim)
    loss_fn = build_loss(cfg.train.loss, cfg.train.loss_dtype)
    live = LiveMeasures(cfg, task)
    x, y = task.x_train, task.y_train

    step_times, call_times, step = [], [], 0
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        for _ in range(a.every):
            set_lr(opt, get_lr(step, cfg.optim, cfg.train.steps))
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
        t1 = time.perf_counter()
        rec = live(model, step)
        t2 = time.perf_counter()
        step_times.append((t1 - t0) / a.every)
        call_times.append(t2 - t1)
    s, c = statistics.median(step_times), statistics.median(call_times)
    print(f"nanda preset: {task.name}, {len(y)} train pairs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {a.rounds} rounds of {a.every} steps")
    print(f"train step (reference)  median {1e3 * s:8.2f} ms")
    print(f"live measures call      median {1e3 * c:8.2f} ms   = {c / s:5.2f} train steps")
    print(f"overhead at measure_every={a.every}: {100 * c / (a.every * s):.2f} % of training time "
          f"(limit 20 %); measured keys: {', '.join(k for k in rec if k != 'step')}")
    if a.analyze:
        from groklab.measure import circuit
        from groklab.measure.extract import grid_run
        from groklab.measure.fourier import frame_for
        from groklab.measure.progress import measure_model
        frame = frame_for(task)
        t0 = time.perf_counter()
        _, acts = grid_run(model, frame)
        K = circuit.key_frequencies(acts, frame.n)
        t1 = time.perf_counter()
        measure_model(model, frame, K)
        t2 = time.perf_counter()
        print(f"analyze: key frequencies {1e3 * (t1 - t0):.0f} ms (once per run), all measures of one "
              f"checkpoint {1e3 * (t2 - t1):.0f} ms = {(t2 - t1) / s:.1f} train steps")


if __name__ == "__main__":
    main()
