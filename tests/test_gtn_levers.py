"""The levers beyond the plain GTN: learned soft labels, a meta-batch of learners per outer step,
and the learned-pixels baseline (no generator, T·B learned inputs)."""
import shutil

import pytest
import torch

from groklab.cli import main
from groklab.config import ConfigError
from groklab.gtn import run as gtn_run
from groklab.gtn.meta import Teacher, make_unroll, meta_backward
from groklab.gtn.unroll import meta_backward_checkpointed, meta_backward_plain, meta_loss_plain
from groklab.runs.checkpoint import list_checkpoints, load_checkpoint
from groklab.runs.rundir import read_json, read_jsonl
from gtn_tiny import one_thread, tiny_cfg, tiny_data  # noqa: F401


def _setup(*overrides):
    cfg = tiny_cfg(*overrides)
    data = tiny_data().to(torch.float64)
    return cfg, data, Teacher(cfg, data).to(torch.float64)


def _grads(teacher):
    return {k: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for k, p in teacher.named_parameters()}


# ---- learned labels -------------------------------------------------------------------------

@pytest.mark.parametrize("curriculum", ["full", "shuffled_batch", "all_shuffled"])
def test_learned_labels_start_at_the_scaled_onehot_and_receive_the_meta_gradient(curriculum):
    cfg, data, teacher = _setup("labels.learned=true", "labels.scale=4", f"inner.curriculum={curriculum}")
    u = make_unroll(cfg, teacher, data, 1)
    x, target = u.batch(0)
    _, y = teacher.curriculum.inputs(0, u.plan)
    assert target.shape == (6, 3) and y.dtype == torch.int64     # the generator still gets classes
    torch.testing.assert_close(target, (4.0 * torch.nn.functional.one_hot(y, 3).double()).softmax(1))
    meta_backward_plain(u)
    g = teacher.curriculum.label_logits.grad
    assert g is not None and g.abs().sum() > 1e-6
    # the label gradient is the derivative of the meta-loss (finite differences along a direction)
    d = torch.randn(g.shape, generator=torch.Generator().manual_seed(0), dtype=g.dtype)
    eps = 1e-6

    def loss_at(sign):
        with torch.no_grad():
            teacher.curriculum.label_logits.add_(sign * eps * d)
        val = meta_loss_plain(make_unroll(cfg, teacher, data, 1)).item()
        with torch.no_grad():
            teacher.curriculum.label_logits.sub_(sign * eps * d)
        return val

    assert (g * d).sum().item() == pytest.approx((loss_at(1) - loss_at(-1)) / (2 * eps), rel=1e-5, abs=1e-9)


def test_meta_training_moves_the_learned_targets(tmp_path):
    cfg = tiny_cfg("labels.learned=true")
    out = gtn_run.train(cfg, tmp_path / "r", evaluate=False, data=tiny_data())
    _, teacher, _ = gtn_run.load_run(out, data=tiny_data())
    fresh = Teacher(cfg, tiny_data().to(torch.float64)).to(torch.float64)
    moved = (teacher.curriculum.label_logits - fresh.curriculum.label_logits).abs().max()
    assert moved > 1e-3
    # and what a learner is trained on is now the moved soft targets
    from groklab.gtn.eval import generated_batches
    _, t0 = generated_batches(teacher, torch.Generator().manual_seed(0))[0]
    torch.testing.assert_close(t0, teacher.curriculum.label_logits[0].detach().softmax(1))


def _pre_lever_meta_backward(cfg, teacher, data, step):
    """Outer step ``step``'s meta-loss, its gradient in ``.grad``, as computed before learned
    labels, the meta-batch and the pixel baseline existed (commit 5a11918): one learner drawn
    from the stream seed·1_000_003 + step, class labels as targets, the whole log_lr, no weight."""
    from groklab.gtn.learners import init_params, spec_for_step
    from groklab.gtn.meta import get_learner, loss_steps
    from groklab.gtn.unroll import initial_state, real_loss, sgd_momentum_step
    dtype = torch.float64
    g = torch.Generator().manual_seed(cfg.meta.seed * 1_000_003 + step)
    learner = get_learner(spec_for_step(cfg.learner, step, cfg.meta.seed), data, dtype)
    state = initial_state(learner, init_params(learner, g, dtype))
    plan = teacher.curriculum.plan(g)
    ls, n = loss_steps(cfg), len(data.y_train)
    idx = [torch.randint(0, n, (min(cfg.meta.real_batch, n),), generator=g) for _ in ls]
    total = None
    for t in range(cfg.inner.steps):
        z, y = teacher.curriculum.inputs(t, plan)
        state, _ = sgd_momentum_step(learner, state, teacher.generator(z.to(dtype), y), y, t,
                                     teacher.log_lr[t].exp(), teacher.log_mom[t].exp(), True)
        for s, i in zip(ls, idx):
            if s == t + 1:
                term = real_loss(learner, state, data.x_train[i], data.y_train[i])[0] / len(ls)
                total = term if total is None else total + term
    total.backward()
    return total.item()


@pytest.mark.parametrize("curriculum", ["full", "all_shuffled"])
def test_switches_off_change_nothing_bit_for_bit(curriculum):
    cfg, data, teacher = _setup(f"inner.curriculum={curriculum}", "learner.norm=meanbn",
                                "labels.learned=false", "meta.learners=1")
    assert teacher.curriculum.label_logits is None
    assert not any("label_logits" in k for k in teacher.state_dict())
    u = make_unroll(cfg, teacher, data, 2)
    _, y = teacher.curriculum.inputs(0, u.plan)
    assert teacher.curriculum.target(0, u.plan, y) is y
    want = _pre_lever_meta_backward(cfg, teacher, data, 2)
    want_grads = _grads(teacher)
    teacher.zero_grad(set_to_none=True)
    loss, _ = meta_backward(cfg, teacher, data, 2)
    assert loss == want                                  # same process, same CPU: bit for bit
    for name, g in _grads(teacher).items():
        assert torch.equal(g, want_grads[name]), name


def test_learned_labels_need_a_learned_curriculum():
    with pytest.raises(ConfigError, match="labels.learned=true learns one label per curriculum slot"):
        tiny_cfg("labels.learned=true", "inner.curriculum=none")


# ---- meta-batch of learners -----------------------------------------------------------------

@pytest.mark.parametrize("block", [0, 2])
def test_meta_batch_gradient_is_the_mean_of_the_single_learner_gradients(block):
    K = 3
    cfg, data, teacher = _setup(f"meta.learners={K}", "learner.random_width=true",
                                f"inner.checkpoint={block}", "labels.learned=true")
    loss, us = meta_backward(cfg, teacher, data, 4)
    batch = _grads(teacher)
    assert len({u.stats["learner"] for u in us}) > 1           # different learners were drawn
    single, losses = [], []
    for k in range(K):
        teacher.zero_grad(set_to_none=True)
        u = make_unroll(cfg, teacher, data, 4, k)
        losses.append(meta_backward_checkpointed(u, block) if block else meta_backward_plain(u))
        single.append(_grads(teacher))
    assert loss == pytest.approx(sum(losses) / K, rel=1e-12)
    for name in batch:
        mean = sum(s[name] for s in single) / K
        torch.testing.assert_close(batch[name], mean, rtol=1e-12, atol=1e-15)
    assert not torch.allclose(single[0]["log_lr"], single[1]["log_lr"])
    # learner 0 of a meta-batch is the single learner of meta.learners=1
    cfg1, _, _ = _setup("meta.learners=1", "learner.random_width=true", f"inner.checkpoint={block}",
                        "labels.learned=true")
    teacher.zero_grad(set_to_none=True)
    meta_backward(cfg1, teacher, data, 4)
    for name, g in _grads(teacher).items():
        assert torch.equal(g, single[0][name]), name


# ---- learned pixels -------------------------------------------------------------------------

def test_pixels_learn_exactly_T_B_d_inputs_and_no_generator():
    cfg, data, teacher = _setup("generator.kind=pixels")
    T, B, d = cfg.inner.steps, cfg.inner.batch, data.d_in
    assert list(teacher.generator.parameters()) == []
    shapes = {k: tuple(p.shape) for k, p in teacher.named_parameters()}
    assert shapes == {"curriculum.z": (T, B, d), "log_lr": (T,), "log_mom": (T,)}
    u = make_unroll(cfg, teacher, data, 0)
    x, y = u.batch(1)
    assert torch.equal(x, teacher.curriculum.z[1].view(B, *data.shape))   # the inputs are the examples
    meta_backward_plain(u)
    assert teacher.curriculum.z.grad.abs().sum() > 0


def test_pixels_train_and_resume_bit_for_bit(tmp_path):
    cfg = tiny_cfg("generator.kind=pixels", "labels.learned=true", "meta.learners=2", "inner.checkpoint=2")
    a = gtn_run.train(cfg, tmp_path / "a", evaluate=False, data=tiny_data())
    b = gtn_run.train(cfg, tmp_path / "b", evaluate=False, data=tiny_data())
    shutil.rmtree(b / "checkpoints" / "step_00000006")
    gtn_run.resume(b, evaluate=False, data=tiny_data())
    wa, _ = load_checkpoint(a, 6)
    wb, _ = load_checkpoint(b, 6)
    assert set(wa) == {"curriculum.z", "curriculum.label_logits", "curriculum.labels", "log_lr",
                       "log_mom"}
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
    assert strip(read_jsonl(a / "metrics.jsonl")) == strip(read_jsonl(b / "metrics.jsonl"))
    assert list_checkpoints(b) == [3, 6]


def test_pixels_lower_the_meta_loss(tmp_path):
    cfg = tiny_cfg("generator.kind=pixels", "meta.steps=40", "meta.checkpoint_every=40", "meta.lr=0.05")
    out = gtn_run.train(cfg, tmp_path / "p", data=tiny_data())
    rec = read_jsonl(out / "metrics.jsonl")
    mean = lambda rs: sum(r["meta_loss"] for r in rs) / len(rs)  # noqa: E731
    assert mean(rec[-10:]) < 0.8 * mean(rec[:10])
    assert read_json(out / "summary.json")["eval"]["learners"] == 2


@pytest.mark.parametrize("curriculum", ["none", "all_shuffled", "shuffled_batch"])
def test_pixels_refuse_a_curriculum_other_than_full(tmp_path, capsys, curriculum):
    with pytest.raises(ConfigError, match="generator.kind='pixels' learns one input per curriculum slot"):
        tiny_cfg("generator.kind=pixels", f"inner.curriculum={curriculum}")
    out = tmp_path / "x"
    code = main(["gtn", "train", "--quiet", "--out", str(out), "--set", "generator.kind=pixels",
                 "--set", f"inner.curriculum={curriculum}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "needs inner.curriculum='full'" in err
    assert not out.exists()


@pytest.mark.parametrize("mult", [1.0, 10.0])
def test_label_logits_take_meta_steps_lr_mult_times_larger(mult):
    # Adam's first step moves every coordinate by about its learning rate (m̂/√v̂ = ±1)
    from groklab.gtn.meta import make_optimizer, meta_step
    cfg, data, teacher = _setup("labels.learned=true", f"labels.lr_mult={mult}", "meta.lr=0.01")
    before = {k: p.detach().clone() for k, p in teacher.named_parameters()}
    meta_step(cfg, teacher, make_optimizer(cfg, teacher), data, 0)
    moved = {k: (p.detach() - before[k]).abs().max().item() for k, p in teacher.named_parameters()}
    assert moved["curriculum.label_logits"] == pytest.approx(0.01 * mult, rel=1e-3)
    assert moved["log_lr"] == pytest.approx(0.01, rel=1e-3)


# ---- T curriculum ---------------------------------------------------------------------------

def test_grow_unrolls_short_first_and_only_those_steps_get_gradient():
    from groklab.gtn.meta import unroll_length
    cfg, data, teacher = _setup("inner.grow=4", "inner.steps=3", "inner.intermediate=1")
    assert [unroll_length(cfg, s) for s in range(6)] == [1, 2, 3, 3, 3, 3]
    u = make_unroll(cfg, teacher, data, 0)
    assert u.steps == 1 and u.loss_steps == [1]
    meta_backward_plain(u)
    g = teacher.log_lr.grad
    assert g[0] != 0 and torch.equal(g[1:], torch.zeros(2, dtype=g.dtype))
    # once grown, the unroll is the plain one bit for bit
    teacher.zero_grad(set_to_none=True)
    grown = meta_backward_plain(make_unroll(cfg, teacher, data, 5))
    g_grown = _grads(teacher)
    cfg0, _, _ = _setup("inner.steps=3", "inner.intermediate=1")
    teacher.zero_grad(set_to_none=True)
    assert meta_backward_plain(make_unroll(cfg0, teacher, data, 5)) == grown
    for k, v in _grads(teacher).items():
        assert torch.equal(v, g_grown[k]), k


# ---- meta-lr warmup -------------------------------------------------------------------------

def test_warmup_ramps_the_meta_lr_linearly_then_follows_the_cosine():
    from groklab.gtn.config import resolve
    from groklab.gtn.meta import cosine_lr
    cos = resolve(overrides=["meta.steps=100", "meta.lr=0.02", "meta.min_lr_frac=0.1"])
    warm = resolve(overrides=["meta.steps=100", "meta.lr=0.02", "meta.min_lr_frac=0.1", "meta.warmup=10"])
    for s in range(10):
        assert cosine_lr(warm, s) == pytest.approx(cosine_lr(cos, s) * (s + 1) / 10)
    for s in (9, 10, 50, 100):
        assert cosine_lr(warm, s) == pytest.approx(cosine_lr(cos, s))


def test_the_first_warmed_up_meta_step_moves_the_teacher_by_lr_over_warmup():
    # Adam's first step moves each coordinate by about its learning rate: lr / W at step 0
    from groklab.gtn.meta import make_optimizer, meta_step
    cfg, data, teacher = _setup("meta.lr=0.01", "meta.warmup=4")
    before = teacher.log_lr.detach().clone()
    rec = meta_step(cfg, teacher, make_optimizer(cfg, teacher), data, 0)
    assert rec["meta_lr"] == pytest.approx(0.0025)
    assert (teacher.log_lr.detach() - before).abs().max().item() == pytest.approx(0.0025, rel=1e-3)


# ---- translated real meta-batches -----------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 6, 7), (1, 9)])
def test_random_shift_translates_each_example_by_its_own_offset_within_s(shape):
    from groklab.gtn.data import random_shift
    x = torch.randn(64, *shape, dtype=torch.float64)
    s, fill = 2, -7.0
    y = random_shift(x, s, torch.Generator().manual_seed(3), fill)
    assert y.shape == x.shape
    seen = set()
    for xi, yi in zip(x, y):          # exactly one offset in [-s, s]^axes reproduces yi
        pad = torch.nn.functional.pad(xi, [s] * (2 * (len(shape) - 1)), value=fill)
        hits = []
        for off in torch.cartesian_prod(*[torch.arange(2 * s + 1)] * (len(shape) - 1)).view(-1, len(shape) - 1):
            window = pad[(slice(None), *[slice(o, o + w) for o, w in zip(off.tolist(), shape[1:])])]
            if torch.equal(window, yi):
                hits.append(tuple(off.tolist()))
        assert len(hits) == 1
        seen.add(hits[0])
    assert len(seen) > 3              # the offsets differ between examples
    assert torch.equal(random_shift(x, 0, torch.Generator(), fill), x)


def test_shift_translates_only_the_real_meta_batches():
    from groklab.gtn.data import GTNData
    cfg0, flat, _ = _setup("learner.kind=cnn", "learner.channels=2")
    cfg, _, _ = _setup("learner.kind=cnn", "learner.channels=2", "meta.shift=1")
    seq = lambda x: x.view(len(x), 1, -1)  # noqa: E731  sequences of length 5
    data = GTNData("tiny-seq", seq(flat.x_train), flat.y_train, seq(flat.x_test), flat.y_test, (1, 5), 3, 0.0, 1.0)
    teacher = Teacher(cfg, data).to(torch.float64)
    u0, u = make_unroll(cfg0, teacher, data, 2), make_unroll(cfg, teacher, data, 2)
    assert all(torch.equal(a, b) for a, b in zip(u0.real_y, u.real_y))
    assert all(torch.equal(a, b) for a, b in zip(u0.params0.values(), u.params0.values()))
    assert not any(torch.equal(a, b) for a, b in zip(u0.real_x, u.real_x))
    assert all(a.shape == b.shape for a, b in zip(u0.real_x, u.real_x))


def test_shift_refuses_data_without_space(tmp_path, capsys):
    out = tmp_path / "g"
    code = main(["gtn", "train", "--recipe", "modular", "--set", "meta.shift=1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "meta.shift=1" in err
    assert not out.exists()
