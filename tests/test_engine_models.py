"""benchmarks/engine_models.py: its plain PyTorch references are the same functions as groklab's
models (otherwise its speed ratios would compare different computations)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "engine_models.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("engine_models", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("model", ["mul97", "add113"])
def test_plain_reference_trains_exactly_like_groklab_in_float64(bench, model):
    # training steps on the same minibatches: losses agree to rounding (they differ by ~1e-16)
    small = ("train.batch_size=64",) if model == "mul97" else ("task.frac=0.1",)
    assert bench.agreement(model, steps=3, overrides=small) < 1e-12


def test_plain_transformer_reads_the_causal_mask_and_every_weight(bench):
    tr = bench.build("mul97", "float64", ("train.batch_size=64",))
    plain = bench.PlainRun("mul97", tr)
    x = tr.data[0][:64]
    assert (plain.model(x) - tr.model(x)).abs().max() < 1e-10
    plain.model.mask.fill_(False)  # attention to later positions changes the answer
    assert (plain.model(x) - tr.model(x)).abs().max() > 1e-3
