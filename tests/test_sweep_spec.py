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
