"""Measures: grokking events and phases; progress measures."""
from groklab.measure.events import THRESHOLDS, EventTracker, phase_label

__all__ = ["THRESHOLDS", "EventTracker", "phase_label"]
