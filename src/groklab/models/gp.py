"""Gaussian processes that grok (Miller, O'Neill, Bui 2024, "Grokking without neural
networks", arXiv 2310.17247), built from GPyTorch's pieces as the authors' code does.

* ``GPClassifier`` (``model.arch = "gp"``): variational GP classification. Inducing points =
  the training inputs, fixed; Cholesky variational distribution, unwhitened strategy; constant
  mean; ScaleKernel(RBF) with one lengthscale per input; Bernoulli (probit) likelihood. The
  objective is the negative ELBO per training example,
  −ELBO/N = −(1/N) Σ E_q[log p(y_i | f_i)] + KL(q(u) ‖ p(u)) / N  (GPyTorch's VariationalELBO).
* ``GPRegressor`` (``model.arch = "gp-regression"``): exact GP regression, ScaleKernel(RBF),
  Gaussian likelihood, initial lengthscale 1e-3; objective the negative marginal
  log-likelihood per training point (GPyTorch's ExactMarginalLogLikelihood).

Both return a tensor from ``forward`` (the loop needs one): the latent f's marginal mean and
variance, (N, 2). In training mode the exact GP returns [mean | K + σ²I], (N, 1 + N), the
joint prior its marginal likelihood needs. Every Cholesky is exact: GPyTorch's default
switches to conjugate gradients with random probe vectors above 800 points (``EXACT``), which
would make the 1,000-point objective stochastic and a resume inexact.
"""
from __future__ import annotations

import gpytorch
import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import RBFKernel, ScaleKernel
from gpytorch.likelihoods import BernoulliLikelihood, GaussianLikelihood
from gpytorch.means import ConstantMean
from gpytorch.variational import CholeskyVariationalDistribution, UnwhitenedVariationalStrategy
from linear_operator.operators import DiagLinearOperator


def exact():
    """Cholesky for every matrix size (no CG / Lanczos, whose probes draw random numbers)."""
    return gpytorch.settings.max_cholesky_size(10**7)


class _SVGP(gpytorch.models.ApproximateGP):
    """The prior GP(c, s·RBF_ARD) and q(u) at fixed inducing points (the training inputs)."""

    def __init__(self, x_train: torch.Tensor):
        n, d = x_train.shape
        strategy = UnwhitenedVariationalStrategy(self, x_train.clone(), CholeskyVariationalDistribution(n),
                                                 learn_inducing_locations=False)
        super().__init__(strategy)
        self.mean_module = ConstantMean()
        self.covar_module = ScaleKernel(RBFKernel(ard_num_dims=d))

    def forward(self, x):
        return MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _bounds_not_saved(module: torch.nn.Module) -> None:
    """GPyTorch's positivity constraints keep their bounds (0, inf) as buffers; they are constants
    of the model's definition, not state, and an inf would read as a non-finite checkpoint."""
    for m in module.modules():
        if isinstance(m, gpytorch.constraints.Interval):
            m._non_persistent_buffers_set.update({"lower_bound", "upper_bound"})


def _marginals(out: torch.Tensor) -> MultivariateNormal:
    """(N, 2) [mean, variance] -> the independent Gaussians the Bernoulli likelihood integrates."""
    return MultivariateNormal(out[:, 0], DiagLinearOperator(out[:, 1]))


class GPClassifier(torch.nn.Module):
    """Variational GP binary classifier on the paper's settings; ``n_signal`` = how many of the
    first inputs carry the label (their inverse lengthscales are logged apart)."""

    def __init__(self, x_train: torch.Tensor, n_signal: int = 0, seed: int = 0):
        super().__init__()
        self.gp = _SVGP(x_train)
        self.likelihood = BernoulliLikelihood()
        self.num_data, self.n_signal = len(x_train), n_signal
        self._kl_cache = None
        _bounds_not_saved(self)
        # q(u) starts at the prior plus N(0, 1e-3²) on its mean (GPyTorch's rule), drawn here from
        # the seed so the model is a function of (data, seed) alone
        with torch.random.fork_rng(devices=[]), exact():
            torch.manual_seed(seed)
            self.gp(x_train[:1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with exact():
            f = self.gp(x)
            return torch.stack([f.mean, f.variance], -1)  # (N, 2)

    def kl(self) -> torch.Tensor:
        """KL(q(u) ‖ p(u)), the ELBO's complexity term (times N). An evaluation reuses it while
        no parameter has changed (it costs as much as a training step)."""
        key = tuple(p._version for p in self.parameters())
        if not torch.is_grad_enabled() and self._kl_cache is not None and self._kl_cache[0] == key:
            return self._kl_cache[1]
        with exact():
            kl = self.gp.variational_strategy.kl_divergence()
        self._kl_cache = None if torch.is_grad_enabled() else (key, kl)
        return kl

    def expected_log_lik(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """E_q[log p(y_i | f_i)] per example (Gauss-Hermite quadrature), (N,)."""
        return self.likelihood.expected_log_prob(y.to(out.dtype), _marginals(out))

    def objective(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """−ELBO per training example: −mean E_q[log p(y|f)] + KL / N_train."""
        return -self.expected_log_lik(out, y).mean() + self.kl() / self.num_data

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # p(y=1) = Φ(μ / sqrt(1 + σ²)) ≥ 0.5 exactly when μ ≥ 0 (the authors' .ge(0.5))
        return (out[:, 0] >= 0).long() == y

    def inverse_lengthscales(self) -> torch.Tensor:
        return 1 / self.gp.covar_module.base_kernel.lengthscale.detach().reshape(-1)  # (D,)

    @torch.no_grad()
    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict:
        inv = self.inverse_lengthscales()
        k = self.n_signal
        m = {"data_fit": self.expected_log_lik(out, y).mean(), "complexity": self.kl() / self.num_data,
             "outputscale": self.gp.covar_module.outputscale.detach()}
        if 0 < k < len(inv):
            m |= {"inv_ls_parity": inv[:k].mean(), "inv_ls_noise": inv[k:].mean(),
                  "inv_ls_noise_max": inv[k:].max()}
        return m


class _ExactGP(gpytorch.models.ExactGP):
    def __init__(self, x, y, likelihood):
        super().__init__(x, y, likelihood)
        self.mean_module = ConstantMean()
        self.covar_module = ScaleKernel(RBFKernel())

    def forward(self, x):
        return MultivariateNormal(self.mean_module(x), self.covar_module(x))


class GPRegressor(torch.nn.Module):
    """Exact GP regression conditioned on the task's training set (kept as buffers, so a run
    directory's weights hold the whole model). ``tol``: a prediction within ``tol`` of the
    target counts as right (groklab's rule: twice the task's noise σ; the paper reports MSE)."""

    def __init__(self, x_train: torch.Tensor, y_train: torch.Tensor, lengthscale: float = 1e-3,
                 tol: float = 0.2):
        super().__init__()
        self.register_buffer("x_train", x_train.clone())
        self.register_buffer("y_train", y_train.clone().float())
        self.gp = _ExactGP(self.x_train, self.y_train, GaussianLikelihood())
        self.gp.covar_module.base_kernel.lengthscale = lengthscale
        self.tol = tol
        _bounds_not_saved(self)

    @property
    def likelihood(self) -> GaussianLikelihood:  # held by the ExactGP only (one copy of σ² saved)
        return self.gp.likelihood

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with exact():
            if self.training:  # the prior of y at x: [mean | K + σ²I]
                p = self.likelihood(self.gp.forward(x))
                return torch.cat([p.mean[:, None], p.covariance_matrix], 1)  # (N, 1 + N)
            with gpytorch.settings.debug(False):  # evaluating at the training inputs is meant
                f = self.gp(x)  # the posterior of f at x given the training set
            return torch.stack([f.mean, f.variance], -1)  # (N, 2)

    def objective(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Training: −log N(y; m, K + σ²I) / N. Evaluation: the predictive Gaussian's mean
        negative log density of y (the posterior's variance plus σ²)."""
        y = y.to(out.dtype)
        if self.training:
            return -MultivariateNormal(out[:, 0], out[:, 1:]).log_prob(y) / len(y)
        var = out[:, 1] + self.likelihood.noise.reshape(())
        return (0.5 * (torch.log(2 * torch.pi * var) + (y - out[:, 0]) ** 2 / var)).mean()

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (out[:, 0] - y.to(out.dtype)).abs() < self.tol

    def mll_terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The marginal likelihood's data fit −½ yᵀ(K+σ²I)⁻¹y and complexity −½ log|K+σ²I|
        (centred on the mean), per training point."""
        with exact(), torch.no_grad():
            p = self.likelihood(self.gp.forward(self.x_train))
            r = (self.y_train - p.mean)[:, None]
            chol = torch.linalg.cholesky(p.covariance_matrix)
            fit = -0.5 * (torch.cholesky_solve(r, chol) * r).sum()
            return fit / len(r), -torch.log(torch.diagonal(chol)).sum() / len(r)

    @torch.no_grad()
    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict:
        fit, complexity = self.mll_terms()
        k = self.gp.covar_module
        return {"mse": ((out[:, 0] - y.to(out.dtype)) ** 2).mean(), "data_fit": fit,
                "complexity": complexity, "lengthscale": k.base_kernel.lengthscale.detach().reshape(()),
                "outputscale": k.outputscale.detach(), "noise": self.likelihood.noise.detach().reshape(())}
