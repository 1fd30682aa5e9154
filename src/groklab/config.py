"""Run configuration: nested dataclasses, dotted overrides, validation.

Defaults live in the dataclasses; a preset replaces some of them; a TOML file and then
``--set section.key=value`` overrides are applied on top (Meta Lingua's order). Unknown keys
fail with the list of valid ones. The resolved config is written into every run directory, and
a run is reproducible from it alone.
"""
from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """Bad configuration input; its message is one line naming the value and what is allowed."""


@dataclass
class TaskConfig:
    name: str = "modular"          # modular | permutation | parity | mnist
    op: str = "x+y"                # modular: see tasks.modular.OPS; permutation: x*y, x*y*x^-1, x*y*x
    p: int = 113                   # modulus for modular tasks
    n: int = 5                     # permutation group S_n
    frac: float = 0.3              # training fraction of all examples
    split_seed: int = 0            # seed of the train/validation split
    label_noise: int = 0           # number of training answers replaced by random answers
    n_bits: int = 40               # sparse parity: input bits
    k: int = 3                     # sparse parity: relevant bits
    n_samples: int = 1000          # sparse parity: examples (train + validation)
    n_train: int = 1000            # mnist: training images (the rest of the 5,000 is validation)


@dataclass
class ModelConfig:
    arch: str = "transformer"      # transformer | mlp
    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    act: str = "relu"              # relu | gelu
    norm: str = "none"             # none | pre | post   (LayerNorm placement)
    dropout: float = 0.0
    causal: bool = True
    init: str = "nanda"            # nanda | torch   (transformer initialisation)
    init_scale: float = 1.0        # every parameter multiplied by this after init (Omnigrok)
    hidden: list[int] = field(default_factory=lambda: [200, 200])  # mlp hidden widths
    embed: str = "onehot"          # mlp input: onehot | learned
    bias: bool = False             # mlp biases


@dataclass
class OptimConfig:
    name: str = "adamw"            # adamw (decoupled wd) | adam (coupled L2) | sgd (momentum, coupled L2)
    lr: float = 1e-3
    wd: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-8
    momentum: float = 0.9
    schedule: str = "constant"     # constant | cosine | linear  (after warm-up)
    warmup: int = 10               # linear warm-up steps
    min_lr_frac: float = 0.0       # floor of cosine/linear decay, as a fraction of lr
    clip: float = 0.0              # global gradient-norm clip; 0 = off


@dataclass
class AccelConfig:
    grokfast: str = "none"         # none | ema | ma   (Lee et al. 2024)
    alpha: float = 0.98            # Grokfast-EMA momentum
    lamb: float = 2.0              # Grokfast amplification
    window: int = 100              # Grokfast-MA window
    orthograd: bool = False        # ⊥Grad (Prieto et al. 2025)
    weight_norm: float = 0.0       # project total weight norm to this value each step; 0 = off


@dataclass
class TrainConfig:
    steps: int = 10000
    batch_size: int = 0            # 0 = full batch
    eval_every: int = 10
    measure_every: int = 0         # progress measures while training; 0 = off
    loss: str = "ce"               # ce | mse | stablemax
    loss_dtype: str = "float64"    # float32 | float64 (the softmax/loss precision)
    dtype: str = "float32"         # model precision: float32 | float64
    seed: int = 0                  # model initialisation
    batch_seed: int = 0            # minibatch order
    device: str = "cpu"            # cpu | cuda | auto
    fast: bool = True              # exact fast path (answer position only, token tables)
    stop_threshold: float = 0.0    # stop once val acc >= this for `patience` steps; 0 = off
    patience: int = 0
    phase_gap: int = 1000          # Liu et al.: t_val - t_train above this is "grokking"
    phase_threshold: float = 0.9   # accuracy threshold of the phase label
    n_checkpoints: int = 12        # log-spaced checkpoints (plus the last)
    checkpoint_every: int = 0      # also every this many steps (for `groklab analyze`); 0 = off


@dataclass
class RunConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    accel: AccelConfig = field(default_factory=AccelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        cfg = cls()
        apply_dict(cfg, d)
        return validate(cfg)


SECTIONS = ("task", "model", "optim", "accel", "train")

CHOICES: dict[str, tuple[str, ...]] = {
    "task.name": ("modular", "permutation", "parity", "mnist"),
    "model.arch": ("transformer", "mlp"),
    "model.act": ("relu", "gelu"),
    "model.norm": ("none", "pre", "post"),
    "model.init": ("nanda", "torch"),
    "model.embed": ("onehot", "learned"),
    "optim.name": ("adamw", "adam", "sgd"),
    "optim.schedule": ("constant", "cosine", "linear"),
    "accel.grokfast": ("none", "ema", "ma"),
    "train.loss": ("ce", "mse", "stablemax"),
    "train.loss_dtype": ("float32", "float64"),
    "train.dtype": ("float32", "float64"),
    "train.device": ("cpu", "cuda", "auto"),
}

# (low, high, low_open, high_open); None = unbounded
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "task.p": (2, None, False, True),
    "task.n": (2, 8, False, False),
    "task.frac": (0, 1, True, True),
    "task.label_noise": (0, None, False, True),
    "task.n_bits": (1, None, False, True),
    "task.k": (1, None, False, True),
    "task.n_samples": (2, None, False, True),
    "task.n_train": (1, 4999, False, False),
    "model.n_layers": (1, None, False, True),
    "model.d_model": (1, None, False, True),
    "model.n_heads": (1, None, False, True),
    "model.d_mlp": (1, None, False, True),
    "model.dropout": (0, 1, False, True),
    "model.init_scale": (0, None, True, True),
    "optim.lr": (0, None, True, True),
    "optim.wd": (0, None, False, True),
    "optim.beta1": (0, 1, False, True),
    "optim.beta2": (0, 1, False, True),
    "optim.eps": (0, None, True, True),
    "optim.momentum": (0, 1, False, True),
    "optim.warmup": (0, None, False, True),
    "optim.min_lr_frac": (0, 1, False, False),
    "optim.clip": (0, None, False, True),
    "accel.alpha": (0, 1, False, True),
    "accel.lamb": (0, None, False, True),
    "accel.window": (1, None, False, True),
    "accel.weight_norm": (0, None, False, True),
    "train.steps": (1, None, False, True),
    "train.batch_size": (0, None, False, True),
    "train.eval_every": (1, None, False, True),
    "train.measure_every": (0, None, False, True),
    "train.stop_threshold": (0, 1, False, False),
    "train.patience": (0, None, False, True),
    "train.phase_gap": (0, None, False, True),
    "train.phase_threshold": (0, 1, True, False),
    "train.n_checkpoints": (0, None, False, True),
    "train.checkpoint_every": (0, None, False, True),
}


def _fmt_range(lo, hi, lo_open, hi_open) -> str:
    if lo is not None and hi is not None:
        return f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    return f"{'<' if hi_open else '<='} {hi:g}"


def all_keys(cfg: RunConfig | None = None) -> list[str]:
    cfg = cfg or RunConfig()
    keys = []
    for s in SECTIONS:
        keys += [f"{s}.{f.name}" for f in dataclasses.fields(getattr(cfg, s))]
    return keys + ["preset"]


def _coerce(key: str, value: Any, current: Any) -> Any:
    """Turn a string (from --set) or a TOML value into the type of the field's default."""
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("true", "1", "yes", "on"):
            return True
        if s in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}={value!r}: expected true or false")
    if isinstance(current, int):
        try:
            if isinstance(value, str):
                f = float(value)  # accept 1e4
            else:
                f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={value!r}: expected an integer") from None
        if not math.isfinite(f) or f != int(f):
            raise ConfigError(f"{key}={value!r}: expected an integer")
        return int(f)
    if isinstance(current, float):
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={value!r}: expected a number") from None
        if not math.isfinite(f):
            raise ConfigError(f"{key}={value!r}: expected a finite number")
        return f
    if isinstance(current, list):
        if isinstance(value, str):
            s = value.strip().strip("[]")
            items = [v for v in s.split(",") if v.strip()]
        else:
            items = list(value)
        try:
            return [int(float(v)) for v in items]
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={value!r}: expected a list of integers like 200,200") from None
    return str(value)


def set_key(cfg: RunConfig, key: str, value: Any) -> None:
    """Set one dotted key (``optim.lr``) on ``cfg`` in place, coercing the value."""
    if key == "preset":
        cfg.preset = str(value)
        return
    parts = key.split(".")
    if len(parts) != 2 or parts[0] not in SECTIONS:
        raise ConfigError(f"unknown key {key!r}; sections are: {', '.join(SECTIONS)} "
                          f"(e.g. optim.lr)")
    section = getattr(cfg, parts[0])
    names = [f.name for f in dataclasses.fields(section)]
    if parts[1] not in names:
        raise ConfigError(f"unknown key {key!r}; valid {parts[0]}.* keys: {', '.join(names)}")
    setattr(section, parts[1], _coerce(key, value, getattr(section, parts[1])))


def apply_dict(cfg: RunConfig, d: dict[str, Any], prefix: str = "") -> None:
    """Apply a nested or flat dict of overrides (a TOML file, a saved config.json)."""
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            apply_dict(cfg, v, prefix=f"{key}.")
        else:
            set_key(cfg, key, v)


def parse_overrides(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr=1e-3")
        k, v = item.split("=", 1)
        out.append((k.strip(), v.strip()))
    return out


def validate(cfg: RunConfig) -> RunConfig:
    """Check choices and ranges; raise ConfigError with a one-line message on the first problem."""
    for key, allowed in CHOICES.items():
        s, f = key.split(".")
        v = getattr(getattr(cfg, s), f)
        if v not in allowed:
            raise ConfigError(f"{key}={v!r} is not one of: {', '.join(allowed)}")
    for key, (lo, hi, lo_open, hi_open) in RANGES.items():
        s, f = key.split(".")
        v = getattr(getattr(cfg, s), f)
        bad = (lo is not None and (v < lo or (lo_open and v == lo))) or \
              (hi is not None and (v > hi or (hi_open and v == hi)))
        if bad:
            raise ConfigError(f"{key}={v!r} is out of range; allowed: {_fmt_range(lo, hi, lo_open, hi_open)}")
    if cfg.model.arch == "mlp" and any(h < 1 for h in cfg.model.hidden):
        raise ConfigError(f"model.hidden={cfg.model.hidden!r}: widths must be >= 1")
    if cfg.model.arch == "transformer" and cfg.model.d_model % cfg.model.n_heads:
        raise ConfigError(f"model.d_model={cfg.model.d_model} must be divisible by "
                          f"model.n_heads={cfg.model.n_heads}")
    if cfg.task.name == "parity" and cfg.task.k > cfg.task.n_bits:
        raise ConfigError(f"task.k={cfg.task.k} must be <= task.n_bits={cfg.task.n_bits}")
    if cfg.task.name == "mnist" and cfg.model.arch != "mlp":
        raise ConfigError("task.name='mnist' needs model.arch='mlp'")
    if cfg.task.name == "parity" and cfg.model.arch != "mlp":
        raise ConfigError("task.name='parity' needs model.arch='mlp'")
    return cfg


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {e}") from None


def resolve(preset: str | None = None, file: str | Path | None = None,
            overrides: list[str] | list[tuple[str, Any]] | None = None) -> RunConfig:
    """Defaults → preset → TOML file → dotted overrides, then validate."""
    from groklab.presets import get_preset

    cfg = get_preset(preset or "default")
    if file is not None:
        d = load_toml(file)
        if "preset" in d and preset is None:
            cfg = get_preset(d["preset"])
        apply_dict(cfg, d)
    for item in overrides or []:
        k, v = item if isinstance(item, tuple) else parse_overrides([item])[0]
        set_key(cfg, k, v)
    return validate(cfg)


def to_json(cfg: RunConfig) -> str:
    return json.dumps(cfg.to_dict(), indent=2)
