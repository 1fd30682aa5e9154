"""A sweep spec: a base config, axes over dotted keys, seeds, a budget, and a mode.

A spec is a TOML file::

    name = "wd-lr"
    mode = "grid"                      # grid | optimize
    preset = "prieto"                  # or: config = "base.toml" (relative to the spec)
    seeds = [0, 1]                     # or an int n for seeds 0..n-1
    seed_keys = ["train.seed"]         # which keys a seed sets (default train.seed)
    report = false                     # skip each point's curves.png/report.html (default true)
    prune = {risk = 0.02, target = 0.9}  # grid: stop a point the forecast gives < 2 % (docs/forecast.md);
                                       # settle = true also stops one whose phase label it settles

    [base]                             # overrides on the preset, nested or dotted
    train.steps = 2000

    [axes]
    "optim.lr" = {log = [1e-4, 1e-1], num = 6}   # log range, both ends included
    "optim.wd" = {range = [0.0, 2.0], num = 5}   # linear range, both ends included
    "task.frac" = [0.2, 0.3, 0.5]                 # a list of values

    [diagram]                          # grid mode: the two axes of the heatmaps
    x = "optim.lr"
    y = "optim.wd"
    threshold = 0.9                    # steps to validation >= threshold

    [optimize]                         # optimize mode, see groklab.sweep.optimize
    n_trials = 30

``load_spec`` checks every key, axis and range and builds every point's config before
anything runs, so a typo fails at once with a one-line ``ConfigError``.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from groklab.config import ConfigError, RunConfig, apply_dict, load_toml, set_key, validate

TOP_KEYS = {"name", "mode", "preset", "config", "seeds", "seed_keys", "base", "axes", "diagram",
            "optimize", "ensemble", "report", "prune"}
MODES = ("grid", "optimize")
DIAGRAM_KEYS = {"x", "y", "threshold"}
# the name becomes the default directory sweeps/<name> and the Optuna study name: no separators,
# no "..", nothing a shell or a file system treats specially
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MAX_NUM = 10_000        # grid points on one range axis
MAX_POINTS = 100_000    # points × seeds of a grid (each is a run directory)


@dataclass
class Axis:
    """One swept key: a list of values (grid), or a distribution (optimize).

    ``kind`` is "list", "range" or "log"; ranges keep ``low``, ``high`` and ``num`` (grid
    points, both ends included) so optimize mode can search the interval continuously."""
    key: str
    kind: str
    values: list[Any]
    low: float | None = None
    high: float | None = None
    is_int: bool = False


@dataclass
class Point:
    """One run of a grid: its id (directory name), axis values, seed and full config."""
    index: int
    id: str
    values: dict[str, Any]
    seed: int
    config: RunConfig


@dataclass
class Spec:
    name: str
    mode: str
    base: RunConfig
    axes: list[Axis]
    seeds: list[int]
    seed_keys: list[str]
    diagram: dict[str, Any] = field(default_factory=dict)
    optimize: dict[str, Any] = field(default_factory=dict)
    ensemble: str = "auto"
    report: bool = True            # each point writes curves.png and report.html
    prune: dict[str, Any] | None = None   # grid mode: the forecast pruner's rule
    raw: dict[str, Any] = field(default_factory=dict)

    def config_for(self, values: dict[str, Any], seed: int) -> RunConfig:
        """The base config with ``values`` (dotted key -> value) and ``seed`` applied, validated."""
        cfg = copy.deepcopy(self.base)
        for k, v in values.items():
            set_key(cfg, k, v)
        for k in self.seed_keys:
            set_key(cfg, k, seed)
        try:
            return validate(cfg)
        except ConfigError as e:
            raise ConfigError(f"point {_fmt_values(values)}: {e}") from None

    def points(self) -> list[Point]:
        """Every grid point × seed, in a fixed order (the last axis varies fastest, then seed)."""
        out = []
        grids = [a.values for a in self.axes]
        for combo in itertools.product(*grids):
            values = dict(zip((a.key for a in self.axes), combo))
            for seed in self.seeds:
                i = len(out)
                out.append(Point(i, point_id(i, values, seed), values, seed, self.config_for(values, seed)))
        return out

    def fingerprint(self) -> str:
        """A hash of what determines the results; a sweep directory refuses a different spec."""
        d = {"base": self.base.to_dict(), "axes": [(a.key, a.kind, a.values) for a in self.axes],
             "seeds": self.seeds, "seed_keys": self.seed_keys, "mode": self.mode,
             "optimize": self.optimize, **({"prune": self.prune} if self.prune else {})}
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _fmt_values(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def short(key: str) -> str:
    return key.split(".")[-1]


def point_id(index: int, values: dict[str, Any], seed: int) -> str:
    """``0007_lr=0.001_wd=0.3_s0``: sortable, readable, safe as a directory name."""
    parts = [f"{short(k)}={_fmt(v)}" for k, v in values.items()]
    slug = re.sub(r"[^A-Za-z0-9_.=+-]", "-", "_".join([f"{index:04d}", *parts, f"s{seed}"]))
    return slug[:120]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "x".join(str(x) for x in v)
    return str(v)


def _current(cfg: RunConfig, key: str) -> Any:
    s, f = key.split(".")
    return getattr(getattr(cfg, s), f)


def parse_axis(key: str, raw: Any, base: RunConfig) -> Axis:
    """One ``[axes]`` entry -> Axis; the key must exist and every value must coerce."""
    if key == "preset" or not isinstance(key, str) or key.count(".") != 1:
        raise ConfigError(f"axis {key!r}: expected a dotted config key like optim.lr")
    probe = copy.deepcopy(base)
    section, _, name = key.partition(".")
    if not hasattr(getattr(base, section, None), name):
        set_key(probe, key, None)  # raises the ConfigError that lists the valid keys
    cur = _current(base, key)
    is_int = isinstance(cur, int) and not isinstance(cur, bool)
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(f"axis {key!r} is empty; give at least one value")
        values = raw
        ax = Axis(key, "list", list(values), is_int=is_int)
    elif isinstance(raw, dict):
        ax = _parse_range(key, raw, is_int, cur)
    else:
        ax = Axis(key, "list", [raw], is_int=is_int)
    for v in ax.values:
        set_key(probe, key, v, strict=True)  # TOML values have types: a string for a float names the key
        try:
            validate(probe)
        except ConfigError as e:
            raise ConfigError(f"axis {key!r} value {v!r}: {e}") from None
    if ax.kind != "list":  # optimize mode searches the whole interval: check both ends
        for v in (ax.low, ax.high):
            set_key(probe, key, int(round(v)) if is_int else v)
            try:
                validate(probe)
            except ConfigError as e:
                raise ConfigError(f"axis {key!r} bound {v!r}: {e}") from None
    if len(set(map(json.dumps, ax.values))) != len(ax.values):
        raise ConfigError(f"axis {key!r} has repeated values {ax.values}")
    return ax


def _parse_range(key: str, raw: dict, is_int: bool, cur: Any) -> Axis:
    kinds = [k for k in ("range", "log") if k in raw]
    extra = set(raw) - {"range", "log", "num"}
    if len(kinds) != 1 or extra:
        raise ConfigError(f"axis {key!r}: a range is {{range = [low, high], num = N}} or "
                          f"{{log = [low, high], num = N}}, got {raw!r}")
    kind = kinds[0]
    bounds = raw[kind]
    if not (isinstance(bounds, list) and len(bounds) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)):
        raise ConfigError(f"axis {key!r}: {kind} must be [low, high] numbers, got {bounds!r}")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise ConfigError(f"axis {key!r}: {kind} = {bounds!r} needs low < high")
    if kind == "log" and lo <= 0:
        raise ConfigError(f"axis {key!r}: log = {bounds!r} needs low > 0")
    if isinstance(cur, (bool, str, list)):
        raise ConfigError(f"axis {key!r} is not numeric; give a list of values instead of a {kind}")
    num = raw.get("num", 0)
    if not is_int_value(num) or num < 0 or num == 1 or num > MAX_NUM:
        raise ConfigError(f"axis {key!r}: num = {num!r} must be an integer from 2 to {MAX_NUM} (or "
                          f"left out in optimize mode)")
    values: list[Any] = []
    if num:
        if kind == "log":
            values = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (num - 1)) for i in range(num)]
        else:
            values = [lo + (hi - lo) * i / (num - 1) for i in range(num)]
        values = [int(round(v)) if is_int else float(f"{v:.6g}") for v in values]
        if len(set(values)) != len(values):
            raise ConfigError(f"axis {key!r}: {kind} = {bounds!r} with num = {num} repeats integer "
                              f"values {values}; use fewer points")
    return Axis(key, kind, values, low=lo, high=hi, is_int=is_int)


def is_number(v: Any) -> bool:
    """An int or float from TOML; a bool is an int to Python but never a number here."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_int_value(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_seeds(raw: Any) -> list[int]:
    if is_int_value(raw):
        if not 1 <= raw <= MAX_POINTS:
            raise ConfigError(f"seeds = {raw}: a count from 1 to {MAX_POINTS}")
        return list(range(raw))
    if isinstance(raw, list) and raw and all(is_int_value(s) for s in raw):
        if len(set(raw)) != len(raw):
            raise ConfigError(f"seeds = {raw}: repeated seeds")
        return list(raw)
    raise ConfigError(f"seeds = {raw!r}: expected an integer count or a non-empty list of integers")


def parse_spec(d: dict[str, Any], root: Path | None = None) -> Spec:
    """Validate a spec dict (a parsed TOML file); ``root`` resolves a relative ``config``."""
    from groklab.presets import get_preset
    unknown = set(d) - TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown spec key(s) {sorted(unknown)}; allowed: {', '.join(sorted(TOP_KEYS))}")
    mode = d.get("mode", "grid")
    if mode not in MODES:
        raise ConfigError(f"mode = {mode!r} is not one of: {', '.join(MODES)}")
    name = d.get("name", "sweep")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"name = {name!r}: use 1 to 100 letters, digits, '_', '.' or '-', starting "
                          f"with a letter or digit (it names the directory sweeps/<name>)")
    for k in ("preset", "config"):
        if k in d and not isinstance(d[k], str):
            raise ConfigError(f"{k} = {d[k]!r}: expected a string")
    base = get_preset(d.get("preset", "default"))
    if "config" in d:
        path = Path(d["config"])
        path = path if path.is_absolute() or root is None else root / path
        file = load_toml(path)
        if "preset" in file and "preset" not in d:
            base = get_preset(file["preset"])
        apply_dict(base, file)
    base_over = d.get("base", {})
    if not isinstance(base_over, dict):
        raise ConfigError("[base] must be a table of config overrides")
    apply_dict(base, base_over)
    validate(base)
    axes_raw = d.get("axes", {})
    if not isinstance(axes_raw, dict) or not axes_raw:
        raise ConfigError("[axes] is missing or empty; name at least one dotted key to sweep")
    axes_flat = _flatten_axes(axes_raw)
    axes = [parse_axis(k, v, base) for k, v in axes_flat.items()]
    seeds = _parse_seeds(d.get("seeds", [0]))
    seed_keys = d.get("seed_keys", ["train.seed"])
    if not isinstance(seed_keys, list) or not seed_keys or not all(isinstance(k, str) for k in seed_keys):
        raise ConfigError(f"seed_keys = {seed_keys!r}: expected a non-empty list of dotted keys")
    for k in seed_keys:
        set_key(copy.deepcopy(base), k, 0)
        if k in axes_flat:
            raise ConfigError(f"seed key {k!r} is also an axis; sweep it with seeds instead")
    ensemble = d.get("ensemble", "auto")
    if not (ensemble is True or ensemble is False or ensemble == "auto"):  # 1 == True: not "in"
        raise ConfigError(f"ensemble = {ensemble!r}: expected \"auto\", true or false")
    report = d.get("report", True)
    if not isinstance(report, bool):
        raise ConfigError(f"report = {report!r}: expected true or false")
    spec = Spec(name=name, mode=mode, base=base, axes=axes, seeds=seeds, seed_keys=list(seed_keys),
                ensemble=str(ensemble).lower(), report=report, raw=d)
    spec.diagram = _parse_diagram(d.get("diagram", {}), spec)
    if "prune" in d:
        if mode != "grid":
            raise ConfigError("[prune] is read in grid mode; in optimize mode use [optimize] prune = {...}")
        spec.prune = parse_forecast_prune(d["prune"], "[prune]", spec.diagram["threshold"],
                                          (spec.base.train.phase_threshold, spec.base.train.phase_gap))
        if spec.prune.get("settle") and {"train.phase_threshold", "train.phase_gap"} & {a.key for a in axes}:
            raise ConfigError("[prune] settle = true: train.phase_threshold and train.phase_gap must not be "
                              "axes (the settled label is the base config's)")
    if mode == "optimize":
        if "ensemble" in d:
            raise ConfigError("ensemble is only read with mode = \"grid\" (optimize mode runs trials singly)")
        from groklab.sweep.optimize import parse_optimize
        spec.optimize = parse_optimize(d.get("optimize", {}), spec)
    elif "optimize" in d:
        raise ConfigError("[optimize] is only read with mode = \"optimize\"")
    else:
        for a in axes:
            if not a.values:
                raise ConfigError(f"axis {a.key!r}: grid mode needs num = N on a range")
        n = math.prod(len(a.values) for a in axes) * len(seeds)
        if n > MAX_POINTS:
            raise ConfigError(f"the grid has {n} points × seeds; at most {MAX_POINTS}")
    return spec


PRUNE_TARGETS = (0.9, 0.99)


def parse_forecast_prune(p: Any, where: str, target: float = 0.9, phase: tuple | None = None) -> dict[str, Any]:
    """The forecast pruner's rule: ``{risk = 0.02, target = 0.9, after = 0.1}`` — stop a point
    once P(val ≥ target within the budget) < risk, looking from ``after`` × the budget on.
    ``settle = true`` (grid sweeps: ``phase`` is the base config's (phase_threshold, phase_gap))
    also stops a point whose phase label the forecast already settles (sweep.point)."""
    if not isinstance(p, dict) or "risk" not in p or set(p) - {"risk", "target", "after", "learn", "settle"}:
        raise ConfigError(f"{where} = {p!r}: expected {{risk = 0.02, target = 0.9, after = 0.1}} "
                          f"(target, after, learn = true and settle = true optional)")
    for k in ("learn", "settle"):
        if k in p and not isinstance(p[k], bool):
            raise ConfigError(f"{where} {k} = {p[k]!r}: expected true or false")
    risk, after = p["risk"], p.get("after", 0.1)
    tgt = p.get("target", target if target in PRUNE_TARGETS else 0.9)
    if not is_number(risk) or not 0 < risk < 1:
        raise ConfigError(f"{where} risk = {risk!r} must be a probability in (0, 1)")
    if not is_number(tgt) or float(tgt) not in PRUNE_TARGETS:
        raise ConfigError(f"{where} target = {tgt!r}: the forecast knows {', '.join(map(str, PRUNE_TARGETS))}")
    if not is_number(after) or not 0 <= after < 1:
        raise ConfigError(f"{where} after = {after!r} must be a fraction of the budget in [0, 1)")
    rule = {"risk": float(risk), "target": float(tgt), "after": float(after)}
    if p.get("settle"):
        if phase is None:
            raise ConfigError(f"{where} settle = true: only a grid sweep's [prune] settles phase labels "
                              f"(an optimize trial stopped early has no value)")
        if float(tgt) != float(phase[0]):
            raise ConfigError(f"{where} settle = true needs target = train.phase_threshold "
                              f"(the phase label's threshold, {phase[0]:g}); got target = {tgt!r}")
        rule["settle"] = True
    return {**rule, "learn": True} if p.get("learn") else rule


def _flatten_axes(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``[axes.optim] lr = [...]`` and ``"optim.lr" = [...]`` both give {"optim.lr": [...]}."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and not ({"range", "log", "num"} & set(v)):  # {} is a bad range
            out.update(_flatten_axes(v, f"{key}."))
        else:
            out[key] = v
    return out


def _parse_diagram(d: Any, spec: Spec) -> dict[str, Any]:
    if not isinstance(d, dict) or set(d) - DIAGRAM_KEYS:
        raise ConfigError(f"[diagram] takes keys {sorted(DIAGRAM_KEYS)}, got {d!r}")
    keys = [a.key for a in spec.axes]
    x = d.get("x", keys[0])
    y = d.get("y", keys[1] if len(keys) > 1 else None)
    for name, k in (("x", x), ("y", y)):
        if k is not None and k not in keys:
            raise ConfigError(f"[diagram] {name} = {k!r} is not an axis; axes: {', '.join(keys)}")
    if x == y:
        raise ConfigError(f"[diagram] x and y are both {x!r}")
    thr = d.get("threshold", spec.base.train.phase_threshold)
    if not is_number(thr) or not 0 < thr <= 1:
        raise ConfigError(f"[diagram] threshold = {thr!r} must be in (0, 1]")
    return {"x": x, "y": y, "threshold": float(thr)}


def load_spec(path: str | Path) -> Spec:
    p = Path(path)
    return parse_spec(load_toml(p), root=p.parent)
