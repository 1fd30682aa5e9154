"""The training loop: read it top to bottom like the algorithm box of a paper.

    for step in range(start, steps):
        lr = get_lr(step)                      # warm-up, then constant / cosine / linear
        loss = loss_fn(model(x), y)            # the answer position only (fast path)
        every eval_every: log train and validation loss/accuracy, weight norm
        loss.backward(); grads -> transforms (Grokfast, ⊥Grad, clip) -> optimiser step
        -> projections (a ticket's mask, weight-norm control)
        checkpoint at log-spaced steps, every save_every steps and the last (finite ones only)

Everything a resume needs (weights, optimiser, transform and RNG state, batch order, wall time)
goes into each checkpoint; ``run(..., resume=True)`` continues exactly where it stopped.
"""
from __future__ import annotations

import math
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from groklab.accel.losses import build_loss
from groklab.accel.transforms import build_transforms, global_norm, project_weight_norm
from groklab.config import RunConfig
from groklab.measure.events import THRESHOLDS, EventTracker, phase_label
from groklab.models import build_model, fused
from groklab.runs.checkpoint import (
    all_finite,
    is_rolling,
    list_checkpoints,
    load_latest_good,
    save_checkpoint,
    step_dir,
)
from groklab.runs.cost import CostMeter, run_flops, step_forward_stands_in, train_pass_steps
from groklab.runs.read import read_metrics
from groklab.runs.rundir import JsonlLogger, read_jsonl, truncate_jsonl, write_json
from groklab.tasks import Task, build_task
from groklab.train.memory import keep_freed_memory
from groklab.train.optim import build_optimizer, get_lr, set_lr
from groklab.train.stopping import EarlyStop, StopRun


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class Run:
    """A finished (or stopped) run: its directory, config, summary, final model and task."""
    dir: Path
    config: RunConfig
    summary: dict[str, Any]
    model: torch.nn.Module
    task: Task
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> list[dict]:
        return read_jsonl(self.dir / "metrics.jsonl")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device='cuda' but no CUDA device is available; allowed here: cpu, auto")
    return torch.device(name)


def checkpoint_steps(cfg) -> set[int]:
    """Steps whose checkpoints are kept: log-spaced (n_checkpoints), every ``checkpoint_every``,
    and the last. Resumable checkpoints every ``save_every`` steps come and go between them."""
    t = cfg.train
    steps = {t.steps}
    if t.n_checkpoints > 0:
        steps |= {int(s) for s in np.unique(np.round(np.logspace(0, math.log10(t.steps), t.n_checkpoints)))}
    if t.checkpoint_every > 0:
        steps |= set(range(t.checkpoint_every, t.steps + 1, t.checkpoint_every))
    return steps


class Batches:
    """Full batch, or shuffled minibatches without replacement, from a seeded generator."""

    def __init__(self, n: int, batch_size: int, seed: int, device):
        self.n, self.bs, self.device = n, batch_size, device
        self.full = batch_size == 0 or batch_size >= n
        self.gen = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.randperm(n, generator=self.gen), 0

    def next(self) -> torch.Tensor | None:
        if self.full:
            return None
        if self.pos + self.bs > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + self.bs]
        self.pos += self.bs
        return idx.to(self.device)

    def state(self) -> dict:
        return {"gen": self.gen.get_state(), "perm": self.perm, "pos": self.pos}

    def load(self, s: dict) -> None:
        self.gen.set_state(s["gen"])
        self.perm, self.pos = s["perm"], s["pos"]


# ---- models that bring their own objective ---------------------------------------------------
# A model may define any of these methods; the loop then uses them instead of its defaults
# (models without them train exactly as before):
#   objective(out, y) -> scalar   the training loss (a GP's negative ELBO, TARNet's factual MSE);
#                                 also the logged train/val loss
#   correct(out, y) -> bool (N,)  which examples count as right (default: argmax == y)
#   metrics(out, y) -> dict       extra numbers logged as train_<name> / val_<name>

def correct(model, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example correctness: the model's own ``correct`` rule, else argmax == y."""
    rule = getattr(model, "correct", None)
    return rule(out, y) if rule is not None else out.argmax(-1) == y


def accuracy(logits: torch.Tensor, y: torch.Tensor, model=None) -> float:
    return float(correct(model, logits, y).float().mean())


@torch.no_grad()
def evaluate(model, x, y, loss_fn, chunk: int = 16384) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on (x, y), in eval mode, in chunks."""
    return evaluate_all(model, x, y, loss_fn, chunk)[:2]


@torch.no_grad()
def evaluate_all(model, x, y, loss_fn, chunk: int = 16384) -> tuple[float, float, dict]:
    """(mean loss, accuracy, the model's extra ``metrics``) on (x, y) in eval mode; a model
    with extra metrics is evaluated in one piece (they need not be means over examples)."""
    was = model.training
    model.eval()
    extra = getattr(model, "metrics", None)
    chunk = len(y) if extra is not None else chunk
    total_loss, right, more = 0.0, 0, {}
    for i in range(0, len(y), chunk):
        out = model(x[i:i + chunk])
        total_loss += float(loss_fn(out, y[i:i + chunk])) * len(out)
        right += int(correct(model, out, y[i:i + chunk]).sum())
        if extra is not None:
            more = {k: float(v) for k, v in extra(out, y[i:i + chunk]).items()}
    model.train(was)
    return total_loss / len(y), right / len(y), more


def model_loss(model, cfg: RunConfig) -> Callable:
    """The training objective: the model's own ``objective`` when it has one, else train.loss."""
    own = getattr(model, "objective", None)
    return own if own is not None else build_loss(cfg.train.loss, cfg.train.loss_dtype)


@torch.no_grad()
def weight_norm(model) -> float:
    """The total L2 norm of the parameters (the same rule weight-norm control projects with)."""
    return float(global_norm(dict(model.named_parameters())))


def summarize(cfg: RunConfig, records: list[dict], status: str, wall: float, message: str = "") -> dict:
    thr = cfg.train.phase_threshold
    ev = EventTracker.from_records(records, sorted(set(THRESHOLDS) | {thr}))
    mem, gen = ev.memorized_at[str(thr)], ev.generalized_at[str(thr)]
    last = records[-1] if records else {}
    return {
        "status": status, "message": message,
        "memorized_at": ev.memorized_at, "generalized_at": ev.generalized_at,
        "phase": phase_label(mem, gen, cfg.train.phase_gap),
        "phase_threshold": cfg.train.phase_threshold, "phase_gap": cfg.train.phase_gap,
        "final_train_acc": last.get("train_acc"), "final_val_acc": last.get("val_acc"),
        "final_train_loss": last.get("train_loss"), "final_val_loss": last.get("val_loss"),
        "best_val_acc": max((r["val_acc"] for r in records), default=None),
        "steps_done": last.get("step", 0), "wall_seconds": round(wall, 3),
    }


class _StopFlag:
    """Turns Ctrl-C into a flag checked between steps, so a checkpoint is always consistent."""

    def __init__(self):
        self.stop = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, signum, frame):
        if self.stop:  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


@dataclass
class Trainer:
    """Everything one training run holds in memory; a checkpoint is ``state()`` plus weights."""
    cfg: RunConfig
    task: Task
    data: tuple                    # x_train, y_train, x_val, y_val on the device
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    tx: Any                        # the gradient transform chain, or None
    tx_state: Any
    loss_fn: Callable
    batches: Batches
    params: dict = field(default_factory=dict)
    wall_before: float = 0.0
    t0: float = field(default_factory=time.perf_counter)
    cost: CostMeter | None = None  # CPU seconds and energy, kept in checkpoints
    # after-step projection of the parameters (in place), e.g. a sparsity mask (groklab.ticket);
    # set by train()'s ``setup``, applied after every optimiser step
    project: Callable[[dict], None] | None = None

    @classmethod
    def build(cls, cfg: RunConfig) -> "Trainer":
        torch.set_flush_denormal(True)  # decayed weights go denormal; x86 slows down 10-100x on them
        keep_freed_memory()             # activations reused, not page-faulted in every step
        fused.available()               # the fused kernels built or loaded before the clock starts
        device = resolve_device(cfg.train.device)
        dtype = torch.float64 if cfg.train.dtype == "float64" else torch.float32
        task = build_task(cfg.task)
        xtr, ytr, xva, yva = (v.to(device) for v in (task.x_train, task.y_train, task.x_val, task.y_val))
        if xtr.is_floating_point():
            xtr, xva = xtr.to(dtype), xva.to(dtype)
        torch.manual_seed(cfg.train.seed)  # dropout
        model = build_model(cfg, task).to(device=device, dtype=dtype)
        params = dict(model.named_parameters())
        tx = build_transforms(cfg.accel, cfg.optim)
        return cls(cfg, task, (xtr, ytr, xva, yva), model, build_optimizer(params.values(), cfg.optim),
                   tx, tx.init(params) if tx else None, model_loss(model, cfg),
                   Batches(len(ytr), cfg.train.batch_size, cfg.train.batch_seed, device), params)

    def restore(self, weights: dict, st: dict) -> None:
        self.model.load_state_dict(weights)
        self.opt.load_state_dict(st["optim"])
        self.tx_state = st["tx"] if self.tx else None
        self.batches.load(st["batches"])
        torch.set_rng_state(st["rng"])
        self.wall_before = st["wall"]

    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    def state(self) -> dict:
        return {"optim": self.opt.state_dict(), "tx": self.tx_state, "batches": self.batches.state(),
                "rng": torch.get_rng_state(), "wall": self.wall(),
                "cost": self.cost.state() if self.cost else None}

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """Loss and logits on the next batch: (loss, logits, targets, is_full_batch)."""
        xtr, ytr = self.data[:2]
        idx = self.batches.next()
        xb, yb = (xtr, ytr) if idx is None else (xtr[idx], ytr[idx])
        # train.autocast: the step's matrix products (and so their backward) in bfloat16; the
        # weights, the optimiser, the loss (train.loss_dtype) and every evaluation keep dtype
        if self.cfg.train.autocast == "off":      # the common case: no context on the hot path
            logits = self.model(xb)
        else:
            with torch.autocast(xb.device.type, torch.bfloat16):
                logits = self.model(xb)
        return self.loss_fn(logits, yb), logits, yb, idx is None

    def update(self, loss: torch.Tensor) -> None:
        """Backward, gradient transforms (Grokfast, ⊥Grad, clip), optimiser step, projections
        (``project``, then weight-norm control, which only rescales and so keeps zeros)."""
        loss.backward()
        params = self.params
        if self.tx is not None:
            grads = {k: p.grad for k, p in params.items() if p.grad is not None}
            grads, self.tx_state = self.tx.update(grads, self.tx_state, params)
            for k, g in grads.items():
                params[k].grad = g
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.project is not None:
            with torch.no_grad():
                self.project(params)
        if self.cfg.accel.weight_norm > 0:
            project_weight_norm(params, self.cfg.accel.weight_norm)

    def evaluate(self, step: int, lr: float, train: tuple[float, float] | None = None) -> dict:
        """One metrics record; the training loss/accuracy come from ``train`` when the step's
        full-batch forward already computed them, else from a pass over the training set."""
        xtr, ytr, xva, yva = self.data
        tr_more: dict = {}
        if train is not None:
            tr_loss, tr_acc = train
        else:
            tr_loss, tr_acc, tr_more = evaluate_all(self.model, xtr, ytr, self.loss_fn)
        val_loss, val_acc, val_more = evaluate_all(self.model, xva, yva, self.loss_fn)
        return {"step": step, "train_loss": tr_loss, "train_acc": tr_acc, "val_loss": val_loss,
                "val_acc": val_acc, "lr": lr, "weight_norm": weight_norm(self.model),
                "time": round(self.wall(), 4),
                **{f"train_{k}": v for k, v in tr_more.items()},
                **{f"val_{k}": v for k, v in val_more.items()}}

    def save(self, run_dir: Path, step: int, rolling: bool = False) -> None:
        """Checkpoint ``step``, refusing to call non-finite weights or optimiser state "good"."""
        state = self.state()
        if not (all_finite(self.model) and all_finite(state)):
            raise NonFiniteLoss(f"the weights are not finite after step {step}")
        save_checkpoint(run_dir, step, self.model, state, rolling=rolling)


def train(cfg: RunConfig, run_dir: Path, resume: bool = False, progress: bool = True,
          sinks: list[Any] | None = None, on_eval: Callable[[dict], None] | None = None,
          checkpoint: tuple[int, dict, dict] | None = None,
          setup: Callable[[Trainer], None] | None = None) -> Run:
    """Train ``cfg`` into ``run_dir`` (which must exist and hold config.json). See module doc.

    ``resume`` continues from ``checkpoint`` (step, weights, state), by default the newest
    usable one in ``run_dir``; metrics after it are dropped and redone. ``setup(trainer)`` runs
    on the freshly built trainer before any restore: it may set the starting weights and the
    after-step projection ``trainer.project`` (a checkpoint's weights replace the former)."""
    # the meter opens before the run's clock starts: CodeCarbon's first hardware probe takes ~1 s
    meter = CostMeter(cfg.cost.country, str(resolve_device(cfg.train.device)))
    if cfg.train.forecast:
        _load_forecast_model()
    tr = Trainer.build(cfg)  # the run's clock starts here (Trainer.t0)
    if setup is not None:
        setup(tr)
    start, st = 0, {}
    if resume:
        start, weights, st = checkpoint or load_latest_good(run_dir)[:3]
        tr.restore(weights, st)
        for name in ("metrics.jsonl", "measures.jsonl", "forecast.jsonl"):
            truncate_jsonl(run_dir / name, start)
    write_json(run_dir / "summary.json",
               summarize(cfg, read_metrics(run_dir / "metrics.jsonl"), "running", tr.wall_before))
    tr.cost = meter.begin(st.get("cost"))
    extra: dict = {}
    try:
        status, message = _loop(tr, run_dir, start, progress, [*(sinks or []), tr.cost], on_eval)
    except StopRun as e:
        status, message, extra = e.status, str(e), e.summary
    finally:
        tr.cost.stop()
    wall, records = tr.wall(), read_metrics(run_dir / "metrics.jsonl")
    summary = summarize(cfg, records, status, wall, message)
    summary["cost"], summary["cost_at"] = tr.cost.finish(
        run_flops(cfg, tr.model, tr.loss_fn, tr.data), records,
        train_pass_steps(cfg, len(tr.data[1]), records, status, tr.model), summary["steps_done"], wall,
        summary["generalized_at"])
    if cfg.train.forecast:
        from groklab.forecast.live import last_forecast
        summary["forecast"] = last_forecast(run_dir)
    summary.update(extra)
    write_json(run_dir / "summary.json", summary)
    return Run(dir=run_dir, config=cfg, summary=summary, model=tr.model, task=tr.task)


def _load_forecast_model() -> None:
    """Load the live forecast's model before the run's clock starts, as the cost meter opens
    before it: its first load (importing XGBoost, ~1 s, once per process) is set-up, not
    training (benchmarks/run_overhead.py). One that cannot load is left to ``LiveForecast``,
    which says so once and lets the run go on."""
    try:
        from groklab.forecast.model import default_model
        default_model()
    except (ImportError, ValueError):
        pass


def _loop(tr: Trainer, run_dir: Path, start: int, progress: bool, sinks: list,
          on_eval: Callable | None) -> tuple[str, str]:
    """Steps ``start`` .. ``train.steps``; returns (status, message)."""
    cfg, t = tr.cfg, tr.cfg.train
    live = None
    if t.measure_every > 0:
        from groklab.measure.live import LiveMeasures
        live = LiveMeasures(cfg, tr.task)
    keep = checkpoint_steps(cfg)
    metrics = JsonlLogger(run_dir / "metrics.jsonl")
    measures = JsonlLogger(run_dir / "measures.jsonl") if live else None
    bar = _progress_bar(t.steps, start, progress, cfg)
    stopper = EarlyStop(t.stop_threshold, t.patience)
    status, message = "completed", ""
    # resumable checkpoints that are not kept: each save removes the older ones, those of an
    # interrupted run this one resumes included, so a resumed run keeps the same set as a run
    # never interrupted
    rolling = [c for c in list_checkpoints(run_dir) if c not in keep and is_rolling(run_dir, c)]

    def save(s: int) -> None:
        tr.save(run_dir, s, rolling=s not in keep)
        for c in [c for c in rolling if c < s]:
            shutil.rmtree(step_dir(run_dir, c), ignore_errors=True)
        rolling[:] = [c for c in rolling if c > s] + ([s] if s not in keep else [])
    forecaster = None
    if t.forecast:
        from groklab.forecast.live import LiveForecast
        forecaster = LiveForecast(cfg, run_dir, start)

    def log(rec: dict) -> None:
        metrics.log(rec)
        grok = forecaster(rec) if forecaster is not None else None
        for s in sinks:
            s.log(rec["step"], rec)
        if on_eval:
            on_eval(rec)
        if bar is not None:
            extra = {"grok": f"≈ step {grok}"} if grok is not None else {}
            bar.set_postfix(train=f"{rec['train_acc']:.3f}", val=f"{rec['val_acc']:.3f}", **extra,
                            refresh=False)

    step = start
    tr.model.train()
    with _StopFlag() as flag:
        try:
            for step in range(start, t.steps):
                if flag.stop:
                    status, message = "interrupted", f"stopped by Ctrl-C at step {step}"
                    break
                lr = get_lr(step, cfg.optim, t.steps)
                set_lr(tr.opt, lr)
                loss, logits, yb, full = tr.forward()
                if not torch.isfinite(loss):
                    raise NonFiniteLoss(f"loss is {loss.item()} at step {step}")
                if step % t.eval_every == 0:
                    # the step's own forward stands in for the training set's evaluation only
                    # when it is the exact full-batch, full-precision forward
                    exact = step_forward_stands_in(cfg, tr.model, full)
                    rec = tr.evaluate(step, lr, (loss.item(), accuracy(logits.detach(), yb, tr.model))
                                      if exact else None)
                    log(rec)
                    if stopper.update(step, rec["val_acc"]):
                        status, message = "early_stopped", stopper.message
                        break
                if live is not None and step % t.measure_every == 0:
                    measures.log(live(tr.model, step))
                tr.update(loss)
                if step + 1 in keep or (step + 1) % t.save_every == 0:
                    save(step + 1)
                if bar is not None:
                    bar.update(1)
            else:
                step = t.steps
            if status != "early_stopped":  # early stop broke right after logging this step
                rec = tr.evaluate(step, get_lr(step, cfg.optim, t.steps))
                if not math.isfinite(rec["train_loss"]):
                    raise NonFiniteLoss(f"loss is {rec['train_loss']} at step {step}")
                log(rec)
            if step not in list_checkpoints(run_dir):
                save(step)
        except NonFiniteLoss as e:
            ck = list_checkpoints(run_dir)
            status = "nan"
            message = f"{e}; stopped. Last good checkpoint: step {ck[-1] if ck else 'none'}"
        finally:
            if bar is not None:
                bar.close()
            metrics.close()
            if forecaster is not None:
                forecaster.close()
            if measures:
                measures.close()
            for s in sinks:
                if hasattr(s, "close"):
                    s.close()
    return status, message


def _progress_bar(total: int, initial: int, enabled: bool, cfg):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=cfg.preset or "run", unit="step",
                mininterval=0.5, dynamic_ncols=True)
