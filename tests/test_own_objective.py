"""Models that bring their own objective (a GP's ELBO, TARNet's factual error) train through the
same loop: the loop uses their ``objective``, ``correct`` and ``metrics`` when they define them,
and models without them train exactly as before."""
from __future__ import annotations

import torch

import groklab
import groklab.train.loop as loop
from groklab.runs.rundir import read_jsonl

pytestmark = __import__("pytest").mark.usefixtures("one_thread")


class Margin(torch.nn.Module):
    """An MLP on parity whose loss is a hinge on the logit margin, whose "correct" is a margin
    above 1 (stricter than argmax) and which reports its mean margin."""

    def __init__(self, d_in: int):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(d_in, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
        self.calls = 0

    def forward(self, x):
        return self.net(x)

    def margin(self, out, y):
        return out.gather(1, y[:, None]).squeeze(1) - out.gather(1, (1 - y)[:, None]).squeeze(1)

    def objective(self, out, y):
        self.calls += 1
        return torch.relu(1 - self.margin(out, y)).mean()

    def correct(self, out, y):
        return self.margin(out, y) > 1

    def metrics(self, out, y):
        return {"margin": self.margin(out, y).mean(), "n": torch.tensor(len(y))}


PARITY = ["task.name=parity", "task.n_bits=10", "task.k=3", "task.n_samples=200", "train.steps=30",
          "train.eval_every=10", "train.forecast=false", "train.measure_every=0", "train.batch_size=0"]


def _run(tmp_path, monkeypatch, name="own", report=False):
    made = {}

    def build(cfg, task, fast=None):
        made["m"] = Margin(task.d_in)
        return made["m"]
    monkeypatch.setattr(loop, "build_model", build)
    cfg = groklab.resolve("mlp-adamw", overrides=PARITY)
    return groklab.run(cfg, out=tmp_path / name, report=report), made["m"]


def test_the_loop_trains_on_the_models_own_objective_and_logs_its_metrics(tmp_path, monkeypatch):
    run, model = _run(tmp_path, monkeypatch)
    recs = read_jsonl(run.dir / "metrics.jsonl")
    assert model.calls >= 30                       # every step's loss came from objective()
    xtr, ytr, xva, yva = (t.to(torch.float32) if t.is_floating_point() else t for t in
                          (run.task.x_train, run.task.y_train, run.task.x_val, run.task.y_val))
    with torch.no_grad():
        out_tr, out_va = model(xtr), model(xva)
        want = {"train_loss": model.objective(out_tr, ytr), "val_loss": model.objective(out_va, yva),
                "train_acc": model.correct(out_tr, ytr).float().mean(),
                "val_acc": model.correct(out_va, yva).float().mean(),
                "train_margin": model.margin(out_tr, ytr).mean(), "val_margin": model.margin(out_va, yva).mean()}
    last = recs[-1]
    for k, v in want.items():
        assert abs(last[k] - float(v)) < 1e-5, k
    assert last["val_n"] == len(yva) and last["train_n"] == len(ytr)  # metrics see the whole split
    # the stricter "correct" rule is what was logged, not argmax
    argmax = float((out_tr.argmax(-1) == ytr).float().mean())
    assert abs(argmax - last["train_acc"]) > 0.05


def test_a_model_without_the_methods_uses_train_loss_and_argmax():
    m = torch.nn.Linear(3, 2)
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    loss, acc, more = loop.evaluate_all(m, x, y, torch.nn.functional.cross_entropy, chunk=7)
    with torch.no_grad():
        assert abs(loss - float(torch.nn.functional.cross_entropy(m(x), y))) < 1e-6
        assert acc == int((m(x).argmax(-1) == y).sum()) / 20 and more == {}


def test_the_report_shows_the_models_own_metrics_in_a_third_panel_and_the_summary(tmp_path, monkeypatch):
    from PIL import Image

    from groklab.report.plots import own_metrics
    plain = groklab.run(groklab.resolve("mlp-adamw", overrides=PARITY), out=tmp_path / "plain", report=True)
    run, model = _run(tmp_path, monkeypatch, report=True)   # the same config, the model's own metrics
    assert own_metrics(read_jsonl(plain.dir / "metrics.jsonl")) == []
    assert own_metrics(read_jsonl(run.dir / "metrics.jsonl")) == ["margin", "n"]
    page = (run.dir / "report.html").read_text()
    assert "final val_margin" in page and "final val_n" in page
    assert "final val_" not in (plain.dir / "report.html").read_text()
    with Image.open(run.dir / "curves.png") as wide, Image.open(plain.dir / "curves.png") as narrow:
        assert wide.size[0] > 1.3 * narrow.size[0] and wide.size[1] == narrow.size[1]  # 3 panels, not 2
