"""Accelerator presets (the papers' numbers) and the accelerators as settings of a run."""
import pytest
import torch
import torch.nn.functional as F

import groklab
from groklab.accel.losses import stablemax_cross_entropy
from groklab.accel.race import DEFAULT_RECIPES
from groklab.accel.transforms import global_norm
from groklab.config import validate
from groklab.models import build_model
from groklab.presets import PRESETS, get_preset
from groklab.runs.checkpoint import load_weights, step_dir

PAPER = ("grokfast-ma", "grokfast-ema", "prieto-orthograd", "prieto-stablemax", "prieto-float32")
TINY = ["task.p=23", "task.frac=0.5", "model.hidden=32,32", "train.n_checkpoints=0",
        "train.stop_threshold=0", "train.eval_every=1"]


pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_chou_preset_is_prieto_with_learned_embeddings_biases_and_a_tuned_adamw():
    """Chou 2025's best variant: Prieto's task, 50-wide learned embeddings per operand (a
    100-wide first layer), biases, AdamW lr 0.05 and wd 2 on every parameter, float32 loss."""
    from groklab.tasks import build_task
    base, chou = get_preset("prieto"), validate(get_preset("chou-adamw"))
    assert chou.task == base.task and chou.task.frac == 0.4
    m, o, t = chou.model, chou.optim, chou.train
    assert (m.embed, m.d_model, m.bias, m.hidden) == ("learned", 50, True, [200, 200])
    assert (o.name, o.lr, o.wd, o.beta1, o.beta2, o.eps, o.warmup) == ("adamw", 0.05, 2.0, 0.9, 0.99, 1e-25, 0)
    assert (t.loss, t.loss_dtype, t.batch_size, t.stop_threshold, t.eval_every) == ("ce", "float32", 0, 1.0, 1)
    model = build_model(chou, build_task(chou.task))
    assert model.layers[0].in_features == 100 and model.layers[0].bias is not None
    assert model.W_E.shape == (113, 50)


def test_race_recipes_share_task_and_model():
    """Every race recipe solves the nanda task; all but mlp-fast (narrower) share Prieto's MLP."""
    nanda, prieto = get_preset("nanda").task, get_preset("prieto").model
    for name in DEFAULT_RECIPES:
        cfg = get_preset(name)
        assert cfg.task == nanda and cfg.model.arch == "mlp"
        # the race's rules: a 1,000-step budget, full batch, evaluated every 10 steps, stopping
        # at the first evaluation with 99 % validation accuracy
        t = cfg.train
        assert (t.steps, t.batch_size, t.eval_every, t.stop_threshold, t.patience) == (1000, 0, 10, 0.99, 0), name
        if name not in ("mlp-fast", "mlp-init-scale"):
            assert cfg.model == prieto, name
    fast = get_preset("mlp-fast")
    assert fast.accel.orthograd and fast.accel.weight_norm > 0 and fast.model.hidden == [128, 128]
    assert get_preset("mlp-grokfast-ema").optim == get_preset("mlp-adamw").optim


def short_run(tmp_path, name, overrides, steps=6):
    cfg = groklab.resolve("mlp-adamw", overrides=TINY + [f"train.steps={steps}"] + overrides)
    return groklab.run(cfg, out=tmp_path / name, progress=False, report=False)


# plain SGD in float64: each update is exactly -lr × (transformed) gradient, so the effect of an
# accelerator on the first updates can be read off the weights and compared with its formula
SGD = ["optim.name=sgd", "optim.momentum=0", "optim.wd=0", "optim.warmup=0", "optim.lr=0.1",
       "train.dtype=float64", "train.checkpoint_every=1"]


def updates(tmp_path, name, overrides, steps=2):
    """The run and its first ``steps`` weight updates {name: w_{t+1} - w_t}, from the checkpoints."""
    run = short_run(tmp_path, name, SGD + overrides, steps=steps)
    ws = [{k: v.detach().double() for k, v in build_model(run.config, run.task).state_dict().items()}]
    ws += [load_weights(step_dir(run.dir, s)) for s in range(1, steps + 1)]
    return run, [{k: ws[t + 1][k] - ws[t][k] for k in ws[0]} for t in range(steps)], ws[0]


def close(a, b):
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-9, atol=1e-12)


def test_grokfast_ema_multiplies_the_first_update_by_one_plus_lambda(tmp_path):
    """Lee et al. Algorithm 2: the EMA starts at the first gradient, so g + lamb mu = (1 + lamb) g."""
    _, (plain, _), _ = updates(tmp_path, "plain", [])
    _, (fast, _), _ = updates(tmp_path, "fast", ["accel.grokfast=ema", "accel.lamb=2.0"])
    close(fast, {k: 3.0 * v for k, v in plain.items()})


def test_grokfast_ma_waits_for_a_full_window_then_adds_lambda_times_its_mean(tmp_path):
    """Window 2: the first update is plain's; the second adds lamb × mean(g1, g2) (same g2, since
    both runs stand at the same weights after the first step)."""
    _, (p1, p2), _ = updates(tmp_path, "plain", [])
    _, (f1, f2), _ = updates(tmp_path, "fast", ["accel.grokfast=ma", "accel.window=2", "accel.lamb=5.0"])
    close(f1, p1)
    close(f2, {k: p2[k] + 5.0 * (p1[k] + p2[k]) / 2 for k in p2})
    assert max(float((f2[k] - p2[k]).abs().max()) for k in p2) > 1e-6


def test_orthograd_update_is_orthogonal_to_the_weights_and_as_long_as_plains(tmp_path):
    """Prieto et al. eq. 8, per tensor: the radial component is removed and the norm restored."""
    _, (plain, _), w0 = updates(tmp_path, "plain", [])
    _, (fast, _), _ = updates(tmp_path, "fast", ["accel.orthograd=true"])
    for k in w0:
        w, d = w0[k].reshape(-1), fast[k].reshape(-1)
        assert abs(float(w @ d)) <= 1e-10 * float(w.norm() * d.norm()), k
        assert float(d.norm()) == pytest.approx(float(plain[k].norm()), rel=1e-9), k
        assert not torch.allclose(fast[k], plain[k]), k


def test_clip_bounds_the_first_update_to_lr_times_the_limit_in_plains_direction(tmp_path):
    _, (plain, _), _ = updates(tmp_path, "plain", [])
    _, (fast, _), _ = updates(tmp_path, "fast", ["optim.clip=1e-3"])
    n_plain, n_fast = float(global_norm(plain)), float(global_norm(fast))
    assert n_plain > 0.1 * 1e-3 * 10 and n_fast == pytest.approx(0.1 * 1e-3, rel=1e-9)
    close(fast, {k: v * (n_fast / n_plain) for k, v in plain.items()})


def test_stablemax_is_the_loss_the_run_minimises(tmp_path):
    """The step-0 training loss is StableMax cross-entropy of the initial model (Prieto et al.
    eq. 5), and the first update is minus lr times its gradient."""
    run, (fast, _), _ = updates(tmp_path, "fast", ["train.loss=stablemax"])
    model = build_model(run.config, run.task).double()
    x, y = run.task.x_train, run.task.y_train
    loss = stablemax_cross_entropy(model(x), y)
    assert run.metrics[0]["train_loss"] == pytest.approx(loss.item(), rel=1e-12)
    loss.backward()
    close(fast, {k: -0.1 * p.grad for k, p in model.named_parameters()})
    # near-zero initial logits make the two losses close (s(z) ~ 1 + z ~ e^z), but not equal
    plain_loss = updates(tmp_path, "plain", [])[0].metrics[0]["train_loss"]
    assert plain_loss == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-12)
    assert abs(plain_loss - loss.item()) > 1e-6


def test_weight_norm_control_holds_the_total_norm(tmp_path):
    run = short_run(tmp_path, "wn", ["accel.weight_norm=7.5"])
    norms = [r["weight_norm"] for r in run.metrics[1:]]  # step 0 is logged before the first update
    assert norms == pytest.approx([7.5] * len(norms), rel=1e-5)


def test_init_scale_multiplies_the_initial_weights(tmp_path):
    one = short_run(tmp_path, "one", ["model.init_scale=1.0"], steps=1).metrics[0]["weight_norm"]
    half = short_run(tmp_path, "half", ["model.init_scale=0.5"], steps=1).metrics[0]["weight_norm"]
    assert half == pytest.approx(one / 2)
