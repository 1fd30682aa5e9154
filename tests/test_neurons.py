"""The neuron view (groklab.measure.neurons) on weights with a known answer: waves built from
known cosines give exactly those dominant frequencies and groups, for every kind of model;
noise gives no group and a flat spectrum."""
from __future__ import annotations

import math

import pytest
import torch

import groklab
from groklab.measure.fourier import frame_for
from groklab.measure.neurons import (
    PURE,
    frame_tokens,
    input_waves,
    neuron_view,
    spectrum,
)
from groklab.models import build_model
from groklab.tasks import build_task

P = 31
FREQS = [3, 11, 5, 11, 3, 11]  # neuron j's frequency


def cosines(n: int = P, freqs=FREQS) -> torch.Tensor:
    """(n, len(freqs)): column j = cos(2π f_j i / n + φ_j), a phase per neuron."""
    i = torch.arange(n, dtype=torch.float64)[:, None]
    f = torch.tensor(freqs, dtype=torch.float64)
    phase = torch.arange(len(freqs), dtype=torch.float64)
    return torch.cos(2 * math.pi * f * i / n + phase)


def want_groups(freqs=FREQS) -> list[tuple]:
    return [(f, sorted(j for j, g in enumerate(freqs) if g == f)) for f in sorted(set(freqs))]


def groups_of(view) -> list[tuple]:
    return [(g["freq"], sorted(g["neurons"])) for g in view["groups"]]


def pair_weights(waves: torch.Tensor) -> dict:
    """PairMLP weights whose W_E @ W_in is ``waves`` (W_in the identity)."""
    N = waves.shape[1]
    return {"W_E": waves.clone(), "W_in": torch.eye(N, dtype=torch.float64), "W_out": torch.zeros(N, N)}


def test_cosine_waves_give_their_frequencies_and_groups():
    view = neuron_view(pair_weights(cosines()), frame_tokens("x+y", P))
    assert [nr["freq"] for nr in view["neurons"]] == FREQS
    assert all(nr["purity"] > 0.999 for nr in view["neurons"])
    assert groups_of(view) == want_groups()
    assert view["n"] == P and view["n_neurons"] == len(FREQS)
    assert all(len(nr["wave"]) == P and len(nr["dft"]) == P // 2 for nr in view["neurons"])
    # the embedding (here the waves themselves) has power at 3, 5 and 11 only
    emb = torch.tensor(view["embedding"])
    assert sorted((emb > 1e-6).nonzero().flatten().add(1).tolist()) == [3, 5, 11]


def test_a_neuron_mixing_two_frequencies_is_grouped_by_the_larger_or_as_mixed():
    w = cosines(freqs=[4, 9, 12])
    mixed = torch.stack([w[:, 0] * 0.8 + w[:, 1] * 0.6, w.sum(1)], 1)  # 64/36 and 1/3 each
    view = neuron_view(pair_weights(mixed), frame_tokens("x+y", P))
    assert groups_of(view) == [(4, [0]), (None, [1])]
    assert view["neurons"][0]["purity"] == pytest.approx(0.64, abs=1e-4)


def test_every_architecture_reads_the_same_waves():
    waves, tokens = cosines(), frame_tokens("x+y", P)
    n, N = waves.shape
    eye = torch.eye(N, dtype=torch.float64)
    transformer = {"W_E": torch.cat([waves, torch.zeros(1, N)]),  # the "=" token's row
                   "blocks.0.attn.W_V": eye[None], "blocks.0.attn.W_O": eye[None],
                   "blocks.0.mlp.W_in": eye}
    onehot = {"layers.0.weight": torch.cat([waves.T, torch.randn(N, n + 1, dtype=torch.float64)], 1),
              "layers.1.weight": torch.zeros(2, N)}
    learned = {"W_E": waves, "layers.0.weight": torch.cat([eye, torch.randn(N, N, dtype=torch.float64)], 1)}
    for w in (transformer, onehot, learned):
        assert torch.allclose(input_waves(w, tokens), waves)
        assert groups_of(neuron_view(w, tokens)) == want_groups()


def test_the_discrete_log_order_makes_multiplication_a_wave():
    p = 23
    tokens = frame_tokens("x*y", p)                       # g^i for i = 0..p-2
    waves = cosines(p - 1, [2, 7])                       # cosine in the log coordinate
    W_E = torch.zeros(p, 2, dtype=torch.float64)
    W_E[tokens] = waves
    view = neuron_view(pair_weights(W_E), tokens)
    assert groups_of(view) == [(2, [0]), (7, [1])] and view["n"] == p - 1


def test_noise_has_no_single_frequency_and_a_flat_spectrum():
    g = torch.Generator().manual_seed(0)
    w = {"W_E": torch.randn(67, 500, generator=g, dtype=torch.float64),
         "W_in": torch.randn(500, 24, generator=g, dtype=torch.float64)}
    view = neuron_view(w, frame_tokens("x+y", 67))
    assert groups_of(view) == [(None, list(range(24)))]
    assert max(nr["purity"] for nr in view["neurons"]) < PURE
    emb = torch.tensor(view["embedding"])
    assert emb.max() / emb.mean() < 1.5 and emb.min() / emb.mean() > 0.6


def test_the_waves_are_the_neurons_pre_activations_of_a_real_model():
    """For PairMLP and the one-hot MLP, pre(a, b) - pre(0, b) = wave[a] - wave[0]."""
    for preset, sets in (("pair", ["task.p=13", "model.d_model=16", "model.d_mlp=8"]),
                         ("prieto", ["task.p=13", "model.hidden=[8]"])):
        cfg = groklab.resolve(preset, overrides=sets)
        task = build_task(cfg.task)
        model = build_model(cfg, task).double()
        frame = frame_for(task)
        hook = "hook_pre" if preset == "pair" else "hooks_pre.0"
        x = torch.tensor([[a, 5, 13] for a in range(13)])
        _, cache = model.run_with_cache(x, names=[hook])
        pre = cache[hook].double()
        waves = input_waves(model.state_dict(), frame.tokens)
        assert torch.allclose(pre - pre[0], waves - waves[0], atol=1e-10), preset


def test_at_most_max_neurons_the_largest_waves():
    waves = cosines(freqs=[1, 2, 3, 4]) * torch.tensor([1.0, 5.0, 0.1, 3.0], dtype=torch.float64)
    view = neuron_view(pair_weights(waves), frame_tokens("x+y", P), max_neurons=2)
    assert [nr["index"] for nr in view["neurons"]] == [1, 3] and view["n_neurons"] == 4


def test_spectrum_of_a_column_is_its_norm_without_the_constant():
    x = torch.randn(P, 3, dtype=torch.float64) + 2.0
    assert torch.allclose(spectrum(x).pow(2).sum(0), (x - x.mean(0)).pow(2).sum(0))


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match="supports modular ops"):
        frame_tokens("x^2+y", 7)
    with pytest.raises(ValueError, match="prime"):
        frame_tokens("x*y", 21)
    with pytest.raises(ValueError, match="have no 'W_E'"):
        neuron_view({"foo": torch.zeros(2)}, frame_tokens("x+y", 5))
    with pytest.raises(ValueError, match="do not fit"):  # a p=5 checkpoint read as p=7
        neuron_view(pair_weights(cosines(5, [1, 2])), frame_tokens("x+y", 7))
