"""Issue 24 part 4's levers: a weight average (EMA) of the teacher used at evaluation
(``meta.ema``), rotated real meta-batches (``meta.rotate``), and the taught learners' accuracy
on the real training set (the meta-gap's other side) in the evaluation."""
import math
import shutil

import pytest
import torch

from groklab.cli import main
from groklab.gtn import run as gtn_run
from groklab.gtn.data import GTNData, random_rotate, rotate
from groklab.gtn.eval import evaluate
from groklab.gtn.meta import Teacher, make_optimizer, make_unroll, meta_step
from groklab.runs.checkpoint import list_checkpoints, load_checkpoint
from groklab.runs.rundir import read_json, read_jsonl
from gtn_tiny import one_thread, tiny_cfg, tiny_data  # noqa: F401


def _setup(*overrides):
    cfg = tiny_cfg(*overrides)
    data = tiny_data().to(torch.float64)
    return cfg, data, Teacher(cfg, data).to(torch.float64)


def _params(teacher):
    return {k: p.detach().clone() for k, p in teacher.named_parameters()}


# ---- weight average of the teacher (meta.ema) ----------------------------------------------

def test_ema_off_adds_nothing_and_the_teacher_teaches_as_trained():
    _, _, teacher = _setup()
    assert teacher.ema is None and teacher.averaged() is teacher
    assert not any(k.startswith("ema.") for k in teacher.state_dict())


def test_ema_is_the_running_average_with_the_early_steps_forgotten():
    decay, n = 0.5, 6
    cfg, data, teacher = _setup(f"meta.ema={decay}", "labels.learned=true")
    opt = make_optimizer(cfg, teacher)
    expect = _params(teacher)
    for s in range(n):
        meta_step(cfg, teacher, opt, data, s)
        d = min(decay, (1 + s) / (10 + s))
        expect = {k: d * expect[k] + (1 - d) * p for k, p in _params(teacher).items()}
    avg = teacher.averaged()
    assert avg is not teacher
    for k, p in avg.named_parameters():
        torch.testing.assert_close(p.detach(), expect[k], rtol=1e-12, atol=1e-12)
        assert not torch.equal(p.detach(), dict(teacher.named_parameters())[k].detach()), k
    assert set(expect) == {k for k, _ in teacher.named_parameters()}   # the labels are averaged too


def test_ema_never_feeds_back_into_meta_training(tmp_path):
    a = gtn_run.train(tiny_cfg(), tmp_path / "a", evaluate=False, data=tiny_data())
    b = gtn_run.train(tiny_cfg("meta.ema=0.9"), tmp_path / "b", evaluate=False, data=tiny_data())
    wa, _ = load_checkpoint(a, 6)
    wb, _ = load_checkpoint(b, 6)
    assert set(wb) - set(wa) and all(k.startswith("ema.") for k in set(wb) - set(wa))
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ra, rb = read_jsonl(a / "metrics.jsonl"), read_jsonl(b / "metrics.jsonl")
    assert [r["test_acc"] for r in ra] == [r["test_acc"] for r in rb]
    assert all("test_acc_ema" in r for r in rb) and not any("test_acc_ema" in r for r in ra)


def test_ema_resumes_bit_for_bit(tmp_path):
    cfg = tiny_cfg("meta.ema=0.8", "meta.learners=2")
    a = gtn_run.train(cfg, tmp_path / "a", evaluate=False, data=tiny_data())
    b = gtn_run.train(cfg, tmp_path / "b", evaluate=False, data=tiny_data())
    shutil.rmtree(b / "checkpoints" / "step_00000006")
    gtn_run.resume(b, evaluate=False, data=tiny_data())
    assert list_checkpoints(b) == [3, 6]
    wa, _ = load_checkpoint(a, 6)
    wb, _ = load_checkpoint(b, 6)
    assert any(k.startswith("ema.") for k in wa)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_evaluation_sample_and_audit_use_the_average_and_report_the_raw_teacher(tmp_path):
    cfg = tiny_cfg("meta.ema=0.9")
    out = gtn_run.train(cfg, tmp_path / "r", data=tiny_data())
    ev = read_json(out / "eval.json")
    _, raw, data = gtn_run.load_run(out, data=tiny_data(), averaged=False)
    _, avg, _ = gtn_run.load_run(out, data=tiny_data())
    for k, p in avg.named_parameters():       # what load_run gives sample, audit and nas
        assert torch.equal(p, getattr(raw.ema, k.replace(".", "__"))), k
    want_avg, want_raw = evaluate(cfg, raw.averaged(), data), evaluate(cfg, raw, data)
    assert ev["gtn_curves"] == want_avg["gtn_curves"] and ev["gtn_mean"] == want_avg["gtn_mean"]
    assert ev["gtn_raw_curves"] == want_raw["gtn_curves"] and ev["gtn_raw_mean"] == want_raw["gtn_mean"]
    # the learned step sizes are continuous: the averaged teacher's, not the raw one's
    assert ev["learned_lr"] == avg.log_lr.detach().exp().tolist() != raw.log_lr.detach().exp().tolist()
    assert read_json(out / "summary.json")["eval"]["gtn_raw_mean"] == ev["gtn_raw_mean"]
    # gtn eval of the directory gives the same figures
    assert gtn_run.evaluate_run(out, data=tiny_data())["gtn_curves"] == ev["gtn_curves"]


def test_without_ema_the_evaluation_has_no_raw_figures(tmp_path):
    out = gtn_run.train(tiny_cfg(), tmp_path / "r", data=tiny_data())
    assert not any(k.startswith("gtn_raw") for k in read_json(out / "eval.json"))


@pytest.mark.parametrize("bad", ["meta.ema=1", "meta.ema=-0.5", "meta.ema=x", "meta.rotate=181",
                                 "meta.rotate=-1"])
def test_bad_values_stop_with_one_line_and_no_directory(tmp_path, capsys, bad):
    out = tmp_path / "g"
    code = main(["gtn", "train", "--recipe", "digits", "--set", bad, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and bad.split("=")[0] in err
    assert not out.exists()


@pytest.mark.parametrize("recipe", ["modular", "mnist1d"])
def test_rotate_refuses_data_without_two_dimensional_images(tmp_path, capsys, recipe):
    out = tmp_path / "g"
    code = main(["gtn", "train", "--recipe", recipe, "--set", "meta.rotate=10", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "meta.rotate=10" in err
    assert not out.exists()


# ---- rotated real meta-batches (meta.rotate) ------------------------------------------------

def test_rotate_by_a_quarter_turn_is_rot90_and_keeps_pixel_units():
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(rotate(x, torch.full((3,), math.pi / 2), -1.0), torch.rot90(x, 1, (2, 3)),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(rotate(x, torch.zeros(3), -1.0), x, rtol=0, atol=1e-12)
    # a non-square image: a point 2 pixels right of the centre goes 2 pixels up, not sheared
    y = torch.full((1, 1, 5, 9), -1.0, dtype=torch.float64)
    y[0, 0, 2, 6] = 1.0
    r = rotate(y, torch.tensor([math.pi / 2]), -1.0)[0, 0]
    assert r[0, 4].item() == pytest.approx(1.0, abs=1e-5)
    assert (r - (-1.0)).abs().sum().item() == pytest.approx(2.0, abs=1e-4)   # one pixel moved, rest is fill


def test_random_rotate_gives_each_image_its_own_angle_within_deg():
    n, deg = 200, 20.0
    x = torch.zeros(n, 1, 21, 21, dtype=torch.float64)
    x[:, 0, 10, 18] = 1.0                       # 8 pixels right of the centre: angle 0
    y = random_rotate(x, deg, torch.Generator().manual_seed(1), 0.0)
    rows, cols = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    w = y[:, 0].clamp(min=0)
    cy = (w * rows).sum((1, 2)) / w.sum((1, 2)) - 10
    cx = (w * cols).sum((1, 2)) / w.sum((1, 2)) - 10
    ang = torch.rad2deg(torch.atan2(-cy, cx))
    assert ang.abs().max() <= deg + 1.0 and ang.abs().max() >= 0.8 * deg   # spread over [-deg, deg]
    assert ang.std() > deg / 3 and len(set(ang.round(decimals=3).tolist())) > n // 2
    torch.testing.assert_close(random_rotate(x, 0.0, torch.Generator(), 0.0), x, rtol=0, atol=1e-12)


def test_rotate_changes_only_the_real_meta_batches():
    cfg0, flat, _ = _setup("learner.kind=cnn", "learner.channels=2")
    cfg, _, _ = _setup("learner.kind=cnn", "learner.channels=2", "meta.rotate=30")
    g = torch.Generator().manual_seed(0)
    xtr = torch.randn(len(flat.y_train), 1, 4, 4, generator=g, dtype=torch.float64)
    data = GTNData("tiny-img", xtr, flat.y_train, xtr.clone(), flat.y_test, (1, 4, 4), 3, 0.0, 1.0)
    teacher = Teacher(cfg, data).to(torch.float64)
    u0, u = make_unroll(cfg0, teacher, data, 2), make_unroll(cfg, teacher, data, 2)
    assert all(torch.equal(a, b) for a, b in zip(u0.real_y, u.real_y))
    assert all(torch.equal(a, b) for a, b in zip(u0.params0.values(), u.params0.values()))
    assert all(torch.equal(u0.batch(t)[0], u.batch(t)[0]) for t in range(cfg.inner.steps))
    assert not any(torch.equal(a, b) for a, b in zip(u0.real_x, u.real_x))
    assert all(a.shape == b.shape for a, b in zip(u0.real_x, u.real_x))


# ---- the taught learners on the real training set --------------------------------------------

def test_evaluation_reports_accuracy_on_the_training_set():
    cfg, data, teacher = _setup()
    same = evaluate(cfg, teacher, data)      # tiny_data: the test set is the training set
    assert same["gtn_train_mean"] == same["gtn_mean"] and same["real_train_mean"] == same["real_mean"]
    perm = torch.randperm(len(data.y_test), generator=torch.Generator().manual_seed(0))
    other = GTNData("tiny", data.x_train, data.y_train, data.x_test[perm], data.y_test, data.shape, 3, 0.0, 1.0)
    moved = evaluate(cfg, teacher, other)    # another test set: the training-set figures stay
    assert moved["gtn_train_mean"] == same["gtn_train_mean"] and moved["real_train_mean"] == same["real_train_mean"]
    assert moved["gtn_mean"] != same["gtn_mean"]


def test_the_p31_recipe_is_the_measured_command():
    from groklab.gtn.config import resolve
    measured = resolve(recipe="modular90", overrides=["data.p=31", "meta.steps=1200", "meta.learners=4",
                                                      "meta.ema=0.99"])
    assert resolve(recipe="modular90-p31").to_dict() == measured.to_dict()
