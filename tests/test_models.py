"""Model shapes, initialisation, hook points, and the fast engine against the plain computation."""
import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

import groklab
from groklab.models import build_model
from groklab.tasks import build_task

SMALL = ["task.p=23", "task.frac=0.5"]


def model_for(preset, *overrides):
    cfg = groklab.resolve(preset, overrides=list(overrides))
    task = build_task(cfg.task)
    return cfg, task, build_model(cfg, task)


def test_nanda_transformer_has_the_papers_shapes_and_init():
    cfg, task, m = model_for("nanda")
    shapes = {k: tuple(v.shape) for k, v in m.named_parameters()}
    assert shapes == {
        "W_E": (114, 128), "W_pos": (3, 128), "W_U": (128, 114),
        "blocks.0.attn.W_Q": (4, 128, 32), "blocks.0.attn.W_K": (4, 128, 32),
        "blocks.0.attn.W_V": (4, 128, 32), "blocks.0.attn.W_O": (4, 32, 128),
        "blocks.0.mlp.W_in": (128, 512), "blocks.0.mlp.b_in": (512,),
        "blocks.0.mlp.W_out": (512, 128), "blocks.0.mlp.b_out": (128,),
    }  # no LayerNorm anywhere
    # Nanda's init: randn / sqrt(d_model), W_U randn / sqrt(d_vocab), biases zero
    assert m.blocks[0].mlp.W_in.std().item() == pytest.approx(1 / math.sqrt(128), rel=0.02)
    assert m.W_U.std().item() == pytest.approx(1 / math.sqrt(114), rel=0.05)
    assert m.blocks[0].mlp.b_in.abs().max().item() == 0
    x = task.x_train[:7]
    assert m(x).shape == (7, 114)


def test_init_scale_multiplies_every_weight():
    _, _, a = model_for("default", *SMALL)
    _, _, b = model_for("default", *SMALL, "model.init_scale=3")
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(q, 3 * p), n


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_power_two_layer_transformer_has_layernorms_where_asked(norm):
    _, task, m = model_for("power", *SMALL, f"model.norm={norm}", "model.d_model=32", "model.d_mlp=64")
    names = [n for n, _ in m.named_parameters()]
    assert len(m.blocks) == 2
    assert ("ln_final.weight" in names) == (norm == "pre")
    assert any(".ln1." in n for n in names)
    assert m(task.x_val[:5]).shape == (5, 24)


def test_prieto_mlp_is_226_200_200_113_without_biases():
    _, task, m = model_for("prieto")
    assert {k: tuple(v.shape) for k, v in m.named_parameters()} == {
        "layers.0.weight": (200, 226), "layers.1.weight": (200, 200), "layers.2.weight": (113, 200)}
    x = task.x_train[:9]
    # the gathered first layer equals the one-hot matmul
    onehot = torch.cat([F.one_hot(x[:, 0], 113), F.one_hot(x[:, 1], 113)], 1).float()
    h = F.relu(onehot @ m.layers[0].weight.T)
    h = F.relu(h @ m.layers[1].weight.T)
    assert torch.allclose(m(x), h @ m.layers[2].weight.T, atol=1e-5)


def test_mlp_relu_in_place_is_bit_for_bit_and_a_hooked_pre_activation_stays_unrectified():
    """Without a hook on ``hooks_pre.i`` the MLP rectifies in place; with one (an analysis
    holding the pre-activation) it does not, and the hook sees negative values. Both give the
    same logits and gradients bit for bit."""
    _, task, m = model_for("prieto", *SMALL, "model.hidden=[32,32]")
    x, y = task.x_train, task.y_train

    def run(hooks):
        m.zero_grad()
        with m.hooks(hooks):
            out = m(x)
            F.cross_entropy(out, y).backward()
        return out.detach(), [p.grad.clone() for p in m.parameters()]

    seen = {}
    keep = {f"hooks_pre.{i}": (lambda a, h, i=i: seen.setdefault(i, a)) for i in range(2)}
    plain, hooked = run({}), run(keep)
    assert all(seen[i].min() < 0 for i in range(2))  # the pre-activations, not rectified
    assert torch.equal(plain[0], hooked[0])
    assert all(torch.equal(a, b) for a, b in zip(plain[1], hooked[1]))
    # and only ReLU is taken in place: a GELU MLP stays GELU
    _, task, m = model_for("prieto", *SMALL, "model.hidden=[32,32]", "model.act=gelu")
    x = task.x_train[:9]
    onehot = torch.cat([F.one_hot(x[:, 0], 23), F.one_hot(x[:, 1], 23)], 1).float()
    h = F.gelu(F.gelu(onehot @ m.layers[0].weight.T) @ m.layers[1].weight.T)
    torch.testing.assert_close(m(x), h @ m.layers[2].weight.T, rtol=1e-5, atol=1e-5)


def test_mlp_on_vectors_and_learned_embeddings():
    _, task, m = model_for("default", "task.name=parity", "task.n_bits=10", "model.arch=mlp",
                           "model.hidden=16,8", "model.bias=true")
    assert m(task.x_train[:4]).shape == (4, 2)
    _, task, m = model_for("default", *SMALL, "model.arch=mlp", "model.embed=learned", "model.d_model=8")
    assert m.W_E.shape == (23, 8) and m.layers[0].weight.shape[1] == 16
    assert m(task.x_train[:4]).shape == (4, 23)


def test_hook_points_cache_the_activations_analyses_read():
    _, task, m = model_for("default", *SMALL, "model.d_model=32", "model.d_mlp=64", "model.n_heads=2")
    x = task.x_val[:6]
    logits, cache = m.run_with_cache(x, fast=False)
    assert cache["hook_embed"].shape == (6, 3, 32)
    assert cache["blocks.0.attn.hook_pattern"].shape == (6, 2, 3, 3)
    assert cache["blocks.0.mlp.hook_pre"].shape[-1] == 64
    assert cache["blocks.0.mlp.hook_post"].min() >= 0          # after ReLU
    assert cache["hook_resid_final"].shape == (6, 32)
    assert torch.equal(cache["hook_logits"], logits)
    # causal: the pattern never attends forward, and rows sum to one
    pat = cache["blocks.0.attn.hook_pattern"]
    assert pat[..., 0, 1:].abs().max() == 0
    assert torch.allclose(pat.sum(-1), torch.ones(6, 2, 3))
    with pytest.raises(KeyError, match="unknown hook point"):
        with m.hooks({"blocks.7.nope": lambda a, h: a}):
            pass


def test_a_hook_can_edit_an_activation():
    _, task, m = model_for("default", *SMALL, "model.d_model=32", "model.d_mlp=64", "model.n_heads=2")
    x = task.x_val[:6]
    with m.hooks({"blocks.0.mlp.hook_post": lambda a, h: torch.zeros_like(a)}):
        ablated = m(x, fast=False)
    assert not torch.allclose(ablated, m(x, fast=False))


def plain_forward(m, tokens):
    """Nanda's 1-layer transformer written out position by position, no tables, no shortcuts."""
    b = m.blocks[0]
    x = m.W_E[tokens] + m.W_pos[: tokens.shape[1]]                         # (B, S, d)
    q = torch.einsum("bsd,hde->bhse", x, b.attn.W_Q)
    k = torch.einsum("bsd,hde->bhse", x, b.attn.W_K)
    v = torch.einsum("bsd,hde->bhse", x, b.attn.W_V)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    S = tokens.shape[1]
    scores = scores.masked_fill(torch.triu(torch.ones(S, S, dtype=torch.bool), 1), float("-inf"))
    z = scores.softmax(-1) @ v                                              # (B, H, S, dh)
    x = x + torch.einsum("bhse,hed->bsd", z, b.attn.W_O)
    x = x + F.relu(x @ b.mlp.W_in + b.mlp.b_in) @ b.mlp.W_out + b.mlp.b_out
    return x[:, -1] @ m.W_U


def test_fast_engine_equals_the_plain_computation_forward_and_backward():
    _, task, m = model_for("nanda", *SMALL)
    m = m.double()
    x = task.x_train
    fast, slow, plain = m(x, fast=True), m(x, fast=False), plain_forward(m, x)
    assert torch.allclose(fast, plain, rtol=1e-10, atol=1e-10)
    assert torch.allclose(slow, plain, rtol=1e-10, atol=1e-10)
    grads = []
    for f in (lambda: m(x, fast=True), lambda: plain_forward(m, x)):
        m.zero_grad()
        F.cross_entropy(f(), task.y_train).backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], rtol=1e-9, atol=1e-12), n


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_fast_last_position_path_equals_full_path_with_layernorm(norm):
    _, task, m = model_for("power", *SMALL, f"model.norm={norm}", "model.d_model=32", "model.d_mlp=64",
                           "model.dropout=0", "model.n_layers=1")
    m = m.double().eval()
    assert torch.allclose(m(task.x_val, fast=True), m(task.x_val, fast=False), rtol=1e-10, atol=1e-10)


def plain_forward_layers(m, tokens, norm, act=F.relu):
    """Power's n-layer transformer written out from the papers' formulas: every position through
    every layer, LayerNorm before (pre) or after (post) each residual branch, no shortcuts."""
    ln = lambda x, mod: F.layer_norm(x, x.shape[-1:], mod.weight, mod.bias, mod.eps)  # noqa: E731
    S = tokens.shape[1]
    x = m.W_E[tokens] + m.W_pos[:S]                                                # (B, S, d)
    causal = torch.triu(torch.ones(S, S, dtype=torch.bool), 1)
    for b in m.blocks:
        h = ln(x, b.ln1) if norm == "pre" else x
        q, k, v = (torch.einsum("bsd,hde->bhse", h, W) for W in (b.attn.W_Q, b.attn.W_K, b.attn.W_V))
        scores = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(causal, float("-inf"))
        a = torch.einsum("bhse,hed->bsd", scores.softmax(-1) @ v, b.attn.W_O)
        if norm == "pre":
            x = x + a
            h = ln(x, b.ln2)
            x = x + act(h @ b.mlp.W_in + b.mlp.b_in) @ b.mlp.W_out + b.mlp.b_out
        else:
            x = ln(x + a, b.ln1)
            x = ln(x + act(x @ b.mlp.W_in + b.mlp.b_in) @ b.mlp.W_out + b.mlp.b_out, b.ln2)
    x = x[:, -1]
    if norm == "pre":
        x = ln(x, m.ln_final)
    return x @ m.W_U


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_two_layer_fast_path_equals_the_plain_computation_forward_and_backward(norm):
    """With two layers the fast path runs only the last layer's query, MLP and unembedding at the
    answer position; LayerNorm gains and biases are randomised so that a swapped or skipped norm
    shows."""
    _, task, m = model_for("power", *SMALL, f"model.norm={norm}", "model.d_model=32", "model.d_mlp=64",
                           "model.dropout=0", "model.n_layers=2")
    m = m.double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if ".ln" in name or name.startswith("ln_"):
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5 + (1.0 if "weight" in name else 0.0))
    x, y = task.x_train, task.y_train
    plain = plain_forward_layers(m, x, norm)
    assert torch.allclose(m(x, fast=True), plain, rtol=1e-10, atol=1e-10)
    assert torch.allclose(m(x, fast=False), plain, rtol=1e-10, atol=1e-10)
    grads = []
    for f in (lambda: m(x, fast=True), lambda: plain_forward_layers(m, x, norm)):
        m.zero_grad()
        F.cross_entropy(f(), y).backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], rtol=1e-9, atol=1e-12), n


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("n_keys,n_queries", [(3, 1), (3, 3), (5, 5), (20, 1), (20, 20)])
def test_attention_kernels_equal_einsum_and_softmax_for_few_and_many_keys(n_keys, n_queries, compiled, monkeypatch):
    """The few-key CPU paths (≤ 16 keys: the compiled kernels, or without them broadcast
    products; softmax along a leading dimension) and the einsum path (more keys) give einsum's
    and softmax's values and gradients. ``dh`` = 13: the kernels' 8 lanes and a tail."""
    from groklab.models import ops
    from groklab.models.ops import FEW_KEYS, attention_scores, attention_values, softmax_last
    assert (n_keys <= FEW_KEYS) == (n_keys == 3 or n_keys == 5)  # both paths are exercised
    if not compiled:
        monkeypatch.setattr(ops, "can_fuse", lambda *t: False)
    calls = {n: mock.Mock(wraps=getattr(ops, n)) for n in ("few_key_scores", "few_key_values")}
    for n, spy in calls.items():
        monkeypatch.setattr(ops, n, spy)
    g = torch.Generator().manual_seed(0)
    B, H, dh = 7, 4, 13
    q, k, v = (torch.randn(B, s, H, dh, generator=g, dtype=torch.float64, requires_grad=True)
               for s in (n_queries, n_keys, n_keys))
    causal = torch.arange(n_keys)[None, :] > torch.arange(n_keys - n_queries, n_keys)[:, None]

    def attend(scores_fn, softmax_fn, values_fn):
        pattern = softmax_fn(scores_fn(q, k).masked_fill(causal, float("-inf")))
        return values_fn(pattern, v), pattern

    ours = attend(attention_scores, softmax_last, attention_values)
    ref = attend(lambda q, k: torch.einsum("bqhd,bkhd->bhqk", q, k), lambda s: s.softmax(-1),
                 lambda p, v: torch.einsum("bhqk,bkhd->bqhd", p, v))
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    w = torch.randn(ours[0].shape, generator=g, dtype=torch.float64)
    grads = [torch.autograd.grad((out * w).sum(), (q, k, v)) for out, _ in (ours, ref)]
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-13)
    assert calls["few_key_scores"].called == (compiled and n_keys <= FEW_KEYS)
    assert calls["few_key_values"].called == (compiled and (n_keys <= FEW_KEYS or n_queries == 1))
