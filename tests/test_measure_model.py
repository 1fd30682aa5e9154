"""Progress measures read from models built by hand from chosen frequencies."""
import math

import pytest
import torch

from groklab.measure import circuit
from groklab.measure.extract import embedding, grid_run, neuron_logit_map
from groklab.measure.fourier import frame_for
from groklab.measure.norms import fourier_norms, gini, per_frequency
from groklab.measure.progress import measure_model
from groklab.models import MLPNet, Transformer
from groklab.tasks import modular_task


def features(n, freqs, t):
    """(len(t), 2|K|): cos/sin(2πk t/n) of each chosen frequency."""
    t = t.double()
    return torch.stack([f(2 * math.pi * k * t / n) for k in freqs for f in (torch.cos, torch.sin)], 1)


def hand_transformer(p, freqs, fast):
    """Uniform attention (W_Q = W_K = 0) makes the residual at '=' equal E_a + E_b; the MLP runs
    in its linear regime (b_in = 10), so neuron m reads feature m of E_a + E_b; W_U maps feature
    m to cos/sin(ω_k c)."""
    d = 2 * len(freqs)
    m = Transformer(d_vocab=p + 1, d_vocab_out=p + 1, n_ctx=3, d_model=d, n_heads=1, d_mlp=d + 2, fast=fast)
    with torch.no_grad():
        for prm in m.parameters():
            prm.zero_()
        F = features(p, freqs, torch.arange(p)).float()
        m.W_E[:p] = F
        blk = m.blocks[0]
        blk.attn.W_V[0] = torch.eye(d)
        blk.attn.W_O[0] = 3 * torch.eye(d)
        blk.mlp.W_in[:, :d] = torch.eye(d)
        blk.mlp.b_in.fill_(10.0)
        blk.mlp.W_out[:d] = torch.eye(d)
        m.W_U[:, :p] = F.T
    return m


def hand_mlp(p, freqs, frame):
    """One-hot MLP in the frame's coordinates: neuron m = ReLU(f_m(i) + f_m(j) + 10), linear."""
    d = 2 * len(freqs)
    m = MLPNet(n_out=p, hidden=[d], n_tokens=p)
    F = features(frame.n, freqs, torch.arange(frame.n)).float()            # (n, d) by coordinate
    with torch.no_grad():
        W = torch.full((d, 2 * p), 5.0)
        W[:, frame.tokens] += F.T
        W[:, p + frame.tokens] += F.T
        m.layers[0].weight.copy_(W)
        out = torch.zeros(p, d)
        out[frame.tokens] = F
        m.layers[1].weight.copy_(out)
    return m


def only_on(per_freq, freqs):
    on = torch.zeros_like(per_freq, dtype=torch.bool)
    on[[k - 1 for k in freqs]] = True
    return bool((per_freq[on] > 1e-3).all() and per_freq[~on].abs().max() < 1e-5)


@pytest.mark.parametrize("fast", [True, False])
def test_hand_built_transformer_gives_back_its_frequencies(fast):
    p, freqs = 23, [3, 7]
    task = modular_task("x+y", p, 0.5, seed=0)
    f = frame_for(task)
    m = hand_transformer(p, freqs, fast)
    L, acts = grid_run(m, f)
    assert L.shape == (p * p, p) and acts.shape == (p * p, 2 * len(freqs) + 2)
    assert torch.allclose(L, m(f.grid)[:, :p].double(), atol=1e-4)
    assert circuit.key_frequencies(acts, f.n) == freqs
    assert only_on(per_frequency(fourier_norms(embedding(m, f))), freqs)
    assert only_on(per_frequency(fourier_norms(neuron_logit_map(m, f))), freqs)
    rec = measure_model(m, f, freqs)
    expect = gini(torch.tensor([0.0] * (p // 2 - 2) + [1.0, 1.0]))
    assert rec["gini_E"] == pytest.approx(expect, abs=1e-5)
    assert rec["gini_L"] == pytest.approx(expect, abs=1e-5)
    assert rec["key_share_E"] == pytest.approx(1.0, abs=1e-6)
    # W_E and W_U: 2 freqs x (cos² + sin²) per token; W_V, W_in, W_out: I; W_O: 3I; b_in: 10s
    d = 2 * len(freqs)
    assert rec["sum_sq_weights"] == pytest.approx(2 * 2 * p + 12 * d + 100 * (d + 2), rel=1e-6)
    assert rec["sum_sq_per_tensor"]["blocks.0.attn.W_O"] == pytest.approx(9 * d)


@pytest.mark.parametrize("op", ["x*y", "x/y"])
def test_hand_built_mlp_in_the_discrete_log_basis(op):
    p, freqs = 23, [2, 5]
    task = modular_task(op, p, 0.5, seed=0)
    f = frame_for(task)
    m = hand_mlp(p, freqs, f)
    L, acts = grid_run(m, f)
    assert L.shape == (f.n ** 2, p)
    assert circuit.key_frequencies(acts, f.n) == freqs
    assert only_on(per_frequency(fourier_norms(embedding(m, f))), freqs)
    assert only_on(per_frequency(fourier_norms(neuron_logit_map(m, f))), freqs)
    rec = measure_model(m, f, freqs)
    assert set(rec["excluded_loss_per_freq"]) == {"2", "5"}
    assert len(rec["n_E"]) == f.n // 2


def test_unsupported_models_are_refused():
    f = frame_for(modular_task("x+y", 7, 0.5, seed=0))
    with pytest.raises(ValueError, match="hidden layer"):
        grid_run(MLPNet(n_out=7, hidden=[], n_tokens=7), f)
    with pytest.raises(ValueError, match="Linear"):
        embedding(torch.nn.Linear(2, 2), f)
