"""``groklab race``: configs of the runs, the statistics over seeds, the table, the files."""
import json

import pytest

from groklab.accel.race import (
    RaceRun,
    aggregate,
    first_crossing,
    format_cell,
    format_table,
    median_spread,
    race_config,
    run_race,
)
from groklab.cli import main
from groklab.config import ConfigError
from groklab.presets import get_preset
from groklab.runs.rundir import read_jsonl

TINY = ["task.p=23", "task.frac=0.5", "model.hidden=32,32"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_median_spread_counts_not_reached_as_infinitely_late():
    assert median_spread([300, 410, 340]) == {"median": 340, "min": 300, "max": 410, "reached": 3, "n": 3}
    part = median_spread([300, None, 340])
    assert part["median"] == 340 and part["reached"] == 2 and part["max"] == 340
    most = median_spread([None, None, 340])
    assert most["median"] is None and most["reached"] == 1 and most["min"] == 340
    assert median_spread([None, None]) == {"median": None, "min": None, "max": None, "reached": 0, "n": 2}
    assert median_spread([100, None])["median"] is None  # half not reached: the median is not known


def test_format_cell_says_not_reached_and_how_many_did():
    assert format_cell(median_spread([300, 410, 340])) == "340 (300–410)"
    assert format_cell(median_spread([300, None, 340])) == "340 (300–340; 2/3)"
    assert format_cell(median_spread([None, None, 340])) == "not reached (1/3)"
    assert format_cell(median_spread([None])) == "not reached"
    assert format_cell(median_spread([2.25]), 1) == "2.2"


def test_first_crossing_is_the_first_record_at_or_above():
    recs = [{"step": s, "val_acc": a, "time": s / 10} for s, a in [(0, 0.1), (5, 0.95), (10, 0.99), (15, 0.9)]]
    assert first_crossing(recs, 0.95) == [5, 0.5]
    assert first_crossing(recs, 0.99) == [10, 1.0]
    assert first_crossing(recs, 0.999) is None


def test_aggregate_and_table_rows_follow_race_order():
    runs = [RaceRun("b", s, f"b/seed{s}", "early_stopped", 100 + s, 1.0, 0.99,
                    {"0.95": [50 + s, 0.5], "0.99": [100 + s, 1.0]}) for s in range(3)]
    runs += [RaceRun("a", 0, "a/seed0", "completed", 200, 2.0, 0.5, {"0.95": None, "0.99": None})]
    rows = aggregate(runs, [0.95, 0.99])
    assert [r["recipe"] for r in rows] == ["b", "a"]
    assert rows[0]["steps@0.99"]["median"] == 101 and rows[0]["ms_per_step"] == pytest.approx(1000 / 101)
    table = format_table(rows, [0.95, 0.99])
    assert table.splitlines()[0].startswith("| recipe | steps to 95% | seconds to 95% | CPU s to 95% | "
                                            "steps to 99%")
    assert "| a | not reached | not reached | not reached | not reached |" in table


def test_race_config_puts_every_recipe_on_the_race_task():
    nanda = get_preset("nanda").task
    for recipe in ("grokfast-ema", "prieto-orthograd", "mlp-orthograd"):
        cfg = race_config(recipe, "nanda", seed=4, steps=50, eval_every=5, stop_at=0.99)
        assert cfg.task == nanda
        assert (cfg.train.seed, cfg.train.batch_seed, cfg.train.steps) == (4, 4, 50)
        assert (cfg.train.stop_threshold, cfg.train.patience, cfg.train.n_checkpoints) == (0.99, 0, 0)
        own = race_config(recipe, None, seed=0)
        assert own.task == get_preset(recipe).task
        assert own.model == get_preset(recipe).model and own.accel == get_preset(recipe).accel
    with pytest.raises(ConfigError, match="accel"):
        race_config("mlp-adamw", "nanda", 0, overrides=["accel.nope=1"])


def test_run_race_writes_the_table_the_plot_and_every_run(tmp_path):
    out = tmp_path / "race"
    lines = []
    res = run_race(["mlp-orthograd", "mlp-adamw"], task="nanda", seeds=[0, 1], out=out, steps=30,
                   eval_every=5, overrides=TINY, log=lines.append)
    assert len(res["runs"]) == 4 and len(lines) == 4
    assert [r["recipe"] for r in res["rows"]] == ["mlp-orthograd", "mlp-adamw"]
    for run in res["runs"]:
        recs = read_jsonl(out / run["dir"] / "metrics.jsonl")
        cfg = json.loads((out / run["dir"] / "config.json").read_text())
        assert cfg["task"]["p"] == 23 and cfg["train"]["seed"] == run["seed"]
        for t in ("0.95", "0.99"):
            hit = run["hits"][t]
            want = first_crossing(recs, float(t))
            assert hit == want if want is None else (hit[:2] == want and 0 < hit[2] < 10 * want[1] + 1)
        assert run["steps_done"] == recs[-1]["step"] <= 30
    assert json.loads((out / "race.json").read_text())["rows"] == res["rows"]
    assert (out / "race.md").read_text().startswith("| recipe |")
    assert (out / "race.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="already exists"):
        run_race(["mlp-adamw"], seeds=[0], out=out, steps=5, overrides=TINY, log=None)


def test_run_race_rejects_unknown_recipes_before_training(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        run_race(["mlp-adamw", "nope"], seeds=[0], out=tmp_path / "r", log=None)
    with pytest.raises(ConfigError, match="unknown key"):
        run_race(["mlp-adamw"], seeds=[0], out=tmp_path / "r", overrides=["train.nope=1"], log=None)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("kw, match", [
    ({"thresholds": []}, "race thresholds \\[\\]: expected one or more accuracies in \\(0, 1\\]"),
    ({"thresholds": ["x"]}, "expected one or more accuracies"),
    ({"thresholds": [float("nan")]}, "expected one or more accuracies"),
    ({"seeds": []}, "no seeds given"),
    ({"seeds": range(10**11)}, "expected 1 to 1,000 distinct integers"),
    ({"seeds": [0, 0]}, "distinct"),
    ({"seeds": [2**40]}, "from 0 to 4,294,967,295"),
    ({"seeds": [0.5]}, "distinct integers"),
])
def test_run_race_checks_seeds_and_thresholds_before_anything(tmp_path, kw, match):
    from groklab.accel.tune import run_tuned_race
    args = {"seeds": [0], "out": tmp_path / "r", "log": None, **kw}
    with pytest.raises(ConfigError, match=match):
        run_race(["mlp-adamw"], **args)
    with pytest.raises(ConfigError, match=match):
        run_tuned_race(["mlp-adamw"], **args)
    assert not (tmp_path / "r").exists()


def test_cli_race_prints_the_table_and_turns_bad_input_into_exit_2(tmp_path, capsys):
    args = ["race", "--recipes", "mlp-orthograd", "--seeds", "1", "--steps", "10", "--eval-every", "5",
            "--out", str(tmp_path / "r"), "--threads", "1", *sum((["--set", s] for s in TINY), [])]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("| recipe |") and "mlp-orthograd" in out
    assert main(["race", "--recipes", "nope", "--out", str(tmp_path / "x")]) == 2
    assert main(["race", "--seeds", "0", "--out", str(tmp_path / "x")]) == 2
    assert main(["race", "--thresholds", "0.9,abc", "--out", str(tmp_path / "x")]) == 2
    assert "--seeds '0'" in capsys.readouterr().err
