"""Measures: grokking events and phases; progress measures (Nanda et al. 2023), RQI, feature rank."""
from groklab.measure.circuit import (
    excluded_loss,
    excluded_loss_per_freq,
    key_frequencies,
    neuron_clusters,
    neuron_frequency_shares,
    restricted_loss,
)
from groklab.measure.events import THRESHOLDS, EventTracker, phase_label
from groklab.measure.fourier import Frame, fourier_basis, frame_for, primitive_root
from groklab.measure.neurons import neuron_view
from groklab.measure.norms import fourier_gini, fourier_norms, gini, per_frequency, weight_norms
from groklab.measure.probe import layer_probe_accuracies, linear_probe_accuracy
from groklab.measure.rank import feature_rank, feature_ranks, linear_outputs
from groklab.measure.rqi import rqi

__all__ = ["THRESHOLDS", "EventTracker", "phase_label", "Frame", "fourier_basis", "frame_for",
           "primitive_root", "key_frequencies", "neuron_clusters", "neuron_frequency_shares",
           "restricted_loss", "excluded_loss", "excluded_loss_per_freq", "fourier_norms",
           "per_frequency", "fourier_gini", "gini", "weight_norms", "rqi", "feature_rank", "feature_ranks",
           "linear_outputs", "linear_probe_accuracy", "layer_probe_accuracies", "neuron_view"]
