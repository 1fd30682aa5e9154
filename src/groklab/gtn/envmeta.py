"""Meta-learn a synthetic environment (SE) or a reward network (RN) with evolution strategies
(Ferreira et al., ICLR 2022, "Learning Synthetic Environments and Reward Networks for RL").

One generation: draw ``pairs`` noise vectors ε_i ~ N(0, σ²I); for each, train a fresh DDQN on
the SE (or on the RN-shaped real environment) with parameters ψ + ε_i and with ψ − ε_i
(mirrored sampling), score both on the real environment and keep the better sign; turn the
``pairs`` scores into NES utilities (Wierstra et al. 2014: max(0, log(n/2 + 1) − log rank),
normalised to sum 1, then divided by their maximum) and move ψ ← ψ + α Σ_i u_i ε_i — the update
of the paper's GTN master (score transform 3, no division by the population size).

All members of a generation start from the same agent initialisation and see the same real
evaluation episodes (common random numbers), so the ranking reflects the environments, not the
agents' luck. A last member trains on ψ itself (``center``): its score is logged, not used.

Scores: SE — the mean real return of the agent's greedy policy over ``test_episodes`` episodes
after ``inner_steps`` steps on the SE (with ``agent.se_early_stop``, the policy it had when its SE
return plateaued, if earlier: the paper's early out; the generation ends once all have stopped);
RN — the mean real (unshaped) return of the agent's training episodes within ``inner_steps``
real steps (fast learning scores high; no extra real steps). Every real step, scoring and RN
training alike, is counted in ``real_steps``.
"""
from __future__ import annotations

import math

import torch

from groklab.gtn.agents import AgentHP, Agents, init_layers, run_agents
from groklab.gtn.envs import SPECS, RewardEnv, SynthEnv, evaluate_greedy, se_sizes


def nes_utilities(scores: torch.Tensor) -> torch.Tensor:
    """Rank-based utilities: the best of n gets 1, ranks below n/2 get 0 (ties broken by order)."""
    n = len(scores)
    rank = torch.empty(n)
    rank[torch.argsort(-scores, stable=True)] = torch.arange(1, n + 1, dtype=torch.float32)
    u = (math.log(n / 2 + 1) - rank.log()).clamp(min=0)
    u = u / u.sum()
    return u / u.max()


def sizes(cfg) -> list[int]:
    spec = SPECS[cfg.env.name]
    if cfg.meta.target == "se":
        return se_sizes(spec, cfg.se.hidden, cfg.se.layers)
    return [spec.obs_dim] + [cfg.rn.hidden] * cfg.rn.layers + [1]


def init_psi(cfg) -> torch.Tensor:
    """ψ: the SE's or RN's parameters, flat (PyTorch's Linear initialisation, seed meta.seed)."""
    g = torch.Generator().manual_seed(cfg.meta.seed)
    return torch.cat([p.flatten() for p in init_layers(1, sizes(cfg), g)])


def psi_size(cfg) -> int:
    sz = sizes(cfg)
    return sum(a * b + b for a, b in zip(sz[:-1], sz[1:]))


def unflatten(flat: torch.Tensor, sz: list[int]) -> list[torch.Tensor]:
    """(P, D) -> batched layer tensors ``[W1 (P, in, out), b1 (P, 1, out), ...]``."""
    out, i = [], 0
    for a, b in zip(sz[:-1], sz[1:]):
        out.append(flat[:, i:i + a * b].reshape(-1, a, b))
        i += a * b
        out.append(flat[:, i:i + b].reshape(-1, 1, b))
        i += b
    return out


def agent_hp(cfg) -> AgentHP:
    a = cfg.agent
    return AgentHP(kind=a.kind, hidden=a.hidden, lr=a.lr, gamma=a.gamma, batch=a.batch, tau=a.tau,
                   eps_init=a.eps_init, eps_min=a.eps_min, eps_decay=a.eps_decay, buffer=a.buffer)


def gen_seed(cfg, generation: int, salt: int) -> int:
    return (cfg.meta.seed * 1_000_003 + generation * 7919 + salt) % (2**31 - 1)


def early_stop(cfg) -> tuple[int, float, float | None] | None:
    """``run_agents``' early out on the SE's reward: (window, relative change, return level), or
    None when both rules are off."""
    a = cfg.agent
    level = a.se_early_return if a.se_early_return_on else None
    if cfg.meta.target != "se" or (a.se_early_stop <= 0 and level is None):
        return None
    return a.se_early_window, a.se_early_stop, level


def train_on(cfg, flat: torch.Tensor, agents: Agents, steps: int, seed: int, on_step=None) -> dict:
    """Train ``agents`` (one per row of ``flat``) for ``steps`` interactions on the SEs or on the
    RN-shaped real environments that ``flat`` (P, D) parameterises. Adds ``real_steps``."""
    spec, sz = SPECS[cfg.env.name], sizes(cfg)
    g = torch.Generator().manual_seed(seed)
    if cfg.meta.target == "se":
        env = SynthEnv(spec, unflatten(flat, sz), cfg.se.max_steps, g, residual=cfg.se.residual)
        out = run_agents(agents, env, steps, g, on_step, early_stop(cfg))
        return {**out, "real_steps": 0, "synthetic_steps": env.steps}
    env = RewardEnv(spec.name, agents.P, seed, unflatten(flat, sz), cfg.rn.kind, cfg.agent.gamma)
    out = run_agents(agents, env, steps, g, on_step)
    return {**out, "real_steps": env.steps}


def generation(cfg, psi: torch.Tensor, gen: int) -> tuple[torch.Tensor, dict]:
    """One ES generation from ψ: the new ψ and a metrics record."""
    m, spec = cfg.meta, SPECS[cfg.env.name]
    g = torch.Generator().manual_seed(gen_seed(cfg, gen, 1))
    eps = torch.randn(m.pairs, psi.numel(), generator=g) * m.noise_std
    members = torch.cat([psi + eps, psi - eps, psi[None]])                   # (2n + 1, D)
    M, k = len(members), m.agents
    pop = members.repeat(k, 1)                                               # (k·M, D): replica-major
    agents = Agents(k * M, spec.obs_dim, spec.n_actions, agent_hp(cfg), torch.Generator().manual_seed(
        gen_seed(cfg, gen, 2)), same_init=M, capacity=m.inner_steps)
    out = train_on(cfg, pop, agents, m.inner_steps, gen_seed(cfg, gen, 3))
    real = out["real_steps"]
    if m.target == "se":
        score, ev_steps = evaluate_greedy(agents, spec.name, m.test_episodes, gen_seed(cfg, gen, 4))
        real += ev_steps
    else:
        score = torch.tensor([sum(r) / len(r) if r else 0.0 for r in out["real_returns"]])
    score = score.view(k, M).mean(0)                                         # each member's mean over agents
    n = m.pairs
    plus, minus = score[:n], score[n:2 * n]
    best = torch.maximum(plus, minus)
    sign = torch.where(minus > plus, -1.0, 1.0)
    u = nes_utilities(best)
    psi = psi + m.step_size * (u * sign) @ eps
    rec = {"step": gen + 1, "score_mean": float(score[:2 * n].mean()), "score_max": float(score[:2 * n].max()),
           "score_min": float(score[:2 * n].min()), "score_center": float(score[-1]),
           "real_steps_gen": real, "psi_norm": float(psi.norm()), "inner_steps_run": out["steps"]}
    if early_stop(cfg):
        rec["stopped_frac"] = round(float(agents.frozen.float().mean()), 4)
        stopped = agents.stopped_at[agents.frozen].float()
        rec["stop_step_median"] = float(stopped.median()) if len(stopped) else None
    return psi, rec


def score_psi(cfg, psi: torch.Tensor, agents: int, seed: int) -> torch.Tensor:
    """The real greedy return (``meta.test_episodes`` episodes) of each of ``agents`` fresh agents
    trained ``meta.inner_steps`` steps on ψ's SE (or on ψ's RN-shaped real environment)."""
    spec = SPECS[cfg.env.name]
    ag = Agents(agents, spec.obs_dim, spec.n_actions, agent_hp(cfg), torch.Generator().manual_seed(seed),
                capacity=cfg.meta.inner_steps)
    train_on(cfg, psi[None].expand(agents, -1), ag, cfg.meta.inner_steps, seed + 1)
    return evaluate_greedy(ag, spec.name, cfg.meta.test_episodes, seed + 2)[0]
