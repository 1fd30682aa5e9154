"""Meta-training: it learns, run directories, exact resume, config errors, the CLI."""
import json
import shutil

import pytest
import torch

from groklab.cli import main
from groklab.config import ConfigError
from groklab.gtn import run as gtn_run
from groklab.gtn.config import resolve
from groklab.gtn.meta import cosine_lr
from groklab.runs.checkpoint import list_checkpoints, load_checkpoint
from groklab.runs.rundir import read_json, read_jsonl
from gtn_tiny import one_thread, tiny_cfg, tiny_data  # noqa: F401

TINY_CLI = ["generator.z_dim=4", "generator.hidden=8", "learner.hidden=8", "inner.steps=2",
            "inner.batch=20", "meta.real_batch=32", "meta.steps=4", "meta.log_every=2",
            "meta.checkpoint_every=2", "eval.learners=2", "eval.lrs=0.1,0.3"]


def test_meta_training_lowers_the_real_loss_of_fresh_learners(tmp_path):
    cfg = tiny_cfg("meta.steps=40", "meta.log_every=1", "meta.checkpoint_every=20")
    out = gtn_run.train(cfg, tmp_path / "r", data=tiny_data())
    rec = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rec] == list(range(1, 41))
    ev = read_json(out / "summary.json")["eval"]
    assert ev["learners"] == 2 and set(ev["real_by_lr"]) == {"0.1", "0.3"}
    # the run directory holds the trained teacher: loaded, it is the last checkpoint's, and
    # evaluating it from disk reproduces the evaluation made in memory right after training
    loaded_cfg, teacher, _ = gtn_run.load_run(out, data=tiny_data())
    assert loaded_cfg == cfg and list_checkpoints(out) == [20, 40]
    weights = load_checkpoint(out, 40)[0]
    assert teacher.state_dict().keys() == weights.keys()
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, weights[k]), k
    again = gtn_run.evaluate_run(out, data=tiny_data())
    assert {k: v for k, v in again.items() if not k.endswith(("_curves", "seconds"))} == \
           {k: v for k, v in ev.items() if not k.endswith("seconds")}
    # meta-training did something: the last ten meta-losses are below the first ten
    mean = lambda rs: sum(r["meta_loss"] for r in rs) / len(rs)  # noqa: E731
    assert mean(rec[-10:]) < 0.8 * mean(rec[:10])


@pytest.mark.parametrize("checkpoint", [0, 2])
def test_resume_continues_bit_for_bit(tmp_path, checkpoint):
    cfg = tiny_cfg(f"inner.checkpoint={checkpoint}")
    a = gtn_run.train(cfg, tmp_path / "a", evaluate=False, data=tiny_data())
    b = gtn_run.train(cfg, tmp_path / "b", evaluate=False, data=tiny_data())
    assert list_checkpoints(b) == [3, 6]
    shutil.rmtree(b / "checkpoints" / "step_00000006")   # as if killed after step 3's checkpoint
    gtn_run.resume(b, evaluate=False, data=tiny_data())
    wa, sa = load_checkpoint(a, 6)
    wb, sb = load_checkpoint(b, 6)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
    assert strip(read_jsonl(a / "metrics.jsonl")) == strip(read_jsonl(b / "metrics.jsonl"))


def test_cosine_meta_lr_decays_to_the_floor():
    cfg = resolve(overrides=["meta.steps=100", "meta.lr=0.02", "meta.min_lr_frac=0.1"])
    assert cosine_lr(cfg, 0) == pytest.approx(0.02)
    assert cosine_lr(cfg, 50) == pytest.approx(0.011)
    assert cosine_lr(cfg, 100) == pytest.approx(0.002)


@pytest.mark.parametrize("bad, match", [
    ("inner.curriculum=most", "inner.curriculum='most' is not one of"),
    ("inner.step=3", "unknown key 'inner.step'"),
    ("inner.steps=0", "inner.steps=0 is out of range"),
    ("eval.lrs=0.1,x", r"eval.lrs='0.1,x' \(item 1\): expected a number"),
    ("learner.hidden=0", r"learner.hidden='0' \(item 0\) is out of range; allowed: \[1, "),
])
def test_bad_config_names_the_value(bad, match):
    with pytest.raises(ConfigError, match=match):
        resolve(overrides=[bad])


def test_recipes_resolve():
    from groklab.gtn.config import RECIPES
    for name in RECIPES:
        resolve(recipe=name)
    with pytest.raises(ConfigError, match="unknown recipe"):
        resolve(recipe="cifar")


def test_cli_train_eval_and_errors(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["gtn", "train", "--quiet", "--out", str(out)]
    for s in TINY_CLI:
        args += ["--set", s]
    assert main(args) == 0
    assert "GTN" in capsys.readouterr().out
    for f in ("config.json", "metrics.jsonl", "eval.json", "summary.json", "fig_accuracy.png",
              "fig_samples.png", "report.html"):
        assert (out / f).is_file(), f
    page = (out / "report.html").read_text()
    assert page.index("accuracy against inner step") < page.index("generated samples")
    assert "src=\"http" not in page and "data:image/png;base64," in page
    assert main(["gtn", "eval", str(out), "--learners", "3"]) == 0
    assert json.loads((out / "eval.json").read_text())["learners"] == 3
    assert main(args) == 2                                          # existing --out
    assert main(["gtn", "train", "--set", "inner.curriculum=x"]) == 2
    assert main(["gtn", "eval", str(tmp_path / "nope")]) == 2
    assert "groklab: error:" in capsys.readouterr().err
