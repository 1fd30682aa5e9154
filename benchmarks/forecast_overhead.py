"""Cost of the live forecast (``train.forecast``) relative to training, without the 1 % throttle.

For each preset, rounds of ``eval_every`` training steps (groklab's own Trainer: forward, loss,
backward, optimiser) alternate with one forecast call on a history of ``--history`` evaluation
records (the default model, no evidence lines, as the live forecast calls it), so load from other
processes hits both alike. Prints the median time of a training step and of a forecast call, and
    overhead = forecast_call / (eval_every × train_step),
the share of training time a forecast at *every* evaluation would add (the issue asks < 2 %).
The live forecast also skips evaluations while its total exceeds 1 % of the run's wall time.

    python benchmarks/forecast_overhead.py [--rounds 10] [--history 250]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import groklab
from groklab.forecast.model import default_model
from groklab.forecast.predict import forecast
from groklab.train.loop import Trainer

PRESETS = {"default": [], "mlp-corpus": [("task.p", 31), ("task.frac", 0.6), ("model.hidden", [128, 128]),
                                         ("optim.lr", 0.02), ("train.steps", 2000)]}


def history(n: int, eval_every: int) -> list[dict]:
    """A plausible history: memorised early, validation creeping up."""
    return [{"step": i * eval_every, "train_loss": 1.0 / (1 + i), "train_acc": min(1.0, 0.05 + i / 20),
             "val_loss": 3.0 + 0.001 * i, "val_acc": 0.05 + 0.3 * i / n, "lr": 1e-3,
             "weight_norm": 30.0 + 0.01 * i, "time": 0.1 * i} for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--history", type=int, default=250)
    a = ap.parse_args()
    model = default_model()
    for name, over in PRESETS.items():
        cfg = groklab.resolve("prieto" if name == "mlp-corpus" else "default", overrides=over)
        tr = Trainer.build(cfg)
        n = min(a.history, cfg.train.steps // cfg.train.eval_every - 1)  # inside the budget: the model runs
        recs = history(n, cfg.train.eval_every)
        step_t, fc_t = [], []
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            for _ in range(cfg.train.eval_every):
                loss = tr.forward()[0]
                tr.update(loss)
            step_t.append((time.perf_counter() - t0) / cfg.train.eval_every)
            t0 = time.perf_counter()
            forecast(recs, config=cfg, model=model, explain=False)
            fc_t.append(time.perf_counter() - t0)
        s, f = statistics.median(step_t), statistics.median(fc_t)
        print(f"{name}: train step {1e3 * s:.2f} ms, forecast call {1e3 * f:.2f} ms "
              f"(history {n} records), eval every {cfg.train.eval_every}: "
              f"overhead {100 * f / (cfg.train.eval_every * s):.2f} %")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
