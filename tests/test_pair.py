"""PAIR's explorable (Pearce et al. 2023): the a <= b task, the tied-embedding MLP, the preset."""
import json

import pytest
import torch
import torch.nn.functional as F

import groklab
from groklab.cli import main
from groklab.config import ConfigError
from groklab.models import PairMLP, build_model
from groklab.runs.checkpoint import list_checkpoints, load_weights
from groklab.runs.rundir import read_jsonl
from groklab.sweep.ensemble import train_ensemble, unsupported
from groklab.tasks import build_task

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["task.p=11", "model.d_model=16", "model.d_mlp=6"]


def pair_model(*overrides):
    cfg = groklab.resolve("pair", overrides=list(overrides))
    task = build_task(cfg.task)
    return cfg, task, build_model(cfg, task)


def test_the_preset_is_pairs_setup():
    cfg = groklab.resolve("pair")
    t, m, o, tr = cfg.task, cfg.model, cfg.optim, cfg.train
    assert (t.name, t.op, t.p, t.frac, t.pairs) == ("modular", "x+y", 67, 0.4, "a<=b")
    assert (m.arch, m.d_model, m.d_mlp, m.act, m.init_scale) == ("pair", 500, 24, "relu", 1.0)
    assert (o.name, o.lr, o.wd, o.beta1, o.beta2, o.warmup, o.schedule) == \
        ("adamw", 1e-3, 1.0, 0.9, 0.98, 0, "constant")
    assert o.eps == pytest.approx(67e-8)          # CE/67 with eps 1e-8, see the test below
    assert (tr.loss, tr.dtype, tr.loss_dtype, tr.batch_size, tr.steps) == ("ce", "float64", "float64", 0, 50_000)


def test_a_le_b_keeps_each_unordered_pair_once_and_40_percent_is_911():
    _, task, _ = pair_model()
    x = torch.cat([task.x_train, task.x_val])
    y = torch.cat([task.y_train, task.y_val])
    assert len(x) == 67 * 68 // 2 == 2278 and (task.n_train, task.n_val) == (911, 1367)
    assert bool((x[:, 0] <= x[:, 1]).all())
    assert len({(a, b) for a, b, _ in x.tolist()}) == 2278
    assert torch.equal(y, (x[:, 0] + x[:, 1]) % 67)
    # the default is unchanged: every ordered pair
    assert build_task(groklab.resolve("pair", overrides=["task.pairs=all"]).task).n_train == int(0.4 * 67 ** 2)
    assert build_task(groklab.resolve("default").task).meta["pairs"] == "all"
    div = build_task(groklab.resolve("pair", overrides=["task.op=x/y", "task.p=7", "task.frac=0.5"]).task)
    xd = torch.cat([div.x_train, div.x_val])
    assert len(xd) == 27 and bool((xd[:, 0] <= xd[:, 1]).all()) and bool((xd[:, 1] > 0).all())


@pytest.mark.parametrize("sets, needle", [
    (["task.pairs=a<b"], "task.pairs"),
    (["task.name=parity", "model.arch=mlp"], "applies to task.name=.modular. only"),
])
def test_task_pairs_is_validated(sets, needle):
    with pytest.raises(ConfigError, match=needle):
        groklab.resolve("pair", overrides=sets)


def test_parameters_are_the_hand_count_with_one_tied_embedding():
    _, task, m = pair_model()
    assert {k: tuple(v.shape) for k, v in m.named_parameters()} == {
        "W_E": (67, 500), "W_in": (500, 24), "W_out": (24, 500)}        # no biases, no unembedding
    assert sum(p.numel() for p in m.parameters()) == 67 * 500 + 500 * 24 + 24 * 500 == 57_500
    x = task.x_train[:9]
    logits, cache = m.run_with_cache(x)
    assert logits.shape == (9, 67)
    # tied: the logits read the very tensor the input embeds with
    assert torch.allclose(logits, cache["hook_out"] @ m.W_E.T, atol=1e-5)
    m.zero_grad()
    F.cross_entropy(m(x), task.y_train[:9]).backward()
    g_out = (cache["hook_out"].T @ (torch.softmax(logits, -1) - F.one_hot(task.y_train[:9], 67))).T / 9
    assert not torch.allclose(m.W_E.grad, g_out, atol=1e-6)   # input and output paths both feed W_E.grad


def test_forward_equals_the_one_hot_computation_and_is_symmetric_in_a_and_b():
    _, task, m = pair_model(*SMALL)
    m = m.double()
    x = task.x_val
    oh = lambda t: F.one_hot(t, 11).double()
    E = m.W_E
    plain = F.relu(oh(x[:, 0]) @ E @ m.W_in + oh(x[:, 1]) @ E @ m.W_in) @ m.W_out @ E.T
    assert torch.allclose(m(x), plain, rtol=1e-10, atol=1e-12)
    swapped = x[:, [1, 0, 2]]
    assert torch.allclose(m(swapped), m(x), rtol=1e-12, atol=1e-12)
    _, cache = m.run_with_cache(x)
    assert torch.allclose(cache["hook_pre"], (E[x[:, 0]] + E[x[:, 1]]) @ m.W_in, atol=1e-12)
    assert cache["hook_post"].min() >= 0


def test_initial_weight_norm_is_pairs_37_4():
    """Their log: L2 norm of all parameters 37.39 at step 0 (Haiku's truncated-normal inits)."""
    _, _, m = pair_model()
    norm = torch.sqrt(sum((p.double() ** 2).sum() for p in m.parameters())).item()
    assert norm == pytest.approx(37.4, rel=0.01)
    assert m.W_E.std().item() == pytest.approx((2 / 67) ** 0.5, rel=0.02)


def test_their_loss_is_ce_over_67_and_adamw_on_it_equals_adamw_on_ce_with_eps_times_67():
    _, task, m0 = pair_model(*SMALL)
    p = 11
    x, y = task.x_train, task.y_train
    logits = m0.double()(x)
    theirs = -(F.one_hot(y, p) * F.log_softmax(logits, -1)).mean()      # their loss_fn
    assert torch.allclose(theirs, F.cross_entropy(logits, y) / p)
    finals = []
    for scale, eps in ((1 / p, 1e-8), (1.0, p * 1e-8)):
        _, _, m = pair_model(*SMALL)
        m = m.double()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=eps, weight_decay=1.0)
        for _ in range(30):
            opt.zero_grad()
            (scale * F.cross_entropy(m(x), y)).backward()
            opt.step()
        finals.append(torch.cat([w.detach().flatten() for w in m.parameters()]))
    assert torch.allclose(finals[0], finals[1], rtol=1e-9, atol=1e-12)


def test_a_tiny_pair_run_writes_a_valid_run_directory_with_measures(tmp_path):
    out = tmp_path / "pair"
    sets = [*SMALL, "train.steps=50", "train.eval_every=10", "train.measure_every=25"]
    assert main(["run", "--preset", "pair", "--quiet", "--out", str(out),
                 *[a for kv in sets for a in ("--set", kv)]]) == 0
    for f in ("config.json", "metrics.jsonl", "summary.json", "measures.jsonl", "curves.png", "report.html"):
        assert (out / f).is_file(), f
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["preset"] == "pair" and cfg["model"]["arch"] == "pair" and cfg["task"]["pairs"] == "a<=b"
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["steps_done"] == 50
    assert read_jsonl(out / "metrics.jsonl")[-1]["step"] == 50
    m = read_jsonl(out / "measures.jsonl")[-1]
    assert set(m["sum_sq_per_tensor"]) == {"W_E", "W_in", "W_out"} and "gini_E" in m and "gini_L" in m
    assert set(load_weights(out / "checkpoints" / f"step_{list_checkpoints(out)[-1]:08d}")) == {"W_E", "W_in", "W_out"}
    assert groklab.resume(out, overrides=["train.steps=60"]).summary["steps_done"] == 60


def test_the_ensemble_refuses_the_preset_by_name_and_trains_it_without_live_measures(tmp_path):
    assert unsupported(groklab.resolve("pair")) == "train.measure_every > 0"
    sets = [*SMALL, "train.steps=20", "train.measure_every=0", "train.forecast=false", "train.n_checkpoints=0"]
    cfgs = [groklab.resolve("pair", overrides=[*sets, f"optim.lr={lr}"]) for lr in (1e-3, 3e-3)]
    ens = train_ensemble(cfgs, [tmp_path / "a", tmp_path / "b"], report=False)
    alone = groklab.run(cfgs[1], out=tmp_path / "c").summary
    assert ens[1]["final_train_loss"] == pytest.approx(alone["final_train_loss"], rel=1e-6)
    assert isinstance(build_model(cfgs[0], build_task(cfgs[0].task)), PairMLP)


def test_the_ticket_mlp_is_the_tickets_papers_untied_network():
    """Minegishi et al. 2024: W_E 67×500, shared 500→48, 48→500, an own W_U 500×67, no biases;
    logits go through W_U (not W_Eᵀ), and the neuron-logit map the measures read follows it."""
    from groklab.measure.extract import neuron_logit_map
    from groklab.measure.fourier import frame_for
    cfg = groklab.resolve("ticket-mlp")
    task = build_task(cfg.task)
    model = build_model(cfg, task).double()
    shapes = {k: tuple(v.shape) for k, v in model.named_parameters()}
    assert shapes == {"W_E": (67, 500), "W_in": (500, 48), "W_out": (48, 500), "W_U": (500, 67)}
    assert sum(v.numel() for v in model.parameters()) == 2 * 67 * 500 + 2 * 500 * 48 == 115_000
    assert (task.n_train, cfg.optim.wd, cfg.optim.beta2, cfg.train.steps) == (911, 1.0, 0.98, 30_000)
    x = task.x_train[:5]
    pre = model.W_E[x[:, 0]] @ model.W_in + model.W_E[x[:, 1]] @ model.W_in
    want = F.relu(pre) @ model.W_out @ model.W_U
    assert torch.allclose(model(x), want, atol=1e-12)
    frame = frame_for(task)
    WL = neuron_logit_map(model, frame)
    assert torch.allclose(WL, (model.W_out @ model.W_U)[:, frame.tokens].T, atol=1e-12)
    assert abs(float(model.W_U.detach().std()) - 67 ** -0.5) < 0.01  # std 1/√p, as W_E
