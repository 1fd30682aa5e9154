"""The four curriculum variants: what is learned, what is shuffled, what stays fixed."""
import torch

from groklab.gtn.curriculum import Curriculum


def _all(c, seed):
    plan = c.plan(torch.Generator().manual_seed(seed))
    return [c.inputs(t, plan) for t in range(c.steps)]


def test_none_is_fresh_noise_and_learns_nothing():
    c = Curriculum("none", 3, 8, 4, 5)
    assert list(c.parameters()) == []
    a, b = _all(c, 0), _all(c, 1)
    assert not torch.equal(a[0][0], b[0][0]) and not torch.equal(a[0][0], a[1][0])
    torch.testing.assert_close(_all(c, 0)[2][0], a[2][0])   # reproducible from the plan's seed


def test_full_feeds_batch_t_at_step_t_with_balanced_labels():
    c = Curriculum("full", 3, 10, 4, 5)
    assert c.z.shape == (3, 10, 4)
    for seed in (0, 1):
        for t, (z, y) in enumerate(_all(c, seed)):
            assert torch.equal(z, c.z[t])
            assert torch.equal(torch.bincount(y, minlength=5), torch.full((5,), 2))


def test_shuffled_batch_permutes_whole_batches():
    c = Curriculum("shuffled_batch", 6, 4, 3, 2)
    orders = []
    for seed in range(4):
        got = _all(c, seed)
        idx = [next(i for i in range(6) if torch.equal(z, c.z[i])) for z, _ in got]
        assert sorted(idx) == list(range(6))
        orders.append(idx)
    assert any(o != list(range(6)) for o in orders)


def test_all_shuffled_uses_every_pool_vector_once_per_unroll():
    c = Curriculum("all_shuffled", 3, 4, 2, 3)
    assert c.z.shape == (12, 2)
    got = _all(c, 0)
    zs = torch.cat([z for z, _ in got])
    assert torch.equal(torch.sort(zs[:, 0]).values, torch.sort(c.z.detach()[:, 0]).values)
    labels = torch.cat([y for _, y in got])
    assert torch.equal(torch.bincount(labels), torch.full((3,), 4))
    # pool vectors and their labels travel together
    for z, y in got:
        for zi, yi in zip(z, y):
            k = next(i for i in range(12) if torch.equal(zi, c.z[i]))
            assert yi == c.labels[k]


def test_learned_curricula_receive_gradient():
    for kind in ("all_shuffled", "shuffled_batch", "full"):
        c = Curriculum(kind, 2, 3, 2, 2)
        plan = c.plan(torch.Generator().manual_seed(0))
        sum(c.inputs(t, plan)[0].sum() for t in range(2)).backward()
        assert c.z.grad is not None and c.z.grad.abs().sum() > 0
