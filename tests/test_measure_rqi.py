"""Representation Quality Index (Liu et al. 2022): known answers."""
import torch

from groklab.measure.rqi import rqi


def test_linear_embedding_has_every_parallelogram():
    p = 17
    v, c = torch.randn(8, generator=torch.Generator().manual_seed(0)), torch.randn(8)
    E = torch.arange(p, dtype=torch.float64)[:, None] * v + c
    assert rqi(E) == 1.0


def test_random_embedding_has_almost_none():
    E = torch.randn(17, 16, generator=torch.Generator().manual_seed(1))
    assert rqi(E) < 0.05


def test_half_broken_embedding_counts_the_intact_part():
    # tokens 0..7 linear, 8..16 random: only quadruples inside 0..7 survive
    p, g = 17, torch.Generator().manual_seed(2)
    E = torch.arange(p, dtype=torch.float64)[:, None] * torch.ones(4)
    E[8:] = 30 * torch.randn(9, 4, generator=g, dtype=torch.float64)
    def count(m):  # quadruples i<j<=k<q<m with i+q=j+k
        return sum(1 for i in range(m) for j in range(i + 1, m) for k in range(j, m) for q in range(k + 1, m)
                   if i + q == j + k)
    # normalisation rescales every dimension alike, so intact quadruples stay exact
    assert rqi(E) >= count(8) / count(p)
    assert rqi(E) < 0.5
