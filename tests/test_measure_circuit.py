"""Key frequencies, restricted and excluded loss on activations and logit tables built by hand."""
import math

import pytest
import torch

from groklab.measure import circuit
from groklab.measure.fourier import frame_for
from groklab.tasks import modular_task

CASES = [("x+y", 23, [3, 7]), ("x-y", 23, [2, 5, 9]), ("x*y", 23, [4, 11]), ("x/y", 29, [1, 6])]


def coords(frame):
    n = frame.n
    i, j = torch.cartesian_prod(torch.arange(n), torch.arange(n)).T
    return i.double(), j.double(), n


def hand_acts(frame, freqs, per_freq=3, noise_neurons=2):
    """Neurons whose activation lies in one frequency block: cos(ωa+φ) + cos(ωb+ψ) + cos(ωa)cos(ωb)."""
    i, j, n = coords(frame)
    g = torch.Generator().manual_seed(0)
    cols = []
    for k in freqs:
        w = 2 * math.pi * k / n
        for _ in range(per_freq):
            ph = torch.rand(2, generator=g, dtype=torch.float64) * 6
            cols.append(torch.cos(w * i + ph[0]) + 0.5 * torch.cos(w * j + ph[1])
                        + torch.cos(w * i) * torch.sin(w * j) + 4.0)
    cols += [torch.zeros(n * n, dtype=torch.float64)] * noise_neurons  # dead neurons: left out
    # a mixed neuron (two frequencies equally): not clustered, adds nothing to K
    w1, w2 = 2 * math.pi * (freqs[0] + 1) / n, 2 * math.pi * (freqs[0] + 2) / n
    cols.append(torch.cos(w1 * i) + torch.cos(w2 * j))
    return torch.stack(cols, 1)


def hand_logits(frame, freqs, alpha=6.0):
    """L[(i,j), c] = Σ_k α cos(ω_k(i + s·j − coord(c))) (+ a constant −5 for a class without a
    coordinate, i.e. class 0 in the discrete-log frame): a perfect Fourier solution."""
    i, j, n = coords(frame)
    s = (i + frame.sign * j)[:, None]
    L = torch.full((n * n, frame.p), -5.0, dtype=torch.float64)
    c = torch.arange(n, dtype=torch.float64)[None]
    L[:, frame.tokens] = sum(alpha * torch.cos(2 * math.pi * k * (s - c) / n) for k in freqs)
    return L


def ce(L, y):
    return float(-L.log_softmax(-1).gather(-1, y[:, None]).mean())


@pytest.mark.parametrize("op,p,freqs", CASES)
def test_key_frequencies_are_the_chosen_ones(op, p, freqs):
    f = frame_for(modular_task(op, p, 0.5, seed=0))
    acts = hand_acts(f, freqs)
    assert circuit.key_frequencies(acts, f.n) == sorted(freqs)
    k, share = circuit.neuron_clusters(acts, f.n)
    assert k[:3 * len(freqs)].tolist() == [fr for fr in freqs for _ in range(3)]
    assert torch.allclose(share[:3 * len(freqs)], torch.ones(3 * len(freqs), dtype=torch.float64))
    assert k[-3:].tolist() == [0, 0, 0]  # two dead neurons and the mixed one
    S = circuit.neuron_frequency_shares(acts, f.n)
    assert S.shape == (acts.shape[1], f.n // 2)
    assert torch.allclose(S[-1, freqs[0]:freqs[0] + 2], torch.full((2,), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("op,p,freqs", CASES)
def test_restricted_loss_equals_full_loss_for_a_fourier_solution(op, p, freqs):
    f = frame_for(modular_task(op, p, 0.5, seed=0))
    L = hand_logits(f, freqs)
    full = ce(L, f.labels)
    loss, acc = circuit.restricted_loss(L, f, freqs)
    assert loss == pytest.approx(full, rel=1e-9, abs=1e-12)
    assert acc == 1.0
    # without one of the frequencies the restricted logits are worse
    assert circuit.restricted_loss(L, f, freqs[1:])[0] > full + 1e-3


@pytest.mark.parametrize("op,p,freqs", CASES)
def test_excluded_loss_removes_exactly_the_key_frequencies(op, p, freqs):
    f = frame_for(modular_task(op, p, 0.5, seed=0))
    L = hand_logits(f, freqs)
    # all key frequencies removed: every coordinate class has logit 0, class 0 (dlog) keeps −5
    n_coord = f.n
    other = f.p - n_coord
    expect = math.log(n_coord + other * math.exp(-5.0))
    assert circuit.excluded_loss(L, f, freqs) == pytest.approx(expect, rel=1e-9)
    # one frequency removed: the loss of the table built from the others, on the training pairs
    per = circuit.excluded_loss_per_freq(L, f, freqs)
    assert set(per) == {str(k) for k in freqs}
    for k in freqs:
        rest = hand_logits(f, [q for q in freqs if q != k])
        assert per[str(k)] == pytest.approx(ce(rest[f.train], f.labels[f.train]), rel=1e-9)


def test_directions_are_orthonormal_and_handle_the_nyquist_frequency():
    f = frame_for(modular_task("x*y", 23, 0.5, seed=0))   # n = 22, Nyquist k = 11
    D = circuit.directions(f, [3, 11])
    assert D.shape == (f.n ** 2, 3)
    assert torch.allclose(D.T @ D, torch.eye(3, dtype=torch.float64), atol=1e-12)


def test_excluded_loss_is_measured_on_the_training_pairs_only():
    """A memorising table (logit a on the answer of training pairs only, 0 elsewhere) with no key
    frequency to remove: the loss on the training pairs is log(1 + (p-1)e^-a), far below the
    grid's, which would add log p for every held-out pair."""
    f = frame_for(modular_task("x+y", 23, 0.4, seed=1))
    a = 8.0
    L = torch.zeros(f.n ** 2, f.p, dtype=torch.float64)
    L[f.train, f.labels[f.train]] = a
    assert circuit.excluded_loss(L, f, []) == pytest.approx(math.log(1 + (f.p - 1) * math.exp(-a)), rel=1e-12)
    # with key frequencies: the projection is removed from every pair, the loss read on training pairs
    L = L + torch.randn(L.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    D = circuit.directions(f, [2, 5])
    Le = L - D @ (D.T @ L)
    assert circuit.excluded_loss(L, f, [2, 5]) == pytest.approx(ce(Le[f.train], f.labels[f.train]), rel=1e-12)
    assert ce(Le, f.labels) > ce(Le[f.train], f.labels[f.train]) + 1.0
