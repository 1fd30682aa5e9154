"""Configuration of a Generative Teaching Network run (Such et al. 2020, arXiv 1912.07768).

Nested dataclasses with defaults, then a TOML file, then dotted ``--set section.key=value``
overrides, in the same style as :mod:`groklab.config`; unknown keys and bad values raise
``ConfigError`` with a one-line message. The resolved config is written into the run directory.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from groklab.config import ConfigError, _coerce, load_toml


@dataclass
class DataConfig:
    name: str = "digits"           # digits | mnist1d | mnist5k | mnist_idx | modular
    idx_dir: str = ""              # mnist_idx: directory with the four idx files
    seed: int = 0                  # train/test split (digits, mnist5k) or generation seed (mnist1d)
    p: int = 23                    # modular: modulus
    op: str = "x+y"                # modular: operation (groklab.tasks.modular.OPS)
    frac: float = 0.5              # modular: training fraction of the table


@dataclass
class GeneratorConfig:
    kind: str = "mlp"              # mlp | conv (images only; the released MNIST generator) | auto
    z_dim: int = 128
    hidden: int = 256              # width of the fully connected layers (released MNIST: 1024)
    channels: list[int] = field(default_factory=lambda: [64, 32])  # conv: channels of the two stages
    weight_norm: bool = True
    out_scale: float = 2.0         # output = out_scale * tanh(.); 0 = linear output


@dataclass
class LearnerConfig:
    kind: str = "mlp"              # mlp | cnn | random (sampled from the NAS space every outer step)
    hidden: list[int] = field(default_factory=lambda: [64, 128])   # mlp widths
    channels: list[int] = field(default_factory=lambda: [32, 64])  # cnn channels (then one linear)
    weight_norm: bool = True
    norm: str = "meanbn"           # meanbn (mean-only BatchNorm of the released code) | none
    random_width: bool = False     # scale every width by a random factor in [0.5, 2] per outer step


@dataclass
class InnerConfig:
    steps: int = 8                 # T
    batch: int = 128               # B: generated examples per inner step
    curriculum: str = "full"       # none | all_shuffled | shuffled_batch | full
    lr: float = 0.3                # initial learned learning rate (paper: 0.02; see docs/gtn.md)
    momentum: float = 0.5          # initial learned momentum (paper: 0.5)
    intermediate: int = 1          # real-data loss after every this many inner steps; 0 = final only
    checkpoint: int = 0            # unroll checkpoint block length (steps); 0 = keep the whole graph


@dataclass
class MetaConfig:
    steps: int = 300               # outer steps
    lr: float = 0.02               # Adam (paper, MNIST)
    min_lr_frac: float = 0.1       # cosine decay to this fraction of lr over `steps`
    clip: float = 1.0              # meta-gradient global-norm clip; 0 = off
    real_batch: int = 512          # real training examples per meta-loss evaluation
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 50
    dtype: str = "float32"         # float32 | float64


@dataclass
class EvalConfig:
    learners: int = 10             # fresh learners per protocol
    lrs: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0])  # real-data grid
    seed: int = 1000


@dataclass
class GTNConfig:
    data: DataConfig = field(default_factory=DataConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    inner: InnerConfig = field(default_factory=InnerConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GTNConfig":
        cfg = cls()
        apply_dict(cfg, d)
        return validate(cfg)


SECTIONS = ("data", "generator", "learner", "inner", "meta", "eval")

CHOICES = {
    "data.name": ("digits", "mnist1d", "mnist5k", "mnist_idx", "modular"),
    "generator.kind": ("auto", "mlp", "conv"),
    "learner.kind": ("mlp", "cnn", "random"),
    "learner.norm": ("none", "meanbn"),
    "inner.curriculum": ("none", "all_shuffled", "shuffled_batch", "full"),
    "meta.dtype": ("float32", "float64"),
}

# key: (lowest allowed, highest allowed or None); all inclusive
RANGES = {
    "data.p": (2, None), "data.frac": (0.01, 0.99),
    "generator.z_dim": (1, None), "generator.hidden": (1, None), "generator.out_scale": (0, None),
    "inner.steps": (1, None), "inner.batch": (1, None), "inner.lr": (1e-8, None),
    "inner.momentum": (1e-8, None), "inner.intermediate": (0, None), "inner.checkpoint": (0, None),
    "meta.steps": (1, None), "meta.lr": (1e-12, None), "meta.min_lr_frac": (0, 1),
    "meta.clip": (0, None), "meta.real_batch": (1, None), "meta.log_every": (1, None),
    "meta.checkpoint_every": (1, None), "eval.learners": (1, None),
}


def set_key(cfg: GTNConfig, key: str, value: Any) -> None:
    """Set one dotted key (``inner.steps``) in place, coercing the value to the field's type."""
    parts = key.split(".")
    if len(parts) != 2 or parts[0] not in SECTIONS:
        raise ConfigError(f"unknown key {key!r}; sections are: {', '.join(SECTIONS)} (e.g. inner.steps)")
    section = getattr(cfg, parts[0])
    names = [f.name for f in dataclasses.fields(section)]
    if parts[1] not in names:
        raise ConfigError(f"unknown key {key!r}; valid {parts[0]}.* keys: {', '.join(names)}")
    current = getattr(section, parts[1])
    if isinstance(current, list) and current and isinstance(current[0], float):
        items = value.strip().strip("[]").split(",") if isinstance(value, str) else list(value)
        try:
            new = [float(v) for v in items if str(v).strip()]
        except ValueError:
            raise ConfigError(f"{key}={value!r}: expected a list of numbers like 0.01,0.1") from None
    else:
        new = _coerce(key, value, current)
    setattr(section, parts[1], new)


def apply_dict(cfg: GTNConfig, d: dict[str, Any], prefix: str = "") -> None:
    for k, v in d.items():
        if isinstance(v, dict):
            apply_dict(cfg, v, prefix=f"{prefix}{k}.")
        else:
            set_key(cfg, f"{prefix}{k}", v)


def validate(cfg: GTNConfig) -> GTNConfig:
    """Check choices and ranges; raise ConfigError naming the first bad value."""
    for key, allowed in CHOICES.items():
        s, f = key.split(".")
        v = getattr(getattr(cfg, s), f)
        if v not in allowed:
            raise ConfigError(f"{key}={v!r} is not one of: {', '.join(allowed)}")
    for key, (lo, hi) in RANGES.items():
        s, f = key.split(".")
        v = getattr(getattr(cfg, s), f)
        if v < lo or (hi is not None and v > hi):
            allowed = f"[{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
            raise ConfigError(f"{key}={v!r} is out of range; allowed: {allowed}")
    for key in ("learner.hidden", "learner.channels", "generator.channels"):
        s, f = key.split(".")
        v = getattr(getattr(cfg, s), f)
        if not v or any(w < 1 for w in v):
            raise ConfigError(f"{key}={v!r}: expected one or more widths >= 1")
    if len(cfg.generator.channels) != 2:
        raise ConfigError(f"generator.channels={cfg.generator.channels!r}: expected two stages, e.g. 64,32")
    if not cfg.eval.lrs or any(lr <= 0 for lr in cfg.eval.lrs):
        raise ConfigError(f"eval.lrs={cfg.eval.lrs!r}: expected positive learning rates")
    if cfg.data.name == "mnist_idx" and not cfg.data.idx_dir:
        raise ConfigError("data.name='mnist_idx' needs data.idx_dir=<directory with the idx files>")
    if cfg.inner.curriculum in ("full", "shuffled_batch", "all_shuffled") and cfg.inner.batch < 1:
        raise ConfigError(f"inner.batch={cfg.inner.batch} must be >= 1")
    return cfg


# Named starting points (``--recipe``): the settings behind the figures of docs/gtn.md.
RECIPES: dict[str, list[str]] = {
    "digits": [],
    "digits-t32": ["inner.steps=32", "inner.checkpoint=8"],
    "mnist5k": ["data.name=mnist5k", "inner.steps=32", "inner.checkpoint=8", "inner.lr=0.02",
                "meta.steps=200", "learner.hidden=128", "meta.real_batch=256"],
    "mnist5k-conv": ["data.name=mnist5k", "inner.steps=32", "inner.checkpoint=8", "inner.lr=0.02",
                     "generator.kind=conv", "generator.hidden=1024", "learner.hidden=128",
                     "meta.real_batch=256"],
    "mnist1d-nas": ["data.name=mnist1d", "learner.kind=random", "inner.steps=16",
                    "learner.weight_norm=false", "generator.out_scale=0", "eval.lrs=0.01,0.03,0.1,0.3"],
    "modular": ["data.name=modular", "data.p=23", "data.frac=0.5", "learner.hidden=128",
                "generator.out_scale=0"],
}


def resolve(file: str | Path | None = None, overrides: list[str] | None = None,
            recipe: str | None = None) -> GTNConfig:
    """Defaults → recipe → TOML file → dotted overrides (``KEY=VALUE`` strings), then validate."""
    cfg = GTNConfig()
    if recipe is not None:
        if recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {recipe!r}; recipes: {', '.join(RECIPES)}")
        for item in RECIPES[recipe]:
            k, v = item.split("=", 1)
            set_key(cfg, k, v)
    if file is not None:
        apply_dict(cfg, load_toml(file))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. inner.steps=32")
        k, v = item.split("=", 1)
        set_key(cfg, k.strip(), v.strip())
    return validate(cfg)
