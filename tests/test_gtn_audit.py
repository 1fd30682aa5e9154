"""`groklab gtn audit`: labels, per-class accuracy against real-data learners, nearest real
neighbour and diversity of a teacher's data, checked on teachers scripted to have known answers."""
import json
import subprocess
import sys

import pytest
import torch

from groklab.cli import main
from groklab.config import ConfigError
from groklab.gtn.audit import audit, audit_run, label_stats, mean_pairwise, nearest
from groklab.gtn.data import GTNData
from groklab.gtn.meta import Teacher
from gtn_tiny import one_thread, tiny_cfg, tiny_data  # noqa: F401  (fixture)

# long enough, and at rates at which real-data learners learn every tiny class
STEPS = ("inner.steps=8", "eval.lrs=0.1,0.3", "eval.learners=3")


def _data() -> GTNData:
    """The tiny problem with a test set of its own (tiny_data's is its training set)."""
    d = tiny_data(n=120)
    return GTNData("tiny", d.x_train[:60], d.y_train[:60], d.x_train[60:], d.y_train[60:], d.shape,
                   d.n_classes, 0.0, 1.0).to(torch.float64)


def _teacher(*overrides):
    cfg, data = tiny_cfg(*STEPS, *overrides), _data()
    return cfg, Teacher(cfg, data).to(torch.float64), data


def test_nearest_and_pairwise_distances_on_known_points():
    ref = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    d, i = nearest(torch.tensor([[3.0, 4.0], [0.0, 4.0], [1.0, 0.0]]), ref)
    assert d.tolist() == [3.0, 0.0, 1.0] and i.tolist() == [2, 2, 0]
    assert mean_pairwise(ref) == pytest.approx((3 + 4 + 5) / 3)
    assert mean_pairwise(ref[:1]) is None


def test_label_stats_count_the_argmax_and_the_mass_of_soft_labels():
    y = torch.tensor([0, 0, 1, 2])
    target = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.0, 1.0, 0.0], [0.6, 0.0, 0.4]])
    s = label_stats(y, target, 3)
    assert s["asked"] == [2, 1, 1] and s["argmax"] == [2, 2, 0]
    assert s["mass"] == pytest.approx([1.7 / 4, 1.8 / 4, 0.5 / 4])
    assert s["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert s["mean_target"][0] == pytest.approx([0.55, 0.4, 0.05])


def test_a_teacher_of_class_0_only_leaves_every_other_class_neglected():
    cfg, teacher, data = _teacher()
    fair = audit(cfg, teacher, data, learners=3)
    assert all(r["mass"] == pytest.approx(1 / 3) for r in fair["classes"])   # balanced labels
    assert all(r["acc_real"] > 0.5 for r in fair["classes"])                  # the real learners learn all
    teacher.curriculum.labels.zero_()                                         # asks only for class 0
    a = audit(cfg, teacher, data, learners=3)
    assert a["neglected"][-2:] == [1, 2]
    c0, *rest = a["classes"]
    assert c0["mass"] == 1 and c0["asked"] == cfg.inner.steps * cfg.inner.batch and "label" not in c0["why"]
    for r in rest:
        assert r["mass"] == 0 and r["acc_gtn"] == 0 and r["acc_real"] == fair["classes"][r["class"]]["acc_real"]
        assert "label mass 0.000 < 0.167" in r["why"] and "taught accuracy" in r["why"]
        assert r["diversity_gen"] is None and r["nn_gen"] is None
    assert a["acc_real"] == fair["acc_real"] and a["acc_gtn"] == pytest.approx(c0["acc_gtn"] / 3)  # 20 per class


def test_learned_labels_that_move_all_mass_to_one_class_neglect_the_others():
    cfg, teacher, data = _teacher("labels.learned=true")
    with torch.no_grad():
        teacher.curriculum.label_logits.zero_()[..., 2] = 10.0   # every slot's target: class 2
    a = audit(cfg, teacher, data, learners=2)
    assert [r["asked"] for r in a["classes"]] == [8 * 2] * 3     # the generator is still asked evenly
    assert [r["argmax"] for r in a["classes"]] == [0, 0, 48]
    assert a["labels"]["confusion"] == [[0, 0, 16]] * 3
    assert a["neglected"] == [0, 1]


def _copy_teacher(*overrides):
    """Learned pixels set to the first T·B real training examples, in the curriculum's label
    order (tiny data's labels are arange(n) % C, as are the slots')."""
    cfg, teacher, data = _teacher("generator.kind=pixels", *overrides)
    T, B = cfg.inner.steps, cfg.inner.batch
    with torch.no_grad():
        teacher.curriculum.z.copy_(data.x_train[: T * B].reshape(T, B, -1))
    assert torch.equal(teacher.curriculum.labels.repeat(T), data.y_train[: T * B])
    return cfg, teacher, data


def test_a_copy_of_the_training_set_is_at_nearest_neighbour_distance_zero():
    cfg, teacher, data = _copy_teacher()
    a = audit(cfg, teacher, data, learners=1)
    nn = a["nearest"]
    assert nn["gen_median"] == nn["gen_min"] == nn["ratio"] == 0.0
    assert nn["closer_than_real_p05"] == 1.0 and nn["label_agreement"] == 1.0
    assert nn["real_median"] > 0 and all(r["nn_ratio"] == 0 for r in a["classes"])
    # the contrast: a generator network (untrained here) makes no copies
    cfg, teacher, data = _teacher()
    assert audit(cfg, teacher, data, learners=1)["nearest"]["gen_min"] > 0.1


def test_a_class_collapsed_to_one_example_has_diversity_zero():
    cfg, teacher, data = _copy_teacher()
    one = teacher.curriculum.labels == 1
    with torch.no_grad():
        teacher.curriculum.z[:, one] = data.x_train[1]          # every class-1 slot: one example
    rows = audit(cfg, teacher, data, learners=1)["classes"]
    assert rows[1]["diversity_gen"] == 0 and rows[1]["diversity_ratio"] == 0
    x0 = data.x_train[: cfg.inner.steps * cfg.inner.batch]
    x0 = x0[data.y_train[: len(x0)] == 0]
    assert rows[0]["diversity_gen"] == pytest.approx(torch.pdist(x0).mean().item())


# ---- the command ---------------------------------------------------------------------------

@pytest.fixture
def gtn_dir(tmp_path):
    from test_gtn_meta import TINY_CLI
    out = tmp_path / "gtn"
    assert main(["gtn", "train", "--quiet", "--out", str(out), *[a for s in TINY_CLI for a in ("--set", s)]]) == 0
    return out


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("groklab: error: ") and err.count("\n") == 1, err
    return err


def _tree(d):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and not p.name.startswith(".lock")}


def test_the_command_writes_audit_json_and_the_report(gtn_dir, capsys):
    assert main(["gtn", "audit", str(gtn_dir), "--learners", "2"]) == 0
    out = capsys.readouterr().out
    a = json.loads((gtn_dir / "audit.json").read_text())
    assert f"audit: {gtn_dir / 'audit.json'}" in out and "neglected:" in out
    assert len(a["classes"]) == 10 and a["learners"] == 2 and a["examples"] == 2 * 20
    ev = json.loads((gtn_dir / "eval.json").read_text())                  # the same learners as gtn eval
    assert a["acc_gtn"] == pytest.approx(sum(c[-1] for c in ev["gtn_curves"]) / ev["learners"], abs=1e-6)
    assert a["acc_real"] == pytest.approx(ev["real_mean"], abs=1e-6) and a["best_lr"] == ev["best_lr"]
    report = (gtn_dir / "report.html").read_text()
    assert "Audit of the generated data" in report and (gtn_dir / "fig_audit.png").is_file()
    assert main(["gtn", "eval", str(gtn_dir), "--learners", "2"]) == 0    # a later eval keeps it
    assert "Audit of the generated data" in (gtn_dir / "report.html").read_text()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args, needle", [
    (["{gtn}", "--learners", "0"], "--learners 0: expected 1 to 10000"),
    (["{gtn}", "--learners", "99999999999"], "--learners 99999999999: expected 1 to 10000"),
    (["{tmp}/empty"], "is not a GTN run directory (no config.json)"),
    (["{tmp}/plainrun"], "is not a GTN run directory (its config.json has no generator"),
])
def test_refusals_are_one_line_and_write_nothing(gtn_dir, tmp_path, capsys, args, needle):
    (tmp_path / "empty").mkdir()
    (tmp_path / "plainrun").mkdir()
    (tmp_path / "plainrun" / "config.json").write_text(json.dumps({"task": {}, "model": {}}))
    before = _tree(tmp_path)
    assert main(["gtn", "audit", *[a.format(gtn=gtn_dir, tmp=tmp_path) for a in args]]) == 2
    assert needle in _one_line(capsys)
    assert _tree(tmp_path) == before
    assert not (tmp_path / "empty" / ".lock").exists()


def test_a_read_only_run_is_one_line(gtn_dir, capsys, monkeypatch):
    from groklab.runs import lock

    class ReadOnlyLock(lock.FileLock):       # as root, permissions do not apply: refuse the lock
        def acquire(self, *a, **k):
            raise OSError(30, "Read-only file system", self.lock_file)
    monkeypatch.setattr(lock, "FileLock", ReadOnlyLock)
    before = _tree(gtn_dir)
    assert main(["gtn", "audit", str(gtn_dir)]) == 2
    assert f"{str(gtn_dir)!r} is not writable: Read-only file system" in _one_line(capsys)
    assert _tree(gtn_dir) == before


HOLD = """
import sys, time
from groklab.runs.lock import dir_lock
with dir_lock(sys.argv[1], "GTN run directory"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_run_in_use_is_refused_with_its_holder(gtn_dir):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(gtn_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _tree(gtn_dir)
        with pytest.raises(ConfigError, match=f"is in use by pid {holder.pid}"):
            audit_run(gtn_dir, learners=1)
        assert _tree(gtn_dir) == before
    finally:
        holder.kill()
        holder.communicate()
