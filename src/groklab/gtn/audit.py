"""Quality and bias audit of a teacher's data: ``groklab gtn audit RUN [--learners K]``.

Four questions, per class of the real data, about the T·B examples one learner is taught with
(unroll 0 of ``gtn sample``: evaluation learner 0's data):

* **labels** — how much of the generated data carries each label: the examples the generator
  was asked for per class, the argmax of their training targets (learned soft labels) and the
  mean probability mass each class receives;
* **accuracy** — the real test accuracy on each class of K fresh learners taught T steps by the
  teacher, against the same initialisations trained T real-data steps (the evaluation protocol
  of ``gtn/eval.py``: same seeds, batch B, SGD momentum 0.9, best lr of ``eval.lrs``). A class
  the teacher neglects shows up here;
* **nearest real neighbour** — the Euclidean distance (normalised units) from each generated
  example to its nearest real training example, against the same distance for real test
  examples (how far a new real example lies from the training set). Ratio ≈ 0: the teacher
  copies its training set;
* **diversity** — mean pairwise distance of the generated examples of a class against that of
  the real training examples of the class. Ratio ≈ 0: the class collapsed to one example.

A class is **neglected** when it gets under half the uniform share of label mass (0.5 / C) or
its taught accuracy falls more than 0.1 below the real-data learners'. Sets larger than
``MAX_GEN`` generated, ``MAX_REF`` real or ``MAX_CLASS`` per class (diversity) are subsampled
with a fixed seed.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from groklab.config import ConfigError

MAX_GEN, MAX_REF, MAX_CLASS = 5_000, 10_000, 1_000
NEGLECT_SHARE, NEGLECT_ACC = 0.5, 0.1


def _subsample(x: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    if len(x) <= k:
        return x
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:k]]


def nearest(a: torch.Tensor, ref: torch.Tensor, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance from each row of ``a`` (n, d) to its nearest row of ``ref`` (m, d), and that
    row's index: ((n,), (n,)). The neighbour is found by matrix products, its distance then
    recomputed exactly (a copy is at distance 0, not at rounding noise)."""
    a, ref = a.double(), ref.double()
    idx = torch.cat([torch.cdist(a[i:i + chunk], ref).argmin(1) for i in range(0, len(a), chunk)])
    return (a - ref[idx]).norm(dim=1), idx


def mean_pairwise(x: torch.Tensor) -> float | None:
    """Mean Euclidean distance over the pairs of rows of ``x`` (n, d); None for n < 2."""
    return torch.pdist(x.double()).mean().item() if len(x) >= 2 else None


def _ratio(a, b):
    return a / b if a is not None and b else None


def label_stats(y: torch.Tensor, target: torch.Tensor, C: int) -> dict:
    """``y`` (N,) the classes asked for, ``target`` (N, C) the training targets. Returns per class
    c: ``asked`` (examples generated for c), ``argmax`` (examples whose target's top class is c),
    ``mass`` (total target probability on c / N) and ``confusion`` (C, C): row c the argmax counts
    of the examples generated for c; ``mean_target`` (C, C): row c their mean target."""
    top = target.argmax(1)
    conf = torch.zeros(C, C, dtype=torch.long)
    conf.index_put_((y, top), torch.ones_like(y), accumulate=True)
    mean_t = torch.stack([target[y == c].mean(0) if (y == c).any() else torch.zeros(C, dtype=target.dtype)
                          for c in range(C)])
    return {"asked": torch.bincount(y, minlength=C).tolist(), "argmax": torch.bincount(top, minlength=C).tolist(),
            "mass": (target.sum(0) / len(y)).tolist(), "confusion": conf.tolist(), "mean_target": mean_t.tolist()}


@torch.no_grad()
def per_class_accuracy(learner, state, data) -> torch.Tensor:
    """Real test accuracy of the learner on each class: (C,); NaN for a class with no test example."""
    from torch.func import functional_call
    params, _, running = state            # BN in eval mode (running means), as unroll.real_loss
    logits, _ = functional_call(learner, params, (data.x_test, running or None))
    hit = (logits.argmax(1) == data.y_test).double()
    C = data.n_classes
    n = torch.bincount(data.y_test, minlength=C).double()
    return torch.bincount(data.y_test, weights=hit, minlength=C) / n


def train_state(learner, params0, batches, lrs, moms):
    """The learner state after training from ``params0`` on ``batches`` (eval.teach without
    the test evaluation after every step)."""
    from groklab.gtn.unroll import initial_state, sgd_momentum_step
    state = initial_state(learner, params0)
    for t, (x, y) in enumerate(batches):
        state, _ = sgd_momentum_step(learner, state, x, y, t, lrs[t], moms[t], create_graph=False)
    return state


def class_accuracy(cfg, teacher, data, learners: int) -> dict:
    """Per-class real test accuracy of ``learners`` fresh learners taught by the teacher and of
    the same learners after T real-data steps (best lr of ``eval.lrs`` by overall accuracy).
    Seeds as in ``eval.evaluate``, so ``overall_gtn`` is its ``gtn_mean`` for the same K."""
    from groklab.gtn.eval import BASELINE_MOMENTUM, eval_spec, generated_batches, real_batches
    from groklab.gtn.learners import init_params
    from groklab.gtn.meta import get_learner
    dtype = teacher.log_lr.dtype
    learner = get_learner(eval_spec(cfg), data, dtype)
    T, B = cfg.inner.steps, cfg.inner.batch
    lrs, moms = teacher.log_lr.detach().exp(), teacher.log_mom.detach().exp()
    gtn, real = [], {lr: [] for lr in cfg.eval.lrs}
    for i in range(learners):
        seed = cfg.eval.seed + i
        p0 = init_params(learner, torch.Generator().manual_seed(seed), dtype)
        batches = generated_batches(teacher, torch.Generator().manual_seed(seed + 7_919))
        gtn.append(per_class_accuracy(learner, train_state(learner, p0, batches, lrs, moms), data))
        rb = real_batches(data, T, B, torch.Generator().manual_seed(seed + 104_729))
        for lr in cfg.eval.lrs:
            lr_t, mom_t = torch.full((T,), lr, dtype=dtype), torch.full((T,), BASELINE_MOMENTUM, dtype=dtype)
            real[lr].append(per_class_accuracy(learner, train_state(learner, p0, rb, lr_t, mom_t), data))
    n_test = torch.bincount(data.y_test, minlength=data.n_classes).double()
    overall = lambda accs: (torch.stack(accs).nan_to_num() @ n_test / n_test.sum()).mean().item()  # noqa: E731
    best = max(cfg.eval.lrs, key=lambda lr: overall(real[lr]))
    return {"gtn": torch.stack(gtn).mean(0).tolist(), "real": torch.stack(real[best]).mean(0).tolist(),
            "overall_gtn": overall(gtn), "overall_real": overall(real[best]), "best_lr": best}


def audit(cfg, teacher, data, learners: int) -> dict:
    """The audit of the module docstring as a plain dict (``audit.json``)."""
    from groklab.gtn.sample import default_seed, sample
    from groklab.runs.rundir import finite_or_null
    C = data.n_classes
    s = sample(cfg, teacher, data, cfg.inner.steps * cfg.inner.batch, default_seed(cfg))
    x, y, target = (torch.from_numpy(s[k]) for k in ("x", "y", "target"))
    labels = label_stats(y, target.double(), C)
    acc = class_accuracy(cfg, teacher, data, learners)
    gen_i = _subsample(torch.arange(len(y)), MAX_GEN, 1)
    gx, gy = x[gen_i].flatten(1), y[gen_i]
    ref_i = _subsample(torch.arange(len(data.y_train)), MAX_REF, 2)
    ref_x, ref_y = data.x_train[ref_i].flatten(1), data.y_train[ref_i]
    test_i = _subsample(torch.arange(len(data.y_test)), MAX_GEN, 3)
    tx, ty = data.x_test[test_i].flatten(1), data.y_test[test_i]
    d_gen, nn_gen = nearest(gx, ref_x)
    d_real, nn_real = nearest(tx, ref_x)
    p05 = torch.quantile(d_real, 0.05).item() if len(d_real) else None
    med = lambda v: v.median().item() if len(v) else None  # noqa: E731
    classes = []
    for c in range(C):
        g, r, t = gy == c, data.y_train == c, ty == c
        div_g = mean_pairwise(_subsample(gx[g], MAX_CLASS, 4))
        div_r = mean_pairwise(_subsample(data.x_train[r].flatten(1), MAX_CLASS, 5))
        share = labels["mass"][c]
        gap = acc["real"][c] - acc["gtn"][c]
        why = ([f"label mass {share:.3f} < {NEGLECT_SHARE / C:.3f}"] if share < NEGLECT_SHARE / C else []) + \
              ([f"taught accuracy {gap:.3f} below real"] if gap > NEGLECT_ACC else [])
        classes.append({
            "class": c, "asked": labels["asked"][c], "argmax": labels["argmax"][c], "mass": share,
            "acc_gtn": acc["gtn"][c], "acc_real": acc["real"][c],
            "nn_gen": med(d_gen[g]), "nn_real": med(d_real[t]), "nn_ratio": _ratio(med(d_gen[g]), med(d_real[t])),
            "diversity_gen": div_g, "diversity_real": div_r, "diversity_ratio": _ratio(div_g, div_r),
            "neglected": bool(why), "why": "; ".join(why)})
    nn = {"gen_median": med(d_gen), "gen_mean": d_gen.mean().item(), "real_median": med(d_real),
          "real_mean": d_real.mean().item(), "ratio": _ratio(med(d_gen), med(d_real)),
          "gen_min": d_gen.min().item(), "real_p05": p05,
          "closer_than_real_p05": (d_gen < p05).double().mean().item() if p05 is not None else None,
          "label_agreement": (ref_y[nn_gen] == gy).double().mean().item(),
          "real_label_agreement": (ref_y[nn_real] == ty).double().mean().item(),
          "generated": len(gx), "reference": len(ref_x), "real_queries": len(tx)}
    div = [(r["diversity_gen"], r["diversity_real"]) for r in classes if r["diversity_gen"] is not None]
    return finite_or_null({
        "data": cfg.data.name, "generator": cfg.generator.kind, "curriculum": cfg.inner.curriculum,
        "learned_labels": teacher.curriculum.label_logits is not None, "steps": cfg.inner.steps,
        "batch": cfg.inner.batch, "examples": len(y), "learners": learners, "learner": _describe(cfg),
        "best_lr": acc["best_lr"], "acc_gtn": acc["overall_gtn"], "acc_real": acc["overall_real"],
        "nearest": nn,
        "diversity_ratio": (sum(a for a, _ in div) / sum(b for _, b in div)) if div else None,
        "neglected": [r["class"] for r in classes if r["neglected"]],
        "labels": {"confusion": labels["confusion"], "mean_target": labels["mean_target"]},
        "classes": classes})


def _describe(cfg) -> str:
    from groklab.gtn.eval import eval_spec
    return eval_spec(cfg).describe()


def audit_run(run_dir: str | Path, learners: int | None = None, data=None) -> dict:
    """Audit a GTN run: audit.json (atomically) and fig_audit.png in the run directory, and the
    audit in its report.html. The directory is held while it runs (a run being trained or
    evaluated is refused, as is a read-only one: one line)."""
    from groklab.gtn.config import MAX_EVAL_LEARNERS
    from groklab.gtn.report import write_gtn_report
    from groklab.gtn.run import check_gtn_dir, load_run
    from groklab.runs.lock import dir_lock
    from groklab.runs.rundir import write_json
    if learners is not None and not 1 <= learners <= MAX_EVAL_LEARNERS:
        raise ConfigError(f"--learners {learners}: expected 1 to {MAX_EVAL_LEARNERS}")
    d = check_gtn_dir(run_dir)
    with dir_lock(d, "GTN run directory"):
        cfg, teacher, data = load_run(d, data)
        t0 = time.perf_counter()
        result = audit(cfg, teacher, data, learners or cfg.eval.learners)
        result["audit_seconds"] = round(time.perf_counter() - t0, 2)
        write_json(d / "audit.json", result)
        plot_audit(result, d / "fig_audit.png")
        write_gtn_report(d)
    return result


def plot_audit(result: dict, path: Path) -> None:
    """Per class: taught vs real-data accuracy, nearest-real-neighbour distance and diversity of
    generated vs real examples."""
    import matplotlib.pyplot as plt

    from groklab.report.plots import save_figure
    rows = result["classes"]
    c = np.arange(len(rows))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, (g, r, title) in zip(axes, (("acc_gtn", "acc_real", "real test accuracy per class"),
                                        ("nn_gen", "nn_real", "distance to nearest real training example"),
                                        ("diversity_gen", "diversity_real", "mean pairwise distance in class"))):
        val = lambda k: [np.nan if row[k] is None else row[k] for row in rows]  # noqa: E731
        ax.bar(c - 0.2, val(g), 0.4, color="tab:red", label="generated / taught")
        ax.bar(c + 0.2, val(r), 0.4, color="tab:blue", label="real")
        ax.set_xticks(c)
        ax.set_xlabel("class")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    for i in result["neglected"]:
        axes[0].annotate("neglected", (i, 0), rotation=90, fontsize=7, ha="center", va="bottom")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{result['data']} audit: {result['generator']} generator, {result['examples']} generated "
                 f"examples, {result['learners']} learners", fontsize=9)
    save_figure(fig, path)
