"""Run configuration: pydantic sections with their bounds, dotted overrides, validation.

Defaults live in the models; a preset replaces some of them; a TOML file and then
``--set section.key=value`` overrides are applied on top (Meta Lingua's order). Every field
declares its type and bounds here (the validation layer is :mod:`groklab.schema`, shared with
sweeps and GTN), so a wrong type, an overflow or an absurd size is one line naming the key.
The resolved config is written into every run directory, and a run is reproducible from it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, model_validator

from groklab.schema import (
    Bool,
    Config,
    ConfigError,
    Field,
    Float,
    Int,
    IntList,
    Section,
    Str,
    all_keys,
    apply_dict,
    load_toml,
    parse_overrides,
    set_key,
    validate,
)

SEED_MAX = 2**32 - 1   # numpy's and torch's common seed range
BIG = 10**9            # step counts and periods: far beyond any run, far below an overflow

__all__ = ["ConfigError", "RunConfig", "TaskConfig", "ModelConfig", "OptimConfig", "AccelConfig",
           "TrainConfig", "CostConfig", "SECTIONS", "RESUMABLE", "all_keys", "apply_dict", "load_toml",
           "parse_overrides", "resolve", "set_key", "to_json", "validate"]


class TaskConfig(Section):
    name: Literal["modular", "permutation", "parity", "mnist", "causal", "concealed_parity",
                  "concealed_modular", "sine", "line"] = "modular"
    op: Str = "x+y"                               # modular: tasks.modular.OPS; permutation: x*y, ...
    p: Int = Field(113, ge=2, le=1000)            # modulus: p² pairs
    n: Int = Field(5, ge=2, le=8)                 # permutation group S_n
    frac: Float = Field(0.3, gt=0, lt=1)          # training fraction of all examples
    split_seed: Int = Field(0, ge=0, le=SEED_MAX)  # seed of the train/validation split
    label_noise: Int = Field(0, ge=0, le=10**7)   # training answers replaced by random answers
    n_bits: Int = Field(40, ge=1, le=1024)        # sparse parity: input bits
    k: Int = Field(3, ge=1, le=1024)              # sparse / concealed parity: relevant bits
    n_concealed: Int = Field(37, ge=0, le=1000)   # concealed_*: random bits appended (Miller et al. 2024)
    n_samples: Int = Field(1000, ge=2, le=10**6)  # sparse parity, causal: examples (train + validation)
    n_train: Int = Field(1000, ge=1, le=4999)     # mnist: training images (of the bundled 5,000);
                                                  # concealed_*, sine, line: training examples
    n_val: Int = Field(100, ge=1, le=10**5)       # concealed_*, sine, line: validation examples
    pairs: Literal["all", "a<=b"] = "all"         # modular: every (a, b), or only a <= b (PAIR 2023)
    setup: Literal["A", "B", "C", "D"] = "A"      # causal: Nie & Wager setup (tasks.causal)
    covariates: Int = Field(10, ge=5, le=1000)    # causal: covariates p (X1..X5 matter)
    noise: Float = Field(1.0, ge=0, le=100)       # causal: outcome noise std σ; sine: y noise std


class ModelConfig(Section):
    # pair: PAIR's tied MLP (d_model, d_mlp); tarnet: causal
    arch: Literal["transformer", "mlp", "pair", "tarnet",
                  "gp", "gp-regression", "linear", "bnn"] = "transformer"
    n_layers: Int = Field(1, ge=1, le=32)
    d_model: Int = Field(128, ge=1, le=8192)
    n_heads: Int = Field(4, ge=1, le=256)
    d_mlp: Int = Field(512, ge=1, le=65536)
    act: Literal["relu", "gelu"] = "relu"
    norm: Literal["none", "pre", "post"] = "none"  # LayerNorm placement
    dropout: Float = Field(0.0, ge=0, lt=1)
    causal: Bool = True
    init: Literal["nanda", "torch"] = "nanda"      # transformer initialisation
    init_scale: Float = Field(1.0, gt=0, le=1e4)   # every parameter × this after init (Omnigrok)
    tied: Bool = True                              # pair: logits through W_E (PAIR) or an own W_U (tickets paper)
    hidden: IntList(1, 65536, 32) = [200, 200]     # mlp hidden widths
    embed: Literal["onehot", "learned"] = "onehot"  # mlp input
    bias: Bool = False                             # mlp biases
    head_hidden: IntList(1, 65536, 32) = [100, 100]  # tarnet: each arm's head widths (hidden = Φ)
    tol: Float = Field(0.1, gt=0, le=1e6)         # tarnet: a unit is "correct" if |τ̂ − τ| < tol


class OptimConfig(Section):
    name: Literal["adamw", "adam", "sgd", "muon"] = "adamw"  # decoupled wd | coupled L2 | momentum, L2 | Muon
    lr: Float = Field(1e-3, gt=0, le=1e6)
    wd: Float = Field(1.0, ge=0, le=1e4)
    beta1: Float = Field(0.9, ge=0, lt=1)
    beta2: Float = Field(0.98, ge=0, lt=1)
    eps: Float = Field(1e-8, gt=0, le=1)
    momentum: Float = Field(0.9, ge=0, lt=1)
    schedule: Literal["constant", "cosine", "linear"] = "constant"  # after warm-up
    warmup: Int = Field(10, ge=0, le=BIG)          # linear warm-up steps
    min_lr_frac: Float = Field(0.0, ge=0, le=1)    # floor of cosine/linear decay, fraction of lr
    clip: Float = Field(0.0, ge=0, le=1e9)         # global gradient-norm clip; 0 = off
    aux_lr: Float = Field(0.0, ge=0, le=1e6)       # muon: AdamW's lr on the non-2-D tensors; 0 = lr


class AccelConfig(Section):
    grokfast: Literal["none", "ema", "ma"] = "none"  # Lee et al. 2024
    alpha: Float = Field(0.98, ge=0, lt=1)         # Grokfast-EMA momentum
    lamb: Float = Field(2.0, ge=0, le=1e4)         # Grokfast amplification
    window: Int = Field(100, ge=1, le=10**5)       # Grokfast-MA window
    orthograd: Bool = False                        # ⊥Grad (Prieto et al. 2025)
    egd: Bool = False                              # egalitarian GD: 2-D grads -> U Vᵀ (Pasand & Dohmatob 2025)
    weight_norm: Float = Field(0.0, ge=0, le=1e9)  # project total weight norm to this; 0 = off


class TrainConfig(Section):
    steps: Int = Field(10000, ge=1, le=BIG)
    batch_size: Int = Field(0, ge=0, le=10**7)     # 0 = full batch
    eval_every: Int = Field(10, ge=1, le=BIG)
    measure_every: Int = Field(0, ge=0, le=BIG)    # progress measures while training; 0 = off
    loss: Literal["ce", "mse", "stablemax"] = "ce"
    loss_dtype: Literal["float32", "float64"] = "float64"  # the softmax/loss precision
    dtype: Literal["float32", "float64"] = "float32"       # model precision
    autocast: Literal["off", "bfloat16"] = "off"  # training forward's matmuls in bf16 (evaluations: dtype)
    seed: Int = Field(0, ge=0, le=SEED_MAX)        # model initialisation
    batch_seed: Int = Field(0, ge=0, le=SEED_MAX)  # minibatch order
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    fast: Bool = True                              # exact fast path (answer position, token tables)
    stop_threshold: Float = Field(0.0, ge=0, le=1)  # stop once val acc >= this for `patience`; 0 = off
    patience: Int = Field(0, ge=0, le=BIG)
    phase_gap: Int = Field(1000, ge=0, le=BIG)     # Liu et al.: t_val - t_train above this: grokking
    phase_threshold: Float = Field(0.9, gt=0, le=1)  # accuracy threshold of the phase label
    n_checkpoints: Int = Field(12, ge=0, le=1000)  # log-spaced checkpoints kept (plus the last)
    checkpoint_every: Int = Field(0, ge=0, le=BIG)  # also keep one every this many steps; 0 = off
    save_every: Int = Field(500, ge=1, le=BIG)     # a resumable checkpoint at least this often
    forecast: Bool = True                          # forecast.jsonl at every evaluation (groklab.forecast)


def _country(v: Any) -> Any:
    if not (isinstance(v, str) and (v == "WORLD" or (len(v) == 3 and v.isascii() and v.isalpha() and v.isupper()))):
        raise ValueError("expected WORLD or an ISO-3 country code such as USA, FRA, IND")
    return v


class CostConfig(Section):
    country: Annotated[str, BeforeValidator(_country)] = "WORLD"  # grid carbon intensity (runs.cost)


class RunConfig(Config):
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    accel: AccelConfig = Field(default_factory=AccelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    preset: Str = ""

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        """Rules that tie two keys together."""
        t, m = self.task, self.model
        if m.arch == "transformer" and m.d_model % m.n_heads:
            raise ValueError(f"model.d_model={m.d_model} must be divisible by model.n_heads={m.n_heads}")
        if t.name == "parity" and t.k > t.n_bits:
            raise ValueError(f"task.k={t.k} must be <= task.n_bits={t.n_bits}")
        if t.name == "parity" and t.n_bits * t.n_samples > 5 * 10**7:
            raise ValueError(f"task.n_bits × task.n_samples = {t.n_bits * t.n_samples:,} bits; "
                             f"at most 50,000,000 allowed")
        if t.pairs != "all" and t.name != "modular":
            raise ValueError(f"task.pairs={t.pairs!r} applies to task.name='modular' only")
        if t.name in ("mnist", "parity") and m.arch != "mlp":
            raise ValueError(f"task.name={t.name!r} needs model.arch='mlp'")
        allowed = NONNEURAL.get(m.arch)  # Miller et al. 2024: which task each model works on
        if allowed is not None and t.name not in allowed:
            raise ValueError(f"model.arch={m.arch!r} needs task.name in {', '.join(allowed)} "
                             f"(here {t.name!r})")
        if t.name in ("sine", "line") and m.arch not in ("gp-regression", "linear"):
            raise ValueError(f"task.name={t.name!r} needs model.arch='gp-regression' or 'linear'")
        if t.name == "concealed_parity" and m.arch not in ("gp", "bnn", "mlp"):
            raise ValueError("task.name='concealed_parity' needs model.arch='gp', 'bnn' or 'mlp'")
        if t.name == "concealed_modular" and m.arch not in ("bnn", "mlp"):
            raise ValueError("task.name='concealed_modular' needs model.arch='mlp' or 'bnn'")
        width = t.n_concealed + (t.k if t.name == "concealed_parity" else 2 * t.p)
        if t.name.startswith("concealed") and (t.n_train + t.n_val) * width > 5 * 10**7:
            raise ValueError(f"(task.n_train + task.n_val) × {width} input bits is over 50,000,000")
        if m.arch == "gp" and t.n_train > 3000:
            raise ValueError(f"model.arch='gp' keeps every training input as an inducing point "
                             f"(an N×N Cholesky); task.n_train={t.n_train}, at most 3000 allowed")
        if (t.name == "causal") != (m.arch == "tarnet"):
            raise ValueError(f"task.name='causal' and model.arch='tarnet' go together "
                             f"(here task.name={t.name!r}, model.arch={m.arch!r})")
        if t.name == "causal" and t.covariates * t.n_samples > 5 * 10**7:
            raise ValueError(f"task.covariates × task.n_samples = {t.covariates * t.n_samples:,} "
                             f"numbers; at most 50,000,000 allowed")
        return self


# the tasks each model of "Grokking without neural networks" runs on (models.gp, models.bayes)
NONNEURAL = {"gp": ("concealed_parity",), "gp-regression": ("sine", "line"),
             "linear": ("line", "sine"), "bnn": ("concealed_parity", "concealed_modular")}

SECTIONS = ("task", "model", "optim", "accel", "train")

# Keys that cannot change what a run means (its budget, logging, stopping, checkpoints, labels):
# the only ones ``--resume`` accepts.
RESUMABLE = frozenset({"train.steps", "train.eval_every", "train.measure_every",
                       "train.stop_threshold", "train.patience", "train.phase_gap",
                       "train.phase_threshold", "train.n_checkpoints", "train.checkpoint_every",
                       "train.save_every", "cost.country"})


def resolve(preset: str | None = None, file: str | Path | None = None,
            overrides: list[str] | list[tuple[str, Any]] | None = None) -> RunConfig:
    """Defaults → preset → TOML file → dotted overrides, then validate."""
    from groklab.presets import get_preset

    if preset is not None and not (isinstance(preset, str) and preset.strip()):
        raise ConfigError(f"preset {preset!r}: expected a preset name (see `groklab presets`)")
    pairs = [item if isinstance(item, tuple) else parse_overrides([item])[0] for item in overrides or []]
    d = load_toml(file) if file is not None else {}
    name = preset if preset is not None else d.get("preset", "default")
    for k, v in pairs:
        if k == "preset":  # a preset is a starting point, not a setting: name it with --preset
            raise ConfigError(f"--set preset={v!r}: choose a preset with --preset NAME")
    if not isinstance(name, str):
        raise ConfigError(f"preset={name!r}: expected a preset name")
    if preset and d.get("preset", preset) != preset:
        raise ConfigError(f"--preset {preset!r} and the config file's preset = {d['preset']!r} disagree")
    cfg = get_preset(name)
    apply_dict(cfg, {k: v for k, v in d.items() if k != "preset"})
    for k, v in pairs:
        set_key(cfg, k, v)
    return validate(cfg)


def to_json(cfg: RunConfig) -> str:
    return json.dumps(cfg.to_dict(), indent=2)
