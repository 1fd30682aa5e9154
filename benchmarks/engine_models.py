"""groklab's training step against a plain PyTorch step on the 2-layer transformer and the MLP.

``benchmarks/engine.py`` does this for Nanda's 1-layer transformer; this script does it for the
other two models of the race (``groklab.accel.tune.RACE_TASKS``), each with the race's AdamW
(``mlp-adamw``'s method on the task):

* ``mul97``: Power et al.'s 2-layer pre-LN transformer (d 128, 4 heads, GELU), x·y mod 97 at 50 %,
  batch 512. The plain reference is what a user would write with ``torch.nn``: ``nn.Embedding``,
  ``nn.MultiheadAttention`` with a causal mask, ``nn.LayerNorm``, a ``Linear-GELU-Linear`` MLP,
  every position through every layer, logits read at the last one.
* ``add113``: Prieto et al.'s MLP 226-200-200-113 (no biases) on a+b mod 113 at 30 %, full
  batch. The plain reference feeds the one-hot pair (``F.one_hot``, concatenated, float) to an
  ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU``.

Both plain references use the recipe's loss (cross-entropy in float64, as groklab's config says)
and ``torch.optim.AdamW`` with the same hyperparameters, and see the same minibatches (groklab's
``Batches`` with the same seed). Three variants run one step each in turn (lockstep, so load
from other processes hits them alike):

* **plain (train step)**: AdamW's default kernel (``foreach``), denormals not flushed;
* **plain (step, fused, flush)**: the same model given groklab's two flags (fused AdamW, flushed
  denormals), so that its ratio to groklab is the algorithm's alone (mul97: the last layer at the
  answer position only; add113: the one-hot layer as two row gathers);
* **groklab**: ``train.loop.Trainer``'s step, as ``groklab run`` takes it.

Same numbers first: the plain reference and groklab train in float64 from the same weights for
``--steps`` steps; their train losses must agree to a max relative difference < 1e-4.

    OMP_NUM_THREADS=2 python benchmarks/engine_models.py [--models mul97,add113] [--steps 100]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from groklab.accel.tune import task_config
from groklab.train.loop import Batches, Trainer


class PlainPowerTransformer(nn.Module):
    """Power et al.'s pre-LN transformer written with ``torch.nn``, weights copied from groklab's."""

    def __init__(self, fast):
        super().__init__()
        V, d = fast.W_E.shape
        c = lambda t: nn.Parameter(t.detach().clone())  # noqa: E731
        self.embed = nn.Embedding(V, d, _weight=fast.W_E.detach().clone())
        self.pos = c(fast.W_pos)
        self.blocks = nn.ModuleList(PlainBlock(b) for b in fast.blocks)
        self.ln_f = copy.deepcopy(fast.ln_final)
        self.head = nn.Linear(d, fast.W_U.shape[1], bias=False)
        self.head.weight = c(fast.W_U.T)
        n = self.pos.shape[0]
        self.register_buffer("mask", torch.triu(torch.ones(n, n, dtype=torch.bool), 1))

    def forward(self, x):
        h = self.embed(x) + self.pos[: x.shape[1]]
        for b in self.blocks:
            h = b(h, self.mask)
        return self.head(self.ln_f(h))[:, -1]


class PlainBlock(nn.Module):
    def __init__(self, b):
        super().__init__()
        a, m = b.attn, b.mlp
        H, d, dh = a.W_Q.shape
        self.ln1, self.ln2 = copy.deepcopy(b.ln1), copy.deepcopy(b.ln2)
        self.attn = nn.MultiheadAttention(d, H, bias=False, batch_first=True)
        with torch.no_grad():  # in_proj rows: [Q; K; V], head h at rows h*dh..(h+1)*dh
            qkv = [W.permute(0, 2, 1).reshape(H * dh, d) for W in (a.W_Q, a.W_K, a.W_V)]
            self.attn.in_proj_weight.copy_(torch.cat(qkv))
            self.attn.out_proj.weight.copy_(a.W_O.reshape(H * dh, d).T)
        self.mlp = nn.Sequential(nn.Linear(d, m.W_in.shape[1]), nn.GELU(), nn.Linear(m.W_in.shape[1], d))
        with torch.no_grad():
            self.mlp[0].weight.copy_(m.W_in.T)
            self.mlp[0].bias.copy_(m.b_in)
            self.mlp[2].weight.copy_(m.W_out.T)
            self.mlp[2].bias.copy_(m.b_out)

    def forward(self, x, mask):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class PlainMLP(nn.Module):
    """Prieto et al.'s MLP on the concatenated one-hot pair, weights copied from groklab's."""

    def __init__(self, fast):
        super().__init__()
        self.p = fast.n_tokens
        self.net = nn.Sequential()
        for i, lin in enumerate(fast.layers):
            if i:
                self.net.append(nn.ReLU())
            new = nn.Linear(lin.in_features, lin.out_features, bias=False)
            new.weight = nn.Parameter(lin.weight.detach().clone())
            self.net.append(new)

    def forward(self, x):
        dtype = self.net[0].weight.dtype
        return self.net(torch.cat([F.one_hot(x[:, 0], self.p), F.one_hot(x[:, 1], self.p)], 1).to(dtype))


PLAIN = {"mul97": PlainPowerTransformer, "add113": PlainMLP}


class PlainRun:
    """A plain model, its AdamW and its minibatches (the same sequence as groklab's)."""

    def __init__(self, name: str, tr: Trainer, fused: bool = False, flush: bool = False):
        o, t = tr.cfg.optim, tr.cfg.train
        default = torch.get_default_dtype()
        torch.set_default_dtype(next(tr.model.parameters()).dtype)  # build in groklab's dtype
        try:
            self.model = PLAIN[name](tr.model)
        finally:
            torch.set_default_dtype(default)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps,
                                     weight_decay=o.wd, fused=fused or None)
        self.flush, self.data = flush, tr.data[:2]
        self.batches = Batches(len(self.data[1]), t.batch_size, t.batch_seed, "cpu")

    def step(self) -> float:
        torch.set_flush_denormal(self.flush)
        x, y = self.data
        idx = self.batches.next()
        if idx is not None:
            x, y = x[idx], y[idx]
        loss = F.cross_entropy(self.model(x).to(torch.float64), y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()
        return loss.item()


def groklab_step(tr: Trainer) -> float:
    torch.set_flush_denormal(True)  # as Trainer.build sets it for a run
    loss = tr.forward()[0]
    tr.update(loss)
    return loss.item()


def build(model: str, dtype: str = "float32", overrides: tuple[str, ...] = ()) -> Trainer:
    cfg = task_config("mlp-adamw", model, seed=0, overrides=[f"train.dtype={dtype}", *overrides])
    return Trainer.build(cfg)


def agreement(model: str, steps: int, overrides: tuple[str, ...] = ()) -> float:
    tr = build(model, "float64", overrides)
    plain = PlainRun(model, tr)
    lp = [plain.step() for _ in range(steps)]
    lg = [groklab_step(tr) for _ in range(steps)]
    return max(abs(a - b) / abs(b) for a, b in zip(lg, lp))


def report(model: str, steps: int) -> None:
    rel = agreement(model, steps)
    tr = build(model)
    runs = {"plain (train step)": PlainRun(model, tr).step,
            "plain (step, fused, flush)": PlainRun(model, tr, fused=True, flush=True).step,
            "groklab": lambda: groklab_step(tr)}
    times = {k: [] for k in runs}
    for _ in range(steps):
        for k, f in runs.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    torch.set_flush_denormal(False)
    print(f"\n== {model}: {len(tr.data[1]):,} training examples, batch {tr.cfg.train.batch_size or 'full'}, "
          f"{steps} steps, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"same numbers (float64): max relative train-loss difference groklab vs plain {rel:.2e} "
          f"({'OK' if rel < 1e-4 else 'FAIL'}, limit 1e-4)")
    g = statistics.median(times["groklab"])
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"{k:28s} median {1e3 * med:8.2f} ms/step   ratio to groklab {med / g:5.2f}x")
    if rel >= 1e-4:
        raise SystemExit(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mul97,add113")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    for m in a.models.split(","):
        if m not in PLAIN:
            raise SystemExit(f"--models: unknown model {m!r}; allowed: {', '.join(PLAIN)}")
        report(m, a.steps)


if __name__ == "__main__":
    main()
