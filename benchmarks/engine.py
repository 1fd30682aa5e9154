"""groklab's training step against a plain PyTorch implementation of Nanda's recipe.

The plain reference follows the structure of Nanda et al.'s public training code
(arXiv 2301.05217): einsum attention over all three positions, MLP and unembedding at every
position, logits read at the last one, float64 cross-entropy, AdamW with a LambdaLR warm-up,
and — as in that loop — the test loss computed every epoch. A second plain variant skips the
per-epoch test loss ("train step only"); a third is that train step given groklab's two flags,
fused AdamW and flushed denormals, so that its ratio to groklab is the algorithm's alone (answer
position only, token tables) and its ratio to the second is the flags'. groklab runs the same
recipe with its fast model, fused AdamW, flushed denormals and evaluation every ``--eval-every``
steps. groklab's allocator setting (``train.memory.keep_freed_memory``, which a run makes once
per process) is made at the start and so holds for every variant alike: it is not in the ratios.

Two parts, all models built from the same initial weights:

1. **Same numbers** (float64): the plain reference and groklab train in lockstep for ``--steps``
   steps; their train losses must agree to a max relative difference < 1e-4 (they agree to
   ~1e-15: the two are the same function, computed differently). Float64 because in float32 this
   recipe's trajectory is chaotic: rounding differences of 1e-7 grow ~1e4-fold in 40 steps under
   Adam, so two float32 runs of *one* model that differ only in the AdamW kernel (fused vs
   foreach) end 200 steps apart by ~5e-2 — that rounding floor is measured and printed too.
2. **Speed** (float32, the recipe as run): the plain variants and groklab run in lockstep (one
   step of each in turn, so load from other processes hits them alike); per-step medians and
   ratios are printed.

    python benchmarks/engine.py [--steps 200] [--p 113] [--frac 0.3] [--eval-every 100]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import groklab
from groklab.accel.losses import build_loss
from groklab.models import build_model
from groklab.tasks import build_task
from groklab.train.loop import evaluate
from groklab.train.memory import keep_freed_memory
from groklab.train.optim import build_optimizer, get_lr, set_lr


class PlainTransformer(nn.Module):
    """Nanda's 1-layer transformer written plainly: every position through every layer."""

    def __init__(self, fast_model):
        super().__init__()
        b = fast_model.blocks[0]
        c = lambda t: nn.Parameter(t.detach().clone())  # noqa: E731
        self.W_E = c(fast_model.W_E.T)                      # (d, V) as in Nanda's code
        self.W_pos = c(fast_model.W_pos)                    # (n_ctx, d)
        self.W_Q = c(b.attn.W_Q.transpose(1, 2))            # (H, dh, d)
        self.W_K = c(b.attn.W_K.transpose(1, 2))
        self.W_V = c(b.attn.W_V.transpose(1, 2))
        self.W_O = c(b.attn.W_O.flatten(0, 1).T)            # (d, H*dh)
        self.W_in, self.b_in = c(b.mlp.W_in.T), c(b.mlp.b_in)      # (d_mlp, d)
        self.W_out, self.b_out = c(b.mlp.W_out.T), c(b.mlp.b_out)  # (d, d_mlp)
        self.W_U = c(fast_model.W_U)                        # (d, V)
        n = self.W_pos.shape[0]
        self.register_buffer("mask", torch.tril(torch.ones(n, n)))

    def forward(self, x):
        n = x.shape[1]
        x = torch.einsum("dbp->bpd", self.W_E[:, x]) + self.W_pos[:n]
        k = torch.einsum("ihd,bpd->biph", self.W_K, x)
        q = torch.einsum("ihd,bpd->biph", self.W_Q, x)
        v = torch.einsum("ihd,bpd->biph", self.W_V, x)
        scores = torch.einsum("biph,biqh->biqp", k, q)
        scores = torch.tril(scores) - 1e10 * (1 - self.mask[:n, :n])
        attn = F.softmax(scores / math.sqrt(self.W_K.shape[1]), dim=-1)
        z = torch.einsum("biph,biqp->biqh", v, attn)
        z = z.permute(0, 2, 1, 3).reshape(z.shape[0], n, -1)
        x = x + torch.einsum("df,bqf->bqd", self.W_O, z)
        pre = torch.einsum("md,bpd->bpm", self.W_in, x) + self.b_in
        x = x + torch.einsum("dm,bpm->bpd", self.W_out, F.relu(pre)) + self.b_out
        return x @ self.W_U


def ce_high_precision(logits, labels):
    logp = F.log_softmax(logits.to(torch.float64), dim=-1)
    return -torch.gather(logp, -1, labels[:, None]).mean()


def plain_adamw(model, o, fused: bool = False):
    """Nanda's optimiser: AdamW with a LambdaLR linear warm-up (lr 0 at the first step)."""
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.wd, betas=(o.beta1, o.beta2),
                            fused=fused or None)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(s / o.warmup, 1))


def max_rel(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / abs(y) for x, y in zip(a, b))


def plain_step(model, opt, sch, x, y) -> float:
    """One step of the plain reference: every position through the model, logits at the last."""
    loss = ce_high_precision(model(x)[:, -1], y)
    loss.backward()
    opt.step()
    sch.step()
    opt.zero_grad()
    return loss.item()


def groklab_step(model, opt, cfg, step, x, y, loss_fn, val=None) -> float:
    """One step as groklab's loop takes it; ``val=(x, y)`` also evaluates, as on an eval step."""
    set_lr(opt, get_lr(step, cfg.optim, cfg.train.steps))
    loss = loss_fn(model(x), y)
    if val is not None:
        evaluate(model, *val, loss_fn)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def agreement(cfg, task, steps: int, dtype: torch.dtype) -> float:
    """Train plain and groklab from the same weights in ``dtype``; max relative loss difference."""
    fast = build_model(cfg, task).to(dtype)
    plain = PlainTransformer(fast)
    opt_p, sch_p = plain_adamw(plain, cfg.optim)
    opt_f = build_optimizer(fast.parameters(), cfg.optim)
    loss_fn = build_loss(cfg.train.loss, cfg.train.loss_dtype)
    x, y = task.x_train, task.y_train
    lp = [plain_step(plain, opt_p, sch_p, x, y) for _ in range(steps)]
    lf = [groklab_step(fast, opt_f, cfg, step, x, y, loss_fn) for step in range(steps)]
    return max_rel(lf, lp)


def rounding_floor(cfg, task, steps: int) -> float:
    """Two float32 runs of groklab's own model differing only in the AdamW kernel (fused vs foreach)."""
    o, losses = cfg.optim, []
    loss_fn = build_loss(cfg.train.loss, cfg.train.loss_dtype)
    for kernel in ({"fused": True}, {"foreach": True}):
        m = build_model(cfg, task)
        opt = torch.optim.AdamW(m.parameters(), lr=o.lr, weight_decay=o.wd, betas=(o.beta1, o.beta2), **kernel)
        losses.append([groklab_step(m, opt, cfg, step, task.x_train, task.y_train, loss_fn)
                       for step in range(steps)])
    return max_rel(*losses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--p", type=int, default=113)
    ap.add_argument("--frac", type=float, default=0.3)
    ap.add_argument("--eval-every", type=int, default=100)
    a = ap.parse_args()
    keep_freed_memory()

    cfg = groklab.resolve("nanda", overrides=[f"task.p={a.p}", f"task.frac={a.frac}",
                                               f"train.eval_every={a.eval_every}"])
    task = build_task(cfg.task)
    xtr, ytr, xte, yte = task.x_train, task.y_train, task.x_val, task.y_val
    print(f"task {task.name}, {len(ytr)} train / {len(yte)} test pairs, {a.steps} steps, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    torch.set_flush_denormal(False)
    rel64 = agreement(cfg, task, a.steps, torch.float64)
    print(f"same numbers (float64): max relative train-loss difference groklab vs plain over "
          f"{a.steps} steps {rel64:.2e} ({'OK' if rel64 < 1e-4 else 'FAIL'}, limit 1e-4)")

    fast = build_model(cfg, task)
    plain_loop, plain_step_model, plain_flags = (PlainTransformer(fast) for _ in range(3))
    opt_loop, sch_loop = plain_adamw(plain_loop, cfg.optim)
    opt_step, sch_step = plain_adamw(plain_step_model, cfg.optim)
    opt_flags, sch_flags = plain_adamw(plain_flags, cfg.optim, fused=True)
    opt_fast = build_optimizer(fast.parameters(), cfg.optim)
    loss_fn = build_loss(cfg.train.loss, cfg.train.loss_dtype)

    def nanda_loop_step():  # train and test loss every epoch, as in the paper's loop (with grad)
        ce_high_precision(plain_loop(xte)[:, -1], yte).item()
        return plain_step(plain_loop, opt_loop, sch_loop, xtr, ytr)

    times = {"plain (Nanda's loop)": [], "plain (train step only)": [],
             "plain (step, fused, flush)": [], "groklab": []}
    losses = {k: [] for k in times}
    for step in range(a.steps):
        torch.set_flush_denormal(False)
        t0 = time.perf_counter()
        losses["plain (Nanda's loop)"].append(nanda_loop_step())
        t1 = time.perf_counter()
        losses["plain (train step only)"].append(plain_step(plain_step_model, opt_step, sch_step, xtr, ytr))
        torch.set_flush_denormal(True)
        t2 = time.perf_counter()
        losses["plain (step, fused, flush)"].append(plain_step(plain_flags, opt_flags, sch_flags, xtr, ytr))
        t3 = time.perf_counter()
        val = (xte, yte) if step % a.eval_every == 0 else None
        losses["groklab"].append(groklab_step(fast, opt_fast, cfg, step, xtr, ytr, loss_fn, val))
        t4 = time.perf_counter()
        for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[k].append(dt)
    torch.set_flush_denormal(False)

    ref = losses["plain (train step only)"]
    print(f"float32 train loss: step 0 {ref[0]:.6f}, step {a.steps - 1} {ref[-1]:.6f}; max relative "
          f"difference groklab vs plain {max_rel(losses['groklab'], ref):.2e}, rounding floor "
          f"(groklab fused vs foreach AdamW) {rounding_floor(cfg, task, a.steps):.2e}")
    g = statistics.median(times["groklab"])
    mean_g = statistics.fmean(times["groklab"])
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"{k:26s} median {1e3 * med:8.2f} ms/step   mean {1e3 * statistics.fmean(ts):8.2f}"
              f"   ratio to groklab (median) {med / g:5.2f}x   (mean) {statistics.fmean(ts) / mean_g:5.2f}x")
    if rel64 >= 1e-4:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
