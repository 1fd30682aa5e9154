"""Each hidden neuron's input weights as a wave over the operand's residues, its spectrum, and the
embedding's spectrum: the picture of Google PAIR's explorable (Pearce et al. 2023, "Do Machine
Learning Models Memorize or Generalize?"), where a memorizing network's neurons are noisy and
a generalizing one's are clean single-frequency waves that cluster into a few frequency groups,
the Fourier features Nanda et al. 2023 (arXiv 2301.05217, §4) find in the trained model.

The wave of neuron j is its pre-activation's dependence on one operand, read off the weights
(no forward pass), in the coordinate order of ``groklab.measure.fourier`` (residues 0..p-1 for
x±y; discrete logs for x*y, x/y):

* PairMLP (PAIR): ``(W_E @ W_in)[a, j]`` — the effective weight of neuron j on operand value a
  (the model adds the same table's rows for both operands).
* MLPNet, one-hot inputs: the first layer's weight of neuron j on operand x = a,
  ``layers.0.weight[j, a]`` (a one-hot input times a matrix is an embedding); the y-operand's
  columns are the analogous wave. With ``embed="learned"``: ``W_E[a] @ W[j, :d]``. Always the
  first hidden layer, the only one that sees the operands directly.
* Transformer: the MLP neurons of the first block fed by the embedding through every head's OV
  circuit, ``W_E @ Σ_h W_V^h W_O^h @ W_in`` — the path an operand token takes to the neurons at
  the ``=`` position, with the attention pattern (≈ ½ per operand in Nanda's model), the
  positional embedding and any LayerNorm left out.

``circuit.neuron_clusters`` groups neurons by their activations over the whole n² grid (a 2-D
DFT after a forward pass); this reads the weights only, one operand, so it takes milliseconds
per checkpoint and works on a run's every checkpoint while the dashboard scrubs.

Spectra use the real Fourier basis of ``fourier.fourier_basis``: the magnitude of frequency k is
the norm of the cos-k and sin-k coefficients; the constant is left out. A neuron's ``purity`` is
the share of its wave's (non-constant) power in its dominant frequency: 1 for a pure cosine,
about 2/n on average for white noise.

    >>> view = neuron_view(model.state_dict(), frame.tokens)   # or from a checkpoint's weights
    >>> [(g["freq"], g["neurons"]) for g in view["groups"]]
"""
from __future__ import annotations

from functools import lru_cache

import torch

from groklab.measure.fourier import SUPPORTED_OPS, fourier_basis, primitive_root

#: a neuron with less of its power in one frequency than this is in the "no single frequency" group
PURE = 0.5
#: at most this many neurons are returned (those with the largest waves); PAIR's model has 24
MAX_NEURONS = 64


def frame_tokens(op: str, p: int) -> torch.Tensor:
    """The token of each coordinate, as ``fourier.frame_for`` orders them, without building the
    task: residues 0..p-1 for x±y, g^i (g the smallest primitive root) for x*y and x/y.
    Raises ValueError for other ops or a non-prime p with x*y, x/y."""
    if op not in SUPPORTED_OPS:
        raise ValueError(f"the neuron view supports modular ops {', '.join(SUPPORTED_OPS)}, not {op!r}")
    if SUPPORTED_OPS[op][0] == "fourier":
        return torch.arange(p)
    if p < 3 or any(p % d == 0 for d in range(2, int(p ** 0.5) + 1)):
        raise ValueError(f"the discrete-log basis for {op!r} needs a prime p >= 3, not {p}")
    g = primitive_root(p)
    return torch.tensor([pow(g, i, p) for i in range(p - 1)])


def _get(w: dict, key: str) -> torch.Tensor:
    if key not in w:
        raise ValueError(f"the weights have no {key!r}: not a PairMLP, MLP or transformer of a modular task")
    return w[key].double()


def input_waves(w: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """Each hidden neuron's input-weight wave (module doc) from a state dict: (n, N) float64,
    row i = the coordinate with token ``tokens[i]``."""
    if "blocks.0.mlp.W_in" in w:                                          # transformer
        W_V, W_O = _get(w, "blocks.0.attn.W_V"), _get(w, "blocks.0.attn.W_O")  # (H, d, dh), (H, dh, d)
        ov = torch.einsum("hdk,hke->de", W_V, W_O)                         # (d, d)
        return _get(w, "W_E")[tokens] @ ov @ _get(w, "blocks.0.mlp.W_in")  # (n, d_mlp)
    if "layers.0.weight" in w:                                            # MLPNet
        W = _get(w, "layers.0.weight")                                     # (h, d_in)
        if "W_E" in w:
            E = _get(w, "W_E")[tokens]                                     # (n, d)
            return E @ W[:, :E.shape[1]].T                                 # (n, h)
        return W[:, tokens].T                                              # (n, h), operand x
    return _get(w, "W_E")[tokens] @ _get(w, "W_in")                       # PairMLP (n, h)


def embedding_matrix(w: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """The operands' embedding (n, d) float64, as ``extract.embedding`` reads it: ``W_E`` rows,
    or for a one-hot MLP the first layer's columns of x and of y side by side (n, 2h)."""
    if "W_E" in w:
        return _get(w, "W_E")[tokens]
    W = _get(w, "layers.0.weight")
    half = W.shape[1] // 2
    return torch.cat([W[:, tokens].T, W[:, half + tokens].T], 1)


@lru_cache(maxsize=8)
def _basis(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return fourier_basis(n)


def spectrum(x: torch.Tensor) -> torch.Tensor:
    """Magnitude of each frequency 1..n//2 of the columns of ``x`` (n, M): (n//2, M) float64,
    the norm of a column's cos-k and sin-k coefficients in the orthonormal basis (Nanda et al.
    2023, §4). Columns of a matrix with a spectrum per column; ``spectrum(E).norm(dim=1)`` is the
    embedding's spectrum."""
    B, freq = _basis(x.shape[0])
    power = torch.zeros(x.shape[0] // 2 + 1, x.shape[1], dtype=torch.float64)
    power.index_add_(0, freq, (B @ x.double()) ** 2)
    return power[1:].sqrt()


def _round(t: torch.Tensor) -> list:
    return [float(f"{v:.4g}") for v in t.tolist()]


def neuron_view(w: dict[str, torch.Tensor], tokens: torch.Tensor, max_neurons: int = MAX_NEURONS) -> dict:
    """Everything the dashboard's "Inside the model" panel draws for one checkpoint.

    Returns {"n", "n_neurons", "neurons": [{"index", "freq", "purity", "wave" (n), "dft" (n//2)}],
    "groups": [{"freq" (None: under ``PURE`` in any one frequency), "neurons": [index, ...]}],
    "embedding": (n//2) spectrum of the embedding}; groups sorted by frequency, the mixed one
    last, neurons in a group by purity (highest first). At most ``max_neurons`` neurons, those
    with the largest waves; ``n_neurons`` is the model's count. Weights that are not those of
    a modular model over ``tokens`` raise ValueError."""
    try:
        waves = input_waves(w, tokens)                             # (n, N)
        emb = spectrum(embedding_matrix(w, tokens)).norm(dim=1)    # (K,)
    except (IndexError, RuntimeError) as e:  # shapes of another model or another p
        raise ValueError(f"the weights do not fit a modular model over {len(tokens)} residues "
                         f"({str(e).splitlines()[0][:120]})") from None
    dft = spectrum(waves)                                          # (K, N)
    power = dft ** 2
    purity = power.max(0).values / power.sum(0).clamp_min(1e-300)
    dominant = power.argmax(0) + 1
    keep = waves.norm(dim=0).argsort(descending=True, stable=True)[:max_neurons].sort().values
    neurons = [{"index": int(j), "freq": int(dominant[j]), "purity": round(float(purity[j]), 4),
                "wave": _round(waves[:, j]), "dft": _round(dft[:, j])} for j in keep]
    groups: dict = {}
    for nr in sorted(neurons, key=lambda nr: -nr["purity"]):
        groups.setdefault(nr["freq"] if nr["purity"] >= PURE else None, []).append(nr["index"])
    order = sorted(groups, key=lambda f: (f is None, f or 0))
    return {"n": int(waves.shape[0]), "n_neurons": int(waves.shape[1]), "neurons": neurons,
            "groups": [{"freq": f, "neurons": groups[f]} for f in order], "embedding": _round(emb)}
