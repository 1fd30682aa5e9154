"""Tasks: algorithmic tables (mod p, S_n), sparse parity, and offline image data."""
from __future__ import annotations

from groklab.tasks.base import Task, split_indices
from groklab.tasks.causal import causal_task, nie_wager
from groklab.tasks.concealed import concealed_modular_task, concealed_parity_task
from groklab.tasks.modular import OPS, is_prime, modular_task, operation_table
from groklab.tasks.parity import parity_task
from groklab.tasks.permutations import PERM_OPS, permutation_task
from groklab.tasks.regression import line_task, sine_task


def build_task(cfg) -> Task:
    """Build the Task a ``TaskConfig`` describes. Raises ValueError on a bad op or modulus."""
    if cfg.name == "modular":
        return modular_task(cfg.op, cfg.p, cfg.frac, cfg.split_seed, cfg.label_noise, cfg.pairs)
    if cfg.name == "permutation":
        return permutation_task(cfg.op, cfg.n, cfg.frac, cfg.split_seed, cfg.label_noise)
    if cfg.name == "parity":
        return parity_task(cfg.n_bits, cfg.k, cfg.n_samples, cfg.frac, cfg.split_seed, cfg.label_noise)
    if cfg.name == "mnist":
        from groklab.tasks.images import mnist_task
        return mnist_task(cfg.n_train, cfg.split_seed, cfg.label_noise)
    if cfg.name == "causal":
        if cfg.label_noise:
            raise ValueError("task.label_noise applies to class labels; task.name='causal' has none")
        return causal_task(cfg.setup, cfg.n_samples, cfg.covariates, cfg.noise, cfg.frac, cfg.split_seed)
    if cfg.name == "concealed_parity":
        return concealed_parity_task(cfg.k, cfg.n_concealed, cfg.n_train, cfg.n_val, cfg.split_seed)
    if cfg.name == "concealed_modular":
        return concealed_modular_task(cfg.op, cfg.p, cfg.n_concealed, cfg.n_train, cfg.n_val,
                                      cfg.split_seed)
    if cfg.name == "sine":
        return sine_task(cfg.n_train, cfg.n_val, cfg.noise, cfg.split_seed)
    if cfg.name == "line":
        return line_task(cfg.n_train, cfg.n_val, cfg.split_seed)
    raise ValueError(f"unknown task.name {cfg.name!r}; allowed: modular, permutation, parity, mnist, causal, "
                     "concealed_parity, concealed_modular, sine, line")


__all__ = ["Task", "build_task", "split_indices", "modular_task", "permutation_task",
           "parity_task", "causal_task", "nie_wager", "concealed_parity_task",
           "concealed_modular_task", "sine_task", "line_task", "operation_table", "OPS", "PERM_OPS", "is_prime"]
