"""``groklab gtn env`` run directories: meta-train an SE or RN, resume, evaluate, report.

Layout (as for ``groklab gtn train``)::

    config.json     the resolved EnvRunConfig
    metrics.jsonl   one record per generation: ES scores, real steps spent so far, time
    checkpoints/    step_XXXXXXXX/{model.safetensors (ψ), state.* (counters, cost so far)}
    eval.json       the evaluation protocol: return curves and steps to solve, per agent kind
    summary.json    status, generations, real steps spent on meta-training, cost, the headline
    fig_returns.png, fig_meta.png, report.html

A generation's randomness comes from (meta.seed, generation) alone, so a resumed run continues
exactly as the uninterrupted one would.
"""
from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

import torch

from groklab.config import ConfigError
from groklab.gtn.agents import Agents
from groklab.gtn.envconfig import EnvRunConfig
from groklab.gtn.envmeta import agent_hp, generation, init_psi, sizes, train_on
from groklab.gtn.envs import SPECS, RealEnv, evaluate_greedy, make_vec
from groklab.runs.checkpoint import all_finite, list_checkpoints, resume_point, save_checkpoint
from groklab.runs.lock import dir_lock
from groklab.runs.rundir import JsonlLogger, read_run_json, truncate_jsonl, write_json


class Psi(torch.nn.Module):
    """ψ, flat, as a module so that checkpoints store it as safetensors weights."""

    def __init__(self, psi: torch.Tensor):
        super().__init__()
        self.register_buffer("psi", psi.clone())


def default_out(cfg: EnvRunConfig) -> Path:
    base = Path("runs") / f"gtn-env-{cfg.env.name.split('-')[0].lower()}-{cfg.meta.target}-" \
                          f"{time.strftime('%Y%m%d-%H%M%S')}"
    out, i = base, 1
    while out.exists():
        out, i = Path(f"{base}-{i}"), i + 1
    return out


def check_gymnasium() -> None:
    make_vec("CartPole-v1", 1, "check")        # a missing gymnasium is a ConfigError, before any directory


def train(cfg: EnvRunConfig, out: str | Path | None = None, progress: bool = False, evaluate: bool = True) -> Path:
    """Meta-train ``cfg`` into a new directory ``out``, then evaluate and report."""
    from groklab.api import make_out
    check_gymnasium()
    load_init(cfg)
    out = make_out(out if out is not None else default_out(cfg))
    try:
        with dir_lock(out, "GTN env run directory"):
            write_json(out / "config.json", cfg.to_dict())
            return _train_and_finish(cfg, out, False, progress, evaluate)
    except BaseException:
        if not list_checkpoints(out):
            shutil.rmtree(out, ignore_errors=True)  # nothing worth keeping: no half-made run
        raise


def resume(run_dir: str | Path, progress: bool = False, evaluate: bool = True,
           overrides: list[str] | None = None) -> Path:
    """Continue meta-training in ``run_dir`` from its last checkpoint. ``overrides``
    (``eval.KEY=VALUE`` only: meta-training continues as configured) change the evaluation
    protocol, e.g. to re-evaluate a finished run; config.json records them."""
    from groklab.schema import parse_overrides, set_key, validate
    d = Path(run_dir)
    if not d.is_dir() or not (d / "config.json").is_file():
        raise ConfigError(f"--resume {str(d)!r}: no such GTN env run directory (no config.json)")
    pairs = parse_overrides(overrides or [])
    for k, _ in pairs:
        if not k.startswith("eval."):
            raise ConfigError(f"--resume takes only eval.* settings (the evaluation protocol), not {k!r}")
    check_gymnasium()
    with dir_lock(d, "GTN env run directory"):
        raw = read_run_json(d / "config.json")
        try:
            cfg = EnvRunConfig.from_dict(raw)
        except ConfigError as e:
            raise ConfigError(f"{str(d / 'config.json')!r} is not a GTN env config: {e}") from None
        if pairs:
            for k, v in pairs:
                set_key(cfg, k, v)
            cfg = validate(cfg)
            write_json(d / "config.json", cfg.to_dict())
        return _train_and_finish(cfg, d, True, progress, evaluate)


def load_init(cfg) -> tuple[torch.Tensor | None, int]:
    """ψ at the last checkpoint of the run ``meta.init`` names, and the real steps that run (and
    the runs it started from) spent; (None, 0) without ``meta.init``. Wrong is a ConfigError."""
    from groklab.gtn.envmeta import psi_size
    if not cfg.meta.init:
        return None, 0
    d = Path(cfg.meta.init)
    if not (d / "config.json").is_file() or not (d / "summary.json").is_file():
        raise ConfigError(f"meta.init={cfg.meta.init!r}: not a finished gtn env run directory")
    _, weights, _ = resume_point(d)
    psi = weights.get("psi")
    if psi is None or psi.numel() != psi_size(cfg):
        raise ConfigError(f"meta.init={cfg.meta.init!r}: its ψ does not fit this config's {cfg.meta.target} "
                          f"({psi_size(cfg)} parameters)")
    s = read_run_json(d / "summary.json")
    return psi, int(s.get("real_steps_meta", 0)) + int(s.get("init_real_steps", 0))


def _train_and_finish(cfg, out: Path, resume_: bool, progress: bool, evaluate: bool) -> Path:
    psi, info = meta_train(cfg, out, resume_, progress)
    write_json(out / "summary.json", info)
    if evaluate and info["status"] == "completed":
        t0 = time.perf_counter()
        ev = evaluate_run(cfg, psi, progress)
        ev["eval_seconds"] = round(time.perf_counter() - t0, 2)
        write_json(out / "eval.json", ev)
        info["eval"] = headline(cfg, ev)
        write_json(out / "summary.json", info)
    from groklab.gtn.envreport import write_env_report
    write_env_report(out)
    return out


def meta_train(cfg, out: Path, resume_: bool, progress: bool) -> tuple[torch.Tensor, dict]:
    from groklab.runs.cost import CostMeter
    psi = init_psi(cfg)
    init, init_real = load_init(cfg)
    if init is not None:
        psi = init
    start, state = 0, {"real_steps": 0, "wall_seconds": 0.0, "cost": None}
    if resume_ and list_checkpoints(out):
        start, weights, state = resume_point(out)
        psi = weights["psi"]
        if psi.shape != init_psi(cfg).shape:
            raise ConfigError(f"checkpoint step {start} in {str(out)!r} does not fit config.json")
    truncate_jsonl(out / "metrics.jsonl", start + 1)
    meter = CostMeter("WORLD", "cpu").begin(state["cost"])
    real, t0, wall0 = int(state["real_steps"]), time.perf_counter(), float(state["wall_seconds"])
    # agent steps each generation ran (fewer than meta.inner_steps once all its agents early-stopped)
    inner = int(state.get("inner_steps_run", start * cfg.meta.inner_steps))
    wall = lambda: wall0 + time.perf_counter() - t0  # noqa: E731

    def save(g: int) -> None:
        s = {"real_steps": real, "wall_seconds": wall(), "cost": meter.state(), "inner_steps_run": inner}
        if not all_finite(psi):
            raise FloatingPointError(f"ψ is not finite after generation {g}")
        save_checkpoint(out, g, Psi(psi), s)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.meta.generations, initial=start, desc=f"{cfg.meta.target} meta-training", unit="gen")
    log = JsonlLogger(out / "metrics.jsonl")
    status, message, g = "completed", None, start
    try:
        for g in range(start, cfg.meta.generations):
            psi, rec = generation(cfg, psi, g)
            real += rec["real_steps_gen"]
            inner += rec["inner_steps_run"]
            if (g + 1) % cfg.meta.log_every == 0 or g + 1 == cfg.meta.generations:
                log.log({**rec, "real_steps": real, "time": round(wall(), 3)})
            if (g + 1) % cfg.meta.checkpoint_every == 0 and g + 1 < cfg.meta.generations:
                save(g + 1)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(score=f"{rec['score_mean']:.1f}", center=f"{rec['score_center']:.1f}")
            g += 1
    except KeyboardInterrupt:
        status = "interrupted"
    except FloatingPointError as e:
        status, message = "nan", str(e)
    finally:
        log.close()
        if bar is not None:
            bar.close()
    if status != "nan":
        try:
            save(g)
        except FloatingPointError as e:
            status, message = "nan", str(e)
    meter.stop()
    info = {"status": status, "generations_done": g, "target": cfg.meta.target, "env": cfg.env.name,
            "real_steps_meta": real, "wall_seconds": round(wall(), 2), "cost": cost_of(cfg, meter, wall(), inner)}
    if cfg.meta.init:
        info |= {"init": cfg.meta.init, "init_real_steps": init_real, "real_steps_total": real + init_real}
    if message:
        info["message"] = message
    return psi, info


def cost_of(cfg, meter, wall: float, inner_steps: int) -> dict:
    """CPU seconds and energy (runs.cost.CostMeter) and matrix-product FLOPs counted from layer
    sizes: each agent interaction is one ε-greedy forward, one update (3 forwards and a backward
    of 2 on the minibatch) and one SE or RN forward; greedy scoring episodes are not counted.
    ``inner_steps``: the agent steps all generations ran (each member's agents run them all,
    early-stopped or not: the population is one batch)."""
    from groklab.runs.cost import carbon_intensity
    spec, a = SPECS[cfg.env.name], cfg.agent
    q = spec.obs_dim * a.hidden + a.hidden * (spec.n_actions + (a.kind == "dueling"))
    sz = sizes(cfg)
    model = sum(i * o for i, o in zip(sz[:-1], sz[1:])) * (2 if cfg.meta.target == "rn" else 1)
    interactions = inner_steps * (2 * cfg.meta.pairs + 1) * cfg.meta.agents
    flops = 2 * interactions * (q + 5 * a.batch * q + model)
    intensity, src = carbon_intensity("WORLD")
    j = meter.joules
    return {"flops": flops, "flops_note": "matrix products counted from layer sizes (agent acting, updates, "
            "SE/RN forwards); scoring episodes and element-wise work count 0",
            "cpu_seconds": round(meter.cpu(), 3), "wall_seconds": round(wall, 3),
            "joules": None if j is None else round(j, 3), "method": None if j is None else meter.source.method,
            **({"energy_missing": meter.missing} if j is None else {}),
            "co2_g": None if j is None or intensity is None else float(f"{j / 3.6e6 * intensity:.6g}"),
            "country": "WORLD", "carbon_intensity_g_per_kwh": intensity, "carbon_source": src}


def protocol(cfg, psi: torch.Tensor | None, kind: str, steps: int, progress: bool = False) -> dict:
    """Train ``eval.agents`` fresh agents of ``kind`` (seeds from eval.seed) for ``steps`` steps on
    the SE/RN of ``psi`` (``None``: the real environment); every ``eval.every`` steps score each
    agent's greedy policy over ``eval.episodes`` real episodes. Stops once every agent has solved,
    or (with ``agent.se_early_stop``, SE side) once every agent has stopped learning, after a last
    checkpoint at that step. Returns the curves, each agent's steps to solve (None: not within
    ``steps``), the step at which it stopped learning (None: never) and real steps.

    Steps to solve are the agent training steps taken when the policy first scores ≥ the
    threshold: the checkpoint's step, or, for an agent that stopped learning before that
    checkpoint (its policy fixed since), the step at which it stopped."""
    e, spec = cfg.eval, SPECS[cfg.env.name]
    hp = agent_hp(cfg)
    hp.kind = kind
    agents = Agents(e.agents, spec.obs_dim, spec.n_actions, hp, torch.Generator().manual_seed(e.seed),
                    capacity=steps)
    checkpoints, curves = [], []
    solved: list[int | None] = [None] * e.agents
    eval_real = [0]

    def on_step(t: int) -> bool:
        if t % e.every and t != steps and not agents.frozen.all():
            return False
        ret, n = evaluate_greedy(agents, spec.name, e.episodes, e.seed + 7919 * len(checkpoints))
        eval_real[0] += n
        checkpoints.append(t)
        curves.append([round(float(r), 2) for r in ret])
        for i, r in enumerate(ret.tolist()):
            if solved[i] is None and r >= spec.threshold:
                stop = int(agents.stopped_at[i])
                solved[i] = stop if stop else t
        return all(s is not None for s in solved)

    if psi is None:
        g = torch.Generator().manual_seed(e.seed + 1)
        from groklab.gtn.agents import run_agents
        env = RealEnv(spec.name, e.agents, e.seed + 1)
        run_agents(agents, env, steps, g, on_step)
        train_real = env.steps
    else:
        out = train_on(cfg, psi[None].expand(e.agents, -1), agents, steps, e.seed + 1, on_step)
        train_real = out["real_steps"]
    stopped = [int(s) or None for s in agents.stopped_at.tolist()]
    return {"checkpoints": checkpoints, "curves": curves, "steps_to_solve": solved, "stopped_at": stopped,
            "real_train_steps": train_real, "real_eval_steps": eval_real[0]}


def evaluate_run(cfg, psi: torch.Tensor, progress: bool = False) -> dict:
    """The evaluation protocol, for each agent kind of ``eval.kinds``: the same fresh agents
    trained on the SE (RN-shaped environment) and on the real environment."""
    spec = SPECS[cfg.env.name]
    learned_steps = cfg.eval.se_steps if cfg.meta.target == "se" else cfg.eval.real_steps
    out = {"env": spec.name, "threshold": spec.threshold, "target": cfg.meta.target, "agents": cfg.eval.agents,
           "episodes": cfg.eval.episodes, "kinds": {}}
    for kind in cfg.eval.kinds.split(","):
        out["kinds"][kind] = {cfg.meta.target: protocol(cfg, psi, kind, learned_steps, progress)}
        if cfg.eval.real:
            out["kinds"][kind]["real"] = protocol(cfg, None, kind, cfg.eval.real_steps, progress)
    return out


def solve_stats(p: dict) -> dict:
    s = p["steps_to_solve"]
    done = [x for x in s if x is not None]
    final = [c for c in p["curves"][-1]] if p["curves"] else []
    stopped = [x for x in p.get("stopped_at") or [] if x is not None]
    more = {"stopped": len(stopped), "median_stop_step": statistics.median(stopped)} if stopped else {}
    return {"solved": len(done), "of": len(s), "median_steps": statistics.median(done) if done else None,
            "mean_steps": round(statistics.fmean(done), 1) if done else None,
            "final_mean_return": round(statistics.fmean(final), 2) if final else None,
            "best_mean_return": round(max(statistics.fmean(c) for c in p["curves"]), 2) if p["curves"] else None,
            **more}


def headline(cfg, ev: dict) -> dict:
    """Per agent kind: solved fractions and median steps to solve, learned vs real, and their ratio
    (steps on the SE or RN-shaped environment over steps on the real one, solved agents only)."""
    t = cfg.meta.target
    h = {}
    for kind, r in ev["kinds"].items():
        a, b = solve_stats(r[t]), solve_stats(r["real"]) if "real" in r else None
        if b is None:
            h[kind] = {t: a}
            continue
        ratio = a["median_steps"] / b["median_steps"] if a["median_steps"] and b["median_steps"] else None
        h[kind] = {t: a, "real": b, "steps_ratio": None if ratio is None else round(ratio, 3)}
    return h
