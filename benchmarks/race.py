"""Time to grok: a race recipe in groklab against the same recipe in a plain PyTorch loop.

The plain loop is what a user writes from Prieto et al.'s description (arXiv 2501.04697): the
MLP as ``nn.Sequential`` of ``nn.Linear`` layers on the concatenated one-hot vectors of x and y
(226 wide), AdamW, ⊥Grad written in place on ``p.grad`` as in the paper's code, the weight-norm
projection after the step when the recipe has one, the recipe's loss, validation accuracy every
``--eval-every`` steps. It starts from
groklab's initial weights, so both follow the same trajectory up to float rounding. groklab runs
the recipe through ``groklab.run`` (gather first layer, fused AdamW, flushed denormals).

Both clocks run from the first step to the evaluation that first sees the threshold,
evaluations included (groklab's ``time`` field). Runs alternate (plain, groklab, plain, ...)
``--repeats`` times so load from other processes hits both alike; medians are printed.

    python benchmarks/race.py [--recipe mlp-orthograd] [--repeats 3] [--threads 2] [--seed 0]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import groklab
from groklab.accel.losses import build_loss
from groklab.accel.race import first_crossing, race_config
from groklab.models import build_model
from groklab.tasks import build_task
from groklab.train.optim import get_lr


def plain_mlp(fast) -> nn.Sequential:
    """groklab's one-hot MLP as a plain nn.Sequential on (B, 2p) one-hot inputs, same weights."""
    layers = []
    for i, lin in enumerate(fast.layers):
        plain = nn.Linear(lin.in_features, lin.out_features, bias=lin.bias is not None)
        with torch.no_grad():
            plain.weight.copy_(lin.weight)
            if lin.bias is not None:
                plain.bias.copy_(lin.bias)
        layers += [plain, nn.ReLU()] if i < len(fast.layers) - 1 else [plain]
    return nn.Sequential(*layers)


def orthogonalize_(params, eps: float = 1e-30) -> None:
    """Prieto et al.'s ⊥Grad as in their code: in place on every p.grad."""
    with torch.no_grad():
        for p in params:
            w, g = p.view(-1), p.grad.view(-1)
            g_orth = g - (w @ g) / (w @ w + eps) * w
            p.grad.copy_((g_orth * (g.norm() / (g_orth.norm() + eps))).view_as(p.grad))


def plain_run(cfg, thresholds) -> dict:
    """Train cfg's MLP recipe in a plain loop until val acc >= max(thresholds) or the budget."""
    task = build_task(cfg.task)
    p = task.n_classes
    model = plain_mlp(build_model(cfg, task))
    onehot = lambda x: torch.cat([F.one_hot(x[:, 0], p), F.one_hot(x[:, 1], p)], 1).float()  # noqa: E731
    xtr, ytr, xva, yva = onehot(task.x_train), task.y_train, onehot(task.x_val), task.y_val
    o = cfg.optim
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps,
                            weight_decay=o.wd)
    loss_fn = build_loss(cfg.train.loss, cfg.train.loss_dtype)
    hits, top = {}, max(thresholds)
    t0 = time.perf_counter()
    step = 0
    for step in range(cfg.train.steps + 1):
        if step % cfg.train.eval_every == 0 or step == cfg.train.steps:
            with torch.no_grad():
                acc = float((model(xva).argmax(-1) == yva).float().mean())
            for t in thresholds:
                if acc >= t and t not in hits:
                    hits[t] = [step, time.perf_counter() - t0]
            if acc >= top or step == cfg.train.steps:
                break
        for g in opt.param_groups:
            g["lr"] = get_lr(step, o, cfg.train.steps)
        loss = loss_fn(model(xtr), ytr)
        loss.backward()
        if cfg.accel.orthograd:
            orthogonalize_(model.parameters())
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cfg.accel.weight_norm > 0:  # Omnigrok's constrained runs: rescale to the target norm
            with torch.no_grad():
                norm = torch.sqrt(sum((q.double() ** 2).sum() for q in model.parameters()))
                for q in model.parameters():
                    q.mul_(cfg.accel.weight_norm / norm)
    wall = time.perf_counter() - t0
    return {"hits": {t: hits.get(t) for t in thresholds}, "steps": step, "wall": wall, "val_acc": acc}


def groklab_run(cfg, thresholds) -> dict:
    with tempfile.TemporaryDirectory() as d:
        r = groklab.run(cfg, out=Path(d) / "r", progress=False, report=False)
        recs = r.metrics
    return {"hits": {t: first_crossing(recs, t) for t in thresholds},
            "steps": r.summary["steps_done"], "wall": r.summary["wall_seconds"],
            "val_acc": r.summary["final_val_acc"]}


def describe(name: str, runs: list[dict], thresholds) -> dict:
    out = {}
    for t in thresholds:
        hits = [r["hits"][t] for r in runs]
        if all(hits):
            out[t] = (statistics.median(h[0] for h in hits), statistics.median(h[1] for h in hits))
        else:
            out[t] = None
        got = f"step {out[t][0]:.0f} in {out[t][1]:.2f} s" if out[t] else "not reached"
        ms = statistics.median(1000 * r["wall"] / max(1, r["steps"]) for r in runs)
        print(f"  {name:8s} {t:.0%}: {got}   ({ms:.1f} ms/step incl. evaluation; "
              f"seconds per repeat: {', '.join(f'{h[1]:.2f}' if h else '-' for h in hits)}; "
              f"last val acc {runs[-1]['val_acc']:.4f} at step {runs[-1]['steps']})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="mlp-orthograd")
    ap.add_argument("--task", default="nanda", help="task preset, or 'own'")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    thresholds = (0.95, 0.99)
    cfg = race_config(args.recipe, None if args.task == "own" else args.task, args.seed,
                      eval_every=args.eval_every, stop_at=max(thresholds), overrides=args.set)
    if cfg.model.arch != "mlp" or cfg.model.embed != "onehot" or cfg.optim.name != "adamw" \
            or cfg.accel.grokfast != "none" or cfg.train.batch_size or cfg.optim.clip:
        raise SystemExit("the plain loop covers full-batch one-hot MLP recipes with AdamW, "
                         "optionally ⊥Grad, weight-norm control and StableMax")
    print(f"recipe {args.recipe}, task {cfg.task.op} mod {cfg.task.p}, frac {cfg.task.frac}, seed "
          f"{args.seed}, eval every {args.eval_every}, torch threads {torch.get_num_threads()}")
    torch.set_flush_denormal(True)
    plain, ours = [], []
    groklab_run(race_config(args.recipe, "nanda", 0, steps=2, overrides=args.set), thresholds)  # imports
    for _ in range(args.repeats):
        plain.append(plain_run(cfg, thresholds))
        ours.append(groklab_run(cfg, thresholds))
    a, b = describe("plain", plain, thresholds), describe("groklab", ours, thresholds)
    for t in thresholds:
        if a[t] and b[t]:
            print(f"  time to {t:.0%}: plain / groklab = {a[t][1] / b[t][1]:.2f}x")


if __name__ == "__main__":
    main()
