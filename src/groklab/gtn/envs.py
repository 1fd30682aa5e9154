"""Environments for learned-environment meta-training: the real one (Gymnasium), a synthetic
environment (SE) and a reward network (RN) (Ferreira et al., ICLR 2022).

Every environment here is batched over ``P`` agents, one environment each, with Gymnasium's
next-step autoreset: the call after an episode ends resets that environment and returns
``valid = False`` (no transition). ``steps`` counts the real transitions taken.

* :class:`RealEnv` — ``P`` Gymnasium environments (CartPole's own vectorised class; a
  ``SyncVectorEnv`` for Acrobot).
* :class:`SynthEnv` — ``P`` SEs, one MLP each: (state, one-hot action) -> (next state, reward,
  done logit); done when the logit > 0.5, as in the paper's VirtualEnv. Episodes start from the
  real environment's reset distribution (:data:`SPECS`), drawn here without any real step.
* :class:`RewardEnv` — the real environment whose reward an RN replaces or shapes:
  ``additive-potential``: r + γΦ(s') − Φ(s); ``exclusive-potential``: γΦ(s') − Φ(s);
  ``additive``: r + f(s'); ``exclusive``: f(s') (the paper's reward_env_type 2, 1, 6, 5).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from groklab.gtn.agents import mlp


@dataclass(frozen=True)
class EnvSpec:
    name: str
    obs_dim: int
    n_actions: int
    threshold: float       # Gymnasium's reward_threshold (solved: mean return over 100 episodes)
    max_steps: int


def _cartpole_init(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, 4, generator=gen) * 0.1 - 0.05             # CartPoleEnv.reset: U(±0.05)


def _acrobot_init(n: int, gen: torch.Generator) -> torch.Tensor:
    th = torch.rand(n, 4, generator=gen) * 0.2 - 0.1                 # AcrobotEnv.reset: U(±0.1)
    return torch.stack([th[:, 0].cos(), th[:, 0].sin(), th[:, 1].cos(), th[:, 1].sin(), th[:, 2], th[:, 3]], 1)


SPECS = {"CartPole-v1": EnvSpec("CartPole-v1", 4, 2, 475.0, 500),
         "Acrobot-v1": EnvSpec("Acrobot-v1", 6, 3, -100.0, 500)}
INITS = {"CartPole-v1": _cartpole_init, "Acrobot-v1": _acrobot_init}

_VEC: dict[tuple[str, int, str], object] = {}


def make_vec(name: str, n: int, role: str = "train"):
    """A Gymnasium vector environment of ``n`` copies of ``name`` (cached per size and ``role``:
    an evaluation in the middle of training must not reset the training environments)."""
    key = (name, n, role)
    if key not in _VEC:
        try:
            import gymnasium as gym
        except ImportError:
            from groklab.config import ConfigError
            raise ConfigError("groklab gtn env needs gymnasium: pip install 'groklab[rl]'") from None
        mode = "vector_entry_point" if gym.spec(name).vector_entry_point else "sync"
        _VEC[key] = gym.make_vec(name, num_envs=n, vectorization_mode=mode)
    return _VEC[key]


class RealEnv:
    """``P`` real environments, one per agent; ``real_r`` is the reward of the last step."""

    def __init__(self, name: str, P: int, seed: int):
        self.env, self.P, self.seed = make_vec(name, P), P, seed
        self.steps = 0

    def reset(self) -> torch.Tensor:
        obs, _ = self.env.reset(seed=self.seed)
        self.fresh = np.zeros(self.P, bool)
        return torch.as_tensor(obs, dtype=torch.float32)

    def step(self, a: torch.Tensor):
        obs, r, term, trunc, _ = self.env.step(a.numpy())
        valid = ~self.fresh
        self.steps += int(valid.sum())
        self.fresh = term | trunc
        self.real_r = torch.as_tensor(r, dtype=torch.float32)
        return (torch.as_tensor(obs, dtype=torch.float32), self.real_r, torch.as_tensor(term),
                torch.as_tensor(trunc), torch.as_tensor(valid))


def se_sizes(spec: EnvSpec, hidden: int, layers: int) -> list[int]:
    return [spec.obs_dim + spec.n_actions] + [hidden] * layers + [spec.obs_dim + 2]


class SynthEnv:
    """``P`` synthetic environments with parameters ``params`` (batched, leading dim P)."""

    def __init__(self, spec: EnvSpec, params: list[torch.Tensor], max_steps: int, gen: torch.Generator,
                 residual: bool = True, bound: float = 100.0):
        self.spec, self.params, self.max_steps, self.gen = spec, params, max_steps, gen
        self.residual, self.bound = residual, bound
        self.P = params[0].shape[0]
        self.steps = 0

    @torch.no_grad()
    def reset(self) -> torch.Tensor:
        self.s = INITS[self.spec.name](self.P, self.gen)
        self.t = torch.zeros(self.P, dtype=torch.long)
        self.fresh = torch.zeros(self.P, dtype=torch.bool)
        return self.s

    @torch.no_grad()
    def step(self, a: torch.Tensor):
        x = torch.cat([self.s, F.one_hot(a, self.spec.n_actions).float()], 1)[:, None]    # (P, 1, in)
        out = mlp(self.params, x, F.leaky_relu)[:, 0]                                      # (P, obs + 2)
        s2 = out[:, :-2] + (self.s if self.residual else 0)
        s2 = torch.nan_to_num(s2, 0.0, self.bound, -self.bound).clamp(-self.bound, self.bound)
        r = torch.nan_to_num(out[:, -2], 0.0).clamp(-self.bound, self.bound)
        term = out[:, -1] > 0.5
        self.t += 1
        trunc = (self.t >= self.max_steps) & ~term
        # next-step autoreset, as the real environment: this step only starts a new episode
        start = INITS[self.spec.name](self.P, self.gen)
        s2 = torch.where(self.fresh[:, None], start, s2)
        r = torch.where(self.fresh, 0.0, r)
        term, trunc = term & ~self.fresh, trunc & ~self.fresh
        self.t = torch.where(self.fresh, 0, self.t)
        valid = ~self.fresh
        self.steps += int(valid.sum())
        self.fresh = term | trunc
        self.s = s2
        return s2, r, term, trunc, valid


RN_KINDS = ("additive-potential", "exclusive-potential", "additive", "exclusive")


class RewardEnv(RealEnv):
    """The real environment with the reward of ``P`` reward networks (``params``, leading dim P)."""

    def __init__(self, name: str, P: int, seed: int, params: list[torch.Tensor], kind: str, gamma: float):
        super().__init__(name, P, seed)
        self.params, self.kind, self.gamma = params, kind, gamma

    def reset(self) -> torch.Tensor:
        self.s = super().reset()
        return self.s

    @torch.no_grad()
    def step(self, a: torch.Tensor):
        s2, r, term, trunc, valid = super().step(a)
        f2 = mlp(self.params, s2[:, None], F.leaky_relu)[:, 0, 0]          # (P,)
        if self.kind.endswith("potential"):
            f = self.gamma * f2 - mlp(self.params, self.s[:, None], F.leaky_relu)[:, 0, 0]
        else:
            f = f2
        shaped = f + (r if self.kind.startswith("additive") else 0)
        self.s = s2
        return s2, torch.where(valid, shaped, 0.0), term, trunc, valid


@torch.no_grad()
def evaluate_greedy(agents, name: str, episodes: int, seed: int) -> tuple[torch.Tensor, int]:
    """Mean real return of each agent's greedy policy over ``episodes`` episodes (environment i
    of the P·episodes is seeded ``seed + i``): (P,) returns and the real steps taken."""
    P = agents.P
    env = make_vec(name, P * episodes, "eval")
    obs, _ = env.reset(seed=seed)
    ret = np.zeros(P * episodes)
    alive = np.ones(P * episodes, bool)
    steps = 0
    while alive.any():
        x = torch.as_tensor(obs, dtype=torch.float32).view(P, episodes, -1)
        a = agents.greedy(x).flatten().numpy()
        obs, r, term, trunc, _ = env.step(a)
        ret += r * alive
        steps += int(alive.sum())
        alive &= ~(term | trunc)
    return torch.as_tensor(ret, dtype=torch.float32).view(P, episodes).mean(1), steps
