"""The training loop's two survivors of the mutation run that had no test (issue 23 item 9,
docs/testing.md): a resumed live forecast starting from the history before its checkpoint, and
a divergence in the very last update, which only the final evaluation can see."""
import math

import torch

import groklab
from groklab.runs.rundir import read_jsonl
from groklab.train import loop

TINY = ["model.arch=mlp", "model.hidden=16,16", "task.p=13", "task.frac=0.5", "train.steps=40",
        "train.eval_every=10", "train.n_checkpoints=0", "train.forecast=false"]


def test_a_divergence_in_the_last_update_ends_the_run_as_nan(tmp_path):
    """The last update leaves finite weights so large that the forward overflows: the step-40
    checkpoint is saved (its weights are finite), and the final evaluation's loss is NaN. The run
    ends as "nan", naming that step and that checkpoint, and logs no record of the NaN."""
    calls = []

    def blow_up_last(params):                       # runs after every optimiser step
        calls.append(1)
        if len(calls) == 40:
            with torch.no_grad():
                for p in params.values():
                    p.mul_(1e30)

    def setup(tr):
        tr.project = blow_up_last
    out = tmp_path / "r"
    out.mkdir()
    r = loop.train(groklab.resolve("default", overrides=TINY), out, progress=False, setup=setup)
    assert len(calls) == 40
    assert r.summary["status"] == "nan"
    loss, _, rest = r.summary["message"].removeprefix("loss is ").partition(" ")
    assert not math.isfinite(float(loss))
    assert rest == "at step 40; stopped. Last good checkpoint: step 40"
    assert [m["step"] for m in read_jsonl(out / "metrics.jsonl")] == [0, 10, 20, 30]


def test_a_resumed_live_forecast_starts_from_the_history_before_its_checkpoint(tmp_path, monkeypatch):
    """After a resume the live forecast reads the metrics before the checkpoint as well: each of
    its lines equals the forecast made here from every record up to that step (a mutant that
    dropped the loop's start step forecast from the resumed part alone). The 1 % time share is
    lifted so that no evaluation's forecast is skipped, whatever the machine's speed."""
    import groklab.forecast.live
    from groklab.forecast.live import compact
    from groklab.forecast.model import default_model
    from groklab.forecast.predict import forecast
    over = ["task.p=31", "task.frac=0.6", "model.hidden=64,64", "optim.lr=0.02", "optim.wd=1.0",
            "train.steps=200", "train.eval_every=10", "train.n_checkpoints=2", "train.forecast=true"]
    monkeypatch.setattr(groklab.forecast.live, "SHARE", 1e9)
    r = groklab.run(groklab.resolve("prieto", overrides=over), out=tmp_path / "run", report=False)
    r2 = groklab.resume(r.dir, overrides=["train.steps=300"], report=False)
    metrics = read_jsonl(r2.dir / "metrics.jsonl")
    after = [ln for ln in read_jsonl(r2.dir / "forecast.jsonl") if ln["step"] > 200]
    assert [ln["step"] for ln in after] == list(range(210, 301, 10))
    for ln in after:
        fc = forecast([m for m in metrics if m["step"] <= ln["step"]], config=r2.config, model=default_model(),
                      explain=False)
        assert {k: v for k, v in ln.items() if k != "seconds"} == compact(fc), ln["step"]


def test_the_progress_bar_counts_the_steps_and_shows_the_accuracies(tmp_path, capsys):
    """With ``progress`` on (the CLI's default) the bar ends at steps/steps with the last
    evaluation's train and validation accuracy beside it."""
    out = tmp_path / "r"
    out.mkdir()
    r = loop.train(groklab.resolve("default", overrides=TINY), out, progress=True)
    last = read_jsonl(out / "metrics.jsonl")[-1]
    err = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert r.summary["status"] == "completed" and " 40/40 " in err, err
    assert f"train={last['train_acc']:.3f}, val={last['val_acc']:.3f}" in err, err
