"""TARNet on Nie & Wager's synthetic setups (issue 14 part 5, Samothrakis et al. 2022): the
generator against the paper's formulas, the model's definition (one shared representation, two
heads, a factual-only objective, PEHE), bad input, and a small run through the loop."""
import math

import numpy as np
import pytest
import torch

import groklab
from groklab.cli import main
from groklab.models import TARNet, build_model
from groklab.runs.rundir import read_jsonl
from groklab.sweep.ensemble import unsupported
from groklab.tasks import build_task, nie_wager

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["task.n_samples=400", "task.covariates=5", "model.hidden=32,32", "model.head_hidden=16",
         "train.steps=100", "train.batch_size=0", "train.eval_every=10", "optim.lr=3e-3"]


def _paper(setup, X):
    """b, e, τ of Nie & Wager (2021) §6, written from the paper, 1-based X1..X5 as there."""
    X1, X2, X3, X4, X5 = (X[:, i] for i in range(5))
    if setup == "A":
        s = np.sin(math.pi * X1 * X2)
        return s + 2 * (X3 - 0.5) ** 2 + X4 + 0.5 * X5, np.minimum(np.maximum(s, 0.1), 0.9), (X1 + X2) / 2
    if setup == "B":
        return (np.max(np.stack([X1 + X2, X3, 0 * X1]), 0) + np.maximum(X4 + X5, 0), 0.5 + 0 * X1,
                X1 + np.log(1 + np.exp(X2)))
    if setup == "C":
        return 2 * np.log(1 + np.exp(X1 + X2 + X3)), 1 / (1 + np.exp(X2 + X3)), 1 + 0 * X1
    return ((np.maximum(0, X1 + X2 + X3) + np.maximum(X4 + X5, 0)) / 2, 1 / (1 + np.exp(-X1) + np.exp(-X2)),
            np.maximum(0, X1 + X2 + X3) - np.maximum(X4 + X5, 0))


@pytest.mark.parametrize("setup", ["A", "B", "C", "D"])
def test_the_generator_is_nie_and_wagers_setup(setup):
    n, sigma = 20_000, 0.7
    d = nie_wager(setup, n, 8, sigma, seed=3)
    X = d["X"]
    assert X.shape == (n, 8)
    if setup == "A":
        assert X.min() >= 0 and X.max() <= 1 and abs(X.mean() - 0.5) < 0.01
    else:
        assert abs(X.mean()) < 0.01 and abs(X.std() - 1) < 0.01
    b, e, tau = _paper(setup, X)
    np.testing.assert_allclose(d["b"], b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d["e"], e, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d["tau"], tau, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d["mu1"] - d["mu0"], tau, atol=1e-12)
    np.testing.assert_allclose((d["mu0"] + d["mu1"]) / 2, b, atol=1e-12)
    # W ~ Bernoulli(e): overall rate and the rate among high-propensity units, within 5 SE
    w = d["w"]
    assert set(np.unique(w)) <= {0.0, 1.0}
    assert abs(w.mean() - e.mean()) < 5 * math.sqrt(0.25 / n)
    hi = e > np.median(e) if setup != "B" else X[:, 0] > 0   # B: a constant ½, whatever X is
    assert abs(w[hi].mean() - e[hi].mean()) < 5 * math.sqrt(0.25 / hi.sum())
    # Y = b + (W − ½)τ + σε, ε ~ N(0, 1) independent of the rest
    eps = (d["y"] - b - (w - 0.5) * tau) / sigma
    assert abs(eps.mean()) < 0.03 and abs(eps.std() - 1) < 0.03 and abs(np.corrcoef(eps, w)[0, 1]) < 0.03
    again = nie_wager(setup, n, 8, sigma, seed=3)
    assert all(np.array_equal(again[k], d[k]) for k in d)
    assert not np.array_equal(nie_wager(setup, n, 8, sigma, seed=4)["X"], X)


def test_the_task_carries_outcome_treatment_and_both_potential_outcomes():
    cfg = groklab.resolve("tarnet")
    task = build_task(cfg.task)
    assert (task.n_train, task.n_val, task.d_in, task.kind) == (700, 300, 10, "vectors")
    d = nie_wager("D", 1000, 10, 1.0, seed=cfg.task.split_seed)
    idx = task.meta["train_idx"]
    y = task.y_train.double().numpy()
    np.testing.assert_allclose(task.x_train.double().numpy(), d["X"][idx], rtol=1e-6, atol=1e-6)
    for col, key in enumerate(("y", "w", "mu0", "mu1")):
        np.testing.assert_allclose(y[:, col], d[key][idx], rtol=1e-5, atol=1e-5)
    # the factual outcome is the treated arm's potential outcome plus noise
    arm = np.where(y[:, 1] == 1, y[:, 3], y[:, 2])
    assert 0.8 < np.std(y[:, 0] - arm) < 1.2


def test_the_preset_is_a_large_batch_long_tarnet_run():
    cfg = groklab.resolve("tarnet")
    t, m, o, tr = cfg.task, cfg.model, cfg.optim, cfg.train
    assert (t.name, t.setup, t.n_samples, t.covariates, t.noise, t.frac) == ("causal", "D", 1000, 10, 1.0, 0.7)
    assert (m.arch, m.hidden, m.head_hidden, m.tol) == ("tarnet", [200] * 3, [100] * 2, 0.1)
    assert (o.name, o.lr, o.wd, tr.batch_size, tr.steps) == ("adamw", 1e-3, 1.0, 256, 20_000)


def _model(seed=0):
    return TARNet(d_in=5, hidden=[16, 12], head_hidden=[8], tol=0.1, seed=seed)


def test_two_heads_read_one_shared_representation():
    m = _model()
    n_params = sum(p.numel() for p in m.parameters())
    rep = (5 * 16 + 16) + (16 * 12 + 12)
    head = (12 * 8 + 8) + (8 * 1 + 1)
    assert n_params == rep + 2 * head
    x = torch.randn(30, 5)
    out = m(x)
    assert out.shape == (30, 2)
    with torch.no_grad():
        m.heads[0][-1].bias.add_(1.0)           # arm 0's head moves column 0 only
    out2 = m(x)
    assert torch.allclose(out2[:, 0], out[:, 0] + 1) and torch.equal(out2[:, 1], out[:, 1])
    with torch.no_grad():
        m.rep[0].weight.mul_(1.5)               # the representation moves both
    out3 = m(x)
    assert not torch.allclose(out3[:, 0], out2[:, 0]) and not torch.allclose(out3[:, 1], out2[:, 1])
    # the whole forward by hand: Φ = ELU layers on x (the hook reads it), each head ELU layers on Φ
    elu = torch.nn.functional.elu
    with torch.no_grad():
        phi = elu(m.rep[1](elu(m.rep[0](x))))
        _, cache = m.run_with_cache(x)
        assert torch.allclose(cache["hook_rep"], phi, atol=1e-6)
        for arm, head in enumerate(m.heads):
            assert torch.allclose(head[1](elu(head[0](phi)))[:, 0], out3[:, arm], atol=1e-6)


def _y(n, g):
    w = (torch.rand(n, generator=g) < 0.4).float()
    return torch.stack([torch.randn(n, generator=g), w, torch.randn(n, generator=g),
                        torch.randn(n, generator=g)], 1)


def _loss_and_grads(m, x, y):
    m.zero_grad()
    loss = m.objective(m(x), y)
    loss.backward()
    return float(loss.detach()), {k: p.grad.clone() for k, p in m.named_parameters()}


def test_the_objective_is_the_factual_mse_and_ignores_the_counterfactual():
    g = torch.Generator().manual_seed(0)
    m, x = _model(), torch.randn(40, 5, generator=g)
    y = _y(40, g)
    loss, grads = _loss_and_grads(m, x, y)
    with torch.no_grad():
        out = m(x)
    want = torch.where(y[:, 1] == 1, out[:, 1], out[:, 0]) - y[:, 0]
    assert loss == pytest.approx(float((want ** 2).mean()), rel=1e-6)
    y2 = y.clone()
    y2[:, 2:] = torch.randn(40, 2, generator=g) * 100   # other potential outcomes: any values
    loss2, grads2 = _loss_and_grads(m, x, y2)
    assert loss2 == loss and all(torch.equal(grads[k], grads2[k]) for k in grads)
    # with every unit treated, arm 0's head gets no gradient at all
    y3 = y.clone()
    y3[:, 1] = 1
    _, grads3 = _loss_and_grads(m, x, y3)
    assert all(float(grads3[k].abs().max()) == 0 for k in grads3 if k.startswith("heads.0."))
    assert all(float(grads3[k].abs().max()) > 0 for k in grads3 if not k.startswith("heads.0."))


def test_pehe_ate_error_and_correct_are_the_hand_computations():
    m = _model()
    out = torch.tensor([[0.0, 1.0], [1.0, 1.5], [2.0, 1.0], [0.0, 0.0]])     # τ̂ = 1, .5, −1, 0
    y = torch.tensor([[9.0, 1, 0.0, 1.05], [9.0, 0, 1.0, 2.0], [9.0, 1, 0.0, 0.0], [9.0, 0, 3.0, 2.95]])
    tau_hat, tau = np.array([1, 0.5, -1, 0]), np.array([1.05, 1.0, 0.0, -0.05])
    got = m.metrics(out, y)
    assert float(got["pehe"]) == pytest.approx(math.sqrt(np.mean((tau_hat - tau) ** 2)), rel=1e-6)
    assert float(got["ate_error"]) == pytest.approx(abs(tau_hat.mean() - tau.mean()), rel=1e-6)
    assert m.correct(out, y).tolist() == [True, False, False, True]          # |τ̂ − τ| < 0.1


@pytest.mark.parametrize("sets, needle", [
    (["task.setup=E"], "task.setup='E' is not one of"),
    (["task.covariates=3"], "task.covariates=3 is out of range"),
    (["model.arch=mlp"], "task.name='causal' and model.arch='tarnet' go together"),
    (["task.label_noise=5"], "task.label_noise applies to class labels"),
    (["task.n_samples=1000000", "task.covariates=100"], "at most 50,000,000 allowed"),
    (["model.head_hidden=0"], "model.head_hidden"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_on_disk(tmp_path, capsys, sets, needle):
    out = tmp_path / "r"
    code = main(["run", "--preset", "tarnet", "--quiet", "--out", str(out),
                 *[a for kv in sets for a in ("--set", kv)]])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("groklab: error: ") and err.count("\n") == 1, err
    assert needle in err, err
    assert not out.exists()


def test_a_small_run_trains_through_the_loop_and_val_pehe_falls(tmp_path):
    cfg = groklab.resolve("tarnet", overrides=SMALL)
    assert unsupported(cfg) is not None                  # sweeps run it as single runs
    run = groklab.run(cfg, out=tmp_path / "t", report=False)
    assert isinstance(run.model, TARNet) and isinstance(build_model(cfg, run.task), TARNet)
    recs = read_jsonl(run.dir / "metrics.jsonl")
    assert {"train_pehe", "val_pehe", "train_ate_error", "val_ate_error"} <= set(recs[-1])
    first, last = recs[0], recs[-1]
    assert last["train_loss"] < 0.6 * first["train_loss"]
    assert last["val_pehe"] < 0.6 * first["val_pehe"]
    assert last["val_acc"] > first["val_acc"]
    s = run.summary
    assert s["status"] == "completed" and s["steps_done"] == 100 and s["cost"]["flops_per_step"] > 0
