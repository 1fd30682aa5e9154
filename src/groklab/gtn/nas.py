"""Architecture search with GTN data as a cheap proxy (Such et al. 2020, arXiv 1912.07768, §4).

N architectures are sampled from ``learners.SPACE`` (MLP or CNN, depth 1–3, widths per layer).
Each is scored three ways, all by real test accuracy:

* **GTN proxy**: T steps on the teacher's generated data with its learned step sizes;
* **real proxy**: the same T steps on real batches (SGD momentum 0.9, best lr of ``eval.lrs``
  per architecture: as many runs as the grid has rates, each lr picked on the test set);
* **real proxy at one lr** (``real_one_lr``): the cost of the GTN proxy, one run of T real
  steps per learner, at the single lr of the grid that is best averaged over all architectures;
* **full training**: ``full_steps`` Adam steps (lr 1e-3) on real batches.

Each proxy is judged by its Spearman rank correlation with full training (over all
architectures, and over the top half by full training as in the paper) and by the overlap of
its top-k with full training's top-k, and by the time it took.
"""
from __future__ import annotations

import html
import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call

from groklab.config import ConfigError
from groklab.gtn.config import SEED_MAX
from groklab.gtn.eval import BASELINE_MOMENTUM, generated_batches, real_batches, teach
from groklab.gtn.learners import SPACE, LearnerSpec, init_params, sample_spec
from groklab.runs.lock import dir_lock
from groklab.runs.rundir import atomic_write_text, write_json


@dataclass
class NASConfig:
    archs: int = 32
    full_steps: int = 2000
    seeds: int = 2                 # full-training runs per architecture (their mean is the truth)
    proxy_learners: int | None = None  # learners per architecture and proxy (means ranked); None = seeds
    top_k: int | None = None       # None = archs // 4
    seed: int = 0
    kinds: tuple[str, ...] = ("mlp", "cnn")
    full_lr: float = 1e-3
    batch: int = 128


def ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of a 1-D tensor, ties given their average rank."""
    order = torch.argsort(v, stable=True)
    r = torch.empty(len(v), dtype=torch.float64)
    r[order] = torch.arange(len(v), dtype=torch.float64)
    for val in torch.unique(v):
        tie = v == val
        r[tie] = r[tie].mean()
    return r


def spearman(a, b) -> float:
    """Spearman rank correlation: the Pearson correlation of the ranks. NaN if either is constant."""
    ra, rb = ranks(torch.as_tensor(a, dtype=torch.float64)), ranks(torch.as_tensor(b, dtype=torch.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = (ra.norm() * rb.norm()).item()
    return (ra @ rb).item() / den if den > 0 else float("nan")


def top_k_overlap(proxy, truth, k: int) -> float:
    """|top-k by proxy ∩ top-k by truth| / k."""
    top = lambda v: set(torch.argsort(torch.as_tensor(v), descending=True, stable=True)[:k].tolist())  # noqa: E731
    return len(top(proxy) & top(truth)) / k


def sample_architectures(n: int, seed: int, kinds, weight_norm: bool, norm: str) -> list[LearnerSpec]:
    """``n`` distinct architectures (fewer if the space is smaller)."""
    rng, out, tries = random.Random(seed), [], 0
    while len(out) < n and tries < 100 * n:
        s = sample_spec(rng, kinds, weight_norm, norm)
        tries += 1
        if s not in out:
            out.append(s)
    return out


def full_train(learner, params0, data, steps: int, lr: float, batch: int, g: torch.Generator) -> float:
    """Adam on real batches; mean-BN running means as an exponential average (momentum 0.1)."""
    params = {k: v.clone().requires_grad_() for k, v in params0.items()}
    opt = torch.optim.Adam(params.values(), lr=lr)
    running = None
    n = len(data.y_train)
    for _ in range(steps):
        i = torch.randint(0, n, (min(batch, n),), generator=g)
        logits, means = functional_call(learner, params, (data.x_train[i],))
        loss = F.cross_entropy(logits, data.y_train[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if means:
            means = [m.detach() for m in means]
            running = means if running is None else [0.9 * r + 0.1 * m for r, m in zip(running, means)]
    with torch.no_grad():
        logits, _ = functional_call(learner, params, (data.x_test, running))
        return (logits.argmax(1) == data.y_test).float().mean().item()


# Upper bounds of the counts: far above any useful search, low enough that a typo fails at
# once instead of running for ever (eval.learners has the same 10,000).
MAX_SEEDS, MAX_PROXY_LEARNERS, MAX_FULL_STEPS = 1_000, 10_000, 10**7


def space_size(kinds) -> int:
    """Distinct architectures of ``SPACE`` with the given kinds (84 per kind)."""
    return sum(len(SPACE["mlp_widths" if k == "mlp" else "cnn_channels"]) ** d
               for k in set(kinds) for d in SPACE["depths"])


def check_nas_config(ncfg: NASConfig) -> None:
    """Every setting in its range, one ConfigError line naming the value otherwise."""
    bad = [k for k in ncfg.kinds if k not in ("mlp", "cnn")]
    if bad or not ncfg.kinds:
        raise ConfigError(f"--kinds={','.join(ncfg.kinds)!r}: expected a comma list of mlp, cnn")
    for name, v, lo, hi, what in (
            ("--archs", ncfg.archs, 3, space_size(ncfg.kinds), f" (the space of --kinds {','.join(ncfg.kinds)})"),
            ("--full-steps", ncfg.full_steps, 1, MAX_FULL_STEPS, ""),
            ("--seeds", ncfg.seeds, 1, MAX_SEEDS, ""),
            ("--proxy-learners", ncfg.proxy_learners, 1, MAX_PROXY_LEARNERS, ""),
            ("--top-k", ncfg.top_k, 1, ncfg.archs, " (the architectures sampled)"),
            ("--seed", ncfg.seed, 0, SEED_MAX, "")):
        if v is not None and not lo <= v <= hi:
            raise ConfigError(f"{name} {v}: expected {lo} to {hi}{what}")


def new_out(out: Path) -> Path:
    """Create the NAS directory ``out``; an existing one is never written into."""
    try:
        if out.exists() or out.is_symlink():
            raise FileExistsError
        out.mkdir(parents=True)
    except FileExistsError:
        raise ConfigError(f"--out {str(out)!r} already exists; gtn nas writes only into a new "
                          f"directory (choose another --out)") from None
    except OSError as e:
        raise ConfigError(f"cannot create --out {str(out)[:200]!r}: {e.strerror}") from None
    return out


def default_out(gtn_dir: Path) -> Path:
    """``gtn_dir/nas``, or ``nas-1``, ``nas-2``, … when earlier searches hold it."""
    out, i = gtn_dir / "nas", 1
    while out.exists() or out.is_symlink():
        out, i = gtn_dir / f"nas-{i}", i + 1
    return out


def run_nas(gtn_dir: str | Path, out: str | Path | None, ncfg: NASConfig, progress: bool = False) -> Path:
    """Score the sampled architectures three ways; write nas.json, fig_nas.png, report.html into
    the new directory ``out`` (default: ``gtn_dir/nas``, numbered when taken)."""
    from groklab.gtn.run import load_run
    check_nas_config(ncfg)
    if out is not None and str(out).strip() == "":
        raise ConfigError("--out '': expected a directory path")
    if out is not None and (Path(out).exists() or Path(out).is_symlink()):
        new_out(Path(out))                  # refuse before the run is loaded
    cfg, teacher, data = load_run(gtn_dir)
    if "cnn" in ncfg.kinds and len(data.shape) < 2:
        raise ConfigError(f"--kinds includes cnn but data {cfg.data.name!r} is not a sequence or image")
    specs = sample_architectures(ncfg.archs, ncfg.seed, ncfg.kinds, cfg.learner.weight_norm, cfg.learner.norm)
    if ncfg.top_k is not None and ncfg.top_k > len(specs):
        raise ConfigError(f"--top-k {ncfg.top_k}: expected 1 to {len(specs)} (the architectures sampled)")
    out = new_out(Path(out) if out is not None else default_out(Path(gtn_dir)))
    try:
        with dir_lock(out, "NAS directory"):
            return _search(gtn_dir, cfg, teacher, data, specs, out, ncfg, progress)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # nothing half-made: the results are written at the end
        raise


def _search(gtn_dir, cfg, teacher, data, specs, out: Path, ncfg: NASConfig, progress: bool) -> Path:
    k = ncfg.top_k or max(1, len(specs) // 4)
    n_proxy = ncfg.proxy_learners or ncfg.seeds
    rows, secs = [], {"gtn": 0.0, "real": 0.0, "full": 0.0}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(specs), desc="gtn nas", unit="arch")
    for a, spec in enumerate(specs):
        rows.append(score_architecture(a, spec, cfg, teacher, data, ncfg, n_proxy, secs))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    result = {"gtn_dir": str(gtn_dir), "data": cfg.data.name, "archs": len(rows), "top_k": k,
              "full_steps": ncfg.full_steps, "full_seconds": round(secs["full"], 2),
              "proxy_learners": n_proxy, "nas": {**asdict(ncfg), "kinds": list(ncfg.kinds)},
              "proxies": proxy_statistics(rows, cfg.eval.lrs, cfg.inner.steps, k, secs), "rows": rows}
    write_json(out / "nas.json", result)
    plot_nas(result, out / "fig_nas.png")
    write_nas_report(out, result)
    return out


def score_architecture(a: int, spec: LearnerSpec, cfg, teacher, data, ncfg: NASConfig, n_proxy: int,
                       secs: dict) -> dict:
    """Architecture ``a``'s row: its GTN proxy and real proxy (each lr of ``eval.lrs``), means
    over ``n_proxy`` learners, and its full training, mean over ``ncfg.seeds`` runs; learner s
    starts from the same initialisation in all three. Adds the seconds spent to ``secs``."""
    from groklab.gtn.meta import get_learner
    dtype = teacher.log_lr.dtype
    T, B = cfg.inner.steps, cfg.inner.batch
    lrs, moms = teacher.log_lr.detach().exp(), teacher.log_mom.detach().exp()
    learner = get_learner(spec, data, dtype)
    score = {"gtn": [], "real": {lr: [] for lr in cfg.eval.lrs}, "full": []}
    for s in range(max(ncfg.seeds, n_proxy)):
        seed = 10_000 * (a + 1) + s
        p0 = init_params(learner, torch.Generator().manual_seed(seed), dtype)
        t0 = time.perf_counter()
        if s < n_proxy:
            batches = generated_batches(teacher, torch.Generator().manual_seed(seed + 1))
            score["gtn"].append(teach(learner, p0, batches, lrs, moms, data)[-1])
        t1 = time.perf_counter()
        if s < n_proxy:
            rb = real_batches(data, T, B, torch.Generator().manual_seed(seed + 2))
            for lr in cfg.eval.lrs:
                lr_t, mom_t = torch.full((T,), lr, dtype=dtype), torch.full((T,), BASELINE_MOMENTUM, dtype=dtype)
                score["real"][lr].append(teach(learner, p0, rb, lr_t, mom_t, data)[-1])
        t2 = time.perf_counter()
        if s < ncfg.seeds:
            score["full"].append(full_train(learner, p0, data, ncfg.full_steps, ncfg.full_lr, ncfg.batch,
                                            torch.Generator().manual_seed(seed + 3)))
        t3 = time.perf_counter()
        secs["gtn"] += t1 - t0
        secs["real"] += t2 - t1
        secs["full"] += t3 - t2
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    by_lr = {str(lr): mean(score["real"][lr]) for lr in cfg.eval.lrs}
    best_lr = max(cfg.eval.lrs, key=lambda lr: by_lr[str(lr)])
    return {"arch": spec.describe(), "spec": spec.to_dict(), "gtn": mean(score["gtn"]),
            "real": by_lr[str(best_lr)], "real_lr": best_lr, "real_by_lr": by_lr, "full": mean(score["full"])}


def proxy_statistics(rows: list[dict], grid, steps: int, k: int, secs: dict) -> dict:
    """Each proxy against full training: Spearman over all rows and over the top half by full
    training, top-k overlap, seconds. Sets every row's ``real_one_lr``: the real proxy at the lr
    of ``grid`` that is best summed over all architectures (one run per learner, the GTN's cost)."""
    full = [r["full"] for r in rows]
    half = torch.argsort(torch.tensor(full), descending=True)[: max(2, len(rows) // 2)].tolist()
    one_lr = max(grid, key=lambda lr: sum(r["real_by_lr"][str(lr)] for r in rows))
    for r in rows:
        r["real_one_lr"] = r["real_by_lr"][str(one_lr)]
    proxies = {}
    for name in ("gtn", "real", "real_one_lr"):
        v = [r[name] for r in rows]
        seconds = secs["real"] / len(grid) if name == "real_one_lr" else secs[name]
        proxies[name] = {"steps": steps, "spearman": spearman(v, full),
                         "spearman_top_half": spearman([v[i] for i in half], [full[i] for i in half]),
                         "top_k_overlap": top_k_overlap(v, full, k), "seconds": round(seconds, 2)}
    proxies["real_one_lr"]["lr"] = one_lr
    return proxies


def plot_nas(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    from groklab.gtn.report import save_figure
    rows = result["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name in zip(axes, ("gtn", "real")):
        p = result["proxies"][name]
        for kind, color in (("mlp", "tab:blue"), ("cnn", "tab:orange")):
            sel = [r for r in rows if r["spec"]["kind"] == kind]
            ax.scatter([r[name] for r in sel], [r["full"] for r in sel], s=18, color=color, label=kind)
        ax.set_xlabel(f"{name} proxy: test accuracy after {p['steps']} steps")
        ax.set_ylabel(f"full training ({result['full_steps']} steps)")
        ax.set_title(f"Spearman {p['spearman']:+.2f} · top-{result['top_k']} overlap {p['top_k_overlap']:.2f}",
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['data']}: {result['archs']} architectures ranked by proxies vs full training")
    save_figure(fig, path)


def write_nas_report(out: Path, result: dict) -> None:
    from groklab.gtn.report import _page, img_tag, table
    prox = [(f"{n} proxy ({p['steps']} steps)",
             f"Spearman {p['spearman']:+.3f} · top half {p['spearman_top_half']:+.3f} · "
             f"top-{result['top_k']} overlap {p['top_k_overlap']:.2f} · {p['seconds']:.1f} s")
            for n, p in result["proxies"].items()]
    prox.append((f"full training ({result['full_steps']} steps)", f"{result['full_seconds']:.1f} s"))
    one = result["proxies"]["real_one_lr"]["lr"]
    head = (f"<tr><th>architecture</th><th>GTN proxy</th><th>real proxy (best lr)</th>"
            f"<th>real proxy (lr {one:g})</th><th>full</th></tr>")
    body = "".join(f"<tr><td>{html.escape(r['arch'])}</td><td>{r['gtn']:.3f}</td>"
                   f"<td>{r['real']:.3f} ({r['real_lr']:g})</td><td>{r['real_one_lr']:.3f}</td>"
                   f"<td>{r['full']:.3f}</td></tr>"
                   for r in sorted(result["rows"], key=lambda r: -r["full"]))
    parts = [f"<h1>groklab gtn nas — {html.escape(result['data'])}</h1>",
             img_tag(out / "fig_nas.png", "proxy vs full training"), "<h2>Proxies</h2>", table(prox),
             "<h2>Architectures</h2>", f"<table>{head}{body}</table>",
             f"<h2>Settings</h2><pre>{html.escape(json.dumps(result['nas'], indent=2))}</pre>"]
    atomic_write_text(out / "report.html", _page(f"nas {result['data']}", parts))
