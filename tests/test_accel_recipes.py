"""Accelerator presets (the papers' numbers) and the accelerators as settings of a run."""
import math

import pytest
import torch

import groklab
from groklab.accel.race import DEFAULT_RECIPES
from groklab.config import validate
from groklab.presets import PRESETS, get_preset

PAPER = ("grokfast-ma", "grokfast-ema", "prieto-orthograd", "prieto-stablemax", "prieto-float32")
TINY = ["task.p=23", "task.frac=0.5", "model.hidden=32,32", "train.n_checkpoints=0",
        "train.stop_threshold=0", "train.eval_every=1"]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", PAPER + DEFAULT_RECIPES)
def test_accelerator_presets_are_registered_valid_and_cite_their_paper(name):
    assert name in PRESETS
    cfg = validate(get_preset(name))
    assert cfg.preset == name
    assert "arXiv" in PRESETS[name].__doc__


def test_grokfast_presets_carry_the_papers_settings():
    base = get_preset("grokfast-baseline")
    ma, ema = get_preset("grokfast-ma"), get_preset("grokfast-ema")
    for cfg in (ma, ema):
        assert cfg.task == base.task and cfg.model == base.model
        assert (cfg.optim.name, cfg.optim.lr, cfg.train.batch_size) == ("adam", 1e-3, 512)
    assert (ma.accel.grokfast, ma.accel.window, ma.accel.lamb, ma.optim.wd) == ("ma", 100, 5.0, 0.01)
    assert (ema.accel.grokfast, ema.accel.alpha, ema.accel.lamb, ema.optim.wd) == ("ema", 0.98, 2.0, 0.005)


def test_prieto_presets_differ_from_the_base_recipe_only_in_the_accelerator():
    base = get_preset("prieto")
    og, sm, f32 = get_preset("prieto-orthograd"), get_preset("prieto-stablemax"), get_preset("prieto-float32")
    for cfg in (og, sm, f32):
        assert cfg.task == base.task and cfg.model == base.model and cfg.optim == base.optim
        assert cfg.optim.wd == 0.0
    assert og.accel.orthograd and og.train.loss == "ce"
    assert (sm.train.loss, sm.train.loss_dtype, sm.accel.orthograd) == ("stablemax", "float64", False)
    assert (f32.train.loss, f32.train.loss_dtype) == ("ce", "float32")


def test_race_recipes_share_task_and_model():
    """Every race recipe solves the nanda task; all but mlp-fast (narrower) share Prieto's MLP."""
    nanda, prieto = get_preset("nanda").task, get_preset("prieto").model
    for name in DEFAULT_RECIPES:
        cfg = get_preset(name)
        assert cfg.task == nanda and cfg.model.arch == "mlp"
        if name not in ("mlp-fast", "mlp-init-scale"):
            assert cfg.model == prieto, name
    fast = get_preset("mlp-fast")
    assert fast.accel.orthograd and fast.accel.weight_norm > 0 and fast.model.hidden == [128, 128]
    assert get_preset("mlp-grokfast-ema").optim == get_preset("mlp-adamw").optim


def short_run(tmp_path, name, overrides, steps=6):
    cfg = groklab.resolve("mlp-adamw", overrides=TINY + [f"train.steps={steps}"] + overrides)
    return groklab.run(cfg, out=tmp_path / name, progress=False, report=False)


@pytest.mark.parametrize("setting", ["accel.grokfast=ema", "accel.grokfast=ma", "accel.orthograd=true",
                                     "train.loss=stablemax", "optim.clip=1e-3"])
def test_each_accelerator_changes_the_trajectory_of_a_run(tmp_path, setting):
    overrides = ["accel.window=2"] if setting.endswith("=ma") else []
    plain = short_run(tmp_path, "plain", overrides)
    fast = short_run(tmp_path, "fast", overrides + [setting])
    assert fast.summary["status"] == "completed"
    a, b = plain.metrics, fast.metrics
    assert all(math.isfinite(r["train_loss"]) for r in b)
    assert a[1]["train_loss"] != b[1]["train_loss"] or a[-1]["weight_norm"] != b[-1]["weight_norm"]


def test_weight_norm_control_holds_the_total_norm(tmp_path):
    run = short_run(tmp_path, "wn", ["accel.weight_norm=7.5"])
    norms = [r["weight_norm"] for r in run.metrics[1:]]  # step 0 is logged before the first update
    assert norms == pytest.approx([7.5] * len(norms), rel=1e-5)


def test_init_scale_multiplies_the_initial_weights(tmp_path):
    one = short_run(tmp_path, "one", ["model.init_scale=1.0"], steps=1).metrics[0]["weight_norm"]
    half = short_run(tmp_path, "half", ["model.init_scale=0.5"], steps=1).metrics[0]["weight_norm"]
    assert half == pytest.approx(one / 2)
