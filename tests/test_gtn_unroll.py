"""The meta-gradient through the unrolled inner loop: finite differences, and the checkpointed
unroll equal to the plain one."""
import pytest
import torch

from groklab.gtn.meta import Teacher, make_unroll
from groklab.gtn.unroll import meta_backward_checkpointed, meta_backward_plain, meta_loss_plain
from gtn_tiny import one_thread, tiny_cfg, tiny_data  # noqa: F401


def _grads(teacher):
    return {k: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for k, p in teacher.named_parameters()}


def _setup(*overrides):
    cfg = tiny_cfg(*overrides)
    data = tiny_data().to(torch.float64)
    teacher = Teacher(cfg, data).to(torch.float64)
    return cfg, data, teacher


@pytest.mark.parametrize("norm", ["none", "meanbn"])
def test_meta_gradient_matches_finite_differences(norm):
    cfg, data, teacher = _setup(f"learner.norm={norm}", "inner.curriculum=full")
    meta_backward_plain(make_unroll(cfg, teacher, data, 0))
    grads = _grads(teacher)
    g = torch.Generator().manual_seed(1)
    direction = {k: torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in teacher.named_parameters()}
    analytic = sum((grads[k] * direction[k]).sum() for k in grads).item()
    eps = 1e-6

    def loss_at(sign):
        with torch.no_grad():
            for k, p in teacher.named_parameters():
                p.add_(sign * eps * direction[k])
        val = meta_loss_plain(make_unroll(cfg, teacher, data, 0)).item()
        with torch.no_grad():
            for k, p in teacher.named_parameters():
                p.sub_(sign * eps * direction[k])
        return val

    numeric = (loss_at(1) - loss_at(-1)) / (2 * eps)
    assert abs(analytic) > 1e-4          # the check is not vacuous
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("curriculum", ["none", "all_shuffled", "shuffled_batch", "full"])
@pytest.mark.parametrize("block", [1, 2, 5])
def test_checkpointed_unroll_equals_plain(curriculum, block):
    cfg, data, teacher = _setup(f"inner.curriculum={curriculum}", "inner.steps=5",
                                "learner.norm=meanbn", "inner.intermediate=2")
    loss_plain = meta_backward_plain(make_unroll(cfg, teacher, data, 3))
    plain = _grads(teacher)
    teacher.zero_grad(set_to_none=True)
    loss_ckpt = meta_backward_checkpointed(make_unroll(cfg, teacher, data, 3), block)
    ckpt = _grads(teacher)
    assert loss_ckpt == pytest.approx(loss_plain, rel=1e-12)
    for k in plain:
        assert plain[k].abs().sum() > 0 or curriculum == "none" and k.startswith("curriculum")
        torch.testing.assert_close(ckpt[k], plain[k], rtol=1e-9, atol=1e-12)


def test_intermediate_losses_change_the_gradient():
    cfg, data, teacher = _setup("inner.intermediate=0")
    meta_backward_plain(make_unroll(cfg, teacher, data, 0))
    final_only = _grads(teacher)
    teacher.zero_grad(set_to_none=True)
    cfg2, _, _ = _setup("inner.intermediate=1")
    u = make_unroll(cfg2, teacher, data, 0)
    assert u.loss_steps == [1, 2, 3]
    meta_backward_plain(u)
    assert not torch.allclose(_grads(teacher)["log_lr"], final_only["log_lr"])
