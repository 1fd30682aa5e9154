"""Every task's table: the operations compute what they say, splits are reproducible."""
import itertools

import pytest
import torch

from groklab.config import resolve
from groklab.tasks import OPS, PERM_OPS, build_task, modular_task, operation_table, parity_task, permutation_task
from groklab.tasks.permutations import permutations

P = 11


def table(op, p=P):
    x, y, c = operation_table(op, p)
    return {(int(a), int(b)): int(v) for a, b, v in zip(x, y, c)}


@pytest.mark.parametrize("op, f", [
    ("x+y", lambda x, y, p: (x + y) % p),
    ("x-y", lambda x, y, p: (x - y) % p),
    ("x*y", lambda x, y, p: (x * y) % p),
    ("x^2+y^2", lambda x, y, p: (x * x + y * y) % p),
    ("x^2+xy+y^2", lambda x, y, p: (x * x + x * y + y * y) % p),
    ("x^2+xy+y^2+x", lambda x, y, p: (x * x + x * y + y * y + x) % p),
    ("x^3+xy", lambda x, y, p: (x ** 3 + x * y) % p),
    ("x^3+xy^2+y", lambda x, y, p: (x ** 3 + x * y * y + y) % p),
    ("x^2+y", lambda x, y, p: (x * x + y) % p),
    ("x^3+y", lambda x, y, p: (x ** 3 + y) % p),
])
def test_polynomial_ops_match_python_arithmetic_on_every_pair(op, f):
    t = table(op)
    assert len(t) == P * P
    assert all(v == f(x, y, P) for (x, y), v in t.items())


def test_every_op_is_covered():
    tested = {"x+y", "x-y", "x*y", "x/y", "x/y if y odd else x-y", "x^2+y^2", "x^2+xy+y^2",
              "x^2+xy+y^2+x", "x^3+xy", "x^3+xy^2+y", "x^2+y", "x^3+y"}
    assert set(OPS) == tested


def test_division_is_the_inverse_of_multiplication():
    div, mul = table("x/y"), table("x*y")
    assert len(div) == P * (P - 1)                     # y = 0 is left out
    assert all(y != 0 for _, y in div)
    for (x, y), q in div.items():
        assert mul[(q, y)] == x                        # (x / y) * y == x


def test_mixed_division_uses_division_for_odd_y_and_subtraction_for_even():
    mixed, div, sub = table("x/y if y odd else x-y"), table("x/y"), table("x-y")
    assert len(mixed) == P * P
    for (x, y), v in mixed.items():
        assert v == (div[(x, y)] if y % 2 else sub[(x, y)])


@pytest.mark.parametrize("op", ["x/y", "x/y if y odd else x-y"])
def test_division_needs_a_prime_modulus(op):
    with pytest.raises(ValueError, match=r"task.p=12 is not prime"):
        operation_table(op, 12)


def test_non_division_ops_work_for_any_modulus():
    t = table("x+y", p=12)
    assert t[(7, 8)] == 3


def test_unknown_op_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown task.op 'x\*\*y'.*x\+y"):
        operation_table("x**y", P)


def _perm_index():
    return {tuple(p): i for i, p in enumerate(permutations(4).tolist())}


@pytest.mark.parametrize("op", PERM_OPS)
def test_permutation_ops_compose_as_stated(op):
    t = permutation_task(op, 4, frac=0.5, seed=0)
    perms, index = permutations(4).tolist(), _perm_index()
    x = torch.cat([t.x_train, t.x_val])
    y = torch.cat([t.y_train, t.y_val])
    assert len(y) == 24 * 24 and t.n_classes == 24 and t.vocab == 25

    def comp(a, b):                                   # (a·b)(i) = a[b[i]]
        return tuple(a[b[i]] for i in range(4))

    def inv(a):
        out = [0] * 4
        for i, v in enumerate(a):
            out[v] = i
        return tuple(out)

    for (i, j, eq), z in zip(x.tolist(), y.tolist()):
        a, b = perms[i], perms[j]
        want = {"x*y": comp(a, b), "x*y*x^-1": comp(comp(a, b), inv(a)), "x*y*x": comp(comp(a, b), a)}[op]
        assert z == index[want] and eq == 24


def test_s5_is_the_default_group_with_120_elements():
    t = build_task(resolve(overrides=["task.name=permutation", "task.op=x*y"]).task)
    assert t.n_classes == 120 and t.n_train + t.n_val == 120 * 120
    # composing with the identity (index 0, lexicographic) gives the other operand back
    x = torch.cat([t.x_train, t.x_val])
    y = torch.cat([t.y_train, t.y_val])
    left_id = x[:, 0] == 0
    assert torch.equal(y[left_id], x[left_id, 1])


def test_sparse_parity_labels_are_the_parity_of_the_first_k_bits():
    t = parity_task(n_bits=12, k=3, n_samples=400, frac=0.5, seed=3)
    x = torch.cat([t.x_train, t.x_val])
    y = torch.cat([t.y_train, t.y_val])
    assert x.shape == (400, 12) and set(x.unique().tolist()) == {-1.0, 1.0}
    bits = (x > 0).long()
    assert torch.equal(y, bits[:, :3].sum(1) % 2)
    assert t.kind == "vectors" and t.d_in == 12 and t.n_classes == 2


def test_split_is_reproducible_from_the_seed_and_disjoint():
    a = modular_task("x+y", P, 0.4, seed=7)
    b = modular_task("x+y", P, 0.4, seed=7)
    c = modular_task("x+y", P, 0.4, seed=8)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.x_train, c.x_train)
    assert a.n_train == int(0.4 * P * P) and a.n_train + a.n_val == P * P
    train = {tuple(r) for r in a.x_train.tolist()}
    val = {tuple(r) for r in a.x_val.tolist()}
    assert not train & val
    # the `=` token is the last input position and equals p
    assert set(a.x_train[:, 2].tolist()) == {P} and a.vocab == P + 1


def test_label_noise_replaces_exactly_n_training_answers_and_leaves_validation_clean():
    clean = modular_task("x+y", P, 0.5, seed=1)
    noisy = modular_task("x+y", P, 0.5, seed=1, label_noise=9)
    assert int((clean.y_train != noisy.y_train).sum()) == 9
    assert torch.equal(clean.y_val, noisy.y_val)
    with pytest.raises(ValueError, match="label_noise=1000 exceeds"):
        modular_task("x+y", P, 0.5, seed=1, label_noise=1000)


def test_all_pairs_appear_exactly_once():
    t = modular_task("x*y", P, 0.3, seed=0)
    pairs = [tuple(r[:2]) for r in torch.cat([t.x_train, t.x_val]).tolist()]
    assert sorted(pairs) == list(itertools.product(range(P), range(P)))
