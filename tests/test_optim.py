"""Learning-rate schedules: Nanda's warm-up, then constant, cosine or linear decay to a floor."""
import math
from types import SimpleNamespace

import pytest

from groklab.train.optim import get_lr


def sched(schedule="constant", lr=1e-3, warmup=10, min_lr_frac=0.0):
    return SimpleNamespace(lr=lr, warmup=warmup, schedule=schedule, min_lr_frac=min_lr_frac)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear"])
def test_warmup_starts_at_zero_and_rises_linearly_to_lr(schedule):
    """Nanda's LambdaLR: lr * min(step / warmup, 1), so the very first update has lr 0."""
    cfg = sched(schedule, lr=2e-3, warmup=10)
    assert get_lr(0, cfg, 1000) == 0.0
    assert [get_lr(s, cfg, 1000) for s in range(10)] == pytest.approx([2e-3 * s / 10 for s in range(10)])
    assert get_lr(10, cfg, 1000) == pytest.approx(2e-3)   # the decay starts at lr, after warm-up


def test_without_warmup_the_first_step_has_the_full_lr():
    assert get_lr(0, sched("constant", warmup=0), 100) == 1e-3
    assert get_lr(0, sched("cosine", warmup=0, min_lr_frac=0.1), 100) == pytest.approx(1e-3)


def test_constant_ignores_the_budget_and_the_floor():
    cfg = sched("constant", warmup=5, min_lr_frac=0.5)
    assert {get_lr(s, cfg, 100) for s in (5, 50, 100, 10_000)} == {1e-3}


@pytest.mark.parametrize("floor", [0.0, 0.1])
def test_cosine_decays_from_lr_to_the_floor_at_the_last_step(floor):
    lr, warmup, total = 1e-3, 10, 110
    cfg = sched("cosine", lr, warmup, floor)
    lo = floor * lr
    for step in range(warmup, total + 1):
        t = (step - warmup) / (total - warmup)
        assert get_lr(step, cfg, total) == pytest.approx(lo + (lr - lo) * 0.5 * (1 + math.cos(math.pi * t)))
    assert get_lr(warmup, cfg, total) == pytest.approx(lr)
    assert get_lr(60, cfg, total) == pytest.approx((lr + lo) / 2)     # half way: the mean
    assert get_lr(total, cfg, total) == pytest.approx(lo, abs=1e-15)
    assert get_lr(total + 50, cfg, total) == pytest.approx(lo, abs=1e-15)  # held past the budget


@pytest.mark.parametrize("floor", [0.0, 0.25])
def test_linear_decays_in_equal_steps_to_the_floor(floor):
    lr, warmup, total = 4e-3, 0, 8
    cfg = sched("linear", lr, warmup, floor)
    lo = floor * lr
    got = [get_lr(s, cfg, total) for s in range(total + 3)]
    want = [lr + (lo - lr) * min(1, s / total) for s in range(total + 3)]
    assert got == pytest.approx(want, abs=1e-15)
    assert got[-1] == pytest.approx(lo, abs=1e-15) and got[0] == lr


def test_a_one_step_decay_reaches_the_floor_in_one_step():
    cfg = sched("linear", lr=1.0, warmup=3, min_lr_frac=0.5)
    assert get_lr(3, cfg, 4) == 1.0 and get_lr(4, cfg, 4) == 0.5
    assert get_lr(3, cfg, 3) == 1.0   # a budget no longer than the warm-up: no division by zero


def test_a_run_logs_the_scheduled_lr_and_its_optimiser_steps_with_it(tmp_path):
    """A cosine schedule with warm-up and a floor in a real run: every logged lr is get_lr's, the
    last one (at train.steps) is the floor; and the optimiser uses it: the first update, at lr 0,
    leaves the weights (decay included) unchanged."""
    import groklab
    cfg = groklab.resolve("default", overrides=[
        "task.p=13", "task.frac=0.5", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32",
        "optim.schedule=cosine", "optim.warmup=4", "optim.min_lr_frac=0.1", "optim.lr=0.01",
        "train.steps=24", "train.eval_every=1", "train.n_checkpoints=0", "train.stop_threshold=0"])
    run = groklab.run(cfg, out=tmp_path / "r", progress=False, report=False)
    lrs = [r["lr"] for r in run.metrics]
    assert lrs == pytest.approx([get_lr(s, cfg.optim, 24) for s in range(25)])
    assert lrs[0] == 0 and lrs[4] == pytest.approx(0.01) and lrs[-1] == pytest.approx(0.001)
    norms = [r["weight_norm"] for r in run.metrics]
    assert norms[1] == norms[0] and norms[2] != norms[1]


def test_set_lr_sets_every_parameter_group():
    import torch

    from groklab.train.optim import set_lr
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 5.0}], lr=1.0)
    set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_build_optimizer_passes_every_setting_on(name):
    import torch

    from groklab.config import RunConfig
    from groklab.train.optim import build_optimizer
    o = RunConfig().optim
    o.name, o.lr, o.wd, o.beta1, o.beta2, o.eps, o.momentum = name, 0.02, 0.3, 0.8, 0.95, 1e-6, 0.7
    opt = build_optimizer([torch.nn.Parameter(torch.ones(3))], o)
    g = opt.param_groups[0]
    assert (g["lr"], g["weight_decay"]) == (0.02, 0.3)
    if name == "sgd":
        assert type(opt) is torch.optim.SGD and g["momentum"] == 0.7
    else:
        assert type(opt) is {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[name]
        assert (g["betas"], g["eps"], g["fused"]) == ((0.8, 0.95), 1e-6, True)   # fused on CPU


def test_adamw_decays_decoupled_and_adam_and_sgd_coupled():
    """One step with a zero loss gradient: AdamW (Loshchilov & Hutter) shrinks w by (1 - lr wd)
    exactly; Adam and SGD see wd·w as the gradient (coupled L2): Adam moves each weight by lr
    towards 0 (m / sqrt(v) = sign), SGD by lr·wd·w."""
    import torch

    from groklab.config import RunConfig
    from groklab.train.optim import build_optimizer
    moved = {}
    for name in ("adamw", "adam", "sgd"):
        o = RunConfig().optim
        o.name, o.lr, o.wd, o.eps = name, 0.1, 0.5, 1e-12
        w = torch.nn.Parameter(torch.tensor([2.0, -4.0], dtype=torch.float64))
        opt = build_optimizer([w], o)
        w.grad = torch.zeros_like(w)
        opt.step()
        moved[name] = w.detach()
    torch.testing.assert_close(moved["adamw"], torch.tensor([2.0, -4.0], dtype=torch.float64) * (1 - 0.1 * 0.5))
    torch.testing.assert_close(moved["adam"], torch.tensor([1.9, -3.9], dtype=torch.float64))
    torch.testing.assert_close(moved["sgd"], torch.tensor([2.0 - 0.1, -4.0 + 0.2], dtype=torch.float64))


def test_an_unknown_optimiser_is_named():
    import torch

    from groklab.train.optim import build_optimizer
    with pytest.raises(ValueError, match="^unknown optim.name 'lion'; allowed: adamw, adam, sgd, muon$"):
        build_optimizer([torch.nn.Parameter(torch.ones(1))], SimpleNamespace(name="lion"))
