"""`groklab analyze` end to end on tiny runs, and the live measures of the training loop."""
import base64
import io
import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

import groklab
from groklab.cli import main
from groklab.runs.checkpoint import list_checkpoints, load_weights, step_dir
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


def sum_sq(run_dir, step):
    return sum(float((w.double() ** 2).sum()) for w in load_weights(step_dir(run_dir, step)).values())


def test_analyze_writes_measures_phases_figures_and_report(tiny_run, capsys):
    assert main(["analyze", str(tiny_run), "--quiet"]) == 0
    out = capsys.readouterr().out
    info = json.loads((tiny_run / "analysis.json").read_text())
    assert f"key frequencies (fourier basis, from step 200): {info['key_freqs']}" in out
    recs = read_jsonl(tiny_run / "analysis.jsonl")
    assert [r["step"] for r in recs] == info["checkpoints"] == list_checkpoints(tiny_run) == [1, 14, 100, 200]
    for key in ("restricted_loss", "excluded_loss", "gini_E", "gini_L", "sum_sq_weights", "rqi",
                "softmax_collapse", "zero_loss_frac", "n_E", "n_L"):
        assert key in recs[0]
    # each record measures its own checkpoint: the weights on disk, and the training loop's
    # losses logged at the same step (the loop logs step s with the weights after s updates)
    metrics = {r["step"]: r for r in read_jsonl(tiny_run / "metrics.jsonl")}
    for r in recs:
        assert r["sum_sq_weights"] == pytest.approx(sum_sq(tiny_run, r["step"]), rel=1e-9)
        if r["step"] in metrics:
            m = metrics[r["step"]]
            assert (r["train_acc"], r["val_acc"]) == pytest.approx((m["train_acc"], m["val_acc"]))
            assert (r["train_loss"], r["val_loss"]) == pytest.approx((m["train_loss"], m["val_loss"]), rel=1e-4)
    final = json.loads((tiny_run / "summary.json").read_text())
    assert recs[-1]["train_acc"] == pytest.approx(final["final_train_acc"])
    assert recs[-1]["val_loss"] == pytest.approx(final["final_val_loss"], rel=1e-4)
    # 200 steps form no Fourier circuit: no neuron is clustered, K is empty, so removing K's
    # directions removes nothing (excluded loss = training loss) ...
    assert info["neurons"] == 64 and info["neuron_freq"] == [0] * 64 and info["key_freqs"] == []
    assert all(r["excluded_loss"] == pytest.approx(r["train_loss"], rel=1e-12) for r in recs)
    # ... and memorization ends, by the rule's fallback, at the first step with train accuracy >= 0.99
    first_99 = min(s for s, m in metrics.items() if m["train_acc"] >= 0.99)
    assert final["phases"]["memorization_end"] == first_99 == info["phases"]["memorization_end"]
    assert final["phases"]["circuit_formation_end"] is None and final["phases"]["cleanup_end"] is None
    assert final["key_freqs"] == info["key_freqs"]
    # every figure is a real picture (many colours; the shape of its own figure: 12×8, 12×6, 13×5
    # inches, about 1,000+ pixels wide) inlined in the report byte for byte
    html = (tiny_run / "report.html").read_text()
    aspects = []
    for name, aspect in (("fig_progress_1_measures", 12 / 8), ("fig_progress_2_spectrum", 12 / 6),
                         ("fig_progress_3_neurons", 13 / 5)):
        png = (tiny_run / f"{name}.png").read_bytes()
        img = plt.imread(io.BytesIO(png))
        aspects.append(img.shape[1] / img.shape[0])
        assert img.shape[1] > 900 and aspects[-1] == pytest.approx(aspect, rel=0.2), name
        assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 50, name
        assert f'alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}"' in html
    assert aspects == sorted(aspects)
    # the live measures of the same run: every 50 steps, equal to the analysis where both measured
    live = read_jsonl(tiny_run / "measures.jsonl")
    assert [r["step"] for r in live] == [0, 50, 100, 150]
    assert {"sum_sq_weights", "sum_sq_per_tensor", "softmax_collapse", "zero_loss_frac", "gini_E",
            "gini_L"} <= set(live[0])
    at100 = next(r for r in recs if r["step"] == 100)
    assert live[2]["sum_sq_weights"] == pytest.approx(at100["sum_sq_weights"], rel=1e-9)
    assert live[2]["gini_E"] == pytest.approx(at100["gini_E"], rel=1e-6)


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
