"""The fused CPU kernels (groklab.models.fused) against the eager computation they replace."""
import subprocess
import sys
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

import groklab
import groklab.models.transformer as transformer
from groklab.models import build_model, fused
from groklab.models.fused import can_fuse, gathered_weighted_sum
from groklab.tasks import build_task


def eager_weighted_sum(p, table, rows):
    """The reference: gather a (B, S, H, dh) copy of the rows, weight them, sum over S."""
    return (p.permute(2, 1, 0).unsqueeze(-1) * table[rows]).sum(1)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-13), (torch.float32, 1e-5)])
def test_gathered_weighted_sum_equals_gather_weight_and_sum_with_gradients(dtype, tol):
    """Values and both gradients, with rows repeated across examples and within one (the
    table's gradient must accumulate every use of a row)."""
    g = torch.Generator().manual_seed(0)
    H, S, B, R, dh = 4, 3, 257, 11, 13  # dh: 8 lanes and a tail
    p = torch.rand(H, S, B, generator=g, dtype=dtype).requires_grad_()
    table = torch.randn(R, H, dh, generator=g, dtype=dtype, requires_grad=True)
    rows = torch.randint(0, R, (B, S), generator=g)
    rows[0] = 5  # one example reads a row at every position
    w = torch.randn(B, H, dh, generator=g, dtype=dtype)
    outs = [f(p, table, rows) for f in (gathered_weighted_sum, eager_weighted_sum)]
    torch.testing.assert_close(outs[0], outs[1], rtol=tol, atol=tol)
    grads = [torch.autograd.grad((o * w).sum(), (p, table)) for o in outs]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    # only p's gradient asked for: the table's is neither computed nor returned
    (gp,) = torch.autograd.grad((gathered_weighted_sum(p, table.detach(), rows) * w).sum(), (p,))
    torch.testing.assert_close(gp, grads[1][0], rtol=tol, atol=tol)


def test_gathered_weighted_sum_refuses_rows_outside_the_table():
    p, table = torch.rand(2, 3, 4), torch.randn(5, 2, 8)
    for bad in (5, -1):
        rows = torch.zeros(4, 3, dtype=torch.long)
        rows[2, 1] = bad
        with pytest.raises(IndexError, match="out of range for a table of 5 rows"):
            gathered_weighted_sum(p, table, rows)


def nanda_small(dtype=torch.float64):
    cfg = groklab.resolve("nanda", overrides=["task.p=23", "task.frac=0.5", "model.d_model=32",
                                              "model.d_mlp=64", "model.n_heads=4"])
    task = build_task(cfg.task)
    return task, build_model(cfg, task).to(dtype)


def forward_and_grads(m, x, y):
    m.zero_grad()
    out = m(x)
    F.cross_entropy(out, y).backward()
    return out.detach(), {n: p.grad.clone() for n, p in m.named_parameters()}


def test_one_layer_model_takes_the_fused_kernel_on_cpu_and_the_eager_path_under_a_hook():
    """The kernel is what the fast path runs on CPU; a hook on the pattern (an analysis reading
    or editing it) takes the eager path; both give the same logits and gradients."""
    task, m = nanda_small()
    x, y = task.x_train, task.y_train
    with mock.patch.object(transformer, "gathered_weighted_sum", wraps=gathered_weighted_sum) as spy:
        fused = forward_and_grads(m, x, y)
        assert spy.call_count == 1
        seen = {}
        with m.hooks({"blocks.0.attn.hook_pattern": lambda a, h: seen.setdefault("pattern", a)}):
            eager = forward_and_grads(m, x, y)
        assert spy.call_count == 1 and seen["pattern"].shape == (len(x), 4, 1, 3)
    torch.testing.assert_close(fused[0], eager[0], rtol=1e-12, atol=1e-12)
    for n in fused[1]:
        torch.testing.assert_close(fused[1][n], eager[1][n], rtol=1e-10, atol=1e-12, msg=n)


def test_one_layer_model_under_vmap_and_grad_takes_the_eager_path():
    """torch.func transforms (the vmap ensemble trainer) cannot see into a compiled loop:
    ``can_fuse`` says no under them, and the vmapped gradients equal the per-model ones."""
    task, m0 = nanda_small()
    _, m1 = nanda_small()
    with torch.no_grad():
        for p in m1.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x, y = task.x_train[:40], task.y_train[:40]
    params, buffers = stack_module_state([m0, m1])

    def loss(p, b):
        assert not can_fuse(x.float())
        return F.cross_entropy(functional_call(m0, (p, b), (x,)), y)

    vgrads = vmap(grad(loss), in_dims=(0, 0))(params, buffers)
    assert can_fuse(x.float())
    for i, m in enumerate((m0, m1)):
        _, want = forward_and_grads(m, x, y)
        for n in want:
            torch.testing.assert_close(vgrads[n][i], want[n], rtol=1e-10, atol=1e-12, msg=n)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-13), (torch.float32, 1e-5)])
def test_few_key_scores_and_values_equal_the_broadcast_products_with_gradients(dtype, tol):
    """q·k over a few keys and the weighted sum of the values, against the broadcast products
    they replace, in both dtypes: values and every gradient (dh = 37: lanes and a tail)."""
    from groklab.models.fused import few_key_scores, few_key_values
    g = torch.Generator().manual_seed(0)
    B, Sq, S, H, dh = 33, 2, 5, 3, 37
    q = torch.randn(B, Sq, H, dh, generator=g, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(B, S, H, dh, generator=g, dtype=dtype, requires_grad=True) for _ in "kv")
    p = torch.rand(B, H, Sq, S, generator=g, dtype=dtype, requires_grad=True)
    pairs = [(few_key_scores(q, k), (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1).permute(0, 3, 1, 2)),
             (few_key_values(p, v), (p.permute(0, 2, 3, 1).unsqueeze(-1) * v.unsqueeze(1)).sum(2))]
    for (ours, ref), inputs in zip(pairs, ((q, k), (p, v))):
        torch.testing.assert_close(ours, ref, rtol=tol, atol=tol)
        w = torch.randn(ref.shape, generator=g, dtype=dtype)
        for a, b in zip(*(torch.autograd.grad((o * w).sum(), inputs) for o in (ours, ref))):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def power_small(dtype=torch.float64, p=23):
    cfg = groklab.resolve("grokfast-baseline", overrides=[f"task.p={p}", "model.d_model=32", "model.d_mlp=64"])
    task = build_task(cfg.task)
    return task, build_model(cfg, task).to(dtype)


def test_two_layer_model_takes_the_few_key_kernels_and_a_hook_still_edits_the_pattern():
    """Power's 2-layer model runs both layers' attention through the compiled kernels on CPU,
    to the eager path's logits and gradients; a hook that flattens the pattern is obeyed."""
    from groklab.models import ops
    task, m = power_small()
    x, y = task.x_train[:64], task.y_train[:64]
    with mock.patch.object(ops, "few_key_values", wraps=ops.few_key_values) as spy:
        fused_run = forward_and_grads(m, x, y)
        assert spy.call_count == 2  # one per layer
    with mock.patch.object(ops, "can_fuse", lambda *t: False):
        eager_run = forward_and_grads(m, x, y)
    torch.testing.assert_close(fused_run[0], eager_run[0], rtol=1e-12, atol=1e-12)
    for n in fused_run[1]:
        torch.testing.assert_close(fused_run[1][n], eager_run[1][n], rtol=1e-10, atol=1e-12, msg=n)
    flat = lambda a, h: torch.where(a > 0, 1.0, 0.0) / (a > 0).sum(-1, keepdim=True)  # noqa: E731
    shared = lambda a, h: a.mean(0, keepdim=True)  # noqa: E731  (1, H, Sq, S): broadcast over examples
    for edit in (flat, shared):
        outs = []
        for fuse in (True, False):
            with m.hooks({"blocks.1.attn.hook_pattern": edit}), \
                    mock.patch.object(ops, "can_fuse", ops.can_fuse if fuse else lambda *t: False):
                outs.append(m(x))
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
        assert not torch.allclose(outs[0], fused_run[0], atol=1e-3)  # the edit took effect


def test_few_key_kernels_refuse_shapes_that_do_not_agree():
    """The compiled loops index by the shapes they are given: a mismatch raises, never reads
    past a tensor's end."""
    from groklab.models.fused import few_key_scores, few_key_values
    q, k = torch.randn(4, 2, 3, 8), torch.randn(4, 5, 3, 8)
    few_key_scores(q, k), few_key_values(torch.rand(4, 3, 2, 5), k)  # agreeing shapes run
    for args in ((q, k[:2]), (q, k[..., :4]), (q[:, :, :2], k), (q[:, :0], k), (q, k[:, :0])):
        with pytest.raises(ValueError, match="attention shapes do not agree"):
            few_key_scores(*args)
    for p in (torch.rand(1, 3, 2, 5), torch.rand(4, 3, 2, 4), torch.rand(4, 3, 5), torch.rand(4, 3, 0, 5)):
        with pytest.raises(ValueError, match="attention shapes do not agree"):
            few_key_values(p, k)
    with pytest.raises(ValueError, match="attention shapes do not agree"):
        few_key_values(torch.rand(4, 3, 2, 0), k[:, :0])


def test_two_layer_model_gradients_repeat_exactly_with_two_threads():
    """The embedding's gradient is summed in a fixed order (``index_add_``), not by
    ``index_put_``'s accumulation, whose order varies between calls with two threads in float32
    (torch 2.13, CPU; float64 repeats; above 32,768 elements, ATen's grain: mod 97's 4,704 pairs)."""
    task, m = power_small(torch.float32, p=97)
    x, y = task.x_train, task.y_train
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first, *again = (forward_and_grads(m, x, y)[1] for _ in range(4))
    finally:
        torch.set_num_threads(threads)
    for grads in again:
        for n in first:
            assert torch.equal(first[n], grads[n]), n


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pair_rows_is_bit_for_bit_two_gathers_and_an_add_with_gradient(dtype):
    """``table[a] + table[b]`` for a one-hot pair's two halves of the table (a < n <= b), rows
    repeated many times: the same bits forward and in the table's gradient as the eager path."""
    from groklab.models.fused import pair_rows
    from groklab.models.ops import take_rows
    g = torch.Generator().manual_seed(0)
    n, w, B = 13, 40, 3000
    table = torch.randn(2 * n, w, generator=g, dtype=dtype, requires_grad=True)
    a = torch.randint(0, n, (B,), generator=g)
    b = torch.randint(0, n, (B,), generator=g) + n
    up = torch.randn(B, w, generator=g, dtype=dtype) * torch.logspace(-6, 6, w, dtype=dtype)  # rounding shows
    fused, eager = pair_rows(table, a, b), take_rows(table, a) + take_rows(table, b)
    assert torch.equal(fused, eager)
    g_fused, g_eager = (torch.autograd.grad((h * up).sum(), table)[0] for h in (fused, eager))
    assert torch.equal(g_fused, g_eager)
    with pytest.raises(IndexError, match="out of range for a table of 26 rows"):
        pair_rows(table, a, b + n)


def test_one_hot_mlp_takes_the_pair_kernel_and_trains_bit_for_bit_as_the_eager_path():
    """Prieto's MLP on a+b mod p: the first layer runs the pair kernel on CPU, and ten AdamW
    steps leave every weight exactly where the eager path (two gathers and an add) leaves it."""
    from groklab.train.loop import Trainer
    cfg = groklab.resolve("prieto", overrides=["task.p=23", "task.frac=0.5", "model.hidden=[32,32]"])
    from groklab.models import mlp
    weights = []
    for fuse in (True, False):
        with mock.patch.object(mlp, "pair_rows", wraps=mlp.pair_rows) as spy, \
                mock.patch.object(mlp, "can_fuse", can_fuse if fuse else lambda *t: False):
            tr = Trainer.build(cfg)
            for _ in range(10):
                tr.update(tr.forward()[0])
            assert spy.called == fuse
        weights.append({n: p.detach().clone() for n, p in tr.model.named_parameters()})
    for n in weights[0]:
        assert torch.equal(weights[0][n], weights[1][n]), n


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """``fused._library`` rebuilt from scratch in a cache of the test's own."""
    monkeypatch.setenv("GROKLAB_CACHE", str(tmp_path))
    fused._library.cache_clear()
    yield tmp_path
    fused._library.cache_clear()  # the next caller loads the user's cache again


def test_kernels_compile_once_into_the_cache_and_load_from_it(fresh_library, monkeypatch):
    assert fused.available()
    (lib,) = (fresh_library / "kernels").glob("fused-*.so")
    built = lib.stat().st_mtime_ns
    fused._library.cache_clear()
    monkeypatch.setattr(fused.subprocess, "run", lambda *a, **k: pytest.fail("compiled again"))
    assert fused.available() and lib.stat().st_mtime_ns == built
    assert [p.name for p in (fresh_library / "kernels").iterdir()] == [lib.name]  # no temporary left


def kernel_outputs(dtype):
    """Every kernel's outputs and gradients on fixed random inputs, in one list."""
    from groklab.models.fused import few_key_scores, few_key_values, pair_rows
    g = torch.Generator().manual_seed(0)
    B, S, H, dh = 50, 4, 3, 37
    q, k, v = (torch.randn(B, S, H, dh, generator=g, dtype=dtype, requires_grad=True) for _ in "qkv")
    p = torch.rand(B, H, S, S, generator=g, dtype=dtype, requires_grad=True)
    pt = torch.rand(H, S, B, generator=g, dtype=dtype, requires_grad=True)
    table = torch.randn(20, H, dh, generator=g, dtype=dtype, requires_grad=True)
    rows = torch.randint(0, 20, (B, S), generator=g)
    a, b = torch.randint(0, 10, (B,), generator=g), torch.randint(10, 20, (B,), generator=g)
    outs = [few_key_scores(q, k), few_key_values(p, v), gathered_weighted_sum(pt, table, rows),
            pair_rows(table.view(20, -1), a, b)]
    w = [torch.randn(o.shape, generator=g, dtype=dtype) for o in outs]
    grads = torch.autograd.grad(sum((o * wi).sum() for o, wi in zip(outs, w)), (q, k, v, p, pt, table))
    return [o.detach() for o in outs] + list(grads)


def test_the_avx2_build_gives_the_portable_builds_bits(fresh_library, monkeypatch):
    """Where torch runs with AVX2 the library is built with ``-mavx2`` (a file of its own in the
    cache); its kernels give the same bits as the build for any x86-64."""
    if "-mavx2" not in fused._flags():
        pytest.skip("this CPU (or torch's ATEN_CPU_CAPABILITY) runs without AVX2")
    wide = [kernel_outputs(dt) for dt in (torch.float32, torch.float64)]
    fused._library.cache_clear()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    assert "-mavx2" not in fused._flags()
    portable = [kernel_outputs(dt) for dt in (torch.float32, torch.float64)]
    assert len(list((fresh_library / "kernels").glob("fused-*.so"))) == 2
    for w, p in zip(sum(wide, []), sum(portable, [])):
        assert torch.equal(w, p)


def test_a_damaged_library_in_the_cache_is_built_again_and_cc_may_carry_flags(fresh_library, monkeypatch):
    monkeypatch.setenv("CC", "cc -O2")  # $CC as make uses it: a command with flags
    assert fused.available()
    (lib,) = (fresh_library / "kernels").glob("fused-*.so")
    lib.unlink()  # a new file: this process still maps the old one
    lib.write_bytes(b"not a library")
    # a fresh process (this one's dlopen would hand back the library it has loaded)
    code = "from groklab.models import fused; print(fused.available())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True" and lib.read_bytes()[:4] == b"\x7fELF"


@pytest.mark.parametrize("env", [{"CC": "/nonexistent/cc"}, {"GROKLAB_NO_KERNELS": "1"}])
def test_without_a_compiler_the_eager_path_runs_with_the_same_results(fresh_library, monkeypatch, env):
    """No compiler (or the kernels switched off): ``available()`` says so, nothing is left in
    the cache, and the models train through their eager paths to the same numbers."""
    task, m = nanda_small()
    x, y = task.x_train, task.y_train
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert not fused.available() and not can_fuse(x.double())
    assert not [p for p in fresh_library.rglob("*") if p.is_file()]  # no half-built library
    got = forward_and_grads(m, x, y)
    for k in env:
        monkeypatch.delenv(k)
    fused._library.cache_clear()
    assert fused.available()
    want = forward_and_grads(m, x, y)
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    for n in got[1]:
        torch.testing.assert_close(got[1][n], want[1][n], rtol=1e-10, atol=1e-12, msg=n)


def test_can_fuse_takes_one_dtype_the_kernels_have():
    """bfloat16 (autocast) or mixed dtypes take the eager path: the kernels are float and double."""
    f32, f64 = torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.float64)
    assert can_fuse(f32) and can_fuse(f64, f64)
    assert not can_fuse(f32.bfloat16()) and not can_fuse(f32, f64)
    assert not can_fuse(f32.T)  # not contiguous
