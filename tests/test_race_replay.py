"""``groklab race --replay DIR``: a tuned race's rows run again from its race.json, no tuning,
each run's steps compared with the recorded ones (accel.replay)."""
import json

import pytest

from groklab.accel.replay import compare, replay_race
from groklab.accel.tune import run_tuned_race
from groklab.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["task.p=23", "model.hidden=16,16"]
RECIPES = ["mlp-adamw", "mlp-grokfast-ema"]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A tuned race of two recipes (3 trials each, 2 seeds, 30 steps): the one to replay."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tuned") / "race"
    res = run_tuned_race(RECIPES, ["add113"], n_trials=3, seeds=[0, 1], out=out, steps=30, eval_every=5,
                         thresholds=[0.01, 0.99], overrides=TINY, log=None)
    torch.set_num_threads(n)
    return out, res


def test_replay_races_the_recorded_rows_with_the_tuned_settings_and_finds_the_same_steps(tuned, tmp_path):
    src, rec = tuned
    res = replay_race(src, out=tmp_path / "again", log=None)
    assert not (tmp_path / "again" / "tune").exists()  # no trial was run
    assert res["replay"] == {"same": True, "runs": 4, "differs": []}
    best = rec["tune"]["per_recipe"]["add113"]
    assert res["tune"]["per_recipe"]["add113"] == best
    for r in RECIPES:
        cfg = json.loads((tmp_path / "again" / "add113" / r / "seed1" / "config.json").read_text())
        assert cfg["optim"]["lr"] == pytest.approx(best[r]["best"]["optim.lr"])
        assert cfg["task"]["p"] == 23 and cfg["train"]["steps"] == 30 and cfg["train"]["eval_every"] == 5
    hits = [run["hits"] for run in res["tasks"]["add113"]["runs"]]
    assert hits and all(h["0.01"] is not None for h in hits)  # reached thresholds were compared
    md = (tmp_path / "again" / "race.md").read_text()
    assert "every run (4) reached every threshold at the recorded step" in md
    one = replay_race(src / "race.json", recipes=["mlp-grokfast-ema"], out=tmp_path / "one", log=None)
    assert [row["recipe"] for row in one["tasks"]["add113"]["rows"]] == ["mlp-grokfast-ema"]
    assert one["replay"]["same"] and one["settings"]["replay_of"] == str((src / "race.json").resolve())


def test_compare_names_every_run_whose_step_moved(tuned):
    _, rec = tuned
    moved = json.loads(json.dumps(rec))
    run = moved["tasks"]["add113"]["runs"][1]
    run["hits"]["0.01"] = [9999, 1.0]
    assert compare(rec, rec) == {"same": True, "runs": 4, "differs": []}
    got = compare(moved, rec)
    assert not got["same"] and got["differs"] == [{"task": "add113", "recipe": run["recipe"], "seed": run["seed"],
                                                    "threshold": "0.01", "recorded": 9999,
                                                    "now": rec["tasks"]["add113"]["runs"][1]["hits"]["0.01"][0]}]
    del moved["tasks"]["add113"]["runs"][0]
    assert len(compare(moved, rec)["differs"]) == 1 + 2  # the missing run, at both thresholds


def test_cli_replay_bad_input_is_one_line_exit_2_and_writes_nothing(tuned, tmp_path, capsys):
    src, rec = tuned
    out = tmp_path / "x"
    base = ["race", "--out", str(out), "--replay"]
    assert main(base + [str(tmp_path / "nowhere")]) == 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "race.json").write_text('{"settings": ')
    assert main(base + [str(bad)]) == 2
    for broken in ({**rec, "settings": {**rec["settings"], "tasks": ["nope"]}},
                   {**rec, "settings": {**rec["settings"], "eval_every": "5"}},
                   {**rec, "tune": {"per_recipe": {"add113": {"mlp-adamw": {"best": {"optim.lr": "big"}}}}}},
                   {**rec, "settings": {**rec["settings"], "overrides": ["optim.lr=-1"]}}):
        (bad / "race.json").write_text(json.dumps(broken))
        assert main(base + [str(bad)]) == 2
    assert main(base + [str(src), "--steps", "5"]) == 2
    assert main(base + [str(src), "--set", "optim.lr=1"]) == 2
    assert main(base + [str(src), "--recipes", "mlp-muon"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 9 and all(line.startswith("groklab: error:") for line in err), err
    assert "settings.tasks" in err[2] and "settings.eval_every" in err[3] and ".best" in err[4]
    assert "--steps cannot be given" in err[6] and "'mlp-muon' is not in the replayed race" in err[8]
    assert not out.exists()


def test_races_record_the_code_and_machine_they_ran_on(tuned, tmp_path):
    import subprocess
    from pathlib import Path

    import torch

    import groklab
    from groklab.accel.replay import where
    src, rec = tuned
    prov = rec["provenance"]
    pkg = Path(groklab.__file__).resolve().parent
    git = subprocess.run(["git", "-C", str(pkg), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert prov["commit"] == (git.stdout.strip() if git.returncode == 0 else None)
    assert prov["torch"] == torch.__version__ and prov["groklab"] == groklab.__version__
    assert prov["threads"] == 1 and isinstance(prov["cpu"], str) and prov["cpu"]
    assert json.loads((src / "add113" / "race.json").read_text())["provenance"] == prov  # the task's race.json too
    assert where(prov).endswith(f"{prov['cpu']}, 1 thread") and where(None) == "commit and machine not recorded"
    res = replay_race(src, recipes=["mlp-adamw"], out=tmp_path / "again", log=None)
    md = (tmp_path / "again" / "race.md").read_text()
    assert f"Recorded: {where(prov)}. Replayed: {where(res['provenance'])}." in md
