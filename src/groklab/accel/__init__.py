"""Accelerators: losses (StableMax, float64 CE), gradient transforms (Grokfast, ⊥Grad, clipping,
weight-norm control), the accelerator presets and the race between them."""
from groklab.accel.losses import (
    build_loss,
    collapse_fraction,
    cross_entropy,
    mse_onehot,
    stablemax,
    stablemax_cross_entropy,
)
from groklab.accel.transforms import (
    GradientTransformation,
    build_transforms,
    chain,
    clip_by_global_norm,
    global_norm,
    grokfast_ema,
    grokfast_ma,
    identity,
    orthograd,
    project_weight_norm,
    scale_to_norm,
)

__all__ = ["build_loss", "collapse_fraction", "cross_entropy", "mse_onehot", "stablemax",
           "stablemax_cross_entropy", "GradientTransformation", "build_transforms", "chain",
           "clip_by_global_norm", "global_norm", "grokfast_ema", "grokfast_ma", "identity",
           "orthograd", "project_weight_norm", "scale_to_norm"]
