"""Grokking tickets (Minegishi, Iwasawa, Matsuo 2024, arXiv 2310.19470): masks and retraining."""
from __future__ import annotations

from groklab.ticket.mask import magnitude_mask, random_mask, same_norm
from groklab.ticket.run import CONTROLS, initial_weights, plan, ticket

__all__ = ["CONTROLS", "initial_weights", "magnitude_mask", "plan", "random_mask", "same_norm", "ticket"]
