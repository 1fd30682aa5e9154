"""Gradient transforms: each one's invariant over many steps, purity (no input modified),
differentiability, composition and checkpointable state."""
from collections import deque

import pytest
import torch

from groklab.accel.transforms import (
    build_transforms,
    chain,
    clip_by_global_norm,
    global_norm,
    grokfast_ema,
    grokfast_ma,
    identity,
    orthograd,
    project_weight_norm,
    scale_to_norm,
)
from groklab.config import RunConfig
from groklab.runs.checkpoint import flatten, unflatten

SHAPES = {"W_E": (7, 5), "b": (5,), "W_U": (5, 3, 2)}


def tensors(seed: int, dtype=torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g, dtype=dtype) for k, s in SHAPES.items()}


def copies(d):
    return {k: v.clone() for k, v in d.items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


ALL = {
    "ema": lambda: grokfast_ema(0.9, 2.0),
    "ma": lambda: grokfast_ma(4, 5.0),
    "orthograd": orthograd,
    "clip": lambda: clip_by_global_norm(0.5),
    "chain": lambda: chain(grokfast_ema(0.9, 2.0), orthograd(), clip_by_global_norm(0.5)),
}


@pytest.mark.parametrize("name", list(ALL))
def test_inputs_are_never_modified(name):
    tx = ALL[name]()
    params = tensors(0)
    state, state_ref = tx.init(params), tx.init(params)
    for step in range(10):
        grads = tensors(100 + step)
        g0, p0 = copies(grads), copies(params)
        out, state = tx.update(grads, state, params)
        assert_same(grads, g0)
        assert_same(params, p0)
        assert all(out[k].shape == grads[k].shape for k in grads) and out.keys() == grads.keys()
        # a caller that zeroes its .grad in place afterwards must not change the state
        out = copies(out)
        for g in grads.values():
            g.zero_()
        out_ref, state_ref = tx.update(g0, state_ref, params)
        assert_same(out, out_ref)


def test_grokfast_ema_matches_the_papers_update_rule():
    """Lee et al. 2024, Algorithm 2: mu starts at the first g; mu <- a mu + (1-a) g; g + lamb mu."""
    alpha, lamb = 0.98, 2.0
    tx = grokfast_ema(alpha, lamb)
    params = tensors(0)
    state = tx.init(params)
    mu = None
    for step in range(50):
        grads = tensors(step + 1)
        out, state = tx.update(grads, state, params)
        mu = copies(grads) if mu is None else {k: alpha * mu[k] + (1 - alpha) * grads[k] for k in grads}
        for k in grads:
            torch.testing.assert_close(out[k], grads[k] + lamb * mu[k])


def test_grokfast_ema_of_a_constant_gradient_multiplies_it_by_one_plus_lambda():
    tx = grokfast_ema(0.98, 2.0)
    params, grads = tensors(0), tensors(1)
    state = tx.init(params)
    for _ in range(20):
        out, state = tx.update(grads, state, params)
        for k in grads:
            torch.testing.assert_close(out[k], 3.0 * grads[k])


@pytest.mark.parametrize("window", [1, 3, 7])
def test_grokfast_ma_matches_a_deque_over_many_windows(window):
    """Lee et al. 2024, Algorithm 1: unchanged until the window is full, then g + lamb * mean."""
    lamb = 5.0
    tx = grokfast_ma(window, lamb)
    params = tensors(0)
    state = tx.init(params)
    ref = deque(maxlen=window)
    for step in range(5 * window + 3):  # crosses the exact re-summation several times
        grads = tensors(step + 1)
        out, state = tx.update(grads, state, params)
        ref.append(copies(grads))
        for k in grads:
            if len(ref) < window:
                torch.testing.assert_close(out[k], grads[k], rtol=0, atol=0)
            else:
                mean = sum(r[k] for r in ref) / window
                torch.testing.assert_close(out[k], grads[k] + lamb * mean)
        assert len(state["buf"]) == min(step + 1, window)


def test_grokfast_ma_running_sum_does_not_drift():
    """The running sum stays within float32 rounding of the exact window sum at *every* step,
    not only right after a re-summation (every ``window`` steps). Gradients with a common
    offset make the rounding of the incremental updates drift (about 10x this bound over 3,000
    steps when the re-summation is skipped)."""
    tx = grokfast_ma(10, 1.0)
    params = tensors(0, torch.float32)
    state = tx.init(params)
    worst = 0.0
    for step in range(3000):
        grads = {k: 1e3 * (v + 3.0) for k, v in tensors(step, torch.float32).items()}
        _, state = tx.update(grads, state, params)
        for k in params:
            exact = sum(b[k].double() for b in state["buf"])
            worst = max(worst, float((state["sum"][k].double() - exact).abs().max()))
    # the window sums are ~3e4, where one float32 ulp is 2e-3
    assert worst < 0.04


def test_orthograd_output_is_orthogonal_to_the_weights_and_keeps_the_norm():
    """Prieto et al. 2025, eq. 8, over many random (w, g) pairs and every tensor."""
    tx = orthograd()
    for step in range(50):
        params, grads = tensors(2 * step), tensors(2 * step + 1)
        out, _ = tx.update(grads, tx.init(params), params)
        for k in grads:
            w, g, o = params[k].reshape(-1), grads[k].reshape(-1), out[k].reshape(-1)
            assert abs(float(w @ o)) <= 1e-10 * float(w.norm() * o.norm())
            torch.testing.assert_close(o.norm(), g.norm())
            # o is the normalised rejection of g from w: same direction as g - proj
            rej = g - (w @ g) / (w @ w) * w
            torch.testing.assert_close(o / o.norm(), rej / rej.norm())


def test_orthograd_keeps_a_zero_gradient_and_passes_through_at_zero_weights():
    tx = orthograd()
    params = tensors(0)
    out, _ = tx.update({k: torch.zeros_like(v) for k, v in params.items()}, (), params)
    for k in params:
        assert float(out[k].abs().max()) == 0.0
    zeros = {k: torch.zeros_like(v) for k, v in params.items()}
    grads = tensors(1)
    out, _ = tx.update(grads, (), zeros)
    for k in grads:
        torch.testing.assert_close(out[k], grads[k])


def test_clip_bounds_the_global_norm_and_keeps_the_direction():
    tx = clip_by_global_norm(1.0)
    for step in range(20):
        grads = {k: (step / 5) * v for k, v in tensors(step).items()}
        out, _ = tx.update(grads, (), {})
        n_in, n_out = float(global_norm(grads)), float(global_norm(out))
        assert n_out <= 1.0 + 1e-9
        if n_in <= 1.0:
            assert_same(out, grads)
        else:
            assert n_out == pytest.approx(1.0)
            for k in grads:
                torch.testing.assert_close(out[k] * n_in, grads[k] * n_out)


def test_clip_leaves_a_gradient_under_the_limit_unchanged():
    tx = clip_by_global_norm(10.0)
    for scale in (1e-6, 0.3, 0.999):
        grads = tensors(3)
        grads = {k: v * (scale * 10.0 / float(global_norm(grads))) for k, v in grads.items()}
        out, _ = tx.update(grads, (), {})
        assert_same(out, grads)
    at_limit = {k: v / float(global_norm(tensors(4))) for k, v in tensors(4).items()}
    out, _ = clip_by_global_norm(1.0).update(at_limit, (), {})
    for k in at_limit:
        torch.testing.assert_close(out[k], at_limit[k])


def test_scale_to_norm_and_its_in_place_projection_agree():
    for target in (0.5, 3.0, 40.0):
        params = tensors(int(target * 10))
        new = scale_to_norm(params, target)
        assert float(global_norm(new)) == pytest.approx(target)
        for k in params:  # same direction: a positive multiple of each tensor
            ratio = new[k] / params[k]
            torch.testing.assert_close(ratio, torch.full_like(ratio, target / float(global_norm(params))))
        project_weight_norm(params, target)
        for k in params:
            torch.testing.assert_close(params[k], new[k])


def test_transforms_are_differentiable_inside_an_inner_loop():
    """A meta-parameter that scales the gradient receives a gradient through every transform."""
    tx = chain(grokfast_ema(0.9, 2.0), grokfast_ma(2, 1.0), orthograd(), clip_by_global_norm(10.0))
    params = tensors(0)
    scale = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    state = tx.init(params)
    for step in range(4):
        grads = {k: scale * v for k, v in tensors(step + 1).items()}
        grads, state = tx.update(grads, state, params)
        params = {k: params[k] - 0.1 * grads[k] for k in params}
    loss = sum((p ** 2).sum() for p in params.values())
    (d,) = torch.autograd.grad(loss, scale)
    assert torch.isfinite(d) and float(d) != 0.0


def test_chain_applies_left_to_right_and_keeps_each_state():
    a, b = grokfast_ema(0.5, 1.0), clip_by_global_norm(0.1)
    params = tensors(0)
    tx = chain(a, b)
    state = tx.init(params)
    sa = a.init(params)
    for step in range(5):
        grads = tensors(step + 1)
        out, state = tx.update(grads, state, params)
        mid, sa = a.update(grads, sa, params)
        ref, _ = b.update(mid, (), params)
        for k in grads:
            torch.testing.assert_close(out[k], ref[k])
    assert isinstance(state, tuple) and len(state) == 2
    out, _ = identity().update(grads, (), params)
    assert out is grads


def test_ma_state_survives_a_checkpoint_round_trip():
    """Resuming from a flattened state gives the same outputs as never stopping."""
    params = tensors(0)
    tx = grokfast_ma(5, 2.0)
    s1 = tx.init(params)
    for step in range(7):
        _, s1 = tx.update(tensors(step + 1), s1, params)
    saved: dict = {}
    skel = flatten(s1, "s", saved)
    s2 = unflatten(skel, saved)
    for step in range(7, 20):
        o1, s1 = tx.update(tensors(step + 1), s1, params)
        o2, s2 = tx.update(tensors(step + 1), s2, params)
        assert_same(o1, o2)


def test_build_transforms_follows_the_config():
    cfg = RunConfig()
    assert build_transforms(cfg.accel, cfg.optim) is None
    cfg.accel.grokfast, cfg.accel.alpha, cfg.accel.lamb = "ema", 0.5, 1.0
    cfg.accel.orthograd = True
    cfg.optim.clip = 1e-3
    tx = build_transforms(cfg.accel, cfg.optim)
    params, grads = tensors(0), tensors(1)
    out, state = tx.update(grads, tx.init(params), params)
    assert len(state) == 3
    assert float(global_norm(out)) == pytest.approx(1e-3)
    for k in params:  # ⊥Grad ran before the clip: still orthogonal to the weights
        assert abs(float(params[k].reshape(-1) @ out[k].reshape(-1))) < 1e-12
    cfg.accel.grokfast, cfg.accel.orthograd, cfg.optim.clip = "ma", False, 0.0
    cfg.accel.window = 2
    tx = build_transforms(cfg.accel, cfg.optim)
    state = tx.init(params)
    out1, state = tx.update(grads, state, params)
    assert_same(out1, grads)  # window not yet full
    out2, state = tx.update(grads, state, params)
    for k in grads:
        torch.testing.assert_close(out2[k], 2.0 * grads[k])


def test_defaults_are_the_papers():
    """Lee et al. 2024: EMA alpha 0.98, lambda 2; MA window 100, lambda 5."""
    params = tensors(0)
    for default, explicit, steps in ((grokfast_ema(), grokfast_ema(0.98, 2.0), 3),
                                     (grokfast_ma(), grokfast_ma(100, 5.0), 101)):
        s1, s2 = default.init(params), explicit.init(params)
        for step in range(steps):
            o1, s1 = default.update(tensors(step + 1), s1, params)
            o2, s2 = explicit.update(tensors(step + 1), s2, params)
            assert_same(o1, o2)
    assert identity().init(params) == () and orthograd().init(params) == ()


def test_orthograd_of_plain_gradients_keeps_no_graph_of_the_parameters():
    """The loop's .grad tensors carry no graph: the output must not hold on to the parameters'."""
    params = {k: v.requires_grad_() for k, v in tensors(0).items()}
    out, _ = orthograd().update(tensors(1), (), params)
    assert not any(v.requires_grad for v in out.values())


def test_the_meta_gradient_through_the_transforms_equals_finite_differences():
    """d loss / d scale through four steps of the whole chain (⊥Grad reads the weights, which
    depend on the scale through the earlier steps) equals a central difference, in float64. The
    clip's limit is above the gradients' norm: at the limit the loss would not depend on the scale."""
    tx = chain(grokfast_ema(0.9, 2.0), grokfast_ma(2, 1.0), orthograd(), clip_by_global_norm(1e3))

    def loss(scale):
        params = tensors(0)
        state = tx.init(params)
        for step in range(4):
            grads = {k: scale * v + 0.3 * params[k] for k, v in tensors(step + 1).items()}
            grads, state = tx.update(grads, state, params)
            params = {k: params[k] - 0.1 * grads[k] for k in params}
        return sum((p ** 2).sum() for p in params.values())

    s = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    (d,) = torch.autograd.grad(loss(s), s)
    h = 1e-6
    fd = (loss(torch.tensor(1.5 + h, dtype=torch.float64)) - loss(torch.tensor(1.5 - h, dtype=torch.float64))) / (2 * h)
    assert float(d) == pytest.approx(float(fd), rel=1e-6)


def test_clip_keeps_a_tiny_gradient_and_the_gradients_dtype():
    tiny = {k: v * (1e-14 / float(global_norm(tensors(5)))) for k, v in tensors(5).items()}   # norm 1e-14
    out, _ = clip_by_global_norm(1.0).update(tiny, (), {})
    for k in tiny:
        torch.testing.assert_close(out[k], tiny[k], rtol=1e-12, atol=0)
    g32 = tensors(6, torch.float32)
    out, _ = clip_by_global_norm(1e-3).update(g32, (), {})
    assert all(v.dtype == torch.float32 for v in out.values())


def test_scale_to_norm_keeps_zero_parameters_and_the_dtype():
    zeros = {k: torch.zeros_like(v) for k, v in tensors(0).items()}
    out = scale_to_norm(zeros, 5.0)
    assert_same(out, zeros)
    unit = {k: v / float(global_norm(tensors(1))) for k, v in tensors(1).items()}   # norm exactly ~1
    assert float(global_norm(scale_to_norm(unit, 5.0))) == pytest.approx(5.0)
    p32 = tensors(2, torch.float32)
    assert all(v.dtype == torch.float32 for v in scale_to_norm(p32, 3.0).values())


def test_build_transforms_passes_every_grokfast_setting_on():
    cfg = RunConfig()
    cfg.accel.grokfast, cfg.accel.alpha, cfg.accel.lamb = "ema", 0.5, 3.0
    params, g1, g2 = tensors(0), tensors(1), tensors(2)
    tx = build_transforms(cfg.accel, cfg.optim)
    out1, state = tx.update(g1, tx.init(params), params)
    out2, _ = tx.update(g2, state, params)
    for k in params:                       # mu = g1, then 0.5 g1 + 0.5 g2; g + 3 mu
        torch.testing.assert_close(out1[k], 4.0 * g1[k])
        torch.testing.assert_close(out2[k], g2[k] + 3.0 * (0.5 * g1[k] + 0.5 * g2[k]))
    cfg.accel.grokfast, cfg.accel.window, cfg.accel.lamb = "ma", 1, 3.0
    tx = build_transforms(cfg.accel, cfg.optim)
    out, _ = tx.update(g1, tx.init(params), params)
    for k in params:
        torch.testing.assert_close(out[k], 4.0 * g1[k])
