"""Issue 13's last pieces: the faster gathered first layer (bit for bit the old one), the race
without live forecasts, mlp-fast's tuned settings, and the sweep's total cost in report.html."""
import types

import pytest
import torch
import torch.nn.functional as F

from groklab.accel.race import race_config
from groklab.accel.tune import task_config
from groklab.models.ops import take_rows
from groklab.presets import get_preset
from groklab.sweep.diagram import write_sweep_report

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gathered_first_layer_is_the_old_gather_and_the_one_hot_matmul_bit_for_bit():
    import groklab
    from groklab.models import build_model
    from groklab.tasks import build_task
    cfg = groklab.resolve("mlp-fast")
    task = build_task(cfg.task)
    m = build_model(cfg, task)
    x, W = task.x_train[:700], m.layers[0].weight
    h = m.first_layer(x)
    g = torch.randn_like(h, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(h, W, g)
    # the previous form: gather (B, 2, w) from the strided W^T, sum over the pair
    old = take_rows(W.T, x[:, :2] + torch.tensor([0, 113])).sum(1)
    (old_grad,) = torch.autograd.grad(old, W, g)
    assert torch.equal(h, old) and torch.equal(grad, old_grad)
    onehot = torch.cat([F.one_hot(x[:, 0], 113), F.one_hot(x[:, 1], 113)], 1).float()
    assert torch.equal(h, onehot @ W.T)  # each entry is one sum of two weights: exact either way


def test_race_runs_have_no_live_forecast(tmp_path):
    assert race_config("mlp-fast", "nanda", 0).train.forecast is False
    for task in ("add113", "mul97", "parity"):
        assert task_config("mlp-adamw", task, 0).train.forecast is False
    assert get_preset("mlp-fast").train.forecast is True  # a plain run keeps it
    import groklab
    cfg = race_config("mlp-fast", "nanda", 0, steps=3, eval_every=1,
                      overrides=["task.p=23", "model.hidden=8,8"])
    groklab.run(cfg, out=tmp_path / "r", progress=False, report=False)
    assert not (tmp_path / "r" / "forecast.jsonl").exists()


def test_mlp_fast_carries_the_settings_found_on_the_tuning_split():
    o = get_preset("mlp-fast").optim
    assert (o.name, o.lr, o.wd, o.beta1, o.beta2, o.eps) == ("adamw", 0.03, 0.0, 0.9, 0.95, 1e-25)
    a = get_preset("mlp-fast").accel
    assert a.orthograd and a.weight_norm == 45.0


def test_sweep_report_shows_the_sweeps_total_cost(tmp_path):
    spec = types.SimpleNamespace(name="s")
    rows = [{"id": "p0", "phase": "grokking", "flops": 2e9, "cpu_seconds": 1.5, "joules": 3.0,
             "energy_method": "estimated", "co2_g": 0.0004, "wall_seconds": 2.0, "error": ""},
            {"id": "p1", "phase": "grokking", "flops": "1000000000", "cpu_seconds": "0.5", "joules": "1.0",
             "energy_method": "estimated", "co2_g": "0.0001", "wall_seconds": "1.0", "error": ""}]
    page = write_sweep_report(tmp_path, spec, rows, [], {"points": 2}).read_text()
    assert "cost of the sweep (2 of 2 runs)" in page
    assert "3 GFLOP · 2.0 CPU s · 4 J (estimated) · 0.0005 g CO2e" in page
    rows[1] = {"id": "p1", "phase": "failed", "error": "boom"}  # a failed point has no cost
    page = write_sweep_report(tmp_path, spec, rows, [], {}).read_text()
    assert "cost of the sweep (1 of 2 runs)" in page and "2 GFLOP · 1.5 CPU s · 3 J (estimated)" in page
    rows[0]["joules"] = None  # energy unknown for a run: no total joules, and it says why
    page = write_sweep_report(tmp_path, spec, rows, [], {}).read_text()
    assert "energy missing: not known for every run" in page
    page = write_sweep_report(tmp_path, spec, [], [], {}).read_text()
    assert "cost of the sweep (0 of 0 runs)</th><td>–" in page


def test_autocast_runs_the_steps_products_in_bf16_and_evaluates_in_float32(tmp_path):
    import groklab
    from groklab.runs.rundir import read_jsonl
    from groklab.sweep.ensemble import unsupported
    from groklab.train.loop import Trainer, evaluate
    over = ["task.p=23", "model.hidden=16,16", "train.steps=4", "train.eval_every=2", "train.forecast=false"]
    cfg = groklab.resolve("mlp-fast-bf16", overrides=over)
    assert cfg.train.autocast == "bfloat16" and groklab.resolve("mlp-fast").train.autocast == "off"
    tr = Trainer.build(cfg)
    loss, logits, _, full = tr.forward()
    assert full and logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())
    off = Trainer.build(groklab.resolve("mlp-fast", overrides=over))
    assert off.forward()[1].dtype == torch.float32
    assert not torch.equal(logits.float(), off.forward()[1])  # the same weights, rounded products
    # the metrics' training loss is the float32 model's, not the bf16 step's
    r = groklab.run(cfg, out=tmp_path / "r", progress=False, report=False)
    rec = read_jsonl(tmp_path / "r" / "metrics.jsonl")[0]
    xtr, ytr = Trainer.build(cfg).data[:2]
    assert rec["train_loss"] == evaluate(Trainer.build(cfg).model, xtr, ytr, tr.loss_fn)[0]
    assert r.summary["steps_done"] == 4
    assert unsupported(groklab.resolve("mlp-adamw")) is None
    assert "train.autocast" in unsupported(groklab.resolve("mlp-adamw", overrides=["train.autocast=bfloat16"]))
    assert task_config("mlp-fast-bf16", "parity", 0).train.autocast == "bfloat16"
    assert task_config("mlp-fast", "add113", 0).train.autocast == "off"
