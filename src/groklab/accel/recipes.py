"""Accelerator presets: the papers' accelerated recipes and the recipes of ``groklab race``.

Registered with ``@preset`` when ``groklab.presets`` is imported; ``groklab presets NAME`` prints
every setting. Paper recipes keep the paper's task; race recipes (``mlp-*``) all train Prieto et
al.'s MLP on the ``nanda`` task (a+b mod 113, 30 % training data), so they differ only in the
accelerator and their rows in the race table compare like with like.
"""
from __future__ import annotations

from groklab.config import RunConfig
from groklab.presets import grokfast_baseline, preset, prieto


def _renamed(cfg: RunConfig, name: str) -> RunConfig:
    cfg.preset = name
    return cfg


# ---- Grokfast (Lee et al. 2024, arXiv 2405.20233) -------------------------------------------

@preset("grokfast-ma")
def grokfast_ma() -> RunConfig:
    """Lee et al. 2024 (Grokfast, arXiv 2405.20233), Fig. 2 / Table 1, Grokfast-MA: the
    grokfast-baseline recipe (x*y mod 97, 50 %, 2-layer pre-LN transformer, Adam with coupled L2,
    lr 1e-3, betas (0.9, 0.98), batch 512, warm-up 10) with the moving-average filter, window 100,
    lambda 5, and L2 0.01. Reported: 790 steps to 95 % validation (baseline 39,890).
    Adding lambda times the filtered gradient scales the slow component's step by about 1 + lambda.
    Checkpoints are few: the filter's 100-gradient window is part of every checkpoint."""
    cfg = _renamed(grokfast_baseline(), "grokfast-ma")
    cfg.accel.grokfast, cfg.accel.window, cfg.accel.lamb = "ma", 100, 5.0
    cfg.optim.wd = 0.01
    cfg.train.steps, cfg.train.eval_every, cfg.train.n_checkpoints = 5000, 10, 2
    return cfg


@preset("grokfast-ema")
def grokfast_ema() -> RunConfig:
    """Lee et al. 2024 (Grokfast, arXiv 2405.20233), Fig. 2 / Table 1, Grokfast-EMA: the
    grokfast-baseline recipe with the EMA filter, alpha 0.98, lambda 2, and L2 0.005 (Adam,
    coupled). Reported: 910 steps to 95 % validation (baseline 39,890)."""
    cfg = _renamed(grokfast_baseline(), "grokfast-ema")
    cfg.accel.grokfast, cfg.accel.alpha, cfg.accel.lamb = "ema", 0.98, 2.0
    cfg.optim.wd = 0.005
    cfg.train.steps, cfg.train.eval_every = 5000, 10
    return cfg


# ---- Prieto et al. 2025 (arXiv 2501.04697) --------------------------------------------------

@preset("prieto-orthograd")
def prieto_orthograd() -> RunConfig:
    """Prieto et al. 2025 (arXiv 2501.04697), Fig. 6 (⊥AdamW): the ``prieto`` MLP recipe
    (a+b mod 113, 40 %, MLP 226-200-200-113, full-batch AdamW lr 0.01, wd 0, betas (0.9, 0.99),
    eps 1e-25, float64 loss) with ⊥Grad before AdamW. Reported: generalizes within 300 epochs,
    without weight decay."""
    cfg = _renamed(prieto(), "prieto-orthograd")
    cfg.accel.orthograd = True
    cfg.train.steps = 1000
    return cfg


@preset("prieto-stablemax")
def prieto_stablemax() -> RunConfig:
    """Prieto et al. 2025 (arXiv 2501.04697), Fig. 4 (StableMax): the ``prieto`` MLP recipe with
    StableMax cross-entropy in float64 and no weight decay. Reported: groks with no
    regularisation, where softmax cross-entropy stops at memorisation (softmax collapse)."""
    cfg = _renamed(prieto(), "prieto-stablemax")
    cfg.train.loss, cfg.train.loss_dtype = "stablemax", "float64"
    cfg.train.steps = 20000
    return cfg


@preset("prieto-float32")
def prieto_float32() -> RunConfig:
    """Prieto et al. 2025 (arXiv 2501.04697), Fig. 2 / §3, the control of ``prieto-stablemax``:
    the same MLP recipe with softmax cross-entropy in float32 and no weight decay. Reported:
    memorises, then the softmax collapses (the correct-class gradient is exactly 0) and validation
    accuracy stays far from 100 %."""
    cfg = _renamed(prieto(), "prieto-float32")
    cfg.train.loss, cfg.train.loss_dtype = "ce", "float32"
    cfg.train.steps = 20000
    return cfg


# ---- Chou 2025, "Grokking Baseline Revisited": a tuned AdamW in Prieto's setting -------------

@preset("chou-adamw")
def chou_adamw() -> RunConfig:
    """Chou 2025 ("Grokking Baseline Revisited"; the grid in github.com/EIFY's fork of Prieto et
    al.'s code, ``wd_experiments.sh``): a+b mod 113, 40 % training data, learned embeddings of 50
    per operand concatenated, MLP 100-200-200-113 with biases, ReLU, full-batch AdamW with weight
    decay on every parameter, betas (0.9, 0.99), eps 1e-25, no warm-up, float32 cross-entropy.
    The grid's best for this variant: lr 0.05, wd 2. Reported: 100 % test accuracy at epoch 111
    (one seed, the best of 7 lrs × 5 wds); 126 with one hidden layer (lr 0.05, wd 2), 146 with
    three (lr 0.01, wd 4)."""
    cfg = _renamed(prieto(), "chou-adamw")
    m = cfg.model
    m.embed, m.d_model, m.bias = "learned", 50, True
    cfg.optim.lr, cfg.optim.wd = 0.05, 2.0
    cfg.train.loss_dtype, cfg.train.steps, cfg.train.eval_every = "float32", 400, 1
    cfg.train.stop_threshold, cfg.train.patience = 1.0, 0
    return cfg


# ---- the race: Prieto et al.'s MLP on the nanda task, one accelerator per recipe ------------

def _race_mlp(name: str) -> RunConfig:
    """Prieto's MLP (226-200-200-113, ReLU, no biases, one-hot x ++ y, float64 loss) on the
    ``nanda`` task: a+b mod 113 with 30 % training data (split seed 0), full batch, a budget of
    1,000 steps, stopping at 99 % validation accuracy."""
    cfg = _renamed(prieto(), name)
    cfg.train.steps = 1000
    cfg.task.op, cfg.task.p, cfg.task.frac, cfg.task.split_seed = "x+y", 113, 0.3, 0
    cfg.train.eval_every, cfg.train.stop_threshold, cfg.train.patience = 10, 0.99, 0
    return cfg


@preset("mlp-adamw")
def mlp_adamw() -> RunConfig:
    """Race baseline: plain AdamW with decoupled weight decay (Loshchilov & Hutter), the
    regulariser Power et al. 2022 (arXiv 2201.02177, Fig. 2) found best for grokking, on the
    race MLP and task (a+b mod 113, 30 %); lr 3e-3, wd 1, betas (0.9, 0.98)."""
    cfg = _race_mlp("mlp-adamw")
    cfg.optim.lr, cfg.optim.wd, cfg.optim.beta2, cfg.optim.eps = 3e-3, 1.0, 0.98, 1e-8
    return cfg


@preset("mlp-grokfast-ema")
def mlp_grokfast_ema() -> RunConfig:
    """``mlp-adamw`` plus Grokfast-EMA (Lee et al. 2024, arXiv 2405.20233, Algorithm 2) with the
    paper's alpha 0.98, lambda 2."""
    cfg = _renamed(mlp_adamw(), "mlp-grokfast-ema")
    cfg.accel.grokfast, cfg.accel.alpha, cfg.accel.lamb = "ema", 0.98, 2.0
    return cfg


@preset("mlp-grokfast-ma")
def mlp_grokfast_ma() -> RunConfig:
    """``mlp-adamw`` plus Grokfast-MA (Lee et al. 2024, arXiv 2405.20233, Algorithm 1) with the
    paper's window 100, lambda 5."""
    cfg = _renamed(mlp_adamw(), "mlp-grokfast-ma")
    cfg.accel.grokfast, cfg.accel.window, cfg.accel.lamb = "ma", 100, 5.0
    return cfg


@preset("mlp-orthograd")
def mlp_orthograd() -> RunConfig:
    """⊥AdamW of Prieto et al. 2025 (arXiv 2501.04697, Fig. 6) on the race task (30 % instead of
    the paper's 40 %): lr 0.01, wd 0, betas (0.9, 0.99), eps 1e-25, full batch."""
    cfg = _race_mlp("mlp-orthograd")
    cfg.accel.orthograd = True
    return cfg


@preset("mlp-stablemax")
def mlp_stablemax() -> RunConfig:
    """StableMax cross-entropy of Prieto et al. 2025 (arXiv 2501.04697, Fig. 4) on the race task:
    plain AdamW lr 0.01, wd 0, no other regulariser."""
    cfg = _race_mlp("mlp-stablemax")
    cfg.train.loss = "stablemax"
    return cfg


@preset("mlp-init-scale")
def mlp_init_scale() -> RunConfig:
    """Smaller initialisation (Liu et al. 2022, Omnigrok, arXiv 2210.01117, §3: grokking is
    delayed by a large weight norm, so starting nearer the "Goldilocks" norm removes the delay):
    ``mlp-adamw`` with every parameter ×0.5 at init."""
    cfg = _renamed(mlp_adamw(), "mlp-init-scale")
    cfg.model.init_scale = 0.5
    return cfg


@preset("mlp-fast")
def mlp_fast() -> RunConfig:
    """The race's fastest recipe: ⊥AdamW (Prieto et al. 2025, arXiv 2501.04697) with the total
    weight norm held at 45 (Liu et al. 2022, Omnigrok, arXiv 2210.01117, §3: at a fixed norm in
    the "Goldilocks" range the generalizing solution comes without delay; at 25-30 it did not
    fit, at 55 it took ~1.5x the steps), on a narrower MLP (226-128-128-113: 60 % of the
    200-wide step's arithmetic), float32 loss (⊥Grad and the fixed norm keep the logits far
    from softmax collapse). AdamW lr 0.03, wd 0, betas (0.9, 0.95), eps 1e-25, full batch: the
    learning rate and beta2 chosen on the tuning split (split seed 1, model seeds 10,000-10,002;
    docs/accelerators.md), where they cut the steps to 99 % from 250 (lr 0.01, beta2 0.99) to 170."""
    cfg = _renamed(mlp_orthograd(), "mlp-fast")
    cfg.model.hidden, cfg.accel.weight_norm = [128, 128], 45.0
    cfg.train.loss_dtype = "float32"
    cfg.optim.lr, cfg.optim.beta2 = 0.03, 0.95
    return cfg


@preset("mlp-fast-bf16")
def mlp_fast_bf16() -> RunConfig:
    """``mlp-fast`` with the training step's matrix products in bfloat16 (``train.autocast``:
    torch.autocast; on CPUs with AMX or AVX-512 BF16 about 3x faster than float32 products). The
    weights, AdamW, ⊥Grad, the norm projection and the float32 loss stay float32, and every
    evaluation (the 99 % it races to) is the float32 model's."""
    cfg = _renamed(mlp_fast(), "mlp-fast-bf16")
    cfg.train.autocast = "bfloat16"
    return cfg


@preset("mlp-muon")
def mlp_muon() -> RunConfig:
    """Muon (Tveit et al. 2025, arXiv 2504.16041, "Muon Optimizer Accelerates Grokking": Muon on
    the 2-D weights, AdamW on the rest) on the race MLP and task. Muon's reference settings
    (Jordan 2024, which the paper uses): lr 0.02, momentum 0.95 with Nesterov, 5 Newton–Schulz
    steps; decoupled weight decay 0.1 (PyTorch's Muon default). The race MLP has no biases, so
    every tensor is a matrix and Muon trains them all. Reported: the mean grokking epoch falls
    from 153 (AdamW) to 103 across the paper's tasks (1.5x)."""
    cfg = _race_mlp("mlp-muon")
    o = cfg.optim
    o.name, o.lr, o.momentum, o.wd, o.aux_lr, o.beta2, o.eps = "muon", 0.02, 0.95, 0.1, 1e-3, 0.98, 1e-8
    return cfg


@preset("mlp-muon-bf16")
def mlp_muon_bf16() -> RunConfig:
    """``mlp-muon`` with the training step's matrix products in bfloat16 (``train.autocast``, as
    ``mlp-fast-bf16``; torch's Muon already runs its Newton–Schulz steps in bfloat16). The weights,
    Muon's momentum, the AdamW on non-matrix tensors and the loss stay float32, and every
    evaluation is the float32 model's. groklab's recipe for the transformer task ``mul97``, where
    Muon takes the fewest steps of the race's published methods and bfloat16 makes each cheaper."""
    cfg = _renamed(mlp_muon(), "mlp-muon-bf16")
    cfg.train.autocast = "bfloat16"
    return cfg


@preset("mlp-egd")
def mlp_egd() -> RunConfig:
    """Egalitarian gradient descent (Pasand & Dohmatob 2025, arXiv 2510.04930): every weight
    matrix's gradient replaced by U Vᵀ of its SVD, then plain gradient descent with the
    paper's modular-addition settings (its code, main-results/mod_add.py): lr 0.7, L2 1e-4
    (coupled), no momentum. (The paper whitens the first layer of its 1-hidden-layer MLP; here
    every matrix of the race MLP is.) Reported: the plateau between memorisation and
    generalisation is removed or greatly shortened on modular addition and sparse parity."""
    cfg = _race_mlp("mlp-egd")
    cfg.optim.name, cfg.optim.lr, cfg.optim.wd, cfg.optim.momentum = "sgd", 0.7, 1e-4, 0.0
    cfg.accel.egd = True
    return cfg


@preset("mlp-adam-l2")
def mlp_adam_l2() -> RunConfig:
    """Adam with coupled L2 (the gradient gets wd·θ, as in Grokfast's baseline, Lee et al. 2024,
    arXiv 2405.20233) on the race MLP and task: lr 3e-3, L2 0.01 (Grokfast-MA's), betas (0.9, 0.98)."""
    cfg = _race_mlp("mlp-adam-l2")
    cfg.optim.name, cfg.optim.lr, cfg.optim.wd, cfg.optim.beta2, cfg.optim.eps = "adam", 3e-3, 0.01, 0.98, 1e-8
    return cfg


@preset("mlp-weight-norm")
def mlp_weight_norm() -> RunConfig:
    """Weight-norm control alone (Liu et al. 2022, Omnigrok, arXiv 2210.01117, §3): AdamW lr 3e-3
    without weight decay, the total weight norm projected back to 45 after every step (the
    target ``mlp-fast`` found; at initialisation the race MLP's norm is about 13)."""
    cfg = _race_mlp("mlp-weight-norm")
    cfg.optim.lr, cfg.optim.wd, cfg.optim.beta2, cfg.optim.eps = 3e-3, 0.0, 0.98, 1e-8
    cfg.accel.weight_norm = 45.0
    return cfg
