"""Optimize mode's sampler, the one named and seeded, and its trial bound (issue 23 item 9: the
mutation run of sweep/ found a mutant that swapped random and TPE, one that dropped the seed, and
one that refused n_trials = MAX_TRIALS, unseen)."""
import optuna
import pytest

from groklab.config import ConfigError
from groklab.sweep.optimize import MAX_TRIALS, make_sampler
from groklab.sweep.spec import parse_spec


def test_the_named_sampler_is_built_with_its_seed():
    for name, cls in (("random", optuna.samplers.RandomSampler), ("tpe", optuna.samplers.TPESampler)):
        assert type(make_sampler({"sampler": name, "sampler_seed": 3})) is cls

    def first_draw(seed):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=make_sampler({"sampler": "random", "sampler_seed": seed}))
        return study.ask().suggest_float("x", 0.0, 1.0)
    assert first_draw(3) == first_draw(3) != first_draw(4)


def test_n_trials_may_be_the_maximum_and_not_more():
    def spec(n):
        return parse_spec({"preset": "prieto", "name": "opt", "mode": "optimize", "axes": {"optim.wd": [0.0, 1.0]},
                           "optimize": {"n_trials": n}})
    assert spec(MAX_TRIALS).optimize["n_trials"] == MAX_TRIALS
    with pytest.raises(ConfigError, match=f"n_trials = {MAX_TRIALS + 1} must be an integer from 1 to {MAX_TRIALS}"):
        spec(MAX_TRIALS + 1)
