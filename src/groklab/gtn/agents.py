"""A population of DDQN agents trained side by side, one environment each.

``P`` independent Q-networks live in batched tensors (``W (P, in, out)``) and are trained with
one ``bmm`` per layer: on two shared CPU cores, 32 agents cost little more than one. Adam is
element-wise and each agent's loss is its own mean, so the population is exactly ``P``
independent agents. The agent is Double DQN (van Hasselt et al. 2016): the online network picks
the next action, the target network (Polyak-averaged with rate ``tau``) values it; ε-greedy
exploration decays per finished episode, as in Ferreira et al. 2022's agents. ``kind="dueling"``
is Dueling DDQN (Wang et al. 2016): ``Q = V + A - mean(A)``, the transfer agent of the paper.

Written here (≈230 lines) rather than taken from Stable-Baselines3 or TorchRL: the meta-learner
needs exact control of seeds, of the step count and of how a synthetic environment's transitions
enter the buffer, and batching a whole ES population into one set of tensors is not something
either library offers; neither is a dependency of groklab.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def init_layers(P: int, sizes: list[int], gen: torch.Generator) -> list[torch.Tensor]:
    """``[W1, b1, W2, b2, ...]`` for P copies of an MLP, PyTorch's Linear init (U(±1/√fan_in))."""
    out = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        k = 1 / math.sqrt(a)
        out += [(torch.rand(P, a, b, generator=gen) * 2 - 1) * k, (torch.rand(P, 1, b, generator=gen) * 2 - 1) * k]
    return out


def mlp(params: list[torch.Tensor], x: torch.Tensor, act=torch.tanh) -> torch.Tensor:
    """Batched MLP: x (P, B, in) -> (P, B, out); ``act`` between layers, none after the last."""
    n = len(params) // 2
    for i in range(n):
        x = torch.baddbmm(params[2 * i + 1], x, params[2 * i])
        if i < n - 1:
            x = act(x)
    return x


@dataclass
class AgentHP:
    """A DDQN's hyperparameters (defaults: the paper's CartPole DDQN, default_config_cartpole)."""
    kind: str = "ddqn"          # ddqn | dueling
    hidden: int = 57
    lr: float = 3e-4
    gamma: float = 0.988
    batch: int = 199
    tau: float = 0.00848
    eps_init: float = 0.809
    eps_min: float = 0.0371
    eps_decay: float = 0.961    # per finished episode
    buffer: int = 100_000


class Agents:
    """P DDQN (or Dueling DDQN) agents with their replay buffers and Adam states."""

    def __init__(self, P: int, obs_dim: int, n_actions: int, hp: AgentHP, gen: torch.Generator,
                 same_init: int = 1, capacity: int | None = None):
        """``same_init`` = M: agents i·M … i·M + M − 1 share one initialisation (common random
        numbers across M environments); 1: every agent its own."""
        self.P, self.obs_dim, self.A, self.hp = P, obs_dim, n_actions, hp
        n0 = P // same_init
        body = init_layers(n0, [obs_dim, hp.hidden], gen)
        heads = init_layers(n0, [hp.hidden, n_actions], gen)
        if hp.kind == "dueling":
            heads += init_layers(n0, [hp.hidden, 1], gen)
        self.params = [p.repeat_interleave(same_init, 0).requires_grad_(True) for p in body + heads]
        self.target = [p.detach().clone() for p in self.params]
        self.opt = torch.optim.Adam(self.params, lr=hp.lr)
        cap = min(hp.buffer, capacity or hp.buffer)
        self.cap, self.size, self.ptr = cap, 0, 0
        self.s = torch.zeros(P, cap, obs_dim)
        self.a = torch.zeros(P, cap, dtype=torch.long)
        self.r = torch.zeros(P, cap)
        self.s2 = torch.zeros(P, cap, obs_dim)
        self.term = torch.zeros(P, cap)
        self.w = torch.zeros(P, cap)               # 0 for an autoreset step: not a transition
        self.episodes = torch.zeros(P)
        self.updates = 0
        self.stopped_at = torch.zeros(P, dtype=torch.long)  # the step an agent stopped learning; 0: never
        self._kept: list[torch.Tensor] | None = None

    @property
    def frozen(self) -> torch.Tensor:
        """(P,) bool: agents that have stopped learning (:meth:`freeze`)."""
        return self.stopped_at > 0

    @torch.no_grad()
    def freeze(self, mask: torch.Tensor, step: int) -> None:
        """Stop the agents of ``mask`` (P,) learning after interaction ``step``: their networks stay
        as they are now. The population still computes them (one batch), then puts them back, so
        the other agents' random draws, and so their training, are unchanged."""
        new = mask & ~self.frozen
        if not new.any():
            return
        nets = self.params + self.target
        if self._kept is None:
            self._kept = [p.detach().clone() for p in nets]
        for k, p in zip(self._kept, nets):
            k[new] = p[new]
        self.stopped_at[new] = step

    def q(self, params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Q-values: x (P, B, obs) -> (P, B, A)."""
        h = torch.tanh(torch.baddbmm(params[1], x, params[0]))           # (P, B, hidden)
        adv = torch.baddbmm(params[3], h, params[2])                      # (P, B, A)
        if self.hp.kind != "dueling":
            return adv
        v = torch.baddbmm(params[5], h, params[4])                        # (P, B, 1)
        return v + adv - adv.mean(-1, keepdim=True)

    @torch.no_grad()
    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (P, N, obs) -> actions (P, N)."""
        return self.q(self.params, obs).argmax(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """ε-greedy: obs (P, obs) -> actions (P,), ε per agent from its finished episodes."""
        eps = torch.clamp(self.hp.eps_init * self.hp.eps_decay ** self.episodes, min=self.hp.eps_min)
        rand = torch.randint(self.A, (self.P,), generator=gen)
        explore = torch.rand(self.P, generator=gen) < eps
        return torch.where(explore, rand, self.greedy(obs[:, None])[:, 0])

    def store(self, s, a, r, s2, term, valid, done) -> None:
        """One transition per agent (tensors with leading P); ``done`` counts finished episodes."""
        i = self.ptr
        self.s[:, i], self.a[:, i], self.r[:, i], self.s2[:, i] = s, a, r, s2
        self.term[:, i], self.w[:, i] = term.float(), valid.float()
        self.ptr, self.size = (i + 1) % self.cap, min(self.size + 1, self.cap)
        self.episodes += (done & valid).float()

    def update(self, gen: torch.Generator) -> None:
        """One Double-DQN step on a uniform minibatch of each agent's buffer, then Polyak target."""
        B = self.hp.batch
        if self.size < B:
            return
        idx = torch.randint(self.size, (self.P, B), generator=gen)
        rows = torch.arange(self.P)[:, None]
        s, a, r, s2 = self.s[rows, idx], self.a[rows, idx], self.r[rows, idx], self.s2[rows, idx]
        term, w = self.term[rows, idx], self.w[rows, idx]
        with torch.no_grad():
            a2 = self.q(self.params, s2).argmax(-1, keepdim=True)          # online net chooses
            y = r + self.hp.gamma * (1 - term) * self.q(self.target, s2).gather(-1, a2)[..., 0]
        qa = self.q(self.params, s).gather(-1, a[..., None])[..., 0]       # (P, B)
        loss = ((qa - y) ** 2 * w).sum(1) / w.sum(1).clamp(min=1)         # each agent's own mean
        self.opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        self.opt.step()
        with torch.no_grad():
            for t, p in zip(self.target, self.params):
                t.lerp_(p, self.hp.tau)
            if self._kept is not None:
                f = self.frozen
                for k, p in zip(self._kept, self.params + self.target):
                    p[f] = k[f]
        self.updates += 1


def plateaued(returns: list[float], window: int, rel: float) -> bool:
    """The early out of Ferreira et al. 2022 on a synthetic environment (learning_environments,
    ``BaseAgent.env_solved``): the mean return of the last ``window`` episodes differs from that
    of the ``window`` before by less than ``rel``, relatively. Needs 2·``window`` episodes (the
    paper starts after ``window`` + 2, with a part-filled earlier window). ``rel`` 0: never."""
    if rel <= 0 or len(returns) < 2 * window:
        return False
    last = sum(returns[-window:]) / window
    prev = sum(returns[-2 * window:-window]) / window
    return abs(last - prev) / abs(prev + 1e-9) < rel


def reached(returns: list[float], window: int, level: float | None) -> bool:
    """The paper's early out on a real environment, here on the SE's reward: the mean return of
    the last ``window`` episodes is at least ``level`` (None: never)."""
    return level is not None and len(returns) >= window and sum(returns[-window:]) / window >= level


def early_out(returns: list[float], rule: tuple[int, float, float | None]) -> bool:
    """``rule = (window, rel, level)``: :func:`plateaued` or :func:`reached`."""
    window, rel, level = rule
    return plateaued(returns, window, rel) or reached(returns, window, level)


def run_agents(agents: Agents, env, steps: int, gen: torch.Generator, on_step=None,
               early_stop: tuple[int, float, float | None] | None = None) -> dict:
    """Train ``agents`` for ``steps`` interactions with the batched ``env`` (``reset() -> obs``,
    ``step(a) -> (obs, r, term, trunc, valid)``, obs (P, obs_dim)), one update per interaction.
    ``on_step(t)`` runs after interaction t (1-based); returning True stops early.
    ``early_stop = (window, rel, level)``: an agent whose episode returns (``env``'s reward) meet
    :func:`early_out` after the update of interaction t stops learning there
    (:meth:`Agents.freeze`); once all have, the loop ends after ``on_step(t)``.

    Returns the training episodes' returns per agent (``env``'s reward, e.g. the shaped one) and
    ``real_returns`` (its ``real_r`` where it has one) and the interactions done."""
    obs = env.reset()
    ret = torch.zeros(agents.P)
    real_ret = torch.zeros(agents.P)
    returns: list[list[float]] = [[] for _ in range(agents.P)]
    real_returns: list[list[float]] = [[] for _ in range(agents.P)]
    t = 0
    for t in range(1, steps + 1):
        a = agents.act(obs, gen)
        obs2, r, term, trunc, valid = env.step(a)
        done = term | trunc
        agents.store(obs, a, r, obs2, term, valid, done)
        ret += r * valid
        real_ret += getattr(env, "real_r", r) * valid
        for p in torch.nonzero(done & valid).flatten().tolist():
            returns[p].append(float(ret[p]))
            real_returns[p].append(float(real_ret[p]))
        ret = torch.where(done, 0.0, ret)
        real_ret = torch.where(done, 0.0, real_ret)
        obs = obs2
        agents.update(gen)
        if early_stop is not None:
            ended = torch.nonzero(done & valid & ~agents.frozen).flatten().tolist()
            stop = [p for p in ended if early_out(returns[p], early_stop)]
            if stop:
                agents.freeze(torch.isin(torch.arange(agents.P), torch.tensor(stop)), t)
        if on_step is not None and on_step(t):
            break
        if early_stop is not None and bool(agents.frozen.all()):
            break
    return {"returns": returns, "real_returns": real_returns, "steps": t}
