"""Optimize mode's sampler: the one named, seeded (issue 23 item 9: the mutation run of sweep/
found a mutant that swapped random and TPE, and one that dropped the seed, unseen)."""
import optuna

from groklab.sweep.optimize import make_sampler


def test_the_named_sampler_is_built_with_its_seed():
    for name, cls in (("random", optuna.samplers.RandomSampler), ("tpe", optuna.samplers.TPESampler)):
        assert type(make_sampler({"sampler": name, "sampler_seed": 3})) is cls

    def first_draw(seed):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=make_sampler({"sampler": "random", "sampler_seed": seed}))
        return study.ask().suggest_float("x", 0.0, 1.0)
    assert first_draw(3) == first_draw(3) != first_draw(4)
