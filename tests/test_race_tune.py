"""The fair race (accel.tune): tasks fix data and model, recipes bring their method, the same
number of Optuna trials for every recipe on a tuning split, then fresh seeds."""
import json

import pytest

from groklab.accel.tune import RACE_TASKS, TUNED_RECIPES, run_tuned_race, score, search_space, task_config
from groklab.cli import main
from groklab.config import ConfigError
from groklab.presets import PRESETS, get_preset

TINY = ["task.p=23", "model.hidden=16,16"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_recipe_of_the_issue_is_a_preset_and_runs_on_every_task():
    assert len(TUNED_RECIPES) == 12 and all(r in PRESETS for r in TUNED_RECIPES)
    for task in RACE_TASKS:
        for r in TUNED_RECIPES:
            cfg = task_config(r, task, seed=3, steps=7)
            method = get_preset(r)
            assert cfg.optim == method.optim and cfg.accel == method.accel
            assert (cfg.train.seed, cfg.train.batch_seed, cfg.train.steps, cfg.train.stop_threshold) == (3, 3, 7, 0.99)
    mul = task_config("mlp-muon", "mul97", 0)
    assert (mul.model.arch, mul.model.n_layers, mul.task.op, mul.task.p, mul.train.batch_size) == \
        ("transformer", 2, "x*y", 97, 512)
    mb = task_config("mlp-muon-bf16", "mul97", 0)  # Muon's method with bfloat16 products
    assert (mb.optim, mb.train.autocast, mul.train.autocast) == (mul.optim, "bfloat16", "off")
    par = task_config("mlp-fast", "parity", 0)
    assert par.task.name == "parity" and par.model.hidden == [128, 128]  # mlp-fast's own widths
    assert task_config("mlp-adamw", "add113", 0, split_seed=1).task.split_seed == 1
    with pytest.raises(ConfigError, match="unknown race task 'nope'"):
        task_config("mlp-adamw", "nope", 0)


def test_search_space_is_around_the_recipe_and_scores_rank_unreached_runs_last():
    sp = {k: (lo, hi, own) for k, lo, hi, own in search_space("mlp-grokfast-ma", get_preset("mlp-grokfast-ma"))}
    assert sp["optim.lr"] == pytest.approx((3e-4, 3e-2, 3e-3)) and sp["accel.lamb"] == (1.25, 20.0, 5.0)
    no_wd = {k: v for k, *v in search_space("mlp-orthograd", get_preset("mlp-orthograd"))}
    assert no_wd["optim.wd"][0] == no_wd["optim.wd"][2] > 0  # its own 0 is tried as the bottom
    recs = [{"step": 0, "val_acc": 0.1}, {"step": 10, "val_acc": 0.995}]
    assert score(recs, 0.99, 100) == 10 and score(recs[:1], 0.99, 100) == pytest.approx(190)


def test_tune_gives_every_recipe_the_same_number_of_trials(tmp_path):
    recipes = ["mlp-adamw", "mlp-grokfast-ema", "mlp-egd"]
    res = run_tuned_race(recipes, ["add113"], n_trials=2, seeds=[0], out=tmp_path / "r", steps=10,
                         eval_every=5, overrides=TINY, log=None)
    tuned = res["tune"]["per_recipe"]["add113"]
    assert res["settings"]["tune"]["trials"] == 2
    assert {r: t["trials"] for r, t in tuned.items()} == {r: 2 for r in recipes}
    for r in recipes:
        trials = sorted(p.name for p in (tmp_path / "r" / "tune" / "add113" / r).iterdir())
        assert trials == ["trial0", "trial1"]
        first = json.loads((tmp_path / "r" / "tune" / "add113" / r / "trial0" / "config.json").read_text())
        assert first["optim"]["lr"] == pytest.approx(get_preset(r).optim.lr)  # the recipe's own first
        assert first["task"]["split_seed"] == 1 and first["train"]["seed"] == 10_000
        race = json.loads((tmp_path / "r" / "add113" / r / "seed0" / "config.json").read_text())
        assert race["task"]["split_seed"] == 0 and race["optim"]["lr"] == pytest.approx(tuned[r]["best"]["optim.lr"])
    assert [row["recipe"] for row in res["tasks"]["add113"]["rows"]] == recipes
    md = (tmp_path / "r" / "race.md").read_text()
    assert "2 Optuna trials per recipe" in md and "paper's claim" in md and "Pasand & Dohmatob" in md
    assert (tmp_path / "r" / "race_add113.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "r" / "race.json").read_text())["total_cost"]["runs"] == 3


def test_cli_tuned_race_bad_input_is_one_line_exit_2(tmp_path, capsys):
    base = ["race", "--out", str(tmp_path / "x")]
    assert main(base + ["--tasks", "add113,nope"]) == 2
    assert "unknown race task 'nope'" in capsys.readouterr().err
    assert main(base + ["--tune", "-1"]) == 2
    assert main(base + ["--tune", "2", "--task", "nanda"]) == 2
    assert main(base + ["--tune", "2", "--recipes", "mlp-adamw,nope"]) == 2
    assert main(base + ["--tune", "1", "--tune-split", "-3"]) == 2
    err = capsys.readouterr().err
    assert all(line.startswith("groklab: error:") for line in err.splitlines()) and len(err.splitlines()) == 4
    assert not (tmp_path / "x").exists()


def test_trials_tied_at_the_best_score_are_run_again_and_the_lower_sum_wins(tmp_path, monkeypatch):
    """Steps are counted at the evaluation interval, so ties are common; the first trial of a tie
    is not kept blindly: each tied trial runs once more on another model seed."""
    import groklab.accel.tune as tune_mod
    import groklab.runs.rundir as rundir
    first = {"trial0": 9.0, "trial1": 5.0, "trial2": 5.0, "trial3": 8.0}
    second = {"tie1": 7.0, "tie2": 3.0}
    monkeypatch.setattr(rundir, "read_jsonl", lambda path: [{"name": path.parent.name}])
    monkeypatch.setattr(tune_mod, "score", lambda recs, thr, budget: {**first, **second}[recs[0]["name"]])
    got = tune_mod.tune("mlp-adamw", "add113", 4, tmp_path / "t", steps=2, eval_every=1, threshold=0.99,
                        overrides=TINY, split_seed=1)
    assert got["best_value"] == 5.0 and [t["trial"] for t in got["ties"]] == [1, 2]
    assert got["best"] == got["params"][2] != got["params"][1]  # trial 2: 5 + 3 beats trial 1: 5 + 7
    cfg = json.loads((tmp_path / "t" / "tie2" / "config.json").read_text())
    assert cfg["train"]["seed"] == tune_mod.TIE_SEED_BASE + 2 and cfg["task"]["split_seed"] == 1
    assert cfg["optim"]["lr"] == pytest.approx(got["params"][2]["optim.lr"])
    second.update(tie1=3.0)  # a tie after the second run too: the earlier trial
    again = tune_mod.tune("mlp-adamw", "add113", 4, tmp_path / "u", steps=2, eval_every=1, threshold=0.99,
                          overrides=TINY, split_seed=1)
    assert again["best"] == again["params"][1]
    first.update(trial2=6.0)  # no tie: no second runs
    once = tune_mod.tune("mlp-adamw", "add113", 4, tmp_path / "v", steps=2, eval_every=1, threshold=0.99,
                         overrides=TINY, split_seed=1)
    assert once["ties"] == [] and once["best"] == once["params"][1] and not list((tmp_path / "v").glob("tie*"))
