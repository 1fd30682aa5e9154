"""Meta-training of a Generative Teaching Network (Such et al. 2020, arXiv 1912.07768, Alg. 1).

Every outer step: draw ``meta.learners`` fresh learners (new initialisations; optionally new
widths or architectures), unroll T inner steps on generated batches for each, take the
meta-loss on real training batches (averaged over the learners), backpropagate into the
``Teacher`` (generator, curriculum, optional label logits, per-step log learning rate and log
momentum), clip the meta-gradient's global norm, and step Adam whose learning rate follows a
cosine from ``meta.lr`` down to ``meta.min_lr_frac · meta.lr``.

All randomness of outer step s comes from a generator seeded by (meta.seed, s), so a run
resumed from a checkpoint (teacher weights + Adam state) continues bit for bit.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch
from torch import nn

from groklab.gtn.config import GTNConfig
from groklab.gtn.curriculum import Curriculum
from groklab.gtn.data import GTNData, random_rotate, random_shift
from groklab.gtn.generator import build_generator
from groklab.gtn.learners import Learner, LearnerSpec, init_params, spec_for_step
from groklab.gtn.unroll import (
    Unroll,
    initial_state,
    meta_backward_checkpointed,
    meta_backward_plain,
    real_loss,
    sgd_momentum_step,
)
from groklab.runs.checkpoint import all_finite, list_checkpoints, resume_point, save_checkpoint
from groklab.runs.rundir import JsonlLogger, truncate_jsonl

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class Teacher(nn.Module):
    """The meta-parameters: generator G, curriculum inputs (and learned label logits), log_lr
    (T,), log_mom (T,). With ``generator.kind=pixels`` G has no parameters and the curriculum
    inputs are the T·B learned examples."""

    def __init__(self, cfg: GTNConfig, data: GTNData):
        super().__init__()
        with torch.random.fork_rng():               # seeded init without touching global RNG
            torch.manual_seed(cfg.meta.seed)
            self.generator = build_generator(cfg.generator, data)
        T = cfg.inner.steps
        # learned pixels: the curriculum's "noise" is the examples themselves, (T, B, d) ~ N(0, 1)
        z_dim = data.d_in if cfg.generator.kind == "pixels" else cfg.generator.z_dim
        self.curriculum = Curriculum(cfg.inner.curriculum, T, cfg.inner.batch, z_dim,
                                     data.n_classes, seed=cfg.meta.seed + 1,
                                     learned_labels=cfg.labels.learned, label_scale=cfg.labels.scale)
        self.log_lr = nn.Parameter(torch.full((T,), math.log(cfg.inner.lr)))
        self.log_mom = nn.Parameter(torch.full((T,), math.log(cfg.inner.momentum)))
        # meta.ema > 0: a running average of every parameter, kept as buffers (so checkpoints
        # carry it and a resumed run continues it bit for bit); nothing reads it during training
        self.ema = None
        if cfg.meta.ema:
            self.ema = nn.Module()
            for name, p in self.named_parameters():
                self.ema.register_buffer(_ema_key(name), p.detach().clone())

    @torch.no_grad()
    def update_ema(self, decay: float, step: int) -> None:
        """After outer step ``step`` (0-based): ema ← d·ema + (1 − d)·θ with
        d = min(decay, (1 + step)/(10 + step)), so the random initial weights are forgotten
        within the first few steps rather than weighting the average for ~1/(1 − decay) steps."""
        d = min(decay, (1 + step) / (10 + step))
        for name, p in self.named_parameters():
            getattr(self.ema, _ema_key(name)).lerp_(p.detach(), 1 - d)

    def averaged(self) -> "Teacher":
        """The teacher that teaches: a copy whose parameters are the running average when
        ``meta.ema`` > 0; the teacher itself otherwise."""
        if self.ema is None:
            return self
        avg = copy.deepcopy(self)
        with torch.no_grad():
            for name, p in avg.named_parameters():
                p.copy_(getattr(avg.ema, _ema_key(name)))
        return avg


def _ema_key(name: str) -> str:
    return name.replace(".", "__")


def step_generator(seed: int, step: int, k: int = 0) -> torch.Generator:
    """The random stream of learner ``k`` of outer step ``step`` (k = 0: the single-learner one)."""
    base = seed * 1_000_003 + step
    return torch.Generator().manual_seed(base if k == 0 else (base * 1_009 + k) % 2**63)


def cosine_lr(cfg: GTNConfig, step: int) -> float:
    """The meta learning rate of outer step ``step``: a cosine from ``meta.lr`` to
    ``meta.min_lr_frac``·lr over ``meta.steps``, times a linear warmup (step+1)/W over the
    first W = ``meta.warmup`` steps (0: none)."""
    frac = min(step / max(cfg.meta.steps, 1), 1.0)
    lo = cfg.meta.min_lr_frac
    warm = min(1.0, (step + 1) / cfg.meta.warmup) if cfg.meta.warmup else 1.0
    return warm * cfg.meta.lr * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * frac)))


def unroll_length(cfg: GTNConfig, step: int) -> int:
    """Inner steps unrolled at outer step ``step``: T, or with ``inner.grow`` = G a length
    growing linearly, ⌈T·(step+1)/G⌉, over the first G outer steps (short unrolls first)."""
    T, G = cfg.inner.steps, cfg.inner.grow
    return T if not G or step >= G else max(1, math.ceil(T * (step + 1) / G))


def loss_steps(cfg: GTNConfig, T: int | None = None) -> list[int]:
    T, k = T or cfg.inner.steps, cfg.inner.intermediate
    return sorted(set(range(k, T + 1, k)) | {T}) if k else [T]


_LEARNERS: dict[tuple, Learner] = {}


def get_learner(spec: LearnerSpec, data: GTNData, dtype: torch.dtype) -> Learner:
    """Learner modules only describe the computation (parameters are passed in), so cache them."""
    key = (spec, data.shape, data.n_classes, dtype)
    if key not in _LEARNERS:
        _LEARNERS[key] = Learner(spec, data.shape, data.n_classes).to(dtype)
    return _LEARNERS[key]


def make_unroll(cfg: GTNConfig, teacher: Teacher, data: GTNData, step: int, k: int = 0,
                weight: float = 1.0) -> Unroll:
    """The unroll of learner ``k`` of outer step ``step``: its learner, initialisation, plan and
    real batches; its meta-loss is scaled by ``weight``."""
    dtype = DTYPES[cfg.meta.dtype]
    g = step_generator(cfg.meta.seed, step, k)
    spec = spec_for_step(cfg.learner, step, cfg.meta.seed, k)
    learner = get_learner(spec, data, dtype)
    params0 = init_params(learner, g, dtype)
    plan = teacher.curriculum.plan(g)
    T = unroll_length(cfg, step)
    ls = loss_steps(cfg, T)
    n = len(data.y_train)
    idx = [torch.randint(0, n, (min(cfg.meta.real_batch, n),), generator=g) for _ in ls]
    real_x = [data.x_train[i] for i in idx]
    if cfg.meta.shift:      # the teacher is judged on translated real data (drawn after the rest)
        real_x = [random_shift(x, cfg.meta.shift, g, data.background) for x in real_x]
    if cfg.meta.rotate:     # ... and on rotated real data (drawn after the shifts)
        real_x = [random_rotate(x, cfg.meta.rotate, g, data.background) for x in real_x]
    return Unroll(learner, params0, teacher.generator, teacher.curriculum, teacher.log_lr[:T],
                  teacher.log_mom[:T], plan, ls, real_x,
                  [data.y_train[i] for i in idx], stats={"learner": spec.describe()}, weight=weight)


def meta_backward(cfg: GTNConfig, teacher: Teacher, data: GTNData, step: int) -> tuple[float, list[Unroll]]:
    """Accumulate the meta-gradient of outer step ``step`` into the teacher's ``.grad``: the
    mean over its ``meta.learners`` learners (each loss scaled by 1/K, so one backward pass per
    learner and the memory of one). Returns the mean meta-loss and the unrolls (their stats)."""
    K = cfg.meta.learners
    loss, unrolls = 0.0, []
    for k in range(K):
        u = make_unroll(cfg, teacher, data, step, k, weight=1.0 / K if K > 1 else 1.0)
        if cfg.inner.checkpoint:
            loss += meta_backward_checkpointed(u, cfg.inner.checkpoint)
        else:
            loss += meta_backward_plain(u)
        unrolls.append(u)
    return loss, unrolls


# A non-finite meta-gradient skips its outer step (``meta_step``). A teacher whose unrolls
# overflow every time can then never move again (seen at p = 31 over 2,400 outer steps): after
# this many non-finite meta-gradients in a row the run stops with status "nan" and keeps its
# last checkpoint, instead of spending the rest of its budget standing still.
MAX_SKIPPED = 20


def meta_step(cfg: GTNConfig, teacher: Teacher, opt: torch.optim.Optimizer, data: GTNData,
              step: int) -> dict:
    """One outer step; returns its record (meta-loss, final real loss/acc averaged over the
    meta-batch of learners, grad norm, lr)."""
    opt.zero_grad(set_to_none=True)
    loss, us = meta_backward(cfg, teacher, data, step)
    mean = lambda key: (sum(u.stats[key] for u in us) / len(us)) if key in us[0].stats else None  # noqa: E731
    params = [p for p in teacher.parameters() if p.grad is not None]
    gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.meta.clip if cfg.meta.clip else float("inf"))
    lr = cosine_lr(cfg, step)
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
    if torch.isfinite(gnorm):       # a non-finite meta-gradient skips the step instead of poisoning G
        opt.step()
    if teacher.ema is not None:
        teacher.update_ema(cfg.meta.ema, step)
    return {"step": step + 1, "meta_loss": loss, "real_loss": mean("final_loss"),
            "real_acc": mean("final_acc"), "inner_loss": mean("inner_loss"),
            "grad_norm": gnorm.item(), "meta_lr": lr, "learner": ",".join(u.stats["learner"] for u in us),
            "lr_first": teacher.log_lr[0].exp().item(), "lr_last": teacher.log_lr[-1].exp().item(),
            "mom_first": teacher.log_mom[0].exp().item(), "mom_last": teacher.log_mom[-1].exp().item()}


def make_optimizer(cfg: GTNConfig, teacher: Teacher) -> torch.optim.Optimizer:
    """Adam over the teacher; learned label logits in a group of their own whose learning rate
    is ``labels.lr_mult`` times the rest (saturated soft labels move slowly at meta.lr)."""
    labels = teacher.curriculum.label_logits
    if labels is None:
        return torch.optim.Adam(teacher.parameters(), lr=cfg.meta.lr)
    rest = [p for p in teacher.parameters() if p is not labels]
    return torch.optim.Adam([{"params": rest},
                             {"params": [labels], "lr_mult": cfg.labels.lr_mult}], lr=cfg.meta.lr)


def train_gtn(cfg: GTNConfig, data: GTNData, out: str | Path, resume: bool = False,
              progress: bool = False) -> tuple[Teacher, dict]:
    """Meta-train into run directory ``out`` (config.json already written), checkpointing every
    ``meta.checkpoint_every`` outer steps and at the end. With ``resume`` continue from the
    last checkpoint. Returns the teacher and {"steps_done", "wall_seconds", "status"}."""
    out = Path(out)
    dtype = DTYPES[cfg.meta.dtype]
    data.to(dtype)
    teacher = Teacher(cfg, data).to(dtype)
    opt = make_optimizer(cfg, teacher)
    start, wall0 = 0, 0.0
    if resume and list_checkpoints(out):
        start, weights, state = resume_point(out)
        teacher.load_state_dict(weights)
        opt.load_state_dict(state["optim"])
        wall0 = state["wall_seconds"]
    truncate_jsonl(out / "metrics.jsonl", start + 1)
    log = JsonlLogger(out / "metrics.jsonl")
    t0 = time.perf_counter()
    wall = lambda: wall0 + time.perf_counter() - t0  # noqa: E731

    def save(step: int) -> None:
        state = {"optim": opt.state_dict(), "step": step, "wall_seconds": wall()}
        if not (all_finite(teacher) and all_finite(state)):  # keep the last finite checkpoint
            raise FloatingPointError(f"the teacher is not finite after outer step {step}")
        save_checkpoint(out, step, teacher, state)

    bar = _bar(progress, cfg.meta.steps, start)
    status, skipped = "completed", 0
    try:
        for s in range(start, cfg.meta.steps):
            rec = meta_step(cfg, teacher, opt, data, s)
            skipped = 0 if math.isfinite(rec["grad_norm"]) else skipped + 1
            if skipped >= MAX_SKIPPED:
                raise FloatingPointError(f"the meta-gradient was non-finite at {skipped} outer steps in a "
                                         f"row ({s + 2 - skipped}-{s + 1}): the teacher cannot move")
            if (s + 1) % cfg.meta.log_every == 0 or s + 1 == cfg.meta.steps:
                rec["test_acc"] = quick_test(cfg, teacher, data, s)
                if teacher.ema is not None:     # the same learner taught by the averaged teacher
                    rec["test_acc_ema"] = quick_test(cfg, teacher.averaged(), data, s)
                rec["time"] = round(wall(), 3)
                log.log(rec)
                if bar is not None:
                    bar.set_postfix(meta=f"{rec['meta_loss']:.3f}", test=f"{rec['test_acc']:.3f}")
            if (s + 1) % cfg.meta.checkpoint_every == 0 and s + 1 < cfg.meta.steps:
                save(s + 1)
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        status = "interrupted"
        s -= 1
    except FloatingPointError as e:
        status, message = "nan", str(e)
    finally:
        log.close()
        if bar is not None:
            bar.close()
    done = s + 1 if cfg.meta.steps > start else start
    if status != "nan":
        try:
            save(done)
        except FloatingPointError as e:
            status, message = "nan", str(e)
    if status == "nan":
        ck = list_checkpoints(out)
        return teacher, {"status": "nan", "steps_done": ck[-1] if ck else 0, "wall_seconds": round(wall(), 2),
                         "message": f"{message}; stopped. Last good checkpoint: step {ck[-1] if ck else 'none'}"}
    return teacher, {"status": status, "steps_done": done, "wall_seconds": round(wall(), 2)}


def quick_test(cfg: GTNConfig, teacher: Teacher, data: GTNData, step: int) -> float:
    """Real test accuracy of one fresh learner taught by the current teacher (monitoring only;
    the evaluation protocol with many learners is groklab.gtn.eval)."""
    u = make_unroll(cfg, teacher, data, step)
    state = initial_state(u.learner, u.params0)
    for t in range(u.steps):
        with torch.no_grad():
            x, y = u.batch(t)
        state, _ = sgd_momentum_step(u.learner, state, x, y, t, u.log_lr[t].detach().exp(),
                                     u.log_mom[t].detach().exp(), create_graph=False)
    with torch.no_grad():
        return real_loss(u.learner, state, data.x_test, data.y_test)[1].item()


def _bar(progress: bool, total: int, start: int):
    if not progress:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=start, desc="gtn meta-training", unit="step")
