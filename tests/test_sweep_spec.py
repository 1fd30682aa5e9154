"""Sweep specs: axes, ranges, seeds, and bad input failing before anything runs."""
import pytest

from groklab.config import ConfigError
from groklab.sweep.spec import parse_spec

BASE = {"preset": "prieto", "base": {"task": {"p": 11}, "train": {"steps": 10}}}


def spec(**kw):
    return parse_spec({**BASE, **kw})


def test_list_range_and_log_axes_expand_to_every_point_and_seed():
    s = spec(axes={"optim.lr": {"log": [1e-3, 1e-1], "num": 3}, "optim.wd": {"range": [0, 1], "num": 3},
                   "task.frac": [0.3, 0.5]}, seeds=2)
    lr, wd, frac = (a.values for a in s.axes)
    assert lr == pytest.approx([1e-3, 1e-2, 1e-1])
    assert wd == pytest.approx([0.0, 0.5, 1.0])
    assert frac == [0.3, 0.5]
    pts = s.points()
    assert len(pts) == 3 * 3 * 2 * 2
    assert len({p.id for p in pts}) == len(pts)
    p = pts[-1]
    assert (p.config.optim.lr, p.config.optim.wd, p.config.task.frac, p.config.train.seed) == \
        pytest.approx((0.1, 1.0, 0.5, 1))
    assert p.config.train.steps == 10 and p.config.task.p == 11  # base applied under the axes


def test_nested_axis_tables_and_integer_axes():
    s = spec(axes={"model": {"d_model": {"log": [16, 64], "num": 3}}})
    assert s.axes[0].key == "model.d_model" and s.axes[0].values == [16, 32, 64]
    assert all(isinstance(v, int) for v in s.axes[0].values)


@pytest.mark.parametrize("axes, match", [
    ({"optim.lrr": [1e-3]}, "optim.lrr"),
    ({"optimizer.lr": [1e-3]}, "optimizer.lr"),
    ({"optim.lr": []}, "empty"),
    ({"optim.lr": {"log": [1e-1, 1e-3], "num": 3}}, "low < high"),
    ({"optim.lr": {"log": [0, 1e-3], "num": 3}}, "low > 0"),
    ({"optim.wd": {"range": [0, 1], "num": 1}}, "num"),
    ({"optim.wd": {"range": [0, 1]}}, "num = N"),
    ({"optim.lr": {"range": [0, 1], "num": 3}}, "optim.lr"),
    ({"optim.wd": {"range": [0, 1], "num": 3, "step": 2}}, "range"),
    ({"optim.lr": ["fast"]}, "optim.lr"),
    ({"optim.lr": [1e-3, 1e-3]}, "repeated"),
    ({"model.d_model": {"range": [1, 2], "num": 5}}, "repeats integer"),
    ({"task.frac": [0.5, 1.5]}, "task.frac"),
    ({}, "axes"),
])
def test_bad_axes_fail_with_a_message_naming_them(axes, match):
    with pytest.raises(ConfigError, match=match):
        spec(axes=axes)


def test_unknown_spec_key_bad_mode_seeds_and_diagram():
    with pytest.raises(ConfigError, match="unknown spec key"):
        spec(axes={"optim.lr": [1e-3]}, axis={})
    with pytest.raises(ConfigError, match="mode"):
        spec(axes={"optim.lr": [1e-3]}, mode="random")
    with pytest.raises(ConfigError, match="seeds"):
        spec(axes={"optim.lr": [1e-3]}, seeds=0)
    with pytest.raises(ConfigError, match="not an axis"):
        spec(axes={"optim.lr": [1e-3]}, diagram={"x": "optim.wd"})
    with pytest.raises(ConfigError, match="train.seed"):
        spec(axes={"train.seed": [1, 2]})
    with pytest.raises(ConfigError, match="unknown key"):
        spec(axes={"optim.lr": [1e-3]}, base={"optim": {"learning_rate": 1}})


def test_optimize_section_rejects_validation_loss_pruning_and_unknown_keys():
    ax = {"optim.lr": {"log": [1e-3, 1e-1]}}
    s = spec(axes=ax, mode="optimize", optimize={"n_trials": 3, "prune": {
        "metric": "train_acc", "below": 0.9, "at_step": 5}})
    assert s.optimize["prune"] == {"metric": "train_acc", "below": 0.9, "at_step": 5}
    assert s.base.train.stop_threshold == s.optimize["threshold"]  # stop once it succeeds
    with pytest.raises(ConfigError, match="never prune"):
        spec(axes=ax, mode="optimize", optimize={"prune": {"metric": "val_loss", "above": 3, "at_step": 5}})
    with pytest.raises(ConfigError, match="unknown key"):
        spec(axes=ax, mode="optimize", optimize={"trials": 3})
    with pytest.raises(ConfigError, match="sampler"):
        spec(axes=ax, mode="optimize", optimize={"sampler": "cmaes"})
    with pytest.raises(ConfigError, match="optimize"):
        spec(axes={"optim.lr": [1e-3]}, optimize={"n_trials": 3})


def test_fingerprint_changes_with_what_determines_results():
    a = spec(axes={"optim.lr": [1e-3, 1e-2]})
    b = spec(axes={"optim.lr": [1e-3, 1e-2]})
    c = spec(axes={"optim.lr": [1e-3, 2e-2]})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_shipped_examples_parse():
    from pathlib import Path

    from groklab.sweep.spec import load_spec
    files = sorted((Path(__file__).parent.parent / "examples" / "sweeps").glob("*.toml"))
    assert files
    for f in files:
        s = load_spec(f)
        assert s.points() if s.mode == "grid" else s.axes


@pytest.mark.parametrize("top, match", [
    ({"ensemble": 1}, "ensemble"),          # 1 == True, but not a boolean
    ({"ensemble": "yes"}, "ensemble"),
    ({"seeds": True}, "seeds"),
    ({"seeds": 10**16}, "seeds"),           # a count, not a memory error
    ({"seed_keys": [1]}, "seed_keys"),
    ({"seed_keys": [{"a": 1}]}, "seed_keys"),
    ({"preset": {"a": 1}}, "preset"),
    ({"config": 5}, "config"),
    ({"name": "../../x"}, "name"),
    ({"name": "/abs"}, "name"),
    ({"name": 7}, "name"),
    ({"diagram": {"threshold": True}}, "threshold"),
    ({"axes": {"optim.wd": {"range": [0, 1], "num": 10**9}}}, "num"),
    ({"axes": {"optim.wd": {"range": [0, 1], "num": True}}}, "num"),
    ({"axes": {"optim.lr": {}}}, "a range is"),
    ({"axes": {"optim": {}}}, "dotted config key"),
    ({"axes": {"optim.wd": {"range": [0, 1], "num": 1000}, "optim.lr": {"log": [1e-4, 1e-1], "num": 1000}}},
     "at most"),
    # axis values and [base] come from TOML: typed, so a string is not a number or a count
    ({"axes": {"task.p": ["11", "13"]}}, "task.p='11': expected an integer, not a string"),
    ({"axes": {"task.p": [11.0]}}, "task.p=11.0: expected an integer, not a float"),
    ({"axes": {"optim.lr": ["1e-3"]}}, "optim.lr='1e-3': expected a number, not a string"),
    ({"axes": {"model.causal": [0, 1]}}, "model.causal=0: expected true or false, not an integer"),
    ({"axes": {"model.hidden": ["16,16"]}}, r"model.hidden='16,16': expected a list like \[200, 200\]"),
    ({"base": {"task": {"p": "11"}}}, "task.p='11': expected an integer, not a string"),
])
def test_wrong_types_and_sizes_in_a_grid_spec_are_one_line_errors(top, match):
    with pytest.raises(ConfigError, match=match):
        spec(**{"axes": {"optim.lr": [1e-3]}, **top})


@pytest.mark.parametrize("opt, match", [
    ({"threshold": True}, "threshold"),
    ({"penalty": True}, "penalty"),
    ({"penalty": float("inf")}, "penalty"),
    ({"sampler_seed": "x"}, "sampler_seed"),
    ({"sampler_seed": 1.5}, "sampler_seed"),
    ({"stop_on_success": "yes"}, "stop_on_success"),
    ({"n_trials": 10**12}, "n_trials"),
    ({"prune": {"metric": "train_acc", "below": "x", "at_step": 5}}, "below"),
    ({"prune": {"metric": "train_acc", "below": {"a": 1}, "at_step": 5}}, "below"),
    ({"prune": {"metric": "train_acc", "below": 0.5, "at_step": True}}, "at_step"),
    ({"prune": {"metric": {"a": 1}, "below": 0.5, "at_step": 5}}, "prune metric"),
])
def test_wrong_types_in_the_optimize_section_are_one_line_errors(opt, match):
    with pytest.raises(ConfigError, match=match):
        spec(axes={"optim.lr": {"log": [1e-3, 1e-1]}}, mode="optimize", optimize=opt)


def test_ensemble_in_an_optimize_spec_is_refused_not_ignored():
    with pytest.raises(ConfigError, match="ensemble"):  # optimize mode runs trials singly
        spec(axes={"optim.lr": {"log": [1e-3, 1e-1]}}, mode="optimize", ensemble=True)


VALID = {**BASE, "name": "t", "mode": "grid", "seeds": [0], "seed_keys": ["train.seed"], "ensemble": False,
         "axes": {"optim.lr": {"log": [1e-3, 1e-2], "num": 2}, "optim.wd": [0.0, 1.0]},
         "diagram": {"x": "optim.lr", "threshold": 0.9}}
VALID_OPT = {**VALID, "mode": "optimize", "diagram": {}, "axes": {"optim.lr": {"log": [1e-3, 1e-2]}},
             "optimize": {"n_trials": 2, "metric": "steps", "threshold": 0.9, "sampler": "tpe",
                          "sampler_seed": 0, "penalty": 2.0, "stop_on_success": True,
                          "prune": {"metric": "train_acc", "below": 0.5, "at_step": 5}}}
VALID_OPT.pop("ensemble")


def _paths(d, pre=()):
    for k, v in d.items():
        yield pre + (k,)
        if isinstance(v, dict):
            yield from _paths(v, pre + (k,))
        elif isinstance(v, list):
            yield from (pre + (k, i) for i in range(len(v)))


def test_any_value_of_any_type_anywhere_in_a_spec_is_accepted_or_a_config_error():
    """Replace one value of a valid spec by anything TOML can hold: parse_spec either accepts it
    or raises ConfigError (one line at the CLI), never a TypeError, KeyError, MemoryError..."""
    import copy

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    scalars = st.one_of(st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_subnormal=False),  # training flushes denormals (set_flush_denormal)
                        st.text(max_size=6))
    values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                       st.dictionaries(st.text(max_size=5), c, max_size=3)),
                          max_leaves=6)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.sampled_from([VALID, VALID_OPT]), st.data(), values)
    def check(base, data, value):
        d = copy.deepcopy(base)
        path = data.draw(st.sampled_from(list(_paths(d))))
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        try:
            parse_spec(d)
        except ConfigError as e:
            assert "\n" not in str(e)
    check()
