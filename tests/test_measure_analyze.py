"""`groklab analyze` end to end on tiny runs, and the live measures of the training loop."""
import json

import pytest

import groklab
from groklab.cli import main
from groklab.runs.rundir import read_jsonl

TINY = ["task.p=23", "task.frac=0.5", "model.d_model=32", "model.n_heads=2", "model.d_mlp=64",
        "train.steps=200", "train.eval_every=10", "train.checkpoint_every=100", "train.n_checkpoints=3",
        "optim.lr=3e-3", "train.stop_threshold=0"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = groklab.resolve("default", overrides=TINY + ["train.measure_every=50"])
    groklab.run(cfg, out=d)
    return d


def test_analyze_writes_measures_phases_figures_and_report(tiny_run, capsys):
    assert main(["analyze", str(tiny_run), "--quiet"]) == 0
    out = capsys.readouterr().out
    info = json.loads((tiny_run / "analysis.json").read_text())
    assert f"key frequencies (fourier basis, from step 200): {info['key_freqs']}" in out
    recs = read_jsonl(tiny_run / "analysis.jsonl")
    assert [r["step"] for r in recs] == info["checkpoints"] and recs[-1]["step"] == 200
    for key in ("restricted_loss", "excluded_loss", "gini_E", "gini_L", "sum_sq_weights", "rqi",
                "softmax_collapse", "zero_loss_frac", "n_E", "n_L"):
        assert key in recs[0]
    # the analysis reproduces the training loop's own final losses on the same pairs
    final = json.loads((tiny_run / "summary.json").read_text())
    assert recs[-1]["train_acc"] == pytest.approx(final["final_train_acc"])
    assert recs[-1]["val_loss"] == pytest.approx(final["final_val_loss"], rel=1e-4)
    assert set(final["phases"]) >= {"memorization_end", "circuit_formation_end", "cleanup_end", "rule"}
    assert final["key_freqs"] == info["key_freqs"]
    html = (tiny_run / "report.html").read_text()
    for name in ("fig_progress_1_measures", "fig_progress_2_spectrum", "fig_progress_3_neurons"):
        assert (tiny_run / f"{name}.png").stat().st_size > 1000
        assert f'alt="{name}"' in html
    # the live measures of the same run: every 50 steps, with the cheap Fourier measures
    live = read_jsonl(tiny_run / "measures.jsonl")
    assert [r["step"] for r in live] == [0, 50, 100, 150]
    assert {"sum_sq_weights", "sum_sq_per_tensor", "softmax_collapse", "zero_loss_frac", "gini_E", "gini_L"} <= set(live[0])


def test_analyze_an_mlp_on_x_times_y_in_the_discrete_log_basis(tmp_path):
    cfg = groklab.resolve("prieto", overrides=["task.op=x*y", "task.p=23", "train.steps=60",
                                               "train.checkpoint_every=30", "train.n_checkpoints=0",
                                               "model.hidden=48,48"])
    groklab.run(cfg, out=tmp_path / "r", report=False)
    assert main(["analyze", str(tmp_path / "r"), "--quiet"]) == 0
    info = json.loads((tmp_path / "r" / "analysis.json").read_text())
    assert info["basis"] == "dlog" and info["group_order"] == 22 and info["generator"] == 5
    assert info["checkpoints"] == [30, 60] and info["neurons"] == 48


def test_unsupported_task_and_bad_directories_fail_with_a_message(tmp_path, capsys):
    cfg = groklab.resolve("default", overrides=TINY[1:] + ["task.name=permutation", "task.n=3", "task.op=x*y",
                                                           "train.steps=20", "train.checkpoint_every=10"])
    groklab.run(cfg, out=tmp_path / "perm", report=False)
    assert main(["analyze", str(tmp_path / "perm")]) == 2
    err = capsys.readouterr().err
    assert "support modular tasks x+y, x-y, x*y, x/y" in err and "x*y in S3" in err
    assert main(["analyze", str(tmp_path / "nothing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "perm"), "--stride", "0"]) == 2
