"""Feature rank per layer (Fan et al. 2024, arXiv 2405.19454) and the deep-mnist preset."""
import json

import pytest
import torch

import groklab
from groklab.measure.rank import (
    feature_rank,
    feature_ranks,
    linear_outputs,
    rank_subsample,
)
from groklab.models.mlp import MLPNet


@pytest.mark.parametrize("r", [1, 3, 7])
def test_outputs_built_from_an_inner_dimension_r_have_rank_r(r):
    g = torch.Generator().manual_seed(r)
    h = torch.randn(200, r, generator=g, dtype=torch.float64) @ torch.randn(r, 16, generator=g, dtype=torch.float64)
    assert feature_rank(h) == r
    assert feature_rank(h + 5.0) == r  # centred: a constant shift adds no rank


def test_constant_outputs_have_rank_0_and_full_rank_noise_has_rank_d():
    assert feature_rank(torch.full((50, 8), 3.0)) == 0
    assert feature_rank(torch.randn(500, 8, generator=torch.Generator().manual_seed(0))) == 8
    assert feature_rank(torch.randn(30, 1, generator=torch.Generator().manual_seed(0))) == 1  # one variable
    with pytest.raises(ValueError, match="N >= 2"):
        feature_rank(torch.zeros(1, 4))


def test_a_depth_4_mlp_has_four_named_linear_outputs_before_the_relu():
    model = MLPNet(10, [32, 32, 32], d_in=20, bias=True, seed=0)
    x = torch.randn(64, 20, generator=torch.Generator().manual_seed(1))
    outs = linear_outputs(model, x)
    assert {k: tuple(v.shape) for k, v in outs.items()} == {"L1": (64, 32), "L2": (64, 32),
                                                           "L3": (64, 32), "L4": (64, 10)}
    assert torch.allclose(outs["L1"], model.layers[0](x)) and (outs["L2"] < 0).any()  # pre-ReLU
    assert torch.allclose(outs["L4"], model(x))
    ranks = feature_ranks(model, x)
    assert list(ranks) == ["rank_L1", "rank_L2", "rank_L3", "rank_L4"]
    assert ranks["rank_L4"] <= 10 and all(0 < v <= 32 for v in ranks.values())
    with torch.no_grad():  # a dead first layer: zero weights, constant bias -> rank 0
        model.layers[0].weight.zero_()
    assert feature_ranks(model, x)["rank_L1"] == 0


def test_the_subsample_is_seeded_and_at_most_max_n_rows():
    x = torch.arange(3000.0)[:, None]
    a, b = rank_subsample(x, 1000, seed=0), rank_subsample(x, 1000, seed=0)
    assert len(a) == 1000 and torch.equal(a, b) and len(a.unique()) == 1000
    assert rank_subsample(x[:10], 1000) is not None and len(rank_subsample(x[:10], 1000)) == 10


def test_the_deep_mnist_preset_is_the_papers_depth_12_recipe():
    cfg = groklab.resolve("deep-mnist")
    m, o, t = cfg.model, cfg.optim, cfg.train
    assert (cfg.task.name, cfg.task.n_train) == ("mnist", 2000)
    assert (m.arch, m.hidden, m.act, m.bias, m.init_scale) == ("mlp", [400] * 11, "relu", True, 8.0)
    assert (o.name, o.lr, o.wd, o.warmup, o.beta1, o.beta2, o.schedule) == \
        ("adamw", 1e-3, 0.01, 0, 0.9, 0.999, "constant")
    assert (t.loss, t.dtype, t.batch_size, t.steps) == ("mse", "float64", 200, 100_000)
    assert "2405.19454" in groklab.presets.PRESETS["deep-mnist"].__doc__
    model = MLPNet(10, m.hidden, d_in=784, bias=True, init_scale=8.0)
    assert len(model.layers) == 12
    # by hand: 784·400 + 400, then 10 × (400·400 + 400), then 400·10 + 10
    assert sum(p.numel() for p in model.parameters()) == 314_000 + 10 * 160_400 + 4_010 == 1_922_010
    depth4 = groklab.resolve("deep-mnist", overrides=["model.hidden=[400,400,400]"])
    assert len(depth4.model.hidden) + 1 == 4


def test_mse_is_against_one_hot_labels():
    from groklab.accel.losses import build_loss
    z = torch.tensor([[0.5, 0.0, 2.0]], dtype=torch.float64)
    assert float(build_loss("mse", "float64")(z, torch.tensor([2]))) == pytest.approx(0.25 + 0 + 1.0)


def test_a_tiny_live_run_writes_one_rank_per_layer_to_measures_jsonl(tmp_path):
    cfg = groklab.resolve("deep-mnist", overrides=[
        "model.hidden=[32,32,32]", "task.n_train=200", "train.steps=30", "train.measure_every=10",
        "train.eval_every=10", "train.n_checkpoints=0", "train.checkpoint_every=0", "train.forecast=false"])
    groklab.run(cfg, out=tmp_path / "r", progress=False, report=False)
    recs = [json.loads(ln) for ln in (tmp_path / "r" / "measures.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [0, 10, 20]
    for r in recs:
        ranks = {k: v for k, v in r.items() if k.startswith("rank_")}
        assert list(ranks) == ["rank_L1", "rank_L2", "rank_L3", "rank_L4"]
        assert all(isinstance(v, int) and 0 <= v <= 32 for v in ranks.values()) and ranks["rank_L4"] <= 10


def test_a_linear_probe_separates_separable_features_and_not_noise():
    from groklab.measure.probe import linear_probe_accuracy
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (600,), generator=g)
    centres = 10 * torch.randn(4, 8, generator=g)
    h = centres[y] + torch.randn(600, 8, generator=g)
    assert linear_probe_accuracy(h[:400], y[:400], h[400:], y[400:], 4, epochs=30) > 0.95
    noise = torch.randn(600, 8, generator=g)
    assert linear_probe_accuracy(noise[:400], y[:400], noise[400:], y[400:], 4, epochs=30) < 0.45


def test_layer_probes_name_every_layer_of_a_depth_4_mlp():
    from groklab.measure.probe import layer_probe_accuracies
    from groklab.tasks import build_task
    cfg = groklab.resolve("deep-mnist", overrides=["model.hidden=[32,32,32]", "task.n_train=200"])
    task = build_task(cfg.task)
    model = MLPNet(10, [32, 32, 32], d_in=784, bias=True, init_scale=8.0).double()
    accs = layer_probe_accuracies(model, task, max_n=300, epochs=3)
    assert list(accs) == ["probe_L1", "probe_L2", "probe_L3", "probe_L4"]
    assert all(0.0 <= a <= 1.0 for a in accs.values()) and accs["probe_L1"] > 0.3  # random features of MNIST
