"""Fourier norms, Gini coefficient, sum of squared weights: known answers."""
import math

import pytest
import torch

from groklab.measure.norms import fourier_gini, fourier_norms, gini, per_frequency, weight_norms


def freq_matrix(n, freqs, d_extra=0, const=0.0):
    """(n, 2|K| + d_extra) columns cos/sin(2πk t/n) of the chosen frequencies (+ zeros)."""
    t = torch.arange(n, dtype=torch.float64)
    cols = [f(2 * math.pi * k * t / n) for k in freqs for f in (torch.cos, torch.sin)]
    return torch.stack(cols + [torch.zeros(n, dtype=torch.float64)] * d_extra, 1) + const


def test_gini_known_values():
    assert gini(torch.ones(10)) == pytest.approx(0.0, abs=1e-12)
    assert gini(torch.tensor([0.0] * 9 + [3.0])) == pytest.approx(1 - 1 / 10)
    # Hurley & Rickard's formula by hand for (1, 2, 3, 4): 1 - 2*(1*3.5 + 2*2.5 + 3*1.5 + 4*0.5)/(10*4)
    assert gini(torch.tensor([4.0, 1.0, 3.0, 2.0])) == pytest.approx(1 - 2 * 15 / 40)
    assert gini(torch.zeros(5)) == 0.0


@pytest.mark.parametrize("n,freqs", [(23, [3, 7]), (22, [2, 11]), (113, [14, 35, 41, 42, 52])])
def test_fourier_norms_find_exactly_the_chosen_frequencies(n, freqs):
    W = freq_matrix(n, freqs, d_extra=3, const=0.7)
    pf = per_frequency(fourier_norms(W))
    assert pf.shape == (n // 2,)
    on = torch.tensor([k - 1 for k in freqs])
    off = torch.ones(n // 2, dtype=torch.bool)
    off[on] = False
    assert (pf[on] > 1).all() and pf[off].abs().max() < 1e-9
    # energy is preserved: the basis is orthonormal
    assert float((fourier_norms(W) ** 2).sum()) == pytest.approx(float((W ** 2).sum()))
    # equal-norm frequencies: Gini is exactly that of |K| equal entries among n//2
    N, m = n // 2, len(freqs)
    expect = gini(torch.cat([torch.zeros(N - m), torch.ones(m)]))
    assert fourier_gini(fourier_norms(W)) == pytest.approx(expect, abs=1e-9)


def test_weight_norms_total_and_per_tensor():
    m = torch.nn.Linear(3, 2)
    with torch.no_grad():
        m.weight.fill_(2.0)
        m.bias.fill_(-1.0)
    w = weight_norms(m)
    assert w["sum_sq_per_tensor"] == {"weight": 24.0, "bias": 2.0}
    assert w["sum_sq_weights"] == 26.0
