"""Fused CPU kernels for what eager PyTorch runs as several passes over memory.

* **Attention's weighted sum over values gathered from a table**,
  ``z[b, h] = sum_k p[h, k, b] * table[rows[b, k], h]``, and its gradient. Nanda's one-layer
  model reads its values from a (position, token) table (``Transformer._one_layer_tables``);
  eager PyTorch gathers a (B, S, H, dh) copy of the rows, multiplies, sums, and in the backward
  multiplies again, sums again and scatters into the table's gradient — six passes over a few
  megabytes for a few million multiply-adds. Here the forward and the backward are each one
  loop that reads the table in place. The sums are the same sums in another order: the values
  agree with the eager path to float rounding (tested); the order is fixed, so a run repeats.
* **A one-hot pair's first layer**, ``table[a] + table[b]`` (Prieto et al.'s MLP on a+b mod p),
  and its gradient: one pass instead of two gathers and an add, one gradient buffer instead of
  two scattered into and added — bit for bit the eager result (tested).
* **Attention over a few key positions**: the scores ``q·k`` and the weighted sum of the
  values, each with its gradient (Power et al.'s two-layer model on its 3 tokens). Eager
  PyTorch broadcasts a (B, Sq, S, H, dh) product and sums it — a tensor S times the size of
  the queries, written and read again, forward and backward. Here each output is one dot
  product or one weighted sum of S rows, read in place; the same sums to float rounding.

The loops are C (``fused.c``, plain C99), compiled on first use by the system's C compiler
(``cc``, or ``$CC``) into a per-user cache (``$GROKLAB_CACHE``, else ``~/.cache/groklab``) and
loaded with ``ctypes``, which releases the GIL during a call. Numba was the first choice and
works, but costs ≈ 0.8 s in every process before the first call (importing it, its LLVM
setup, reading its cache) — more than the kernels save in a run of a few hundred steps; a
compiled library loads in a millisecond. Without a C compiler the eager path runs: the same
results, slower (``available()`` says which).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

FUSED_DTYPES = (torch.float32, torch.float64)
SOURCE = Path(__file__).with_name("fused.c")
FLAGS = ["-O3", "-std=c99", "-shared", "-fPIC", "-ffp-contract=off"]  # no FMA: the eager sums' roundings
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_KERNELS = {"wsum_forward": (4, 4), "wsum_backward": (6, 5), "pair_forward": (4, 2), "pair_backward": (4, 2),
            "scores_forward": (3, 5), "scores_backward": (5, 5), "values_forward": (3, 5),
            "values_backward": (5, 5)}
# ^ each kernel's arguments: (arrays, passed as pointers; then sizes and flags, as int64)


def _cache_dir() -> Path:
    return Path(os.environ.get("GROKLAB_CACHE") or Path.home() / ".cache" / "groklab") / "kernels"


def _flags() -> list[str]:
    """``FLAGS``, and ``-mavx2`` on an x86-64 CPU that torch's own dispatch runs with AVX2 or
    AVX-512 (``ATEN_CPU_CAPABILITY`` lowers it): the lanes' loops then use 8-wide registers,
    ≈ 25 % faster, the same operations in the same order, so the same bits (tested). The flags
    are part of the library's name in the cache, so machines sharing a cache each load their own."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return FLAGS + (["-mavx2"] if x86 and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") else [])


def _compile(cc: list[str], flags: list[str], target: Path) -> None:
    """Compile ``fused.c`` to ``target`` atomically (a temporary file renamed: two processes
    compiling at once each write a whole library)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([*cc, *flags, "-o", tmp, str(SOURCE)], check=True, capture_output=True, timeout=120)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot be built (no compiler, no writable
    cache, a compile error): then every caller takes its eager path."""
    cc = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc") or ""]
    if not cc[0] or os.environ.get("GROKLAB_NO_KERNELS"):
        return None
    flags = _flags()
    key = hashlib.sha256("\0".join([SOURCE.read_text(), *flags, *cc, platform.machine(), platform.system()])
                         .encode()).hexdigest()[:16]
    try:
        target = _cache_dir() / f"fused-{key}.so"
        if not target.exists():
            _compile(cc, flags, target)
        try:
            lib = ctypes.CDLL(str(target))
        except OSError:  # a damaged file in the cache: built again
            _compile(cc, flags, target)
            lib = ctypes.CDLL(str(target))
    except (OSError, RuntimeError, subprocess.SubprocessError):  # RuntimeError: no home directory
        return None
    for name, (arrays, ints) in _KERNELS.items():
        for suffix in _SUFFIX.values():
            fn = getattr(lib, f"{name}_{suffix}")
            fn.argtypes, fn.restype = [ctypes.c_void_p] * arrays + [ctypes.c_int64] * ints, None
    return lib


def available() -> bool:
    """Whether the compiled kernels are in use (a C compiler was found and built them)."""
    return _library() is not None


def _kernel(name: str, dtype: torch.dtype):
    return getattr(_library(), f"{name}_{_SUFFIX[dtype]}")


def can_fuse(*tensors: torch.Tensor) -> bool:
    """The fused kernels apply: compiled, plain contiguous CPU tensors of one dtype in
    ``FUSED_DTYPES``, no ``torch.func`` transform (vmap, grad) active, which a compiled loop
    could not follow."""
    if torch._C._functorch.peek_interpreter_stack() is not None or not available():
        return False
    dtype = tensors[0].dtype
    return dtype in FUSED_DTYPES and all(
        t.device.type == "cpu" and t.is_contiguous() and t.dtype == dtype for t in tensors)


def _check_rows(n_rows: int, *indices: torch.Tensor) -> None:
    for idx in indices:
        if idx.numel():
            lo, hi = (int(t) for t in torch.aminmax(idx))  # one pass, not min() and max()
            if lo < 0 or hi >= n_rows:
                raise IndexError(f"rows out of range for a table of {n_rows} rows")


class _GatheredWeightedSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, table, rows):
        H, S, B = p.shape
        z = p.new_empty((B, H, table.shape[2]))
        _kernel("wsum_forward", p.dtype)(*(t.data_ptr() for t in (p, table, rows, z)), H, S, B, table.shape[2])
        ctx.save_for_backward(p, table, rows)
        return z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gz):
        p, table, rows = ctx.saved_tensors
        gz = gz.contiguous()
        gp, gtable = torch.empty_like(p), torch.zeros_like(table)
        want_table = ctx.needs_input_grad[1]
        _kernel("wsum_backward", p.dtype)(*(t.data_ptr() for t in (gz, p, table, rows, gp, gtable)),
                                          int(want_table), *p.shape, table.shape[2])
        return gp, (gtable if want_table else None), None


def gathered_weighted_sum(p: torch.Tensor, table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """p (H, S, B), table (R, H, dh), rows (B, S) long -> (B, H, dh):
    ``sum_k p[h, k, b] * table[rows[b, k], h]``, differentiable in p and table.

    The caller checks ``can_fuse(p, table)``; rows outside the table raise, as indexing does
    (the compiled loop does not check)."""
    rows = rows.long().contiguous()
    _check_rows(table.shape[0], rows)
    return _GatheredWeightedSum.apply(p.contiguous(), table.contiguous(), rows)


class _PairRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, a, b):
        h = table.new_empty((a.shape[0], table.shape[1]))
        _kernel("pair_forward", table.dtype)(*(t.data_ptr() for t in (table, a, b, h)), *h.shape)
        ctx.save_for_backward(a, b)
        ctx.n_rows = table.shape[0]
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        g = g.contiguous()
        gtable = g.new_zeros((ctx.n_rows, g.shape[1]))
        _kernel("pair_backward", g.dtype)(*(t.data_ptr() for t in (g, a, b, gtable)), *g.shape)
        return gtable, None, None


def pair_rows(table: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """table (R, w), a and b (B,) long -> ``table[a] + table[b]`` (B, w), differentiable in table.

    The same bits as ``take_rows(table, a) + take_rows(table, b)`` when a's and b's rows are
    disjoint (a one-hot input's two halves): one addition per element forward, and each
    gradient row summed over its examples in order, as ``index_add_`` does (tested). The caller
    checks ``can_fuse(table)``; rows outside the table raise."""
    a, b = a.long().contiguous(), b.long().contiguous()
    _check_rows(table.shape[0], a, b)
    return _PairRows.apply(table.contiguous(), a, b)


def _check_shapes(agree: bool, *tensors: torch.Tensor) -> None:
    """The compiled loops trust the shapes: a mismatch raises here instead of reading out of bounds."""
    if not agree:
        raise ValueError(f"attention shapes do not agree: {', '.join(str(tuple(t.shape)) for t in tensors)}")


class _FewKey(torch.autograd.Function):
    """A few-key kernel pair, ``{name}_forward(a, b, out, *sizes)`` and ``{name}_backward(g,
    a, b, ga, gb, *sizes)``, with sizes (B, Sq, S, H, dh)."""

    @staticmethod
    def forward(ctx, a, b, name, out_shape, sizes):
        out = a.new_empty(out_shape)
        _kernel(f"{name}_forward", a.dtype)(a.data_ptr(), b.data_ptr(), out.data_ptr(), *sizes)
        ctx.save_for_backward(a, b)
        ctx.name, ctx.sizes = name, sizes
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        g = g.contiguous()  # held here: a temporary's memory would be freed before the call
        ga, gb = torch.empty_like(a), torch.empty_like(b)
        _kernel(f"{ctx.name}_backward", a.dtype)(*(t.data_ptr() for t in (g, a, b, ga, gb)), *ctx.sizes)
        return ga, gb, None, None, None


def few_key_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """q (B, Sq, H, dh), k (B, S, H, dh) -> q·k (B, H, Sq, S), unscaled, differentiable in both;
    one dot product of ``LANES`` partial sums per score. The caller checks ``can_fuse(q, k)``."""
    _check_shapes(q.dim() == k.dim() == 4 and q.shape[0] == k.shape[0] and q.shape[2:] == k.shape[2:]
                  and q.shape[1] > 0 and k.shape[1] > 0, q, k)  # the loops' sums start from a first term
    (B, Sq, H, dh), S = q.shape, k.shape[1]
    return _FewKey.apply(q, k, "scores", (B, H, Sq, S), (B, Sq, S, H, dh))


def few_key_values(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """p (B, H, Sq, S), v (B, S, H, dh) -> ``sum_j p[:, h, :, j] v[:, j, h]`` (B, Sq, H, dh),
    differentiable in both. The caller checks ``can_fuse(p, v)``."""
    (B, S, H, dh), Sq = v.shape, p.shape[2]
    _check_shapes(p.dim() == 4 and (p.shape[0], p.shape[1], p.shape[3]) == (B, H, S)
                  and Sq > 0 and S > 0, p, v)
    return _FewKey.apply(p, v, "values", (B, Sq, H, dh), (B, Sq, S, H, dh))
