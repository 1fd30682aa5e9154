"""groklab gtn env: early out of SE training on the SE's own reward (``agent.se_early_stop``; the
paper's ``early_out_virtual_diff``, Ferreira et al. 2022)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from groklab.gtn.agents import AgentHP, Agents, plateaued, reached, run_agents

gym = pytest.importorskip("gymnasium")

from groklab.gtn import envmeta, envrun  # noqa: E402
from test_gtn_env import TOY, run_cli, sign, toy  # noqa: E402,F401  (sign: the toy task's fixture)


def test_plateaued_compares_the_last_two_windows():
    assert not plateaued([1.0] * 5, 3, 0.01)                       # needs two full windows
    assert plateaued([1.0] * 6, 3, 0.01)
    assert plateaued([5.0, 10, 10, 10, 10, 10, 10.1], 3, 0.01)      # only the last 2·3 count: 10 -> 10.03
    assert not plateaued([5.0, 5, 5, 10, 10, 10], 3, 0.01)         # 5 -> 10
    assert not plateaued([1.0, 2, 3, 4, 5, 6, 7, 8], 3, 0.7)       # 4 -> 7: 75 %
    assert plateaued([1.0, 2, 3, 4, 5, 6, 7, 8], 3, 0.8)
    assert not plateaued([1.0] * 6, 3, 0.0)                        # 0: off


def test_reached_needs_a_full_window_at_the_level():
    assert reached([1.0, 9, 10, 11], 3, 10.0) and not reached([1.0, 9, 10, 10.9], 3, 10.0)
    assert not reached([20.0, 20], 3, 10.0) and not reached([20.0] * 3, 3, None)


class Rewards:
    """One-step episodes; agent 0 always gets reward 1 (its return plateaus at once), agent 1 the
    step number (it never plateaus within 0.01)."""

    def __init__(self):
        self.t = 0

    def reset(self):
        return torch.zeros(2, 1)

    def step(self, a):
        self.t += 1
        r = torch.tensor([1.0, float(self.t)])
        done = torch.ones(2, dtype=torch.bool)
        return torch.randn(2, 1), r, done, ~done, done


def train(early_stop, steps=60, snap_at=None):
    torch.manual_seed(0)
    ag = Agents(2, 1, 2, AgentHP(hidden=8, batch=4, lr=0.01, gamma=0.5), torch.Generator().manual_seed(0))
    snaps = {}

    def on_step(t):
        if t == snap_at:
            snaps["params"] = [p.detach().clone() for p in ag.params]

    out = run_agents(ag, Rewards(), steps, torch.Generator().manual_seed(1), on_step, early_stop)
    return ag, out, snaps


def test_an_agent_stops_learning_once_its_se_return_plateaus():
    ag, out, snaps = train((10, 0.01, None), snap_at=20)
    assert ag.stopped_at.tolist() == [20, 0] and out["steps"] == 60
    assert all(torch.equal(p.detach()[0], s[0]) for p, s in zip(ag.params, snaps["params"]))
    free, _, _ = train(None)
    # without the early out agent 0 keeps learning; agent 1 ends bit-identical either way
    assert not all(torch.equal(p.detach()[0], q.detach()[0]) for p, q in zip(ag.params, free.params))
    assert all(torch.equal(p.detach()[1], q.detach()[1]) for p, q in zip(ag.params, free.params))
    assert not all(torch.equal(p[0], q[0]) for p, q in zip(ag.target, free.target))


def test_training_ends_once_every_agent_has_stopped():
    _, out, _ = train((2, 10.0, None))
    assert out["steps"] == 4


def test_an_agent_stops_once_its_se_return_reaches_the_level():
    ag, out, _ = train((3, 0.0, 30.0))
    assert ag.stopped_at.tolist() == [0, 31] and out["steps"] == 60   # agent 1: returns 29, 30, 31
    ag, out, _ = train((3, 0.01, 30.0))                            # either rule: agent 0 plateaus at 6
    assert ag.stopped_at.tolist() == [6, 31] and out["steps"] == 31


@pytest.mark.usefixtures("sign")
def test_config_resolves_to_the_rule():
    assert envmeta.early_stop(toy()) is None
    assert envmeta.early_stop(toy("agent.se_early_stop=0.01")) == (10, 0.01, None)
    assert envmeta.early_stop(toy("agent.se_early_return_on=true", "agent.se_early_return=0.5",
                                  "agent.se_early_window=4")) == (4, 0.0, 0.5)


@pytest.mark.usefixtures("sign")
def test_meta_training_and_the_protocol_use_it(monkeypatch):
    cfg = toy("agent.se_early_stop=0.05", "agent.se_early_window=5", "eval.agents=6")
    _, rec = envmeta.generation(cfg, envmeta.init_psi(cfg), 0)
    assert rec["stopped_frac"] > 0.5 and rec["inner_steps_run"] <= cfg.meta.inner_steps
    # a fake scorer that passes exactly the agents that have stopped: each must be counted as
    # solved at the step it stopped, not at the (later) checkpoint that scored it
    monkeypatch.setattr(envrun, "evaluate_greedy", lambda ag, name, n, seed: (ag.frozen.float(), 0))
    p = envrun.protocol(cfg, envmeta.init_psi(cfg), "ddqn", cfg.eval.se_steps)
    stops = p["stopped_at"]
    assert None not in stops and len(set(stops)) > 1, stops        # measured: 19, 23 and 29
    assert p["steps_to_solve"] == stops and p["checkpoints"] == [max(stops)]   # ends once all stopped
    real = envrun.protocol(cfg, None, "ddqn", cfg.eval.real_steps)
    assert real["stopped_at"] == [None] * 6 and real["steps_to_solve"] == [None] * 6


@pytest.mark.usefixtures("sign")
def test_resume_continues_exactly_with_early_stop(tmp_path):
    sets = [f"--set={kv}" for kv in TOY + ["meta.generations=4", "meta.checkpoint_every=2",
                                           "agent.se_early_stop=0.2", "agent.se_early_window=5"]]
    a = tmp_path / "a"
    assert run_cli("--out", str(a), "--no-eval", *sets) == 0
    b = tmp_path / "b"
    shutil.copytree(a, b)
    shutil.rmtree(b / "checkpoints" / "step_00000004")
    (b / "summary.json").unlink()
    assert run_cli("--resume", str(b), "--no-eval") == 0
    from groklab.runs.checkpoint import load_checkpoint
    assert torch.equal(load_checkpoint(a, 4)[0]["psi"], load_checkpoint(b, 4)[0]["psi"])
    ra, rb = ([json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b))
    assert [r["score_mean"] for r in ra] == [r["score_mean"] for r in rb]
    assert all(r["stopped_frac"] > 0 for r in ra)
    c = tmp_path / "c"                                              # the same without the early out
    assert run_cli("--out", str(c), "--no-eval", *sets, "--set=agent.se_early_stop=0") == 0
    sa, sb, sc = (json.loads((d / "summary.json").read_text())["cost"]["flops"] for d in (a, b, c))
    inner = sum(r["inner_steps_run"] for r in ra)                    # FLOPs count the steps each generation ran
    assert sa == sb and inner < 4 * 120 and sa * 4 * 120 == sc * inner


@pytest.mark.parametrize("args, words", [
    (["--set", "agent.se_early_stop=-0.1"], ["agent.se_early_stop"]),
    (["--set", "agent.se_early_window=0"], ["agent.se_early_window=0"]),
    (["--set", "agent.se_early_stop=0.01", "--set", "meta.target=rn"], ["agent.se_early_stop=0.01", "meta.target"]),
    (["--set", "agent.se_early_return_on=true", "--set", "meta.target=rn"], ["agent.se_early_return_on", "'rn'"]),
    (["--set", "agent.se_early_return=abc"], ["agent.se_early_return"]),
])
def test_bad_early_stop_is_one_line_exit_2_and_no_directory(tmp_path, capsys, args, words):
    out = tmp_path / "o"
    assert run_cli("--out", str(out), *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not out.exists()


def test_second_look_recipes_resolve_to_the_measured_settings():
    from groklab.gtn.envconfig import resolve
    d = resolve(recipe="cartpole-se-stop")
    assert (d.se.hidden, d.meta.inner_steps, d.meta.pairs, d.meta.agents, d.meta.noise_std, d.meta.step_size,
            d.meta.generations, d.meta.seed, d.meta.init) == (32, 1000, 16, 1, 0.05, 0.5, 80, 4,
                                                              "runs/env-cartpole-se-refine")
    assert envmeta.early_stop(d) == (10, 0.0, 40.0)
    assert (d.eval.every, d.eval.se_steps, d.eval.real) == (500, 2000, False)
    e = resolve(recipe="cartpole-se-es16")
    assert (e.meta.pairs, e.meta.agents, e.meta.noise_std, e.meta.generations, e.meta.seed, e.meta.init) == (
        16, 2, 0.05, 100, 5, "runs/env-cartpole-se-stop")
    assert envmeta.early_stop(e) == (10, 0.0, 40.0) and (e.eval.se_steps, e.eval.real) == (4000, False)
    f = resolve(recipe="cartpole-se-es16x3")
    assert (f.meta.pairs, f.meta.agents, f.meta.noise_std, f.meta.generations, f.meta.seed, f.meta.init) == (
        16, 3, 0.05, 70, 6, "runs/env-cartpole-se-es16")
    assert envmeta.early_stop(f) is None and (f.se.hidden, f.meta.inner_steps, f.eval.se_steps) == (32, 1000, 2000)
    g = resolve(recipe="cartpole-se-es16x4")
    assert (g.meta.pairs, g.meta.agents, g.meta.noise_std, g.meta.generations, g.meta.seed, g.meta.init) == (
        16, 4, 0.05, 35, 7, "runs/env-cartpole-se-es16x3")
    assert envmeta.early_stop(g) is None and (g.eval.every, g.eval.se_steps, g.eval.real) == (500, 2000, False)
