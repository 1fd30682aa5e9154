"""groklab gtn env: learned synthetic environments and reward networks (Ferreira et al. 2022).

The meta-learning tests use a one-step toy task registered with Gymnasium here ("Sign": observe
x ~ U(-1, 1), reward 1 for action 1 when x > 0 and for action 0 otherwise), small enough that ES
teaches it in seconds and that a broken update (fitness ignored, sign flipped) visibly fails.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

gym = pytest.importorskip("gymnasium")

from groklab.cli import main  # noqa: E402
from groklab.gtn import envmeta  # noqa: E402
from groklab.gtn.agents import AgentHP, Agents, run_agents  # noqa: E402
from groklab.gtn.envconfig import resolve  # noqa: E402
from groklab.gtn.envs import INITS, SPECS, EnvSpec, RealEnv, evaluate_greedy  # noqa: E402

SIGN = "GroklabSign-v0"


class SignEnv(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-1, 1, 1).astype(np.float32)
        return self.x, {}

    def step(self, action):
        r = float((int(action) == 1) == (self.x[0] > 0))
        self.x = self.np_random.uniform(-1, 1, 1).astype(np.float32)
        return self.x, r, True, False, {}


@pytest.fixture
def sign(monkeypatch):
    if SIGN not in gym.envs.registry:
        gym.register(SIGN, entry_point=SignEnv, max_episode_steps=1)
    monkeypatch.setitem(SPECS, SIGN, EnvSpec(SIGN, 1, 2, 0.95, 1))
    monkeypatch.setitem(INITS, SIGN, lambda n, g: torch.rand(n, 1, generator=g) * 2 - 1)
    return SIGN


TOY = ["env.name=GroklabSign-v0", "agent.hidden=8", "agent.batch=16", "agent.lr=0.01", "agent.gamma=0.5",
       "se.hidden=8", "se.max_steps=1", "meta.pairs=6", "meta.inner_steps=120", "meta.test_episodes=20",
       "meta.noise_std=0.3", "meta.step_size=0.5", "eval.agents=3", "eval.episodes=20", "eval.every=60",
       "eval.se_steps=120", "eval.real_steps=120", "eval.kinds=ddqn"]


def toy(*extra):
    return resolve(overrides=TOY + list(extra))


def meta_score(cfg, generations):
    psi = envmeta.init_psi(cfg)
    before = envmeta.score_psi(cfg, psi, 8, 99).mean().item()
    for g in range(generations):
        psi, _ = envmeta.generation(cfg, psi, g)
    return before, envmeta.score_psi(cfg, psi, 8, 99).mean().item()


def test_es_teaches_the_toy_task(sign):
    # measured: 0.42 before, 0.96 after 15 generations; with the update's sign flipped 0.08, with
    # the utilities ignored (equal weights) 0.44
    before, after = meta_score(toy(), 15)
    assert after >= 0.85 and after >= before + 0.3, (before, after)


def test_nes_utilities_rank_and_ignore_the_bottom_half():
    u = envmeta.nes_utilities(torch.tensor([3.0, -1.0, 10.0, 0.0]))
    assert u[2] == 1 and u[0] > 0 and u[1] == 0 and u[3] == 0
    assert torch.equal(envmeta.nes_utilities(torch.tensor([5.0, 1.0])), torch.tensor([1.0, 0.0]))


def bandit_agents(P, seed=0, **kw):
    hp = AgentHP(hidden=8, batch=16, lr=0.01, gamma=0.5, **kw)
    return Agents(P, 1, 2, hp, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["ddqn", "dueling"])
def test_ddqn_learns_the_real_toy_task(sign, kind):
    ag = bandit_agents(4, kind=kind)
    run_agents(ag, RealEnv(SIGN, 4, 0), 300, torch.Generator().manual_seed(1))
    ret, steps = evaluate_greedy(ag, SIGN, 50, 7)
    assert steps == 4 * 50 and ret.min() >= 0.9, ret


def test_agents_of_a_population_are_independent():
    """Agent 0 of a population ends bit-identical whatever agent 1's rewards were."""
    class Env:
        def __init__(self, bonus):
            self.bonus = bonus

        def reset(self):
            return torch.zeros(2, 1)

        def step(self, a):
            r = torch.tensor([float(a[0]), float(a[1]) * self.bonus])
            t = torch.ones(2, dtype=torch.bool)
            return torch.randn(2, 1), r, t, ~t, t

    outs = []
    for bonus in (1.0, -5.0):
        torch.manual_seed(0)
        ag = bandit_agents(2)
        run_agents(ag, Env(bonus), 60, torch.Generator().manual_seed(1))
        outs.append([p.detach()[0].clone() for p in ag.params] + [p.detach()[1].clone() for p in ag.params])
    n = len(outs[0]) // 2
    assert all(torch.equal(a, b) for a, b in zip(outs[0][:n], outs[1][:n]))
    assert not all(torch.equal(a, b) for a, b in zip(outs[0][n:], outs[1][n:]))


def run_cli(*args):
    return main(["gtn", "env", "--quiet", *args])


def test_run_directory_report_and_counted_real_steps(sign, tmp_path, capsys):
    out = tmp_path / "r"
    sets = [f"--set={kv}" for kv in TOY + ["meta.generations=3", "meta.checkpoint_every=2"]]
    assert run_cli("--out", str(out), *sets) == 0
    for f in ("config.json", "metrics.jsonl", "summary.json", "eval.json", "report.html", "fig_returns.png",
              "fig_meta.png"):
        assert (out / f).is_file(), f
    files = {p.suffix for p in (out / "checkpoints").rglob("*") if p.is_file()}
    assert files == {".safetensors", ".json"}                      # nothing pickled
    s = json.loads((out / "summary.json").read_text())
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert s["real_steps_meta"] == sum(r["real_steps_gen"] for r in recs) == recs[-1]["real_steps"] > 0
    assert s["cost"]["cpu_seconds"] > 0 and s["cost"]["flops"] > 0
    assert set(s["eval"]) == {"ddqn"} and s["eval"]["ddqn"]["se"]["of"] == 3
    assert "real steps spent" in capsys.readouterr().out


def test_resume_continues_exactly(sign, tmp_path):
    sets = [f"--set={kv}" for kv in TOY + ["meta.generations=4", "meta.checkpoint_every=2"]]
    a = tmp_path / "a"
    assert run_cli("--out", str(a), "--no-eval", *sets) == 0
    b = tmp_path / "b"
    shutil.copytree(a, b)
    shutil.rmtree(b / "checkpoints" / "step_00000004")          # as if stopped after generation 2
    (b / "summary.json").unlink()
    assert run_cli("--resume", str(b), "--no-eval") == 0
    from groklab.runs.checkpoint import load_checkpoint
    assert torch.equal(load_checkpoint(a, 4)[0]["psi"], load_checkpoint(b, 4)[0]["psi"])
    ra, rb = ((d / "metrics.jsonl").read_text().splitlines() for d in (a, b))
    assert [json.loads(x)["score_mean"] for x in ra] == [json.loads(x)["score_mean"] for x in rb]


def test_rn_meta_training_counts_its_training_steps(sign, tmp_path):
    out = tmp_path / "rn"
    sets = [f"--set={kv}" for kv in TOY + ["meta.target=rn", "meta.generations=2", "rn.hidden=4", "rn.layers=1"]]
    assert run_cli("--out", str(out), "--no-eval", *sets) == 0
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # every agent (2 pairs·6 + the centre) trains 120 real steps; on "Sign" every other step is an
    # autoreset, which is not a transition
    assert all(r["real_steps_gen"] == 13 * 60 for r in recs)


@pytest.mark.parametrize("args, words", [
    (["--set", "meta.pairs=0"], ["meta.pairs=0", "[1, 1024]"]),
    (["--set", "env.name=Pong-v5"], ["env.name='Pong-v5'", "CartPole-v1", "Acrobot-v1"]),
    (["--set", "rn.kind=multiplicative"], ["rn.kind", "additive-potential"]),
    (["--set", "eval.kinds=ppo"], ["eval.kinds", "ddqn"]),
    (["--set", "agent.eps_min=0.9", "--set", "agent.eps_init=0.5"], ["agent.eps_min=0.9", "agent.eps_init=0.5"]),
    (["--set", "eval.every=10", "--set", "eval.se_steps=5", "--set", "eval.real_steps=5"], ["eval.every=10"]),
    (["--recipe", "pong"], ["recipe 'pong'", "cartpole-se"]),
    (["--set", "meta.bogus=1"], ["meta.bogus"]),
])
def test_bad_input_is_one_line_exit_2_and_no_directory(tmp_path, capsys, args, words):
    out = tmp_path / "o"
    assert run_cli("--out", str(out), *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not out.exists()


def test_bad_resume_is_one_line(tmp_path, capsys):
    assert run_cli("--resume", str(tmp_path / "nope")) == 2
    (tmp_path / "config.json").write_text("{}")
    assert run_cli("--resume", str(tmp_path), "--set", "meta.pairs=2") == 2
    assert run_cli("--resume", str(tmp_path), "--recipe", "cartpole-se") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "no such GTN env run directory" in err[0] and "'meta.pairs'" in err[1]
    assert "--recipe" in err[2]


def test_resume_with_eval_settings_re_evaluates(sign, tmp_path, capsys):
    out = tmp_path / "r"
    sets = [f"--set={kv}" for kv in TOY + ["meta.generations=1"]]
    assert run_cli("--out", str(out), *sets) == 0
    psi = (out / "checkpoints" / "step_00000001" / "model.safetensors").read_bytes()
    assert run_cli("--resume", str(out), "--set", "eval.agents=2", "--set", "eval.kinds=dueling") == 0
    s = json.loads((out / "summary.json").read_text())
    assert set(s["eval"]) == {"dueling"} and s["eval"]["dueling"]["se"]["of"] == 2
    assert json.loads((out / "config.json").read_text())["eval"]["agents"] == 2
    assert (out / "checkpoints" / "step_00000001" / "model.safetensors").read_bytes() == psi
    assert run_cli("--resume", str(out), "--set", "eval.agents=0") == 2
    assert "eval.agents=0" in capsys.readouterr().err


def test_init_from_another_run_and_several_agents_per_member(sign, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    sets = [f"--set={kv}" for kv in TOY + ["meta.generations=2"]]
    assert run_cli("--out", str(a), "--no-eval", *sets) == 0
    assert run_cli("--out", str(b), *sets, f"--set=meta.init={a}", "--set=meta.agents=2",
                   "--set=eval.real=false") == 0
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert set(sb["eval"]["ddqn"]) == {"se"} and (b / "report.html").is_file()
    assert sb["init_real_steps"] == sa["real_steps_meta"]
    assert sb["real_steps_total"] == sa["real_steps_meta"] + sb["real_steps_meta"]
    rb = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert len(rb) == 2 and all(r["real_steps_gen"] > 0 for r in rb)
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert run_cli("--out", str(bad), *sets, f"--set=meta.init={tmp_path / 'none'}") == 2
    assert run_cli("--out", str(bad), *sets, f"--set=meta.init={a}", "--set=se.hidden=9") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not a finished gtn env run directory" in err[0] and "does not fit" in err[1]
    assert not bad.exists()
