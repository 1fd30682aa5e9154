"""`groklab gtn sample`: the teacher's data in a .npz that is exactly what its learners are fed,
in curriculum order; a new file only, written whole; every refusal one line, exit 2, nothing written."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from groklab.cli import main
from groklab.gtn import run as gtn_run
from groklab.gtn.eval import evaluate, generated_batches, teach
from groklab.gtn.learners import init_params
from groklab.gtn.sample import sample_run, write_new
from gtn_tiny import one_thread, tiny_cfg, tiny_data  # noqa: F401  (fixture)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("groklab: error: ") and err.count("\n") == 1, err
    return err


def _run(tmp_path, *overrides):
    out = tmp_path / "g"
    gtn_run.train(tiny_cfg(*overrides), out, evaluate=False, data=tiny_data())
    return out


def _load(path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("overrides", [(), ("inner.curriculum=shuffled_batch", "labels.learned=true"),
                                       ("inner.curriculum=none",)])
def test_the_npz_is_exactly_what_the_generator_feeds_for_that_seed(tmp_path, overrides):
    d = _run(tmp_path, *overrides)
    cfg, teacher, data = gtn_run.load_run(d, data=tiny_data())
    T, B, C = cfg.inner.steps, cfg.inner.batch, data.n_classes
    n = 2 * T * B + 5                                   # two whole unrolls and a cut batch of a third
    sample_run(d, tmp_path / "s.npz", n=n, seed=42, data=tiny_data())
    got = _load(tmp_path / "s.npz")
    want = {"x": [], "y": [], "target": [], "step": [], "unroll": []}
    for k in range(3):
        g = torch.Generator().manual_seed(42 + k)
        plan = teacher.curriculum.plan(torch.Generator().manual_seed(42 + k))
        for t, (x, target) in enumerate(generated_batches(teacher, g)):
            y = teacher.curriculum.inputs(t, plan)[1]
            want["x"].append(x)
            want["y"].append(y)
            want["target"].append(target if target.is_floating_point() else F.one_hot(target, C).double())
            want["step"].append(torch.full((B,), t))
            want["unroll"].append(torch.full((B,), k))
    for key, parts in want.items():
        assert np.array_equal(got[key], torch.cat(parts)[:n].numpy()), key
    assert got["x"].shape == (n, *data.shape) and got["x"].dtype == np.float64    # the run's dtype
    assert got["target"].shape == (n, C) and got["y"].dtype == got["step"].dtype == np.int64
    assert np.array_equal(got["lr"], teacher.log_lr.detach().exp().numpy())
    assert np.array_equal(got["momentum"], teacher.log_mom.detach().exp().numpy())
    assert bool(got["learned_labels"]) == ("labels.learned=true" in overrides)
    if "labels.learned=true" in overrides:              # the learned soft labels, not the class
        assert not np.array_equal(got["target"], np.eye(C)[got["y"]])
        assert np.allclose(got["target"].sum(1), 1)
    assert str(got["curriculum"]) == cfg.inner.curriculum and int(got["batch"]) == B
    assert float(got["mean"]) == data.mean and float(got["std"]) == data.std


def test_unroll_k_by_default_is_evaluation_learner_k(tmp_path):
    """Trained on the file's unroll 1 with its lr and momentum, evaluation learner 1 reaches
    exactly the accuracy curve that `gtn eval` gives it."""
    d = _run(tmp_path, "inner.curriculum=all_shuffled")
    cfg, teacher, data = gtn_run.load_run(d, data=tiny_data())
    sample_run(d, tmp_path / "s.npz", n=2 * cfg.inner.steps * cfg.inner.batch, data=tiny_data())
    f = _load(tmp_path / "s.npz")
    from groklab.gtn.eval import eval_spec
    from groklab.gtn.meta import get_learner
    learner = get_learner(eval_spec(cfg), data, torch.float64)
    batches = [(torch.from_numpy(f["x"][m]), torch.from_numpy(f["y"][m]))
               for m in ((f["unroll"] == 1) & (f["step"] == t) for t in range(cfg.inner.steps))]
    p0 = init_params(learner, torch.Generator().manual_seed(cfg.eval.seed + 1), torch.float64)
    curve = teach(learner, p0, batches, torch.from_numpy(f["lr"]), torch.from_numpy(f["momentum"]), data)
    assert curve == evaluate(cfg, teacher, data, learners=2)["gtn_curves"][1]


def test_a_write_never_replaces_a_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    p = tmp_path / "s.npz"
    write_new(p, b"one")
    from groklab.config import ConfigError
    with pytest.raises(ConfigError, match="already exists"):   # appeared after the check: kept
        write_new(p, b"two")
    assert p.read_bytes() == b"one" and [q.name for q in tmp_path.iterdir()] == ["s.npz"]

    def boom(*a):
        raise KeyboardInterrupt
    monkeypatch.setattr("os.link", boom)
    with pytest.raises(KeyboardInterrupt):
        write_new(tmp_path / "t.npz", b"half")
    assert [q.name for q in tmp_path.iterdir()] == ["s.npz"]


# ---- the command ---------------------------------------------------------------------------

@pytest.fixture
def gtn_dir(tmp_path):
    from test_gtn_meta import TINY_CLI
    out = tmp_path / "gtn"
    assert main(["gtn", "train", "--quiet", "--no-eval", "--out", str(out),
                 *[a for s in TINY_CLI for a in ("--set", s)]]) == 0
    return out


def _tree(d):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_the_command_writes_a_documented_npz(gtn_dir, tmp_path, capsys, monkeypatch):
    from groklab.runs import lock

    class ReadOnlyLock(lock.FileLock):        # sampling only reads: a read-only run is fine
        def acquire(self, *a, **k):
            raise OSError(30, "Read-only file system")
    monkeypatch.setattr(lock, "FileLock", ReadOnlyLock)
    before = _tree(gtn_dir)
    assert main(["gtn", "sample", str(gtn_dir), "--n", "50", "--out", str(tmp_path / "d.npz")]) == 0
    assert "50 examples (digits, full curriculum, 2 unroll(s) of 2 steps × 20)" in capsys.readouterr().out
    f = _load(tmp_path / "d.npz")
    documented = {"x", "y", "target", "step", "unroll", "lr", "momentum", "mean", "std", "batch", "seed",
                  "learned_labels", "data", "generator", "curriculum"}
    assert set(f) == documented
    assert f["x"].shape == (50, 1, 8, 8) and f["x"].dtype == np.float32 and f["target"].shape == (50, 10)
    assert f["step"].tolist() == ([0] * 20 + [1] * 20 + [0] * 10) and f["unroll"].max() == 1
    assert _tree(gtn_dir) == before
    cfg = json.loads((gtn_dir / "config.json").read_text())
    assert int(f["seed"]) == cfg["eval"]["seed"] + 7919


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args, needle", [
    (["--n", "0"], "--n 0: expected 1 to 1000000"),
    (["--n", "99999999999"], "--n 99999999999: expected 1 to 1000000"),
    (["--seed", "-1"], "--seed -1: expected 0 to 4294967295"),
    (["--out", "{existing}"], "already exists; sample writes only a new file"),
    (["--out", "{tmp}/no/such/dir/s.npz"], "does not exist"),
    (["{tmp}/empty"], "is not a GTN run directory (no config.json)"),
    (["{tmp}/missing"], "is not a GTN run directory (no config.json)"),
    (["{tmp}/plainrun"], "is not a GTN run directory (its config.json has no generator"),
])
def test_refusals_are_one_line_and_write_nothing(gtn_dir, tmp_path, capsys, args, needle):
    (tmp_path / "existing.npz").write_bytes(b"mine")
    (tmp_path / "empty").mkdir()
    (tmp_path / "plainrun").mkdir()
    (tmp_path / "plainrun" / "config.json").write_text(json.dumps({"task": {"name": "modular"}, "model": {}}))
    fill = lambda a: a.format(tmp=tmp_path, existing=tmp_path / "existing.npz")  # noqa: E731
    run = fill(args[0]) if not args[0].startswith("--") else str(gtn_dir)
    opts = [fill(a) for a in (args if args[0].startswith("--") else [])]
    if "--out" not in opts:
        opts += ["--out", str(tmp_path / "s.npz")]
    before, run_before = _tree(tmp_path), _tree(gtn_dir)
    assert main(["gtn", "sample", run, *opts]) == 2
    assert needle in _one_line(capsys)
    assert _tree(tmp_path) == before and _tree(gtn_dir) == run_before
