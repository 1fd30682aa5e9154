"""sweep/: what the mutation run of the module found without a test (issue 23 item 9,
docs/testing.md): a failed ensemble's clean-up, a failed trial's error, the diagrams' orientation."""
import numpy as np
import pytest

import groklab
from groklab.runs.rundir import read_json
from groklab.sweep import run_sweep
from groklab.sweep.spec import parse_spec
from groklab.sweep.table import read_csv

TINY = {"preset": "prieto", "name": "tiny",
        "base": {"task": {"p": 11, "frac": 0.5}, "model": {"hidden": [16]},
                 "train": {"steps": 30, "eval_every": 10, "n_checkpoints": 2}},
        "axes": {"optim.lr": [1e-3, 1e-2], "optim.wd": [0.0, 1.0]}, "ensemble": False}


def test_a_failed_ensemble_keeps_its_finished_points_and_starts_the_others_again(tmp_path, monkeypatch):
    """The ensemble trains every point, then fails with one point finished and three half-written
    (checkpoints, no summary): the finished one is kept as it is, the three are removed and run
    again singly from the start (not resumed from the failed ensemble's checkpoints)."""
    import groklab.sweep.ensemble as ens
    real = ens.train_ensemble

    def fails_late(cfgs, dirs, report=True):
        real(cfgs, dirs, report=False)
        for d in dirs:
            (d / "stale.txt").write_text("left by the failed ensemble")
        for d in dirs[1:]:
            (d / "summary.json").unlink()
        raise RuntimeError("vmap fell over late")
    monkeypatch.setattr(ens, "train_ensemble", fails_late)
    rows = run_sweep(parse_spec({**TINY, "ensemble": True}), tmp_path / "e", workers=1)
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
    [g] = read_json(tmp_path / "e" / "sweep.json")["ensemble"]["groups"]
    assert g["trained"] == "singly" and g["fallback"] == "RuntimeError: vmap fell over late"
    dirs = sorted((tmp_path / "e" / "points").iterdir())
    kept = [d for d in dirs if (d / "stale.txt").exists()]
    assert len(kept) == 1 and read_json(kept[0] / "summary.json")["ensemble_size"] == 4
    for d in dirs:
        if d not in kept:
            assert "ensemble_size" not in read_json(d / "summary.json")   # trained alone, from step 0


def test_a_failed_trial_carries_its_error_and_counts_towards_n_trials(tmp_path, monkeypatch):
    """Both trials' runs crash: each trial fails with the seed's error as its ``error`` attribute
    (in results.csv too), and failed trials count, so no third trial is asked for."""
    optuna = pytest.importorskip("optuna")
    real, calls = groklab.run, []

    def crash_twice(cfg, **kw):
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError(f"boom {len(calls)}")
        return real(cfg, **kw)
    monkeypatch.setattr(groklab, "run", crash_twice)
    spec = parse_spec({"preset": "prieto", "name": "opt", "mode": "optimize",
                       "base": {**TINY["base"], "train": {"steps": 20, "eval_every": 10, "n_checkpoints": 2}},
                       "axes": {"optim.wd": [0.0, 1.0]}, "optimize": {"n_trials": 2, "sampler": "random"}})
    study = run_sweep(spec, tmp_path / "o", workers=1)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2 and len(calls) == 2
    assert [t.user_attrs["error"] for t in trials] == ["seed 0: RuntimeError: boom 1", "seed 0: RuntimeError: boom 2"]
    assert [r["error"] for r in read_csv(tmp_path / "o" / "results.csv")] == [t.user_attrs["error"] for t in trials]


def test_the_diagrams_put_the_first_y_value_at_the_bottom_and_tilt_the_x_ticks(tmp_path, monkeypatch):
    """Liu et al.'s phase diagrams read like a plot: y grows upwards. Every image of both figures
    (the steps figure's grey mask under the censored cells included) has row 0 at the bottom,
    where its label is written; the x tick labels are tilted 45°."""
    import groklab.sweep.diagram as dg
    figs = {}
    monkeypatch.setattr(dg, "save_figure", lambda fig, path: figs.setdefault(path.name, fig))
    xs, ys = [1e-3, 1e-2, 1e-1], [0.0, 1.0]
    rows = [{"optim.lr": x, "optim.wd": y, "phase": "grokking" if y else "memorization",
             "generalized_at_0.9": 500 if y else None} for x in xs for y in ys]
    agg = dg.aggregate(rows, "optim.lr", xs, "optim.wd", ys, 0.9)
    dg.plot_phase(agg, "optim.lr", xs, "optim.wd", ys, tmp_path / "phase.png", "t")
    dg.plot_steps(agg, "optim.lr", xs, "optim.wd", ys, tmp_path / "steps.png", "t", 0.9)
    assert set(figs) == {"phase.png", "steps.png"}
    for name, fig in figs.items():
        ax = fig.axes[0]
        assert len(ax.images) == (1 if name == "phase.png" else 2)
        for im in ax.images:
            assert tuple(im.get_extent()) == (-0.5, len(xs) - 0.5, -0.5, len(ys) - 0.5), name  # row 0 low
        lo, hi = ax.get_ylim()
        assert lo < hi, name
        assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1"]
        assert all(t.get_rotation() == 45 for t in ax.get_xticklabels()), name
    mask = figs["steps.png"].axes[0].images[0].get_array()
    assert np.array_equal(np.asarray(mask), [[1.0] * 3, [0.0] * 3])  # the censored row (wd = 0) is row 0
    labels = {(t.get_position()[1], t.get_text()) for t in figs["phase.png"].axes[0].texts}
    assert labels == {(0, "M"), (1, "G")}
