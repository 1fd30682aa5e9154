"""The GTN evaluation protocol (Such et al. 2020, arXiv 1912.07768, §3.1).

``n`` fresh learners (seeds ``eval.seed + i``) are trained T steps on generated data with the
teacher's learned step sizes, without any meta-graph; their real test accuracy after every
inner step gives mean ± std curves. The baseline: the same learners from the same
initialisations trained T steps on real training batches of the same size B, SGD with momentum
0.9 and the constant learning rate of ``eval.lrs`` whose mean final test accuracy is best
(picked on the test set, which can only flatter the baseline).
"""
from __future__ import annotations

import torch

from groklab.gtn.data import GTNData
from groklab.gtn.learners import LearnerSpec, init_params
from groklab.gtn.unroll import initial_state, real_loss, sgd_momentum_step
from groklab.runs.rundir import finite_or_null

BASELINE_MOMENTUM = 0.9


def eval_spec(cfg) -> LearnerSpec:
    """The learner the protocol uses: the configured one (an MLP of ``learner.hidden`` when
    meta-training sampled random architectures)."""
    lc = cfg.learner
    kind = "mlp" if lc.kind == "random" else lc.kind
    return LearnerSpec(kind, tuple(lc.hidden if kind == "mlp" else lc.channels), lc.weight_norm, lc.norm)


@torch.no_grad()
def test_accuracy(learner, state, data: GTNData) -> float:
    return real_loss(learner, state, data.x_test, data.y_test)[1].item()


def teach(learner, params0, batches, lrs, moms, data: GTNData, final: list | None = None) -> list[float]:
    """Train from ``params0`` on ``batches`` [(x (B, *shape), y (B,))] with per-step ``lrs`` and
    ``moms``; return the real test accuracy before and after every step: (T + 1,). With a list
    ``final``, append the trained learner's accuracy on the whole real training set to it."""
    state = initial_state(learner, params0)
    accs = [test_accuracy(learner, state, data)]
    for t, (x, y) in enumerate(batches):
        state, _ = sgd_momentum_step(learner, state, x, y, t, lrs[t], moms[t], create_graph=False)
        accs.append(test_accuracy(learner, state, data))
    if final is not None:
        with torch.no_grad():
            final.append(real_loss(learner, state, data.x_train, data.y_train)[1].item())
    return accs


@torch.no_grad()
def generated_batches(teacher, g: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The T batches (x, target) the teacher feeds one learner (a fresh plan for the random
    curricula); the target is the labels (B,) or, with learned labels, soft targets (B, C)."""
    return [(x, target) for x, target, _ in generated_examples(teacher, g)]


@torch.no_grad()
def generated_examples(teacher, g: torch.Generator
                       ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``generated_batches`` with the class labels (B,) the generator was fed at each step:
    [(x (B, *shape), target, y (B,))] for t = 0 … T-1."""
    plan = teacher.curriculum.plan(g)
    dtype = teacher.log_lr.dtype
    out = []
    for t in range(teacher.log_lr.shape[0]):
        z, y = teacher.curriculum.inputs(t, plan)
        out.append((teacher.generator(z.to(dtype), y), teacher.curriculum.target(t, plan, y), y))
    return out


def real_batches(data: GTNData, steps: int, batch: int, g: torch.Generator):
    n = len(data.y_train)
    idx = [torch.randint(0, n, (min(batch, n),), generator=g) for _ in range(steps)]
    return [(data.x_train[i], data.y_train[i]) for i in idx]


def _std(v: torch.Tensor) -> float:
    return v.std().item() if len(v) > 1 else 0.0


def _final(curves) -> torch.Tensor:
    return torch.tensor([c[-1] for c in curves], dtype=torch.float64)


def teach_learners(cfg, teacher, data: GTNData, n: int) -> tuple[list[list[float]], list[float]]:
    """The protocol's ``n`` fresh learners (seeds ``eval.seed + i``) taught by ``teacher``: their
    test-accuracy curves (n, T+1) and final accuracies on the real training set (n,)."""
    from groklab.gtn.meta import get_learner
    learner = get_learner(eval_spec(cfg), data, teacher.log_lr.dtype)
    step_lrs, step_moms = teacher.log_lr.detach().exp(), teacher.log_mom.detach().exp()
    curves, train = [], []
    for i in range(n):
        seed = cfg.eval.seed + i
        params0 = init_params(learner, torch.Generator().manual_seed(seed), teacher.log_lr.dtype)
        batches = generated_batches(teacher, torch.Generator().manual_seed(seed + 7_919))
        curves.append(teach(learner, params0, batches, step_lrs, step_moms, data, final=train))
    return curves, train


def evaluate(cfg, teacher, data: GTNData, learners: int | None = None, lrs=None) -> dict:
    """Run the protocol. Returns {"gtn": curves (n, T+1), "real": {lr: curves}, "best_lr",
    and mean/std of the final accuracies on the test set and (``*_train_*``, the meta-gap's
    other side) on the real training set} as plain lists and floats."""
    from groklab.gtn.meta import get_learner
    n = learners or cfg.eval.learners
    lrs_grid = list(lrs or cfg.eval.lrs)
    dtype = teacher.log_lr.dtype
    spec = eval_spec(cfg)
    learner = get_learner(spec, data, dtype)
    T, B = cfg.inner.steps, cfg.inner.batch
    gtn, gtn_train = teach_learners(cfg, teacher, data, n)
    real, real_train = {lr: [] for lr in lrs_grid}, {lr: [] for lr in lrs_grid}
    for i in range(n):
        seed = cfg.eval.seed + i
        params0 = init_params(learner, torch.Generator().manual_seed(seed), dtype)
        rb = real_batches(data, T, B, torch.Generator().manual_seed(seed + 104_729))
        for lr in lrs_grid:
            lr_t = torch.full((T,), lr, dtype=dtype)
            mom_t = torch.full((T,), BASELINE_MOMENTUM, dtype=dtype)
            real[lr].append(teach(learner, params0, rb, lr_t, mom_t, data, final=real_train[lr]))
    best_lr = max(lrs_grid, key=lambda lr: _final(real[lr]).mean().item())
    g, r = _final(gtn), _final(real[best_lr])
    gt, rt = torch.tensor(gtn_train, dtype=torch.float64), torch.tensor(real_train[best_lr], dtype=torch.float64)
    return finite_or_null({"learner": spec.describe(), "steps": T, "batch": B, "learners": n,
            "gtn_mean": g.mean().item(), "gtn_std": _std(g),
            "real_mean": r.mean().item(), "real_std": _std(r), "best_lr": best_lr,
            "gtn_train_mean": gt.mean().item(), "gtn_train_std": _std(gt),
            "real_train_mean": rt.mean().item(), "real_train_std": _std(rt),
            "real_by_lr": {str(lr): _final(real[lr]).mean().item() for lr in lrs_grid},
            "gtn_curves": gtn, "real_curves": real[best_lr],
            "learned_lr": teacher.log_lr.detach().exp().tolist(),
            "learned_momentum": teacher.log_mom.detach().exp().tolist()})


def evaluate_raw(cfg, teacher, data: GTNData, learners: int | None = None) -> dict:
    """The GTN side of the protocol for the un-averaged teacher of a ``meta.ema`` run (the
    same learners and data draws): {"gtn_raw_mean", "gtn_raw_std", "gtn_raw_train_mean", …}."""
    curves, train = teach_learners(cfg, teacher, data, learners or cfg.eval.learners)
    g, gt = _final(curves), torch.tensor(train, dtype=torch.float64)
    return finite_or_null({"gtn_raw_mean": g.mean().item(), "gtn_raw_std": _std(g),
                           "gtn_raw_train_mean": gt.mean().item(), "gtn_raw_train_std": _std(gt),
                           "gtn_raw_curves": curves})
