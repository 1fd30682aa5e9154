"""``groklab.forecast(run)``: will this run grok within its budget, and when?

For each threshold (validation accuracy 0.9 and 0.99) a Forecast holds the probability of
reaching it within the run's budget (``train.steps``), the predicted step with an 80 % interval,
and the evidence, one line per signal. A threshold already reached is certain (p = 1, the step it
was reached); a run that has ended without reaching it has p = 0. Otherwise the model
(groklab.forecast.model) answers from the history up to the forecast step.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from groklab.forecast.dataset import POINTS, THRESHOLDS
from groklab.forecast.model import OUTSIDE_WIDEN, distribution, when
from groklab.forecast.signals import features, task_size, vector

CONFIDENT = 0.8     # "grok ≈ step N" is shown once P(reach 0.9 within budget) is at least this
EARLIEST = POINTS[0]  # no forecast before the corpus's first forecast point (100 steps)


@dataclass
class Target:
    threshold: float
    p: float                         # P(validation accuracy reaches threshold within the budget)
    step: int | None                 # predicted (or actual) step; None when it will not happen
    low: int | None                  # 80 % interval
    high: int | None
    reached: bool = False


@dataclass
class Forecast:
    step: int                        # the forecast uses records up to this step
    budget: int
    targets: dict[str, Target]
    evidence: list[str] = field(default_factory=list)
    ended: bool = False              # the run has stopped: nothing is left to forecast
    outside: list[str] = field(default_factory=list)   # settings beyond the corpus's range

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "budget": self.budget, "ended": self.ended,
                "targets": {k: asdict(v) for k, v in self.targets.items()}, "evidence": self.evidence,
                "outside": self.outside}

    def grok_step(self, threshold: str = "0.9") -> int | None:
        """The predicted step of ``threshold`` when the forecast is confident and the run lies
        inside the corpus's span (``outside`` empty), else None."""
        t = self.targets.get(threshold)
        if t is None or t.reached or t.p < CONFIDENT or self.outside:
            return None
        return t.step


def _load_run(run) -> tuple[list[dict], Any, dict, Path | None]:
    """Records, config and summary of a run directory, through the validated reader (a damaged
    file is one line naming it)."""
    from groklab.config import ConfigError, RunConfig
    from groklab.runs.read import read_metrics, read_object, read_summary
    if hasattr(run, "dir") and hasattr(run, "config"):
        run = run.dir
    d = Path(run)
    if not (d / "config.json").is_file() or not (d / "metrics.jsonl").is_file():
        raise ConfigError(f"{str(d)!r} is not a run directory (it needs config.json and metrics.jsonl)")
    try:
        cfg = RunConfig.from_dict(read_object(d / "config.json"))
    except ValueError as e:
        raise ConfigError(f"{d / 'config.json'}: {str(e).splitlines()[0]}") from None
    summary = read_summary(d / "summary.json") if (d / "summary.json").is_file() else {}
    return read_metrics(d / "metrics.jsonl"), cfg, summary, d


def forecast(run_or_records, at: int | None = None, config=None, model=None,
             summary: dict | None = None, measures: list[dict] | None = None,
             explain: bool = True) -> Forecast:
    """Forecast a run: a run directory, a ``groklab.Run``, or a list of metrics records (then
    ``config`` is required). ``at`` forecasts from the history up to that step (default: all);
    ``explain=False`` skips the evidence lines (the live forecast's fast path)."""
    from groklab.config import ConfigError
    from groklab.forecast.model import default_model
    run_dir = None
    if isinstance(run_or_records, list):
        if config is None:
            raise ConfigError("forecast(records) needs config=RunConfig(...) as well")
        records, cfg = run_or_records, config
        summary = summary or {}
    else:
        records, cfg, summary, run_dir = _load_run(run_or_records)
    if at is not None and (isinstance(at, bool) or not isinstance(at, int) or at < 0):
        raise ConfigError(f"--at {at!r}: expected a step >= 0")
    recs = [r for r in records if at is None or r["step"] <= at]
    if not recs:
        if at is None:
            raise ConfigError(f"{str(run_dir or 'the records')!r}: no evaluation yet (metrics.jsonl has no record)")
        first = records[0]["step"] if records else None
        raise ConfigError(f"--at {at}: the run has no evaluation at or before it "
                          f"(first: {first if first is not None else 'none yet'})")
    model = model or default_model()
    t, budget = int(recs[-1]["step"]), int(cfg.train.steps)
    ended = (summary.get("status") in ("completed", "early_stopped", "nan", "pruned")
             and t >= int(summary.get("steps_done", 0))) or t >= budget
    reached = {th: next((r["step"] for r in recs if r["val_acc"] >= th), None) for th in THRESHOLDS}
    need = not ended and any(v is None and th in model.thresholds for th, v in reached.items())
    if need and t < EARLIEST:
        raise ConfigError(f"a forecast at step {t} is too early: the model forecasts from step {EARLIEST} on "
                          f"(its corpus has no earlier forecast point)")
    feats = features(recs, cfg, t) if need or explain else None
    X = model.columns(vector(feats)[None, :]) if feats is not None else None
    out = outside(feats, cfg, model)
    targets = {}
    for th in THRESHOLDS:
        if reached[th] is not None:
            targets[f"{th:g}"] = Target(th, 1.0, reached[th], reached[th], reached[th], True)
        elif ended or th not in model.thresholds:
            targets[f"{th:g}"] = Target(th, 0.0, None, None, None)
        else:
            m = model.thresholds[th]
            B, F = distribution(m, X[0], t, budget)
            targets[f"{th:g}"] = (B, F, m.margin * OUTSIDE_WIDEN + 0.1 if out else m.margin)
    _coherent(targets, t)
    if measures is None and run_dir is not None and (run_dir / "measures.jsonl").is_file():
        from groklab.runs.read import read_records
        measures = [m for m in read_records(run_dir / "measures.jsonl") if m.get("step", 0) <= t]
    ev = evidence(feats, cfg, recs, measures or [], model, X, budget, t) if explain else []
    if out and explain:
        ev.insert(0, "outside the corpus the model was trained on (" + "; ".join(out) + "): "
                     "its 80 % intervals are wider, and the forecast pruner does not stop such runs")
    return Forecast(t, budget, targets, ev, ended, out)


def _coherent(targets: dict, t: int) -> None:
    """Turn each open threshold's distribution (B, F, margin) into a Target, with 0.99 never
    more likely, at no horizon, than 0.9 (F99 ≤ F90 pointwise), and never sooner."""
    prev = None          # (F, med, lo, hi) of the lower threshold when it was open
    for k in sorted(targets, key=float):
        v = targets[k]
        if isinstance(v, Target):
            prev = None
            continue
        B, F, margin = v
        if prev is not None:
            F = np.minimum(F, prev[0])
        med, lo, hi = when(B, F, t, margin)
        if prev is not None:
            med, lo, hi = max(med, prev[1]), max(lo, prev[2]), max(hi, prev[3])
        prev = (F, med, lo, hi)
        targets[k] = Target(float(k), round(float(F[-1]), 4), int(round(med)), int(round(lo)), int(round(hi)))


def outside(feats: dict | None, cfg, model) -> list[str]:
    """The settings of this run beyond the span of the model's corpus (manifest ``ranges``): the
    task's size and the model kind. The budget is not among them: it is an input of the model."""
    from groklab.forecast.signals import config_features
    rng = model.meta.get("ranges") or {}
    f = feats or config_features(cfg)
    names = {"log_n_train": "log10 training examples", "log_classes": "log10 classes"}
    out = []
    for k, span in rng.items():
        if k == "model":
            if cfg.model.arch not in span:
                out.append(f"model {cfg.model.arch!r} not in {span}")
            continue
        lo, hi = span
        v = f.get(k)
        if v is not None and math.isfinite(v) and not lo - 1e-9 <= v <= hi + 1e-9:
            out.append(f"{names.get(k, k)} {v:.3g} not in [{lo:.3g}, {hi:.3g}]")
    return out


def evidence(f: dict[str, float], cfg, recs: list[dict], measures: list[dict], model, X, budget: int,
             t: int) -> list[str]:
    """One line per signal, in words, with the numbers the model read."""
    n_train, classes = task_size(cfg)
    mem = next((r["step"] for r in recs if r["train_acc"] >= 0.9), None)
    lines = [
        f"validation accuracy {f['val_acc']:.3f} (chance {1 / classes:.3f}), "
        f"best {max(r['val_acc'] for r in recs):.3f}; "
        f"{_per_decade(f['slope_val_acc'])} over the latest steps",
        f"train accuracy {f['train_acc']:.3f}"
        + (f", ≥ 0.9 since step {mem}" if mem is not None else ", not memorised yet"),
        f"validation loss {math.exp(f['log_val_loss']):.3g}, {100 * (1 - math.exp(-f['val_loss_below_peak'])):.0f} % "
        f"below its peak; train loss {math.exp(f['log_train_loss']):.3g}",
    ]
    if math.isfinite(f["log_wn_ratio"]):
        lines.append(f"weight norm {recs[-1]['weight_norm']:.4g}: ×{math.exp(f['log_wn_ratio']):.2f} since step "
                     f"{recs[0]['step']}, {100 * (1 - math.exp(-f['log_wn_below_peak'])):.0f} % below its peak")
    if math.isfinite(f["osc_cycles"]):
        period = t / f["osc_cycles"] if f["osc_cycles"] > 0 else math.inf
        lines.append(f"train-loss oscillations (Notsawo et al. 2023): dominant period {period:.0f} steps, "
                     f"energy 10^{f['osc_log_energy']:.1f}, {100 * f['osc_low_share']:.0f} % at low frequency")
    if measures:
        m = measures[-1]
        parts = [f"{k} {m[k]:.3g}" for k in ("gini_E", "gini_L", "restricted_loss", "excluded_loss")
                 if isinstance(m.get(k), (int, float))]
        if parts:
            lines.append(f"progress measures at step {m['step']} (read, not used by the model): {', '.join(parts)}")
    o = cfg.optim
    lines.append(f"config: lr {o.lr:g}, {o.name} wd {o.wd:g}, {n_train} training examples "
                 f"({100 * cfg.task.frac:.0f} %), {cfg.model.arch}, {_accel(cfg)}, budget {cfg.train.steps} steps")
    if math.isfinite(f["log_t_tau"]):
        lines.append(f"weight-decay clock: t = {10 ** f['log_t_tau']:.2f} × 1/(lr·wd)" +
                     (f", memorised at {10 ** f['log_mem_tau']:.2f}" if math.isfinite(f["log_mem_tau"]) else "") +
                     (f"; log norm {f['wn_rate_tau']:+.2f} per 1/(lr·wd) lately"
                      if math.isfinite(f["wn_rate_tau"]) else ""))
    top = _top_contributions(model, X, math.log10(max(budget, t + 1) / max(t, 1)))
    if top:
        lines.append("moved P(0.99) most: " + ", ".join(top))
    return lines


def _per_decade(s: float) -> str:
    if not math.isfinite(s):
        return "no trend yet"
    return f"{'rising' if s > 0 else 'falling'} {abs(s):.3f} per decade of steps"


def _accel(cfg) -> str:
    a = cfg.accel
    parts = [f"Grokfast-{a.grokfast.upper()}" for _ in [0] if a.grokfast != "none"]
    parts += ["⊥Grad"] * bool(a.orthograd) + [f"weight norm {a.weight_norm:g}"] * bool(a.weight_norm > 0)
    return " + ".join(parts) or "no accelerator"


def _top_contributions(model, X, h: float, k: int = 3) -> list[str]:
    """The features whose SHAP contributions (XGBoost ``pred_contribs``) moved P(0.99 within the
    budget) most (the horizon itself is left out)."""
    from groklab.forecast.model import _xgb
    m = model.thresholds.get(0.99)
    if m is None:
        return []
    Xh = np.concatenate([X, np.array([[h]], np.float32)], axis=1)
    c = m.clf.predict(_xgb().DMatrix(Xh, missing=np.nan), pred_contribs=True)[0][:-2]
    idx = np.argsort(-np.abs(c))[:k]
    return [f"{model.features[i]} ({'+' if c[i] > 0 else '−'}{abs(c[i]):.2f} log-odds)" for i in idx]


def format_forecast(fc: Forecast) -> str:
    """The text `groklab forecast RUN` prints."""
    out = [f"forecast at step {fc.step} of {fc.budget}" + (" (the run has ended)" if fc.ended else "")]
    for k, t in fc.targets.items():
        if t.reached:
            out.append(f"  val ≥ {k}: reached at step {t.step}")
        elif t.step is None:
            out.append(f"  val ≥ {k}: not reached (p = 0)")
        else:
            out.append(f"  val ≥ {k}: P(within {fc.budget} steps) = {t.p:.2f}; if it does, at step {t.step} "
                       f"(80 % interval {t.low}-{t.high})")
    out.append("evidence:")
    out += [f"  - {line}" for line in fc.evidence]
    return "\n".join(out)
