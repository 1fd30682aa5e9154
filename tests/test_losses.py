"""Losses: float64 cross-entropy, StableMax (Prieto et al. 2025), MSE, softmax collapse."""
import pytest
import torch
import torch.nn.functional as F

from groklab.accel.losses import (
    build_loss,
    collapse_fraction,
    cross_entropy,
    mse_onehot,
    stablemax,
    stablemax_cross_entropy,
    stablemax_s,
)


def logits_and_labels(seed=0, b=16, c=7, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(b, c, generator=g), torch.randint(0, c, (b,), generator=g)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_matches_torch_in_its_precision(dtype):
    z, y = logits_and_labels()
    want = F.cross_entropy(z.to(getattr(torch, dtype)), y)
    got = cross_entropy(z, y, dtype)
    assert got.dtype == getattr(torch, dtype)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_gradient_is_bit_for_bit_the_gather_and_mean_one(dtype):
    """The training step only sees the gradient: it must equal, bit for bit, that of
    -mean(log_softmax(z)[y]) (the form runs were recorded with), so recorded runs replay."""
    z, y = logits_and_labels(b=3830, c=113)
    z.requires_grad_(True)
    (ours,) = torch.autograd.grad(cross_entropy(z, y, dtype), z)
    logp = z.to(getattr(torch, dtype)).log_softmax(-1)
    (want,) = torch.autograd.grad(-logp.gather(-1, y[:, None]).mean(), z)
    assert torch.equal(ours, want)


def test_stablemax_s_at_known_points_and_smooth_at_zero():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.5], dtype=torch.float64, requires_grad=True)
    s = stablemax_s(x)
    torch.testing.assert_close(s.detach(), torch.tensor([0.25, 0.5, 1.0, 2.0, 3.5], dtype=torch.float64))
    (d,) = torch.autograd.grad(s.sum(), x)
    # s'(x) = 1 / (1 - x)^2 below zero, 1 above: both equal 1 at zero
    torch.testing.assert_close(d, torch.tensor([1 / 16, 1 / 4, 1.0, 1.0, 1.0], dtype=torch.float64))
    far = torch.tensor([-1e30], dtype=torch.float64, requires_grad=True)  # no inf/nan in the gradient
    (d,) = torch.autograd.grad(stablemax_s(far).sum(), far)
    assert torch.isfinite(d).all()


def test_stablemax_is_a_distribution_and_its_loss_is_minus_log_of_it():
    z, y = logits_and_labels(1, scale=50.0)
    p = stablemax(z)
    assert p.dtype == torch.float64 and (p > 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(len(z), dtype=torch.float64))
    want = -p.gather(-1, y[:, None]).log().mean()
    torch.testing.assert_close(stablemax_cross_entropy(z, y), want)
    # a hand-computed case: z = [0, 1, -1] -> s = [1, 2, 0.5] -> p = [1, 2, 0.5] / 3.5
    got = stablemax_cross_entropy(torch.tensor([[0.0, 1.0, -1.0]]), torch.tensor([1]))
    assert float(got) == pytest.approx(-torch.log(torch.tensor(2 / 3.5, dtype=torch.float64)).item())


def test_stablemax_does_not_collapse_where_float32_softmax_does():
    """Prieto et al. 2025, §3: with a logit gap of 30 every exp(z_j - max) underflows next to 1 in
    float32: the CE loss and the gradient on the correct logit are exactly 0; StableMax keeps both."""
    z = torch.zeros(4, 113)
    y = torch.arange(4)
    z[torch.arange(4), y] = 30.0
    assert collapse_fraction(z, "float32") == 1.0
    assert collapse_fraction(z, "float64") == 0.0
    z32 = z.clone().requires_grad_(True)
    loss32 = cross_entropy(z32, y, "float32")
    assert float(loss32.detach()) == 0.0
    (g32,) = torch.autograd.grad(loss32, z32)
    assert float(g32[torch.arange(4), y].abs().max()) == 0.0
    zs = z.clone().requires_grad_(True)
    loss = stablemax_cross_entropy(zs, y)
    (gs,) = torch.autograd.grad(loss, zs)
    assert float(loss.detach()) > 0 and float(gs[torch.arange(4), y].abs().min()) > 0


def test_mse_onehot_is_zero_at_the_target_and_sums_over_classes():
    y = torch.tensor([0, 2, 1])
    target = F.one_hot(y, 4).float()
    assert float(mse_onehot(target, y)) == 0.0
    assert float(mse_onehot(target + 0.5, y)) == pytest.approx(4 * 0.25)
    # computed in the named precision (Omnigrok's recipe: float64), whatever the logits' dtype
    assert mse_onehot(target, y, "float64").dtype == torch.float64
    assert mse_onehot(target.double(), y, "float32").dtype == torch.float32


def test_build_loss_dispatches_and_rejects_unknown_names():
    z, y = logits_and_labels(2)
    torch.testing.assert_close(build_loss("stablemax", "float64")(z, y), stablemax_cross_entropy(z, y))
    torch.testing.assert_close(build_loss("ce", "float32")(z, y), cross_entropy(z, y, "float32"))
    with pytest.raises(ValueError, match="unknown train.loss 'hinge'; allowed: ce, stablemax, mse"):
        build_loss("hinge", "float64")


def test_default_precisions_are_float64_loss_and_float32_collapse_test():
    """Nanda's cross_entropy_high_precision computes in float64; the collapse test asks whether
    float32 (the training precision) has rounded every other class away."""
    z, y = logits_and_labels(2)
    assert cross_entropy(z.float(), y).dtype == torch.float64
    margin = torch.tensor([[0.0, -20.0], [0.0, -1.0]])   # exp(-20) ~ 2e-9 < float32's eps / 2
    assert collapse_fraction(margin) == 0.5 and collapse_fraction(margin, "float64") == 0.0
