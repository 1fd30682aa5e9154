"""The teacher's data as a file that leaves groklab: ``groklab gtn sample RUN --n N --out FILE``.

A GTN teaches a learner with T batches of B generated examples, one batch per inner step, at
the learned step sizes; ``sample`` writes exactly those batches — drawn by the same generator,
curriculum and plans as the evaluation protocol (``gtn/eval.py``) — to an ``.npz``
(``np.savez``, every array numeric or a plain string, so ``np.load(f, allow_pickle=False)``
reads it). Examples are in curriculum order: unroll k (the plan of evaluation learner k with
the default ``seed``), then inner step t, then the slot in the batch. Arrays (N examples,
C classes, T inner steps; float is the run's ``meta.dtype``, float32 unless set)::

    x         (N, *shape) float   generated inputs, in the run's normalised units
    y         (N,)        int64   the class the generator was asked for (its one-hot input)
    target    (N, C)      float   what the learner is trained on: the learned soft labels,
                                  or one_hot(y) when the run did not learn labels
    step      (N,)        int64   the inner step t (0 … T-1) whose batch holds the example
    unroll    (N,)        int64   which draw of the curriculum (learner) it belongs to
    lr        (T,)        float   the learned learning rate η_t of every inner step
    momentum  (T,)        float   the learned momentum μ_t of every inner step
    mean, std ()          float64 the real data's normalisation: raw = x · std + mean
    batch     ()          int64   B, examples per inner step
    seed      ()          int64   the plan of unroll k was drawn from torch seed ``seed + k``
    learned_labels ()     bool
    data, generator, curriculum ()  str   data.name, generator.kind, inner.curriculum

With the ``full`` curriculum every unroll is the same T·B examples (nothing is random); the
other curricula draw new orders (``shuffled_batch``, ``all_shuffled``) or new noise and labels
(``none``) per unroll. Batches are generated whole (the generator's BatchNorm uses the batch's
statistics), so N that is not a multiple of B cuts the last batch.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from groklab.config import ConfigError

MAX_EXAMPLES = 1_000_000
MAX_BYTES = 1 << 30          # of generated inputs in memory and on disk
EVAL_PLAN_OFFSET = 7_919     # eval.py draws learner i's plan from seed eval.seed + i + 7919


def max_examples(d_in: int, itemsize: int = 4) -> int:
    """The largest --n: a million examples, or fewer where their inputs would pass 1 GiB."""
    return max(1, min(MAX_EXAMPLES, MAX_BYTES // (d_in * itemsize)))


def default_seed(cfg) -> int:
    """Unroll k of the file is evaluation learner k's data."""
    return cfg.eval.seed + EVAL_PLAN_OFFSET


@torch.no_grad()
def sample(cfg, teacher, data, n: int, seed: int) -> dict[str, np.ndarray]:
    """The first ``n`` examples the teacher feeds its learners, in curriculum order, as the
    arrays of the module docstring. Unroll k's plan is drawn from ``torch.Generator()``
    seeded ``seed + k`` (``eval.generated_examples``, as the evaluation protocol draws it)."""
    from groklab.gtn.eval import generated_examples
    C = data.n_classes
    cols: dict[str, list[torch.Tensor]] = {"x": [], "y": [], "target": [], "step": [], "unroll": []}
    k, have = 0, 0
    while have < n:
        for t, (x, target, y) in enumerate(generated_examples(teacher, torch.Generator().manual_seed(seed + k))):
            m = min(len(x), n - have)
            soft = target if target.is_floating_point() else F.one_hot(target, C).to(x.dtype)
            for key, v in (("x", x), ("y", y), ("target", soft), ("step", torch.full_like(y, t)),
                           ("unroll", torch.full_like(y, k))):
                cols[key].append(v[:m])
            have += m
            if have == n:
                break
        k += 1
    out = {key: torch.cat(v).numpy() for key, v in cols.items()}
    return {**out, "lr": teacher.log_lr.detach().exp().numpy(),
            "momentum": teacher.log_mom.detach().exp().numpy(),
            "mean": np.float64(data.mean), "std": np.float64(data.std),
            "batch": np.int64(cfg.inner.batch), "seed": np.int64(seed),
            "learned_labels": np.bool_(teacher.curriculum.label_logits is not None),
            "data": np.str_(cfg.data.name), "generator": np.str_(cfg.generator.kind),
            "curriculum": np.str_(cfg.inner.curriculum)}


def check_out(out: str | Path) -> Path:
    p = Path(out)
    if p.exists() or p.is_symlink():
        raise ConfigError(f"--out {str(p)!r} already exists; sample writes only a new file")
    if not p.parent.is_dir():
        raise ConfigError(f"--out {str(p)!r}: the directory {str(p.parent)!r} does not exist")
    return p


def write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, never replacing a file that appeared meanwhile:
    a temporary file in the same directory, hard-linked to its name (which fails if taken)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise ConfigError(f"--out {str(path)!r} is not writable: {e.strerror or type(e).__name__}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise ConfigError(f"--out {str(path)!r} already exists; sample writes only a new file") from None
        except OSError as e:
            raise ConfigError(f"--out {str(path)!r} could not be written: {e.strerror or type(e).__name__}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def sample_run(run_dir: str | Path, out: str | Path, n: int | None = None, seed: int | None = None,
               data=None) -> dict[str, np.ndarray]:
    """Sample ``n`` examples (default T·B, one learner's data) of a GTN run into a new ``out``.
    Only reads the run: a run being trained or a read-only one can be sampled."""
    from groklab.gtn.config import SEED_MAX
    from groklab.gtn.run import open_gtn_run
    out = check_out(out)
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"--seed {seed}: expected 0 to {SEED_MAX}")
    cfg, teacher, data = open_gtn_run(run_dir, data)
    top = max_examples(data.d_in, data.x_train.element_size())
    n = cfg.inner.steps * cfg.inner.batch if n is None else n
    if not 1 <= n <= top:
        raise ConfigError(f"--n {n}: expected 1 to {top} (at most {MAX_EXAMPLES:,} examples and 1 GiB of "
                          f"inputs for data.name={cfg.data.name!r})")
    arrays = sample(cfg, teacher, data, n, default_seed(cfg) if seed is None else seed)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_new(out, buf.getvalue())
    return arrays
