"""The Fourier basis and the frame of a modular task (additive and discrete-log coordinates)."""
import pytest
import torch

from groklab.measure.fourier import SUPPORTED_OPS, fourier_basis, frame_for, primitive_root
from groklab.tasks import modular_task, operation_table, permutation_task


@pytest.mark.parametrize("n", [7, 12, 22, 23])
def test_basis_is_orthonormal_with_frequency_labels(n):
    B, freq = fourier_basis(n)
    assert B.shape == (n, n)
    assert torch.allclose(B @ B.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    assert freq[0] == 0 and int(freq.max()) == n // 2
    # every frequency below the Nyquist one has a cos and a sin row
    counts = torch.bincount(freq)
    assert counts[1:n // 2].eq(2).all() and counts[n // 2] == (1 if n % 2 == 0 else 2)


@pytest.mark.parametrize("p", [5, 23, 113])
def test_primitive_root_generates_the_group(p):
    g = primitive_root(p)
    assert sorted(pow(g, i, p) for i in range(p - 1)) == list(range(1, p))


@pytest.mark.parametrize("op", sorted(SUPPORTED_OPS))
def test_frame_labels_are_the_operation_and_train_mask_matches(op):
    p = 23
    task = modular_task(op, p, 0.4, seed=1)
    f = frame_for(task)
    a, b = f.grid[:, 0], f.grid[:, 1]
    x, y, c = operation_table(op, p)
    table = {(int(u), int(v)): int(w) for u, v, w in zip(x, y, c)}
    assert all(table[(int(u), int(v))] == int(w) for u, v, w in zip(a, b, f.labels))
    assert f.n == (p if SUPPORTED_OPS[op][0] == "fourier" else p - 1)
    train_pairs = {tuple(r) for r in task.x_train[:, :2].tolist()}
    expect = {t for t in train_pairs if 0 not in t} if f.basis == "dlog" else train_pairs
    assert {tuple(r) for r in f.grid[f.train, :2].tolist()} == expect
    assert int(f.train.sum()) == len(expect)
    assert (f.grid[:, 2] == p).all()


def test_unsupported_tasks_are_named():
    with pytest.raises(ValueError, match="x\\^2\\+y\\^2 mod 23"):
        frame_for(modular_task("x^2+y^2", 23, 0.5, seed=0))
    with pytest.raises(ValueError, match="x\\*y in S3"):
        frame_for(permutation_task("x*y", 3, 0.5, seed=0))
    with pytest.raises(ValueError, match="prime"):
        frame_for(modular_task("x*y", 21, 0.5, seed=0))
