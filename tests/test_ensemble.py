"""The vmap ensemble trainer equals M separate runs of the training loop."""
import copy

import pytest
import torch

import groklab
from groklab.runs.checkpoint import list_checkpoints, load_checkpoint
from groklab.runs.rundir import read_jsonl
from groklab.sweep.ensemble import FunctionalAdamW, group_jobs, train_ensemble, unsupported

BASE = ["task.p=11", "task.frac=0.5", "model.hidden=16", "train.steps=40", "train.eval_every=10",
        "train.n_checkpoints=2", "optim.warmup=5"]
VARY = [(1e-2, 1.0, 1.0, 0), (3e-3, 0.1, 2.0, 1), (2e-2, 3.0, 0.5, 2)]


def configs(extra=()):
    out = []
    for lr, wd, scale, seed in VARY:
        out.append(groklab.resolve("prieto", overrides=[*BASE, *extra, f"optim.lr={lr}", f"optim.wd={wd}",
                                                        f"model.init_scale={scale}", f"train.seed={seed}"]))
    return out


def test_functional_adamw_equals_torch_adamw_per_model():
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(3, 5, 4, generator=g)
    lr, wd = torch.tensor([1e-2, 3e-3, 1e-1]), torch.tensor([1.0, 0.0, 0.3])
    opt = FunctionalAdamW({"w": p0}, 0.9, 0.98, 1e-8)
    refs = [torch.nn.Parameter(p0[i].clone()) for i in range(3)]
    topts = [torch.optim.AdamW([r], lr=float(lr[i]), weight_decay=float(wd[i]), betas=(0.9, 0.98))
             for i, r in enumerate(refs)]
    p = {"w": p0}
    for _ in range(50):
        grads = torch.randn(3, 5, 4, generator=g)
        p = opt.step(p, {"w": grads}, lr, wd)
        for i, (r, o) in enumerate(zip(refs, topts)):
            r.grad = grads[i].clone()
            o.step()
    for i, r in enumerate(refs):
        torch.testing.assert_close(p["w"][i], r.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("extra", [(), ("train.stop_threshold=0.05",)])
def test_ensemble_matches_separate_runs(tmp_path, extra):
    cfgs = configs(extra)
    dirs = [tmp_path / f"e{i}" for i in range(len(cfgs))]
    summaries = train_ensemble(cfgs, dirs, report=False)
    for i, c in enumerate(cfgs):
        ref = groklab.run(copy.deepcopy(c), out=tmp_path / f"r{i}", report=False)
        got, want = read_jsonl(dirs[i] / "metrics.jsonl"), ref.metrics
        assert [r["step"] for r in got] == [r["step"] for r in want]
        n = {"train_acc": len(ref.task.y_train), "val_acc": len(ref.task.y_val)}
        for a, b in zip(got, want):
            for k in ("train_loss", "val_loss", "weight_norm", "lr"):
                assert a[k] == pytest.approx(b[k], rel=1e-4, abs=0), (i, k, a["step"])  # 1e-4 relative
            for k in ("train_acc", "val_acc"):  # float rounding may flip one example, not two
                assert abs(a[k] - b[k]) <= 1 / n[k] + 1e-9, (i, k, a["step"])
        s = summaries[i]
        assert (s["status"], s["steps_done"]) == (ref.summary["status"], ref.summary["steps_done"])
        assert list_checkpoints(dirs[i]) == list_checkpoints(ref.dir)
        w_ens, _ = load_checkpoint(dirs[i], list_checkpoints(dirs[i])[-1])
        w_ref, _ = load_checkpoint(ref.dir, list_checkpoints(ref.dir)[-1])
        for k in w_ref:
            torch.testing.assert_close(w_ens[k], w_ref[k], rtol=1e-4, atol=1e-5)
    if extra:  # early stop happened for some but not all, at their own steps
        assert len({s["steps_done"] for s in summaries}) > 1


def test_an_ensemble_run_resumes_with_the_ordinary_loop(tmp_path):
    """Its checkpoints hold torch AdamW state: ``groklab.resume`` continues it like any run."""
    cfg = configs()[0]
    train_ensemble([cfg], [tmp_path / "e"], report=False)
    groklab.resume(tmp_path / "e", overrides=["train.steps=60"], report=False)
    longer = copy.deepcopy(cfg)
    longer.train.steps = 60
    ref = groklab.run(longer, out=tmp_path / "r", report=False)
    a, b = read_jsonl(tmp_path / "e" / "metrics.jsonl")[-1], ref.metrics[-1]
    assert a["step"] == b["step"] == 60
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)


# train/loop.py calls float(loss) on a tensor that requires grad when the loss is not finite
@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_diverging_model_is_marked_nan_and_the_others_go_on(tmp_path):
    cfgs = configs()
    cfgs[1].optim.lr = 1e3
    cfgs[1].model.init_scale = 1e3
    summaries = train_ensemble(cfgs, [tmp_path / f"e{i}" for i in range(3)], report=False)
    ref = groklab.run(copy.deepcopy(cfgs[1]), out=tmp_path / "r", report=False)
    assert ref.summary["status"] == summaries[1]["status"] == "nan"
    assert summaries[0]["status"] == summaries[2]["status"] == "completed"


def test_grouping_keeps_incompatible_points_apart():
    cfgs = configs()
    jobs = [{"id": str(i), "dir": f"/x/{i}", "config": c.to_dict()} for i, c in enumerate(cfgs)]
    other = copy.deepcopy(cfgs[0])
    other.task.frac = 0.6  # a different task: another ensemble
    jobs.append({"id": "f", "dir": "/x/f", "config": other.to_dict()})
    grok = copy.deepcopy(cfgs[0])
    grok.accel.grokfast = "ema"
    assert unsupported(grok)
    jobs.append({"id": "g", "dir": "/x/g", "config": grok.to_dict()})
    out = group_jobs(jobs, parts=1)
    ens = [j for j in out if j.get("kind") == "ensemble"]
    assert [[m["id"] for m in e["jobs"]] for e in ens] == [["0", "1", "2"]]
    assert sorted(j["id"] for j in out if j.get("kind") != "ensemble") == ["f", "g"]
    assert len(group_jobs(jobs[:3], parts=2)) == 2  # one chunk per worker
