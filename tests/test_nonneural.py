"""Grokking without neural networks (Miller, O'Neill, Bui 2024, arXiv 2310.17247): the concealed
tasks, the GP / linear / Bayesian models' definitions, and small runs that show the effect."""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import groklab
from groklab.cli import main
from groklab.config import resolve
from groklab.models import build_model
from groklab.tasks import build_task, concealed_modular_task, concealed_parity_task

gpytorch = pytest.importorskip("gpytorch")

# a GP that groks in seconds: 3 parity bits among 20, 200 training points, Adam lr 0.05
SMALL_GP = ["task.n_concealed=17", "task.n_train=200", "task.n_val=100", "task.split_seed=0",
            "train.seed=0", "optim.lr=0.05", "train.steps=40"]


def _metrics(d) -> list[dict]:
    return [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]


def _no_time(rows):
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


# ---- tasks -----------------------------------------------------------------------------------

def test_concealed_parity_labels_are_the_parity_of_the_first_k_bits():
    t = concealed_parity_task(k=3, n_concealed=37, n_train=1000, n_val=100, seed=42)
    assert t.x_train.shape == (1000, 40) and t.x_val.shape == (100, 40) and t.d_in == 40
    x = torch.cat([t.x_train, t.x_val])
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(torch.cat([t.y_train, t.y_val]), x[:, :3].long().sum(1) % 2)
    assert 0.4 < t.y_train.float().mean() < 0.6
    again = concealed_parity_task(3, 37, 1000, 100, 42)
    assert torch.equal(again.x_train, t.x_train) and torch.equal(again.y_val, t.y_val)


def test_concealed_modular_rows_are_one_hot_pairs_plus_random_bits():
    t = concealed_modular_task("x+y", 7, n_concealed=10, n_train=600, n_val=200, seed=0)
    assert t.x_train.shape == (600, 24) and t.n_classes == 7
    x, y = torch.cat([t.x_train, t.x_val]), torch.cat([t.y_train, t.y_val])
    a, b = x[:, :7].argmax(1), x[:, 7:14].argmax(1)
    assert torch.equal(x[:, :14].sum(1), torch.full((800,), 2.0))
    assert torch.equal(y, (a + b) % 7)
    assert len(set(zip(a.tolist(), b.tolist()))) == 49  # drawn with replacement from all 49 pairs


def test_sine_and_line_tasks():
    cfg = resolve("gp-regression")
    t = build_task(cfg.task)
    assert t.x_train.shape == (50, 1) and t.n_val == 50 and t.y_train.is_floating_point()
    resid = torch.cat([t.y_train - torch.sin(2 * t.x_train[:, 0]), t.y_val - torch.sin(2 * t.x_val[:, 0])])
    assert 0.07 < float(resid.std()) < 0.13  # N(0, 0.1²) noise
    assert float(t.x_train.abs().max()) <= 1.5
    t = build_task(resolve("linear-prior").task)
    assert t.n_train == 2 and t.n_val == 98
    assert torch.allclose(t.y_val, 0.3 * t.x_val[:, 0])


# ---- model definitions -----------------------------------------------------------------------

def test_gp_classifier_is_the_papers_variational_gp_and_its_objective_is_minus_the_elbo():
    from gpytorch.kernels import RBFKernel, ScaleKernel
    from gpytorch.variational import CholeskyVariationalDistribution, UnwhitenedVariationalStrategy
    cfg = resolve("gp-parity", overrides=["task.n_train=120", "task.n_val=30"])
    task = build_task(cfg.task)
    m = build_model(cfg, task)
    k = m.gp.covar_module
    assert isinstance(k, ScaleKernel) and isinstance(k.base_kernel, RBFKernel)
    assert k.base_kernel.ard_num_dims == 40 and k.base_kernel.lengthscale.shape == (1, 40)
    assert isinstance(m.gp.mean_module, gpytorch.means.ConstantMean)
    assert isinstance(m.likelihood, gpytorch.likelihoods.BernoulliLikelihood)
    vs = m.gp.variational_strategy
    assert isinstance(vs, UnwhitenedVariationalStrategy)
    assert isinstance(vs._variational_distribution, CholeskyVariationalDistribution)
    assert torch.equal(vs.inducing_points, task.x_train)
    names = dict(m.named_parameters())
    assert not any("inducing" in n for n in names) and not vs.inducing_points.requires_grad
    assert sorted(n.split(".")[-1] for n in names) == sorted(
        ["variational_mean", "chol_variational_covar", "raw_constant", "raw_outputscale", "raw_lengthscale"])
    # move off the initial point so the KL term is not ~0
    with torch.no_grad():
        k.base_kernel.raw_lengthscale.add_(torch.linspace(-1, 1, 40))
        vs._variational_distribution.variational_mean.add_(0.3)
    m.train()
    x, y = task.x_train, task.y_train
    elbo = gpytorch.mlls.VariationalELBO(m.likelihood, m.gp, num_data=len(y))
    with gpytorch.settings.max_cholesky_size(10**6), torch.no_grad():
        want = -elbo(m.gp(x), y.float())
        fit, kl, _ = gpytorch.mlls.VariationalELBO(m.likelihood, m.gp, num_data=len(y),
                                                   combine_terms=False)(m.gp(x), y.float())
    with torch.no_grad():
        out = m(x)
        got = m.objective(out, y)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    extra = m.metrics(out, y)
    assert math.isclose(float(extra["data_fit"]), float(fit), rel_tol=1e-5)
    assert math.isclose(float(extra["complexity"]), float(kl), rel_tol=1e-5) and float(kl) > 1e-3
    inv = 1 / k.base_kernel.lengthscale.detach()[0]
    assert math.isclose(float(extra["inv_ls_parity"]), float(inv[:3].mean()), rel_tol=1e-6)
    assert math.isclose(float(extra["inv_ls_noise"]), float(inv[3:].mean()), rel_tol=1e-6)
    # an evaluation reuses the KL term only while no parameter has changed
    with torch.no_grad():
        vs._variational_distribution.variational_mean.mul_(2.0)
        assert float(m.metrics(m(x), y)["complexity"]) > 1.5 * float(kl)
    # right = predictive p(y=1) >= 0.5, the authors' rule
    with torch.no_grad():
        p1 = m.likelihood(m.gp(x)).mean
    assert torch.equal(m.correct(out, y), p1.ge(0.5).long() == y)


def test_gp_objective_is_exact_above_gpytorchs_cholesky_limit():
    """900 inducing points (GPyTorch's default would switch to CG with random probes above 800):
    the objective draws no random numbers and repeats bit for bit."""
    cfg = resolve("gp-parity", overrides=["task.n_concealed=5", "task.n_train=900", "task.n_val=10"])
    task = build_task(cfg.task)
    m = build_model(cfg, task)
    rng = torch.get_rng_state()
    with torch.no_grad():
        a = m.objective(m(task.x_train), task.y_train)
        m._kl_cache = None
        b = m.objective(m(task.x_train), task.y_train)
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), rng)


def test_gp_regression_objective_is_minus_the_exact_marginal_likelihood():
    cfg = resolve("gp-regression")
    task = build_task(cfg.task)
    m = build_model(cfg, task)
    ls = m.gp.covar_module.base_kernel.lengthscale.detach()
    assert math.isclose(float(ls), 1e-3, rel_tol=1e-4)
    assert isinstance(m.gp.covar_module, gpytorch.kernels.ScaleKernel)
    assert isinstance(m.likelihood, gpytorch.likelihoods.GaussianLikelihood)
    with torch.no_grad():
        m.gp.covar_module.base_kernel.raw_lengthscale.fill_(0.3)  # a correlated, non-trivial K
    m.train()
    x, y = task.x_train, task.y_train
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(m.likelihood, m.gp)
    with torch.no_grad():
        want = -mll(m.gp(x), y)
        got = m.objective(m(x), y)
    assert torch.allclose(got, want, rtol=1e-5)
    fit, complexity = m.mll_terms()  # log N(y; m, C) = fit + complexity − ½ log 2π, per point
    assert math.isclose(float(fit + complexity) - 0.5 * math.log(2 * math.pi), -float(got), rel_tol=1e-4)
    m.eval()
    with torch.no_grad():
        out = m(task.x_val)  # posterior mean and variance of f
        post = m.gp(task.x_val)
    assert torch.allclose(out[:, 0], post.mean) and torch.allclose(out[:, 1], post.variance)
    assert torch.equal(m.correct(out, task.y_val), (post.mean - task.y_val).abs() < 0.2)


def test_linear_model_features_and_prior_term_by_hand():
    cfg = resolve("linear-prior")
    task = build_task(cfg.task)
    m = build_model(cfg, task)
    assert torch.equal(m.w.detach(), torch.tensor([[0.0005, 0.9, 0.9, 0.9]]))
    x = torch.tensor([[0.2], [-0.1]])
    y = torch.tensor([0.06, -0.03])
    w = [0.0005, 0.9, 0.9, 0.9]
    pred = [w[0] * v + w[1] * v ** 2 + w[2] * v ** 3 + w[3] * math.sin(100 * v) for v in (0.2, -0.1)]
    out = m(x).detach()
    assert torch.allclose(out[:, 0], torch.tensor(pred), atol=1e-6)
    sse = sum((p - t) ** 2 for p, t in zip(pred, (0.06, -0.03)))
    prior = sum(v ** 2 for v in w) / 0.5 / 2          # Σ w² / τ² / N_train (N_train = 2)
    assert math.isclose(float(m.objective(out, y).detach()), sse / 0.002 / 2 + prior, rel_tol=1e-5)
    assert m.correct(out, y).tolist() == [pred[0] > 0, pred[1] <= 0]


def test_bnn_kl_is_the_closed_form_gaussian_kl():
    from torch.distributions import Normal, kl_divergence
    cfg = resolve("bnn-parity")
    task = build_task(cfg.task)
    m = build_model(cfg, task)
    with torch.no_grad():
        m.l1.log_std.uniform_(-3, 0)
        m.l2.mu.normal_()
    want = sum(kl_divergence(Normal(layer.mu, layer.log_std.exp()), Normal(0.0, 1.0)).sum()
               for layer in (m.l1, m.l2))
    assert torch.allclose(m.kl().detach(), want.detach(), rtol=1e-5)
    assert m.l1.mu.shape == (31, 200) and m.l2.mu.shape == (201, 2)  # 30 -> 200 -> 2, bias rows
    m.eval()  # evaluation: the mean network, no random draws
    x = task.x_val
    with torch.no_grad():
        out = m(x)
        mean_net = torch.relu(torch.cat([x, torch.ones(len(x), 1)], 1) @ m.l1.mu) @ m.l2.mu[:-1] + m.l2.mu[-1]
        assert torch.equal(out, mean_net)
        assert torch.allclose(m.objective(out, task.y_val),
                              torch.nn.functional.cross_entropy(out, task.y_val) + want / 600, rtol=1e-5)


# ---- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("sets, needle", [
    (["task.n_concealed=5000"], "task.n_concealed"),
    (["task.n_concealed=-1"], "task.n_concealed"),
    (["task.name=modular"], "model.arch='gp' needs task.name"),
    (["task.n_train=4000"], "task.n_train"),
])
def test_bad_settings_are_one_line_exit_2(tmp_path, capsys, sets, needle):
    args = ["run", "--preset", "gp-parity", "--out", str(tmp_path / "r"), "--quiet", "--set", "train.steps=1"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_sweep_ensembles_refuse_the_nonneural_models():
    from groklab.sweep.ensemble import unsupported
    for name in ("gp-parity", "gp-regression", "linear-prior", "bnn-parity"):
        assert "model.arch" in unsupported(resolve(name, overrides=["optim.name=adamw"])), name
    assert unsupported(resolve("concealment")) is not None  # sgd; the MLP itself is fine


# ---- runs ------------------------------------------------------------------------------------

def test_a_small_gp_memorises_at_once_then_groks_and_its_parity_lengthscales_shrink(tmp_path):
    """Train accuracy 1.0 by step 2, validation near chance for 10 steps, then ≥ 0.9; the
    parity bits' inverse lengthscales end far above the concealing bits'."""
    r = groklab.run(resolve("gp-parity", overrides=SMALL_GP), out=tmp_path / "gp", report=False)
    rows = {x["step"]: x for x in _metrics(tmp_path / "gp")}
    assert r.summary["status"] == "completed"
    assert r.summary["memorized_at"]["0.99"] <= 2
    assert max(rows[s]["val_acc"] for s in range(0, 11)) < 0.75
    assert 10 < r.summary["generalized_at"]["0.9"] <= 40
    first, last = rows[0], rows[40]
    assert first["train_inv_ls_parity"] == pytest.approx(first["train_inv_ls_noise"], rel=1e-3)
    assert last["train_inv_ls_parity"] > 3 * last["train_inv_ls_noise"]
    assert last["train_complexity"] > first["train_complexity"]  # the KL term grows as it groks
    assert r.summary["cost"]["flops"] is None and "meta device" in r.summary["cost"]["flops_note"]


def test_a_gp_run_resumes_exactly(tmp_path):
    over = SMALL_GP[:-1] + ["task.n_train=60", "task.n_val=20"]
    groklab.run(resolve("gp-parity", overrides=over + ["train.steps=8"]), out=tmp_path / "one", report=False)
    groklab.run(resolve("gp-parity", overrides=over + ["train.steps=4"]), out=tmp_path / "two", report=False)
    assert main(["run", "--resume", str(tmp_path / "two"), "--set", "train.steps=8", "--quiet"]) == 0
    w1 = load_file(str(tmp_path / "one/checkpoints/step_00000008/model.safetensors"))
    w2 = load_file(str(tmp_path / "two/checkpoints/step_00000008/model.safetensors"))
    assert w1.keys() == w2.keys() and any("chol_variational_covar" in k for k in w1)
    for k in w1:
        assert torch.equal(w1[k], w2[k]), k
    assert _no_time(_metrics(tmp_path / "one")) == _no_time(_metrics(tmp_path / "two"))


@pytest.mark.parametrize("name, steps", [("gp-regression", 60), ("linear-prior", 1500)])
def test_regression_runs_fit_first_and_generalize_later(tmp_path, name, steps):
    """Exact GP (lengthscale 1e-3 at the start) and the linear model with spurious features:
    training accuracy leads validation accuracy; data-fit and complexity terms are logged."""
    r = groklab.run(resolve(name, overrides=[f"train.steps={steps}"]), out=tmp_path / "r", report=False)
    mem, gen = r.summary["memorized_at"]["0.9"], r.summary["generalized_at"]["0.9"]
    assert mem is not None and gen is not None and gen > mem + 5
    rows = _metrics(tmp_path / "r")
    assert {"train_data_fit", "train_complexity"} <= rows[-1].keys()


def test_bnn_and_concealment_presets_run(tmp_path):
    for name in ("bnn-parity", "concealment"):
        r = groklab.run(resolve(name, overrides=["train.steps=36"]), out=tmp_path / name, report=False)
        assert r.summary["status"] == "completed" and r.summary["steps_done"] == 36
    rows = _metrics(tmp_path / "bnn-parity")
    assert rows[-1]["train_complexity"] < rows[0]["train_complexity"]  # SGD pulls q toward p first
