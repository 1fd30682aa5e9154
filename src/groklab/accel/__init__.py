"""Accelerators: losses (StableMax, float64 CE) and gradient transforms."""
from groklab.accel.losses import build_loss, collapse_fraction, cross_entropy, stablemax_cross_entropy

__all__ = ["build_loss", "collapse_fraction", "cross_entropy", "stablemax_cross_entropy"]
