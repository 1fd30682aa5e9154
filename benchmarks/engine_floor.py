"""How far groklab's training step is from the hardware: a profile per kernel and a measured floor.

For each model (a preset, or a race task's model), the script builds the step exactly as ``groklab
run`` takes it (``train.loop.Trainer``: forward, loss, backward, gradient transforms, optimiser)
and prints:

* **step**: the median wall time of ``--steps`` steps (no timer attached), each followed by one
  pass over the floor's products, so that step and floor are measured at the same moments;
* **FLOPs**: one step's matrix-product FLOPs (``torch.utils.flop_counter.FlopCounterMode``, the
  count ``groklab.runs.cost`` uses: forward + backward);
* **a profile per kernel**: wall time around every ATen call (a dispatch-level timer, ``OpTimer``)
  and every compiled kernel of ``groklab.models.fused``, per operator and step, and its share;
  ``torch.profiler``'s self time beside it, which inflates memory-bound kernels on this CPU;
* **the floor**: every matrix product the profiled steps made (``mm``, ``addmm``, ``bmm``: the
  shapes the timer recorded), replayed alone on contiguous operands of the same shapes in the
  same process, in alternation with the steps — what the step would take if it were nothing
  but its matrix products at this machine's speed for them — and ``step / floor``;
* what is left between the two: the step's time outside matrix products, and the products' own
  time in the step against their replay (a layout or a transposed operand costs).

    OMP_NUM_THREADS=2 python benchmarks/engine_floor.py [--models nanda,mul97,add113] [--steps 30] [--threads 2]
        [--top 16] [--recipe mlp-adamw]

``nanda``: Nanda's 1-layer transformer on a+b mod 113 at 30 % (full batch, 3,830 pairs);
``mul97``: Power et al.'s 2-layer transformer, x·y mod 97, 50 %, batch 512 (the race task);
``add113``: Prieto's MLP 226-200-200-113 on a+b mod 113 at 30 % (the race task, AdamW).
``--recipe`` trains the two race tasks with another race recipe (``mlp-fast-bf16``: the
1-second goal's).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import groklab
from groklab.accel.tune import task_config
from groklab.models import fused
from groklab.train.loop import Trainer

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")


def build(model: str, recipe: str = "mlp-adamw") -> Trainer:
    if model in ("mul97", "add113"):
        return Trainer.build(task_config(recipe, model, seed=0))
    return Trainer.build(groklab.resolve(model))


def step(tr: Trainer) -> None:
    loss = tr.forward()[0]
    tr.update(loss)


def step_flops(tr: Trainer) -> float:
    with FlopCounterMode(display=False) as fc:
        step(tr)
    return float(fc.get_total_flops())


def products(shapes: list[tuple[str, list, torch.dtype]]) -> list:
    """One step's matrix products as calls on fresh contiguous operands of the recorded shapes
    and dtype (bfloat16 under ``train.autocast``)."""
    calls = []
    for name, dims, dtype in shapes:
        if name == "aten::addmm":
            args = tuple(torch.randn(d, dtype=dtype) for d in dims[:3])
            calls.append(lambda a=args: torch.addmm(*a))
        else:
            a, b = torch.randn(dims[0], dtype=dtype), torch.randn(dims[1], dtype=dtype)
            calls.append((lambda a=a, b=b: torch.bmm(a, b)) if name == "aten::bmm" else (lambda a=a, b=b: a @ b))
    return calls


def lockstep(tr: Trainer, calls: list, rounds: int) -> tuple[float, float]:
    """Median seconds of one step and of one pass over its products replayed alone, taken in
    alternation, so that both see the same moment of a shared machine (on this VM either one
    alone moves by up to a third between runs minutes apart)."""
    t_step, t_floor = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        step(tr)
        t1 = time.perf_counter()
        for f in calls:
            f()
        t_step.append(t1 - t0)
        t_floor.append(time.perf_counter() - t1)
    return statistics.median(t_step), statistics.median(t_floor)


class OpTimer(TorchDispatchMode):
    """Wall time around every ATen call below autograd (forward, backward and optimiser ops
    alike), summed per operator, and the operand shapes of the matrix products.

    ``torch.profiler``'s self times were the profile here before; on this CPU they inflate
    memory-bound kernels several-fold (Nanda's ReLU: 2.5 ms/step under the profiler, 0.6 ms timed
    around the call) and sum to more than the unprofiled step. This timer's sum stays within a few
    per cent of the step, so its shares are the ones to read; the profiler's column is kept beside
    it for comparison (it books a composite's time to its parts: ``clone``'s to ``copy_``). A
    call's time includes the ATen calls it makes: they run inside it, not through the timer.
    """

    def __init__(self):
        super().__init__()
        self.per_op, self.shapes = defaultdict(float), []

    def __enter__(self):
        """Also time groklab's compiled kernels (``groklab.models.fused``): not ATen calls."""
        self._kernel = fused._kernel
        fused._kernel = lambda name, dtype: self._timed(f"groklab::{name} (C)", self._kernel(name, dtype))
        return super().__enter__()

    def __exit__(self, *exc):
        fused._kernel = self._kernel
        return super().__exit__(*exc)

    def _timed(self, name, f):
        def call(*args):
            t0 = time.perf_counter()
            f(*args)
            self.per_op[name] += time.perf_counter() - t0
        return call

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        t0 = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        name = f"aten::{func.overloadpacket.__name__}"
        self.per_op[name] += time.perf_counter() - t0
        if name in MATMULS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            self.shapes.append((name, [list(a.shape) for a in tensors], tensors[-1].dtype))
        return out


def profiled(tr: Trainer, n: int) -> dict:
    """torch.profiler's self CPU time per ATen operator, per step, over ``n`` steps."""
    per_op = defaultdict(float)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            step(tr)
    for ev in prof.events():
        if ev.device_type.name == "CPU" and ev.name.startswith("aten::"):
            per_op[ev.name] += ev.self_cpu_time_total / 1e6 / n
    return per_op


def report(model: str, steps: int, top: int = 16, recipe: str = "mlp-adamw") -> None:
    tr = build(model, recipe)
    for _ in range(3):
        step(tr)
    flops = step_flops(tr)
    n_prof = max(3, steps // 3)
    timer = OpTimer()
    with timer:
        for _ in range(n_prof):
            step(tr)
    per_op = {k: v / n_prof for k, v in timer.per_op.items()}
    shapes = timer.shapes[: len(timer.shapes) // n_prof]  # one step's products (every step makes the same)
    by_profiler = profiled(tr, n_prof)
    mm_self = sum(per_op.get(k, 0.0) for k in MATMULS)
    calls = products(shapes)
    for f in calls:
        f()
    t_step, floor = lockstep(tr, calls, steps)
    total = sum(per_op.values())
    name = model if model == "nanda" else f"{model}, {recipe}"
    print(f"\n== {name}: {sum(p.numel() for p in tr.model.parameters()):,} parameters, "
          f"{len(tr.data[1]):,} training examples, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"step {1e3 * t_step:.2f} ms (median of {steps}, in lockstep with the floor); {flops / 1e9:.3f} GFLOP/step "
          f"(matrix products), {flops / t_step / 1e9:.1f} GFLOP/s over the whole step")
    print(f"floor: its {len(shapes)} matrix products replayed alone {1e3 * floor:.2f} ms "
          f"({flops / floor / 1e9:.1f} GFLOP/s); step / floor = {t_step / floor:.2f}x")
    print(f"timed per operator ({1e3 * total:.2f} ms/step in all; torch.profiler: "
          f"{1e3 * sum(by_profiler.values()):.2f}): matrix products {1e3 * mm_self:.2f} ms "
          f"({mm_self / floor:.2f}x their replay), everything else {1e3 * (total - mm_self):.2f} ms "
          f"({(total - mm_self) / total:.1%})")
    print(f"{'kernel':42s} {'ms/step':>8s} {'share':>7s} {'profiler':>9s}")
    for name, s in sorted(per_op.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{name:42s} {1e3 * s:8.2f} {s / total:7.1%} {1e3 * by_profiler.get(name, 0.0):9.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="nanda,mul97,add113")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--top", type=int, default=16, help="how many operators the profile lists")
    ap.add_argument("--recipe", default="mlp-adamw", help="the race recipe mul97 and add113 train with")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    for m in a.models.split(","):
        report(m, a.steps, a.top, a.recipe)


if __name__ == "__main__":
    main()
