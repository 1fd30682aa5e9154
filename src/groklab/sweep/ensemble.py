"""Train M models of one architecture at once: stacked parameters, ``torch.func.vmap``.

The models may differ in learning rate, weight decay, init scale and seed (``ENSEMBLE_KEYS``);
everything else (task, architecture, schedule, budget) is shared. Parameters are stacked along a
leading model axis (M, ...); one vmapped ``grad`` gives every model's gradient, and a functional
AdamW with per-model (M,) learning rates and weight decays updates them:

    p <- p * (1 - lr_m * wd_m)                                     # decoupled weight decay
    m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
    p <- p - (lr_m / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

(Loshchilov & Hutter 2019, arXiv 1711.05101, the update ``torch.optim.AdamW`` computes.)
Each model writes its own run directory with the same files as ``groklab run`` (config,
metrics, summary, checkpoints whose optimiser state ``torch.optim.AdamW`` loads, report), and
stops on its own (early stop, NaN) while the rest go on; stopped models are dropped from the
stack. A sweep uses it only where it was measured faster than separate runs (``ensemble_faster``).
"""
from __future__ import annotations

import copy
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from groklab.accel.losses import build_loss
from groklab.config import RunConfig
from groklab.models import build_model
from groklab.runs.checkpoint import save_checkpoint
from groklab.runs.cost import CostMeter, run_flops, train_pass_steps
from groklab.runs.rundir import JsonlLogger, read_jsonl, write_json
from groklab.tasks import build_task
from groklab.train.loop import Batches, checkpoint_steps, resolve_device, summarize
from groklab.train.optim import build_optimizer, get_lr
from groklab.train.stopping import EarlyStop

ENSEMBLE_KEYS = ("optim.lr", "optim.wd", "model.init_scale", "train.seed")


def unsupported(cfg: RunConfig) -> str | None:
    """Why ``cfg`` cannot join an ensemble, or None if it can."""
    if cfg.model.arch == "tarnet":
        return "model.arch='tarnet' (its own objective and metrics are not vmapped)"
    if cfg.model.arch in ("gp", "gp-regression", "linear", "bnn"):
        return f"model.arch={cfg.model.arch!r} (a GP or Bayesian model's own objective is not vmapped)"
    if cfg.optim.name != "adamw":
        return f"optim.name={cfg.optim.name!r} (the ensemble implements adamw)"
    if cfg.accel.grokfast != "none" or cfg.accel.orthograd or cfg.accel.egd or cfg.accel.weight_norm > 0:
        return "gradient transforms (accel.*) are not vmapped"
    if cfg.optim.clip > 0:
        return "optim.clip > 0"
    if cfg.model.dropout > 0:
        return "model.dropout > 0"
    if cfg.train.measure_every > 0:
        return "train.measure_every > 0"
    if cfg.train.autocast != "off":
        return f"train.autocast={cfg.train.autocast!r} (the ensemble trains in train.dtype)"
    return None


def group_key(cfg: dict[str, Any]) -> str:
    d = copy.deepcopy(cfg)
    for k in ENSEMBLE_KEYS:
        s, f = k.split(".")
        d[s][f] = None
    return json.dumps(d, sort_keys=True)


def group_jobs(jobs: list[dict], parts: int = 1, max_size: int = 64) -> list[dict]:
    """Ensemble jobs of compatible points, split into at least ``parts`` chunks (one per
    worker) of at most ``max_size``; a point that cannot join stays a plain job."""
    groups: dict[str, list[dict]] = {}
    out = []
    for j in jobs:
        if j.get("prune") or unsupported(RunConfig.from_dict(j["config"])):
            out.append(j)
        else:
            groups.setdefault(group_key(j["config"]), []).append(j)
    for members in groups.values():
        size = min(max_size, max(1, math.ceil(len(members) / parts)))
        for i in range(0, len(members), size):
            chunk = members[i:i + size]
            out.append(chunk[0] if len(chunk) == 1 else {"kind": "ensemble", "jobs": chunk,
                                                          "id": f"ensemble[{chunk[0]['id']}..]"})
    return out


class FunctionalAdamW:
    """AdamW over stacked parameters {name: (M, ...)} with per-model lr and wd of shape (M,)."""

    def __init__(self, params: dict[str, torch.Tensor], beta1: float, beta2: float, eps: float):
        self.b1, self.b2, self.eps, self.t = beta1, beta2, eps, 0
        self.m = {k: torch.zeros_like(p) for k, p in params.items()}
        self.v = {k: torch.zeros_like(p) for k, p in params.items()}

    def step(self, params: dict, grads: dict, lr: torch.Tensor, wd: torch.Tensor) -> dict:
        self.t += 1
        bc1, bc2 = 1 - self.b1 ** self.t, math.sqrt(1 - self.b2 ** self.t)
        out = {}
        for k, p in params.items():
            shape = (-1,) + (1,) * (p.dim() - 1)
            lr_k, wd_k = lr.view(shape).to(p.dtype), wd.view(shape).to(p.dtype)
            g = grads[k]
            self.m[k] = self.m[k].lerp(g, 1 - self.b1)
            self.v[k] = self.v[k] * self.b2 + (1 - self.b2) * g * g
            p = p * (1 - lr_k * wd_k)
            out[k] = p - (lr_k / bc1) * self.m[k] / (self.v[k].sqrt() / bc2 + self.eps)
        return out

    def keep(self, idx: torch.Tensor) -> None:
        self.m = {k: v[idx] for k, v in self.m.items()}
        self.v = {k: v[idx] for k, v in self.v.items()}

    def torch_state(self, i: int, names: list[str], template: dict) -> dict:
        """Model i's state in the format ``torch.optim.AdamW.load_state_dict`` takes."""
        sd = copy.deepcopy(template)
        sd["state"] = {n: {"step": torch.tensor(float(self.t), dtype=torch.float32),
                           "exp_avg": self.m[k][i].clone(), "exp_avg_sq": self.v[k][i].clone()}
                       for n, k in enumerate(names)}
        return sd


def train_ensemble(cfgs: list[RunConfig], dirs: list[Path], report: bool = True) -> list[dict]:
    """Train ``cfgs`` (differing only in ENSEMBLE_KEYS) into the new run directories ``dirs``
    at once; returns their summaries. Equal, up to float rounding, to M separate runs."""
    base = cfgs[0]
    keys = {group_key(c.to_dict()) for c in cfgs}
    if len(keys) != 1:
        raise ValueError(f"ensemble configs differ outside {ENSEMBLE_KEYS}")
    why = unsupported(base)
    if why:
        raise ValueError(f"cannot ensemble: {why}")
    torch.set_flush_denormal(True)
    t, M = base.train, len(cfgs)
    device = resolve_device(t.device)
    dtype = torch.float64 if t.dtype == "float64" else torch.float32
    task = build_task(base.task)
    xtr, ytr, xva, yva = (v.to(device) for v in (task.x_train, task.y_train, task.x_val, task.y_val))
    if xtr.is_floating_point():
        xtr, xva = xtr.to(dtype), xva.to(dtype)
    models = [build_model(c, task).to(device=device, dtype=dtype) for c in cfgs]
    names = [k for k, _ in models[0].named_parameters()]
    templates = [build_optimizer(m.parameters(), c.optim).state_dict() for m, c in zip(models, cfgs)]
    params, buffers = stack_module_state(models)
    params = {k: v.detach() for k, v in params.items()}
    shell = copy.deepcopy(models[0]).to("meta")
    loss_fn = build_loss(t.loss, t.loss_dtype)

    def one(p, b, x, y):
        logits = functional_call(shell, (p, b), (x,))
        return loss_fn(logits, y), logits

    grad_fn = vmap(grad_and_value(one, has_aux=True), in_dims=(0, 0, None, None))
    fwd = vmap(lambda p, b, x: functional_call(shell, (p, b), (x,)), in_dims=(0, 0, None))
    vloss = vmap(loss_fn, in_dims=(0, None))
    opt = FunctionalAdamW(params, base.optim.beta1, base.optim.beta2, base.optim.eps)
    lr0 = torch.tensor([c.optim.lr for c in cfgs], dtype=torch.float64, device=device)
    wd = torch.tensor([c.optim.wd for c in cfgs], dtype=torch.float64, device=device)
    unit = copy.deepcopy(base.optim)
    unit.lr = 1.0  # every schedule is linear in lr: lr_m(step) = lr_m * get_lr(step, lr=1)
    batches = Batches(len(ytr), t.batch_size, t.batch_seed, device)
    ckpt_at = checkpoint_steps(base)
    for c, d in zip(cfgs, dirs):
        d.mkdir(parents=True)
        write_json(d / "config.json", c.to_dict())
    loggers = [JsonlLogger(d / "metrics.jsonl") for d in dirs]
    active = list(range(M))         # original index of each row of the stack
    status = ["completed"] * M
    message = [""] * M
    walls = [0.0] * M
    stoppers = [EarlyStop(t.stop_threshold, t.patience) for _ in range(M)]
    meter = CostMeter(base.cost.country, str(device)).begin()  # the group's; split evenly at the end
    t0 = time.perf_counter()

    @torch.no_grad()
    def eval_rows(rows: list[int], step: int, tr_loss, tr_acc, factor: float) -> None:
        meter.log(step, {})
        sub = {k: v[rows] for k, v in params.items()}
        sub_b = {k: v[rows] for k, v in buffers.items()}
        logits = fwd(sub, sub_b, xva)
        vl = vloss(logits, yva)
        va = (logits.argmax(-1) == yva).double().mean(-1)
        wn = sum((p.double() ** 2).flatten(1).sum(1) for p in sub.values()).sqrt()
        now = round(time.perf_counter() - t0, 4)
        for j, r in enumerate(rows):
            i = active[r]
            rec = {"step": step, "train_loss": float(tr_loss[j]), "train_acc": float(tr_acc[j]),
                   "val_loss": float(vl[j]), "val_acc": float(va[j]),
                   "lr": float(lr0[r]) * factor, "weight_norm": float(wn[j]), "time": now}
            loggers[i].log(rec)
            if status[i] == "completed" and stoppers[i].update(step, rec["val_acc"]):
                status[i], message[i] = "early_stopped", stoppers[i].message

    def save(r: int, step: int) -> None:
        i = active[r]
        with torch.no_grad():
            for (k, p) in models[i].named_parameters():
                p.copy_(params[k][r])
        state = {"optim": opt.torch_state(r, names, templates[i]), "tx": None,
                 "batches": batches.state(), "rng": torch.get_rng_state(),
                 "wall": time.perf_counter() - t0}
        save_checkpoint(dirs[i], step, models[i], state)

    def drop(stopped: list[int], step: int) -> None:
        nonlocal params, buffers, lr0, wd, active
        for r in stopped:
            i = active[r]
            walls[i] = time.perf_counter() - t0
            if status[i] != "nan":
                save(r, step)
        keep = torch.tensor([r for r in range(len(active)) if r not in stopped], dtype=torch.long, device=device)
        params = {k: v[keep] for k, v in params.items()}
        buffers = {k: v[keep] for k, v in buffers.items()}
        opt.keep(keep)
        lr0, wd = lr0[keep], wd[keep]
        active = [active[r] for r in keep.tolist()]

    step = 0
    try:
        for step in range(t.steps):
            if not active:
                break
            factor = get_lr(step, unit, t.steps)
            idx = batches.next()
            xb, yb = (xtr, ytr) if idx is None else (xtr[idx], ytr[idx])
            grads, (loss, logits) = grad_fn(params, buffers, xb, yb)
            finite = torch.isfinite(loss)
            bad = [] if bool(finite.all()) else [r for r in range(len(active)) if not finite[r]]
            for r in bad:
                status[active[r]] = "nan"
                message[active[r]] = f"loss is {float(loss[r])} at step {step}; stopped"
            if step % t.eval_every == 0:
                rows = [r for r in range(len(active)) if r not in bad]
                if idx is None:
                    tr_loss, tr_acc = loss[rows], (logits[rows].argmax(-1) == yb).double().mean(-1)
                else:
                    with torch.no_grad():
                        lg = fwd({k: v[rows] for k, v in params.items()},
                                 {k: v[rows] for k, v in buffers.items()}, xtr)
                    tr_loss, tr_acc = vloss(lg, ytr), (lg.argmax(-1) == ytr).double().mean(-1)
                if rows:
                    eval_rows(rows, step, tr_loss, tr_acc, factor)
                bad += [r for r in rows if status[active[r]] == "early_stopped"]
            if bad:
                keep_rows = [r for r in range(len(active)) if r not in bad]
                grads = {k: g[keep_rows] for k, g in grads.items()}
                drop(sorted(bad), step)
                if not active:
                    break
            params = opt.step(params, grads, lr0 * factor, wd)
            if step + 1 in ckpt_at and step + 1 < t.steps:
                for r in range(len(active)):
                    save(r, step + 1)
        else:
            step = t.steps
        if active and step == t.steps:
            with torch.no_grad():
                rows = list(range(len(active)))
                lg = fwd(params, buffers, xtr)
                tr_loss, tr_acc = vloss(lg, ytr), (lg.argmax(-1) == ytr).double().mean(-1)
                eval_rows(rows, step, tr_loss, tr_acc, get_lr(step, unit, t.steps))
                for r in rows:
                    i = active[r]
                    if not math.isfinite(float(tr_loss[r])):
                        status[i], message[i] = "nan", f"loss is {float(tr_loss[r])} at step {step}; stopped"
            drop(list(range(len(active))), step)
    finally:
        meter.stop()
        for lg in loggers:
            lg.close()
    summaries = []
    for i, (c, d) in enumerate(zip(cfgs, dirs)):
        records = read_jsonl(d / "metrics.jsonl")
        s = summarize(c, records, status[i], walls[i], message[i])
        s["ensemble_size"] = M
        s["cost"], s["cost_at"] = meter.finish(
            run_flops(c, models[i], loss_fn, (xtr, ytr, xva, yva)), records,
            train_pass_steps(c, len(ytr), records, status[i]), s["steps_done"], walls[i],
            s["generalized_at"], shared_by=M)
        write_json(d / "summary.json", s)
        if report:
            from groklab.report import write_report
            write_report(d)
        summaries.append(s)
    return summaries


def run_ensemble_job(job: dict[str, Any], threads: int | None = 1) -> list[dict]:
    """Executor entry: train the job's points together. If the ensemble itself fails, run the
    points one by one (each then fails or succeeds on its own) and say so: every result carries
    ``ensemble = {"group", "size", "fallback"}``, ``fallback`` being None when the points were
    trained together and the ensemble's error when they were not."""
    from groklab.sweep.point import point_state, read_result, run_point
    todo = [j for j in job["jobs"] if point_state(Path(j["dir"])) not in ("done", "failed")]
    fallback = None
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        if todo:
            for j in todo:
                if Path(j["dir"]).exists():
                    shutil.rmtree(j["dir"])  # an ensemble does not resume; start it again
            train_ensemble([RunConfig.from_dict(j["config"]) for j in todo],
                           [Path(j["dir"]) for j in todo], report=job.get("report", True))
    except Exception as e:
        fallback = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
        for j in todo:
            if Path(j["dir"]).exists() and point_state(Path(j["dir"])) != "done":
                shutil.rmtree(j["dir"])
    finally:
        torch.set_num_threads(old)
    if fallback is not None:
        results = [run_point(j, threads=threads) for j in job["jobs"]]
    else:
        results = [read_result(j["id"], Path(j["dir"])) for j in job["jobs"]]
    info = {"group": job["id"], "size": len(todo), "fallback": fallback}
    return [{**r, "ensemble": info} for r in results]


def ensemble_faster(cfg: RunConfig, m: int = 8, steps: int = 20) -> bool:
    """Measure here, now: is one ensemble step of ``m`` models cheaper than ``m`` single steps?"""
    return ensemble_choice(cfg, m, steps)[0]


def ensemble_choice(cfg: RunConfig, m: int = 8, steps: int = 20) -> tuple[bool, str]:
    """(use the ensemble?, why), measured here and now.

    Times ``steps`` full-batch steps of each on this config (a few seconds at most for the
    small models sweeps use); the local executor groups points only when this says so. A config
    the ensemble cannot train, or a timing that fails, says no and says why."""
    why = unsupported(cfg)
    if why:
        return False, f"cannot ensemble: {why}"
    try:
        single = time_single(cfg, steps)
        ens = time_ensemble(cfg, m, steps)
    except (RuntimeError, ValueError) as e:
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        return False, f"timing the ensemble failed ({type(e).__name__}: {msg})"
    faster = ens < m * single
    return faster, (f"{m} models together {ens * 1e3:.3g} ms/step vs {m} × {single * 1e3:.3g} ms "
                    f"apart: {'faster' if faster else 'not faster'}")


def time_single(cfg: RunConfig, steps: int = 20) -> float:
    """Seconds per full-batch step of one model with torch.optim (the plain reference)."""
    task = build_task(cfg.task)
    device = resolve_device(cfg.train.device)
    model = build_model(cfg, task).to(device)
    opt = build_optimizer(model.parameters(), cfg.optim)
    loss_fn = build_loss(cfg.train.loss, cfg.train.loss_dtype)
    x, y = task.x_train.to(device), task.y_train.to(device)
    if x.is_floating_point():
        x = x.to(next(model.parameters()).dtype)

    def step():
        loss_fn(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return _timed(step, steps, device)


def time_ensemble(cfg: RunConfig, m: int, steps: int = 20) -> float:
    """Seconds per full-batch step of an ensemble of ``m`` models (vmap + FunctionalAdamW)."""
    task = build_task(cfg.task)
    device = resolve_device(cfg.train.device)
    cfgs = []
    for i in range(m):
        c = copy.deepcopy(cfg)
        c.train.seed = i
        cfgs.append(c)
    models = [build_model(c, task).to(device) for c in cfgs]
    params, buffers = stack_module_state(models)
    params = {k: v.detach() for k, v in params.items()}
    shell = copy.deepcopy(models[0]).to("meta")
    loss_fn = build_loss(cfg.train.loss, cfg.train.loss_dtype)
    grad_fn = vmap(grad_and_value(lambda p, b, x, y: loss_fn(functional_call(shell, (p, b), (x,)), y)),
                   in_dims=(0, 0, None, None))
    opt = FunctionalAdamW(params, cfg.optim.beta1, cfg.optim.beta2, cfg.optim.eps)
    lr = torch.full((m,), cfg.optim.lr, device=device, dtype=torch.float64)
    wd = torch.full((m,), cfg.optim.wd, device=device, dtype=torch.float64)
    x, y = task.x_train.to(device), task.y_train.to(device)
    state = {"p": params}

    def step():
        g, _ = grad_fn(state["p"], buffers, x, y)
        state["p"] = opt.step(state["p"], g, lr, wd)
    return _timed(step, steps, device)


def _timed(fn, steps: int, device) -> float:
    for _ in range(3):  # warm-up: first calls allocate and (on a GPU) pick kernels
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps
