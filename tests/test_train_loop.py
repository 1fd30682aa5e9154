"""The training loop's small rules, checked without training (issue 23 item 9: what the
mutation run of train/loop.py found that only the slow end-to-end runs reached, or nothing)."""
import threading
from types import SimpleNamespace

import torch

import groklab
from groklab.train import loop


def test_checkpoint_steps_keep_the_log_spaced_the_periodic_and_the_last():
    cfg = groklab.resolve("default", overrides=["train.steps=100", "train.n_checkpoints=1", "train.checkpoint_every=0"])
    assert loop.checkpoint_steps(cfg) == {1, 100}                # one log-spaced checkpoint: step 1
    cfg.train.n_checkpoints, cfg.train.checkpoint_every = 0, 30
    assert loop.checkpoint_steps(cfg) == {30, 60, 90, 100}
    cfg.train.n_checkpoints = 3
    assert loop.checkpoint_steps(cfg) == {1, 10, 30, 60, 90, 100}


def test_summary_names_the_phase_and_rounds_the_wall_time():
    cfg = groklab.resolve("default", overrides=["train.phase_gap=1000", "train.phase_threshold=0.9"])
    recs = [{"step": s, "train_acc": tr, "val_acc": va, "train_loss": 1.0, "val_loss": 1.0}
            for s, tr, va in ((0, 0.1, 0.1), (100, 1.0, 0.1), (2000, 1.0, 0.95))]
    s = loop.summarize(cfg, recs, "completed", 1.23456)
    assert s["phase"] == "grokking" and s["memorized_at"]["0.9"] == 100 and s["generalized_at"]["0.9"] == 2000
    assert s["wall_seconds"] == 1.235 and s["steps_done"] == 2000
    assert loop.summarize(cfg, recs[:2], "completed", 0.0)["phase"] == "memorization"


def test_a_models_own_correctness_rule_is_used():
    out, y = torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1])
    assert loop.correct(None, out, y).tolist() == [True, False]  # argmax == y
    model = SimpleNamespace(correct=lambda o, t: o[:, 0] > 0.5)  # e.g. a GP's own rule
    assert loop.correct(model, out, y).tolist() == [False, True]


def test_the_stop_flag_works_outside_the_main_thread():
    errors = []

    def body():
        try:
            with loop._StopFlag() as f:
                assert not f.stop
        except Exception as e:                                    # noqa: BLE001 - reported below
            errors.append(e)
    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert errors == []


def test_measurements_are_written_every_measure_every_steps_and_not_at_all_without(tmp_path):
    import json
    base = ["model.arch=mlp", "model.hidden=16,16", "task.p=13", "task.frac=0.5", "train.steps=40",
            "train.eval_every=10", "train.n_checkpoints=0", "train.forecast=false"]
    for every in (0, 20):
        groklab.run(groklab.resolve("default", overrides=base + [f"train.measure_every={every}"]),
                    out=tmp_path / str(every), report=False)
    assert not (tmp_path / "0" / "measures.jsonl").exists()
    steps = [json.loads(line)["step"] for line in (tmp_path / "20" / "measures.jsonl").read_text().splitlines()]
    assert {0, 20} <= set(steps) <= {0, 20, 40} and steps == sorted(set(steps))
    seen, out = [], tmp_path / "cb"
    out.mkdir()
    loop.train(groklab.resolve("default", overrides=base), out, progress=False, on_eval=seen.append)
    assert [r["step"] for r in seen] == [0, 10, 20, 30, 40]        # on_eval gets every evaluation record


def test_auto_is_the_gpu_when_there_is_one_else_the_cpu():
    assert loop.resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert loop.resolve_device("cpu") == torch.device("cpu")


def test_a_resume_from_an_earlier_checkpoint_drops_the_later_measurements(tmp_path):
    import json
    import shutil
    over = ["model.arch=mlp", "model.hidden=16,16", "task.p=13", "task.frac=0.5", "train.steps=40",
            "train.eval_every=10", "train.measure_every=10", "train.n_checkpoints=0", "train.checkpoint_every=20",
            "train.forecast=false"]
    d = tmp_path / "r"
    groklab.run(groklab.resolve("default", overrides=over), out=d, report=False)
    shutil.rmtree(d / "checkpoints" / "step_00000040")           # as if stopped after step 20's save
    groklab.resume(d, report=False)

    def steps(name):
        return [json.loads(line)["step"] for line in (d / name).read_text().splitlines()]
    for name in ("metrics.jsonl", "measures.jsonl"):
        assert steps(name) == sorted(set(steps(name))) and 30 in steps(name), name  # each step once
